//! The command ledger: what every backend keeps behind each handle, and every rule of the
//! channel, written once.
//!
//! A backend (the bypass engine, epoll, io_uring) owns a [`Ledger`] and implements
//! [`Transport`]: the operations on its own connections and listeners (listen, accept,
//! connect, send, receive, shutdown, close, abort, options). The ledger runs each
//! [`Command`] against the handle's state and calls those operations; the backend feeds its
//! events back (a connection became readable, a send completed, the peer reset it), and the
//! ledger turns them into [`Completion`]s. Per handle the ledger keeps the pending cookies
//! (accept, connect, read, shutdown), the write queue with its offsets, and whether the
//! application has closed the handle while its writes still go out. It also keeps the pool
//! of byte buffers that reads are filled into and finished writes return to.
//!
//! # The rules
//!
//! * One `Accept` pending per listener, one `Read` per connection; no `Write` after
//!   `Shutdown`, one `Shutdown`; an empty `Write` completes at once.
//! * Writes go out in order, one at a time. A write completes ([`Completion::Written`]) when
//!   the transport took its last byte; `Shutdown` waits for the writes queued before it.
//! * `Close` ends a pending `Read` or `Connect` with [`StateError::ClosedWhileReading`] /
//!   [`StateError::ClosedWhileConnecting`], completes the pending writes and shutdown at once
//!   (the transport still sends them, then the FIN), and makes the handle stale at once.
//!   Closing a listener ends its pending `Accept` with [`StateError::ListenerClosed`].
//! * `Abort`, a reset, or a failed transport fail every pending operation with
//!   [`ChannelError::Reset`]; a reset then reports [`Completion::Reset`]. A failed connect
//!   reports [`ChannelError::Connect`] for the `Connect` and `Reset` for the rest.
//!
//! # Completion-shaped operations
//!
//! An operation either completes at once or is left in flight: [`Transport::send`] returns
//! the bytes the transport took ([`Send::Taken`], fewer than offered means "wait for
//! [`Ledger::writable`]"), or [`Send::InFlight`] when it took the buffer itself (io_uring);
//! the backend hands it back with [`Ledger::sent`]. One send (or shutdown) is in flight per
//! connection at a time, so bytes keep their order. Receiving is pulled: when a read is
//! pending and the backend says the connection is readable, [`Transport::receive`] fills a
//! buffer from the pool with what is there (a kernel socket, the stack's receive ring, or
//! the bytes a multishot receive already delivered).

use core::net::SocketAddrV4;
use std::collections::VecDeque;

use crate::{
    ChannelError, Command, Completion, Cookie, Handle, HandleKind, HandleTable, StateError,
};

mod events;
mod transport;

pub use transport::{Accept, Progress, Receive, Send, Target, Transport};

/// Buffers the pool keeps at most.
const POOL_MAX: usize = 1024;
/// Largest buffer the pool keeps (bytes of capacity).
const POOL_BUFFER_MAX: usize = 1 << 20;

/// A write not yet taken whole.
struct PendingWrite {
    /// The bytes (empty while a transport holds them in flight).
    data: Vec<u8>,
    /// Bytes already taken.
    off: usize,
    len: usize,
    cookie: Cookie,
}

/// What the ledger keeps for one connection.
struct Conn<C> {
    io: C,
    remote: SocketAddrV4,
    /// The transport completed the open (accepted, or connected).
    open: bool,
    /// The pending `Connect`.
    connect: Option<Cookie>,
    read: Option<Cookie>,
    writes: VecDeque<PendingWrite>,
    /// The transport holds a send or a shutdown in flight.
    busy: bool,
    /// The pending `Shutdown` (waiting for the writes, or in flight).
    shutdown: Option<Cookie>,
    /// The write side is shut (or being shut) down.
    shut: bool,
    /// The transport reported end of stream.
    eof: bool,
    /// Closed by the application: the handle is stale, the writes still go out.
    closed: bool,
}

impl<C> Conn<C> {
    fn new(io: C, remote: SocketAddrV4, connect: Option<Cookie>) -> Self {
        Self {
            io,
            remote,
            open: connect.is_none(),
            connect,
            read: None,
            writes: VecDeque::new(),
            busy: false,
            shutdown: None,
            shut: false,
            eof: false,
            closed: false,
        }
    }

    /// Every pending operation's cookie, the `Connect` first.
    fn pending(&self) -> impl Iterator<Item = Cookie> + '_ {
        self.connect
            .into_iter()
            .chain(self.read)
            .chain(self.writes.iter().map(|w| w.cookie))
            .chain(self.shutdown)
    }
}

struct Listener<L> {
    io: L,
    /// The pending `Accept`: cookie, multishot.
    accept: Option<(Cookie, bool)>,
}

