//! An HTTP load generator on the channel API, checking every response byte for byte.
//!
//! How to drive it: fill a [`LoadOpts`] (target, path, the body expected, connections,
//! keep-alive or `Connection: close`, pipelining depth, duration) and call [`run_load`] on
//! each core with that core's channel and its [`LoadOpts::share`]; merge the per-core
//! [`LoadReport`]s with [`LoadReport::merge`]. [`run_cli`] does all of it from the flags.
//!
//! Each connection is a closed loop: `depth` requests in flight (keep-alive), or one
//! request with `Connection: close`, after whose response the connection is closed (with a
//! RST when `close_rst`, so that the client side holds no TIME-WAIT) and a new one opened.
//! A response counts when its status is 200, its `Content-Length` is the expected body's
//! length and every body byte equals the expected one (compared as it arrives, nothing
//! buffered); anything else is an error and the connection is replaced.

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use megatcp_channel::{Backend, Channel, Handle};
use megatcp_launch::latency::Latency;
use megatcp_launch::load::{
    CLOSE, CONNECT, Conns, Load, Phase, READ, Report, WRITE, cookie, drive, run_shares,
};
use megatcp_launch::{Failure, Launch};

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// The server.
    pub target: SocketAddrV4,
    /// The path requested.
    pub path: String,
    /// The body every response must carry.
    pub expect: Arc<[u8]>,
    /// Connections (of this core).
    pub connections: usize,
    /// Keep connections open (`false`: one request per connection, `Connection: close`).
    pub keep_alive: bool,
    /// In close mode, close with a RST once the response is in.
    pub close_rst: bool,
    /// Requests in flight per keep-alive connection.
    pub depth: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before measuring.
    pub warmup: Duration,
}

impl LoadOpts {
    /// Core `core`'s share when `cores` cores run this load together.
    pub fn share(&self, cores: usize, _core: usize) -> LoadOpts {
        LoadOpts {
            connections: self.connections.div_ceil(cores.max(1)),
            ..self.clone()
        }
    }
}

/// Errors seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadErrors {
    /// A body that differs from the expected one, or a wrong length.
    pub verify: u64,
    /// A status other than 200, or a response head that does not parse.
    pub status: u64,
    /// Connections refused or failed.
    pub connect: u64,
    /// Connections reset or closed by the server before a response was complete.
    pub closed: u64,
}

impl LoadErrors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.verify + self.status + self.connect + self.closed
    }
}

/// Results of a run (one core's, or several merged).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Responses completed and verified in the measured window.
    pub requests: u64,
    /// Connections completed (closed after their response) in the window (close mode).
    pub connections: u64,
    /// Body bytes verified in the window.
    pub body_bytes: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Responses per second.
    pub requests_per_sec: f64,
    /// Connections per second (close mode).
    pub conns_per_sec: f64,
    /// Latency of a request, sent to fully received (serialised as `p50_us`, ...).
    #[serde(flatten)]
    pub latency: Latency,
    /// Errors.
    pub errors: LoadErrors,
}

impl Report for LoadReport {
    fn add(&mut self, o: &Self) {
        self.requests += o.requests;
        self.connections += o.connections;
        self.body_bytes += o.body_bytes;
        self.seconds = self.seconds.max(o.seconds);
        self.errors.verify += o.errors.verify;
        self.errors.status += o.errors.status;
        self.errors.connect += o.errors.connect;
        self.errors.closed += o.errors.closed;
        self.latency.merge(&o.latency);
    }

    fn finish(&mut self) {
        self.latency.finish();
        let s = self.seconds.max(1e-9);
        self.requests_per_sec = self.requests as f64 / s;
        self.conns_per_sec = self.connections as f64 / s;
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "requests:     {} in {:.2} s = {:.0} requests/s ({:.0} connections/s, {} body bytes verified)",
            self.requests, self.seconds, self.requests_per_sec, self.conns_per_sec, self.body_bytes
        )?;
        writeln!(f, "{}", self.latency)?;
        let e = &self.errors;
        write!(
            f,
            "errors:       {} (verify {}, status {}, connect {}, closed {})",
            e.total(),
            e.verify,
            e.status,
            e.connect,
            e.closed
        )
    }
}

/// Where a response being received stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rx {
    /// Collecting the head.
    Head,
    /// Comparing the body: bytes verified so far.
    Body(usize),
}

struct Conn {
    handle: Option<Handle>,
    /// Send times of the requests in flight.
    inflight: VecDeque<Instant>,
    rx: Rx,
    /// A partial response head.
    head: Vec<u8>,
    /// The server announced `Connection: close` on the response being received.
    server_closes: bool,
}

