//! The epoll backend: the very same channel API over the Linux kernel's TCP, with
//! non-blocking sockets and edge-triggered epoll, one epoll instance per core and one
//! `SO_REUSEPORT` listener per core.
//!
//! These are the kernel's analogues of MegaPipe's ideas: `SO_REUSEPORT` gives each core its
//! own accept queue (partitioned listening); epoll reports readiness in batches (one
//! `epoll_wait` for many sockets), though every read and write is still a system call of
//! its own. The handles are this backend's own (index + generation), not file
//! descriptors.
//!
//! # Driving it
//!
//! Create one per core thread with [`Epoll::new`], wrap it in a [`Channel`](crate::Channel),
//! and dispatch. Reads complete with the bytes one `read(2)` returned (up to 64 KiB);
//! writes complete when the kernel took the whole buffer; a connection closed with writes
//! still pending keeps its socket until they are written, then closes it.

use core::net::{SocketAddr, SocketAddrV4};
use std::collections::VecDeque;
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rustix::event::epoll::{self, EventData, EventFlags};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

use crate::{Backend, ChannelError, Command, Completion, Cookie, Handle, HandleTable};

/// Bytes asked of one `read(2)`.
const READ_SIZE: usize = 64 * 1024;
/// Events taken from one `epoll_wait`.
const EVENTS: usize = 256;
/// Marks epoll data of a connection closed by the application but still writing.
const DRAINING: u64 = 1 << 63;

struct PendingWrite {
    data: Vec<u8>,
    off: usize,
    cookie: Cookie,
}

struct Conn {
    sock: TcpStream,
    remote: SocketAddrV4,
    connecting: Option<Cookie>,
    read: Option<Cookie>,
    readable: bool,
    writable: bool,
    eof: bool,
    writes: VecDeque<PendingWrite>,
    shutdown: Option<Cookie>,
    shut: bool,
}

struct Listener {
    sock: TcpListener,
    accept: Option<(Cookie, bool)>,
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

/// Why the epoll backend could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot create an epoll instance: {0}")]
pub struct EpollError(#[from] std::io::Error);

/// The epoll backend of one core. See the module docs.
pub struct Epoll {
    ep: OwnedFd,
    table: HandleTable<Entry>,
    draining: HandleTable<Conn>,
    events: Vec<epoll::Event>,
    stop: Arc<AtomicBool>,
    pool: Vec<Vec<u8>>,
    /// Where `read(2)` puts the bytes before they are copied into a completion.
    scratch: Vec<u8>,
}

fn os(e: std::io::Error) -> ChannelError {
    ChannelError::Os(e.to_string())
}

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) => Some(a),
        SocketAddr::V6(_) => None,
    }
}

fn data_of(h: Handle) -> u64 {
    (u64::from(h.index()) << 32) | u64::from(h.generation())
}

impl Epoll {
    /// A backend; `stop` is the runtime's stop flag.
    pub fn new(stop: Arc<AtomicBool>) -> Result<Self, EpollError> {
        // Thousands of sockets need more descriptors than the usual soft limit of 1,024.
        megatcp_nic::uring::raise_nofile();
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(std::io::Error::from)?;
        Ok(Self {
            ep,
            table: HandleTable::new(),
            draining: HandleTable::new(),
            events: Vec::with_capacity(EVENTS),
            stop,
            pool: Vec::new(),
            scratch: vec![0; READ_SIZE],
        })
    }

    /// Live handles.
    pub fn live_handles(&self) -> usize {
        self.table.len()
    }

    fn register(&self, fd: impl AsFd, data: u64, listener: bool) -> std::io::Result<()> {
        let flags = if listener {
            EventFlags::IN | EventFlags::ET
        } else {
            EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET
        };
        epoll::add(&self.ep, fd, EventData::new_u64(data), flags).map_err(Into::into)
    }

    fn conn(&mut self, h: Handle) -> Result<&mut Conn, ChannelError> {
        match self.table.get_mut(h) {
            Some(Entry::Conn(c)) => Ok(c),
            Some(e) => Err(ChannelError::WrongKind(h, e.kind(), "connection")),
            None => Err(ChannelError::BadHandle(h)),
        }
    }

