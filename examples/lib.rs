//! Programs on megatcp's async runtime (`megatcp-async`), each a binary of this package:
//!
//! * `async-echo`: the echo server of `megatcp-echo serve`, ported to async in a few dozen
//!   lines (`async_echo.rs`);
//! * `hyper-server`: hyper 1.x's HTTP/1 server connection, unchanged, over megatcp's
//!   `TcpStream` (and, with `--tokio`, the same server on tokio and the kernel's TCP: the
//!   baseline);
//! * `hyper-client`: hyper's HTTP/1 client connection over megatcp.
//!
//! Each takes the shared backend flags (`--backend afxdp|dpdk|uring|epoll`, `--cores`,
//! `--iface`, `--ip`). `PORTING.md` (at the repository's root) is compiled here too: each of
//! its code blocks is a doctest of this crate.
#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../PORTING.md")]
pub struct PortingGuide;
