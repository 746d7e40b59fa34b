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
//! it in a [`Channel`](crate::Channel) and dispatch. Reads complete with everything
//! received so far (the kernel receives ahead of reads, up to [`INBOX_LIMIT`] bytes per
//! connection, then stops until the application reads); writes complete when the kernel
//! took the whole buffer (one send in flight per connection, so bytes keep their order); a
//! connection closed with writes pending sends them, then closes.
//!
//! All `unsafe` of io_uring lives in `megatcp_nic::uring`.

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::net::TcpListener;
use std::os::fd::AsRawFd;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use megatcp_nic::uring::{Cqe, FileSlot, Op, OpId, OptValue, Payload, Ring, RingError};
use socket2::SockRef;

use crate::{Backend, ChannelError, Command, Completion, Cookie, Handle, HandleTable, SockOpt};

pub use megatcp_nic::uring::RingConfig as UringConfig;

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

fn errno_text(result: i32) -> String {
    std::io::Error::from_raw_os_error(-result).to_string()
}

struct PendingWrite {
    /// `None` while the kernel holds it.
    data: Option<Vec<u8>>,
    len: usize,
    cookie: Cookie,
}

struct Conn {
    slot: Option<FileSlot>,
    remote: SocketAddrV4,
    connecting: Option<Cookie>,
    recv: Option<OpId>,
    /// Receiving paused: the inbox is full.
    paused: bool,
    read: Option<Cookie>,
    inbox: VecDeque<Vec<u8>>,
    inbox_bytes: usize,
    eof: bool,
    writes: VecDeque<PendingWrite>,
    sending: bool,
    shutdown: Option<Cookie>,
    shut: bool,
    /// Closed by the application; still sending what it wrote.
    closed: bool,
}

impl Conn {
    fn new(slot: Option<FileSlot>, remote: SocketAddrV4) -> Self {
        Self {
            slot,
            remote,
            connecting: None,
            recv: None,
            paused: false,
            read: None,
            inbox: VecDeque::new(),
            inbox_bytes: 0,
            eof: false,
            writes: VecDeque::new(),
            sending: false,
            shutdown: None,
            shut: false,
            closed: false,
        }
    }
}

struct Listener {
    sock: TcpListener,
    backlog: usize,
    accept: Option<(Cookie, bool)>,
    op: Option<OpId>,
    /// Accepted connections waiting for an `Accept` command.
    ready: VecDeque<(Handle, SocketAddrV4)>,
}

enum Entry {
    Conn(Conn),
    Listener(Listener),
}

impl Entry {
    fn kind(&self) -> &'static str {
        match self {
            Entry::Conn(_) => "connection",
            Entry::Listener(_) => "listener",
        }
    }
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

struct State {
    table: HandleTable<Entry>,
    /// Accepted connections whose peer address is being read: (slot, listener).
    pending: HandleTable<(FileSlot, Handle)>,
    /// Socket options being set: (handle, cookie).
    opts: HandleTable<(Handle, Cookie)>,
    stats: UringStats,
}

/// The io_uring backend of one core. See the module docs.
pub struct Uring {
    ring: Ring,
    st: State,
    stop: Arc<AtomicBool>,
}

impl Uring {
    /// A backend with a ring of `config`'s sizes; `stop` is the runtime's stop flag.
    pub fn new(stop: Arc<AtomicBool>, config: &UringConfig) -> Result<Self, UringError> {
        Ok(Self {
            ring: Ring::new(config)?,
            st: State {
                table: HandleTable::new(),
                pending: HandleTable::new(),
                opts: HandleTable::new(),
                stats: UringStats::default(),
            },
            stop,
        })
    }

    /// Live handles.
    pub fn live_handles(&self) -> usize {
        self.st.table.len()
    }

    /// Counters.
    pub fn stats(&self) -> UringStats {
        self.st.stats
    }
}

impl State {
    fn conn(&mut self, h: Handle) -> Result<&mut Conn, ChannelError> {
        match self.table.get_mut(h) {
            Some(Entry::Conn(c)) if !c.closed => Ok(c),
            Some(Entry::Listener(_)) => Err(ChannelError::WrongKind(h, "listener", "connection")),
            _ => Err(ChannelError::BadHandle(h)),
        }
    }

    fn push(ring: &mut Ring, out: &mut Vec<Completion>, t: u64, op: Op) -> Option<OpId> {
        match ring.push(t, op) {
            Ok(id) => Some(id),
            Err(e) => {
                out.push(Completion::Error {
                    cookie: 0,
                    error: ChannelError::Os(e.to_string()),
                });
                None
            }
        }
    }

