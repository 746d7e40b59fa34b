//! A memcached load generator on the channel API (text protocol), verifying every response.
//!
//! How to drive it: fill a [`LoadOpts`] (target, connections, get ratio, key space, value
//! size, pipelining depth, duration) and call [`run_load`] on each core with that core's
//! channel and its [`LoadOpts::share`]; merge the per-core [`LoadReport`]s with
//! [`LoadReport::merge`]. Each connection keeps `depth` requests in flight (closed loop);
//! keys are drawn uniformly from the key space. Before measuring, each core stores its share
//! of the keys so that gets hit (`preload`).
//!
//! Verification: the value stored under key `i` is always the same bytes (a function of
//! `i` and the value size), with client flags `i mod 2^32`; a get must return exactly that,
//! or a miss; a set must return `STORED`. Anything else is counted as a verify or protocol
//! error and the connection is replaced.

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use megatcp_channel::{Backend, Channel, Handle};
use megatcp_launch::Launch;
use megatcp_launch::latency::Latency;
use megatcp_launch::load::{
    CLOSE, CONNECT, Conns, Load, Phase, READ, Report, WRITE, cookie, drive, run_shares,
};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// The server.
    pub target: SocketAddrV4,
    /// Connections (of this core).
    pub connections: usize,
    /// Fraction of gets (the rest are sets), 0.0..=1.0.
    pub get_ratio: f64,
    /// Number of distinct keys.
    pub keys: u64,
    /// Value size in bytes.
    pub value_size: usize,
    /// Requests in flight per connection.
    pub depth: usize,
    /// Measured duration.
    pub duration: Duration,
    /// Warm-up before measuring (after the preload).
    pub warmup: Duration,
    /// Store every key (this core's share) before the run.
    pub preload: bool,
    /// Seed of the key and operation choices.
    pub seed: u64,
    /// This core's position and the number of cores (for the preload share).
    pub core: (usize, usize),
}

impl Default for LoadOpts {
    fn default() -> Self {
        Self {
            target: SocketAddrV4::new([127, 0, 0, 1].into(), 11211),
            connections: 64,
            get_ratio: 0.9,
            keys: 10_000,
            value_size: 64,
            depth: 1,
            duration: Duration::from_secs(5),
            warmup: Duration::from_millis(500),
            preload: true,
            seed: 0x6b76,
            core: (0, 1),
        }
    }
}

impl LoadOpts {
    /// Core `core`'s share when `cores` cores run this load together.
    pub fn share(&self, cores: usize, core: usize) -> LoadOpts {
        let n = cores.max(1);
        LoadOpts {
            connections: self.connections.div_ceil(n),
            seed: self.seed ^ (core as u64).wrapping_mul(0x9e37_79b9),
            core: (core, n),
            ..self.clone()
        }
    }
}

/// Errors seen.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadErrors {
    /// A value that is not the one stored under the key.
    pub verify: u64,
    /// A response that is not what the request calls for.
    pub protocol: u64,
    /// Connections refused or failed.
    pub connect: u64,
    /// Connections reset or closed by the server while in use.
    pub closed: u64,
}

impl LoadErrors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.verify + self.protocol + self.connect + self.closed
    }
}

/// Results of a run (one core's, or several merged).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Operations completed and verified in the measured window.
    pub ops: u64,
    /// Gets among them.
    pub gets: u64,
    /// Gets that found the key.
    pub hits: u64,
    /// Sets among them.
    pub sets: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Operations per second.
    pub ops_per_sec: f64,
    /// Latency (serialised as `p50_us`, `p99_us`, `p999_us`, `mean_us`).
    #[serde(flatten)]
    pub latency: Latency,
    /// Keys stored before the run.
    pub preloaded: u64,
    /// Errors.
    pub errors: LoadErrors,
}

impl Report for LoadReport {
    fn add(&mut self, o: &Self) {
        self.ops += o.ops;
        self.gets += o.gets;
        self.hits += o.hits;
        self.sets += o.sets;
        self.preloaded += o.preloaded;
        self.seconds = self.seconds.max(o.seconds);
        self.errors.verify += o.errors.verify;
        self.errors.protocol += o.errors.protocol;
        self.errors.connect += o.errors.connect;
        self.errors.closed += o.errors.closed;
        self.latency.merge(&o.latency);
    }

