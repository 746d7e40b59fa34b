//! The bypass backend's side of the ledger: the stack's operations as a
//! [`Transport`], and the stack's events fed back to the [`Ledger`].
//!
//! A handle's connection is the stack's [`ConnId`], its listener the stack's
//! [`ListenerId`]; two maps route the stack's events back to handles. Reads take everything
//! the connection's receive ring holds (copied once, into a buffer from the ledger's pool);
//! sends take what fits in the send buffer, the rest waits for [`Event::Writable`].

use core::net::SocketAddrV4;
use std::time::Instant as StdInstant;

use hashbrown::HashMap;
use megatcp_channel::ledger::{Accept, Progress, Receive, Send, Target, Transport};
use megatcp_channel::{
    Completion, ConnectError, Cookie, Handle, Ledger, ListenError, OptError, SockOpt,
};
use megatcp_stack::{
    BufferSizeError, ConnId, ConnectOpts, Event, Instant, ListenerId, RecvError, Stack,
};

/// A connection of the bypass backend.
pub(crate) struct Conn {
    id: ConnId,
    /// The stack released the connection (orderly end after both FINs): reads see end of
    /// stream, the id is stale.
    finished: bool,
}

/// The ledger of the bypass backend.
pub(crate) type BypassLedger = Ledger<Conn, ListenerId>;

/// The stack, and the maps from its ids back to handles.
pub(crate) struct StackIo {
    pub(crate) stack: Stack,
    start: StdInstant,
    by_conn: HashMap<ConnId, Handle>,
    by_listener: HashMap<ListenerId, Handle>,
}

impl StackIo {
    /// The stack, with its clock starting at `start`.
    pub(crate) fn new(stack: Stack, start: StdInstant) -> Self {
        Self {
            stack,
            start,
            by_conn: HashMap::new(),
            by_listener: HashMap::new(),
        }
    }

    /// The stack's time at `at`.
    pub(crate) fn at(&self, at: StdInstant) -> Instant {
        stack_time(self.start, at)
    }

    /// When the stack's clock started (its time zero).
    pub(crate) fn origin(&self) -> StdInstant {
        self.start
    }
}

/// The time of a stack whose clock started at `origin`, at `at`.
pub(crate) fn stack_time(origin: StdInstant, at: StdInstant) -> Instant {
    Instant::from_micros(at.saturating_duration_since(origin).as_micros() as i64)
}

impl Transport for StackIo {
    type Conn = Conn;
    type Listener = ListenerId;

