//! The server loop on the channel API: runs on any backend (bypass, io_uring, epoll).
//!
//! How to drive it: load the [`Files`] once, then call [`serve`] on each core with that
//! core's channel (the launcher does this: `main.rs`). It listens on the port (the core's
//! own accept queue), accepts, keeps one read outstanding per connection and feeds each
//! read to the connection's [`Session`]; what the session answers goes out as one write.
//!
//! * Back-pressure: no new read while the session holds a backlog or more than
//!   [`WRITE_HIGH`] bytes written are not yet taken by the transport.
//! * Closing: when the session says close, the response is written and the connection
//!   closed (FIN after the data). When the client may still be sending (an error answered
//!   before the request was read whole, or bytes after the last answer), the close lingers:
//!   the write side is shut down and the rest of the client's input read and discarded until
//!   its end of stream or [`LINGER_MS`] (closing a kernel socket with unread input would
//!   send a RST that can destroy the response in flight).
//! * Slow clients: every [`SWEEP_MS`] the connections past their session's deadline
//!   (header or idle timeout) are closed and counted; past `max_conns` a new connection
//!   is reset at once.
//! * Counters per core ([`ServerStats`]), printed every `stats_every` when asked; access-log
//!   lines are batched per core and handed to the [`AccessLog`] thread without blocking
//!   (a full queue drops the batch and counts it).

use core::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::time::{Duration, Instant, SystemTime};

use hashbrown::HashMap;
use megatcp_channel::{Backend, Channel, ChannelError, Completion, Handle, StateError};
use megatcp_launch::serve::{ACCEPT, CLOSE, LISTEN, READ, SHUTDOWN, WRITE};

use crate::date::{self, DATE_LEN};
use crate::files::Files;
use crate::session::{Counters, Env, Flow, Limits, Session};

/// Stop reading from a connection while this many response bytes are not yet taken.
pub const WRITE_HIGH: usize = 4 * 1024 * 1024;
/// How long a closing connection's remaining input is read and discarded.
pub const LINGER_MS: u64 = 2_000;
/// How often deadlines are checked.
pub const SWEEP_MS: u64 = 100;

/// The server's settings (one for all cores).
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// TCP port.
    pub port: u16,
    /// Listen backlog per core.
    pub backlog: u32,
    /// Most open connections per core; more are reset at once.
    pub max_conns: usize,
    /// Protocol limits and timeouts.
    pub limits: Limits,
    /// Print each core's counters this often (to stderr).
    pub stats_every: Option<Duration>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            port: 8080,
            backlog: 4096,
            max_conns: 100_000,
            limits: Limits::default(),
            stats_every: None,
        }
    }
}

/// What one core's server did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct ServerStats {
    /// Connections accepted.
    pub accepted: u64,
    /// Connections reset at once because `max_conns` were open.
    pub rejected: u64,
    /// Connections closed for a header or idle timeout.
    pub timeouts: u64,
    /// Connections that ended with a reset by the peer.
    pub resets: u64,
    /// Commands that failed in the channel (other than on reset connections).
    pub errors: u64,
    /// Most connections open at once.
    pub peak_conns: u64,
    /// Access-log batches dropped because the log thread fell behind.
    pub log_dropped: u64,
    /// Protocol counters.
    #[serde(flatten)]
    pub http: Counters,
}

impl std::fmt::Display for ServerStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let h = &self.http;
        write!(
            f,
            "accepted {} rejected {} timeouts {} resets {} errors {} peak {} requests {} \
             2xx {} 3xx {} 4xx {} 5xx {} bytes {} protocol-closes {} log-dropped {}",
            self.accepted,
            self.rejected,
            self.timeouts,
            self.resets,
            self.errors,
            self.peak_conns,
            h.requests,
            h.status_2xx,
            h.status_3xx,
            h.status_4xx,
            h.status_5xx,
            h.bytes_out,
            h.protocol_closes,
            self.log_dropped
        )
    }
}

/// The access log: a thread that appends the cores' batches of lines to a file, so that
/// the data path never waits for the disk.
pub struct AccessLog {
    tx: Option<SyncSender<Vec<u8>>>,
    written: std::sync::Arc<AtomicU64>,
    thread: Option<std::thread::JoinHandle<std::io::Result<()>>>,
}

