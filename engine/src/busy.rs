//! The clock of a core's engine loop and its busy-time accounting: how much of the core's
//! time went to turns that did work, and how much to idle polling and sleeps.
//!
//! It rides on the clock reads the loop makes anyway (no read of its own): the time from
//! one reading to the next is charged to busy time when the turn of the first reading did
//! work (frames in or out, completions), else to idle time. A busy turn's interval includes
//! what the application did with its completions before it asked for the next turn: that
//! is work the core did for the traffic. An idle policy's sleeps fall in the interval of an
//! empty turn, so they count as idle.
//!
//! A turn reads the clock at most once, and a run of empty turns (a spinning core with
//! nothing to do) not at all: a turn after an empty one keeps the previous reading unless
//! the stack has output waiting, and reads only when its first frame arrives
//! ([`TurnClock::read_now`]), or after [`UNREAD_TURNS`] empty turns (so that timers fire and
//! the statistics are published on time: a spinning turn takes well under a microsecond).

use std::sync::OnceLock;
use std::time::{Duration, Instant};

use crate::idle::LoopStats;

/// Empty turns in a row that may go without a clock reading; the next one reads.
pub(crate) const UNREAD_TURNS: u32 = 32;

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
    /// The last reading.
    at: Instant,
    /// The turn of the last reading (or a later one) did work.
    busy: bool,
    tsc: Option<Tsc>,
    /// Turns started since the last reading: 0 while the current turn holds a reading of
    /// its own.
    unread: u32,
}

impl TurnClock {
    /// A clock whose first turn starts at `start` (the time before it counts as idle).
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            at: start,
            busy: false,
            tsc: ns_per_tick().map(Tsc::anchored),
            unread: 0,
        }
    }

    /// Whether it reads the TSC.
    #[cfg(test)]
    pub(crate) fn is_tsc(&self) -> bool {
        self.tsc.is_some()
    }

    /// The last clock reading: when the current turn started, or the last turn that read.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// Starts a turn. It reads the clock when the previous turn did work (that turn's
    /// interval ends here), when `due` (the stack has output waiting, which wants the time),
    /// or after [`UNREAD_TURNS`] turns without a reading; else it keeps the last reading.
    /// Returns whether it read (whether time may have moved for the stack).
    pub(crate) fn start(&mut self, due: bool, stats: &mut LoopStats) -> bool {
        if self.busy || due || self.unread >= UNREAD_TURNS {
            self.read(stats);
            true
        } else {
            self.unread += 1;
            false
        }
    }

    /// The time now, for work that has just arrived: the current turn's reading, or one
    /// taken now if the turn has none yet (the time since the last reading was idle).
    pub(crate) fn read_now(&mut self, stats: &mut LoopStats) -> Instant {
        if self.unread > 0 {
            self.read(stats);
        }
        self.at
    }

    /// The loop slept: the next turn reads the clock.
    pub(crate) fn woke(&mut self) {
        self.unread = UNREAD_TURNS;
    }

    /// One clock reading, never behind the last (see [`TurnClock::start_at`]).
    fn read(&mut self, stats: &mut LoopStats) {
        let now = match &mut self.tsc {
            Some(t) => t.now(),
            None => Instant::now(),
        };
        self.start_at(now.max(self.at), stats);
        self.unread = 0;
    }

    /// Takes `now` as the reading: the time since the last one goes to the side (busy or
    /// idle) of the turns in between in `stats`.
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
            assert!(clock.start(true, &mut stats), "output due: it reads");
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
    fn empty_turns_go_without_a_reading_and_work_reads_at_once() {
        let mut stats = LoopStats::default();
        let mut clock = TurnClock::new(Instant::now());
        assert!(clock.start(true, &mut stats));
        clock.end(false, &mut stats);
        let first = clock.at();
        // A run of empty turns keeps the reading, up to UNREAD_TURNS of them.
        for _ in 0..UNREAD_TURNS {
            std::thread::sleep(Duration::from_micros(50));
            assert!(!clock.start(false, &mut stats));
            clock.end(false, &mut stats);
            assert_eq!(clock.at(), first);
        }
        assert!(clock.start(false, &mut stats), "the next one reads");
        assert!(clock.at() > first);
        clock.end(false, &mut stats);
        // Frames arrive in a turn that has not read: the reading is taken then, once, and the
        // time before it was idle.
        std::thread::sleep(Duration::from_millis(2));
        assert!(!clock.start(false, &mut stats));
        let arrived = clock.read_now(&mut stats);
        assert!(arrived >= first + Duration::from_millis(2));
        assert_eq!(clock.read_now(&mut stats), arrived, "one reading per turn");
        clock.end(true, &mut stats);
        assert_eq!(stats.busy_ns, 0);
        // The turn after a busy one reads: its interval (the application's time included)
        // is busy.
        std::thread::sleep(Duration::from_millis(3));
        assert!(clock.start(false, &mut stats));
        assert!(stats.busy_ns >= 3_000_000, "{stats:?}");
        clock.end(false, &mut stats);
        // After a sleep the next turn reads.
        assert!(!clock.start(false, &mut stats));
        clock.end(false, &mut stats);
        clock.woke();
        assert!(clock.start(false, &mut stats));
    }

    #[test]
    fn nothing_counted_says_so() {
        assert_eq!(describe(&LoopStats::default()), "busy time not counted");
    }
}
