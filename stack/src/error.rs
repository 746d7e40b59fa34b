//! One error enum per operation of the [`Stack`](crate::Stack).

/// Why `listen` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ListenError {
    /// The address is not one of this stack's addresses (nor 0.0.0.0).
    #[error("{0} is not a local address of this stack")]
    NotLocal(core::net::Ipv4Addr),
    /// Port 0 cannot be listened on.
    #[error("port 0 cannot be listened on")]
    ZeroPort,
    /// Something already listens on this address and port.
    #[error("address {0} already has a listener")]
    InUse(core::net::SocketAddrV4),
    /// A backlog of 0 would refuse every connection.
    #[error("backlog must be at least 1")]
    ZeroBacklog,
}

/// Why `connect` failed at once (failures on the wire come as
/// [`Event::ConnectFailed`](crate::Event::ConnectFailed)).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ConnectError {
    /// The requested source address is not one of this stack's addresses.
    #[error("{0} is not a local address of this stack")]
    NotLocal(core::net::Ipv4Addr),
    /// The remote address or port is unusable (unspecified, broadcast, multicast, port 0).
    #[error("cannot connect to {0}")]
    BadRemote(core::net::SocketAddrV4),
    /// Every ephemeral source port is in use for this destination (or refused by the port
    /// filter).
    #[error("no free source port to {0}")]
    NoFreePort(core::net::SocketAddrV4),
    /// The requested source port is in use for this destination.
    #[error("source port {0} is in use for this destination")]
    PortInUse(u16),
}

/// Why an operation on a connection failed because of its handle or state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HandleError {
    /// The id was released (closed, aborted, reset, failed) or never belonged to this stack.
    #[error("stale or unknown connection handle")]
    Stale,
}

/// Why `send` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SendError {
    /// Stale handle.
    #[error(transparent)]
    Handle(#[from] HandleError),
    /// The write side is shut down (`shutdown`) or the connection is not yet/no longer able
    /// to send.
    #[error("connection cannot send in its current state")]
    InvalidState,
}

/// Why `recv` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum RecvError {
    /// Stale handle.
    #[error(transparent)]
    Handle(#[from] HandleError),
    /// The peer closed its side and every byte it sent has been read: end of stream.
    #[error("end of stream")]
    Finished,
    /// The connection is not yet established.
    #[error("connection cannot receive in its current state")]
    InvalidState,
}

/// Why a [`StackConfig`](crate::StackConfig) was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No local IPv4 address.
    #[error("the stack needs at least one IPv4 address")]
    NoAddress,
    /// Not a unicast address (or prefix length over 32).
    #[error("{0} is not a usable unicast address")]
    BadAddress(crate::LocalAddr),
    /// Not a unicast MAC address.
    #[error("{0} is not a unicast Ethernet address")]
    BadMac(crate::MacAddr),
    /// MTU outside 576..=9000.
    #[error("MTU {0} is outside 576..=9000")]
    BadMtu(usize),
    /// A TCP buffer under 1 KiB.
    #[error("TCP buffers must be at least 1 KiB")]
    BufferTooSmall,
    /// A TCP buffer over 1 GiB.
    #[error("TCP buffers must be at most 1 GiB")]
    BufferTooLarge,
    /// An empty ephemeral port range, or one that includes port 0.
    #[error("the ephemeral port range must be non-empty and exclude 0")]
    BadPortRange,
    /// More local addresses than a stack handles (255).
    #[error("{0} local addresses: at most 255")]
    TooManyAddresses(usize),
    /// A minimum RTO outside 10 ms ..= 1 s.
    #[error("minimum RTO {0} is outside 10 ms ..= 1 s")]
    BadMinRto(crate::Duration),
    /// A TIME-WAIT over 120 s.
    #[error("TIME-WAIT {0} is over 120 s")]
    BadTimeWait(crate::Duration),
    /// A handshake timeout of zero.
    #[error("the handshake timeout must be above zero")]
    BadHandshakeTimeout,
}

/// Why `set_listener_buffers` failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum BufferSizeError {
    /// Stale listener handle.
    #[error("stale or unknown listener handle")]
    Stale,
    /// A size outside 1 KiB ..= 1 GiB.
    #[error("buffer sizes {rx}/{tx} outside 1 KiB ..= 1 GiB")]
    OutOfRange {
        /// Receive buffer asked for.
        rx: usize,
        /// Send buffer asked for.
        tx: usize,
    },
}
