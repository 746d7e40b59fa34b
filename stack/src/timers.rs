//! Deadlines of connections: a timing wheel of 1 ms ticks (2.048 s ahead) plus a heap for
//! deadlines further out (TIME-WAIT, keep-alive, user timeouts).
//!
//! Scheduling and expiring are O(1) (the heap only holds far deadlines). A deadline fires at
//! the first tick boundary at or after it: never early, at most one tick late. Entries are
//! not removed when a connection reschedules or goes away: the stack keeps each
//! connection's *current* deadline and ignores entries that do not match it. An idle
//! connection with no deadline costs nothing per poll; stale entries are dropped when their
//! tick passes, and [`Timers::compact`] bounds them by the number of connections.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, VecDeque};

use crate::{ConnId, Instant};

/// Tick length, microseconds.
const TICK_US: i64 = 1000;
/// Slots in the wheel (power of two).
const SLOTS: usize = 2048;

type Entry = (i64, u32, u32);

#[derive(Debug)]
pub(crate) struct Timers {
    slots: Vec<Vec<Entry>>,
    /// First tick not yet expired.
    cursor: i64,
    in_wheel: usize,
    far: BinaryHeap<Reverse<Entry>>,
    /// Expired entries not yet handed out.
    ready: VecDeque<Entry>,
}

impl Default for Timers {
    fn default() -> Self {
        Self {
            slots: (0..SLOTS).map(|_| Vec::new()).collect(),
            cursor: 0,
            in_wheel: 0,
            far: BinaryHeap::new(),
            ready: VecDeque::new(),
        }
    }
}

fn tick_of(micros: i64) -> i64 {
    // Round up: an entry fires at the first tick boundary at or after its deadline.
    micros.div_euclid(TICK_US) + i64::from(micros.rem_euclid(TICK_US) != 0)
}

impl Timers {
    pub(crate) fn schedule(&mut self, at: Instant, conn: ConnId) {
        let e = (at.total_micros(), conn.index, conn.generation);
        let tick = tick_of(e.0);
        if tick < self.cursor {
            // Its tick has already been expired: due at once.
            self.ready.push_back(e);
        } else if tick - self.cursor < SLOTS as i64 {
            self.slots[(tick as usize) % SLOTS].push(e);
            self.in_wheel += 1;
        } else {
            self.far.push(Reverse(e));
        }
    }

    /// Earliest time an entry may fire (possibly a stale entry: a harmless early wake-up).
    pub(crate) fn next(&self) -> Option<Instant> {
        if let Some(e) = self.ready.front() {
            return Some(Instant::from_micros(e.0));
        }
        if self.in_wheel > 0 {
            for k in 0..SLOTS as i64 {
                let tick = self.cursor + k;
                if !self.slots[(tick as usize) % SLOTS].is_empty() {
                    return Some(Instant::from_micros(tick * TICK_US));
                }
            }
        }
        self.far
            .peek()
            .map(|Reverse(e)| Instant::from_micros(tick_of(e.0) * TICK_US))
    }

    /// Moves every entry whose tick has passed at `now` to `ready`.
    fn advance(&mut self, now: Instant) {
        let now_tick = now.total_micros().div_euclid(TICK_US);
        if now_tick < self.cursor {
            return;
        }
        let span = (now_tick - self.cursor + 1).min(SLOTS as i64);
        for k in 0..span {
            let slot = &mut self.slots[((self.cursor + k) as usize) % SLOTS];
            self.in_wheel -= slot.len();
            self.ready.extend(slot.drain(..));
            if slot.capacity() > 64 {
                slot.shrink_to(8);
            }
        }
        self.cursor = now_tick + 1;
        while let Some(Reverse(e)) = self.far.peek().copied() {
            let tick = tick_of(e.0);
            if tick <= now_tick {
                self.ready.push_back(e);
            } else if tick - self.cursor < SLOTS as i64 {
                self.slots[(tick as usize) % SLOTS].push(e);
                self.in_wheel += 1;
            } else {
                break;
            }
            self.far.pop();
        }
    }

    /// Pops one entry whose tick has passed at `now`.
    pub(crate) fn pop_due(&mut self, now: Instant) -> Option<(Instant, ConnId)> {
        if self.ready.is_empty() {
            self.advance(now);
        }
        let (t, index, generation) = self.ready.pop_front()?;
        if self.ready.is_empty() && self.ready.capacity() > 4096 {
            self.ready.shrink_to(1024);
        }
        Some((Instant::from_micros(t), ConnId { index, generation }))
    }

