//! The bypass backend of the channel: a NIC queue and a [`Stack`] driven in the caller's
//! thread. One `dispatch` = one stack poll and transmit batch, one receive burst. The
//! channel's rules and per-handle state are the ledger's ([`megatcp_channel::ledger`]); the
//! stack's side of them is `stack_io`; this module is the loop.

use std::marker::PhantomData;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use megatcp_channel::{Backend, Command, Completion, Ledger};
use megatcp_nic::NicQueue;
use megatcp_stack::{Instant, Stack, StackConfig};

use crate::busy::TurnClock;
use crate::capture::{Capture, CaptureControl};
use crate::hint::ChecksumHint;
use crate::monitor::{ConnInfo, CoreMonitor, Field};
use crate::stack_io::{BypassLedger, StackIo, on_events};
use crate::steer::{Route, Steer, SteerStats};

/// What a core does when a poll finds nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one core at 100 %.
    BusyPoll,
    /// Spin `spins` empty iterations, then sleep up to `max_sleep` at a time (bounded by the
    /// stack's next deadline and the dispatch timeout).
    Backoff {
        /// Empty iterations before sleeping.
        spins: u32,
        /// Longest single sleep.
        max_sleep: StdDuration,
    },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Backoff {
            spins: 2000,
            max_sleep: StdDuration::from_micros(200),
        }
    }
}

/// Why a [`Bypass`] could not be made.
#[derive(Debug, thiserror::Error)]
pub enum BypassError {
    /// The stack refused its configuration.
    #[error(transparent)]
    Config(#[from] megatcp_stack::ConfigError),
    /// The operating system's random source failed.
    #[error("cannot draw the stack's secret from the operating system: {0}")]
    Random(getrandom::Error),
}

/// Counters of the engine loop of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Loop iterations.
    pub iterations: u64,
    /// Iterations that received no frame.
    pub idle_iterations: u64,
    /// Sleeps taken by the idle policy.
    pub sleeps: u64,
    /// NIC transmit flushes (batches).
    pub tx_batches: u64,
    /// Frames the NIC refused (ring full); they stayed queued in the stack.
    pub tx_ring_full: u64,
    /// Iterations that did work: received or sent frames, or produced completions.
    pub busy_iterations: u64,
    /// Nanoseconds from the start of a busy iteration to the start of the next one (the
    /// application's handling of its completions included).
    pub busy_ns: u64,
    /// Nanoseconds from the start of an empty iteration to the start of the next one
    /// (idle polling and sleeps).
    pub idle_ns: u64,
}

impl LoopStats {
    /// The share of the time (0..=1) spent busy, `None` before any time was counted.
    pub fn busy_fraction(&self) -> Option<f64> {
        let all = self.busy_ns + self.idle_ns;
        (all > 0).then(|| self.busy_ns as f64 / all as f64)
    }
}

/// How often a core publishes its counters to its monitor.
const PUBLISH_EVERY: StdDuration = StdDuration::from_millis(1);

/// The bypass backend: one NIC queue + one stack, owned by one core's thread (not `Send`).
pub struct Bypass<Q: NicQueue> {
    nic: Q,
    ledger: BypassLedger,
    io: StackIo,
    /// When the last turn read the clock (one read per turn: clock reads are not free), and
    /// busy-time accounting on that reading.
    clock: TurnClock,
    /// When the counters go to the monitor next.
    next_publish: StdInstant,
    stop: Arc<AtomicBool>,
    idle: IdlePolicy,
    rx_budget: usize,
    stats: LoopStats,
    monitor: Option<(Arc<Vec<CoreMonitor>>, usize)>,
    /// Packet capture on demand (`--pcap`).
    capture: Option<Capture>,
    /// Rings to and from the other cores, when there are several.
    steer: Option<Steer>,
    /// What to say when received frames fail their checksum.
    checksum_hint: Option<ChecksumHint>,
    /// Bound to the thread that created it.
    _not_send: PhantomData<*const ()>,
}

