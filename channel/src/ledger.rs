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
    AcceptError, ChannelError, Command, Completion, ConnectError, Cookie, Errno, Handle,
    HandleKind, HandleTable, ListenError, OptError, SockOpt, StateError,
};

/// Buffers the pool keeps at most.
const POOL_MAX: usize = 1024;
/// Largest buffer the pool keeps (bytes of capacity).
const POOL_BUFFER_MAX: usize = 1 << 20;

/// What a transport's `accept` found.
#[derive(Debug)]
pub enum Accept<C> {
    /// A connection, and its peer.
    Conn(C, SocketAddrV4),
    /// No connection waits.
    Empty,
    /// Accepting failed; the ledger reports it on the pending `Accept` and stops pulling.
    Failed(AcceptError),
}

/// What a transport's `receive` did with the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Bytes were appended.
    Data,
    /// Nothing to read now; the backend calls [`Ledger::readable`] when there is.
    Nothing,
    /// End of stream: the peer closed its side and every byte was read.
    Eof,
    /// The connection failed: the ledger resets it.
    Failed,
}

/// What a transport's `send` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// It took this many bytes from the offset; fewer than offered means it is full until
    /// the backend calls [`Ledger::writable`].
    Taken(usize),
    /// It took the buffer (left empty in the ledger) and hands it back with [`Ledger::sent`].
    InFlight,
    /// The connection failed: the ledger resets it.
    Failed,
}

/// Whether a shutdown or option is done, or left in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Done now.
    Done,
    /// In flight: the backend reports the end ([`Ledger::shut`], [`Ledger::option_set`]).
    InFlight,
}

