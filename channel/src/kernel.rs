//! What the two kernel backends (epoll and io_uring) share: the per-core listening socket
//! and socket options set with plain system calls.

use core::net::{SocketAddr, SocketAddrV4};

use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

use crate::{ChannelError, SockOpt};

/// A listening socket on `addr` with `SO_REUSEPORT`: every core listens on the shared port
/// with its own accept queue (the kernel's partitioned listening). Connections accepted from
/// it have `TCP_NODELAY` (inherited from the listener).
pub(crate) fn listener(addr: SocketAddrV4, backlog: u32) -> Result<Socket, ChannelError> {
    let err = |e: std::io::Error| ChannelError::Listen(addr, e.to_string());
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    s.set_tcp_nodelay(true).map_err(err)?;
    s.bind(&SocketAddr::V4(addr).into()).map_err(err)?;
    s.listen(backlog.clamp(1, i32::MAX as u32) as i32)
        .map_err(err)?;
    Ok(s)
}

/// Applies `opt` to a socket with `setsockopt(2)`.
pub(crate) fn set_opt(sock: SockRef<'_>, opt: SockOpt) -> Result<(), ChannelError> {
    let os = |e: std::io::Error| ChannelError::Os(e.to_string());
    match opt {
        SockOpt::NoDelay(on) => sock.set_tcp_nodelay(on).map_err(os),
        SockOpt::KeepAlive(None) => sock.set_keepalive(false).map_err(os),
        SockOpt::KeepAlive(Some(d)) => sock
            .set_tcp_keepalive(&TcpKeepalive::new().with_time(d).with_interval(d))
            .map_err(os),
        SockOpt::BufferSizes { rx, tx } => {
            sock.set_recv_buffer_size(rx).map_err(os)?;
            sock.set_send_buffer_size(tx).map_err(os)
        }
    }
}
