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
//! # The rules
//!
//! Which command may follow which, what a close does to pending reads and writes, how a
//! reset fails what is pending: the [`ledger`] applies them, the same for every backend (one
//! read and one accept pending at a time, no write after shutdown, a close completes the
//! pending writes and sends them before the FIN, a reset or abort fails each pending
//! operation with [`ChannelError::Reset`]). A backend keeps its handles in a [`Ledger`] and
//! supplies only its operations ([`ledger::Transport`]); this crate does no I/O itself.
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

#![forbid(unsafe_code)]

use core::net::SocketAddrV4;
use std::time::Duration;

mod command;
mod error;
mod handle;
pub mod ledger;
mod table;

pub use command::{Command, Completion, Cookie, SockOpt};
pub use error::{
    AcceptError, ChannelError, ConnectError, Errno, HandleKind, ListenError, OptError, StateError,
};
pub use handle::{Handle, new_owner_tag};
pub use ledger::Ledger;
pub use table::HandleTable;

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