impl<Q: NicQueue> Bypass<Q> {
    /// A backend over `nic` with a stack made from `cfg`. `stop` is the runtime's stop flag.
    /// A `cfg` without a secret (all zero) gets one from the operating system's random
    /// source, so that two processes (or two restarts) never share ISNs, ports or cookies.
    pub fn new(
        nic: Q,
        mut cfg: StackConfig,
        stop: Arc<AtomicBool>,
        idle: IdlePolicy,
    ) -> Result<Self, BypassError> {
        if cfg.secret == [0; 16] {
            getrandom::fill(&mut cfg.secret).map_err(BypassError::Random)?;
        }
        let start = StdInstant::now();
        let stack = Stack::new(cfg, Instant::from_micros(0))?;
        let checksum_hint = ChecksumHint::new(nic.checksum_hint());
        Ok(Self {
            nic,
            ledger: Ledger::new(),
            io: StackIo::new(stack, start),
            clock: TurnClock::new(start),
            next_publish: start,
            stop,
            idle,
            rx_budget: 64,
            stats: LoopStats::default(),
            monitor: None,
            capture: None,
            steer: None,
            checksum_hint,
            _not_send: PhantomData,
        })
    }

    /// The stack (counters, stats).
    pub fn stack(&self) -> &Stack {
        &self.io.stack
    }

    /// The stack, mutably (e.g. to install a port filter).
    pub fn stack_mut(&mut self) -> &mut Stack {
        &mut self.io.stack
    }

    /// The NIC queue.
    pub fn nic(&self) -> &Q {
        &self.nic
    }

    /// Loop counters.
    pub fn loop_stats(&self) -> LoopStats {
        self.stats
    }

    /// Publishes counters to `monitors[index]` from now on (about every millisecond).
    pub fn set_monitor(&mut self, monitors: Arc<Vec<CoreMonitor>>, index: usize) {
        self.monitor = Some((monitors, index));
    }

    /// Captures this core's traffic to `ctrl`'s directory while `ctrl` says so, in files
    /// named `{prefix}core{core}-{K}.pcap` (see `CaptureControl`).
    pub fn set_capture(&mut self, ctrl: Arc<CaptureControl>, prefix: &str, core: usize) {
        self.capture = Some(Capture::new(ctrl, prefix.to_string(), core));
    }

    /// Makes this backend core `me` of several: frames of flows owned by other cores go
    /// through SPSC rings (see `steer`), and active opens choose source ports whose replies
    /// reach this core: by the NIC's Toeplitz hash when it exposes its RSS key, else by the
    /// steering hash.
    pub(crate) fn set_steering(&mut self, links: &crate::steer::Links, me: usize) {
        let caps = self.nic.capabilities();
        let rss = caps.rss.clone().filter(|r| r.key.is_some());
        let (queues, own) = (caps.queues, self.nic.queue_id());
        let steer = Steer::new(me, links, rss.is_some());
        let n = steer.cores();
        self.io
            .stack
            .set_port_filter(Some(Box::new(move |local, remote| match &rss {
                // Replies come from `remote` to `local`, to the queue the NIC's key and
                // table give.
                Some(r) => r.tcp4_queue(remote, local, queues) == Some(own),
                None => megatcp_nic::rss::tuple_hash(local, remote) as usize % n == me,
            })));
        debug_assert_eq!(steer.me(), me);
        self.steer = Some(steer);
    }

    /// Counters of software flow steering (all zero with one core).
    pub fn steer_stats(&self) -> SteerStats {
        self.steer.as_ref().map(|s| s.stats).unwrap_or_default()
    }

