//! The io_uring backend: the same channel API over the Linux kernel's TCP, done the way a
//! performance engineer would use io_uring in 2026.
//!
//! * **One ring per core**, `SINGLE_ISSUER` + `DEFER_TASKRUN`: the kernel does the network
//!   work for this ring only when this core asks for completions.
//! * **Batched submission**: the commands of one channel flush become submission entries;
//!   one `io_uring_enter` per dispatch submits them all and reaps every completion.
//! * **Multishot accept into fixed (direct) descriptors**, one `SO_REUSEPORT` listener per
//!   core: accepted connections never enter the process's descriptor table.
//! * **Multishot receive with a provided buffer ring**: one receive request per connection
//!   for its whole life; the kernel picks a buffer per completion.
//!
//! These are the kernel's analogues of MegaPipe's ideas: the ring is a batched completion
//! channel, fixed descriptors are lightweight sockets, and `SO_REUSEPORT` gives each core
//! its own accept queue. The peer address of an accepted connection comes from
//! `getsockopt(SO_PEERNAME)` issued through the ring (direct descriptors have no
//! `getpeername`), in the same batch.
//!
//! # Driving it
//!
//! Create one per core thread with [`Uring::new`] (the ring must stay on that thread), wrap
//! it in a [`Channel`](megatcp_channel::Channel) and dispatch. Reads complete with everything
//! received so far (the kernel receives ahead of reads, up to [`INBOX_LIMIT`] bytes per
//! connection, then stops until the application reads); writes complete when the kernel
//! took the whole buffer (the ledger keeps one send in flight per connection, so bytes keep
//! their order); a connection closed with writes pending sends them, then closes. The rules
//! are the ledger's ([`megatcp_channel::ledger`]); this module holds only the ring's side.
//!
//! All `unsafe` of io_uring lives in [`crate::ring`].

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use megatcp_channel::ledger::{Accept, Progress, Receive, Send, Target, Transport};
use megatcp_channel::{
    AcceptError, Backend, ChannelError, Command, Completion, ConnectError, Cookie, Errno, Handle,
    HandleTable, Ledger, ListenError, OptError, SockOpt,
};
use socket2::SockRef;

use crate::ring::{Cqe, FileSlot, Op, OpId, OptValue, Payload, Ring, RingError};

pub use crate::ring::RingConfig as UringConfig;

/// Bytes a connection receives ahead of the application's reads before receiving pauses.
pub const INBOX_LIMIT: usize = 1 << 20;

// Token kinds (top four bits of a completion's token).
const K_ACCEPT: u64 = 1;
const K_PEER: u64 = 2;
const K_RECV: u64 = 3;
const K_SEND: u64 = 4;
const K_SHUT: u64 = 5;
const K_SOCKET: u64 = 6;
const K_CONNECT: u64 = 7;
const K_OPT: u64 = 8;
const K_IGNORE: u64 = 15;
/// The token of operations whose completion nothing waits for.
const IGNORE: u64 = K_IGNORE << 60;

fn token(kind: u64, h: Handle) -> u64 {
    (kind << 60) | ((u64::from(h.index()) & 0x0fff_ffff) << 32) | u64::from(h.generation())
}

fn untoken(t: u64) -> (u64, u32, u32) {
    (t >> 60, ((t >> 32) & 0x0fff_ffff) as u32, t as u32)
}

/// The error of a failed completion (`result` is `-errno`).
fn errno(result: i32) -> Errno {
    Errno(-result)
}

/// A connection's ring side.
struct Conn {
    slot: Option<FileSlot>,
    remote: SocketAddrV4,
    recv: Option<OpId>,
    /// Receiving paused: the inbox is full.
    paused: bool,
    /// The application closed the connection: receive nothing more.
    stopped: bool,
    inbox: VecDeque<Vec<u8>>,
    inbox_bytes: usize,
    eof: bool,
}

impl Conn {
    fn new(slot: Option<FileSlot>, remote: SocketAddrV4) -> Self {
        Self {
            slot,
            remote,
            recv: None,
            paused: false,
            stopped: false,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            eof: false,
        }
    }
}

struct Listener {
    /// Its own handle (the token of its accept).
    handle: Handle,
    sock: TcpListener,
    backlog: usize,
    op: Option<OpId>,
    /// Accepted connections (with their peer) waiting for an `Accept` command.
    ready: VecDeque<(FileSlot, SocketAddrV4)>,
}

