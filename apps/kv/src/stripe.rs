//! One stripe of the store: a hash table of items, one LRU list per slab class, and the
//! per-class counters memcached reports (`stats items`, `stats slabs`). No locking and no
//! memory accounting here: the store holds each stripe behind its own mutex and takes and
//! returns the items' chunks (see `store.rs`).
//!
//! Items live in a slot vector (a freed slot is reused); the hash table holds slot indices;
//! the LRU lists link slots by index. [`Stripe::link`] puts an item at the head of its
//! class's list and counts it; [`Stripe::unlink`] takes it out of table, list and counts
//! and hands it back.

use hashbrown::HashTable;

use crate::clock::RelTime;
use crate::slabs::{Layout, item_total};

const NIL: u32 = u32::MAX;

/// Item flag bits: the parts of memcached's `it_flags` the protocols show.
pub mod bits {
    /// Read at least once.
    pub const FETCHED: u8 = 1;
    /// Read again since it was last spared from eviction (memcached's `ITEM_ACTIVE`): the
    /// next eviction pass moves it to the head of its list instead of evicting it.
    pub const ACTIVE: u8 = 2;
    /// Marked stale by a meta invalidation (`md I`, `ms I`).
    pub const STALE: u8 = 4;
    /// A client was told it won the right to recache (`W`); others see `Z`.
    pub const TOKEN_SENT: u8 = 8;
    /// The key was sent base64-encoded (meta `b` flag); shown encoded again.
    pub const KEY_BINARY: u8 = 16;
}

/// One item.
#[derive(Debug)]
pub struct Entry {
    /// The key.
    pub key: Box<[u8]>,
    /// The value (without memcached's trailing CRLF).
    pub value: Vec<u8>,
    /// Hash of the key.
    pub hash: u64,
    /// Client flags.
    pub flags: u32,
    /// Expiry (0: never).
    pub exptime: RelTime,
    /// Last access time as memcached keeps it (set on store, refreshed by a second read).
    pub time: RelTime,
    /// CAS unique value.
    pub cas: u64,
    /// Where its memory is counted.
    pub layout: Layout,
    /// [`bits`].
    pub bits: u8,
    prev: u32,
    next: u32,
}

impl Entry {
    /// A new item, not yet linked.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        key: &[u8],
        value: Vec<u8>,
        hash: u64,
        flags: u32,
        exptime: RelTime,
        now: RelTime,
        cas: u64,
        layout: Layout,
        bits: u8,
    ) -> Self {
        Self {
            key: key.into(),
            value,
            hash,
            flags,
            exptime,
            time: now,
            cas,
            layout,
            bits,
            prev: NIL,
            next: NIL,
        }
    }

    /// memcached's `ITEM_ntotal`.
    pub fn ntotal(&self) -> usize {
        item_total(self.key.len(), self.flags, self.value.len())
    }

    /// Whether the item's expiry time has come.
    pub fn expired(&self, now: RelTime) -> bool {
        self.exptime != 0 && self.exptime <= now
    }

    /// Whether flag `b` is set.
    pub fn has(&self, b: u8) -> bool {
        self.bits & b != 0
    }
}

/// The counters of one slab class (summed over stripes for `stats`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ClassStats {
    /// Items in the class.
    pub number: u64,
    /// Their sizes (`ITEM_ntotal`) summed.
    pub mem_requested: u64,
    /// Live items evicted.
    pub evicted: u64,
    /// Evicted items that had an expiry time.
    pub evicted_nonzero: u64,
    /// Seconds since the last access of the last evicted item.
    pub evicted_time: u64,
    /// Stores refused for lack of memory.
    pub outofmemory: u64,
    /// Expired or flushed items whose memory was reused.
    pub reclaimed: u64,
    /// Reclaimed items that had never been read.
    pub expired_unfetched: u64,
    /// Evicted items that had never been read.
    pub evicted_unfetched: u64,
    /// Evictions and reclaims done to make room for a store.
    pub direct_reclaims: u64,
    /// Reads that found an item.
    pub get_hits: u64,
    /// Stores of an item of the class.
    pub cmd_set: u64,
    /// Deletes that found an item.
    pub delete_hits: u64,
    /// incr that found an item.
    pub incr_hits: u64,
    /// decr that found an item.
    pub decr_hits: u64,
    /// CAS stores that matched.
    pub cas_hits: u64,
    /// CAS stores that did not match.
    pub cas_badval: u64,
    /// Touches that found an item.
    pub touch_hits: u64,
    /// Seconds since the last access of the oldest item (the LRU tail).
    pub age: u64,
}

