//! What the bypass backend keeps behind each handle (lightweight socket): the stack's
//! connection or listener and the commands pending on it.

use std::collections::VecDeque;

use megatcp_channel::Cookie;
use megatcp_stack::{ConnId, ListenerId};

/// A write not yet taken whole by the stack.
pub(crate) struct PendingWrite {
    pub(crate) data: Vec<u8>,
    pub(crate) off: usize,
    pub(crate) cookie: Cookie,
}

pub(crate) struct Conn {
    pub(crate) id: ConnId,
    /// The peer.
    pub(crate) remote: std::net::SocketAddrV4,
    /// `Connect` cookie while the active open is in progress.
    pub(crate) connecting: Option<Cookie>,
    pub(crate) read: Option<Cookie>,
    pub(crate) writes: VecDeque<PendingWrite>,
    /// `Shutdown` waiting for the pending writes.
    pub(crate) shutdown: Option<Cookie>,
    pub(crate) shut: bool,
    /// The peer's FIN arrived.
    pub(crate) peer_closed: bool,
    /// The stack released the connection (orderly end after both FINs).
    pub(crate) finished: bool,
}

pub(crate) struct Listener {
    pub(crate) id: ListenerId,
    /// Pending `Accept`: cookie and whether it is multishot.
    pub(crate) accept: Option<(Cookie, bool)>,
}

pub(crate) enum Entry {
    Conn(Conn),
    Listener(Listener),
}

impl Entry {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Entry::Conn(_) => "connection",
            Entry::Listener(_) => "listener",
        }
    }
}

/// The bypass backend's handle table.
pub(crate) type Handles = megatcp_channel::HandleTable<Entry>;