enum Entry<C, L> {
    Conn(Conn<C>),
    Listener(Listener<L>),
}

/// One core's handles, their pending commands and the rules; see the module docs.
pub struct Ledger<C, L> {
    table: HandleTable<Entry<C, L>>,
    /// Connections closed by the application whose writes still go out.
    closing: usize,
    pool: Vec<Vec<u8>>,
}

impl<C, L> Default for Ledger<C, L> {
    fn default() -> Self {
        Self::new()
    }
}

fn fail_reset(handle: Handle, cookies: impl Iterator<Item = Cookie>, out: &mut Vec<Completion>) {
    out.extend(cookies.map(|cookie| Completion::Error {
        cookie,
        error: ChannelError::Reset(handle),
    }));
}

fn refuse(handle: Handle, why: StateError) -> ChannelError {
    ChannelError::InvalidState(handle, why)
}

impl<C, L> Ledger<C, L> {
    /// An empty ledger with a handle tag of its own.
    pub fn new() -> Self {
        Self {
            table: HandleTable::new(),
            closing: 0,
            pool: Vec::new(),
        }
    }

    /// Handles the application holds (connections and listeners).
    pub fn live(&self) -> usize {
        self.table.len() - self.closing
    }

    /// Connections the application closed whose writes still go out.
    pub fn closing(&self) -> usize {
        self.closing
    }

    /// The handle of slot `index` at `generation`, if it is live (a closing connection
    /// included): for backends that read it back from an event.
    pub fn handle(&self, index: u32, generation: u32) -> Option<Handle> {
        self.table.handle(index, generation)
    }

    /// A connection's backend state (a closing one included).
    pub fn conn_mut(&mut self, handle: Handle) -> Option<&mut C> {
        match self.table.get_mut(handle)? {
            Entry::Conn(c) => Some(&mut c.io),
            Entry::Listener(_) => None,
        }
    }

    /// Whether `handle` is a connection the application closed (its writes still go out).
    pub fn is_closing(&self, handle: Handle) -> bool {
        matches!(self.table.get(handle), Some(Entry::Conn(c)) if c.closed)
    }

    /// A listener's backend state.
    pub fn listener_mut(&mut self, handle: Handle) -> Option<&mut L> {
        match self.table.get_mut(handle)? {
            Entry::Listener(l) => Some(&mut l.io),
            Entry::Conn(_) => None,
        }
    }

    /// Whether an `Accept` is pending on `listener`.
    pub fn wants_accept(&self, listener: Handle) -> bool {
        matches!(self.table.get(listener), Some(Entry::Listener(l)) if l.accept.is_some())
    }

    /// Gives a buffer back to the pool.
    pub fn recycle(&mut self, mut b: Vec<u8>) {
        if self.pool.len() < POOL_MAX && b.capacity() <= POOL_BUFFER_MAX && b.capacity() > 0 {
            b.clear();
            self.pool.push(b);
        }
    }

    /// Runs one command; its completions (or its error) go to `out`.
    pub fn submit<T>(&mut self, io: &mut T, cmd: Command, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let cookie = cmd.cookie();
        if let Err(error) = self.execute(io, cmd, out) {
            out.push(Completion::Error { cookie, error });
        }
    }

    /// A live connection the application holds.
    fn conn(&mut self, h: Handle) -> Result<&mut Conn<C>, ChannelError> {
        match self.table.get_mut(h) {
            Some(Entry::Conn(c)) if !c.closed => Ok(c),
            Some(Entry::Listener(_)) => Err(ChannelError::WrongKind(
                h,
                HandleKind::Listener,
                HandleKind::Connection,
            )),
            _ => Err(ChannelError::BadHandle(h)),
        }
    }