impl AccessLog {
    /// Opens (appends to) `path` and starts the writer thread.
    pub fn open(path: &std::path::Path) -> std::io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)?;
        let (tx, rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(256);
        let written = std::sync::Arc::new(AtomicU64::new(0));
        let w = written.clone();
        let thread = std::thread::Builder::new()
            .name("access-log".into())
            .spawn(move || Self::write_all(file, &rx, &w))?;
        Ok(Self {
            tx: Some(tx),
            written,
            thread: Some(thread),
        })
    }

    fn write_all(
        file: std::fs::File,
        rx: &Receiver<Vec<u8>>,
        written: &AtomicU64,
    ) -> std::io::Result<()> {
        use std::io::Write as _;
        let mut out = std::io::BufWriter::with_capacity(256 * 1024, file);
        while let Ok(batch) = rx.recv() {
            out.write_all(&batch)?;
            written.fetch_add(batch.len() as u64, Ordering::Relaxed);
            // Flush when nothing else is queued, so that the file is current when idle.
            if let Ok(more) = rx.try_recv() {
                out.write_all(&more)?;
                written.fetch_add(more.len() as u64, Ordering::Relaxed);
            } else {
                out.flush()?;
            }
        }
        out.flush()
    }

    /// Bytes written to the file so far.
    pub fn written(&self) -> u64 {
        self.written.load(Ordering::Relaxed)
    }

    /// Flushes and stops the writer (after every core has returned).
    pub fn finish(mut self) -> std::io::Result<()> {
        // Closing the queue ends the writer's loop once it has written everything queued.
        self.tx = None;
        match self.thread.take().map(std::thread::JoinHandle::join) {
            Some(Ok(r)) => r,
            Some(Err(_)) => Err(std::io::Error::other("the access-log thread panicked")),
            None => Ok(()),
        }
    }
}

struct Conn {
    session: Session,
    peer: SocketAddrV4,
    /// Bytes written and not yet taken by the transport.
    unacked: usize,
    /// A read is outstanding.
    reading: bool,
    /// Closing: the write side is shut down; input is discarded until this time.
    linger_until: Option<u64>,
}

/// The per-core date: recomputed when the second changes.
struct Clock {
    start: Instant,
    secs: u64,
    date: [u8; DATE_LEN],
}

impl Clock {
    fn new() -> Self {
        let mut c = Self {
            start: Instant::now(),
            secs: u64::MAX,
            date: [b' '; DATE_LEN],
        };
        c.tick();
        c
    }

    /// Updates the date; returns the time in milliseconds since the server started.
    fn tick(&mut self) -> u64 {
        let secs = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        if secs != self.secs {
            self.secs = secs;
            self.date = date::format(secs);
        }
        self.start.elapsed().as_millis() as u64
    }
}

/// One core's server state.
struct Core<'a> {
    files: &'a Files,
    cfg: &'a ServerConfig,
    log: Option<&'a AccessLog>,
    log_buf: Vec<u8>,
    conns: HashMap<Handle, Conn>,
    stats: ServerStats,
    out: Vec<u8>,
    clock: Clock,
    now: u64,
}

impl<'a> Core<'a> {
    fn feed<B: Backend>(&mut self, ch: &mut Channel<B>, h: Handle, data: &[u8]) {
        let Some(conn) = self.conns.get_mut(&h) else {
            return;
        };
        if conn.linger_until.is_some() {
            // Closing: discard, read on until the end of stream.
            conn.reading = true;
            ch.read(h, READ);
            return;
        }
        let mut env = Env {
            files: self.files,
            limits: &self.cfg.limits,
            date: &self.clock.date,
            now_ms: self.now,
            counters: &mut self.stats.http,
            log: self.log.is_some().then_some(&mut self.log_buf),
            peer: conn.peer,
        };
        let flow = conn.session.feed(data, &mut env, &mut self.out);
        if !self.out.is_empty() {
            conn.unacked += self.out.len();
            // An exact-size copy: `out` keeps its capacity for the next responses.
            ch.write(h, self.out.as_slice().to_vec(), WRITE);
            self.out.clear();
        }
        if flow == Flow::Close {
            if !conn.session.close_needs_linger() {
                // Nothing more is expected from the client: FIN after the response.
                self.conns.remove(&h);
                ch.close(h, CLOSE);
                return;
            }
            ch.shutdown(h, SHUTDOWN);
            conn.linger_until = Some(self.now + LINGER_MS);
        }
        if !conn.reading
            && (conn.linger_until.is_some()
                || (conn.unacked <= WRITE_HIGH && !conn.session.has_backlog()))
        {
            conn.reading = true;
            ch.read(h, READ);
        }
    }

    fn drop_conn<B: Backend>(&mut self, ch: &mut Channel<B>, h: Handle, abort: bool) {
        if self.conns.remove(&h).is_some() {
            if abort {
                ch.abort(h, CLOSE);
            } else {
                ch.close(h, CLOSE);
            }
        }
    }

