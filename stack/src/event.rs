//! Handles the stack gives out, and the events it reports about them.

/// A connection of one [`Stack`](crate::Stack): a slot index plus a generation.
///
/// Only meaningful to the stack that issued it. Once the connection is released (after a
/// terminal event, or `close`/`abort`), every operation on the id fails with a stale-handle
/// error; a later connection never reuses the same id.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl ConnId {
    /// The slot index (stable while the connection lives; reused later).
    pub fn index(self) -> u32 {
        self.index
    }
}

/// A listening port of one [`Stack`](crate::Stack).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ListenerId {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

/// What happened, reported by [`Stack::next_event`](crate::Stack::next_event).
///
/// Events are edge-triggered: each is reported once per change.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A connection reached ESTABLISHED on this listener; take it with `accept`.
    Acceptable {
        /// The listener.
        listener: ListenerId,
    },
    /// An active open completed.
    Connected {
        /// The connection.
        conn: ConnId,
    },
    /// An active open failed (refused by a RST, or no answer in time). The id is released.
    ConnectFailed {
        /// The connection.
        conn: ConnId,
    },
    /// New data arrived on the connection.
    Readable {
        /// The connection.
        conn: ConnId,
    },
    /// Send-buffer space freed on a connection whose last `send` was short.
    Writable {
        /// The connection.
        conn: ConnId,
    },
    /// The peer sent FIN: after the buffered data, `recv` reports end of stream.
    PeerClosed {
        /// The connection.
        conn: ConnId,
    },
    /// A connection the application closed finished its closing handshake (or was aborted
    /// by the application).
    Closed {
        /// The connection.
        conn: ConnId,
    },
    /// The connection was reset by the peer or timed out. The id is released.
    Reset {
        /// The connection.
        conn: ConnId,
    },
}