    /// Publishes the counters to the monitor now (and the connection list, if asked).
    pub fn publish(&self) {
        let Some(m) = self.monitor.as_ref().and_then(|(m, i)| m.get(*i)) else {
            return;
        };
        let stack = &self.io.stack;
        let (c, s, l, n) = (
            stack.counters(),
            stack.stats(),
            self.stats,
            self.nic.stats(),
        );
        let steer = self.steer_stats();
        let values = [
            (Field::rx_frames, c.rx_frames),
            (Field::rx_bytes, c.rx_bytes),
            (Field::tx_frames, c.tx_frames),
            (Field::tx_bytes, c.tx_bytes),
            (Field::drops, c.drops.total()),
            (Field::conns_accepted, c.conns_accepted),
            (Field::conns_opened, c.conns_opened),
            (Field::conns_closed, c.conns_closed),
            (Field::conns_reset, c.conns_reset),
            (Field::conns_connect_failed, c.conns_connect_failed),
            (Field::retransmits, c.tcp_retransmits),
            (Field::tail_probes, c.tail_probes),
            (Field::rst_sent, c.tcp_rst_sent),
            (Field::syn_cookies_sent, c.syn_cookies_sent),
            (Field::challenge_acks_sent, c.challenge_acks_sent),
            (Field::time_wait_entered, c.tcp_time_wait_entered),
            (Field::flows, s.flows as u64),
            (Field::time_wait, s.time_wait as u64),
            (Field::queued_frames, s.queued_frames as u64),
            (Field::timer_entries, s.timer_entries as u64),
            (Field::queued_events, s.queued_events as u64),
            (Field::arp_entries, s.arp_entries as u64),
            (Field::flow_table_bytes, s.flow_table_bytes as u64),
            (Field::time_wait_bytes, s.time_wait_bytes as u64),
            (Field::pooled_frame_bytes, s.pooled_frame_bytes as u64),
            (Field::pooled_socket_bytes, s.pooled_socket_bytes as u64),
            (Field::turns, l.iterations),
            (Field::busy_turns, l.busy_iterations),
            (Field::busy_ns, l.busy_ns),
            (Field::idle_ns, l.idle_ns),
            (Field::sleeps, l.sleeps),
            (Field::tx_batches, l.tx_batches),
            (Field::tx_ring_full, l.tx_ring_full),
            (Field::nic_rx_frames, n.rx_frames),
            (Field::nic_tx_frames, n.tx_frames),
            (Field::nic_tx_full, n.tx_full),
            (Field::nic_dropped, n.dropped),
            (Field::steered_out, steer.steered_out),
            (Field::steered_in, steer.steered_in),
            (Field::steer_dropped, steer.dropped),
            (
                Field::capture_frames,
                self.capture.as_ref().map_or(0, |c| c.frames),
            ),
        ];
        debug_assert_eq!(values.len(), Field::ALL.len());
        for (f, v) in values {
            m.set(f, v);
        }
        m.set_drops(&c.drops);
        if m.connections_wanted() {
            m.put_connections(self.connections());
        }
    }

    /// Every connection of the stack, for listings.
    fn connections(&self) -> Vec<ConnInfo> {
        let stack = &self.io.stack;
        stack
            .connections()
            .into_iter()
            .filter_map(|id| {
                Some(ConnInfo {
                    local: stack.local_addr(id).ok()?,
                    remote: stack.peer_addr(id).ok()?,
                    state: stack.state(id).ok()?.to_string(),
                    recv_queue: stack.recv_queue(id).unwrap_or(0),
                    send_queue: stack.send_queue(id).unwrap_or(0),
                })
            })
            .collect()
    }

    /// Live handles (connections and listeners).
    pub fn live_handles(&self) -> usize {
        self.ledger.live()
    }

    /// One engine iteration; returns the frames received.
    fn turn(&mut self, out: &mut Vec<Completion>) -> usize {
        // Busy-time accounting rides on the turn's one clock read (see `busy`).
        self.clock.start(&mut self.stats);
        let before = out.len();
        let now = self.io.at(self.clock.at());
        // Output first: what the commands just submitted and the previous input owe leaves
        // now, in one NIC batch. Input is only taken after, and its output waits for the
        // next turn, which comes after the application has seen the completions: a reply
        // written in response to received bytes (or a request written on `Connected`) then
        // leaves in the same segment as the ACK, not one packet after it.
        self.io.stack.poll(now);
        on_events(&mut self.ledger, &mut self.io, out);
        let nic = &mut self.nic;
        let mut refused = 0u64;
        let capture = self.capture.as_mut().filter(|c| c.on());
        // Frames are written straight into the NIC's transmit buffers.
        let sent = match capture {
            None => self.io.stack.transmit_into(&mut |fill| {
                let ok = nic.tx_frame(fill).is_ok();
                refused += u64::from(!ok);
                ok
            }),
            Some(cap) => self.io.stack.transmit_into(&mut |fill| {
                let ok = nic
                    .tx_frame(&mut |buf| {
                        let n = fill(buf);
                        cap.record(buf.get(..n).unwrap_or(&[]));
                        n
                    })
                    .is_ok();
                refused += u64::from(!ok);
                ok
            }),
        };
        if sent > 0 {
            self.nic.tx_flush();
            self.stats.tx_batches += 1;
        }
        self.stats.tx_ring_full += refused;
        let stack = &mut self.io.stack;
        let steer = &mut self.steer;
        let mut deliver = |data: &[u8]| match steer {
            None => stack.receive(now, data),
            Some(s) => match s.route(data) {
                Route::Local => stack.receive(now, data),
                Route::Everywhere => {
                    stack.receive(now, data);
                    s.broadcast(data);
                }
                Route::To(core) => s.send(core, data),
            },
        };
        let mut n = match self.capture.as_mut().filter(|c| c.on()) {
            None => self.nic.rx_burst(self.rx_budget, &mut |f| deliver(f.data)),
            Some(cap) => self.nic.rx_burst(self.rx_budget, &mut |f| {
                cap.record(f.data);
                deliver(f.data)
            }),
        };
        if let Some(s) = steer {
            n += s.receive(&mut |frame| stack.receive(now, frame));
        }
        on_events(&mut self.ledger, &mut self.io, out);
        let busy = n > 0 || sent > 0 || out.len() > before;
        self.clock.end(busy, &mut self.stats);
        if self.clock.at() >= self.next_publish {
            self.next_publish = self.clock.at() + PUBLISH_EVERY;
            if let Some(c) = self.capture.as_mut() {
                c.follow();
            }
            self.publish();
            if let Some(h) = &mut self.checksum_hint
                && let Some(text) = h.check(
                    ChecksumHint::bad_frames(&self.io.stack.counters()),
                    self.clock.at(),
                )
            {
                tracing::warn!("queue {}: {text}", self.nic.queue_id());
            }
        }
        n
    }