impl ClassStats {
    /// Adds `o` (the age and eviction time: the larger).
    pub fn add(&mut self, o: &ClassStats) {
        self.number += o.number;
        self.mem_requested += o.mem_requested;
        self.evicted += o.evicted;
        self.evicted_nonzero += o.evicted_nonzero;
        self.evicted_time = self.evicted_time.max(o.evicted_time);
        self.outofmemory += o.outofmemory;
        self.reclaimed += o.reclaimed;
        self.expired_unfetched += o.expired_unfetched;
        self.evicted_unfetched += o.evicted_unfetched;
        self.direct_reclaims += o.direct_reclaims;
        self.get_hits += o.get_hits;
        self.cmd_set += o.cmd_set;
        self.delete_hits += o.delete_hits;
        self.incr_hits += o.incr_hits;
        self.decr_hits += o.decr_hits;
        self.cas_hits += o.cas_hits;
        self.cas_badval += o.cas_badval;
        self.touch_hits += o.touch_hits;
        self.age = self.age.max(o.age);
    }

    /// `stats reset`: every counter to zero (what the class holds stays).
    fn reset(&mut self) {
        *self = ClassStats {
            number: self.number,
            mem_requested: self.mem_requested,
            ..ClassStats::default()
        };
    }
}

#[derive(Debug, Clone, Copy)]
struct Lru {
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
}

/// One stripe. See the module docs.
#[derive(Debug)]
pub struct Stripe {
    table: HashTable<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    lru: Vec<Lru>,
    /// Per-class counters, indexed by class.
    pub cls: Vec<ClassStats>,
    /// Items ever stored.
    pub total_items: u64,
    /// Reads that found an expired item.
    pub get_expired: u64,
    /// Reads that found a flushed item.
    pub get_flushed: u64,
}

impl Stripe {
    /// An empty stripe for classes `0..classes`.
    pub fn new(classes: usize) -> Self {
        Self {
            table: HashTable::new(),
            slots: Vec::new(),
            free: Vec::new(),
            lru: vec![
                Lru {
                    head: NIL,
                    tail: NIL
                };
                classes
            ],
            cls: vec![ClassStats::default(); classes],
            total_items: 0,
            get_expired: 0,
            get_flushed: 0,
        }
    }

    /// Item `i`.
    pub fn entry(&self, i: u32) -> Option<&Entry> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    /// Item `i`, mutable.
    pub fn entry_mut(&mut self, i: u32) -> Option<&mut Entry> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    /// The counters of class `c` (class 0 absorbs anything out of range).
    pub fn class_mut(&mut self, c: u8) -> &mut ClassStats {
        let i = if usize::from(c) < self.cls.len() {
            usize::from(c)
        } else {
            0
        };
        &mut self.cls[i]
    }

