//! The echo server: every byte read is written back.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use megatcp_channel::{Backend, Channel, Completion};

const LISTEN: u64 = 1;
const ACCEPT: u64 = 2;
const READ: u64 = 3;
const WRITE: u64 = 4;
const CLOSE: u64 = 5;

/// What the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes echoed.
    pub bytes: u64,
    /// Connections that ended by a reset.
    pub resets: u64,
    /// Commands that failed.
    pub errors: u64,
}

/// Serves echo on `port` (all local addresses) with `backlog`, until the channel's backend
/// is asked to stop. Listening failures end the function with the error.
pub fn serve<B: Backend>(
    ch: &mut Channel<B>,
    port: u16,
    backlog: u32,
) -> Result<ServerStats, megatcp_channel::ChannelError> {
    let mut stats = ServerStats::default();
    ch.listen(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
        backlog,
        LISTEN,
    );
    while !ch.is_stopping() {
        let mut batch = ch.dispatch(Some(Duration::from_millis(20)));
        for c in batch.drain(..) {
            match c {
                Completion::Listening { handle, .. } => ch.accept(handle, true, ACCEPT),
                Completion::Accepted { handle, .. } => {
                    stats.accepted += 1;
                    ch.read(handle, READ);
                }
                Completion::Read { handle, data, .. } => {
                    stats.bytes += data.len() as u64;
                    ch.write(handle, data, WRITE);
                    ch.read(handle, READ);
                }
                Completion::Eof { handle, .. } => ch.close(handle, CLOSE),
                Completion::Reset { .. } => stats.resets += 1,
                Completion::Error {
                    cookie: LISTEN,
                    error,
                } => return Err(error),
                Completion::Error { .. } => stats.errors += 1,
                _ => {}
            }
        }
        ch.recycle(batch);
    }
    Ok(stats)
}

/// Serves sockperf's protocol on `port` (see [`crate::sockperf`]): answers pong requests,
/// consumes throughput messages. A connection that breaks the framing is closed.
pub fn serve_sockperf<B: Backend>(
    ch: &mut Channel<B>,
    port: u16,
    backlog: u32,
) -> Result<ServerStats, megatcp_channel::ChannelError> {
    use crate::sockperf::SockperfServer;
    let mut stats = ServerStats::default();
    let mut conns: std::collections::HashMap<megatcp_channel::Handle, SockperfServer> =
        std::collections::HashMap::new();
    ch.listen(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port),
        backlog,
        LISTEN,
    );
    while !ch.is_stopping() {
        let mut batch = ch.dispatch(Some(Duration::from_millis(20)));
        for c in batch.drain(..) {
            match c {
                Completion::Listening { handle, .. } => ch.accept(handle, true, ACCEPT),
                Completion::Accepted { handle, .. } => {
                    stats.accepted += 1;
                    conns.insert(handle, SockperfServer::default());
                    ch.read(handle, READ);
                }
                Completion::Read { handle, data, .. } => {
                    let Some(conn) = conns.get_mut(&handle) else {
                        continue;
                    };
                    let mut out = Vec::new();
                    match conn.feed(&data, &mut out) {
                        Ok(()) => {
                            stats.bytes += out.len() as u64;
                            if !out.is_empty() {
                                ch.write(handle, out, WRITE);
                            }
                            ch.read(handle, READ);
                        }
                        Err(_) => {
                            stats.errors += 1;
                            conns.remove(&handle);
                            ch.close(handle, CLOSE);
                        }
                    }
                }
                Completion::Eof { handle, .. } => {
                    conns.remove(&handle);
                    ch.close(handle, CLOSE);
                }
                Completion::Reset { handle } => {
                    conns.remove(&handle);
                    stats.resets += 1;
                }
                Completion::Error {
                    cookie: LISTEN,
                    error,
                } => return Err(error),
                Completion::Error { .. } => stats.errors += 1,
                _ => {}
            }
        }
        ch.recycle(batch);
    }
    Ok(stats)
}