    fn execute(&mut self, ring: &mut Ring, cmd: Command, out: &mut Vec<Completion>) {
        let cookie = cmd.cookie();
        if let Err(error) = self.try_execute(ring, cmd, out) {
            out.push(Completion::Error { cookie, error });
        }
    }

    fn try_execute(
        &mut self,
        ring: &mut Ring,
        cmd: Command,
        out: &mut Vec<Completion>,
    ) -> Result<(), ChannelError> {
        match cmd {
            Command::Listen {
                addr,
                backlog,
                cookie,
            } => {
                let s = crate::kernel::listener(addr, backlog)?;
                let handle = self.table.insert(Entry::Listener(Listener {
                    sock: s.into(),
                    backlog: backlog.max(1) as usize,
                    accept: None,
                    op: None,
                    ready: VecDeque::new(),
                }));
                out.push(Completion::Listening { handle, cookie });
            }
            Command::Accept {
                listener,
                multishot,
                cookie,
            } => {
                let l = match self.table.get_mut(listener) {
                    Some(Entry::Listener(l)) => l,
                    Some(e) => return Err(ChannelError::WrongKind(listener, e.kind(), "listener")),
                    None => return Err(ChannelError::BadHandle(listener)),
                };
                crate::rules::accept(listener, l.accept.is_some())?;
                l.accept = Some((cookie, multishot));
                if l.op.is_none_or(|id| !ring.is_live(id)) {
                    Self::arm_accept(ring, out, listener, l);
                }
                self.deliver_ready(listener, out);
            }
            Command::Connect { remote, cookie } => {
                let mut c = Conn::new(None, remote);
                c.connecting = Some(cookie);
                let h = self.table.insert(Entry::Conn(c));
                if Self::push(ring, out, token(K_SOCKET, h), Op::Socket).is_none() {
                    self.table.remove(h);
                }
            }
            Command::Read { handle, cookie } => {
                let c = self.conn(handle)?;
                crate::rules::read(handle, c.read.is_some())?;
                c.read = Some(cookie);
                self.try_read(ring, handle, out);
            }
            Command::Write {
                handle,
                data,
                cookie,
            } => {
                let c = self.conn(handle)?;
                crate::rules::write(handle, c.shut || c.shutdown.is_some())?;
                if crate::rules::empty_write(handle, &data, cookie, out) {
                    return Ok(());
                }
                c.writes.push_back(PendingWrite {
                    len: data.len(),
                    data: Some(data),
                    cookie,
                });
                self.start_send(ring, handle, out);
            }
            Command::Shutdown { handle, cookie } => {
                let c = self.conn(handle)?;
                crate::rules::shutdown(handle, c.shut || c.shutdown.is_some())?;
                c.shutdown = Some(cookie);
                self.start_send(ring, handle, out);
            }
            Command::Close { handle, cookie } => {
                match self.table.get_mut(handle) {
                    Some(Entry::Listener(_)) => {
                        if let Some(Entry::Listener(l)) = self.table.remove(handle) {
                            self.close_listener(ring, handle, l, out);
                        }
                    }
                    Some(Entry::Conn(c)) if !c.closed => {
                        for cookie in c.read.take().into_iter().chain(c.connecting.take()) {
                            out.push(Completion::Error {
                                cookie,
                                error: ChannelError::InvalidState(handle, "closed while reading"),
                            });
                        }
                        for w in &c.writes {
                            out.push(Completion::Written {
                                handle,
                                len: w.len,
                                cookie: w.cookie,
                            });
                        }
                        if let Some(s) = c.shutdown.take() {
                            // The close sends the FIN after the pending writes, as the
                            // shutdown would.
                            out.push(Completion::ShutDown { handle, cookie: s });
                        }
                        c.closed = true;
                        if let Some(id) = c.recv.take() {
                            Self::push(ring, out, token(K_IGNORE, handle), Op::Cancel(id));
                        }
                        c.inbox.clear();
                        if !c.sending {
                            self.finish_close(ring, handle, out);
                        }
                    }
                    _ => return Err(ChannelError::BadHandle(handle)),
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::Abort { handle, cookie } => {
                self.conn(handle)?;
                if let Some(Entry::Conn(c)) = self.table.remove(handle) {
                    if let Some(slot) = c.slot {
                        // SO_LINGER 0: the close sends a RST.
                        let linger = Op::SetOpt {
                            file: slot,
                            level: libc::SOL_SOCKET,
                            name: libc::SO_LINGER,
                            value: OptValue::Linger(true, 0),
                        };
                        Self::push(ring, out, token(K_IGNORE, handle), linger);
                        Self::push(ring, out, token(K_IGNORE, handle), Op::CancelFile(slot));
                        Self::close_slot(ring, out, slot);
                    }
                    let pending = c
                        .read
                        .into_iter()
                        .chain(c.connecting)
                        .chain(c.writes.iter().map(|w| w.cookie))
                        .chain(c.shutdown);
                    crate::rules::fail_reset(handle, pending, out);
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::SetOpt {
                handle,
                opt,
                cookie,
            } => match self.table.get_mut(handle) {
                Some(Entry::Listener(l)) => {
                    crate::kernel::set_opt(SockRef::from(&l.sock), opt)?;
                    out.push(Completion::OptSet { handle, cookie });
                }
                Some(Entry::Conn(c)) if !c.closed => {
                    let Some(slot) = c.slot else {
                        return Err(ChannelError::InvalidState(handle, "not connected yet"));
                    };
                    let int = |level, name, v: i64| Op::SetOpt {
                        file: slot,
                        level,
                        name,
                        value: OptValue::Int(v.clamp(0, i64::from(i32::MAX)) as i32),
                    };
                    let ops = match opt {
                        SockOpt::NoDelay(on) => {
                            vec![int(libc::IPPROTO_TCP, libc::TCP_NODELAY, i64::from(on))]
                        }
                        SockOpt::KeepAlive(None) => {
                            vec![int(libc::SOL_SOCKET, libc::SO_KEEPALIVE, 0)]
                        }
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
                    };
                    // Every option of the command reports through one record; the
                    // completion comes when the last one is done.
                    let n = ops.len();
                    let rec = self.opts.insert((handle, cookie));
                    for (i, op) in ops.into_iter().enumerate() {
                        let kind = if i + 1 == n { K_OPT } else { K_IGNORE };
                        Self::push(ring, out, token(kind, rec), op);
                    }
                }
                _ => return Err(ChannelError::BadHandle(handle)),
            },
        }
        Ok(())
    }

    /// Starts the listener's multishot accept.
    fn arm_accept(ring: &mut Ring, out: &mut Vec<Completion>, h: Handle, l: &mut Listener) {
        let op = Op::AcceptMulti {
            listener: l.sock.as_raw_fd(),
        };
        l.op = Self::push(ring, out, token(K_ACCEPT, h), op);
    }

    /// Closes a fixed descriptor; nothing waits for the completion.
    fn close_slot(ring: &mut Ring, out: &mut Vec<Completion>, file: FileSlot) {
        Self::push(ring, out, IGNORE, Op::Close { file });
    }

    fn close_listener(
        &mut self,
        ring: &mut Ring,
        handle: Handle,
        l: Listener,
        out: &mut Vec<Completion>,
    ) {
        if let Some((c, _)) = l.accept {
            out.push(Completion::Error {
                cookie: c,
                error: ChannelError::InvalidState(handle, "listener closed"),
            });
        }
        if let Some(id) = l.op.filter(|id| ring.is_live(*id)) {
            // By user data: the listener's descriptor closes right after (the request keeps
            // its own reference to the socket until cancelled).
            Self::push(ring, out, token(K_IGNORE, handle), Op::Cancel(id));
        }
        for (h, _) in l.ready {
            self.stats.accepts_dropped += 1;
            self.drop_conn(ring, h, out);
        }
    }

    /// Closes a connection the application never saw (or has closed): no completions.
    fn drop_conn(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        if let Some(Entry::Conn(c)) = self.table.remove(h)
            && let Some(slot) = c.slot
        {
            if let Some(id) = c.recv {
                Self::push(ring, out, token(K_IGNORE, h), Op::Cancel(id));
            }
            Self::close_slot(ring, out, slot);
        }
    }

    /// The application closed `h` and nothing is being sent: close the descriptor.
    fn finish_close(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        if let Some(Entry::Conn(c)) = self.table.remove(h)
            && let Some(slot) = c.slot
        {
            Self::close_slot(ring, out, slot);
        }
    }

    fn deliver_ready(&mut self, listener: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Listener(l)) = self.table.get_mut(listener) else {
            return;
        };
        while let Some((cookie, multishot)) = l.accept {
            let Some((handle, peer)) = l.ready.pop_front() else {
                return;
            };
            if !multishot {
                l.accept = None;
            }
            out.push(Completion::Accepted {
                listener,
                handle,
                peer,
                cookie,
            });
        }
    }

    fn arm_recv(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
            return;
        };
        if c.recv.is_some() || c.eof || c.paused || c.closed {
            return;
        }
        if let Some(slot) = c.slot {
            c.recv = Self::push(ring, out, token(K_RECV, h), Op::RecvMulti { file: slot });
        }
    }

    fn try_read(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        let Ok(c) = self.conn(h) else { return };
        let Some(cookie) = c.read else { return };
        if let Some(mut data) = c.inbox.pop_front() {
            while let Some(more) = c.inbox.pop_front() {
                data.extend_from_slice(&more);
                ring.recycle(more);
            }
            c.inbox_bytes = 0;
            c.read = None;
            out.push(Completion::Read {
                handle: h,
                data,
                cookie,
            });
            if c.paused {
                c.paused = false;
                self.stats.recv_rearms += 1;
                self.arm_recv(ring, h, out);
            }
        } else if c.eof {
            c.read = None;
            out.push(Completion::Eof { handle: h, cookie });
        }
    }

    fn start_send(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
            return;
        };
        if c.sending || c.connecting.is_some() {
            return;
        }
        let Some(slot) = c.slot else { return };
        if let Some(w) = c.writes.front_mut() {
            if let Some(data) = w.data.take() {
                c.sending = true;
                let send = Op::Send {
                    file: slot,
                    data,
                    offset: 0,
                };
                if Self::push(ring, out, token(K_SEND, h), send).is_none() {
                    self.reset(ring, h, out);
                }
            }
        } else if let Some(cookie) = c.shutdown.take() {
            c.shut = true;
            c.sending = true;
            let op = Op::ShutdownWrite { file: slot };
            if Self::push(ring, out, token(K_SHUT, h), op).is_some() {
                c.shutdown = Some(cookie);
            }
        }
    }

    /// The connection failed: fail what is pending, report the reset, close the descriptor.
    fn reset(&mut self, ring: &mut Ring, h: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Conn(c)) = self.table.remove(h) else {
            return;
        };
        if let Some(slot) = c.slot {
            Self::push(ring, out, token(K_IGNORE, h), Op::CancelFile(slot));
            Self::close_slot(ring, out, slot);
        }
        if c.closed {
            return;
        }
        let cookies = c
            .read
            .into_iter()
            .chain(c.shutdown)
            .chain(c.writes.iter().map(|w| w.cookie));
        crate::rules::fail_reset(h, cookies, out);
        out.push(Completion::Reset { handle: h });
    }

