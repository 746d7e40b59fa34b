//! Why a command failed: one error enum per operation, gathered in [`ChannelError`], the
//! error a [`Completion::Error`](crate::Completion::Error) carries. Every backend reports
//! the same variants for the same causes; nothing at this boundary is a string.

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::{Handle, SockOpt};

/// An operating-system error number, as a kernel backend got it. Its text is the system's
/// (`strerror`), looked up when it is displayed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Errno(pub i32);

impl Errno {
    /// The error number of `e`; `EIO` (5) when it carries none.
    pub fn of(e: &std::io::Error) -> Self {
        Self(e.raw_os_error().unwrap_or(5))
    }

    /// The standard library's classification of the number.
    pub fn kind(self) -> std::io::ErrorKind {
        std::io::Error::from_raw_os_error(self.0).kind()
    }
}

impl core::fmt::Display for Errno {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        std::io::Error::from_raw_os_error(self.0).fmt(f)
    }
}

impl From<std::io::Error> for Errno {
    fn from(e: std::io::Error) -> Self {
        Self::of(&e)
    }
}

/// What a handle stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum HandleKind {
    /// A connection.
    Connection,
    /// A listener.
    Listener,
}

impl core::fmt::Display for HandleKind {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(match self {
            HandleKind::Connection => "connection",
            HandleKind::Listener => "listener",
        })
    }
}

/// Why the channel's rules refuse a command in the handle's present state, or end a pending
/// one (see the crate docs).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, thiserror::Error)]
pub enum StateError {
    /// An `Accept` is already pending on the listener.
    #[error("accept pending")]
    AcceptPending,
    /// A `Read` is already pending on the connection.
    #[error("a read is already pending")]
    ReadPending,
    /// A `Write` after `Shutdown`.
    #[error("write after shutdown")]
    WriteAfterShutdown,
    /// A second `Shutdown`.
    #[error("already shut down")]
    AlreadyShutDown,
    /// The pending `Read` ended because the application closed the connection.
    #[error("closed while reading")]
    ClosedWhileReading,
    /// The pending `Connect` ended because the application closed the connection.
    #[error("closed while connecting")]
    ClosedWhileConnecting,
    /// The pending `Accept` ended because the application closed the listener.
    #[error("listener closed")]
    ListenerClosed,
}

/// Why `Listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// The address is not one of this core's addresses (nor 0.0.0.0).
    #[error("{0} is not a local address")]
    NotLocal(Ipv4Addr),
    /// Something already listens on this address and port (and does not share it).
    #[error("address in use")]
    InUse,
    /// Port 0 cannot be listened on (bypass backends).
    #[error("port 0 cannot be listened on")]
    ZeroPort,
    /// A backlog of 0 would refuse every connection.
    #[error("backlog must be at least 1")]
    ZeroBacklog,
    /// Any other refusal of the operating system (kernel backends).
    #[error("{0}")]
    Os(Errno),
}

/// Why `Accept` failed (the listener stays; the next `Accept` tries again).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("accept failed: {0}")]
pub struct AcceptError(pub Errno);

/// Why `Connect` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The peer refused (a RST: nothing listens there).
    #[error("connection refused")]
    Refused,
    /// No answer in time.
    #[error("connection timed out")]
    TimedOut,
    /// Refused, or no answer in time: the bypass stack's report does not tell the two apart.
    #[error("connection refused or timed out")]
    RefusedOrTimedOut,
    /// No route to the network or host.
    #[error("network or host unreachable")]
    Unreachable,
    /// The remote address or port is unusable (unspecified, broadcast, multicast, port 0).
    #[error("not a usable peer address")]
    BadRemote,
    /// Every source port to this destination is taken.
    #[error("no free source port")]
    NoFreePort,
    /// Any other refusal of the operating system (kernel backends).
    #[error("{0}")]
    Os(Errno),
}

/// Why `SetOpt` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum OptError {
    /// The backend cannot apply this option to this kind of handle.
    #[error("option {0:?} not supported here")]
    Unsupported(SockOpt),
    /// Buffer sizes outside what the backend takes (bypass: 1 KiB ..= 1 GiB).
    #[error("buffer sizes {rx}/{tx} out of range")]
    OutOfRange {
        /// Receive buffer asked for.
        rx: usize,
        /// Send buffer asked for.
        tx: usize,
    },
    /// The connection has no socket yet (its `Connect` is still starting).
    #[error("not connected yet")]
    NotConnected,
    /// The operating system refused (kernel backends).
    #[error("{0}")]
    Os(Errno),
}

/// Why a command failed: the handle was bad, a rule refused it, or the operation's own error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChannelError {
    /// The handle is stale (closed, reset) or was never issued by this channel.
    #[error("bad handle {0}: closed, or not from this channel")]
    BadHandle(Handle),
    /// The handle is of the wrong kind for the command (e.g. a read on a listener): the
    /// handle, what it is, what the command needs.
    #[error("handle {0} is a {1}; the command needs a {2}")]
    WrongKind(Handle, HandleKind, HandleKind),
    /// A rule refused the command, or ended it while pending.
    #[error("handle {0}: {1}")]
    InvalidState(Handle, StateError),
    /// The connection was reset by the peer or timed out (or was aborted) while the command
    /// was pending.
    #[error("connection {0} reset")]
    Reset(Handle),
    /// Listening on the address failed.
    #[error("listen on {0}: {1}")]
    Listen(SocketAddrV4, ListenError),
    /// Accepting on the listener failed.
    #[error("listener {0}: {1}")]
    Accept(Handle, AcceptError),
    /// Opening a connection to the address failed.
    #[error("connect to {0}: {1}")]
    Connect(SocketAddrV4, ConnectError),
    /// Setting an option failed.
    #[error("handle {0}: {1}")]
    SetOpt(Handle, OptError),
    /// Shutting the write side down failed.
    #[error("shutdown of {0}: {1}")]
    Shutdown(Handle, Errno),
    /// The backend itself failed (its system call, its ring); reported with cookie 0.
    #[error("backend: {0}")]
    Backend(Errno),
}
