//! The MegaPipe channel API.
//!
//! A [`Channel`] is one core's bidirectional pipe between the application and the network:
//! the application queues **commands** (listen, accept, connect, read, write, shutdown,
//! close, set an option), each tagged with a [`Cookie`] of its choice; the channel hands them
//! to its [`Backend`] in **batches** and returns **completions**, also in batches. It is a
//! completion model, not a readiness model: a read completion carries the data, a write
//! completion says the data was taken.
//!
//! MegaPipe's three ideas show in the API:
//!
//! * **Partitioned listening**: every core's channel `listen`s on the shared port and gets
//!   its own accept queue; nothing is shared between cores.
//! * **Lightweight sockets**: a connection is a [`Handle`] (slot index + generation) that is
//!   only meaningful inside its channel. A stale handle (closed, or from another channel)
//!   is refused with [`ChannelError::BadHandle`]; it can never reach another connection.
//! * **Batching**: commands queue in the channel and are flushed together.
//!
//! # Batching rules
//!
//! Queued commands are handed to the backend (a *flush*) when:
//! 1. [`Channel::dispatch`] is called (before it waits for completions), or
//! 2. the queue reaches [`Channel::batch_threshold`] commands (default 64), or
//! 3. the application calls [`Channel::flush`].
//!
//! So N commands queued between two dispatches (N below the threshold) are one flush, and
//! one dispatch of the bypass backend turns them into one batch of frames for the NIC.
//!
//! # Porting an event-driven application
//!
//! An epoll loop ("socket readable -> read -> handle -> write") becomes: issue a multishot
//! `accept` once and a `read` on each new connection; on each `Read` completion, handle the
//! bytes, queue a `write`, queue the next `read`; call `dispatch` in the loop.
//!
//! ```
//! use megatcp_channel::{Backend, Channel, Completion};
//!
//! /// An echo server: runs on any backend (bypass, io_uring, epoll).
//! fn echo<B: Backend>(ch: &mut Channel<B>, port: u16) {
//!     ch.listen(std::net::SocketAddrV4::new([0, 0, 0, 0].into(), port), 1024, 1);
//!     while !ch.is_stopping() {
//!         for c in ch.dispatch(Some(std::time::Duration::from_millis(10))) {
//!             match c {
//!                 Completion::Listening { handle, .. } => ch.accept(handle, true, 2),
//!                 Completion::Accepted { handle, .. } => ch.read(handle, 3),
//!                 Completion::Read { handle, data, .. } => {
//!                     ch.write(handle, data, 4);
//!                     ch.read(handle, 3);
//!                 }
//!                 Completion::Eof { handle, .. } => ch.close(handle, 5),
//!                 _ => {}
//!             }
//!         }
//!     }
//! }
//! # let _ = echo::<megatcp_channel::NullBackend>;
//! ```
//!
//! Completions are returned as an owned `Vec`. Hand it back with [`Channel::recycle`] once
//! drained and dispatching allocates nothing; not doing so costs an allocation per dispatch.

use core::net::SocketAddrV4;
use std::time::Duration;

pub mod epoll;
mod kernel;
mod table;
pub mod uring;

pub use table::HandleTable;

/// A connection or listener, meaningful only inside the channel that issued it
/// (MegaPipe's lightweight socket): a slot index plus a generation, tagged with the issuing
/// channel so that a handle from another channel is refused rather than mistaken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    owner: u32,
    index: u32,
    generation: u32,
}

impl Handle {
    /// For backends: the handle of slot `index` at `generation` in the handle table tagged
    /// `owner` (see [`new_owner_tag`]).
    pub const fn new(owner: u32, index: u32, generation: u32) -> Self {
        Self {
            owner,
            index,
            generation,
        }
    }

    /// Tag of the handle table (channel) that issued the handle.
    pub const fn owner(self) -> u32 {
        self.owner
    }

    /// Slot index.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot when the handle was issued.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl core::fmt::Display for Handle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{}.{}@{}", self.index, self.generation, self.owner)
    }
}

/// A tag unique in the process, for a backend's handle table (taken once per channel at
/// creation, not on the data path).
pub fn new_owner_tag() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A value of the application's choice, returned with the command's completion.
pub type Cookie = u64;

/// A per-handle option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOpt {
    /// Disable Nagle's algorithm (`true`) or enable it.
    NoDelay(bool),
    /// TCP keep-alive interval (`None`: off).
    KeepAlive(Option<Duration>),
    /// On a listener: receive and send buffer sizes of the connections it accepts from now
    /// on (bytes). On a connection: refused where the backend cannot resize (bypass).
    BufferSizes {
        /// Receive buffer.
        rx: usize,
        /// Send buffer.
        tx: usize,
    },
}

