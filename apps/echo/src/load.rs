//! The load generator: many connections issuing request/response transactions against an
//! echo server, every echoed byte verified, latency in an HDR histogram.
//!
//! Closed loop by default (each connection sends its next request when the previous answer
//! is complete); open loop with a rate (requests are scheduled at fixed intervals and
//! latency is measured from the scheduled time, so a slow server cannot hide its queueing).

use core::net::SocketAddrV4;
use std::collections::VecDeque;
use std::time::{Duration, Instant};

use megatcp_channel::{Backend, Channel, Completion, Handle};
use megatcp_launch::latency::Latency;
use megatcp_launch::load::{CLOSE, CONNECT, READ, Report, WRITE, cookie, split};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// Message sizes of the transactions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MsgSize {
    /// Every message this many bytes.
    Fixed(usize),
    /// Uniformly random in `lo..=hi` bytes, per transaction.
    Range(usize, usize),
}

impl std::str::FromStr for MsgSize {
    type Err = String;

    /// `64` or `1..65536` (inclusive).
    fn from_str(s: &str) -> Result<Self, String> {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad size {t:?}: {e}"))
        };
        let m = match s.split_once("..") {
            Some((a, b)) => MsgSize::Range(num(a)?, num(b.trim_start_matches('='))?),
            None => MsgSize::Fixed(num(s)?),
        };
        match m {
            MsgSize::Fixed(0) => Err("message size must be at least 1".into()),
            MsgSize::Range(lo, hi) if lo == 0 || lo > hi => {
                Err(format!("bad range {s:?}: need 1 <= lo <= hi"))
            }
            m => Ok(m),
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadOpts {
    /// The echo server.
    pub target: SocketAddrV4,
    /// Concurrent connections (of this core).
    pub connections: usize,
    /// Message size.
    pub msg: MsgSize,
    /// Transactions per connection; 0 keeps connections open (persistent).
    pub txns_per_conn: u64,
    /// Measured duration (after the warm-up).
    pub duration: Duration,
    /// Warm-up before measuring.
    pub warmup: Duration,
    /// Open-loop rate in transactions per second (of this core); `None`: closed loop.
    pub rate: Option<f64>,
    /// Stop after this many transactions in total (measured ones), if set.
    pub max_txns: Option<u64>,
    /// Seed of message sizes and contents.
    pub seed: u64,
    /// Close finished connections with a RST instead of FIN (no TIME-WAIT, so source ports
    /// are free at once: what short-connection benchmarks need).
    pub close_rst: bool,
}

impl LoadOpts {
    /// The load tests of an echo server run: to `target`, `connections` at a time,
    /// `txns_per_conn` transactions each (0: persistent), sizes drawn from 1 B to 64 KiB per
    /// transaction, every byte verified; closed loop, no warm-up, until `max_txns`
    /// transactions (at most a minute).
    pub fn until(
        target: SocketAddrV4,
        connections: usize,
        txns_per_conn: u64,
        max_txns: u64,
    ) -> Self {
        LoadOpts {
            target,
            connections,
            msg: MsgSize::Range(1, 65536),
            txns_per_conn,
            duration: Duration::from_secs(60),
            warmup: Duration::ZERO,
            rate: None,
            max_txns: Some(max_txns),
            seed: 7,
            close_rst: false,
        }
    }

    /// Core `core`'s share of this load when `cores` cores run it together: connections,
    /// rate and transaction cap divided, a seed of its own.
    pub fn share(&self, cores: usize, core: usize) -> LoadOpts {
        let n = cores.max(1);
        LoadOpts {
            connections: self.connections.div_ceil(n),
            rate: self.rate.map(|r| r / n as f64),
            max_txns: self.max_txns.map(|m| m.div_ceil(n as u64)),
            seed: self.seed ^ core as u64,
            ..self.clone()
        }
    }
}

/// Errors seen by the load generator.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct LoadErrors {
    /// Echoed bytes that differ from what was sent.
    pub verify: u64,
    /// Connections refused or timed out.
    pub connect: u64,
    /// Connections reset while in use.
    pub reset: u64,
    /// End of stream before the answer was complete.
    pub eof: u64,
    /// Other failed commands.
    pub other: u64,
}

impl LoadErrors {
    /// All errors.
    pub fn total(&self) -> u64 {
        self.verify + self.connect + self.reset + self.eof + self.other
    }

