//! The runtime's errors, and how a channel error becomes an [`std::io::Error`]: every
//! operation of [`TcpStream`](crate::TcpStream) and [`TcpListener`](crate::TcpListener)
//! answers with `io::Error` (as tokio's and std's sockets do), its kind picked from the
//! channel's typed error, which stays reachable as the source
//! (`e.get_ref()` downcasts to [`megatcp_channel::ChannelError`]).

use std::io::{self, ErrorKind};

use megatcp_channel::{ChannelError, ConnectError, ListenError, StateError};

/// `accept` after the runtime was asked to stop (SIGINT/SIGTERM through `launch`, or
/// [`request_stop`](crate::request_stop)): the listener takes no new connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the runtime is stopping: no new connections are accepted")]
pub struct Stopped;

/// A [`timeout`](crate::timeout) whose deadline passed before its future completed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("deadline elapsed")]
pub struct Elapsed;

/// Why a [`JoinHandle`](crate::JoinHandle) has no value: the task was dropped before it
/// completed (its runtime ended first).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the task was dropped before it completed")]
pub struct JoinError;

/// Why an address cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AddrError {
    /// megatcp speaks IPv4 only (yet).
    #[error("{0}: IPv6 is not supported")]
    Ipv6(std::net::SocketAddr),
    /// The address did not resolve to any IPv4 address.
    #[error("no IPv4 address found")]
    NoAddress,
}

/// The kind of I/O error a channel error stands for.
pub(crate) fn kind_of(e: &ChannelError) -> ErrorKind {
    match e {
        ChannelError::BadHandle(_) | ChannelError::Reset(_) => ErrorKind::ConnectionReset,
        ChannelError::WrongKind(..) => ErrorKind::InvalidInput,
        ChannelError::InvalidState(_, s) => match s {
            StateError::WriteAfterShutdown | StateError::AlreadyShutDown => ErrorKind::BrokenPipe,
            StateError::ListenerClosed
            | StateError::ClosedWhileReading
            | StateError::ClosedWhileConnecting => ErrorKind::ConnectionAborted,
            StateError::AcceptPending | StateError::ReadPending => ErrorKind::WouldBlock,
        },
        ChannelError::Listen(_, l) => match l {
            ListenError::NotLocal(_) => ErrorKind::AddrNotAvailable,
            ListenError::InUse => ErrorKind::AddrInUse,
            ListenError::ZeroPort | ListenError::ZeroBacklog => ErrorKind::InvalidInput,
            ListenError::Os(e) => e.kind(),
        },
        ChannelError::Accept(_, a) => a.0.kind(),
        ChannelError::Connect(_, c) => match c {
            ConnectError::Refused | ConnectError::RefusedOrTimedOut => ErrorKind::ConnectionRefused,
            ConnectError::TimedOut => ErrorKind::TimedOut,
            ConnectError::Unreachable => ErrorKind::HostUnreachable,
            ConnectError::BadRemote => ErrorKind::InvalidInput,
            ConnectError::NoFreePort => ErrorKind::AddrNotAvailable,
            ConnectError::Os(e) => e.kind(),
        },
        ChannelError::SetOpt(..) => ErrorKind::Unsupported,
        ChannelError::Shutdown(_, e) | ChannelError::Backend(e) => e.kind(),
    }
}

/// `e` as an I/O error of its kind, with `e` as the source.
pub(crate) fn io_error(e: ChannelError) -> io::Error {
    io::Error::new(kind_of(&e), e)
}

#[cfg(test)]
mod tests {
    use super::*;
    use megatcp_channel::Handle;
    use std::net::{Ipv4Addr, SocketAddrV4};

    #[test]
    fn channel_errors_keep_their_meaning_and_their_source() {
        let addr = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 9);
        let e = io_error(ChannelError::Connect(addr, ConnectError::Refused));
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused);
        let inner = e.get_ref().and_then(|s| s.downcast_ref::<ChannelError>());
        assert_eq!(
            inner,
            Some(&ChannelError::Connect(addr, ConnectError::Refused))
        );
        let h = Handle::new(1, 2, 3);
        assert_eq!(
            io_error(ChannelError::Reset(h)).kind(),
            ErrorKind::ConnectionReset
        );
        assert_eq!(
            io_error(ChannelError::Listen(addr, ListenError::InUse)).kind(),
            ErrorKind::AddrInUse
        );
    }
}
