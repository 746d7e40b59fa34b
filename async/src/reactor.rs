//! The reactor: what the runtime keeps per socket, the commands its futures queue for the
//! channel, and the routing of each completion to the one task waiting for it.
//!
//! Every command carries a cookie naming its operation and the socket's key (slot index and
//! generation, [`Key`]). A completion goes to that socket and wakes the waker stored for that
//! operation only. A socket dropped while one of its operations was in flight (a cancelled
//! future, a dropped stream) has its slot removed at once: the late completion finds a stale
//! key and is dropped, never delivered to the slot's next owner. A late completion that
//! brings a new handle (a connection accepted, connected, a listener bound after its future
//! was dropped) has that handle closed, so nothing leaks.

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::task::Waker;

use megatcp_channel::{ChannelError, Command, Completion, Cookie, Handle};

use crate::slots::{Key, Slots};
use crate::time::Timers;

/// Bytes a stream may have queued in writes not yet taken by the transport before a
/// `write` waits (a write of more is taken in part).
pub(crate) const WRITE_WINDOW: usize = 256 * 1024;
/// Consumed read buffers kept to be reused by writes.
const SPARE_MAX: usize = 64;

/// Which operation a cookie belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Op {
    Listen = 1,
    Accept,
    Connect,
    Read,
    Write,
    Shutdown,
    Close,
    Opt,
}

impl Op {
    const ALL: [Op; 8] = [
        Op::Listen,
        Op::Accept,
        Op::Connect,
        Op::Read,
        Op::Write,
        Op::Shutdown,
        Op::Close,
        Op::Opt,
    ];

    /// The cookie of operation `self` on socket `key`.
    pub(crate) fn cookie(self, key: Key) -> Cookie {
        (self as u64) << 56 | u64::from(key.generation) << 32 | u64::from(key.index)
    }

    /// The operation and socket a cookie names (`None`: not one of ours).
    pub(crate) fn parse(cookie: Cookie) -> Option<(Op, Key)> {
        let op = *Op::ALL.get(((cookie >> 56) as usize).checked_sub(1)?)?;
        let key = Key {
            index: cookie as u32,
            generation: ((cookie >> 32) & 0x00ff_ffff) as u32,
        };
        Some((op, key))
    }
}

/// Counters of one core's runtime.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RuntimeStats {
    /// Tasks spawned (`spawn_local`).
    pub spawned: u64,
    /// Task polls (the main future's included).
    pub polls: u64,
    /// Loop turns (one channel dispatch each).
    pub turns: u64,
    /// Completions routed to a socket.
    pub completions: u64,
    /// Completions for a socket that was gone (its future or stream dropped): dropped.
    pub stale_completions: u64,
    /// Handles that arrived for a socket that was gone, closed at once.
    pub stale_handles_closed: u64,
    /// Connections closed because a listener's queue of unaccepted ones was full.
    pub accept_overflow: u64,
    /// Commands that failed without an operation to report to (closes, options).
    pub orphan_errors: u64,
    /// Errors of the backend itself (reported with cookie 0).
    pub backend_errors: u64,
    /// Timers that fired.
    pub timers_fired: u64,
}

/// Progress of a stream's shutdown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Shut {
    Open,
    Pending,
    Done,
}

/// One connection.
pub(crate) struct Stream {
    pub(crate) handle: Handle,
    /// Received bytes not yet consumed (`rx[rx_off..]`).
    pub(crate) rx: Vec<u8>,
    pub(crate) rx_off: usize,
    /// A `Read` is in flight.
    pub(crate) reading: bool,
    pub(crate) eof: bool,
    pub(crate) read_err: Option<ChannelError>,
    pub(crate) read_waker: Option<Waker>,
    /// Bytes queued in writes and not yet taken by the transport.
    pub(crate) unacked: usize,
    pub(crate) write_err: Option<ChannelError>,
    pub(crate) write_waker: Option<Waker>,
    pub(crate) shut: Shut,
}