    /// Closes the connections past their deadline.
    fn sweep<B: Backend>(&mut self, ch: &mut Channel<B>) {
        let now = self.now;
        let limits = &self.cfg.limits;
        let late: Vec<(Handle, bool)> = self
            .conns
            .iter()
            .filter_map(|(h, c)| match c.linger_until {
                Some(t) => (now >= t).then_some((*h, true)),
                None => c
                    .session
                    .deadline(limits)
                    .is_some_and(|d| now >= d)
                    .then_some((*h, false)),
            })
            .collect();
        for (h, lingering) in late {
            if !lingering {
                self.stats.timeouts += 1;
            }
            self.drop_conn(ch, h, lingering);
        }
    }

    fn flush_log(&mut self) {
        if let Some(log) = self.log
            && !self.log_buf.is_empty()
        {
            let batch = std::mem::take(&mut self.log_buf);
            let sent = log.tx.as_ref().map(|tx| tx.try_send(batch));
            if let Some(Err(TrySendError::Full(_) | TrySendError::Disconnected(_))) | None = sent {
                self.stats.log_dropped += 1;
            }
        }
    }
}

/// Serves `files` on `cfg.port` until the channel's backend is asked to stop. A listening
/// failure ends the function with the error.
pub fn serve<B: Backend>(
    ch: &mut Channel<B>,
    files: &Files,
    cfg: &ServerConfig,
    log: Option<&AccessLog>,
    core: usize,
) -> Result<ServerStats, ChannelError> {
    let mut c = Core {
        files,
        cfg,
        log,
        log_buf: Vec::new(),
        conns: HashMap::new(),
        stats: ServerStats::default(),
        out: Vec::with_capacity(64 * 1024),
        clock: Clock::new(),
        now: 0,
    };
    ch.listen(
        SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, cfg.port),
        cfg.backlog,
        LISTEN,
    );
    let mut next_sweep = 0;
    let mut next_stats = cfg.stats_every.map(|d| d.as_millis() as u64);
    while !ch.is_stopping() {
        let mut batch = ch.dispatch(Some(Duration::from_millis(SWEEP_MS)));
        c.now = c.clock.tick();
        for comp in batch.drain(..) {
            match comp {
                Completion::Listening { handle, .. } => ch.accept(handle, true, ACCEPT),
                Completion::Accepted { handle, peer, .. } => {
                    if c.conns.len() >= cfg.max_conns {
                        c.stats.rejected += 1;
                        ch.abort(handle, CLOSE);
                        continue;
                    }
                    c.stats.accepted += 1;
                    c.conns.insert(
                        handle,
                        Conn {
                            session: Session::new(c.now),
                            peer,
                            unacked: 0,
                            reading: true,
                            linger_until: None,
                        },
                    );
                    c.stats.peak_conns = c.stats.peak_conns.max(c.conns.len() as u64);
                    ch.read(handle, READ);
                }
                Completion::Read { handle, data, .. } => {
                    if let Some(conn) = c.conns.get_mut(&handle) {
                        conn.reading = false;
                        c.feed(ch, handle, &data);
                    }
                }
                Completion::Written { handle, len, .. } => {
                    let Some(conn) = c.conns.get_mut(&handle) else {
                        continue;
                    };
                    conn.unacked = conn.unacked.saturating_sub(len);
                    if !conn.reading && conn.unacked <= WRITE_HIGH {
                        // Resume: answer what waited, then read again.
                        c.feed(ch, handle, &[]);
                    }
                }
                Completion::Eof { handle, .. } => c.drop_conn(ch, handle, false),
                Completion::Reset { handle } if c.conns.remove(&handle).is_some() => {
                    c.stats.resets += 1;
                }
                Completion::Error {
                    cookie: LISTEN,
                    error,
                } => return Err(error),
                // A reset connection's pending operations, and the read our own close of a
                // late or lingering connection ended: not errors.
                Completion::Error {
                    error:
                        ChannelError::Reset(_)
                        | ChannelError::BadHandle(_)
                        | ChannelError::InvalidState(_, StateError::ClosedWhileReading),
                    ..
                } => {}
                Completion::Error { .. } => c.stats.errors += 1,
                _ => {}
            }
        }
        ch.recycle(batch);
        if c.now >= next_sweep {
            next_sweep = c.now + SWEEP_MS;
            c.sweep(ch);
            c.flush_log();
        } else if c.log_buf.len() >= 64 * 1024 {
            c.flush_log();
        }
        if let Some(t) = next_stats
            && c.now >= t
        {
            next_stats = cfg.stats_every.map(|d| c.now + d.as_millis() as u64);
            eprintln!(
                "megatcp-http: core {core}: {} open {}",
                c.stats,
                c.conns.len()
            );
        }
    }
    c.flush_log();
    Ok(c.stats)
}