/// Counters of the io_uring backend.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// `io_uring_enter` calls.
    pub enters: u64,
    /// Completions reaped.
    pub cqes: u64,
    /// Accepted connections closed at once (peer gone before its address was read, listener
    /// closed, or the listener's backlog full).
    pub accepts_dropped: u64,
    /// Times a multishot receive was re-armed (buffer ring empty, inbox drained).
    pub recv_rearms: u64,
}

/// Why the io_uring backend could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot set up io_uring: {0}")]
pub struct UringError(#[from] RingError);

/// The ring and what its operations need: the ledger's [`Transport`].
struct Io {
    ring: Ring,
    /// Accepted connections whose peer address is being read: (slot, listener).
    pending: HandleTable<(FileSlot, Handle)>,
    /// Socket options being set: (handle, cookie).
    opts: HandleTable<(Handle, Cookie)>,
    /// Submissions that failed, reported as backend errors.
    failed: Vec<Errno>,
    stats: UringStats,
}

/// The io_uring backend of one core. See the module docs.
pub struct Uring {
    ledger: Ledger<Conn, Listener>,
    io: Io,
    stop: Arc<AtomicBool>,
}

impl Uring {
    /// A backend with a ring of `config`'s sizes; `stop` is the runtime's stop flag.
    pub fn new(stop: Arc<AtomicBool>, config: &UringConfig) -> Result<Self, UringError> {
        Ok(Self {
            ledger: Ledger::new(),
            io: Io {
                ring: Ring::new(config)?,
                pending: HandleTable::new(),
                opts: HandleTable::new(),
                failed: Vec::new(),
                stats: UringStats::default(),
            },
            stop,
        })
    }

    /// Live handles.
    pub fn live_handles(&self) -> usize {
        self.ledger.live()
    }

    /// Counters.
    pub fn stats(&self) -> UringStats {
        self.io.stats
    }
}

impl Io {
    fn push(&mut self, t: u64, op: Op) -> Option<OpId> {
        match self.ring.push(t, op) {
            Ok(id) => Some(id),
            Err(e) => {
                self.failed.push(e.errno());
                None
            }
        }
    }

    /// Closes a fixed descriptor; nothing waits for the completion.
    fn close_slot(&mut self, file: FileSlot) {
        self.push(IGNORE, Op::Close { file });
    }

    fn arm_recv(&mut self, c: &mut Conn, h: Handle) {
        if c.recv.is_some() || c.eof || c.paused || c.stopped {
            return;
        }
        if let Some(slot) = c.slot {
            c.recv = self.push(token(K_RECV, h), Op::RecvMulti { file: slot });
        }
    }

    fn arm_accept(&mut self, l: &mut Listener) {
        let op = Op::AcceptMulti {
            listener: l.sock.as_raw_fd(),
        };
        l.op = self.push(token(K_ACCEPT, l.handle), op);
    }

    fn cancel_recv(&mut self, c: &mut Conn, h: Handle) {
        if let Some(id) = c.recv.take() {
            self.push(token(K_IGNORE, h), Op::Cancel(id));
        }
    }

    /// The option operations of `opt` on a connection's descriptor.
    fn opt_ops(slot: FileSlot, opt: SockOpt) -> Vec<Op> {
        let int = |level, name, v: i64| Op::SetOpt {
            file: slot,
            level,
            name,
            value: OptValue::Int(v.clamp(0, i64::from(i32::MAX)) as i32),
        };
        match opt {
            SockOpt::NoDelay(on) => vec![int(libc::IPPROTO_TCP, libc::TCP_NODELAY, i64::from(on))],
            SockOpt::KeepAlive(None) => vec![int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0)],
            SockOpt::KeepAlive(Some(d)) => {
                let secs = d.as_secs().max(1) as i64;
                vec![
                    int(libc::IPPROTO_TCP, libc::TCP_KEEPIDLE, secs),
                    int(libc::IPPROTO_TCP, libc::TCP_KEEPINTVL, secs),
                    int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 1),
                ]
            }
            SockOpt::BufferSizes { rx, tx } => vec![
                int(libc::SOL_SOCKET, libc::SO_RCVBUF, rx as i64),
                int(libc::SOL_SOCKET, libc::SO_SNDBUF, tx as i64),
            ],
        }
    }
}

impl Transport for Io {
    type Conn = Conn;
    type Listener = Listener;