    /// Closes every handle (graceful shutdown) and runs the stack until connections have
    /// finished closing or `grace` has passed.
    pub fn shutdown_all(&mut self, grace: StdDuration) {
        let mut out = Vec::new();
        self.ledger.close_all(&mut self.io, &mut out);
        let end = StdInstant::now() + grace;
        while StdInstant::now() < end {
            out.clear();
            self.turn(&mut out);
            let s = self.io.stack.stats();
            let c = self.io.stack.counters();
            let open = c.conns_opened + c.conns_accepted
                - c.conns_closed
                - c.conns_reset
                - c.conns_connect_failed;
            if s.queued_frames == 0 && (s.flows == 0 || open == 0) && self.ledger.closing() == 0 {
                break;
            }
            std::thread::sleep(StdDuration::from_micros(100));
        }
    }

    /// How long an idle poll may sleep: at most `max_sleep`, what is left of the timeout,
    /// and the time to the stack's next deadline.
    fn idle_sleep(
        &self,
        max_sleep: StdDuration,
        timeout: Option<StdDuration>,
        start: StdInstant,
    ) -> StdDuration {
        let mut sleep = max_sleep;
        if let Some(t) = timeout {
            sleep = sleep.min(t.saturating_sub(self.clock.at().saturating_duration_since(start)));
        }
        if let Some(at) = self.io.stack.poll_at() {
            let now = self.io.at(StdInstant::now());
            let until = (at - now.min(at)).total_micros();
            sleep = sleep.min(StdDuration::from_micros(until));
        }
        sleep
    }
}

impl<Q: NicQueue> Backend for Bypass<Q> {
    fn submit(&mut self, commands: &mut Vec<Command>, out: &mut Vec<Completion>) {
        for cmd in commands.drain(..) {
            self.ledger.submit(&mut self.io, cmd, out);
        }
    }

    fn poll(&mut self, timeout: Option<StdDuration>, out: &mut Vec<Completion>) {
        // The timeout counts from the last turn's clock reading (the application's time
        // since then counts too): no clock read of its own.
        let start = self.clock.at();
        let mut empty_turns = 0u32;
        loop {
            let got = self.turn(out);
            if !out.is_empty() || self.stop.load(Ordering::Relaxed) {
                return;
            }
            if timeout.is_some_and(|t| self.clock.at().saturating_duration_since(start) >= t) {
                return;
            }
            if got > 0 {
                empty_turns = 0;
                continue;
            }
            self.stats.idle_iterations += 1;
            empty_turns += 1;
            if let IdlePolicy::Backoff { spins, max_sleep } = self.idle
                && empty_turns > spins
            {
                let sleep = self.idle_sleep(max_sleep, timeout, start);
                if !sleep.is_zero() {
                    self.stats.sleeps += 1;
                    std::thread::sleep(sleep);
                }
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