    fn add(&mut self, o: &LoadErrors) {
        self.verify += o.verify;
        self.connect += o.connect;
        self.reset += o.reset;
        self.eof += o.eof;
        self.other += o.other;
    }
}

/// Results of a run (one core's, or several merged).
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct LoadReport {
    /// Transactions completed and verified in the measured window.
    pub transactions: u64,
    /// Connections established in the measured window.
    pub connections: u64,
    /// Bytes sent and verified in the measured window.
    pub bytes: u64,
    /// Length of the measured window, seconds.
    pub seconds: f64,
    /// Transactions per second.
    pub txns_per_sec: f64,
    /// Connections per second.
    pub conns_per_sec: f64,
    /// Latency (serialised as `p50_us`, `p99_us`, `p999_us`, `mean_us`).
    #[serde(flatten)]
    pub latency: Latency,
    /// Connect time of the connections established in the measured window: from the
    /// `connect` command to its completion (serialised as `connect: {p50_us, ...}`).
    pub connect: Latency,
    /// Errors.
    pub errors: LoadErrors,
    /// Open loop: requests that found no free connection at their scheduled time and waited.
    pub queued_requests: u64,
}

impl Report for LoadReport {
    fn add(&mut self, o: &Self) {
        self.transactions += o.transactions;
        self.connections += o.connections;
        self.bytes += o.bytes;
        self.seconds = self.seconds.max(o.seconds);
        self.errors.add(&o.errors);
        self.queued_requests += o.queued_requests;
        self.latency.merge(&o.latency);
        self.connect.merge(&o.connect);
    }

    fn finish(&mut self) {
        self.latency.finish();
        self.connect.finish();
        let s = self.seconds.max(1e-9);
        self.txns_per_sec = self.transactions as f64 / s;
        self.conns_per_sec = self.connections as f64 / s;
    }
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "transactions: {} in {:.2} s = {:.0} txn/s ({:.1} MB/s verified)",
            self.transactions,
            self.seconds,
            self.txns_per_sec,
            self.bytes as f64 / self.seconds.max(1e-9) / 1e6
        )?;
        writeln!(
            f,
            "connections:  {} = {:.0} conn/s",
            self.connections, self.conns_per_sec
        )?;
        writeln!(f, "{}", self.latency)?;
        writeln!(
            f,
            "connect (us): p50 {:.1}  p99 {:.1}  p99.9 {:.1}  mean {:.1}",
            self.connect.p50_us, self.connect.p99_us, self.connect.p999_us, self.connect.mean_us
        )?;
        let e = &self.errors;
        write!(
            f,
            "errors:       {} (verify {}, connect {}, reset {}, eof {}, other {})",
            e.total(),
            e.verify,
            e.connect,
            e.reset,
            e.eof,
            e.other
        )?;
        if self.queued_requests > 0 {
            write!(
                f,
                "\nopen loop:    {} requests waited for a free connection",
                self.queued_requests
            )?;
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Connecting,
    Idle,
    Busy,
    Closing,
}

struct Slot {
    handle: Option<Handle>,
    state: State,
    /// The request in flight (what the echo must match).
    sent: Vec<u8>,
    received: usize,
    started: Instant,
    /// When the connection's `connect` was issued.
    connecting: Instant,
    txns: u64,
}

struct Gen {
    opts: LoadOpts,
    slots: Vec<Slot>,
    rng: ChaCha8Rng,
    serial: u64,
    measuring: bool,
    draining: bool,
    report: LoadReport,
    /// Open loop: scheduled start times waiting for a free connection.
    backlog: VecDeque<Instant>,
    idle: VecDeque<usize>,
    next_send: Instant,
}

impl Gen {
    fn fill(&mut self, slot: usize, sched: Instant) -> Vec<u8> {
        let len = match self.opts.msg {
            MsgSize::Fixed(n) => n,
            MsgSize::Range(lo, hi) => self.rng.random_range(lo..=hi),
        };
        self.serial += 1;
        // A pattern unique to this transaction: a wrong or misplaced byte is seen.
        let k = self.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let msg: Vec<u8> = (0..len as u64)
            .map(|i| (k >> ((i % 8) * 8)) as u8 ^ i as u8)
            .collect();
        let s = &mut self.slots[slot];
        s.sent.clear();
        s.sent.extend_from_slice(&msg);
        s.received = 0;
        s.started = sched;
        s.state = State::Busy;
        msg
    }