    fn listen(
        &mut self,
        handle: Handle,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> Result<Listener, ListenError> {
        let s = crate::sockets::listener(addr, backlog)?;
        Ok(Listener {
            handle,
            sock: s.into(),
            backlog: backlog.max(1) as usize,
            op: None,
            ready: VecDeque::new(),
        })
    }

    fn accept(&mut self, l: &mut Listener, handle: Handle) -> Accept<Conn> {
        if l.op.is_none_or(|id| !self.ring.is_live(id)) {
            self.arm_accept(l);
        }
        let Some((slot, peer)) = l.ready.pop_front() else {
            return Accept::Empty;
        };
        let mut c = Conn::new(Some(slot), peer);
        self.arm_recv(&mut c, handle);
        Accept::Conn(c, peer)
    }

    fn connect(&mut self, handle: Handle, remote: SocketAddrV4) -> Result<Conn, ConnectError> {
        self.ring
            .push(token(K_SOCKET, handle), Op::Socket)
            .map_err(|e| ConnectError::Os(e.errno()))?;
        Ok(Conn::new(None, remote))
    }

    fn receive(&mut self, c: &mut Conn, h: Handle, buf: &mut Vec<u8>) -> Receive {
        let Some(first) = c.inbox.pop_front() else {
            return if c.eof {
                Receive::Eof
            } else {
                Receive::Nothing
            };
        };
        // The first received buffer becomes the read's; the empty one goes to the ring.
        let spare = std::mem::replace(buf, first);
        self.ring.recycle(spare);
        while let Some(more) = c.inbox.pop_front() {
            buf.extend_from_slice(&more);
            self.ring.recycle(more);
        }
        c.inbox_bytes = 0;
        if c.paused {
            c.paused = false;
            self.stats.recv_rearms += 1;
            self.arm_recv(c, h);
        }
        Receive::Data
    }

    fn send(&mut self, c: &mut Conn, h: Handle, data: &mut Vec<u8>, offset: usize) -> Send {
        let Some(file) = c.slot else {
            return Send::Failed;
        };
        let data = std::mem::take(data);
        match self.push(token(K_SEND, h), Op::Send { file, data, offset }) {
            Some(_) => Send::InFlight,
            None => Send::Failed,
        }
    }

    fn shutdown(&mut self, c: &mut Conn, h: Handle) -> Progress {
        let Some(file) = c.slot else {
            return Progress::Done;
        };
        match self.push(token(K_SHUT, h), Op::ShutdownWrite { file }) {
            Some(_) => Progress::InFlight,
            None => Progress::Done,
        }
    }

    fn closing(&mut self, c: &mut Conn, h: Handle) {
        c.stopped = true;
        self.cancel_recv(c, h);
        for b in c.inbox.drain(..) {
            self.ring.recycle(b);
        }
    }

    fn close(&mut self, mut c: Conn, h: Handle) {
        self.cancel_recv(&mut c, h);
        for b in c.inbox {
            self.ring.recycle(b);
        }
        if let Some(slot) = c.slot {
            self.close_slot(slot);
        }
    }

    fn abort(&mut self, c: Conn, h: Handle) {
        if let Some(slot) = c.slot {
            // SO_LINGER 0: the close sends a RST.
            let linger = Op::SetOpt {
                file: slot,
                level: libc::SOL_SOCKET,
                name: libc::SO_LINGER,
                value: OptValue::Linger(true, 0),
            };
            self.push(token(K_IGNORE, h), linger);
            self.push(token(K_IGNORE, h), Op::CancelFile(slot));
            self.close_slot(slot);
        }
    }

    fn close_listener(&mut self, l: Listener, h: Handle) {
        if let Some(id) = l.op.filter(|id| self.ring.is_live(*id)) {
            // By user data: the listener's descriptor closes right after (the request keeps
            // its own reference to the socket until cancelled).
            self.push(token(K_IGNORE, h), Op::Cancel(id));
        }
        for (slot, _) in l.ready {
            self.stats.accepts_dropped += 1;
            self.close_slot(slot);
        }
    }

    fn set_opt(
        &mut self,
        target: Target<'_, Conn, Listener>,
        handle: Handle,
        opt: SockOpt,
        cookie: Cookie,
    ) -> Result<Progress, OptError> {
        let slot = match target {
            Target::Listener(l) => {
                crate::sockets::set_opt(SockRef::from(&l.sock), opt)?;
                return Ok(Progress::Done);
            }
            Target::Conn(c) => c.slot.ok_or(OptError::NotConnected)?,
        };
        // Every option of the command reports through one record; the completion comes
        // when the last one is done.
        let ops = Self::opt_ops(slot, opt);
        let n = ops.len();
        let rec = self.opts.insert((handle, cookie));
        for (i, op) in ops.into_iter().enumerate() {
            let kind = if i + 1 == n { K_OPT } else { K_IGNORE };
            self.push(token(kind, rec), op);
        }
        Ok(Progress::InFlight)
    }
}

impl Uring {
    fn on_cqe(&mut self, cqe: Cqe, out: &mut Vec<Completion>) {
        self.io.stats.cqes += 1;
        let (kind, index, generation) = untoken(cqe.token);
        let h = self.ledger.handle(index, generation);
        match (kind, h) {
            (K_ACCEPT, _) => self.on_accept(h, cqe, out),
            (K_PEER, _) => self.on_peer(index, generation, cqe, out),
            (K_RECV, Some(h)) => self.on_recv(h, cqe, out),
            (K_SEND, Some(h)) => {
                if let Payload::Sent(data, _) = cqe.payload {
                    let result = if cqe.result < 0 {
                        Err(errno(cqe.result))
                    } else {
                        Ok(cqe.result as usize)
                    };
                    self.ledger.sent(&mut self.io, h, data, result, out);
                }
            }
            (K_SHUT, Some(h)) => {
                let result = if cqe.result < 0 {
                    Err(errno(cqe.result))
                } else {
                    Ok(())
                };
                self.ledger.shut(&mut self.io, h, result, out);
            }
            (K_SOCKET, _) => self.on_socket(h, cqe, out),
            (K_CONNECT, Some(h)) => {
                if cqe.result < 0 {
                    let e = crate::sockets::connect_error(errno(cqe.result));
                    return self.ledger.connect_failed(&mut self.io, h, e, out);
                }
                if let Some(c) = self.ledger.conn_mut(h) {
                    self.io.arm_recv(c, h);
                }
                self.ledger.connected(&mut self.io, h, out);
            }
            (K_OPT, _) => {
                let rec = self.io.opts.handle(index, generation);
                if let Some((handle, cookie)) = rec.and_then(|r| self.io.opts.remove(r)) {
                    let result = if cqe.result < 0 {
                        Err(OptError::Os(errno(cqe.result)))
                    } else {
                        Ok(())
                    };
                    Ledger::<Conn, Listener>::option_set(handle, cookie, result, out);
                }
            }
            // Ignored, or for a handle that is gone: give back what came with it.
            _ => {
                if let Payload::Data(v) | Payload::Sent(v, _) = cqe.payload {
                    self.io.ring.recycle(v);
                }
            }
        }
    }

