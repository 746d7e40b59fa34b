//! TIME-WAIT as a compact record.
//!
//! When a connection reaches TIME-WAIT its smoltcp socket and buffers are freed and this
//! small record takes its place (36 bytes in a ring, plus an index entry), handled by the
//! stack itself: it re-acknowledges a retransmitted FIN, ignores RSTs (RFC 1337) except one at
//! exactly the expected sequence number (a restarted client answering the record's ACK to its
//! SYN; Linux's default), accepts a new SYN for the same 4-tuple when its timestamp or
//! sequence number shows it is new (RFC 6191), and lets an active open reuse the port when timestamps make that safe (as
//! Linux's `tcp_tw_reuse` does). Every record lives exactly the configured TIME-WAIT
//! duration, so records expire in the order they were made: a ring (oldest first) plus a
//! hash index from 4-tuple to position is all it takes. A record removed early (a reused
//! 4-tuple) leaves a tombstone in the ring until its turn comes.

use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::Instant;
use crate::flow::FourTuple;
use crate::xlate::seq_lt;

/// What the stack remembers of a connection in TIME-WAIT (wire values).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TwRecord {
    /// Our next sequence number (everything we sent, FIN included, was acknowledged).
    pub(crate) snd_nxt: u32,
    /// The peer's next sequence number (its FIN included).
    pub(crate) rcv_nxt: u32,
    /// The peer's last timestamp (valid when `ts_on`).
    pub(crate) ts_recent: u32,
    /// This connection's timestamp offset.
    pub(crate) ts_off: u32,
    /// The window field we last sent.
    pub(crate) win: u16,
    /// Timestamps were in use.
    pub(crate) ts_on: bool,
    /// Index of the local address (interface) it lived on.
    pub(crate) iface: u8,
    /// When the record was made, milliseconds of the stack clock (mod 2^32).
    pub(crate) made_ms: u32,
}

struct Slot {
    tuple: FourTuple,
    record: TwRecord,
    live: bool,
}

/// The records of one stack.
#[derive(Default)]
pub(crate) struct TimeWaits {
    ring: VecDeque<Slot>,
    /// Position in `ring` + `base` for each live record.
    index: HashMap<FourTuple, u32>,
    /// Absolute position of `ring[0]`.
    base: u32,
}

fn ms(t: Instant) -> u32 {
    t.total_millis() as u32
}

impl TimeWaits {
    /// Live records.
    pub(crate) fn len(&self) -> usize {
        self.index.len()
    }

    /// Adds a record (replacing one for the same 4-tuple).
    pub(crate) fn insert(&mut self, tuple: FourTuple, record: TwRecord) {
        self.remove(&tuple);
        let pos = self.base.wrapping_add(self.ring.len() as u32);
        self.ring.push_back(Slot {
            tuple,
            record,
            live: true,
        });
        self.index.insert(tuple, pos);
    }

    pub(crate) fn get(&self, tuple: &FourTuple) -> Option<&TwRecord> {
        let pos = self.index.get(tuple)?.wrapping_sub(self.base) as usize;
        self.ring.get(pos).map(|s| &s.record)
    }

    pub(crate) fn get_mut(&mut self, tuple: &FourTuple) -> Option<&mut TwRecord> {
        let pos = self.index.get(tuple)?.wrapping_sub(self.base) as usize;
        self.ring.get_mut(pos).map(|s| &mut s.record)
    }

    pub(crate) fn contains(&self, tuple: &FourTuple) -> bool {
        self.index.contains_key(tuple)
    }

    /// Removes the record of `tuple` if `take` agrees (`Ok(Some)`); `Ok(None)` when there is
    /// none, `Err` when `take` refused it. One lookup.
    pub(crate) fn take_if(
        &mut self,
        tuple: &FourTuple,
        take: impl FnOnce(&TwRecord) -> bool,
    ) -> Result<Option<TwRecord>, ()> {
        let hashbrown::hash_map::Entry::Occupied(entry) = self.index.entry(*tuple) else {
            return Ok(None);
        };
        let pos = entry.get().wrapping_sub(self.base) as usize;
        let Some(slot) = self.ring.get_mut(pos) else {
            return Ok(None);
        };
        if !take(&slot.record) {
            return Err(());
        }
        slot.live = false;
        entry.remove();
        Ok(Some(slot.record))
    }

    /// Removes a record (its slot stays as a tombstone until it expires).
    pub(crate) fn remove(&mut self, tuple: &FourTuple) -> Option<TwRecord> {
        let pos = self.index.remove(tuple)?.wrapping_sub(self.base) as usize;
        let slot = self.ring.get_mut(pos)?;
        slot.live = false;
        Some(slot.record)
    }

    /// When the oldest record expires (at `now` or later), for a lifetime of `life_ms`.
    pub(crate) fn next_expiry(&self, now: Instant, life_ms: u32) -> Option<Instant> {
        let first = self.ring.front()?;
        let age = ms(now).wrapping_sub(first.record.made_ms) as i32;
        let left = (life_ms as i32).saturating_sub(age).max(0);
        Some(now + crate::Duration::from_millis(left as u64))
    }