    fn listen(
        &mut self,
        handle: Handle,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> Result<ListenerId, ListenError> {
        use megatcp_stack::ListenError as E;
        let id = self
            .stack
            .listen(addr, Some(backlog.max(1) as usize))
            .map_err(|e| match e {
                E::NotLocal(ip) => ListenError::NotLocal(ip),
                E::ZeroPort => ListenError::ZeroPort,
                E::InUse(_) => ListenError::InUse,
                E::ZeroBacklog => ListenError::ZeroBacklog,
            })?;
        self.by_listener.insert(id, handle);
        Ok(id)
    }

    fn accept(&mut self, listener: &mut ListenerId, handle: Handle) -> Accept<Conn> {
        let Some((id, peer)) = self.stack.accept(*listener) else {
            return Accept::Empty;
        };
        self.by_conn.insert(id, handle);
        Accept::Conn(
            Conn {
                id,
                finished: false,
            },
            peer,
        )
    }

    fn connect(&mut self, handle: Handle, remote: SocketAddrV4) -> Result<Conn, ConnectError> {
        use megatcp_stack::ConnectError as E;
        let now = self.at(StdInstant::now());
        let id = self
            .stack
            .connect(now, remote, ConnectOpts::default())
            .map_err(|e| match e {
                E::BadRemote(_) => ConnectError::BadRemote,
                // The last two need source options, which the channel never gives.
                E::NoFreePort(_) | E::PortInUse(_) | E::NotLocal(_) => ConnectError::NoFreePort,
            })?;
        self.by_conn.insert(id, handle);
        Ok(Conn {
            id,
            finished: false,
        })
    }

    fn receive(&mut self, c: &mut Conn, _: Handle, buf: &mut Vec<u8>) -> Receive {
        if c.finished {
            return Receive::Eof;
        }
        let avail = self.stack.recv_queue(c.id).unwrap_or(0);
        if avail == 0 {
            return match self.stack.recv(c.id, &mut []) {
                Err(RecvError::Finished) => Receive::Eof,
                _ => Receive::Nothing,
            };
        }
        buf.reserve(avail);
        while buf.len() < avail {
            let got = self.stack.recv_with(c.id, |bytes| {
                buf.extend_from_slice(bytes);
                bytes.len()
            });
            if !matches!(got, Ok(n) if n > 0) {
                break;
            }
        }
        Receive::Data
    }

    fn send(&mut self, c: &mut Conn, _: Handle, data: &mut Vec<u8>, offset: usize) -> Send {
        if c.finished {
            return Send::Failed;
        }
        match self
            .stack
            .send(c.id, data.get(offset..).unwrap_or_default())
        {
            Ok(n) => Send::Taken(n),
            Err(_) => Send::Failed,
        }
    }

    fn shutdown(&mut self, c: &mut Conn, _: Handle) -> Progress {
        if !c.finished {
            let _ = self.stack.shutdown(c.id);
        }
        Progress::Done
    }

    fn close(&mut self, c: Conn, _: Handle) {
        self.by_conn.remove(&c.id);
        if !c.finished {
            let _ = self.stack.close(c.id);
        }
    }

    fn abort(&mut self, c: Conn, _: Handle) {
        self.by_conn.remove(&c.id);
        if !c.finished {
            let _ = self.stack.abort(c.id);
        }
    }

    fn close_listener(&mut self, id: ListenerId, _: Handle) {
        self.by_listener.remove(&id);
        let _ = self.stack.unlisten(id);
    }

    fn set_opt(
        &mut self,
        target: Target<'_, Conn, ListenerId>,
        _: Handle,
        opt: SockOpt,
        _: Cookie,
    ) -> Result<Progress, OptError> {
        let gone = |_| OptError::NotConnected;
        match (target, opt) {
            (Target::Conn(c), SockOpt::NoDelay(on)) => {
                self.stack.set_nodelay(c.id, on).map_err(gone)
            }
            (Target::Conn(c), SockOpt::KeepAlive(d)) => {
                let d = d.map(|d| megatcp_stack::Duration::from_micros(d.as_micros() as u64));
                self.stack.set_keep_alive(c.id, d).map_err(gone)
            }
            (Target::Listener(l), SockOpt::BufferSizes { rx, tx }) => self
                .stack
                .set_listener_buffers(*l, rx, tx)
                .map_err(|e| match e {
                    BufferSizeError::Stale => OptError::NotConnected,
                    BufferSizeError::OutOfRange { rx, tx } => OptError::OutOfRange { rx, tx },
                }),
            (_, opt) => Err(OptError::Unsupported(opt)),
        }?;
        Ok(Progress::Done)
    }
}

/// Turns the stack's events into ledger events (and so into completions).
pub(crate) fn on_events(ledger: &mut BypassLedger, io: &mut StackIo, out: &mut Vec<Completion>) {
    while let Some(e) = io.stack.next_event() {
        match e {
            Event::Acceptable { listener } => {
                if let Some(&h) = io.by_listener.get(&listener) {
                    ledger.acceptable(io, h, out);
                }
            }
            Event::Connected { conn }
            | Event::Readable { conn }
            | Event::PeerClosed { conn }
            | Event::Writable { conn } => {
                let Some(&h) = io.by_conn.get(&conn) else {
                    continue;
                };
                match e {
                    Event::Connected { .. } => ledger.connected(io, h, out),
                    Event::Writable { .. } => ledger.writable(io, h, out),
                    _ => ledger.readable(io, h, out),
                }
            }
            // The stack released the connection: its id is not to be used again.
            Event::ConnectFailed { conn } | Event::Closed { conn } | Event::Reset { conn } => {
                let Some(h) = io.by_conn.remove(&conn) else {
                    continue;
                };
                finished(ledger, h);
                match e {
                    Event::ConnectFailed { .. } => {
                        ledger.connect_failed(io, h, ConnectError::RefusedOrTimedOut, out);
                    }
                    Event::Reset { .. } => ledger.reset(io, h, out),
                    // An orderly end of a connection the application still holds (it shut
                    // down and the peer closed): reads see end of stream.
                    _ => {
                        ledger.readable(io, h, out);
                        ledger.writable(io, h, out);
                    }
                }
            }
        }
    }
}

/// Marks `h`'s connection released by the stack.
fn finished(ledger: &mut BypassLedger, h: Handle) {
    if let Some(c) = ledger.conn_mut(h) {
        c.finished = true;
    }
}
