//! [`Access`]: one key's item, locked, for the meta commands' finer steps.

use super::*;

/// One key's item, locked, for the meta commands' steps ([`Store::access`]).
pub struct Access<'s> {
    pub(super) store: &'s Store,
    pub(super) stripe: &'s mut Stripe,
    pub(super) own: usize,
    pub(super) hash: u64,
    pub(super) key: &'s [u8],
    pub(super) idx: Option<u32>,
    pub(super) now: RelTime,
}

impl std::fmt::Debug for Access<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access").field("idx", &self.idx).finish()
    }
}

impl Access<'_> {
    fn entry(&self) -> Option<&Entry> {
        self.idx.and_then(|i| self.stripe.entry(i))
    }

    fn entry_mut(&mut self) -> Option<&mut Entry> {
        self.idx.and_then(|i| self.stripe.entry_mut(i))
    }

    /// The item, if there is one.
    pub fn item(&self) -> Option<Item<'_>> {
        self.entry().map(Item::of)
    }

    /// memcached's `do_item_bump` for a read: the first read marks the item fetched, a
    /// later one active (it will be spared once from eviction); the access time and LRU
    /// position are refreshed once a minute at most (no list relink per read).
    pub fn bump(&mut self) {
        let now = self.now;
        let relink = self.entry_mut().is_some_and(|e| mark_read(e, now));
        if let (true, Some(i)) = (relink, self.idx) {
            self.stripe.bump(i);
        }
    }

    /// Counts a read hit on the item's class.
    pub fn count(&mut self, hit: Hit) {
        if let Some(c) = self.entry().map(|e| e.layout.class) {
            let s = self.stripe.class_mut(c);
            match hit {
                Hit::Get => s.get_hits += 1,
                Hit::Touch => s.touch_hits += 1,
            }
        }
    }

    /// Sets the expiry time.
    pub fn set_exptime(&mut self, exptime: RelTime) {
        if let Some(e) = self.entry_mut() {
            e.exptime = exptime;
        }
    }

    /// Marks that a client was told to recache the item (`W` sent).
    pub fn set_token_sent(&mut self) {
        if let Some(e) = self.entry_mut() {
            e.bits |= bits::TOKEN_SENT;
        }
    }

    /// `md I`: marks the item stale (a new CAS, the recache token free again, optionally a
    /// new expiry).
    pub fn invalidate(&mut self, exptime: Option<RelTime>) {
        let cas = self.store.next_cas();
        if let Some(e) = self.entry_mut() {
            if let Some(t) = exptime {
                e.exptime = t;
            }
            e.bits = (e.bits | bits::STALE) & !bits::TOKEN_SENT;
            e.cas = cas;
        }
    }

    /// Deletes the item (a delete hit).
    pub fn remove(&mut self) {
        if let Some(i) = self.idx.take() {
            if let Some(e) = self.store.remove(self.stripe, i) {
                self.stripe.class_mut(e.layout.class).delete_hits += 1;
            }
        }
    }

    /// Creates the missing item with `value`, flags 0 and `exptime` (meta `N`
    /// autovivification); false (and no item) when memory cannot be found or the item
    /// exists already.
    pub fn create(&mut self, value: &[u8], exptime: RelTime) -> bool {
        if self.idx.is_some() {
            return false;
        }
        let store = self.store;
        let Some(layout) = store.slabs.classes().layout(self.key.len(), 0, value.len()) else {
            return false;
        };
        let Some(got) = store.alloc(self.stripe, self.own, layout, self.now) else {
            return false;
        };
        let cas = store.next_cas();
        self.idx = Some(self.stripe.link(Entry::new(
            self.key,
            value.to_vec(),
            self.hash,
            0,
            exptime,
            self.now,
            cas,
            got,
            0,
        )));
        true
    }

    /// incr/decr (see [`Store::delta`]) of the item.
    pub fn delta(&mut self, incr: bool, delta: u64, cas: u64) -> DeltaOutcome {
        let store = self.store;
        let now = self.now;
        let (Some(i), Some(e)) = (self.idx, self.entry()) else {
            return DeltaOutcome::NotFound;
        };
        // memcached cannot count on an empty or chunked value.
        if e.value.is_empty() || e.layout.chunked() {
            return DeltaOutcome::NonNumeric;
        }
        if cas != 0 && e.cas != cas {
            return DeltaOutcome::Exists;
        }
        let Some(v) = parse_counter(&e.value) else {
            return DeltaOutcome::NonNumeric;
        };
        let (class, flags, old_len, old_layout) =
            (e.layout.class, e.flags, e.value.len(), e.layout);
        let c = self.stripe.class_mut(class);
        if incr {
            c.incr_hits += 1;
        } else {
            c.decr_hits += 1;
        }
        let v = if incr {
            v.wrapping_add(delta)
        } else {
            v.saturating_sub(delta)
        };
        let digits = v.to_string();
        if digits.len() > old_len {
            // A longer value is a new item (memcached's item_replace): it may need a chunk
            // of another class.
            let Some(l) = store
                .slabs
                .classes()
                .layout(self.key.len(), flags, digits.len())
            else {
                return DeltaOutcome::NoMemory;
            };
            if l != old_layout {
                let Some(got) = store.alloc(self.stripe, self.own, l, now) else {
                    return DeltaOutcome::NoMemory;
                };
                let Some(mut old) = store.remove(self.stripe, i) else {
                    store.slabs.give_layout(&got);
                    return DeltaOutcome::NotFound;
                };
                old.value = digits.into_bytes();
                let new_cas = store.next_cas();
                let e = Entry::new(
                    self.key,
                    old.value,
                    self.hash,
                    flags,
                    old.exptime,
                    now,
                    new_cas,
                    got,
                    old.bits & (bits::FETCHED | bits::KEY_BINARY | bits::STALE | bits::TOKEN_SENT),
                );
                self.idx = Some(self.stripe.link(e));
                return DeltaOutcome::Value(v, new_cas);
            }
        }
        let new_cas = store.next_cas();
        let old_total;
        let new_total;
        {
            let Some(e) = self.stripe.entry_mut(i) else {
                return DeltaOutcome::NotFound;
            };
            old_total = e.ntotal() as u64;
            if digits.len() <= e.value.len() {
                let (head, tail) = e.value.split_at_mut(digits.len());
                head.copy_from_slice(digits.as_bytes());
                tail.fill(b' ');
            } else {
                e.value = digits.into_bytes();
                e.time = now;
            }
            e.cas = new_cas;
            new_total = e.ntotal() as u64;
        }
        let c = self.stripe.class_mut(class);
        c.mem_requested = c.mem_requested + new_total - old_total;
        DeltaOutcome::Value(v, new_cas)
    }
}