/// Parses a response head; `Ok(None)` while incomplete. The head must say 200 and the
/// expected length.
fn parse_head(b: &[u8], want_len: usize) -> Result<Option<(usize, bool)>, bool> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    match resp.parse(b) {
        Ok(httparse::Status::Partial) if b.len() > 16 * 1024 => Err(false),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(_) => Err(false),
        Ok(httparse::Status::Complete(n)) => {
            if resp.code != Some(200) {
                return Err(false);
            }
            let mut len = None;
            let mut close = false;
            for h in resp.headers.iter() {
                if h.name.eq_ignore_ascii_case("content-length") {
                    len = std::str::from_utf8(h.value)
                        .ok()
                        .and_then(|s| s.trim().parse::<usize>().ok());
                } else if h.name.eq_ignore_ascii_case("connection") {
                    close |= h.value.eq_ignore_ascii_case(b"close");
                }
            }
            if len != Some(want_len) {
                return Err(true);
            }
            Ok(Some((n, close)))
        }
    }
}

struct Gen<'a> {
    opts: &'a LoadOpts,
    conns: Vec<Conn>,
    request: Vec<u8>,
    report: LoadReport,
    phase: Phase,
}

impl Gen<'_> {
    fn fill<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize) {
        let depth = if self.opts.keep_alive {
            self.opts.depth.max(1)
        } else {
            1
        };
        let Some(c) = self.conns.get_mut(s) else {
            return;
        };
        let Some(h) = c.handle else { return };
        let n = depth.saturating_sub(c.inflight.len());
        if n == 0 || self.phase.stopping {
            return;
        }
        let now = Instant::now();
        let mut data = Vec::with_capacity(self.request.len() * n);
        for _ in 0..n {
            data.extend_from_slice(&self.request);
            c.inflight.push_back(now);
        }
        ch.write(h, data, cookie(s, WRITE));
    }

    /// Handles received bytes; false when the connection went wrong (already replaced).
    fn on_read<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize, mut data: &[u8]) {
        let want = self.opts.expect.len();
        let mut finished_conn = false;
        while !data.is_empty() {
            let Some(c) = self.conns.get_mut(s) else {
                return;
            };
            match c.rx {
                Rx::Head => {
                    let fresh = c.head.is_empty();
                    let (parsed, from_head) = if fresh {
                        (parse_head(data, want), false)
                    } else {
                        c.head.extend_from_slice(data);
                        (parse_head(&c.head, want), true)
                    };
                    match parsed {
                        Ok(None) => {
                            if fresh {
                                c.head.extend_from_slice(data);
                            }
                            break;
                        }
                        Err(verify) => {
                            if verify {
                                self.report.errors.verify += 1;
                            } else {
                                self.report.errors.status += 1;
                            }
                            self.replace(ch, s, true);
                            return;
                        }
                        Ok(Some((n, close))) => {
                            c.server_closes = close;
                            c.rx = Rx::Body(0);
                            if from_head {
                                // The head ended inside `data`: skip what it used of it.
                                let before = c.head.len() - data.len();
                                data = &data[n - before..];
                                c.head.clear();
                            } else {
                                data = &data[n..];
                            }
                        }
                    }
                }
                Rx::Body(done) => {
                    let take = (want - done).min(data.len());
                    if data[..take] != self.opts.expect[done..done + take] {
                        self.report.errors.verify += 1;
                        self.replace(ch, s, true);
                        return;
                    }
                    data = &data[take..];
                    c.rx = Rx::Body(done + take);
                }
            }
            // A complete response?
            let Some(c) = self.conns.get_mut(s) else {
                return;
            };
            if c.rx == Rx::Body(want) {
                c.rx = Rx::Head;
                let started = c.inflight.pop_front();
                if self.phase.measuring {
                    self.report.requests += 1;
                    self.report.body_bytes += want as u64;
                    if let Some(t) = started {
                        self.report.latency.record(t.elapsed().as_nanos() as u64);
                    }
                }
                if !self.opts.keep_alive {
                    if self.phase.measuring {
                        self.report.connections += 1;
                    }
                    finished_conn = true;
                    break;
                }
                if c.server_closes {
                    // The server ends keep-alive: not an error of the response, but the
                    // connection is renewed.
                    finished_conn = true;
                    break;
                }
            }
        }
        if finished_conn {
            self.replace(ch, s, self.opts.close_rst);
            return;
        }
        if let Some(h) = self.conns.get(s).and_then(|c| c.handle) {
            ch.read(h, cookie(s, READ));
        }
        self.fill(ch, s);
    }

    /// Drops slot `s`'s connection (RST with `abort`) and opens a new one (unless stopping).
    fn replace<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize, abort: bool) {
        if let Some(c) = self.conns.get_mut(s) {
            if let Some(h) = c.handle.take() {
                if abort {
                    ch.abort(h, cookie(s, CLOSE));
                } else {
                    ch.close(h, cookie(s, CLOSE));
                }
            }
            c.inflight.clear();
            c.head.clear();
            c.rx = Rx::Head;
        }
        if !self.phase.stopping {
            ch.connect(self.opts.target, cookie(s, CONNECT));
        }
    }
}