    fn finish(&mut self) {
        self.latency.finish();
        self.ops_per_sec = self.ops as f64 / self.seconds.max(1e-9);
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "ops:          {} in {:.2} s = {:.0} ops/s (gets {}, hits {}, sets {})",
            self.ops, self.seconds, self.ops_per_sec, self.gets, self.hits, self.sets
        )?;
        writeln!(f, "{}", self.latency)?;
        let e = &self.errors;
        write!(
            f,
            "errors:       {} (verify {}, protocol {}, connect {}, closed {})",
            e.total(),
            e.verify,
            e.protocol,
            e.connect,
            e.closed
        )
    }
}

/// The key of index `i`.
pub fn key_of(i: u64) -> String {
    format!("kv:{i}")
}

fn push_key(out: &mut Vec<u8>, i: u64) {
    out.extend_from_slice(b"kv:");
    crate::numbers::push_u64(out, i);
}

/// Byte `j` of the value always stored under key `i`.
#[inline]
fn value_byte(i: u64, j: u64) -> u8 {
    let k = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    b'a' + ((k >> ((j % 8) * 8)) as u8 ^ j as u8) % 26
}

/// The value always stored under key `i`.
pub fn value_of(i: u64, size: usize) -> Vec<u8> {
    (0..size as u64).map(|j| value_byte(i, j)).collect()
}

fn value_matches(i: u64, size: usize, v: &[u8]) -> bool {
    v.len() == size && v.iter().zip(0u64..).all(|(&b, j)| b == value_byte(i, j))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Get(u64),
    Set,
}

struct Conn {
    handle: Option<Handle>,
    inflight: VecDeque<(Kind, Instant)>,
    rx: Vec<u8>,
    /// Preload: next key to store.
    preload_next: u64,
}

/// One parsed response: how many bytes, and for a get, the value (or a miss).
enum Parsed<'a> {
    Incomplete,
    Bad,
    Stored(usize),
    Value(usize, Option<(u32, &'a [u8])>),
}

fn parse_response(b: &[u8], kind: Kind) -> Parsed<'_> {
    let Some(lf) = b.iter().position(|&c| c == b'\n') else {
        return if b.len() > 4096 {
            Parsed::Bad
        } else {
            Parsed::Incomplete
        };
    };
    let line = &b[..lf];
    let Some(line) = line.strip_suffix(b"\r") else {
        return Parsed::Bad;
    };
    match kind {
        Kind::Set => {
            if line == b"STORED" {
                Parsed::Stored(lf + 1)
            } else {
                Parsed::Bad
            }
        }
        Kind::Get(_) => {
            if line == b"END" {
                return Parsed::Value(lf + 1, None);
            }
            let mut parts = line.split(|&c| c == b' ');
            let (Some(b"VALUE"), Some(_key), Some(flags), Some(len), None) = (
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
                parts.next(),
            ) else {
                return Parsed::Bad;
            };
            let num = |s: &[u8]| std::str::from_utf8(s).ok()?.parse::<u64>().ok();
            let (Some(flags), Some(len)) = (num(flags), num(len)) else {
                return Parsed::Bad;
            };
            let start = lf + 1;
            let Ok(len) = usize::try_from(len) else {
                return Parsed::Bad;
            };
            let end = start + len;
            let Some(tail) = b.get(end..end + 7) else {
                return if len > 64 * 1024 * 1024 {
                    Parsed::Bad
                } else {
                    Parsed::Incomplete
                };
            };
            if tail != b"\r\nEND\r\n" {
                return Parsed::Bad;
            }
            Parsed::Value(end + 7, Some((flags as u32, &b[start..end])))
        }
    }
}

struct Gen<'a> {
    opts: &'a LoadOpts,
    conns: Vec<Conn>,
    rng: ChaCha8Rng,
    report: LoadReport,
    phase: Phase,
}

