//! What a backend supplies to the ledger: its operations ([`Transport`]) and what they
//! report.

use core::net::SocketAddrV4;

#[cfg(doc)]
use crate::Ledger;
use crate::{AcceptError, ConnectError, Cookie, Handle, ListenError, OptError, SockOpt};

/// What a transport's `accept` found.
#[derive(Debug)]
pub enum Accept<C> {
    /// A connection, and its peer.
    Conn(C, SocketAddrV4),
    /// No connection waits.
    Empty,
    /// Accepting failed; the ledger reports it on the pending `Accept` and stops pulling.
    Failed(AcceptError),
}

/// What a transport's `receive` did with the buffer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Receive {
    /// Bytes were appended.
    Data,
    /// Nothing to read now; the backend calls [`Ledger::readable`] when there is.
    Nothing,
    /// End of stream: the peer closed its side and every byte was read.
    Eof,
    /// The connection failed: the ledger resets it.
    Failed,
}

/// What a transport's `send` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Send {
    /// It took this many bytes from the offset; fewer than offered means it is full until
    /// the backend calls [`Ledger::writable`].
    Taken(usize),
    /// It took the buffer (left empty in the ledger) and hands it back with [`Ledger::sent`].
    InFlight,
    /// The connection failed: the ledger resets it.
    Failed,
}

/// Whether a shutdown or option is done, or left in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Progress {
    /// Done now.
    Done,
    /// In flight: the backend reports the end ([`Ledger::shut`], [`Ledger::option_set`]).
    InFlight,
}

/// The handle an option applies to.
#[derive(Debug)]
pub enum Target<'a, C, L> {
    /// A connection.
    Conn(&'a mut C),
    /// A listener.
    Listener(&'a mut L),
}

/// A backend's own operations; see the module docs. `Conn` and `Listener` are what the
/// backend keeps for one connection or listener (a stack connection id, a socket, a fixed
/// descriptor slot); the ledger stores them beside its own state. Each operation is told
/// the handle it works for, so that the backend can route its events back.
pub trait Transport {
    /// A connection's backend state.
    type Conn;
    /// A listener's backend state.
    type Listener;

    /// Starts listening; `handle` is the listener's handle.
    fn listen(
        &mut self,
        handle: Handle,
        addr: SocketAddrV4,
        backlog: u32,
    ) -> Result<Self::Listener, ListenError>;

    /// Takes one established connection of `listener`, which will be `handle`.
    fn accept(&mut self, listener: &mut Self::Listener, handle: Handle) -> Accept<Self::Conn>;

    /// Starts opening a connection, which will be `handle`; the backend reports the end
    /// with [`Ledger::connected`] or [`Ledger::connect_failed`].
    fn connect(&mut self, handle: Handle, remote: SocketAddrV4)
    -> Result<Self::Conn, ConnectError>;

    /// Appends the bytes that are there to `buf` (empty, from the pool).
    fn receive(&mut self, conn: &mut Self::Conn, handle: Handle, buf: &mut Vec<u8>) -> Receive;

    /// Sends `data[offset..]` (never empty).
    fn send(
        &mut self,
        conn: &mut Self::Conn,
        handle: Handle,
        data: &mut Vec<u8>,
        offset: usize,
    ) -> Send;

    /// Shuts the write side down (every write before it was taken).
    fn shutdown(&mut self, conn: &mut Self::Conn, handle: Handle) -> Progress;

    /// The application closed the connection, which still has writes to send (it is closed
    /// with [`Transport::close`] once they are): e.g. stop receiving.
    fn closing(&mut self, conn: &mut Self::Conn, handle: Handle) {
        let _ = (conn, handle);
    }

    /// Closes the connection gracefully (FIN after what was sent), or releases what is left
    /// of one that failed.
    fn close(&mut self, conn: Self::Conn, handle: Handle);

    /// Resets the connection (RST).
    fn abort(&mut self, conn: Self::Conn, handle: Handle);

    /// Stops listening.
    fn close_listener(&mut self, listener: Self::Listener, handle: Handle);

    /// Applies an option; when it is left in flight the backend reports the end with
    /// [`Ledger::option_set`] and this `cookie`.
    fn set_opt(
        &mut self,
        target: Target<'_, Self::Conn, Self::Listener>,
        handle: Handle,
        opt: SockOpt,
        cookie: Cookie,
    ) -> Result<Progress, OptError>;
}