    /// Drops entries `live` rejects (connections gone or rescheduled) once stale entries
    /// outnumber live connections (and 64); keeps memory proportional to the connections.
    pub(crate) fn compact(&mut self, flows: usize, live: impl Fn(Instant, ConnId) -> bool) {
        let keep = |e: &Entry| {
            live(
                Instant::from_micros(e.0),
                ConnId {
                    index: e.1,
                    generation: e.2,
                },
            )
        };
        // A few stale entries cost nothing (they are skipped when they fire); visiting the
        // 2,048 slots on every release of the last connection would.
        if self.len() <= 2 * flows + 64 {
            return;
        }
        if flows == 0 {
            self.slots.iter_mut().for_each(Vec::clear);
            self.far.clear();
            self.ready.clear();
            self.in_wheel = 0;
        } else {
            self.in_wheel = 0;
            for s in &mut self.slots {
                s.retain(keep);
                self.in_wheel += s.len();
            }
            self.far.retain(|Reverse(e)| keep(e));
            self.ready.retain(keep);
        }
        for s in &mut self.slots {
            if s.capacity() > 4 * s.len() + 16 {
                s.shrink_to(s.len());
            }
        }
        self.far.shrink_to(2 * self.far.len() + 16);
        self.ready.shrink_to(2 * self.ready.len() + 16);
    }

    pub(crate) fn len(&self) -> usize {
        self.in_wheel + self.far.len() + self.ready.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn c(i: u32) -> ConnId {
        ConnId {
            index: i,
            generation: 1,
        }
    }

    fn due(t: &mut Timers, now: Instant) -> Vec<u32> {
        let mut v = Vec::new();
        while let Some((_, id)) = t.pop_due(now) {
            v.push(id.index);
        }
        v
    }

    #[test]
    fn fires_in_tick_order_never_early() {
        let mut t = Timers::default();
        t.schedule(Instant::from_millis(30), c(3));
        t.schedule(Instant::from_micros(10_500), c(1));
        t.schedule(Instant::from_millis(20), c(2));
        assert_eq!(t.next(), Some(Instant::from_millis(11)));
        assert!(due(&mut t, Instant::from_millis(5)).is_empty());
        assert!(
            due(&mut t, Instant::from_micros(10_999)).is_empty(),
            "never early"
        );
        assert_eq!(due(&mut t, Instant::from_millis(25)), vec![1, 2]);
        assert_eq!(t.len(), 1);
        assert_eq!(due(&mut t, Instant::from_millis(30)), vec![3]);
        assert_eq!(t.len(), 0);
        assert_eq!(t.next(), None);
    }

    #[test]
    fn far_deadlines_and_big_jumps() {
        let mut t = Timers::default();
        t.schedule(Instant::from_secs(10), c(7));
        t.schedule(Instant::from_secs(3600), c(8));
        t.schedule(Instant::from_millis(1), c(6));
        assert_eq!(t.next(), Some(Instant::from_millis(1)));
        assert_eq!(due(&mut t, Instant::from_millis(2)), vec![6]);
        assert_eq!(t.next(), Some(Instant::from_secs(10)));
        assert!(due(&mut t, Instant::from_secs(9)).is_empty());
        assert_eq!(due(&mut t, Instant::from_secs(11)), vec![7]);
        // A jump far beyond the wheel's horizon.
        assert_eq!(due(&mut t, Instant::from_secs(7200)), vec![8]);
        // Past deadlines scheduled late fire at once.
        t.schedule(Instant::from_secs(1), c(9));
        assert_eq!(due(&mut t, Instant::from_secs(7200)), vec![9]);
    }

    #[test]
    fn compaction_drops_stale_entries() {
        let mut t = Timers::default();
        for i in 0..1000 {
            t.schedule(Instant::from_millis(100 + i), c(i as u32));
        }
        t.compact(10, |_, id| id.index < 10);
        assert_eq!(t.len(), 10);
        // A few stale entries stay (they are skipped when they fire) ...
        t.compact(0, |_, _| true);
        assert_eq!(t.len(), 10);
        // ... many go, and with no connection left, all of them.
        for i in 0..100 {
            t.schedule(Instant::from_millis(100 + i), c(i as u32));
        }
        t.compact(0, |_, _| true);
        assert_eq!(t.len(), 0);
    }
}