    fn start_txn<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, sched: Instant) {
        let Some(h) = self.slots[slot].handle else {
            return;
        };
        let msg = self.fill(slot, sched);
        ch.write(h, msg, cookie(slot, WRITE));
        ch.read(h, cookie(slot, READ));
    }

    fn connect<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize) {
        let s = &mut self.slots[slot];
        s.handle = None;
        s.state = State::Connecting;
        s.connecting = Instant::now();
        s.txns = 0;
        ch.connect(self.opts.target, cookie(slot, CONNECT));
    }

    /// The slot's connection is ready for a transaction.
    fn ready<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize) {
        self.slots[slot].state = State::Idle;
        if self.draining {
            return;
        }
        if self.opts.rate.is_some() {
            match self.backlog.pop_front() {
                Some(sched) => self.start_txn(ch, slot, sched),
                None => self.idle.push_back(slot),
            }
        } else {
            self.start_txn(ch, slot, Instant::now());
        }
    }

    fn drop_conn<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize) {
        if let Some(h) = self.slots[slot].handle.take() {
            if self.opts.close_rst {
                ch.abort(h, cookie(slot, CLOSE));
            } else {
                ch.close(h, cookie(slot, CLOSE));
            }
        }
        self.slots[slot].state = State::Closing;
        if !self.draining {
            self.connect(ch, slot);
        }
    }

    fn on_completion<B: Backend>(&mut self, ch: &mut Channel<B>, c: Completion) {
        match c {
            Completion::Connected { handle, cookie } => {
                let (slot, _) = split(cookie);
                self.slots[slot].handle = Some(handle);
                if self.measuring {
                    self.report.connections += 1;
                    let ns = self.slots[slot].connecting.elapsed().as_nanos() as u64;
                    self.report.connect.record(ns);
                }
                if self.draining {
                    self.drop_conn(ch, slot);
                } else {
                    self.ready(ch, slot);
                }
            }
            Completion::Read {
                handle,
                data,
                cookie,
            } => {
                let (slot, _) = split(cookie);
                let s = &mut self.slots[slot];
                if s.handle != Some(handle) || s.state != State::Busy {
                    return;
                }
                let end = s.received + data.len();
                if end > s.sent.len() || s.sent[s.received..end] != data[..] {
                    self.report.errors.verify += 1;
                    self.drop_conn(ch, slot);
                    return;
                }
                s.received = end;
                if end < s.sent.len() {
                    ch.read(handle, cookie);
                    return;
                }
                s.txns += 1;
                if self.measuring {
                    let ns = s.started.elapsed().as_nanos() as u64;
                    self.report.latency.record(ns);
                    self.report.transactions += 1;
                    self.report.bytes += s.sent.len() as u64;
                }
                if self.opts.txns_per_conn > 0 && s.txns >= self.opts.txns_per_conn {
                    self.drop_conn(ch, slot);
                } else {
                    self.ready(ch, slot);
                }
            }
            Completion::Eof { handle, cookie } => {
                let (slot, _) = split(cookie);
                // An end of stream for a connection the slot no longer holds (closed
                // already) is old news.
                if self.slots[slot].handle != Some(handle) {
                    return;
                }
                // The server may close first (HTTP style) once the last transaction is
                // answered; closing in the middle of one is an error.
                if self.slots[slot].state == State::Busy {
                    self.report.errors.eof += 1;
                }
                self.drop_conn(ch, slot);
            }
            Completion::Reset { handle } => {
                if let Some(slot) = self.slots.iter().position(|s| s.handle == Some(handle)) {
                    self.slots[slot].handle = None;
                    if self.slots[slot].state != State::Closing {
                        self.report.errors.reset += 1;
                        self.slots[slot].state = State::Closing;
                        if !self.draining {
                            self.connect(ch, slot);
                        }
                    }
                }
            }
            Completion::Error { cookie, error } => {
                let (slot, kind) = split(cookie);
                match (kind, error) {
                    (CONNECT, _) => {
                        self.report.errors.connect += 1;
                        if !self.draining && slot < self.slots.len() {
                            self.connect(ch, slot);
                        }
                    }
                    (_, megatcp_channel::ChannelError::Reset(_)) => {}
                    (CLOSE, _) => {}
                    _ => {
                        self.report.errors.other += 1;
                        if slot < self.slots.len() && self.slots[slot].state == State::Busy {
                            self.drop_conn(ch, slot);
                        }
                    }
                }
            }
            _ => {}
        }
    }
}

