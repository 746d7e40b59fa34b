//! A per-core async runtime over megatcp's channel.
//!
//! Each core runs one [`Runtime`] on its own thread, over its own
//! [`Channel`](megatcp_channel::Channel): [`block_on`](Runtime::block_on) a main future,
//! [`spawn_local`] tasks beside it, open connections with [`TcpStream::connect`] and
//! [`TcpListener::bind`]/[`accept`](TcpListener::accept), read and write with futures, wait
//! with [`sleep`] and [`timeout`]. Started through `launch` ([`run`], [`AsyncApp`]) it runs
//! on every backend: AF_XDP and DPDK (megatcp's own stack), io_uring and epoll (the
//! kernel's).
//!
//! [`TcpStream`] implements tokio's `AsyncRead`/`AsyncWrite` (feature `tokio`, on by
//! default: the traits only, tokio's runtime is not used) and the `futures-io` traits
//! (feature `futures-io`), so code written against them (hyper through hyper-util's
//! `TokioIo`, codecs, `copy`) runs on megatcp unchanged.
//!
//! # How it maps to the channel
//!
//! Futures queue channel commands, each with a cookie naming the operation and the socket;
//! the runtime hands them to the channel in one batch per turn, dispatches, and routes each
//! completion by its cookie to the waker of the one task waiting for it (completion-driven:
//! no readiness polling, no task woken for nothing). A read completion's buffer is handed to
//! [`TcpStream::recv`] as it is. Nothing needs `Send`: a runtime, its tasks and its sockets
//! stay on their core's thread (MegaPipe's partitioning); a program runs one runtime per
//! core, each listening on the shared port.
//!
//! Dropping a future in flight is safe: its socket's slot goes stale, a late completion is
//! dropped (a late connection is closed), and a cancelled read loses no bytes.
//!
//! ```no_run
//! use megatcp_launch::BackendArgs;
//!
//! // An echo server on every core of `--backend ... --cores ...`.
//! fn main() -> Result<(), Box<dyn std::error::Error>> {
//!     let args = BackendArgs::default(); // or parsed with clap
//!     megatcp_async::run(&args, |_core| async {
//!         let listener = megatcp_async::TcpListener::bind("0.0.0.0:7").await?;
//!         while let Ok((mut stream, _peer)) = listener.accept().await {
//!             megatcp_async::spawn_local(async move {
//!                 loop {
//!                     match stream.recv().await {
//!                         Ok(data) if !data.is_empty() => {
//!                             if stream.send(data).await.is_err() {
//!                                 break;
//!                             }
//!                         }
//!                         _ => break,
//!                     }
//!                 }
//!             });
//!         }
//!         std::io::Result::Ok(())
//!     })?;
//!     Ok(())
//! }
//! ```

#![forbid(unsafe_code)]

mod addr;
mod compat;
mod error;
mod executor;
mod launch;
mod listener;
mod reactor;
mod runtime;
mod slots;
mod stream;
mod time;

pub use error::{AddrError, Elapsed, JoinError, Stopped};
pub use executor::{JoinHandle, spawn_local, yield_now};
pub use launch::{AsyncApp, run};
pub use listener::TcpListener;
pub use reactor::RuntimeStats;
pub use runtime::{REMOTE_WAKE, Runtime, is_stopping, request_stop, stats, stopping};
pub use stream::TcpStream;
pub use time::{Sleep, sleep, sleep_until, timeout};
