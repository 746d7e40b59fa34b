//! The epoll backend: the very same channel API over the Linux kernel's TCP, with
//! non-blocking sockets and edge-triggered epoll, one epoll instance per core and one
//! `SO_REUSEPORT` listener per core.
//!
//! These are the kernel's analogues of MegaPipe's ideas: `SO_REUSEPORT` gives each core its
//! own accept queue (partitioned listening); epoll reports readiness in batches (one
//! `epoll_wait` for many sockets), though every read and write is still a system call of
//! its own. The handles are the ledger's (index + generation), not file descriptors; the
//! epoll data of a socket is its handle.
//!
//! # Driving it
//!
//! Create one per core thread with [`Epoll::new`], wrap it in a
//! [`Channel`](megatcp_channel::Channel), and dispatch. Reads complete with the bytes one
//! `read(2)` returned (up to 64 KiB); writes complete when the kernel took the whole buffer;
//! a connection closed with writes still pending keeps its socket until they are written,
//! then closes it. The rules are the ledger's ([`megatcp_channel::ledger`]).
//!
//! A poll's timeout goes to the kernel in nanoseconds (`epoll_pwait2`, Linux 5.11): with
//! `epoll_wait`'s milliseconds, a timer woke the loop 0.4-2 ms after its deadline.

use core::net::{SocketAddr, SocketAddrV4};
use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use megatcp_channel::ledger::{Accept, Progress, Receive, Send, Target, Transport};
use megatcp_channel::{
    AcceptError, Backend, ChannelError, Command, Completion, ConnectError, Cookie, Errno, Handle,
    Ledger, ListenError, OptError, SockOpt,
};
use rustix::event::epoll::{self, EventData, EventFlags};
use socket2::{Domain, Protocol, SockRef, Socket, Type};

/// Bytes asked of one `read(2)`.
const READ_SIZE: usize = 64 * 1024;
/// Events taken from one `epoll_wait`.
const EVENTS: usize = 256;

/// A connection: its socket and what epoll last said about it.
struct Conn {
    sock: TcpStream,
    connecting: bool,
    readable: bool,
    writable: bool,
}

/// Why the epoll backend could not start.
#[derive(Debug, thiserror::Error)]
#[error("cannot create an epoll instance: {0}")]
pub struct EpollError(#[from] std::io::Error);

/// The system calls of the backend: the ledger's [`Transport`].
struct Io {
    ep: OwnedFd,
    /// Where `read(2)` puts the bytes before they are copied into a completion.
    scratch: Vec<u8>,
}

/// The epoll backend of one core. See the module docs.
pub struct Epoll {
    ledger: Ledger<Conn, TcpListener>,
    io: Io,
    events: Vec<epoll::Event>,
    stop: Arc<AtomicBool>,
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
        crate::raise_nofile();
        let ep = epoll::create(epoll::CreateFlags::CLOEXEC).map_err(std::io::Error::from)?;
        Ok(Self {
            ledger: Ledger::new(),
            io: Io {
                ep,
                scratch: vec![0; READ_SIZE],
            },
            events: Vec::with_capacity(EVENTS),
            stop,
        })
    }

    /// Live handles.
    pub fn live_handles(&self) -> usize {
        self.ledger.live()
    }

    fn on_event(&mut self, data: u64, flags: EventFlags, out: &mut Vec<Completion>) {
        let Some(h) = self.ledger.handle((data >> 32) as u32, data as u32) else {
            return;
        };
        if self.ledger.listener_mut(h).is_some() {
            return self.ledger.acceptable(&mut self.io, h, out);
        }
        let Some(c) = self.ledger.conn_mut(h) else {
            return;
        };
        let failed = flags.intersects(EventFlags::ERR);
        if flags.intersects(EventFlags::IN | EventFlags::RDHUP | EventFlags::HUP) || failed {
            c.readable = true;
        }
        if flags.intersects(EventFlags::OUT) || failed {
            c.writable = true;
        }
        if c.connecting {
            if !flags.intersects(EventFlags::OUT | EventFlags::ERR | EventFlags::HUP) {
                return;
            }
            let err = c.sock.take_error().ok().flatten();
            if let Some(e) = err.or_else(|| c.sock.peer_addr().err()) {
                let e = crate::sockets::connect_error(Errno::of(&e));
                return self.ledger.connect_failed(&mut self.io, h, e, out);
            }
            c.connecting = false;
            return self.ledger.connected(&mut self.io, h, out);
        }
        self.ledger.readable(&mut self.io, h, out);
        self.ledger.writable(&mut self.io, h, out);
    }
}

impl Io {
    fn register(&self, fd: impl AsFd, h: Handle, listener: bool) -> std::io::Result<()> {
        let flags = if listener {
            EventFlags::IN | EventFlags::ET
        } else {
            EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP | EventFlags::ET
        };
        epoll::add(&self.ep, fd, EventData::new_u64(data_of(h)), flags).map_err(Into::into)
    }
}

impl Transport for Io {
    type Conn = Conn;
    type Listener = TcpListener;