    fn add_conn(&mut self, conn: Conn) -> std::io::Result<Handle> {
        let h = self.table.insert(Entry::Conn(conn));
        let registered = match self.table.get(h) {
            Some(Entry::Conn(c)) => self.register(&c.sock, data_of(h), false),
            _ => Ok(()),
        };
        if let Err(e) = registered {
            self.table.remove(h);
            return Err(e);
        }
        Ok(h)
    }

    fn execute(&mut self, cmd: Command, out: &mut Vec<Completion>) {
        let cookie = cmd.cookie();
        if let Err(error) = self.try_execute(cmd, out) {
            out.push(Completion::Error { cookie, error });
        }
    }

    fn try_execute(&mut self, cmd: Command, out: &mut Vec<Completion>) -> Result<(), ChannelError> {
        match cmd {
            Command::Listen {
                addr,
                backlog,
                cookie,
            } => {
                let s = crate::kernel::listener(addr, backlog)?;
                let err = |e: std::io::Error| ChannelError::Listen(addr, e.to_string());
                s.set_nonblocking(true).map_err(err)?;
                let sock: TcpListener = s.into();
                let h = self
                    .table
                    .insert(Entry::Listener(Listener { sock, accept: None }));
                if let Some(Entry::Listener(l)) = self.table.get(h)
                    && let Err(e) = self.register(&l.sock, data_of(h), true)
                {
                    self.table.remove(h);
                    return Err(err(e));
                }
                out.push(Completion::Listening { handle: h, cookie });
            }
            Command::Accept {
                listener,
                multishot,
                cookie,
            } => {
                match self.table.get_mut(listener) {
                    Some(Entry::Listener(l)) => {
                        crate::rules::accept(listener, l.accept.is_some())?;
                        l.accept = Some((cookie, multishot));
                    }
                    Some(e) => return Err(ChannelError::WrongKind(listener, e.kind(), "listener")),
                    None => return Err(ChannelError::BadHandle(listener)),
                }
                self.try_accept(listener, out);
            }
            Command::Connect { remote, cookie } => {
                let err = |e: std::io::Error| ChannelError::Connect(remote, e.to_string());
                let s =
                    Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
                s.set_nonblocking(true).map_err(err)?;
                s.set_tcp_nodelay(true).map_err(err)?;
                match s.connect(&SocketAddr::V4(remote).into()) {
                    Ok(()) => {}
                    Err(e)
                        if e.raw_os_error()
                            == Some(rustix::io::Errno::INPROGRESS.raw_os_error()) => {}
                    Err(e) => return Err(err(e)),
                }
                let conn = Conn {
                    sock: s.into(),
                    remote,
                    connecting: Some(cookie),
                    read: None,
                    readable: false,
                    writable: false,
                    eof: false,
                    writes: VecDeque::new(),
                    shutdown: None,
                    shut: false,
                };
                self.add_conn(conn).map_err(err)?;
            }
            Command::Read { handle, cookie } => {
                let c = self.conn(handle)?;
                crate::rules::read(handle, c.read.is_some())?;
                c.read = Some(cookie);
                self.try_read(handle, out);
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
                    data,
                    off: 0,
                    cookie,
                });
                self.try_write(handle, out);
            }
            Command::Shutdown { handle, cookie } => {
                let c = self.conn(handle)?;
                crate::rules::shutdown(handle, c.shut || c.shutdown.is_some())?;
                c.shutdown = Some(cookie);
                self.try_write(handle, out);
            }
            Command::Close { handle, cookie } => {
                match self
                    .table
                    .remove(handle)
                    .ok_or(ChannelError::BadHandle(handle))?
                {
                    Entry::Listener(l) => {
                        if let Some((c, _)) = l.accept {
                            out.push(Completion::Error {
                                cookie: c,
                                error: ChannelError::InvalidState(handle, "listener closed"),
                            });
                        }
                    }
                    Entry::Conn(mut c) => {
                        fail_read(handle, &mut c, out, "closed while reading");
                        for w in &c.writes {
                            out.push(Completion::Written {
                                handle,
                                len: w.data.len(),
                                cookie: w.cookie,
                            });
                        }
                        if let Some(s) = c.shutdown.take() {
                            // The close sends the FIN after the pending writes, as the
                            // shutdown would.
                            out.push(Completion::ShutDown { handle, cookie: s });
                        }
                        if !c.writes.is_empty() {
                            // The kernel gets the rest when the socket is writable; then it closes.
                            let _ = epoll::delete(&self.ep, &c.sock);
                            let d = self.draining.insert(c);
                            if let Some(c) = self.draining.get(d) {
                                let _ = self.register(&c.sock, DRAINING | data_of(d), false);
                            }
                            self.drain(d);
                        }
                    }
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::Abort { handle, cookie } => {
                let c = self.conn(handle)?;
                // SO_LINGER 0: close sends a RST.
                let _ = SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
                if let Some(Entry::Conn(mut c)) = self.table.remove(handle) {
                    fail_read(handle, &mut c, out, "aborted while reading");
                    let pending = c
                        .writes
                        .drain(..)
                        .map(|w| w.cookie)
                        .chain(c.shutdown.take());
                    crate::rules::fail_reset(handle, pending, out);
                }
                out.push(Completion::Closed { handle, cookie });
            }
            Command::SetOpt {
                handle,
                opt,
                cookie,
            } => {
                let sock = match self.table.get(handle) {
                    Some(Entry::Conn(c)) => SockRef::from(&c.sock),
                    Some(Entry::Listener(l)) => SockRef::from(&l.sock),
                    None => return Err(ChannelError::BadHandle(handle)),
                };
                crate::kernel::set_opt(sock, opt)?;
                out.push(Completion::OptSet { handle, cookie });
            }
        }
        Ok(())
    }