impl Stream {
    fn new(handle: Handle) -> Self {
        Self {
            handle,
            rx: Vec::new(),
            rx_off: 0,
            reading: false,
            eof: false,
            read_err: None,
            read_waker: None,
            unacked: 0,
            write_err: None,
            write_waker: None,
            shut: Shut::Open,
        }
    }
}

/// One listener (while binding: `handle` is `None`).
pub(crate) struct Listener {
    pub(crate) handle: Option<Handle>,
    pub(crate) backlog: usize,
    pub(crate) bind_err: Option<ChannelError>,
    /// A multishot `Accept` is in flight.
    pub(crate) accepting: bool,
    /// Accepted, not yet taken by `accept`.
    pub(crate) queue: VecDeque<(Handle, SocketAddrV4)>,
    pub(crate) err: Option<ChannelError>,
    pub(crate) waker: Option<Waker>,
}

/// A `connect` in flight.
pub(crate) struct Connecting {
    pub(crate) err: Option<ChannelError>,
    pub(crate) waker: Option<Waker>,
}

/// What a slot of the socket table holds.
pub(crate) enum Sock {
    Listener(Listener),
    Connecting(Connecting),
    Stream(Stream),
}

/// One core's reactor. See the module docs.
#[derive(Default)]
pub(crate) struct Reactor {
    /// Commands for the channel, moved into it at the next turn.
    pub(crate) cmds: Vec<Command>,
    pub(crate) socks: Slots<Sock>,
    pub(crate) timers: Timers,
    pub(crate) stopping: bool,
    pub(crate) stop_wakers: Vec<Waker>,
    pub(crate) stats: RuntimeStats,
    /// Consumed read buffers, reused by writes.
    spare: Vec<Vec<u8>>,
}

/// Stores `w` in `slot` unless the same waker is there.
pub(crate) fn set_waker(slot: &mut Option<Waker>, w: &Waker) {
    match slot {
        Some(old) if old.will_wake(w) => {}
        _ => *slot = Some(w.clone()),
    }
}

impl Reactor {
    /// The stream under `key`.
    pub(crate) fn stream(&mut self, key: Key) -> Option<&mut Stream> {
        match self.socks.get_mut(key) {
            Some(Sock::Stream(s)) => Some(s),
            _ => None,
        }
    }

    /// The listener under `key`.
    pub(crate) fn listener(&mut self, key: Key) -> Option<&mut Listener> {
        match self.socks.get_mut(key) {
            Some(Sock::Listener(l)) => Some(l),
            _ => None,
        }
    }

    /// A new stream for an open connection.
    pub(crate) fn add_stream(&mut self, handle: Handle) -> Key {
        self.socks.insert(Sock::Stream(Stream::new(handle)))
    }

    /// Closes `handle` (gracefully: queued writes go out first); nothing waits for it.
    pub(crate) fn close(&mut self, handle: Handle) {
        self.cmds.push(Command::Close {
            handle,
            cookie: Op::Close.cookie(Key::NONE),
        });
    }

    /// An empty buffer, reused if one is spare.
    pub(crate) fn buffer(&mut self, capacity: usize) -> Vec<u8> {
        match self.spare.pop() {
            Some(mut v) if v.capacity() >= capacity => {
                v.clear();
                v
            }
            _ => Vec::with_capacity(capacity),
        }
    }

    /// Keeps a consumed buffer for reuse.
    pub(crate) fn give_back(&mut self, v: Vec<u8>) {
        if v.capacity() > 0 && v.capacity() <= WRITE_WINDOW && self.spare.len() < SPARE_MAX {
            self.spare.push(v);
        }
    }

    /// Removes socket `key` (its stream or listener was dropped): its handle and the
    /// connections queued on it are closed; its operations in flight go stale.
    pub(crate) fn drop_sock(&mut self, key: Key) {
        match self.socks.remove(key) {
            Some(Sock::Stream(s)) => {
                self.close(s.handle);
                self.give_back(s.rx);
            }
            Some(Sock::Listener(l)) => {
                for (h, _) in l.queue {
                    self.close(h);
                }
                if let Some(h) = l.handle {
                    self.close(h);
                }
            }
            Some(Sock::Connecting(_)) | None => {}
        }
    }

