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

use crate::hint::ChecksumHint;
use crate::monitor::CoreMonitor;
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
}

/// The bypass backend: one NIC queue + one stack, owned by one core's thread (not `Send`).
pub struct Bypass<Q: NicQueue> {
    nic: Q,
    ledger: BypassLedger,
    io: StackIo,
    /// When the last turn read the clock (one read per turn: clock reads are not free).
    clock: StdInstant,
    stop: Arc<AtomicBool>,
    idle: IdlePolicy,
    rx_budget: usize,
    stats: LoopStats,
    monitor: Option<(Arc<Vec<CoreMonitor>>, usize)>,
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
            clock: start,
            stop,
            idle,
            rx_budget: 64,
            stats: LoopStats::default(),
            monitor: None,
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

    /// Publishes counters to `monitors[index]` from now on (about every 256 iterations).
    pub fn set_monitor(&mut self, monitors: Arc<Vec<CoreMonitor>>, index: usize) {
        self.monitor = Some((monitors, index));
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

    /// Publishes the counters to the monitor now.
    pub fn publish(&self) {
        if let Some((m, i)) = &self.monitor
            && let Some(m) = m.get(*i)
        {
            m.publish(&self.io.stack.counters());
        }
    }

    /// Live handles (connections and listeners).
    pub fn live_handles(&self) -> usize {
        self.ledger.live()
    }

    /// One engine iteration; returns the frames received.
    fn turn(&mut self, out: &mut Vec<Completion>) -> usize {
        self.clock = StdInstant::now();
        let now = self.io.at(self.clock);
        // Output first: what the commands just submitted and the previous input owe leaves
        // now, in one NIC batch. Input is only taken after, and its output waits for the
        // next turn, which comes after the application has seen the completions: a reply
        // written in response to received bytes (or a request written on `Connected`) then
        // leaves in the same segment as the ACK, not one packet after it.
        self.io.stack.poll(now);
        on_events(&mut self.ledger, &mut self.io, out);
        let nic = &mut self.nic;
        let mut refused = 0u64;
        // Frames are written straight into the NIC's transmit buffers.
        let sent = self.io.stack.transmit_into(&mut |fill| {
            let ok = nic.tx_frame(fill).is_ok();
            refused += u64::from(!ok);
            ok
        });
        if sent > 0 {
            self.nic.tx_flush();
            self.stats.tx_batches += 1;
        }
        self.stats.tx_ring_full += refused;
        let stack = &mut self.io.stack;
        let steer = &mut self.steer;
        let mut n = self.nic.rx_burst(self.rx_budget, &mut |f| match steer {
            None => stack.receive(now, f.data),
            Some(s) => match s.route(f.data) {
                Route::Local => stack.receive(now, f.data),
                Route::Everywhere => {
                    stack.receive(now, f.data);
                    s.broadcast(f.data);
                }
                Route::To(core) => s.send(core, f.data),
            },
        });
        if let Some(s) = steer {
            n += s.receive(&mut |frame| stack.receive(now, frame));
        }
        on_events(&mut self.ledger, &mut self.io, out);
        self.stats.iterations += 1;
        if self.stats.iterations % 256 == 0 {
            self.publish();
            if let Some(h) = &mut self.checksum_hint
                && let Some(text) = h.check(
                    ChecksumHint::bad_frames(&self.io.stack.counters()),
                    self.clock,
                )
            {
                eprintln!("megatcp: queue {}: {text}", self.nic.queue_id());
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
            sleep = sleep.min(t.saturating_sub(self.clock.saturating_duration_since(start)));
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
        let start = self.clock;
        let mut empty_turns = 0u32;
        loop {
            let got = self.turn(out);
            if !out.is_empty() || self.stop.load(Ordering::Relaxed) {
                return;
            }
            if timeout.is_some_and(|t| self.clock.saturating_duration_since(start) >= t) {
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
