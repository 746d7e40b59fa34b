//! [`TcpListener`]: this core's own accept queue on a port (MegaPipe's partitioned
//! listening: every core of a `launch` run binds the same port and gets its own share of
//! the connections).

use std::collections::VecDeque;
use std::io;
use std::net::{SocketAddr, SocketAddrV4, ToSocketAddrs};
use std::task::{Context, Poll};

use megatcp_channel::Command;

use crate::addr::resolve_v4;
use crate::error::{Stopped, io_error};
use crate::executor::current;
use crate::reactor::{Listener, Op, Sock, set_waker};
use crate::stream::{Owned, TcpStream};

/// Listens on a port: this core's own accept queue. Dropping it closes the listener and the
/// connections it accepted that nobody took.
///
/// Connections are accepted ahead of [`accept`](Self::accept) (one multishot accept on the
/// channel) into a queue of at most `backlog` (1,024 with [`bind`](Self::bind)); one more
/// is closed at once and counted in
/// [`RuntimeStats::accept_overflow`](crate::RuntimeStats::accept_overflow).
pub struct TcpListener {
    owned: Owned,
    local: SocketAddrV4,
}

impl std::fmt::Debug for TcpListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TcpListener")
            .field("local", &self.local)
            .finish()
    }
}

impl TcpListener {
    /// Listens on `addr` (IPv4; `0.0.0.0` for every local address) with a backlog of 1,024.
    pub async fn bind(addr: impl ToSocketAddrs) -> io::Result<TcpListener> {
        Self::bind_with_backlog(addr, 1024).await
    }

    /// Listens on `addr` with `backlog` (connections being established plus those not yet
    /// accepted).
    pub async fn bind_with_backlog(addr: impl ToSocketAddrs, backlog: u32) -> io::Result<Self> {
        let local = resolve_v4(addr)?;
        let core = current();
        let key = {
            let mut io = core.io.borrow_mut();
            let key = io.socks.insert(Sock::Listener(Listener {
                handle: None,
                backlog: backlog.max(1) as usize,
                bind_err: None,
                accepting: false,
                queue: VecDeque::new(),
                err: None,
                waker: None,
            }));
            io.cmds.push(Command::Listen {
                addr: local,
                backlog,
                cookie: Op::Listen.cookie(key),
            });
            key
        };
        let owned = Owned { core, key };
        std::future::poll_fn(|cx| {
            let mut io = owned.core.io.borrow_mut();
            let Some(l) = io.listener(key) else {
                return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
            };
            if let Some(e) = l.bind_err.take() {
                return Poll::Ready(Err(io_error(e)));
            }
            if l.handle.is_some() {
                return Poll::Ready(Ok(()));
            }
            set_waker(&mut l.waker, cx.waker());
            Poll::Pending
        })
        .await?;
        Ok(TcpListener { owned, local })
    }

    /// The address it listens on, as bound.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        Ok(SocketAddr::V4(self.local))
    }

    /// The next connection and its peer. Once the runtime is asked to stop it fails with
    /// [`Stopped`] (kind `ConnectionAborted`): a server's accept loop ends there.
    pub fn poll_accept(&self, cx: &mut Context<'_>) -> Poll<io::Result<(TcpStream, SocketAddr)>> {
        let core = &self.owned.core;
        let mut io = core.io.borrow_mut();
        if io.stopping {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::ConnectionAborted,
                Stopped,
            )));
        }
        let Some(l) = io.listener(self.owned.key) else {
            return Poll::Ready(Err(io::ErrorKind::NotConnected.into()));
        };
        if let Some((handle, peer)) = l.queue.pop_front() {
            let key = io.add_stream(handle);
            let stream = TcpStream::new(core.clone(), key, handle, peer);
            return Poll::Ready(Ok((stream, SocketAddr::V4(peer))));
        }
        if let Some(e) = l.err.take() {
            return Poll::Ready(Err(io_error(e)));
        }
        set_waker(&mut l.waker, cx.waker());
        if !l.accepting
            && let Some(listener) = l.handle
        {
            l.accepting = true;
            io.cmds.push(Command::Accept {
                listener,
                multishot: true,
                cookie: Op::Accept.cookie(self.owned.key),
            });
        }
        Poll::Pending
    }

    /// The next connection and its peer (see [`poll_accept`](Self::poll_accept)).
    pub async fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        std::future::poll_fn(|cx| self.poll_accept(cx)).await
    }
}