/// The handle an option applies to.
#[derive(Debug)]
pub enum Target<'a, C, L> {
    /// A connection.
    Conn(&'a mut C),
    /// A listener.
    Listener(&'a mut L),
}

/// A backend's own operations; see the module docs. `Conn` and `Listener` are what the
/// backend keeps for one connection or listener (a stack connection id, a socket, a fixed
/// descriptor slot); the ledger stores them beside its own state. Each operation is told
/// the handle it works for, so that the backend can route its events back.
pub trait Transport {
    /// A connection's backend state.
    type Conn;
    /// A listener's backend state.
    type Listener;

    /// Starts listening; `handle` is the listener's handle.
    fn listen(
        &mut self,
        handle: Handle,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> Result<Self::Listener, ListenError>;

    /// Takes one established connection of `listener`, which will be `handle`.
    fn accept(&mut self, listener: &mut Self::Listener, handle: Handle) -> Accept<Self::Conn>;

    /// Starts opening a connection, which will be `handle`; the backend reports the end
    /// with [`Ledger::connected`] or [`Ledger::connect_failed`].
    fn connect(&mut self, handle: Handle, remote: SocketAddrV4)
    -> Result<Self::Conn, ConnectError>;

    /// Appends the bytes that are there to `buf` (empty, from the pool).
    fn receive(&mut self, conn: &mut Self::Conn, handle: Handle, buf: &mut Vec<u8>) -> Receive;

    /// Sends `data[offset..]` (never empty).
    fn send(
        &mut self,
        conn: &mut Self::Conn,
        handle: Handle,
        data: &mut Vec<u8>,
        offset: usize,
    ) -> Send;

    /// Shuts the write side down (every write before it was taken).
    fn shutdown(&mut self, conn: &mut Self::Conn, handle: Handle) -> Progress;

    /// The application closed the connection, which still has writes to send (it is closed
    /// with [`Transport::close`] once they are): e.g. stop receiving.
    fn closing(&mut self, conn: &mut Self::Conn, handle: Handle) {
        let _ = (conn, handle);
    }

    /// Closes the connection gracefully (FIN after what was sent), or releases what is left
    /// of one that failed.
    fn close(&mut self, conn: Self::Conn, handle: Handle);

    /// Resets the connection (RST).
    fn abort(&mut self, conn: Self::Conn, handle: Handle);

    /// Stops listening.
    fn close_listener(&mut self, listener: Self::Listener, handle: Handle);

    /// Applies an option; when it is left in flight the backend reports the end with
    /// [`Ledger::option_set`] and this `cookie`.
    fn set_opt(
        &mut self,
        target: Target<'_, Self::Conn, Self::Listener>,
        handle: Handle,
        opt: SockOpt,
        cookie: Cookie,
    ) -> Result<Progress, OptError>;
}

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

    /// A buffer from the pool (empty).
    pub fn buffer(&mut self) -> Vec<u8> {
        self.pool.pop().unwrap_or_default()
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

    /// The listener may have connections to hand out: accepts them while an `Accept` is
    /// pending.
    pub fn acceptable<T>(&mut self, io: &mut T, listener: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        loop {
            let handle = self.table.vacant();
            let Some(Entry::Listener(l)) = self.table.get_mut(listener) else {
                return;
            };
            let Some((cookie, multishot)) = l.accept else {
                return;
            };
            match io.accept(&mut l.io, handle) {
                Accept::Empty => return,
                Accept::Failed(e) => {
                    out.push(Completion::Error {
                        cookie,
                        error: ChannelError::Accept(listener, e),
                    });
                    return;
                }
                Accept::Conn(c, peer) => {
                    if !multishot {
                        l.accept = None;
                    }
                    let handle = self.table.insert(Entry::Conn(Conn::new(c, peer, None)));
                    out.push(Completion::Accepted {
                        listener,
                        handle,
                        peer,
                        cookie,
                    });
                }
            }
        }
    }

    /// Accepting on `listener` failed (a backend that accepts ahead of the commands): the
    /// pending `Accept` ends with the error.
    pub fn accept_failed(
        &mut self,
        listener: Handle,
        error: AcceptError,
        out: &mut Vec<Completion>,
    ) {
        if let Some(Entry::Listener(l)) = self.table.get_mut(listener)
            && let Some((cookie, _)) = l.accept.take()
        {
            out.push(Completion::Error {
                cookie,
                error: ChannelError::Accept(listener, error),
            });
        }
    }

    /// The transport completed the open of `handle`.
    pub fn connected<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        c.open = true;
        if let Some(cookie) = c.connect.take() {
            out.push(Completion::Connected { handle, cookie });
        }
        self.readable(io, handle, out);
        self.writable(io, handle, out);
    }

    /// The open of `handle` failed: the `Connect` fails with `error`, anything else pending
    /// with `Reset`; the handle is gone.
    pub fn connect_failed<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        error: ConnectError,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(mut c)) = self.remove_conn(handle) else {
            return;
        };
        if let Some(cookie) = c.connect.take() {
            out.push(Completion::Error {
                cookie,
                error: ChannelError::Connect(c.remote, error),
            });
        }
        fail_reset(handle, c.pending(), out);
        self.recycle_writes(c.writes);
        io.close(c.io, handle);
    }

    /// The connection was reset by the peer, timed out, or failed: every pending operation
    /// fails with `Reset`, then [`Completion::Reset`]; the handle is gone.
    pub fn reset<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.remove_conn(handle) else {
            return;
        };
        if !c.closed {
            fail_reset(handle, c.pending(), out);
            out.push(Completion::Reset { handle });
        }
        self.recycle_writes(c.writes);
        io.close(c.io, handle);
    }

    /// Removes a connection (not a listener), counting a closing one out.
    fn remove_conn(&mut self, handle: Handle) -> Option<Entry<C, L>> {
        match self.table.get(handle)? {
            Entry::Conn(c) => {
                if c.closed {
                    self.closing -= 1;
                }
                self.table.remove(handle)
            }
            Entry::Listener(_) => None,
        }
    }

    fn recycle_writes(&mut self, writes: VecDeque<PendingWrite>) {
        for w in writes {
            self.recycle(w.data);
        }
    }

    /// The connection may have bytes (or end of stream) to read: completes the pending
    /// `Read`, if any.
    pub fn readable<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        let Some(cookie) = c.read else { return };
        if !c.open {
            return;
        }
        if c.eof {
            c.read = None;
            out.push(Completion::Eof { handle, cookie });
            return;
        }
        let mut data = self.pool.pop().unwrap_or_default();
        match io.receive(&mut c.io, handle, &mut data) {
            Receive::Data => {
                c.read = None;
                out.push(Completion::Read {
                    handle,
                    data,
                    cookie,
                });
            }
            Receive::Nothing => self.recycle(data),
            Receive::Eof => {
                c.eof = true;
                c.read = None;
                out.push(Completion::Eof { handle, cookie });
                self.recycle(data);
            }
            Receive::Failed => {
                self.recycle(data);
                self.reset(io, handle, out);
            }
        }
    }

    /// The connection may take bytes: sends what is queued, then the shutdown, then (for a
    /// closed connection) closes it.
    pub fn writable<T>(&mut self, io: &mut T, handle: Handle, out: &mut Vec<Completion>)
    where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        if c.busy {
            return;
        }
        while let Some(w) = c.writes.front_mut().filter(|_| c.open) {
            if w.off < w.len {
                match io.send(&mut c.io, handle, &mut w.data, w.off) {
                    Send::Taken(n) => w.off += n,
                    Send::InFlight => {
                        c.busy = true;
                        return;
                    }
                    Send::Failed => return self.reset(io, handle, out),
                }
                if w.off < w.len {
                    return;
                }
            }
            if let Some(w) = c.writes.pop_front() {
                if !c.closed {
                    out.push(Completion::Written {
                        handle,
                        len: w.len,
                        cookie: w.cookie,
                    });
                }
                if self.pool.len() < POOL_MAX && w.data.capacity() <= POOL_BUFFER_MAX {
                    let mut b = w.data;
                    b.clear();
                    self.pool.push(b);
                }
            }
        }
        if !c.writes.is_empty() {
            return;
        }
        if c.closed {
            if let Some(Entry::Conn(c)) = self.remove_conn(handle) {
                io.close(c.io, handle);
            }
            return;
        }
        if c.open && c.shutdown.is_some() {
            match io.shutdown(&mut c.io, handle) {
                Progress::Done => {
                    if let Some(cookie) = c.shutdown.take() {
                        out.push(Completion::ShutDown { handle, cookie });
                    }
                }
                Progress::InFlight => c.busy = true,
            }
        }
    }

    /// A send left in flight ended: the transport hands the buffer back with the bytes it
    /// sent, or the error.
    pub fn sent<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        data: Vec<u8>,
        result: Result<usize, Errno>,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return self.recycle(data);
        };
        c.busy = false;
        match (result, c.writes.front_mut()) {
            (Ok(n), Some(w)) => {
                w.data = data;
                w.off += n;
                self.writable(io, handle, out);
            }
            _ => {
                self.recycle(data);
                self.reset(io, handle, out);
            }
        }
    }

    /// A shutdown left in flight ended.
    pub fn shut<T>(
        &mut self,
        io: &mut T,
        handle: Handle,
        result: Result<(), Errno>,
        out: &mut Vec<Completion>,
    ) where
        T: Transport<Conn = C, Listener = L>,
    {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        c.busy = false;
        if let Some(cookie) = c.shutdown.take() {
            out.push(match result {
                Ok(()) => Completion::ShutDown { handle, cookie },
                Err(e) => Completion::Error {
                    cookie,
                    error: ChannelError::Shutdown(handle, e),
                },
            });
        }
        if c.closed {
            self.writable(io, handle, out);
        }
    }

    /// An option left in flight ended.
    pub fn option_set(
        handle: Handle,
        cookie: Cookie,
        result: Result<(), OptError>,
        out: &mut Vec<Completion>,
    ) {
        out.push(match result {
            Ok(()) => Completion::OptSet { handle, cookie },
            Err(e) => Completion::Error {
                cookie,
                error: ChannelError::SetOpt(handle, e),
            },
        });
    }
}
