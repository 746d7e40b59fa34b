//! The clock of a core's engine loop and its busy-time accounting: how much of the core's
//! time went to turns that did work, and how much to idle polling and sleeps.
//!
//! It rides on the one clock read each turn makes anyway (no read of its own): the time from
//! the start of one turn to the start of the next is charged to busy time when the first
//! turn did work (frames in or out, completions), else to idle time. A busy turn's interval
//! includes what the application did with its completions before it asked for the next
//! turn: that is work the core did for the traffic. An idle policy's sleeps fall in the
//! interval of an empty turn, so they count as idle.

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::idle::LoopStats;

/// How often the TSC clock takes a fresh pair of readings (TSC, operating system), so that
/// a calibration error never adds up: at most a few microseconds between anchors.
const ANCHOR_EVERY: Duration = Duration::from_millis(100);

/// Nanoseconds per TSC tick, measured once per process against the operating system's clock
/// over 10 ms; `None` where the TSC is not usable or `MEGATCP_CLOCK=os` says not to.
fn ns_per_tick() -> Option<f64> {
    static CAL: OnceLock<Option<f64>> = OnceLock::new();
    *CAL.get_or_init(|| {
        if std::env::var("MEGATCP_CLOCK").is_ok_and(|v| v == "os") || !megatcp_nic::tsc::usable() {
            return None;
        }
        let (t0, c0) = pair();
        std::thread::sleep(Duration::from_millis(10));
        let (t1, c1) = pair();
        let ticks = c1.checked_sub(c0).filter(|&t| t > 0)?;
        Some(t1.duration_since(t0).as_nanos() as f64 / ticks as f64)
    })
}

/// An operating-system reading and the TSC at the same moment: the reading bracketed by two
/// TSC reads, the tightest of a few tries (a thread preempted between the reads would
/// otherwise skew the calibration).
fn pair() -> (Instant, u64) {
    let mut best = (Instant::now(), 0, u64::MAX);
    for _ in 0..8 {
        let a = megatcp_nic::tsc::read();
        let t = Instant::now();
        let b = megatcp_nic::tsc::read();
        let width = b.wrapping_sub(a);
        if width < best.2 {
            best = (t, a + width / 2, width);
        }
    }
    (best.0, best.1)
}

/// The TSC as a clock: time since an anchor (a TSC reading and an operating-system reading
/// taken together), at the calibrated rate.
#[derive(Debug, Clone, Copy)]
struct Tsc {
    ns_per_tick: f64,
    base: Instant,
    base_ticks: u64,
    next_anchor: Instant,
}

impl Tsc {
    fn anchored(ns_per_tick: f64) -> Self {
        let (base, base_ticks) = (Instant::now(), megatcp_nic::tsc::read());
        // One pair, not the tightest of several: an anchor is taken every 100 ms on the
        // data path, and a preemption between the two reads only shifts this anchor's
        // 100 ms (never backwards: the turn clock keeps the later of two readings).
        Self {
            ns_per_tick,
            base,
            base_ticks,
            next_anchor: base + ANCHOR_EVERY,
        }
    }

    fn now(&mut self) -> Instant {
        let ticks = megatcp_nic::tsc::read().wrapping_sub(self.base_ticks);
        let now = self.base + Duration::from_nanos((ticks as f64 * self.ns_per_tick) as u64);
        if now >= self.next_anchor {
            *self = Tsc::anchored(self.ns_per_tick);
            return self.base;
        }
        now
    }
}

/// The clock of a core's loop: when the current turn started and whether the previous one
/// did work. It reads the TSC where it is usable (calibrated, re-anchored every 100 ms; no
/// call into the vDSO), else the operating system's clock; never backwards.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnClock {
    at: Instant,
    busy: bool,
    tsc: Option<Tsc>,
}