impl Gen<'_> {
    fn push_set(&mut self, req: &mut Vec<u8>, i: u64) {
        let size = self.opts.value_size;
        req.extend_from_slice(b"set ");
        push_key(req, i);
        req.push(b' ');
        crate::numbers::push_u64(req, u64::from(i as u32));
        req.extend_from_slice(b" 0 ");
        crate::numbers::push_u64(req, size as u64);
        req.extend_from_slice(b"\r\n");
        req.extend((0..size as u64).map(|j| value_byte(i, j)));
        req.extend_from_slice(b"\r\n");
    }

    /// Fills slot `s` up to the pipelining depth.
    fn refill<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize) {
        let Some(h) = self.conns.get(s).and_then(|c| c.handle) else {
            return;
        };
        let mut req = Vec::new();
        let now = Instant::now();
        let (core, cores) = self.opts.core;
        loop {
            let Some(c) = self.conns.get(s) else { return };
            if c.inflight.len() >= self.opts.depth.max(1) || self.phase.stopping {
                break;
            }
            if self.opts.preload && c.preload_next < self.opts.keys {
                // Preload: this connection stores keys core + cores * (s + conns * j).
                let i = c.preload_next;
                let stride = (cores * self.conns.len()) as u64;
                if let Some(c) = self.conns.get_mut(s) {
                    c.preload_next += stride;
                    c.inflight.push_back((Kind::Set, now));
                }
                let _ = core;
                self.push_set(&mut req, i);
                self.report.preloaded += 1;
                continue;
            }
            let i = self.rng.random_range(0..self.opts.keys.max(1));
            let kind = if self.rng.random_bool(self.opts.get_ratio.clamp(0.0, 1.0)) {
                req.extend_from_slice(b"get ");
                push_key(&mut req, i);
                req.extend_from_slice(b"\r\n");
                Kind::Get(i)
            } else {
                self.push_set(&mut req, i);
                Kind::Set
            };
            if let Some(c) = self.conns.get_mut(s) {
                c.inflight.push_back((kind, now));
            }
        }
        if !req.is_empty() {
            ch.write(h, req, cookie(s, WRITE));
        }
    }

    fn on_read<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize, data: &[u8]) {
        let Some(c) = self.conns.get_mut(s) else {
            return;
        };
        c.rx.extend_from_slice(data);
        let mut off = 0;
        let mut bad = false;
        let now = Instant::now();
        let size = self.opts.value_size;
        loop {
            let Some(c) = self.conns.get(s) else { return };
            let Some(&(kind, started)) = c.inflight.front() else {
                if off < c.rx.len() {
                    bad = true;
                }
                break;
            };
            let (n, hit) = match parse_response(&c.rx[off..], kind) {
                Parsed::Incomplete => break,
                Parsed::Bad => {
                    self.report.errors.protocol += 1;
                    bad = true;
                    break;
                }
                Parsed::Stored(n) => (n, None),
                Parsed::Value(n, v) => {
                    let Kind::Get(i) = kind else {
                        bad = true;
                        break;
                    };
                    let ok = match v {
                        None => true,
                        Some((flags, val)) => flags == i as u32 && value_matches(i, size, val),
                    };
                    if !ok {
                        self.report.errors.verify += 1;
                        bad = true;
                        break;
                    }
                    (n, Some(v.is_some()))
                }
            };
            off += n;
            if let Some(c) = self.conns.get_mut(s) {
                c.inflight.pop_front();
            }
            if self.phase.measuring {
                self.report.ops += 1;
                match hit {
                    Some(h) => {
                        self.report.gets += 1;
                        self.report.hits += u64::from(h);
                    }
                    None => self.report.sets += 1,
                }
                let ns = now.duration_since(started).as_nanos() as u64;
                self.report.latency.record(ns);
            }
        }
        if let Some(c) = self.conns.get_mut(s) {
            c.rx.drain(..off.min(c.rx.len()));
        }
        if bad {
            self.replace(ch, s);
            return;
        }
        if let Some(h) = self.conns.get(s).and_then(|c| c.handle) {
            ch.read(h, cookie(s, READ));
        }
        self.refill(ch, s);
    }

    /// Drops slot `s`'s connection and opens a new one (unless stopping).
    fn replace<B: Backend>(&mut self, ch: &mut Channel<B>, s: usize) {
        if let Some(c) = self.conns.get_mut(s) {
            if let Some(h) = c.handle.take() {
                ch.abort(h, cookie(s, CLOSE));
            }
            c.inflight.clear();
            c.rx.clear();
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

    /// The warm-up starts once every connection is open and the keys are stored.
    fn ready(&self) -> bool {
        let preloading =
            self.opts.preload && self.conns.iter().any(|c| c.preload_next < self.opts.keys);
        !preloading && self.conns.iter().all(|c| c.handle.is_some())
    }

    fn connected<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, handle: Handle) {
        if let Some(c) = self.conns.get_mut(slot) {
            c.handle = Some(handle);
        }
        self.refill(ch, slot);
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
        self.replace(ch, slot);
    }

    fn connect_failed(&mut self, _: usize) {
        self.report.errors.connect += 1;
    }

    fn close_all<B: Backend>(&mut self, ch: &mut Channel<B>) {
        for c in &mut self.conns {
            if let Some(h) = c.handle.take() {
                ch.close(h, CLOSE);
            }
        }
    }
}