    fn on_socket(&mut self, h: Option<Handle>, cqe: Cqe, out: &mut Vec<Completion>) {
        let Some((h, c)) = h.and_then(|h| Some((h, self.ledger.conn_mut(h)?))) else {
            if cqe.result >= 0 {
                self.io.close_slot(FileSlot(cqe.result as u32));
            }
            return;
        };
        if cqe.result < 0 {
            let e = ConnectError::Os(errno(cqe.result));
            return self.ledger.connect_failed(&mut self.io, h, e, out);
        }
        let slot = FileSlot(cqe.result as u32);
        c.slot = Some(slot);
        let nodelay = Op::SetOpt {
            file: slot,
            level: libc::IPPROTO_TCP,
            name: libc::TCP_NODELAY,
            value: OptValue::Int(1),
        };
        let connect = Op::Connect {
            file: slot,
            addr: c.remote,
        };
        self.io.push(token(K_IGNORE, h), nodelay);
        if self.io.push(token(K_CONNECT, h), connect).is_none() {
            let e = ConnectError::Os(Errno(libc::EBUSY));
            self.ledger.connect_failed(&mut self.io, h, e, out);
        }
    }

    fn on_accept(&mut self, listener: Option<Handle>, cqe: Cqe, out: &mut Vec<Completion>) {
        let Some((listener, l)) = listener.and_then(|h| Some((h, self.ledger.listener_mut(h)?)))
        else {
            if cqe.result >= 0 {
                // The listener is gone: close what it accepted meanwhile.
                self.io.stats.accepts_dropped += 1;
                self.io.close_slot(FileSlot(cqe.result as u32));
            }
            return;
        };
        // The last completion of an accept: forget it, unless a newer one is armed already
        // (this one ended after a cancel or failure and a successor was started).
        if !cqe.more && l.op.is_some_and(|id| !self.io.ring.is_live(id)) {
            l.op = None;
        }
        if cqe.result < 0 {
            if cqe.result != -libc::ECANCELED {
                // E.g. out of fixed descriptors: reported; the next Accept re-arms.
                let e = AcceptError(errno(cqe.result));
                self.ledger.accept_failed(listener, e, out);
            }
            return;
        }
        let file = FileSlot(cqe.result as u32);
        if l.ready.len() >= l.backlog {
            self.io.stats.accepts_dropped += 1;
            self.io.close_slot(file);
        } else {
            let p = self.io.pending.insert((file, listener));
            self.io.push(token(K_PEER, p), Op::PeerName { file });
        }
        if !cqe.more && self.ledger.wants_accept(listener) {
            if let Some(l) = self.ledger.listener_mut(listener) {
                self.io.arm_accept(l);
            }
        }
    }