impl TurnClock {
    /// A clock whose first turn starts at `start` (the time before it counts as idle).
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            at: start,
            busy: false,
            tsc: ns_per_tick().map(Tsc::anchored),
        }
    }

    /// Whether it reads the TSC.
    #[cfg(test)]
    pub(crate) fn is_tsc(&self) -> bool {
        self.tsc.is_some()
    }

    /// When the current turn started: its one clock reading.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// Starts a turn now (one clock reading; see [`TurnClock::start_at`]).
    pub(crate) fn start(&mut self, stats: &mut LoopStats) {
        let now = match &mut self.tsc {
            Some(t) => t.now(),
            None => Instant::now(),
        };
        self.start_at(now.max(self.at), stats);
    }

    /// Starts a turn at `now`: the time since the previous turn started goes to that turn's
    /// side (busy or idle) in `stats`.
    pub(crate) fn start_at(&mut self, now: Instant, stats: &mut LoopStats) {
        let spent = now.saturating_duration_since(self.at).as_nanos();
        let spent = u64::try_from(spent).unwrap_or(u64::MAX);
        if self.busy {
            stats.busy_ns = stats.busy_ns.saturating_add(spent);
        } else {
            stats.idle_ns = stats.idle_ns.saturating_add(spent);
        }
        self.at = now;
    }

    /// Ends the current turn, which did work or not.
    pub(crate) fn end(&mut self, busy: bool, stats: &mut LoopStats) {
        self.busy = busy;
        stats.iterations += 1;
        stats.busy_iterations += u64::from(busy);
    }
}

/// The busy time of `stats` for a report: `busy 1.234 s of 2.000 s (61.7 %)`.
pub(crate) fn describe(stats: &LoopStats) -> String {
    let secs = |ns: u64| ns as f64 / 1e9;
    match stats.busy_fraction() {
        Some(f) => format!(
            "busy {:.3} s of {:.3} s ({:.1} %), busy turns {} of {}",
            secs(stats.busy_ns),
            secs(stats.busy_ns + stats.idle_ns),
            f * 100.0,
            stats.busy_iterations,
            stats.iterations
        ),
        None => "busy time not counted".into(),
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_turn_that_did_work_charges_its_interval_to_busy_time() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut stats = LoopStats::default();
        let mut clock = TurnClock::new(t0);
        // Turn 1 at 1 ms (the first millisecond was idle): it works.
        clock.start_at(ms(1), &mut stats);
        clock.end(true, &mut stats);
        // Turn 2 at 4 ms: 3 ms busy; it finds nothing.
        clock.start_at(ms(4), &mut stats);
        clock.end(false, &mut stats);
        // Turn 3 at 10 ms: 6 ms idle (a sleep included).
        clock.start_at(ms(10), &mut stats);
        clock.end(true, &mut stats);
        assert_eq!(clock.at(), ms(10));
        assert_eq!(stats.busy_ns, 3_000_000);
        assert_eq!(stats.idle_ns, 7_000_000);
        assert_eq!((stats.iterations, stats.busy_iterations), (3, 2));
        assert_eq!(stats.busy_fraction(), Some(0.3));
        assert_eq!(
            describe(&stats),
            "busy 0.003 s of 0.010 s (30.0 %), busy turns 2 of 3"
        );
        // A clock that goes backwards charges nothing.
        clock.start_at(ms(5), &mut stats);
        assert_eq!(stats.busy_ns + stats.idle_ns, 10_000_000);
    }

    #[test]
    fn the_turn_clock_follows_the_operating_system_clock() {
        let start = Instant::now();
        let mut stats = LoopStats::default();
        let mut clock = TurnClock::new(start);
        let mut last = clock.at();
        for _ in 0..3 {
            std::thread::sleep(Duration::from_millis(60));
            let before = Instant::now();
            clock.start(&mut stats);
            let after = Instant::now();
            assert!(clock.at() >= last, "never backwards");
            last = clock.at();
            // Within 1 ms of the operating system's clock (the TSC's calibration error
            // over 100 ms is microseconds).
            let slack = Duration::from_millis(1);
            assert!(
                clock.at() + slack >= before && clock.at() <= after + slack,
                "tsc {}: {:?} not within {before:?}..{after:?}",
                clock.is_tsc(),
                clock.at()
            );
        }
        assert!(stats.idle_ns >= 180_000_000, "{stats:?}");
    }

    #[test]
    fn nothing_counted_says_so() {
        assert_eq!(describe(&LoopStats::default()), "busy time not counted");
    }
}
