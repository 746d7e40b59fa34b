//! What the two kernel backends (epoll and io_uring) share: the per-core listening socket,
//! socket options set with plain system calls, the descriptor limit, and the mapping of the
//! kernel's error numbers onto the channel's error enums.

use core::net::{SocketAddr, SocketAddrV4};

use megatcp_channel::{ConnectError, Errno, ListenError, OptError, SockOpt};
use socket2::{Domain, Protocol, SockRef, Socket, TcpKeepalive, Type};

/// A listening socket on `addr` with `SO_REUSEPORT`: every core listens on the shared port
/// with its own accept queue (the kernel's partitioned listening). Connections accepted from
/// it have `TCP_NODELAY` (inherited from the listener).
pub(crate) fn listener(addr: SocketAddrV4, backlog: u32) -> Result<Socket, ListenError> {
    let err = |e: std::io::Error| listen_error(addr, &e);
    let s = Socket::new(Domain::IPV4, Type::STREAM, Some(Protocol::TCP)).map_err(err)?;
    s.set_reuse_address(true).map_err(err)?;
    s.set_reuse_port(true).map_err(err)?;
    s.set_tcp_nodelay(true).map_err(err)?;
    s.bind(&SocketAddr::V4(addr).into()).map_err(err)?;
    s.listen(backlog.clamp(1, i32::MAX as u32) as i32)
        .map_err(err)?;
    Ok(s)
}

fn listen_error(addr: SocketAddrV4, e: &std::io::Error) -> ListenError {
    match e.raw_os_error() {
        Some(libc::EADDRINUSE) => ListenError::InUse,
        Some(libc::EADDRNOTAVAIL) => ListenError::NotLocal(*addr.ip()),
        _ => ListenError::Os(Errno::of(e)),
    }
}

/// The channel's name for the reason a kernel connect failed.
pub(crate) fn connect_error(e: Errno) -> ConnectError {
    match e.0 {
        libc::ECONNREFUSED => ConnectError::Refused,
        libc::ETIMEDOUT => ConnectError::TimedOut,
        libc::ENETUNREACH | libc::EHOSTUNREACH => ConnectError::Unreachable,
        libc::EADDRNOTAVAIL => ConnectError::NoFreePort,
        _ => ConnectError::Os(e),
    }
}

/// Applies `opt` to a socket with `setsockopt(2)`.
pub(crate) fn set_opt(sock: SockRef<'_>, opt: SockOpt) -> Result<(), OptError> {
    let os = |e: std::io::Error| OptError::Os(Errno::of(&e));
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

/// Descriptors a server or load generator asks for: the default of
/// [`RingConfig::files`](crate::ring::RingConfig::files).
pub const NOFILE_WANTED: u64 = 65536;

/// Raises `RLIMIT_NOFILE` so that a process with thousands of kernel sockets does not run
/// out (the usual soft limit is 1,024, and some machines set the hard limit there too).
///
/// The soft limit goes up to [`NOFILE_WANTED`]; a hard limit below that is raised as well
/// when the process may (root, `CAP_SYS_RESOURCE`), otherwise the soft limit goes up to the
/// hard one. A limit already higher is left alone. Returns the soft limit now in force.
pub fn raise_nofile() -> u32 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    // `None` is "unlimited".
    let current = lim.current.unwrap_or(u64::MAX);
    let mut now = current;
    if current < NOFILE_WANTED {
        let hard = lim.maximum.unwrap_or(u64::MAX);
        let candidates = [
            Rlimit {
                current: Some(NOFILE_WANTED),
                maximum: lim.maximum.map(|m| m.max(NOFILE_WANTED)),
            },
            Rlimit {
                current: Some(hard.min(NOFILE_WANTED)),
                maximum: lim.maximum,
            },
        ];
        for raised in candidates {
            let soft = raised.current.unwrap_or(u64::MAX);
            if soft > current && setrlimit(Resource::Nofile, raised).is_ok() {
                now = soft;
                break;
            }
        }
    }
    u32::try_from(now).unwrap_or(u32::MAX)
}