    /// The runtime is asked to stop: wake whoever waits for that, and every listener's
    /// `accept` (it now fails with [`crate::Stopped`]).
    pub(crate) fn stop(&mut self, wake: &mut Vec<Waker>) {
        self.stopping = true;
        wake.append(&mut self.stop_wakers);
        for s in self.socks.values_mut() {
            if let Sock::Listener(l) = s {
                wake.extend(l.waker.take());
            }
        }
    }

    /// Routes one completion; the wakers to wake go to `wake`.
    pub(crate) fn complete(&mut self, c: Completion, wake: &mut Vec<Waker>) {
        match c {
            Completion::Listening { handle, cookie } => match self.sock_for(cookie) {
                Some(Sock::Listener(l)) => {
                    l.handle = Some(handle);
                    l.accepting = true;
                    wake.extend(l.waker.take());
                    self.cmds.push(Command::Accept {
                        listener: handle,
                        multishot: true,
                        cookie: Op::Accept.cookie(key_of(cookie)),
                    });
                }
                _ => self.stale_handle(handle),
            },
            Completion::Accepted {
                handle,
                peer,
                cookie,
                ..
            } => match self.sock_for(cookie) {
                Some(Sock::Listener(l)) => {
                    if l.queue.len() >= l.backlog {
                        self.stats.accept_overflow += 1;
                        self.close(handle);
                    } else {
                        l.queue.push_back((handle, peer));
                        wake.extend(l.waker.take());
                    }
                }
                _ => self.stale_handle(handle),
            },
            Completion::Connected { handle, cookie } => {
                let opened = match self.socks.get_mut(key_of(cookie)) {
                    Some(sock) => match sock {
                        Sock::Connecting(c) => {
                            let waker = c.waker.take();
                            *sock = Sock::Stream(Stream::new(handle));
                            Some(waker)
                        }
                        _ => None,
                    },
                    None => None,
                };
                match opened {
                    Some(waker) => {
                        self.stats.completions += 1;
                        wake.extend(waker);
                    }
                    None => self.stale_handle(handle),
                }
            }
            Completion::Read { data, cookie, .. } => match self.sock_for(cookie) {
                Some(Sock::Stream(s)) => {
                    s.reading = false;
                    debug_assert!(s.rx_off >= s.rx.len());
                    let old = std::mem::replace(&mut s.rx, data);
                    s.rx_off = 0;
                    wake.extend(s.read_waker.take());
                    self.give_back(old);
                }
                _ => self.give_back(data),
            },
            Completion::Eof { cookie, .. } => {
                if let Some(Sock::Stream(s)) = self.sock_for(cookie) {
                    s.reading = false;
                    s.eof = true;
                    wake.extend(s.read_waker.take());
                }
            }
            Completion::Written { len, cookie, .. } => {
                if let Some(Sock::Stream(s)) = self.sock_for(cookie) {
                    s.unacked = s.unacked.saturating_sub(len);
                    wake.extend(s.write_waker.take());
                }
            }
            Completion::ShutDown { cookie, .. } => {
                if let Some(Sock::Stream(s)) = self.sock_for(cookie) {
                    s.shut = Shut::Done;
                    wake.extend(s.write_waker.take());
                }
            }
            // A stream learns of a reset from its pending operations (they fail with
            // `Reset`) or from its next command (the handle is stale: `BadHandle`).
            Completion::Closed { .. } | Completion::OptSet { .. } | Completion::Reset { .. } => {}
            Completion::Error { cookie: 0, .. } => self.stats.backend_errors += 1,
            Completion::Error { cookie, error } => self.failed(cookie, error, wake),
        }
    }

    /// The socket a cookie names, counting the completion as routed or stale.
    fn sock_for(&mut self, cookie: Cookie) -> Option<&mut Sock> {
        let key = key_of(cookie);
        match self.socks.get_mut(key) {
            Some(s) => {
                self.stats.completions += 1;
                Some(s)
            }
            None => {
                self.stats.stale_completions += 1;
                None
            }
        }
    }