    fn on_cqe(&mut self, ring: &mut Ring, cqe: Cqe, out: &mut Vec<Completion>) {
        self.stats.cqes += 1;
        let (kind, index, generation) = untoken(cqe.token);
        match kind {
            K_ACCEPT => self.on_accept(ring, index, generation, cqe, out),
            K_PEER => self.on_peer(ring, index, generation, cqe, out),
            K_RECV => self.on_recv(ring, index, generation, cqe, out),
            K_SEND => self.on_send(ring, index, generation, cqe, out),
            K_SHUT => {
                let Some(h) = self.table.handle(index, generation) else {
                    return;
                };
                if let Some(Entry::Conn(c)) = self.table.get_mut(h) {
                    c.sending = false;
                    let cookie = c.shutdown.take();
                    if c.closed {
                        self.finish_close(ring, h, out);
                    } else if let Some(cookie) = cookie {
                        if cqe.result < 0 {
                            out.push(Completion::Error {
                                cookie,
                                error: ChannelError::Os(errno_text(cqe.result)),
                            });
                        } else {
                            out.push(Completion::ShutDown { handle: h, cookie });
                        }
                    }
                }
            }
            K_SOCKET => {
                let Some(h) = self.table.handle(index, generation) else {
                    if cqe.result >= 0 {
                        let file = FileSlot(cqe.result as u32);
                        Self::close_slot(ring, out, file);
                    }
                    return;
                };
                let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
                    return;
                };
                if cqe.result < 0 {
                    let (remote, cookie) = (c.remote, c.connecting);
                    self.table.remove(h);
                    if let Some(cookie) = cookie {
                        out.push(Completion::Error {
                            cookie,
                            error: ChannelError::Connect(remote, errno_text(cqe.result)),
                        });
                    }
                    return;
                }
                let slot = FileSlot(cqe.result as u32);
                c.slot = Some(slot);
                let remote = c.remote;
                let nodelay = Op::SetOpt {
                    file: slot,
                    level: libc::IPPROTO_TCP,
                    name: libc::TCP_NODELAY,
                    value: OptValue::Int(1),
                };
                Self::push(ring, out, token(K_IGNORE, h), nodelay);
                let connect = Op::Connect {
                    file: slot,
                    addr: remote,
                };
                if Self::push(ring, out, token(K_CONNECT, h), connect).is_none() {
                    self.reset(ring, h, out);
                }
            }
            K_CONNECT => {
                let Some(h) = self.table.handle(index, generation) else {
                    return;
                };
                let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
                    return;
                };
                let Some(cookie) = c.connecting.take() else {
                    return;
                };
                if cqe.result < 0 {
                    let remote = c.remote;
                    let slot = c.slot;
                    self.table.remove(h);
                    if let Some(file) = slot {
                        Self::close_slot(ring, out, file);
                    }
                    out.push(Completion::Error {
                        cookie,
                        error: ChannelError::Connect(remote, errno_text(cqe.result)),
                    });
                    return;
                }
                out.push(Completion::Connected { handle: h, cookie });
                self.arm_recv(ring, h, out);
                self.try_read(ring, h, out);
                self.start_send(ring, h, out);
            }
            K_OPT => {
                let Some(rec) = self.opts.handle(index, generation) else {
                    return;
                };
                if let Some((handle, cookie)) = self.opts.remove(rec) {
                    if cqe.result < 0 {
                        out.push(Completion::Error {
                            cookie,
                            error: ChannelError::Os(errno_text(cqe.result)),
                        });
                    } else {
                        out.push(Completion::OptSet { handle, cookie });
                    }
                }
            }
            _ => {
                if let Payload::Data(v) | Payload::Sent(v, _) = cqe.payload {
                    ring.recycle(v);
                }
            }
        }
    }

    fn on_accept(
        &mut self,
        ring: &mut Ring,
        index: u32,
        generation: u32,
        cqe: Cqe,
        out: &mut Vec<Completion>,
    ) {
        let listener = self.table.handle(index, generation);
        let Some(Entry::Listener(l)) = listener.and_then(|h| self.table.get_mut(h)) else {
            if cqe.result >= 0 {
                // The listener is gone: close what it accepted meanwhile.
                self.stats.accepts_dropped += 1;
                let file = FileSlot(cqe.result as u32);
                Self::close_slot(ring, out, file);
            }
            return;
        };
        let Some(listener) = listener else { return };
        // The last completion of an accept: forget it, unless a newer one is armed already
        // (this one ended after a cancel or failure and a successor was started).
        if !cqe.more && l.op.is_some_and(|id| !ring.is_live(id)) {
            l.op = None;
        }
        if cqe.result < 0 {
            if cqe.result == -libc::ECANCELED {
                return;
            }
            // E.g. out of fixed descriptors: report; the next Accept re-arms.
            if let Some((cookie, _)) = l.accept.take() {
                out.push(Completion::Error {
                    cookie,
                    error: ChannelError::Os(format!("accept: {}", errno_text(cqe.result))),
                });
            }
            return;
        }
        let file = FileSlot(cqe.result as u32);
        if l.ready.len() >= l.backlog {
            self.stats.accepts_dropped += 1;
            Self::close_slot(ring, out, file);
        } else {
            let p = self.pending.insert((file, listener));
            Self::push(ring, out, token(K_PEER, p), Op::PeerName { file });
        }
        if !cqe.more
            && let Some(Entry::Listener(l)) = self.table.get_mut(listener)
            && l.accept.is_some()
        {
            Self::arm_accept(ring, out, listener, l);
        }
    }

    fn on_peer(
        &mut self,
        ring: &mut Ring,
        index: u32,
        generation: u32,
        cqe: Cqe,
        out: &mut Vec<Completion>,
    ) {
        let Some((file, listener)) = self
            .pending
            .handle(index, generation)
            .and_then(|p| self.pending.remove(p))
        else {
            return;
        };
        let peer = match cqe.payload {
            Payload::Peer(Some(p)) if cqe.result >= 0 => Some(p),
            _ => None,
        };
        let listening = matches!(self.table.get(listener), Some(Entry::Listener(_)));
        let (Some(peer), true) = (peer, listening) else {
            // The peer is already gone (or the listener is): nothing to hand out.
            self.stats.accepts_dropped += 1;
            Self::close_slot(ring, out, file);
            return;
        };
        let h = self.table.insert(Entry::Conn(Conn::new(Some(file), peer)));
        self.arm_recv(ring, h, out);
        if let Some(Entry::Listener(l)) = self.table.get_mut(listener) {
            l.ready.push_back((h, peer));
        }
        self.deliver_ready(listener, out);
    }

    fn on_recv(
        &mut self,
        ring: &mut Ring,
        index: u32,
        generation: u32,
        cqe: Cqe,
        out: &mut Vec<Completion>,
    ) {
        let Some(h) = self.table.handle(index, generation) else {
            if let Payload::Data(v) = cqe.payload {
                ring.recycle(v);
            }
            return;
        };
        let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
            return;
        };
        // The last completion of a receive: forget it, unless a newer one is armed already
        // (a receive cancelled when the inbox filled ends after its successor started).
        if !cqe.more && c.recv.is_some_and(|id| !ring.is_live(id)) {
            c.recv = None;
        }
        match cqe.payload {
            Payload::Data(v) if !c.closed => {
                c.inbox_bytes += v.len();
                c.inbox.push_back(v);
                if c.inbox_bytes >= INBOX_LIMIT && !c.paused {
                    // Let the kernel's socket buffer push back on the sender.
                    c.paused = true;
                    if let Some(id) = c.recv.take() {
                        Self::push(ring, out, token(K_IGNORE, h), Op::Cancel(id));
                    }
                }
                self.try_read(ring, h, out);
                if !cqe.more {
                    self.stats.recv_rearms += 1;
                    self.arm_recv(ring, h, out);
                }
            }
            Payload::Data(v) => ring.recycle(v),
            _ if cqe.result == 0 => {
                c.eof = true;
                self.try_read(ring, h, out);
            }
            _ if cqe.result == -libc::ENOBUFS => {
                self.stats.recv_rearms += 1;
                self.arm_recv(ring, h, out);
            }
            _ if cqe.result == -libc::ECANCELED => {}
            _ if cqe.result < 0 => self.reset(ring, h, out),
            _ => {}
        }
    }

    fn on_send(
        &mut self,
        ring: &mut Ring,
        index: u32,
        generation: u32,
        cqe: Cqe,
        out: &mut Vec<Completion>,
    ) {
        let Payload::Sent(data, offset) = cqe.payload else {
            return;
        };
        let Some(h) = self.table.handle(index, generation) else {
            ring.recycle(data);
            return;
        };
        let Some(Entry::Conn(c)) = self.table.get_mut(h) else {
            return;
        };
        c.sending = false;
        if cqe.result < 0 {
            ring.recycle(data);
            return self.reset(ring, h, out);
        }
        let offset = offset + cqe.result as usize;
        if offset < data.len()
            && let Some(slot) = c.slot
        {
            c.sending = true;
            let send = Op::Send {
                file: slot,
                data,
                offset,
            };
            if Self::push(ring, out, token(K_SEND, h), send).is_none() {
                self.reset(ring, h, out);
            }
            return;
        }
        ring.recycle(data);
        if let Some(w) = c.writes.pop_front()
            && !c.closed
        {
            out.push(Completion::Written {
                handle: h,
                len: w.len,
                cookie: w.cookie,
            });
        }
        if c.closed && c.writes.is_empty() {
            self.finish_close(ring, h, out);
        } else {
            self.start_send(ring, h, out);
        }
    }
}

impl Backend for Uring {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.st.execute(&mut self.ring, cmd, out);
        }
    }

    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) {
        let start = Instant::now();
        loop {
            let wait = if out.is_empty() {
                let left = timeout.map_or(Duration::from_millis(100), |t| {
                    t.saturating_sub(start.elapsed())
                });
                left.min(Duration::from_millis(100))
            } else {
                Duration::ZERO
            };
            self.st.stats.enters += 1;
            if let Err(e) = self.ring.enter(Some(wait)) {
                out.push(Completion::Error {
                    cookie: 0,
                    error: ChannelError::Os(e.to_string()),
                });
                return;
            }
            let st = &mut self.st;
            self.ring.drain(|ring, cqe| st.on_cqe(ring, cqe, out));
            if !out.is_empty() || self.stop.load(Ordering::Relaxed) {
                return;
            }
            if timeout.is_some_and(|t| start.elapsed() >= t) {
                return;
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
