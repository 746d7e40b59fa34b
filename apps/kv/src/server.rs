//! The server loop on the channel API: runs on any backend (bypass, io_uring, epoll).
//!
//! How to drive it: build one [`Kv`] for the process, then call [`serve`] on each core with
//! that core's channel (the launcher does this: see `main.rs`). It listens on the port (the
//! core's own accept queue), accepts, and for every connection keeps one read outstanding;
//! each read is fed to the connection's [`Session`], whose responses go out as one write.
//! Memory per connection stays bounded: no new read is issued while more than
//! [`WRITE_HIGH`] bytes of responses are unacknowledged, or while the session holds input
//! it has not executed yet (it stopped at its output bound); these resume as writes
//! complete. `-c` is enforced over all cores: a connection beyond it gets memcached's
//! `ERROR Too many open connections` and is closed (counted as `rejected_connections`).

use core::net::SocketAddrV4;
use std::collections::HashMap;
use std::time::Duration;

use megatcp_channel::{Backend, Channel, ChannelError, Completion, Handle};
use megatcp_launch::serve::{ACCEPT, CLOSE, LISTEN, READ, WRITE};

use crate::session::{Flow, Session};
use crate::state::Kv;

/// Stop reading from a connection while this many response bytes are unacknowledged.
pub const WRITE_HIGH: usize = 4 * 1024 * 1024;

/// What one core's server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections refused by `-c`.
    pub rejected: u64,
    /// Reads handled.
    pub reads: u64,
    /// Connections that ended by a reset.
    pub resets: u64,
    /// Connections closed by the protocol (`quit`, protocol errors, over-long lines).
    pub protocol_closes: u64,
    /// Commands that failed in the channel.
    pub errors: u64,
}

struct Conn {
    session: Session,
    /// Bytes written and not yet acknowledged.
    unacked: usize,
    /// A read is outstanding.
    reading: bool,
}

/// Serves the memcached protocols on `kv.settings.port` until the channel's backend is asked
/// to stop. A listening failure ends the function with the error.
pub fn serve<B: Backend>(ch: &mut Channel<B>, kv: &Kv) -> Result<ServerStats, ChannelError> {
    let mut stats = ServerStats::default();
    let mut conns: HashMap<Handle, Conn> = HashMap::new();
    ch.listen(
        SocketAddrV4::new(kv.settings.listen, kv.settings.port),
        kv.settings.backlog,
        LISTEN,
    );
    let mut out = Vec::new();
    while !ch.is_stopping() {
        let mut batch = ch.dispatch(Some(Duration::from_millis(20)));
        let now = kv.now();
        for c in batch.drain(..) {
            match c {
                Completion::Listening { handle, .. } => {
                    let n = kv
                        .listening
                        .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                    if crate::verbose::chatty(kv) {
                        crate::verbose::listening(n);
                    }
                    ch.accept(handle, true, ACCEPT);
                }
                Completion::Accepted { handle, peer, .. } => {
                    if !kv.admit() {
                        stats.rejected += 1;
                        ch.write(
                            handle,
                            b"ERROR Too many open connections\r\n".to_vec(),
                            WRITE,
                        );
                        ch.close(handle, CLOSE);
                        continue;
                    }
                    stats.accepted += 1;
                    conns.insert(
                        handle,
                        Conn {
                            session: Session::accepted(kv, peer),
                            unacked: 0,
                            reading: true,
                        },
                    );
                    ch.read(handle, READ);
                }
                Completion::Read { handle, data, .. } => {
                    stats.reads += 1;
                    let Some(conn) = conns.get_mut(&handle) else {
                        continue;
                    };
                    conn.reading = false;
                    let flow = conn.session.feed(&data, kv, now, &mut out);
                    if after_feed(ch, handle, conn, flow, &mut out) {
                        stats.protocol_closes += 1;
                        end(kv, conns.remove(&handle));
                    }
                }
                Completion::Written { handle, len, .. } => {
                    let Some(conn) = conns.get_mut(&handle) else {
                        continue;
                    };
                    conn.unacked = conn.unacked.saturating_sub(len);
                    if conn.reading || conn.unacked > WRITE_HIGH {
                        continue;
                    }
                    let flow = if conn.session.has_backlog() {
                        conn.session.feed(&[], kv, now, &mut out)
                    } else {
                        Flow::Continue
                    };
                    if after_feed(ch, handle, conn, flow, &mut out) {
                        stats.protocol_closes += 1;
                        end(kv, conns.remove(&handle));
                    }
                }
                Completion::Eof { handle, .. } if conns.contains_key(&handle) => {
                    end(kv, conns.remove(&handle));
                    ch.close(handle, CLOSE);
                }
                Completion::Reset { handle } if conns.contains_key(&handle) => {
                    end(kv, conns.remove(&handle));
                    stats.resets += 1;
                }
                Completion::Error {
                    cookie: LISTEN,
                    error,
                } => return Err(error),
                Completion::Error {
                    cookie: READ | WRITE,
                    error: ChannelError::Reset(_),
                } => {}
                Completion::Error { .. } => stats.errors += 1,
                _ => {}
            }
        }
        ch.recycle(batch);
    }
    for (_, c) in conns.drain() {
        end(kv, Some(c));
    }
    Ok(stats)
}

/// A connection is gone: its slot back, its `-vv` line.
fn end(kv: &Kv, conn: Option<Conn>) {
    if let Some(c) = conn {
        c.session.ended(kv);
        kv.release();
    }
}

/// Sends what the session produced and decides whether to read again; true when the
/// connection was closed.
fn after_feed<B: Backend>(
    ch: &mut Channel<B>,
    handle: Handle,
    conn: &mut Conn,
    flow: Flow,
    out: &mut Vec<u8>,
) -> bool {
    if !out.is_empty() {
        conn.unacked += out.len();
        // An exact-size copy: `out` keeps its capacity for the next responses.
        let data = out.as_slice().to_vec();
        out.clear();
        ch.write(handle, data, WRITE);
    }
    if flow == Flow::Close {
        ch.close(handle, CLOSE);
        return true;
    }
    if !conn.reading && conn.unacked <= WRITE_HIGH && !conn.session.has_backlog() {
        conn.reading = true;
        ch.read(handle, READ);
    }
    false
}
