//! What the application asks (commands) and what the backend answers (completions).

use std::time::Duration;

use core::net::SocketAddrV4;

use crate::{ChannelError, Handle};

/// A value of the application's choice, returned with the command's completion.
pub type Cookie = u64;

/// A per-handle option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SockOpt {
    /// Disable Nagle's algorithm (`true`) or enable it.
    NoDelay(bool),
    /// TCP keep-alive interval (`None`: off).
    KeepAlive(Option<Duration>),
    /// On a listener: receive and send buffer sizes of the connections it accepts from now
    /// on (bytes). On a connection: refused where the backend cannot resize (bypass).
    BufferSizes {
        /// Receive buffer.
        rx: usize,
        /// Send buffer.
        tx: usize,
    },
}

/// A command, as queued in the channel and handed to the backend.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Command {
    /// Listen on `addr` (this core's own accept queue for the port).
    Listen {
        /// Address and port; 0.0.0.0 for every local address.
        addr: SocketAddrV4,
        /// Connections being established plus established and not yet accepted.
        backlog: u32,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Accept one connection, or every connection until the listener closes (`multishot`).
    Accept {
        /// A listener handle.
        listener: Handle,
        /// Keep accepting.
        multishot: bool,
        /// Returned with each completion.
        cookie: Cookie,
    },
    /// Open a connection.
    Connect {
        /// Peer address.
        remote: SocketAddrV4,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Complete with the next bytes received (as many as are available), or end of stream.
    Read {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Send all of `data`; completes when the whole buffer was taken by the transport.
    Write {
        /// A connection handle.
        handle: Handle,
        /// The bytes.
        data: Vec<u8>,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Close the write side after queued data (FIN); reads go on.
    Shutdown {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Close a connection or a listener; the handle is invalid from now on.
    Close {
        /// A connection or listener handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Reset a connection (RST, no TIME-WAIT); the handle is invalid from now on.
    Abort {
        /// A connection handle.
        handle: Handle,
        /// Returned with the completion.
        cookie: Cookie,
    },
    /// Set an option.
    SetOpt {
        /// A connection or listener handle.
        handle: Handle,
        /// The option.
        opt: SockOpt,
        /// Returned with the completion.
        cookie: Cookie,
    },
}

impl Command {
    /// The command's cookie.
    pub fn cookie(&self) -> Cookie {
        match *self {
            Command::Listen { cookie, .. }
            | Command::Accept { cookie, .. }
            | Command::Connect { cookie, .. }
            | Command::Read { cookie, .. }
            | Command::Write { cookie, .. }
            | Command::Shutdown { cookie, .. }
            | Command::Close { cookie, .. }
            | Command::Abort { cookie, .. }
            | Command::SetOpt { cookie, .. } => cookie,
        }
    }
}

/// What a backend reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Completion {
    /// A `Listen` succeeded.
    Listening {
        /// The listener.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A connection was accepted.
    Accepted {
        /// The listener.
        listener: Handle,
        /// The new connection.
        handle: Handle,
        /// The peer.
        peer: SocketAddrV4,
        /// The `Accept` command's cookie.
        cookie: Cookie,
    },
    /// A `Connect` succeeded.
    Connected {
        /// The new connection.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// Bytes received.
    Read {
        /// The connection.
        handle: Handle,
        /// The bytes (never empty).
        data: Vec<u8>,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// The peer closed its side: no more bytes will come.
    Eof {
        /// The connection.
        handle: Handle,
        /// The `Read` command's cookie.
        cookie: Cookie,
    },
    /// A `Write` was taken whole.
    Written {
        /// The connection.
        handle: Handle,
        /// Bytes written (the whole buffer).
        len: usize,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `Shutdown` was done.
    ShutDown {
        /// The connection.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `Close` or `Abort` was done; the handle is invalid.
    Closed {
        /// The handle.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// A `SetOpt` was applied.
    OptSet {
        /// The handle.
        handle: Handle,
        /// The command's cookie.
        cookie: Cookie,
    },
    /// The connection was reset by the peer or timed out; the handle is invalid. Pending
    /// commands on it completed with [`ChannelError::Reset`] first.
    Reset {
        /// The handle.
        handle: Handle,
    },
    /// A command failed.
    Error {
        /// The failing command's cookie.
        cookie: Cookie,
        /// Why.
        error: ChannelError,
    },
}