/// Runs the load on one channel and returns its report. Stops early when the backend is
/// asked to stop.
pub fn run_load<B: Backend>(ch: &mut Channel<B>, opts: LoadOpts) -> LoadReport {
    let now = Instant::now();
    let n = opts.connections.max(1);
    let mut g = Gen {
        slots: (0..n)
            .map(|_| Slot {
                handle: None,
                state: State::Closing,
                sent: Vec::new(),
                received: 0,
                started: now,
                connecting: now,
                txns: 0,
            })
            .collect(),
        rng: ChaCha8Rng::seed_from_u64(opts.seed),
        serial: opts.seed << 32,
        measuring: opts.warmup.is_zero(),
        draining: false,
        report: LoadReport::default(),
        backlog: VecDeque::new(),
        idle: VecDeque::new(),
        next_send: now,
        opts,
    };
    for slot in 0..n {
        g.connect(ch, slot);
    }
    let start = Instant::now();
    let mut measure_start = start;
    let interval = g
        .opts
        .rate
        .filter(|r| *r > 0.0)
        .map(|r| Duration::from_secs_f64(1.0 / r));
    loop {
        // Open loop: wake up for the next scheduled request, not later.
        let wait = match interval {
            Some(_) if !g.draining => g
                .next_send
                .saturating_duration_since(Instant::now())
                .min(Duration::from_millis(1)),
            _ => Duration::from_millis(1),
        };
        let mut batch = ch.dispatch(Some(wait));
        for c in batch.drain(..) {
            g.on_completion(ch, c);
        }
        ch.recycle(batch);
        let now = Instant::now();
        if !g.measuring && now.duration_since(start) >= g.opts.warmup {
            g.measuring = true;
            measure_start = now;
        }
        if let Some(iv) = interval
            && !g.draining
        {
            while g.next_send <= now {
                let sched = g.next_send;
                g.next_send += iv;
                match g.idle.pop_front() {
                    Some(slot) => g.start_txn(ch, slot, sched),
                    None => {
                        if g.measuring {
                            g.report.queued_requests += 1;
                        }
                        g.backlog.push_back(sched);
                    }
                }
            }
        }
        let done_time = g.measuring && now.duration_since(measure_start) >= g.opts.duration;
        let done_count = g.opts.max_txns.is_some_and(|m| g.report.transactions >= m);
        if !g.draining && (done_time || done_count || ch.is_stopping()) {
            g.draining = true;
            g.report.seconds = now.duration_since(measure_start).as_secs_f64();
            g.measuring = false;
            // Let transactions in flight finish (not counted), then close everything.
            let end = Instant::now() + Duration::from_secs(2);
            while g
                .slots
                .iter()
                .any(|s| matches!(s.state, State::Busy | State::Connecting))
                && Instant::now() < end
                && !ch.is_stopping()
            {
                for c in ch.dispatch(Some(Duration::from_millis(1))) {
                    g.on_completion(ch, c);
                }
            }
            for slot in 0..g.slots.len() {
                if g.slots[slot].handle.is_some() {
                    g.drop_conn(ch, slot);
                }
            }
            let end = Instant::now() + Duration::from_millis(200);
            while Instant::now() < end {
                let b = ch.dispatch(Some(Duration::from_millis(1)));
                if b.is_empty() {
                    break;
                }
            }
            break;
        }
    }
    g.report.finish();
    g.report
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn msg_size_parses() {
        assert_eq!("64".parse::<MsgSize>(), Ok(MsgSize::Fixed(64)));
        assert_eq!("1..65536".parse::<MsgSize>(), Ok(MsgSize::Range(1, 65536)));
        assert_eq!("1..=10".parse::<MsgSize>(), Ok(MsgSize::Range(1, 10)));
        assert!("0".parse::<MsgSize>().is_err());
        assert!("9..3".parse::<MsgSize>().is_err());
        assert!("x".parse::<MsgSize>().is_err());
    }
}
