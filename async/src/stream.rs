//! [`TcpStream`]: one connection of this core's channel, read and written through futures.

use std::io::{self, IoSlice};
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::rc::Rc;
use std::task::{Context, Poll};

use megatcp_channel::{Command, Handle, SockOpt};

use crate::addr::resolve_v4;
use crate::error::io_error;
use crate::executor::{Core, current};
use crate::reactor::{Connecting, Op, Reactor, Shut, Sock, Stream, WRITE_WINDOW, set_waker};
use crate::slots::Key;

/// A socket of the core's socket table, removed when dropped (the owner of a stream, a
/// listener, or a `connect`/`bind` in flight).
pub(crate) struct Owned {
    pub(crate) core: Rc<Core>,
    pub(crate) key: Key,
}

impl Drop for Owned {
    fn drop(&mut self) {
        if let Ok(mut io) = self.core.io.try_borrow_mut() {
            io.drop_sock(self.key);
        }
    }
}

/// A TCP connection on this core's channel (a [`Handle`] underneath), made by
/// [`TcpStream::connect`] or [`TcpListener::accept`](crate::TcpListener::accept).
///
/// Reads and writes are futures. [`recv`](Self::recv) and [`send`](Self::send) move owned
/// buffers: the bytes a read completion brought are handed over as they are (no copy
/// beyond the channel's own), and a sent buffer goes to the channel as it is.
/// [`read`](Self::read) / [`write`](Self::write) and the tokio and futures-io traits
/// (features `tokio`, `futures-io`) copy between those buffers and the caller's slice, as
/// their signatures require.
///
/// Writes are taken at once while fewer than 256 KiB of this stream's writes wait for the
/// transport (else they wait); flushing is a no-op, as on a kernel socket: taken bytes go
/// out in order, even when the stream is dropped right after (dropping closes with a FIN
/// after them). A write error shows at the next write, flush or shutdown. Dropping a read
/// in flight loses nothing: the bytes it was waiting for go to the next read.
///
/// Not `Send`: it belongs to its core.
pub struct TcpStream {
    owned: Owned,
    handle: Handle,
    peer: SocketAddrV4,
}

impl std::fmt::Debug for TcpStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpStream")
            .field("handle", &self.handle)
            .field("peer", &self.peer)
            .finish()
    }
}

/// The stream's state, or the error a stream that is not (any more) a stream gives.
fn stream(io: &mut Reactor, key: Key) -> io::Result<&mut Stream> {
    io.stream(key)
        .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
}

impl TcpStream {
    pub(crate) fn new(core: Rc<Core>, key: Key, handle: Handle, peer: SocketAddrV4) -> Self {
        Self {
            owned: Owned { core, key },
            handle,
            peer,
        }
    }