    fn listen(
        &mut self,
        handle: Handle,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> Result<TcpListener, ListenError> {
        let s = crate::sockets::listener(addr, backlog)?;
        let os = |e: std::io::Error| ListenError::Os(Errno::of(&e));
        s.set_nonblocking(true).map_err(os)?;
        let sock: TcpListener = s.into();
        self.register(&sock, handle, true).map_err(os)?;
        Ok(sock)
    }

    fn accept(&mut self, l: &mut TcpListener, handle: Handle) -> Accept<Conn> {
        loop {
            match l.accept() {
                Ok((sock, peer)) => {
                    let Some(peer) = v4(peer) else { continue };
                    let setup = sock
                        .set_nonblocking(true)
                        .and_then(|()| sock.set_nodelay(true))
                        .and_then(|()| self.register(&sock, handle, false));
                    if let Err(e) = setup {
                        return Accept::Failed(AcceptError(Errno::of(&e)));
                    }
                    let conn = Conn {
                        sock,
                        connecting: false,
                        readable: true,
                        writable: true,
                    };
                    return Accept::Conn(conn, peer);
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => return Accept::Empty,
                Err(e)
                    if e.kind() == ErrorKind::Interrupted
                        || e.kind() == ErrorKind::ConnectionAborted => {}
                // E.g. out of file descriptors: reported; the next event tries again.
                Err(e) => return Accept::Failed(AcceptError(Errno::of(&e))),
            }
        }
    }

    fn connect(&mut self, handle: Handle, remote: SocketAddrV4) -> Result<Conn, ConnectError> {
        let err = |e: std::io::Error| crate::sockets::connect_error(Errno::of(&e));
        let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
        s.set_nonblocking(true).map_err(err)?;
        s.set_tcp_nodelay(true).map_err(err)?;
        match s.connect(&SocketAddr::V4(remote).into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(err(e)),
        }
        let sock: TcpStream = s.into();
        self.register(&sock, handle, false).map_err(err)?;
        Ok(Conn {
            sock,
            connecting: true,
            readable: false,
            writable: false,
        })
    }

    fn receive(&mut self, c: &mut Conn, _: Handle, buf: &mut Vec<u8>) -> Receive {
        // Read into the core's scratch buffer (zeroed once), then copy out only what came:
        // no 64 KiB buffer to clear and fault in per read.
        while c.readable {
            match c.sock.read(&mut self.scratch) {
                Ok(0) => return Receive::Eof,
                Ok(n) => {
                    buf.extend_from_slice(self.scratch.get(..n).unwrap_or_default());
                    return Receive::Data;
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.readable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Receive::Failed,
            }
        }
        Receive::Nothing
    }

    fn send(&mut self, c: &mut Conn, _: Handle, data: &mut Vec<u8>, offset: usize) -> Send {
        let rest = data.get(offset..).unwrap_or_default();
        let mut taken = 0;
        while c.writable && taken < rest.len() {
            match c.sock.write(&rest[taken..]) {
                Ok(0) => c.writable = false,
                Ok(n) => taken += n,
                Err(e) if e.kind() == ErrorKind::WouldBlock => c.writable = false,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return Send::Failed,
            }
        }
        Send::Taken(taken)
    }

    fn shutdown(&mut self, c: &mut Conn, _: Handle) -> Progress {
        let _ = c.sock.shutdown(Shutdown::Write);
        Progress::Done
    }

    fn close(&mut self, c: Conn, _: Handle) {
        // Closing the descriptor takes it out of the epoll set too.
        drop(c);
    }

    fn abort(&mut self, c: Conn, _: Handle) {
        // SO_LINGER 0: close sends a RST.
        let _ = SockRef::from(&c.sock).set_linger(Some(Duration::ZERO));
        drop(c);
    }

    fn close_listener(&mut self, l: TcpListener, _: Handle) {
        drop(l);
    }

    fn set_opt(
        &mut self,
        target: Target<'_, Conn, TcpListener>,
        _: Handle,
        opt: SockOpt,
        _: Cookie,
    ) -> Result<Progress, OptError> {
        let sock = match target {
            Target::Conn(c) => SockRef::from(&c.sock),
            Target::Listener(l) => SockRef::from(&*l),
        };
        crate::sockets::set_opt(sock, opt)?;
        Ok(Progress::Done)
    }
}

impl Backend for Epoll {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.ledger.submit(&mut self.io, cmd, out);
        }
    }

    fn poll(&mut self, timeout: Option<Duration>, out: &mut Vec<Completion>) {
        let start = Instant::now();
        loop {
            let wait = crate::wait_time(timeout, start, out);
            let ts = rustix::time::Timespec {
                tv_sec: wait.as_secs() as i64,
                tv_nsec: i64::from(wait.subsec_nanos()),
            };
            self.events.clear();
            match epoll::wait(
                &self.io.ep,
                rustix::buffer::spare_capacity(&mut self.events),
                Some(&ts),
            ) {
                Ok(_) | Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    out.push(Completion::Error {
                        cookie: 0,
                        error: ChannelError::Backend(Errno(e.raw_os_error())),
                    });
                    return;
                }
            }
            let events = std::mem::take(&mut self.events);
            for ev in &events {
                self.on_event(ev.data.u64(), ev.flags, out);
            }
            self.events = events;
            if crate::poll_done(timeout, start, out, &self.stop) {
                return;
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