/// Runs the load on this core's channel until the duration is over (or the channel is
/// asked to stop); returns this core's report.
pub fn run_load<B: Backend>(ch: &mut Channel<B>, opts: &LoadOpts) -> LoadReport {
    let (core, cores) = opts.core;
    let mut g = Gen {
        opts,
        conns: (0..opts.connections.max(1))
            .map(|s| Conn {
                handle: None,
                inflight: VecDeque::new(),
                rx: Vec::new(),
                preload_next: (core + cores * s) as u64,
            })
            .collect(),
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        report: LoadReport::default(),
        phase: Phase::default(),
    };
    let n = g.conns.len();
    g.report.seconds = drive(ch, &mut g, opts.target, n, opts.warmup, opts.duration);
    g.report.finish();
    g.report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn responses_parse_and_verify() {
        let v = value_of(7, 8);
        let mut b = b"VALUE kv:7 7 8\r\n".to_vec();
        b.extend_from_slice(&v);
        b.extend_from_slice(b"\r\nEND\r\n");
        match parse_response(&b, Kind::Get(7)) {
            Parsed::Value(n, Some((7, val))) => {
                assert_eq!(n, b.len());
                assert_eq!(val, &v[..]);
            }
            _ => panic!("not parsed"),
        }
        assert!(matches!(
            parse_response(&b[..10], Kind::Get(7)),
            Parsed::Incomplete
        ));
        assert!(matches!(
            parse_response(b"END\r\n", Kind::Get(1)),
            Parsed::Value(5, None)
        ));
        assert!(matches!(
            parse_response(b"STORED\r\n", Kind::Set),
            Parsed::Stored(8)
        ));
        assert!(matches!(
            parse_response(b"ERROR\r\n", Kind::Set),
            Parsed::Bad
        ));
    }

    #[test]
    fn a_wrong_value_fails_verification() {
        let mut v = value_of(42, 64);
        assert!(value_matches(42, 64, &v));
        assert!(!value_matches(43, 64, &v));
        assert!(!value_matches(42, 64, &v[..63]));
        v[10] ^= 1;
        assert!(!value_matches(42, 64, &v));
    }
}

/// The load generator's command-line flags, shared by `megatcp-kv load` and
/// `megatcp-bench kv` (flatten them into a clap command, then call [`run_cli`]).
#[derive(clap::Args, Clone, Debug)]
pub struct LoadArgs {
    /// Network path and cores of the load generator.
    #[command(flatten)]
    pub backend: megatcp_launch::BackendArgs,
    /// The server.
    #[arg(long)]
    pub connect: SocketAddrV4,
    /// Connections in all (split over the cores).
    #[arg(long, default_value_t = 64)]
    pub connections: usize,
    /// Fraction of gets (the rest are sets).
    #[arg(long, default_value_t = 0.9)]
    pub get_ratio: f64,
    /// Distinct keys.
    #[arg(long, default_value_t = 10_000)]
    pub keys: u64,
    /// Value size in bytes.
    #[arg(long, default_value_t = 64)]
    pub value_size: usize,
    /// Requests in flight per connection (pipelining depth).
    #[arg(long, default_value_t = 1)]
    pub depth: usize,
    /// Measured duration (`5s`, `1.5s`, `2m`; a bare number is seconds).
    #[arg(long, default_value = "5s", value_parser = megatcp_launch::duration::parse)]
    pub duration: Duration,
    /// Warm-up.
    #[arg(long, default_value = "500ms", value_parser = megatcp_launch::duration::parse)]
    pub warmup: Duration,
    /// Do not store the keys before the run.
    #[arg(long)]
    pub no_preload: bool,
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
pub fn run_cli(args: &LoadArgs) -> Result<LoadReport, megatcp_launch::Failure> {
    use megatcp_launch::Failure;
    if !(0.0..=1.0).contains(&args.get_ratio) {
        return Err(Failure::Usage(format!(
            "--get-ratio {} is not within 0..=1",
            args.get_ratio
        )));
    }
    let base = LoadOpts {
        target: args.connect,
        connections: args.connections.max(1),
        get_ratio: args.get_ratio,
        keys: args.keys.max(1),
        value_size: args.value_size,
        depth: args.depth.max(1),
        duration: args.duration,
        warmup: args.warmup,
        preload: !args.no_preload,
        ..LoadOpts::default()
    };
    run_shares(Launch::new(&args.backend), &base, false)
}

/// Prints a report as text, or as JSON with `json`.
pub fn print_report(r: &LoadReport, json: bool) {
    megatcp_launch::report::print(r, json);
}