    /// The slot of `key`.
    pub fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
        let slots = &self.slots;
        self.table
            .find(hash, |&i| {
                slots
                    .get(i as usize)
                    .and_then(Option::as_ref)
                    .is_some_and(|e| &*e.key == key)
            })
            .copied()
    }

    fn lru_mut(&mut self, c: u8) -> Option<&mut Lru> {
        self.lru.get_mut(usize::from(c))
    }

    fn detach(&mut self, i: u32) {
        let Some((prev, next, c)) = self.entry(i).map(|e| (e.prev, e.next, e.layout.class)) else {
            return;
        };
        match self.entry_mut(prev) {
            Some(p) => p.next = next,
            None => {
                if let Some(l) = self.lru_mut(c) {
                    l.head = next;
                }
            }
        }
        match self.entry_mut(next) {
            Some(n) => n.prev = prev,
            None => {
                if let Some(l) = self.lru_mut(c) {
                    l.tail = prev;
                }
            }
        }
    }

    fn push_front(&mut self, i: u32) {
        let Some(c) = self.entry(i).map(|e| e.layout.class) else {
            return;
        };
        let old = self.lru_mut(c).map_or(NIL, |l| l.head);
        if let Some(e) = self.entry_mut(i) {
            e.prev = NIL;
            e.next = old;
        }
        match self.entry_mut(old) {
            Some(o) => o.prev = i,
            None => {
                if let Some(l) = self.lru_mut(c) {
                    l.tail = i;
                }
            }
        }
        if let Some(l) = self.lru_mut(c) {
            l.head = i;
        }
    }

    /// Moves item `i` to the head of its class's LRU list.
    pub fn bump(&mut self, i: u32) {
        let head = self
            .entry(i)
            .and_then(|e| self.lru.get(usize::from(e.layout.class)))
            .map(|l| l.head);
        if head != Some(i) {
            self.detach(i);
            self.push_front(i);
        }
    }

    /// Takes item `i` out of table, list and counters; its chunks are the caller's to
    /// return.
    pub fn unlink(&mut self, i: u32) -> Option<Entry> {
        self.detach(i);
        let e = self.slots.get_mut(i as usize)?.take()?;
        if let Ok(occ) = self.table.find_entry(e.hash, |&j| j == i) {
            occ.remove();
        }
        self.free.push(i);
        let n = e.ntotal() as u64;
        let c = self.class_mut(e.layout.class);
        c.number = c.number.saturating_sub(1);
        c.mem_requested = c.mem_requested.saturating_sub(n);
        Some(e)
    }

    /// Puts `e` in table and list (at the head) and counts it; its chunks must be taken.
    pub fn link(&mut self, e: Entry) -> u32 {
        let hash = e.hash;
        let n = e.ntotal() as u64;
        let class = e.layout.class;
        let i = match self.free.pop() {
            Some(i) => {
                if let Some(s) = self.slots.get_mut(i as usize) {
                    *s = Some(e);
                }
                i
            }
            None => {
                self.slots.push(Some(e));
                (self.slots.len() - 1) as u32
            }
        };
        let slots = &self.slots;
        self.table.insert_unique(hash, i, |&j| {
            slots
                .get(j as usize)
                .and_then(Option::as_ref)
                .map_or(0, |e| e.hash)
        });
        self.push_front(i);
        let c = self.class_mut(class);
        c.number += 1;
        c.mem_requested += n;
        self.total_items += 1;
        i
    }

    /// Up to `n` items of class `c` from the cold end of its list, oldest first.
    pub fn tail(&self, c: u8, n: usize) -> impl Iterator<Item = u32> + '_ {
        let first = self.lru.get(usize::from(c)).map_or(NIL, |l| l.tail);
        std::iter::successors((first != NIL).then_some(first), move |&i| {
            self.entry(i).map(|e| e.prev).filter(|&p| p != NIL)
        })
        .take(n)
    }

    /// The item above `i` in its list (towards the head).
    pub fn tail_prev(&self, i: u32) -> Option<u32> {
        self.entry(i).map(|e| e.prev).filter(|&p| p != NIL)
    }

    /// The items of class `c` with their slots, from the head of its list (most recently
    /// used first).
    pub fn class_items(&self, c: u8) -> impl Iterator<Item = (u32, &Entry)> + '_ {
        let first = self.lru.get(usize::from(c)).map_or(NIL, |l| l.head);
        std::iter::successors(self.entry(first).map(|e| (first, e)), move |(_, e)| {
            self.entry(e.next).map(|n| (e.next, n))
        })
    }

    /// Fills in each class's age (seconds since the LRU tail's last access).
    pub fn class_stats(&self, now: RelTime) -> impl Iterator<Item = ClassStats> + '_ {
        self.cls
            .iter()
            .zip(&self.lru)
            .map(move |(s, l)| ClassStats {
                age: self
                    .entry(l.tail)
                    .map_or(0, |e| u64::from(now.saturating_sub(e.time))),
                ..*s
            })
    }

    /// `stats reset` for this stripe.
    pub fn reset_stats(&mut self) {
        for c in &mut self.cls {
            c.reset();
        }
        self.total_items = 0;
        self.get_expired = 0;
        self.get_flushed = 0;
    }
}