    /// A handle arrived for a socket that is gone: close it.
    fn stale_handle(&mut self, handle: Handle) {
        self.stats.stale_completions += 1;
        self.stats.stale_handles_closed += 1;
        self.close(handle);
    }

    /// A command failed.
    fn failed(&mut self, cookie: Cookie, error: ChannelError, wake: &mut Vec<Waker>) {
        let Some((op, _)) = Op::parse(cookie) else {
            self.stats.orphan_errors += 1;
            return;
        };
        if matches!(op, Op::Close | Op::Opt) {
            self.stats.orphan_errors += 1;
            return;
        }
        let Some(sock) = self.sock_for(cookie) else {
            return;
        };
        match (op, sock) {
            (Op::Listen, Sock::Listener(l)) => {
                l.bind_err = Some(error);
                wake.extend(l.waker.take());
            }
            (Op::Accept, Sock::Listener(l)) => {
                l.accepting = false;
                l.err = Some(error);
                wake.extend(l.waker.take());
            }
            (Op::Connect, Sock::Connecting(c)) => {
                c.err = Some(error);
                wake.extend(c.waker.take());
            }
            (Op::Read, Sock::Stream(s)) => {
                s.reading = false;
                s.read_err = Some(error);
                wake.extend(s.read_waker.take());
            }
            (Op::Write | Op::Shutdown, Sock::Stream(s)) => {
                if op == Op::Shutdown {
                    s.shut = Shut::Done;
                }
                s.write_err.get_or_insert(error);
                wake.extend(s.write_waker.take());
            }
            _ => self.stats.orphan_errors += 1,
        }
    }
}

/// The socket key in a cookie (`Key::NONE` when the cookie is not one of ours).
fn key_of(cookie: Cookie) -> Key {
    Op::parse(cookie).map_or(Key::NONE, |(_, k)| k)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_name_their_operation_and_socket() {
        let key = Key {
            index: 77,
            generation: 0x00ab_cdef,
        };
        for op in Op::ALL {
            assert_eq!(Op::parse(op.cookie(key)), Some((op, key)));
        }
        assert_eq!(Op::parse(0), None);
        assert_eq!(Op::parse(5), None, "cookies of other code are not ours");
        assert_eq!(Op::parse(200 << 56), None);
    }

    #[test]
    fn a_read_for_a_dropped_stream_is_stale_and_never_reaches_the_slots_next_owner() {
        let mut r = Reactor::default();
        let (h1, h2) = (Handle::new(1, 1, 0), Handle::new(1, 1, 1));
        let old = r.add_stream(h1);
        let read = Op::Read.cookie(old);
        r.drop_sock(old);
        let new = r.add_stream(h2);
        assert_eq!(old.index, new.index);
        let mut wake = Vec::new();
        r.complete(
            Completion::Read {
                handle: h1,
                data: b"old".to_vec(),
                cookie: read,
            },
            &mut wake,
        );
        let s = r.stream(new).unwrap();
        assert!(s.rx.is_empty() && !s.eof);
        assert_eq!(r.stats.stale_completions, 1);
        // The dropped stream's handle was closed.
        assert!(matches!(r.cmds[..], [Command::Close { handle, .. }] if handle == h1));
    }

    #[test]
    fn a_connection_for_a_dropped_connect_is_closed() {
        let mut r = Reactor::default();
        let key = r.socks.insert(Sock::Connecting(Connecting {
            err: None,
            waker: None,
        }));
        let cookie = Op::Connect.cookie(key);
        r.drop_sock(key);
        let h = Handle::new(3, 4, 5);
        let mut wake = Vec::new();
        r.complete(Completion::Connected { handle: h, cookie }, &mut wake);
        assert_eq!(r.stats.stale_handles_closed, 1);
        assert!(matches!(r.cmds[..], [Command::Close { handle, .. }] if handle == h));
    }
}