    fn try_accept(&mut self, listener: Handle, out: &mut Vec<Completion>) {
        loop {
            let Some(Entry::Listener(l)) = self.table.get_mut(listener) else {
                return;
            };
            let Some((cookie, multishot)) = l.accept else {
                return;
            };
            match l.sock.accept() {
                Ok((sock, peer)) => {
                    let Some(peer) = v4(peer) else { continue };
                    if !multishot {
                        l.accept = None;
                    }
                    let setup = sock
                        .set_nonblocking(true)
                        .and_then(|()| sock.set_nodelay(true));
                    if let Err(e) = setup {
                        out.push(Completion::Error {
                            cookie,
                            error: os(e),
                        });
                        continue;
                    }
                    let conn = Conn {
                        sock,
                        remote: peer,
                        connecting: None,
                        read: None,
                        readable: true,
                        writable: true,
                        eof: false,
                        writes: VecDeque::new(),
                        shutdown: None,
                        shut: false,
                    };
                    match self.add_conn(conn) {
                        Ok(handle) => out.push(Completion::Accepted {
                            listener,
                            handle,
                            peer,
                            cookie,
                        }),
                        Err(e) => out.push(Completion::Error {
                            cookie,
                            error: os(e),
                        }),
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted => {}
                Err(e) => {
                    // E.g. out of file descriptors: report, and try again on the next event.
                    out.push(Completion::Error {
                        cookie,
                        error: os(e),
                    });
                    return;
                }
            }
        }
    }

    fn try_read(&mut self, handle: Handle, out: &mut Vec<Completion>) {
        let Ok(c) = self.conn(handle) else { return };
        let Some(cookie) = c.read else { return };
        if c.connecting.is_some() {
            return;
        }
        if c.eof {
            c.read = None;
            out.push(Completion::Eof { handle, cookie });
            return;
        }
        if !c.readable {
            return;
        }
        // Read into the core's scratch buffer (zeroed once), then copy out only what came:
        // no 64 KiB buffer to clear and fault in per read.
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        match c.sock.read(&mut self.scratch) {
            Ok(0) => {
                c.eof = true;
                c.read = None;
                out.push(Completion::Eof { handle, cookie });
            }
            Ok(n) => {
                c.read = None;
                let mut data = self.pool.pop().unwrap_or_default();
                data.clear();
                data.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                out.push(Completion::Read {
                    handle,
                    data,
                    cookie,
                });
            }
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {
                c.readable = e.kind() == ErrorKind::Interrupted;
            }
            Err(_) => self.reset(handle, out),
        }
    }

    fn try_write(&mut self, handle: Handle, out: &mut Vec<Completion>) {
        let Some(Entry::Conn(c)) = self.table.get_mut(handle) else {
            return;
        };
        if c.connecting.is_some() {
            return;
        }
        while c.writable {
            let Some(w) = c.writes.front_mut() else { break };
            match c.sock.write(&w.data[w.off..]) {
                Ok(n) => {
                    w.off += n;
                    if w.off == w.data.len()
                        && let Some(w) = c.writes.pop_front()
                    {
                        out.push(Completion::Written {
                            handle,
                            len: w.data.len(),
                            cookie: w.cookie,
                        });
                        if self.pool.len() < 256 {
                            self.pool.push(w.data);
                        }
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return self.reset(handle, out),
            }
        }
        if c.writes.is_empty()
            && let Some(cookie) = c.shutdown.take()
        {
            c.shut = true;
            let _ = c.sock.shutdown(Shutdown::Write);
            out.push(Completion::ShutDown { handle, cookie });
        }
    }

    /// The connection failed (reset, or any error on read/write): fail what is pending.
    fn reset(&mut self, handle: Handle, out: &mut Vec<Completion>) {
        if let Some(Entry::Conn(c)) = self.table.remove(handle) {
            let cookies = c
                .read
                .into_iter()
                .chain(c.shutdown)
                .chain(c.writes.iter().map(|w| w.cookie));
            crate::rules::fail_reset(handle, cookies, out);
            out.push(Completion::Reset { handle });
        }
    }

    /// Writes what a closed connection still owes; drops (closes) it when done or failed.
    fn drain(&mut self, d: Handle) {
        let Some(c) = self.draining.get_mut(d) else {
            return;
        };
        while let Some(w) = c.writes.front_mut() {
            match c.sock.write(&w.data[w.off..]) {
                Ok(n) => {
                    w.off += n;
                    if w.off == w.data.len() {
                        c.writes.pop_front();
                    }
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => break,
            }
        }
        self.draining.remove(d);
    }

    fn on_event(&mut self, data: u64, flags: EventFlags, out: &mut Vec<Completion>) {
        let (index, generation) = (((data & !DRAINING) >> 32) as u32, data as u32);
        if data & DRAINING != 0 {
            if let Some(d) = self.draining.handle(index, generation) {
                self.drain(d);
            }
            return;
        }
        let Some(h) = self.table.handle(index, generation) else {
            return;
        };
        let failed = flags.intersects(EventFlags::ERR);
        match self.table.get_mut(h) {
            Some(Entry::Listener(_)) => self.try_accept(h, out),
            Some(Entry::Conn(c)) => {
                if let Some(cookie) = c.connecting {
                    if !flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
                        return;
                    }
                    let err = c.sock.take_error().ok().flatten();
                    if let Some(e) = err.or_else(|| c.sock.peer_addr().err()) {
                        let remote = c.remote;
                        self.table.remove(h);
                        out.push(Completion::Error {
                            cookie,
                            error: ChannelError::Connect(remote, e.to_string()),
                        });
                        return;
                    }
                    c.connecting = None;
                    out.push(Completion::Connected { handle: h, cookie });
                }
                if flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP) || failed
                {
                    c.readable = true;
                }
                if flags.intersects(EventFlags::OUT) || failed {
                    c.writable = true;
                }
                self.try_read(h, out);
                self.try_write(h, out);
            }
            None => {}
        }
    }
}

fn fail_read(handle: Handle, c: &mut Conn, out: &mut Vec<Completion>, why: &'static str) {
    for cookie in c.read.take().into_iter().chain(c.connecting.take()) {
        out.push(Completion::Error {
            cookie,
            error: ChannelError::InvalidState(handle, why),
        });
    }
}

impl Backend for Epoll {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.execute(cmd, out);
        }
    }

    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) {
        let start = Instant::now();
        loop {
            let wait = if !out.is_empty() {
                Duration::ZERO
            } else {
                let left = timeout.map_or(Duration::from_millis(100), |t| {
                    t.saturating_sub(start.elapsed())
                });
                left.min(Duration::from_millis(100))
            };
            let ts = rustix::time::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            self.events.clear();
            match epoll::wait(
                &self.ep,
                rustix::buffer::spare_capacity(&mut self.events),
                Some(&ts),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    out.push(Completion::Error {
                        cookie: 0,
                        error: ChannelError::Os(e.to_string()),
                    });
                    return;
                }
            }
            let events = std::mem::take(&mut self.events);
            for ev in &events {
                let (flags, data) = (ev.flags, ev.data.u64());
                self.on_event(data, flags, out);
            }
            self.events = events;
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