    fn execute<T>(
        &mut self,
        io: &mut T,
        cmd: Command,
        out: &mut Vec<Completion>,
    ) -> Result<(), ChannelError>
    where
        T: Transport<Conn = C, Listener = L>,
    {
        match cmd {
            Command::Listen {
                addr,
                backlog,
                cookie,
            } => {
                let handle = self.table.vacant();
                let l = io
                    .listen(handle, addr, backlog)
                    .map_err(|e| ChannelError::Listen(addr, e))?;
                let handle = self.table.insert(Entry::Listener(Listener {
                    io: l,
                    accept: None,
                }));
                out.push(Completion::Listening { handle, cookie });
            }
            Command::Accept {
                listener,
                multishot,
                cookie,
            } => {
                match self.table.get_mut(listener) {
                    Some(Entry::Listener(l)) if l.accept.is_some() => {
                        return Err(refuse(listener, StateError::AcceptPending));
                    }
                    Some(Entry::Listener(l)) => l.accept = Some((cookie, multishot)),
                    Some(Entry::Conn(c)) if !c.closed => {
                        return Err(ChannelError::WrongKind(
                            listener,
                            HandleKind::Connection,
                            HandleKind::Listener,
                        ));
                    }
                    _ => return Err(ChannelError::BadHandle(listener)),
                }
                self.acceptable(io, listener, out);
            }
            Command::Connect { remote, cookie } => {
                let handle = self.table.vacant();
                let c = io
                    .connect(handle, remote)
                    .map_err(|e| ChannelError::Connect(remote, e))?;
                self.table
                    .insert(Entry::Conn(Conn::new(c, remote, Some(cookie))));
            }
            Command::Read { handle, cookie } => {
                let c = self.conn(handle)?;
                if c.read.is_some() {
                    return Err(refuse(handle, StateError::ReadPending));
                }
                c.read = Some(cookie);
                self.readable(io, handle, out);
            }
            Command::Write {
                handle,
                data,
                cookie,
            } => {
                let c = self.conn(handle)?;
                if c.shut {
                    return Err(refuse(handle, StateError::WriteAfterShutdown));
                }
                if data.is_empty() {
                    out.push(Completion::Written {
                        handle,
                        len: 0,
                        cookie,
                    });
                    return Ok(());
                }
                c.writes.push_back(PendingWrite {
                    len: data.len(),
                    data,
                    off: 0,
                    cookie,
                });
                self.writable(io, handle, out);
            }
            Command::Shutdown { handle, cookie } => {
                let c = self.conn(handle)?;
                if c.shut {
                    return Err(refuse(handle, StateError::AlreadyShutDown));
                }
                c.shut = true;
                c.shutdown = Some(cookie);
                self.writable(io, handle, out);
            }
            Command::Close { handle, cookie } => self.close(io, handle, cookie, out)?,
            Command::Abort { handle, cookie } => {
                self.conn(handle)?;
                if let Some(Entry::Conn(c)) = self.table.remove(handle) {
                    fail_reset(handle, c.pending(), out);
                    self.recycle_writes(c.writes);
                    io.abort(c.io, handle);
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::SetOpt {
                handle,
                opt,
                cookie,
            } => {
                let target = match self.table.get_mut(handle) {
                    Some(Entry::Conn(c)) if !c.closed => Target::Conn(&mut c.io),
                    Some(Entry::Listener(l)) => Target::Listener(&mut l.io),
                    _ => return Err(ChannelError::BadHandle(handle)),
                };
                let progress = io
                    .set_opt(target, handle, opt, cookie)
                    .map_err(|e| ChannelError::SetOpt(handle, e))?;
                if progress == Progress::Done {
                    out.push(Completion::OptSet { handle, cookie });
                }
            }
        }
        Ok(())
    }

    fn close<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        cookie: Cookie,
        out: &mut Vec<Completion>,
    ) -> Result<(), ChannelError>
    where
        T: Transport<Conn = C, Listener = L>,
    {
        match self.table.get_mut(handle) {
            Some(Entry::Listener(_)) => {
                if let Some(Entry::Listener(l)) = self.table.remove(handle) {
                    if let Some((c, _)) = l.accept {
                        out.push(Completion::Error {
                            cookie: c,
                            error: refuse(handle, StateError::ListenerClosed),
                        });
                    }
                    io.close_listener(l.io, handle);
                }
            }
            Some(Entry::Conn(c)) if !c.closed => {
                let ended = [
                    (c.read.take(), StateError::ClosedWhileReading),
                    (c.connect.take(), StateError::ClosedWhileConnecting),
                ];
                for (cookie, why) in ended {
                    if let Some(cookie) = cookie {
                        out.push(Completion::Error {
                            cookie,
                            error: refuse(handle, why),
                        });
                    }
                }
                // The writes and the shutdown complete now: the transport still sends them,
                // then the FIN, as the shutdown would.
                for w in &c.writes {
                    out.push(Completion::Written {
                        handle,
                        len: w.len,
                        cookie: w.cookie,
                    });
                }
                if let Some(s) = c.shutdown.take() {
                    out.push(Completion::ShutDown { handle, cookie: s });
                }
                c.closed = true;
                self.closing += 1;
                if !c.writes.is_empty() || c.busy {
                    io.closing(&mut c.io, handle);
                }
                self.writable(io, handle, out);
            }
            _ => return Err(ChannelError::BadHandle(handle)),
        }
        out.push(Completion::Closed { handle, cookie });
        Ok(())
    }

    /// Closes every handle the application holds (as `Close` commands would; their
    /// completions go to `out`): for a runtime that stops.
    pub fn close_all<T>(&mut self, io: &mut T, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        for h in self.table.handles() {
            if !self.is_closing(h) {
                let _ = self.close(io, h, 0, out);
            }
        }
    }
}
