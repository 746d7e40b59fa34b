//! The bypass backend of the channel: a NIC queue and a [`Stack`] driven in the caller's
//! thread. One `dispatch` = one stack poll and transmit batch, one receive burst. The
//! channel's rules and per-handle state are the ledger's ([`megatcp_channel::ledger`]); the
//! stack's side of them is `stack_io`; this module is the loop.

use std::marker::PhantomData;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::{Duration as StdDuration, Instant as StdInstant};

use megatcp_channel::{Backend, Command, Completion, Ledger};
use megatcp_nic::NicQueue;
use megatcp_stack::{Instant, Stack, StackConfig};

use crate::busy::TurnClock;
use crate::capture::{self, Capture, CaptureControl};
use crate::hint::ChecksumHint;
use crate::idle::{IdlePolicy, LoopStats, idle_sleep};
use crate::monitor::CoreMonitor;
use crate::publish::{Publisher, Sources};
use crate::stack_io::{BypassLedger, StackIo, on_events, stack_time};
use crate::steer::{Route, Steer, SteerStats};

/// Frames taken from the NIC per turn, unless `MEGATCP_RX_BURST` (1 to 1024) says otherwise.
/// Their completions reach the application and its replies leave at the next turn, so a
/// smaller burst lets the first replies go while the peer is still sending: with 64
/// connections in a closed loop over memif, a burst of 32 gave 1.9x the transactions per
/// second of 64 (1.15M against 0.61M; `scripts/bench-memif` with `MEGATCP_RX_BURST=64`),
/// where each side waited for the other's whole burst. Many connections keep the NIC busy
/// either way.
const RX_BURST: usize = 32;

/// The receive burst: [`RX_BURST`] or `MEGATCP_RX_BURST`, read once per process.
fn rx_burst() -> usize {
    static BURST: OnceLock<usize> = OnceLock::new();
    *BURST.get_or_init(|| {
        let Ok(v) = std::env::var("MEGATCP_RX_BURST") else {
            return RX_BURST;
        };
        match v.parse::<usize>() {
            Ok(n @ 1..=1024) => n,
            _ => {
                tracing::warn!("MEGATCP_RX_BURST={v:?} is not 1 to 1024: using {RX_BURST}");
                RX_BURST
            }
        }
    })
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

/// The bypass backend: one NIC queue + one stack, owned by one core's thread (not `Send`).
pub struct Bypass<Q: NicQueue> {
    nic: Q,
    ledger: BypassLedger,
    io: StackIo,
    /// One clock read per turn (clock reads are not free), busy and idle time.
    clock: TurnClock,
    stop: Arc<AtomicBool>,
    idle: IdlePolicy,
    /// Frames taken from the NIC per turn.
    rx_burst: usize,
    stats: LoopStats,
    publisher: Publisher,
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
            stop,
            idle,
            rx_burst: rx_burst(),
            stats: LoopStats::default(),
            publisher: Publisher::new(start),
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
        self.publisher.set(monitors, index);
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
        self.publisher.publish(Sources {
            stack: &self.io.stack,
            engine: self.stats,
            nic: self.nic.stats(),
            steer: self.steer_stats(),
            capture_frames: self.capture.as_ref().map_or(0, |c| c.frames),
        });
    }

    /// Live handles (connections and listeners).
    pub fn live_handles(&self) -> usize {
        self.ledger.live()
    }

    /// One engine iteration; returns the frames received.
    fn turn(&mut self, out: &mut Vec<Completion>) -> usize {
        // At most one clock read, and none while the core spins with nothing to do: a turn
        // after an empty one reads only for output waiting or its first frame (see `busy`).
        let fresh = self
            .clock
            .start(self.io.stack.output_pending(), &mut self.stats);
        let clock = self.clock.at();
        let before = out.len();
        let mut now = fresh.then(|| self.io.at(clock));
        // Output first: what the commands just submitted and the previous input owe leaves
        // now, in one NIC batch. Input is only taken after, and its output waits for the
        // next turn, which comes after the application has seen the completions: a reply
        // written in response to received bytes (or a request written on `Connected`) then
        // leaves in the same segment as the ACK, not one packet after it. A turn that has
        // not read the clock has nothing due: its time has not moved since the last poll.
        if let Some(now) = now {
            self.io.stack.poll(now);
        }
        on_events(&mut self.ledger, &mut self.io, out);
        let (sent, refused) =
            capture::transmit(&mut self.io.stack, &mut self.nic, self.capture.as_mut());
        if sent > 0 {
            self.nic.tx_flush();
            self.stats.tx_batches += 1;
        }
        self.stats.tx_ring_full += refused;
        let origin = self.io.origin();
        let (turn_clock, stats) = (&mut self.clock, &mut self.stats);
        let mut now =
            move || *now.get_or_insert_with(|| stack_time(origin, turn_clock.read_now(stats)));
        let stack = &mut self.io.stack;
        let steer = &mut self.steer;
        let mut deliver = |data: &[u8]| match steer {
            None => stack.receive(now(), data),
            Some(s) => match s.route(data) {
                Route::Local => stack.receive(now(), data),
                Route::Everywhere => {
                    stack.receive(now(), data);
                    s.broadcast(data);
                }
                Route::To(core) => s.send(core, data),
            },
        };
        let mut n = capture::receive(
            &mut self.nic,
            self.rx_burst,
            self.capture.as_mut(),
            &mut deliver,
        );
        if let Some(s) = steer {
            n += s.receive(&mut |frame| stack.receive(now(), frame));
        }
        on_events(&mut self.ledger, &mut self.io, out);
        let busy = n > 0 || sent > 0 || out.len() > before;
        self.clock.end(busy, &mut self.stats);
        if self.publisher.due(clock) {
            self.every_period(clock);
        }
        n
    }

    /// What a core does about once a millisecond: follow the capture control, publish the
    /// counters, and say (rarely) why received frames fail their checksum.
    fn every_period(&mut self, clock: StdInstant) {
        if let Some(c) = self.capture.as_mut() {
            c.follow();
        }
        self.publish();
        if let Some(h) = &mut self.checksum_hint
            && let Some(text) = h.check(ChecksumHint::bad_frames(&self.io.stack.counters()), clock)
        {
            tracing::warn!("queue {}: {text}", self.nic.queue_id());
        }
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
            let elapsed = self.clock.at().saturating_duration_since(start);
            if timeout.is_some_and(|t| elapsed >= t) {
                return;
            }
            if got > 0 {
                empty_turns = 0;
                continue;
            }
            self.stats.idle_iterations += 1;
            empty_turns += 1;
            // A spinning core rests a moment between empty polls: polling a ring that the
            // other side writes as fast as it can slows the writer down (the cache line of
            // the ring's head moves back and forth).
            std::hint::spin_loop();
            if let IdlePolicy::Backoff { spins, max_sleep } = self.idle
                && empty_turns > spins
            {
                let stack_now = self.io.at(StdInstant::now());
                let sleep = idle_sleep(max_sleep, timeout, elapsed, &self.io.stack, stack_now);
                if !sleep.is_zero() {
                    self.stats.sleeps += 1;
                    std::thread::sleep(sleep);
                    self.clock.woke();
                }
            }
        }
    }

    fn is_stopping(&self) -> bool {
        self.stop.load(Ordering::Relaxed)
    }
}