    /// Opens a connection to `addr` (IPv4; a host name is resolved by the system, blocking).
    /// Dropping the future before it completes closes the connection once it opens.
    pub async fn connect(addr: impl ToSocketAddrs) -> io::Result<TcpStream> {
        let remote = resolve_v4(addr)?;
        let core = current();
        let key = {
            let mut io = core.io.borrow_mut();
            let key = io.socks.insert(Sock::Connecting(Connecting {
                err: None,
                waker: None,
            }));
            io.cmds.push(Command::Connect {
                remote,
                cookie: Op::Connect.cookie(key),
            });
            key
        };
        let owned = Owned { core, key };
        let handle = std::future::poll_fn(|cx| {
            let mut io = owned.core.io.borrow_mut();
            match io.socks.get_mut(key) {
                Some(Sock::Stream(s)) => Poll::Ready(Ok(s.handle)),
                Some(Sock::Connecting(c)) => match c.err.take() {
                    Some(e) => Poll::Ready(Err(io_error(e))),
                    None => {
                        set_waker(&mut c.waker, cx.waker());
                        Poll::Pending
                    }
                },
                _ => Poll::Ready(Err(io::ErrorKind::NotConnected.into())),
            }
        })
        .await?;
        Ok(TcpStream {
            owned,
            handle,
            peer: remote,
        })
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.peer))
    }

    /// The channel's handle of the connection.
    pub fn handle(&self) -> Handle {
        self.handle
    }

    /// Sets `TCP_NODELAY` (megatcp's own stack has Nagle off already). A refusal is counted
    /// in [`RuntimeStats::orphan_errors`](crate::RuntimeStats::orphan_errors).
    pub fn set_nodelay(&self, on: bool) {
        self.owned.core.io.borrow_mut().cmds.push(Command::SetOpt {
            handle: self.handle,
            opt: SockOpt::NoDelay(on),
            cookie: Op::Opt.cookie(self.owned.key),
        });
    }

    /// Resets the connection (RST, no TIME-WAIT) instead of closing it.
    pub fn abort(self) {
        let mut io = self.owned.core.io.borrow_mut();
        io.cmds.push(Command::Abort {
            handle: self.handle,
            cookie: Op::Close.cookie(Key::NONE),
        });
        io.socks.remove(self.owned.key);
    }

    /// Waits until received bytes are buffered (`true`) or the stream ended (`false`),
    /// asking the channel for a read when none is in flight.
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<bool>> {
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        if s.rx_off < s.rx.len() {
            return Poll::Ready(Ok(true));
        }
        if let Some(e) = &s.read_err {
            return Poll::Ready(Err(io_error(e.clone())));
        }
        if s.eof {
            return Poll::Ready(Ok(false));
        }
        set_waker(&mut s.read_waker, cx.waker());
        if !s.reading {
            s.reading = true;
            io.cmds.push(Command::Read {
                handle: self.handle,
                cookie: Op::Read.cookie(self.owned.key),
            });
        }
        Poll::Pending
    }

    /// Hands buffered bytes to `take`, which returns how many it took; that count (0 at
    /// the end of the stream).
    pub fn poll_read_with(
        &mut self,
        cx: &mut Context<'_>,
        take: impl FnOnce(&[u8]) -> usize,
    ) -> Poll<io::Result<usize>> {
        match self.poll_fill(cx) {
            Poll::Ready(Ok(true)) => {}
            Poll::Ready(Ok(false)) => return Poll::Ready(Ok(0)),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        let n = take(&s.rx[s.rx_off..]).min(s.rx.len() - s.rx_off);
        s.rx_off += n;
        if s.rx_off == s.rx.len() {
            let v = std::mem::take(&mut s.rx);
            s.rx_off = 0;
            io.give_back(v);
        }
        Poll::Ready(Ok(n))
    }

    /// The next received bytes as the channel delivered them (empty at the end of the
    /// stream).
    pub fn poll_recv(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<Vec<u8>>> {
        match self.poll_fill(cx) {
            Poll::Ready(Ok(true)) => {}
            Poll::Ready(Ok(false)) => return Poll::Ready(Ok(Vec::new())),
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        let mut v = std::mem::take(&mut s.rx);
        // Only after a partial `read`: the rest moves to the front.
        v.drain(..s.rx_off);
        s.rx_off = 0;
        Poll::Ready(Ok(v))
    }

    /// Reads into `buf`: how many bytes (0 at the end of the stream, or for an empty `buf`).
    pub async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        std::future::poll_fn(|cx| {
            self.poll_read_with(cx, |b| {
                let n = b.len().min(buf.len());
                buf[..n].copy_from_slice(&b[..n]);
                n
            })
        })
        .await
    }

    /// The next received bytes, as the channel's read completion brought them (no copy);
    /// empty at the end of the stream.
    pub async fn recv(&mut self) -> io::Result<Vec<u8>> {
        std::future::poll_fn(|cx| self.poll_recv(cx)).await
    }

    /// Whether a write may be taken now (else the waker is kept); the stream's write error.
    fn poll_room(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        if let Some(e) = &s.write_err {
            return Poll::Ready(Err(io_error(e.clone())));
        }
        if s.shut != Shut::Open {
            return Poll::Ready(Err(io::ErrorKind::BrokenPipe.into()));
        }
        if s.unacked >= WRITE_WINDOW {
            set_waker(&mut s.write_waker, cx.waker());
            return Poll::Pending;
        }
        Poll::Ready(Ok(WRITE_WINDOW - s.unacked))
    }

    /// Queues a write of `v` (the caller checked the room).
    fn push_write(&mut self, v: Vec<u8>) {
        let mut io = self.owned.core.io.borrow_mut();
        if let Some(s) = io.stream(self.owned.key) {
            s.unacked += v.len();
        }
        io.cmds.push(Command::Write {
            handle: self.handle,
            data: v,
            cookie: Op::Write.cookie(self.owned.key),
        });
    }

    /// Writes from `bufs` (gathered into one write): how many bytes were taken.
    pub fn poll_write_vectored(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let total: usize = bufs.iter().map(|b| b.len()).sum();
        if total == 0 {
            return Poll::Ready(Ok(0));
        }
        let room = match self.poll_room(cx) {
            Poll::Ready(Ok(room)) => room,
            other => return other,
        };
        let n = total.min(room);
        let mut v = self.owned.core.io.borrow_mut().buffer(n);
        for b in bufs {
            let take = b.len().min(n - v.len());
            v.extend_from_slice(&b[..take]);
            if v.len() == n {
                break;
            }
        }
        self.push_write(v);
        Poll::Ready(Ok(n))
    }

    /// Sends `data` as it is (no copy): waits only while the stream's queued writes fill
    /// its window. The buffer is taken out of `data` when sent.
    pub fn poll_send(
        &mut self,
        cx: &mut Context<'_>,
        data: &mut Option<Vec<u8>>,
    ) -> Poll<io::Result<()>> {
        if data.as_ref().is_none_or(Vec::is_empty) {
            return Poll::Ready(Ok(()));
        }
        match self.poll_room(cx) {
            Poll::Ready(Ok(_)) => {}
            Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
            Poll::Pending => return Poll::Pending,
        }
        if let Some(v) = data.take() {
            self.push_write(v);
        }
        Poll::Ready(Ok(()))
    }

    /// Writes from `buf`: how many bytes were taken (all of them unless the window is
    /// nearly full).
    pub async fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        std::future::poll_fn(|cx| self.poll_write_vectored(cx, &[IoSlice::new(buf)])).await
    }

    /// Writes all of `buf`.
    pub async fn write_all(&mut self, mut buf: &[u8]) -> io::Result<()> {
        while !buf.is_empty() {
            let n = self.write(buf).await?;
            buf = &buf[n..];
        }
        Ok(())
    }

    /// Sends `data` as it is, without copying it.
    pub async fn send(&mut self, data: Vec<u8>) -> io::Result<()> {
        let mut data = Some(data);
        std::future::poll_fn(|cx| self.poll_send(cx, &mut data)).await
    }

    /// The stream's write error, if a write failed.
    pub fn poll_flush(&mut self, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        Poll::Ready(match &s.write_err {
            Some(e) => Err(io_error(e.clone())),
            None => Ok(()),
        })
    }

    /// Waits until every byte written so far was taken by the transport (the kernel's
    /// socket, megatcp's send buffer); the stream's write error if a write failed.
    pub async fn drain(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| {
            let mut io = self.owned.core.io.borrow_mut();
            let s = stream(&mut io, self.owned.key)?;
            if let Some(e) = &s.write_err {
                return Poll::Ready(Err(io_error(e.clone())));
            }
            if s.unacked == 0 {
                return Poll::Ready(Ok(()));
            }
            set_waker(&mut s.write_waker, cx.waker());
            Poll::Pending
        })
        .await
    }

    /// Shuts the write side down (FIN after the queued writes); reading goes on.
    pub fn poll_shutdown(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let mut io = self.owned.core.io.borrow_mut();
        let s = stream(&mut io, self.owned.key)?;
        if s.shut == Shut::Done {
            return Poll::Ready(match &s.write_err {
                Some(e) => Err(io_error(e.clone())),
                None => Ok(()),
            });
        }
        set_waker(&mut s.write_waker, cx.waker());
        if s.shut == Shut::Open {
            s.shut = Shut::Pending;
            io.cmds.push(Command::Shutdown {
                handle: self.handle,
                cookie: Op::Shutdown.cookie(self.owned.key),
            });
        }
        Poll::Pending
    }

    /// Shuts the write side down (FIN after the queued writes); reading goes on.
    pub async fn shutdown(&mut self) -> io::Result<()> {
        std::future::poll_fn(|cx| self.poll_shutdown(cx)).await
    }
}