/// A command, as queued in the channel and handed to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Listen on `addr` (this core's own accept queue for the port).
    Listen {
        /// Address and port; 0.0.0.0 for every local address.
        addr: SocketAddrV4,
        /// Connections being established plus established and not yet accepted.
        backlog: u32,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Accept one connection, or every connection until the listener closes (`multishot`).
    Accept {
        /// A listener handle.
        listener: Handle,
        /// Keep accepting.
        multishot: bool,
        /// Returned with each completion.
        cookie: Cookie,
    },
    /// Open a connection.
    Connect {
        /// Peer address.
        remote: SocketAddrV4,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Complete with the next bytes received (as many as are available), or end of stream.
    Read {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Send all of `data`; completes when the whole buffer was taken by the transport.
    Write {
        /// A connection handle.
        handle: Handle,
        /// The bytes.
        data: Vec<u8>,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Close the write side after queued data (FIN); reads go on.
    Shutdown {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Close a connection or a listener; the handle is invalid from now on.
    Close {
        /// A connection or listener handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Reset a connection (RST, no TIME-WAIT); the handle is invalid from now on.
    Abort {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Set an option.
    SetOpt {
        /// A connection or listener handle.
        handle: Handle,
        /// The option.
        opt: SockOpt,
        /// Returned with the completion.
        cookie: Cookie,
    },
}

impl Command {
    /// The command's cookie.
    pub fn cookie(&self) -> Cookie {
        match *self {
            Command::Listen { cookie, .. }
            | Command::Accept { cookie, .. }
            | Command::Connect { cookie, .. }
            | Command::Read { cookie, .. }
            | Command::Write { cookie, .. }
            | Command::Shutdown { cookie, .. }
            | Command::Close { cookie, .. }
            | Command::Abort { cookie, .. }
            | Command::SetOpt { cookie, .. } => cookie,
        }
    }
}

/// Why a command failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The handle is stale (closed, reset) or was never issued by this channel.
    #[error("bad handle {0}: closed, or not from this channel")]
    BadHandle(Handle),
    /// The handle is of the wrong kind for the command (e.g. a read on a listener).
    #[error("handle {0} is a {1}; the command needs a {2}")]
    WrongKind(Handle, &'static str, &'static str),
    /// A write after `shutdown`, a second pending read, and the like.
    #[error("handle {0}: {1}")]
    InvalidState(Handle, &'static str),
    /// Listening failed.
    #[error("listen on {0}: {1}")]
    Listen(SocketAddrV4, String),
    /// Opening a connection failed.
    #[error("connect to {0}: {1}")]
    Connect(SocketAddrV4, String),
    /// The connection was reset by the peer or timed out while the command was pending.
    #[error("connection {0} reset")]
    Reset(Handle),
    /// The option is not supported by this backend or handle.
    #[error("option {0:?} not supported here")]
    Unsupported(SockOpt),
    /// An operating-system error (kernel backends).
    #[error("{0}")]
    Os(String),
}

/// The command rules every backend applies the same way, so that an application sees the
/// same errors whichever path it runs on.
pub mod rules {
    use crate::{ChannelError, Handle};

    fn check(bad: bool, h: Handle, why: &'static str) -> Result<(), ChannelError> {
        if bad {
            Err(ChannelError::InvalidState(h, why))
        } else {
            Ok(())
        }
    }

    /// One `Accept` at a time per listener.
    pub fn accept(listener: Handle, pending: bool) -> Result<(), ChannelError> {
        check(pending, listener, "accept pending")
    }

    /// One `Read` at a time per connection.
    pub fn read(handle: Handle, pending: bool) -> Result<(), ChannelError> {
        check(pending, handle, "a read is already pending")
    }

    /// No `Write` once the write side is shut down (or being shut down).
    pub fn write(handle: Handle, shut: bool) -> Result<(), ChannelError> {
        check(shut, handle, "write after shutdown")
    }

    /// One `Shutdown` per connection.
    pub fn shutdown(handle: Handle, shut: bool) -> Result<(), ChannelError> {
        check(shut, handle, "already shut down")
    }

    /// An empty `Write` completes at once (`Written` with `len` 0); returns whether `data`
    /// was empty and so already answered.
    pub fn empty_write(
        handle: Handle,
        data: &[u8],
        cookie: crate::Cookie,
        out: &mut Vec<crate::Completion>,
    ) -> bool {
        if data.is_empty() {
            out.push(crate::Completion::Written {
                handle,
                len: 0,
                cookie,
            });
        }
        data.is_empty()
    }

    /// When a connection is reset or aborted, each of its pending operations (`cookies`)
    /// fails with [`ChannelError::Reset`].
    pub fn fail_reset(
        handle: Handle,
        cookies: impl IntoIterator<Item = crate::Cookie>,
        out: &mut Vec<crate::Completion>,
    ) {
        out.extend(cookies.into_iter().map(|cookie| crate::Completion::Error {
            cookie,
            error: ChannelError::Reset(handle),
        }));
    }
}

/// What a backend reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A `Listen` succeeded.
    Listening {
        /// The listener.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A connection was accepted.
    Accepted {
        /// The listener.
        listener: Handle,
        /// The new connection.
        handle: Handle,
        /// The peer.
        peer: SocketAddrV4,
        /// The `Accept` command's cookie.
        cookie: Cookie,
    },
    /// A `Connect` succeeded.
    Connected {
        /// The new connection.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// Bytes received.
    Read {
        /// The connection.
        handle: Handle,
        /// The bytes (never empty).
        data: Vec<u8>,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// The peer closed its side: no more bytes will come.
    Eof {
        /// The connection.
        handle: Handle,
        /// The `Read` command's cookie.
        cookie: Cookie,
    },
    /// A `Write` was taken whole.
    Written {
        /// The connection.
        handle: Handle,
        /// Bytes written (the whole buffer).
        len: usize,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `Shutdown` was done.
    ShutDown {
        /// The connection.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `Close` or `Abort` was done; the handle is invalid.
    Closed {
        /// The handle.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `SetOpt` was applied.
    OptSet {
        /// The handle.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// The connection was reset by the peer or timed out; the handle is invalid. Pending
    /// commands on it completed with [`ChannelError::Reset`] first.
    Reset {
        /// The handle.
        handle: Handle,
    },
    /// A command failed.
    Error {
        /// The failing command's cookie.
        cookie: Cookie,
        /// Why.
        error: ChannelError,
    },
}

/// What a channel runs on: the bypass engine, io_uring, epoll.
///
/// `submit` receives each flush (commands in queue order, the vector is to be drained);
/// `poll` runs the backend (network I/O, timers) and appends completions, waiting at most
/// `timeout` (`None`: until something completes or the backend is asked to stop) when there
/// is nothing to report. Completions of submitted commands that fail at once may be appended
/// by `submit` itself.
pub trait Backend {
    /// Takes a batch of commands.
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>);

    /// Runs the backend; appends completions.
    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>);

    /// Whether the runtime asked the application to stop (e.g. SIGINT/SIGTERM).
    fn is_stopping(&self) -> bool {
        false
    }
}

/// Counters of a channel.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChannelStats {
    /// Commands queued.
    pub commands: u64,
    /// Flushes (batches handed to the backend).
    pub flushes: u64,
    /// Dispatch calls.
    pub dispatches: u64,
    /// Completions returned.
    pub completions: u64,
}

/// One core's channel over backend `B`. See the crate docs.
pub struct Channel<B: Backend> {
    backend: B,
    queue: Vec<Command>,
    completions: Vec<Completion>,
    /// A drained vector handed back by the application, reused by the next dispatch.
    spare: Vec<Completion>,
    threshold: usize,
    stats: ChannelStats,
}

impl<B: Backend> Channel<B> {
    /// A channel over `backend`.
    pub fn new(backend: B) -> Self {
        Self {
            backend,
            queue: Vec::with_capacity(64),
            completions: Vec::with_capacity(256),
            spare: Vec::new(),
            threshold: 64,
            stats: ChannelStats::default(),
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The backend, mutably.
    pub fn backend_mut(&mut self) -> &mut B {
        &mut self.backend
    }

    /// Consumes the channel, returning the backend.
    pub fn into_backend(self) -> B {
        self.backend
    }

    /// Queue length at which commands are flushed without waiting for `dispatch`.
    pub fn batch_threshold(&self) -> usize {
        self.threshold
    }

    /// Sets the flush threshold (at least 1).
    pub fn set_batch_threshold(&mut self, n: usize) {
        self.threshold = n.max(1);
    }

    /// Counters.
    pub fn stats(&self) -> ChannelStats {
        self.stats
    }

    /// Commands queued and not yet flushed.
    pub fn queued(&self) -> usize {
        self.queue.len()
    }

    /// Whether the runtime asked the application to stop.
    pub fn is_stopping(&self) -> bool {
        self.backend.is_stopping()
    }

    /// Queues any command.
    pub fn push(&mut self, cmd: Command) {
        self.queue.push(cmd);
        self.stats.commands += 1;
        if self.queue.len() >= self.threshold {
            self.flush();
        }
    }

    /// Listens on `addr` with this core's own accept queue.
    pub fn listen(&mut self, addr: SocketAddrV4, backlog: u32, cookie: Cookie) {
        self.push(Command::Listen {
            addr,
            backlog,
            cookie,
        });
    }

    /// Accepts one connection, or all of them (`multishot`).
    pub fn accept(&mut self, listener: Handle, multishot: bool, cookie: Cookie) {
        self.push(Command::Accept {
            listener,
            multishot,
            cookie,
        });
    }

    /// Opens a connection.
    pub fn connect(&mut self, remote: SocketAddrV4, cookie: Cookie) {
        self.push(Command::Connect { remote, cookie });
    }

    /// Reads the next bytes.
    pub fn read(&mut self, handle: Handle, cookie: Cookie) {
        self.push(Command::Read { handle, cookie });
    }

    /// Writes all of `data`.
    pub fn write(&mut self, handle: Handle, data: Vec<u8>, cookie: Cookie) {
        self.push(Command::Write {
            handle,
            data,
            cookie,
        });
    }

    /// Shuts the write side down.
    pub fn shutdown(&mut self, handle: Handle, cookie: Cookie) {
        self.push(Command::Shutdown { handle, cookie });
    }

    /// Closes a connection or listener.
    pub fn close(&mut self, handle: Handle, cookie: Cookie) {
        self.push(Command::Close { handle, cookie });
    }

    /// Resets a connection (RST): no closing handshake, no TIME-WAIT on either side.
    pub fn abort(&mut self, handle: Handle, cookie: Cookie) {
        self.push(Command::Abort { handle, cookie });
    }

    /// Sets an option.
    pub fn set_opt(&mut self, handle: Handle, opt: SockOpt, cookie: Cookie) {
        self.push(Command::SetOpt {
            handle,
            opt,
            cookie,
        });
    }

    /// Hands the queued commands to the backend now.
    pub fn flush(&mut self) {
        if self.queue.is_empty() {
            return;
        }
        self.stats.flushes += 1;
        self.backend.submit(&mut self.queue, &mut self.completions);
        self.queue.clear();
    }

    /// Flushes queued commands, runs the backend, and returns the completions (waiting at
    /// most `timeout` when none are ready; `None` waits until one is).
    pub fn dispatch(&mut self, timeout: Option<Duration>) -> Vec<Completion> {
        self.stats.dispatches += 1;
        self.flush();
        let wait = if self.completions.is_empty() {
            timeout
        } else {
            Some(Duration::ZERO)
        };
        self.backend.poll(wait, &mut self.completions);
        self.stats.completions += self.completions.len() as u64;
        let fresh = std::mem::take(&mut self.spare);
        std::mem::replace(&mut self.completions, fresh)
    }

    /// Hands a drained completion vector back, so that the next dispatch reuses its
    /// allocation instead of making one.
    pub fn recycle(&mut self, mut v: Vec<Completion>) {
        v.clear();
        if v.capacity() > self.spare.capacity() {
            self.spare = v;
        }
    }
}

/// A backend that completes nothing: for doc examples and tests of the channel itself.
#[derive(Debug, Default)]
pub struct NullBackend {
    /// Every batch received, in order.
    pub batches: Vec<Vec<Command>>,
}

impl Backend for NullBackend {
    fn submit(&mut self, commands: &mut Vec<Command>, _out: &mut Vec<Completion>) {
        self.batches.push(std::mem::take(commands));
    }

    fn poll(&mut self, _timeout: Option<Duration>, _out: &mut Vec<Completion>) {}

    fn is_stopping(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_queued_before_a_dispatch_are_one_flush() {
        let mut ch = Channel::new(NullBackend::default());
        let h = Handle::new(1, 3, 1);
        for i in 0..10 {
            ch.write(h, vec![i as u8; 8], i);
        }
        assert_eq!(ch.queued(), 10);
        assert_eq!(ch.stats().flushes, 0);
        let _ = ch.dispatch(Some(Duration::ZERO));
        assert_eq!(ch.stats().flushes, 1);
        assert_eq!(ch.backend().batches.len(), 1);
        assert_eq!(ch.backend().batches[0].len(), 10);
        assert_eq!(ch.backend().batches[0][9].cookie(), 9);
    }

    #[test]
    fn the_threshold_flushes_early_and_explicit_flush_works() {
        let mut ch = Channel::new(NullBackend::default());
        ch.set_batch_threshold(4);
        let h = Handle::new(1, 0, 1);
        for i in 0..9 {
            ch.read(h, i);
        }
        assert_eq!(ch.stats().flushes, 2);
        assert_eq!(ch.queued(), 1);
        ch.flush();
        assert_eq!(ch.stats().flushes, 3);
        ch.flush();
        assert_eq!(ch.stats().flushes, 3, "an empty flush is no flush");
        let sizes: Vec<_> = ch.backend().batches.iter().map(Vec::len).collect();
        assert_eq!(sizes, vec![4, 4, 1]);
    }
}
