//! megatcp's kernel backends: the channel API over the Linux kernel's own TCP, so that the
//! very same application runs on the kernel path and on the bypass path.
//!
//! * [`epoll`]: non-blocking sockets and edge-triggered epoll, one instance per core.
//! * [`uring`]: io_uring, one ring per core (`SINGLE_ISSUER`, `DEFER_TASKRUN`), multishot
//!   accept into fixed descriptors, multishot receive on a provided buffer ring.
//!
//! Both keep the channel's rules and per-handle state in a [`megatcp_channel::Ledger`] and
//! supply only their system calls ([`megatcp_channel::ledger::Transport`]). Both listen with
//! one `SO_REUSEPORT` socket per core (`sockets`), the kernel's partitioned listening.
//!
//! All `unsafe` code of this crate is in [`ring`], the io_uring ring wrapper (every block
//! with a `// SAFETY:` comment); every other module is safe code.

#![deny(unsafe_code)]

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use megatcp_channel::Completion;

pub mod epoll;
#[allow(unsafe_code)]
pub mod ring;
mod sockets;
pub mod uring;

pub use sockets::{NOFILE_WANTED, raise_nofile};

/// Longest single wait of a backend's poll, so that a stop request is seen within it.
const MAX_WAIT: Duration = Duration::from_millis(100);

/// How long a poll that started at `start` may wait for events now: not at all when
/// completions are ready, else what is left of `timeout`, at most [`MAX_WAIT`].
fn wait_time(timeout: Option<Duration>, start: Instant, out: &[Completion]) -> Duration {
    if !out.is_empty() {
        return Duration::ZERO;
    }
    let left = timeout.map_or(MAX_WAIT, |t| t.saturating_sub(start.elapsed()));
    left.min(MAX_WAIT)
}

/// Whether a poll that started at `start` returns now: completions are ready, the runtime
/// asked to stop, or the timeout passed.
fn poll_done(
    timeout: Option<Duration>,
    start: Instant,
    out: &[Completion],
    stop: &AtomicBool,
) -> bool {
    !out.is_empty() || stop.load(Ordering::Relaxed) || timeout.is_some_and(|t| start.elapsed() >= t)
}