    fn on_peer(&mut self, index: u32, generation: u32, cqe: Cqe, out: &mut Vec<Completion>) {
        let p = self.io.pending.handle(index, generation);
        let Some((file, listener)) = p.and_then(|p| self.io.pending.remove(p)) else {
            return;
        };
        let peer = match cqe.payload {
            Payload::Peer(Some(p)) if cqe.result >= 0 => Some(p),
            _ => None,
        };
        let (Some(peer), Some(l)) = (peer, self.ledger.listener_mut(listener)) else {
            // The peer is already gone (or the listener is): nothing to hand out.
            self.io.stats.accepts_dropped += 1;
            self.io.close_slot(file);
            return;
        };
        l.ready.push_back((file, peer));
        self.ledger.acceptable(&mut self.io, listener, out);
    }

    fn on_recv(&mut self, h: Handle, cqe: Cqe, out: &mut Vec<Completion>) {
        let Some(c) = self.ledger.conn_mut(h) else {
            return;
        };
        // The last completion of a receive: forget it, unless a newer one is armed already
        // (a receive cancelled when the inbox filled ends after its successor started).
        if !cqe.more && c.recv.is_some_and(|id| !self.io.ring.is_live(id)) {
            c.recv = None;
        }
        match cqe.payload {
            Payload::Data(v) if !c.stopped => {
                c.inbox_bytes += v.len();
                c.inbox.push_back(v);
                if c.inbox_bytes >= INBOX_LIMIT && !c.paused {
                    // Let the kernel's socket buffer push back on the sender.
                    c.paused = true;
                    self.io.cancel_recv(c, h);
                }
                if !cqe.more {
                    self.io.stats.recv_rearms += 1;
                    self.io.arm_recv(c, h);
                }
                self.ledger.readable(&mut self.io, h, out);
            }
            Payload::Data(v) => self.io.ring.recycle(v),
            _ if cqe.result == 0 => {
                c.eof = true;
                self.ledger.readable(&mut self.io, h, out);
            }
            _ if cqe.result == -libc::ENOBUFS => {
                self.io.stats.recv_rearms += 1;
                self.io.arm_recv(c, h);
            }
            _ if cqe.result == -libc::ECANCELED => {}
            _ if cqe.result < 0 => self.ledger.reset(&mut self.io, h, out),
            _ => {}
        }
    }

    fn report_failed(&mut self, out: &mut Vec<Completion>) {
        out.extend(self.io.failed.drain(..).map(|e| Completion::Error {
            cookie: 0,
            error: ChannelError::Backend(e),
        }));
    }
}

impl Backend for Uring {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.ledger.submit(&mut self.io, cmd, out);
        }
        self.report_failed(out);
    }

    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) {
        let start = Instant::now();
        loop {
            let wait = crate::wait_time(timeout, start, out);
            self.io.stats.enters += 1;
            if let Err(e) = self.io.ring.enter(Some(wait)) {
                out.push(Completion::Error {
                    cookie: 0,
                    error: ChannelError::Backend(e.errno()),
                });
                return;
            }
            while let Some(cqe) = self.io.ring.completion() {
                self.on_cqe(cqe, out);
            }
            self.report_failed(out);
            if crate::poll_done(timeout, start, out, &self.stop) {
                return;
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
