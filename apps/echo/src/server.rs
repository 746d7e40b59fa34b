//! The servers: echo (every byte read is written back) and sockperf (see
//! [`crate::sockperf`]), one event loop over the channel API for both.

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::HashMap;
use std::time::Duration;

use megatcp_channel::{Backend, Channel, ChannelError, Completion, Handle};
use megatcp_launch::serve::{ACCEPT, CLOSE, LISTEN, READ, WRITE};

use crate::sockperf::SockperfServer;

/// What the server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Bytes written back.
    pub bytes: u64,
    /// Connections that ended by a reset.
    pub resets: u64,
    /// Commands that failed, and connections closed for breaking the protocol.
    pub errors: u64,
}

/// What one connection's protocol does with received bytes.
trait Protocol: Default {
    /// The bytes to send back (possibly none); `Err` closes the connection.
    fn on_data(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ()>;
}

/// Echo: everything back, with no copy.
#[derive(Default)]
struct Echo;

impl Protocol for Echo {
    fn on_data(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ()> {
        Ok(data)
    }
}

impl Protocol for SockperfServer {
    fn on_data(&mut self, data: Vec<u8>) -> Result<Vec<u8>, ()> {
        let mut out = Vec::new();
        self.feed(&data, &mut out).map_err(|_| ())?;
        Ok(out)
    }
}

/// How a server runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ServeOpts {
    /// Listening port (all local addresses).
    pub port: u16,
    /// Backlog of the listener.
    pub backlog: u32,
    /// Close each connection (FIN) once this many bytes were written back, HTTP
    /// `Connection: close` style: the server closes first and holds TIME-WAIT. Bytes past
    /// the limit in the same read are not echoed. `None`: the client closes.
    pub close_after: Option<u64>,
}

/// Serves echo on `port` (all local addresses) with `backlog`, until the channel's backend
/// is asked to stop. Listening failures end the function with the error.
pub fn serve<B: Backend>(
    ch: &mut Channel<B>,
    port: u16,
    backlog: u32,
) -> Result<ServerStats, ChannelError> {
    serve_with(
        ch,
        &ServeOpts {
            port,
            backlog,
            close_after: None,
        },
    )
}

/// Serves echo as `opts` says, until the channel's backend is asked to stop.
pub fn serve_with<B: Backend>(
    ch: &mut Channel<B>,
    opts: &ServeOpts,
) -> Result<ServerStats, ChannelError> {
    run::<B, Echo>(ch, opts)
}

/// Serves sockperf's protocol on `port`: answers pong requests, consumes throughput
/// messages. A connection that breaks the framing is closed.
pub fn serve_sockperf<B: Backend>(
    ch: &mut Channel<B>,
    port: u16,
    backlog: u32,
) -> Result<ServerStats, ChannelError> {
    let opts = ServeOpts {
        port,
        backlog,
        close_after: None,
    };
    run::<B, SockperfServer>(ch, &opts)
}

/// One connection: its protocol state and the bytes written back so far.
#[derive(Default)]
struct Conn<P> {
    proto: P,
    written: u64,
}

fn run<B: Backend, P: Protocol>(
    ch: &mut Channel<B>,
    opts: &ServeOpts,
) -> Result<ServerStats, ChannelError> {
    let mut stats = ServerStats::default();
    let mut conns: HashMap<Handle, Conn<P>> = HashMap::new();
    ch.listen(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, opts.port),
        opts.backlog,
        LISTEN,
    );
    while !ch.is_stopping() {
        let mut batch = ch.dispatch(Some(Duration::from_millis(20)));
        for c in batch.drain(..) {
            match c {
                Completion::Listening { handle, .. } => ch.accept(handle, true, ACCEPT),
                Completion::Accepted { handle, .. } => {
                    stats.accepted += 1;
                    conns.insert(handle, Conn::default());
                    ch.read(handle, READ);
                }
                Completion::Read { handle, data, .. } => {
                    let Some(conn) = conns.get_mut(&handle) else {
                        continue;
                    };
                    match conn.proto.on_data(data) {
                        Ok(mut out) => {
                            let limit = opts.close_after.unwrap_or(u64::MAX);
                            let room = limit.saturating_sub(conn.written);
                            out.truncate(usize::try_from(room).unwrap_or(usize::MAX));
                            conn.written += out.len() as u64;
                            stats.bytes += out.len() as u64;
                            if !out.is_empty() {
                                ch.write(handle, out, WRITE);
                            }
                            if conn.written >= limit {
                                // The server closes first: the FIN follows the echo.
                                conns.remove(&handle);
                                ch.close(handle, CLOSE);
                            } else {
                                ch.read(handle, READ);
                            }
                        }
                        Err(()) => {
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
