//! Busy-time accounting of a core's engine loop: how much of the core's time went to turns
//! that did work, and how much to idle polling and sleeps.
//!
//! It rides on the one clock read each turn makes anyway (no read of its own): the time from
//! the start of one turn to the start of the next is charged to busy time when the first
//! turn did work (frames in or out, completions), else to idle time. A busy turn's interval
//! includes what the application did with its completions before it asked for the next
//! turn: that is work the core did for the traffic. An idle policy's sleeps fall in the
//! interval of an empty turn, so they count as idle.

use std::time::Instant;

use crate::bypass::LoopStats;

/// The clock of a core's loop: when the current turn started and whether the previous one
/// did work.
#[derive(Debug, Clone, Copy)]
pub(crate) struct TurnClock {
    at: Instant,
    busy: bool,
}

impl TurnClock {
    /// A clock whose first turn starts at `start` (the time before it counts as idle).
    pub(crate) fn new(start: Instant) -> Self {
        Self {
            at: start,
            busy: false,
        }
    }

    /// When the current turn started: its one clock reading.
    pub(crate) fn at(&self) -> Instant {
        self.at
    }

    /// Starts a turn at `now`: the time since the previous turn started goes to that turn's
    /// side (busy or idle) in `stats`.
    pub(crate) fn start(&mut self, now: Instant, stats: &mut LoopStats) {
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
        clock.start(ms(1), &mut stats);
        clock.end(true, &mut stats);
        // Turn 2 at 4 ms: 3 ms busy; it finds nothing.
        clock.start(ms(4), &mut stats);
        clock.end(false, &mut stats);
        // Turn 3 at 10 ms: 6 ms idle (a sleep included).
        clock.start(ms(10), &mut stats);
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
        clock.start(ms(5), &mut stats);
        assert_eq!(stats.busy_ns + stats.idle_ns, 10_000_000);
    }

    #[test]
    fn nothing_counted_says_so() {
        assert_eq!(describe(&LoopStats::default()), "busy time not counted");
    }
}