impl Conns for Gen<'_> {
    fn phase(&mut self) -> &mut Phase {
        &mut self.phase
    }

    fn connected<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, handle: Handle) {
        if let Some(c) = self.conns.get_mut(slot) {
            c.handle = Some(handle);
        }
        self.fill(ch, slot);
    }

    fn read<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, data: &[u8]) {
        self.on_read(ch, slot, data);
    }

    fn slot_of(&self, h: Handle) -> Option<usize> {
        self.conns.iter().position(|c| c.handle == Some(h))
    }

    fn ended<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize) {
        self.report.errors.closed += 1;
        if let Some(c) = self.conns.get_mut(slot) {
            c.handle = None;
        }
        self.replace(ch, slot, false);
    }

    fn connect_failed(&mut self, _: usize) {
        self.report.errors.connect += 1;
    }

    fn close_all<B: Backend>(&mut self, ch: &mut Channel<B>) {
        for c in &mut self.conns {
            if let Some(h) = c.handle.take() {
                ch.abort(h, CLOSE);
            }
        }
    }
}

/// The request sent for `opts`.
pub fn request_for(opts: &LoadOpts) -> Vec<u8> {
    format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: megatcp-http-load\r\n{}\r\n",
        opts.path,
        opts.target,
        if opts.keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        }
    )
    .into_bytes()
}

/// Runs the load on this core's channel until the duration is over (or the channel is
/// asked to stop); returns this core's report.
pub fn run_load<B: Backend>(ch: &mut Channel<B>, opts: &LoadOpts) -> LoadReport {
    let mut g = Gen {
        opts,
        conns: (0..opts.connections.max(1))
            .map(|_| Conn {
                handle: None,
                inflight: VecDeque::new(),
                rx: Rx::Head,
                head: Vec::new(),
                server_closes: false,
            })
            .collect(),
        request: request_for(opts),
        report: LoadReport::default(),
        phase: Phase::default(),
    };
    let n = g.conns.len();
    g.report.seconds = drive(ch, &mut g, opts.target, n, opts.warmup, opts.duration);
    g.report.finish();
    g.report
}

/// The load generator's command-line flags (`megatcp-http load`).
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Network path and cores of the load generator.
    #[command(flatten)]
    pub backend: megatcp_launch::BackendArgs,
    /// The server.
    #[arg(long)]
    pub connect: SocketAddrV4,
    /// The path requested.
    #[arg(long, default_value = "/hello")]
    pub path: String,
    /// A file holding the body every response must carry.
    #[arg(long, conflicts_with = "expect_hello")]
    pub expect_file: Option<std::path::PathBuf>,
    /// The body is megatcp-http's built-in `/hello` of this many bytes.
    #[arg(long, default_value_t = 64)]
    pub expect_hello: usize,
    /// Connections in all (split over the cores).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// One request per connection with `Connection: close`.
    #[arg(long)]
    pub close: bool,
    /// In `--close` mode, close with a RST after the response (no client TIME-WAIT).
    #[arg(long)]
    pub close_rst: bool,
    /// Requests in flight per keep-alive connection (pipelining depth).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Measured duration (`5s`, `1.5s`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "5s", value_parser = megatcp_launch::duration::parse)]
    pub duration: Duration,
    /// Warm-up.
    #[arg(long, default_value = "500ms", value_parser = megatcp_launch::duration::parse)]
    pub warmup: Duration,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
}

impl Load for LoadOpts {
    type Report = LoadReport;

    fn run_share<B: Backend>(&self, ch: &mut Channel<B>, cores: usize, core: usize) -> LoadReport {
        run_load(ch, &self.share(cores, core))
    }
}

/// Runs the load of `args` on its backend and cores; the merged report.
pub fn run_cli(args: &LoadArgs) -> Result<LoadReport, Failure> {
    let expect: Arc<[u8]> = match &args.expect_file {
        Some(p) => std::fs::read(p)
            .map_err(|e| Failure::Runtime(format!("{}: {e}", p.display())))?
            .into(),
        None => crate::files::hello_body(args.expect_hello).into(),
    };
    if !args.path.starts_with('/') || args.path.bytes().any(|b| b <= b' ') {
        return Err(Failure::Usage(format!(
            "--path {:?}: must start with / and hold no spaces",
            args.path
        )));
    }
    let base = LoadOpts {
        target: args.connect,
        path: args.path.clone(),
        expect,
        connections: args.connections.max(1),
        keep_alive: !args.close,
        close_rst: args.close_rst,
        depth: args.depth.max(1),
        duration: args.duration,
        warmup: args.warmup,
    };
    run_shares(Launch::new(&args.backend), &base, false)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn response_heads_are_checked() {
        let ok = b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello";
        assert_eq!(parse_head(ok, 5), Ok(Some((ok.len() - 5, false))));
        assert_eq!(parse_head(&ok[..10], 5), Ok(None));
        assert_eq!(parse_head(ok, 6), Err(true));
        let nf = b"HTTP/1.1 404 Not Found\r\nContent-Length: 5\r\n\r\n";
        assert_eq!(parse_head(nf, 5), Err(false));
        let close = b"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nConnection: close\r\n\r\n";
        assert_eq!(parse_head(close, 0), Ok(Some((close.len(), true))));
        assert_eq!(parse_head(b"garbage\r\n\r\n", 0), Err(false));
    }
}