    /// Drops records older than `life_ms` at `now`; returns how many live ones expired.
    pub(crate) fn expire(&mut self, now: Instant, life_ms: u32) -> usize {
        let now_ms = ms(now);
        let mut expired = 0;
        while let Some(first) = self.ring.front() {
            let age = now_ms.wrapping_sub(first.record.made_ms);
            if first.live && (age as i32) < life_ms as i32 {
                break;
            }
            if first.live {
                self.index.remove(&first.tuple);
                expired += 1;
            }
            self.ring.pop_front();
            self.base = self.base.wrapping_add(1);
        }
        if self.ring.is_empty() {
            if self.ring.capacity() > 1024 {
                self.ring.shrink_to(64);
            }
            if self.index.capacity() > 1024 {
                self.index.shrink_to(64);
            }
        } else if self.ring.capacity() > 1024 && self.ring.len() * 4 < self.ring.capacity() {
            self.ring.shrink_to(self.ring.len() * 2);
            let live = self.index.len();
            if self.index.capacity() > 1024 && live * 4 < self.index.capacity() {
                self.index.shrink_to(live * 2);
            }
        }
        expired
    }

    /// Heap bytes held, approximately.
    pub(crate) fn heap_bytes(&self) -> usize {
        self.ring.capacity() * size_of::<Slot>()
            + self.index.capacity() * (size_of::<(FourTuple, u32)>() + 1)
    }
}

/// What to do with a SYN for a 4-tuple in TIME-WAIT (RFC 6191).
pub(crate) fn syn_is_new(r: &TwRecord, seq: u32, tsval: Option<u32>) -> bool {
    match (r.ts_on, tsval) {
        // Timestamps on both: the SYN is new if its timestamp is newer.
        (true, Some(ts)) => seq_lt(r.ts_recent, ts),
        // Otherwise the sequence number decides (RFC 1122 4.2.2.13).
        _ => seq_lt(r.rcv_nxt, seq),
    }
}

/// Whether an active open may take over a 4-tuple held in TIME-WAIT at `now`: with
/// timestamps, the new connection's TSval (same per-tuple offset, later clock) is larger
/// than any the old one sent, so the peer's PAWS tells old segments from new; the ISN
/// starts beyond the old connection's sequence space.
pub(crate) fn reusable(r: &TwRecord, now: Instant) -> bool {
    r.ts_on && ms(now).wrapping_sub(r.made_ms) as i32 >= 1
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple::test(port, 80)
    }

    fn rec(made_ms: u32) -> TwRecord {
        TwRecord {
            snd_nxt: 1,
            rcv_nxt: 100,
            ts_recent: 5000,
            ts_off: 0,
            win: 0,
            ts_on: true,
            iface: 0,
            made_ms,
        }
    }

    #[test]
    fn records_expire_in_order_and_tombstones_pass() {
        let mut tw = TimeWaits::default();
        for p in 0..10u16 {
            tw.insert(tuple(p), rec(u32::from(p)));
        }
        assert_eq!(tw.len(), 10);
        assert!(tw.remove(&tuple(3)).is_some());
        assert!(tw.get(&tuple(3)).is_none());
        assert_eq!(tw.get(&tuple(4)).unwrap().made_ms, 4);
        assert_eq!(tw.expire(Instant::from_millis(1004), 1000), 4); // 0,1,2,4 (3 was removed)
        assert_eq!(tw.len(), 5);
        assert!(tw.get(&tuple(5)).is_some());
        // Re-inserting a tuple replaces its record.
        tw.insert(tuple(9), rec(2000));
        assert_eq!(tw.len(), 5);
        assert_eq!(tw.expire(Instant::from_millis(1009), 1000), 4);
        assert_eq!(tw.get(&tuple(9)).unwrap().made_ms, 2000);
        assert_eq!(tw.expire(Instant::from_millis(3000), 1000), 1);
        assert_eq!(tw.len(), 0);
    }

    #[test]
    fn rfc6191() {
        let r = rec(0);
        assert!(syn_is_new(&r, 0, Some(5001)));
        assert!(!syn_is_new(&r, 0, Some(5000)));
        let no_ts = TwRecord { ts_on: false, ..r };
        assert!(syn_is_new(&no_ts, 101, None));
        assert!(!syn_is_new(&no_ts, 100, None));
        // Timestamps on the record, none on the SYN: the sequence number decides.
        assert!(syn_is_new(&r, 101, None));
        assert!(!syn_is_new(&r, 99, None));
        assert!(!reusable(&r, Instant::from_millis(0)));
        assert!(reusable(&r, Instant::from_millis(1)));
        assert!(!reusable(&no_ts, Instant::from_millis(5)));
    }
}
