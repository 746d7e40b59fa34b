//! The item store: one logical cache for every core, memory-bounded, LRU eviction.
//!
//! A [`Store`] is `Sync` and shared by reference between the cores' threads. It is split into
//! `N` **stripes** (shards), each a `Mutex` over its own hash table, its own LRU list and its
//! own share (`1/N`) of the memory limit; a key's hash picks its stripe. Two cores only meet
//! on the same lock when they touch keys of the same stripe at the same moment, and a lock
//! is held for one hash lookup plus a copy of the value (tens of nanoseconds). The crate
//! docs give the measurement behind this choice (`benches/store.rs`: 1 lock vs N stripes).
//!
//! How to drive it: build it once with [`StoreConfig`], then call [`Store::get`],
//! [`Store::store`], [`Store::delete`], [`Store::delta`], [`Store::touch`],
//! [`Store::flush_all`] with the current time as a [`RelTime`] (seconds on the server's
//! clock, see [`Clock`]). The store has no clock of its own, so tests drive time explicitly.
//!
//! Sizes are counted as memcached counts them ([`item_size`]: a 48-byte header, the key and
//! a NUL, the client flags when not zero, the value with its CRLF, the 8-byte CAS) plus
//! [`INDEX_OVERHEAD`] for our hash table slot. When a stripe is full, items are evicted from
//! the cold end of its LRU list; expired items found there are reclaimed first.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use hashbrown::DefaultHashBuilder;
use hashbrown::HashTable;
use std::hash::BuildHasher;

/// Seconds on the server's clock (memcached's `rel_time_t`): 0 means "never" in expiry
/// times; the clock starts at 2 so that 1 is always in the past.
pub type RelTime = u32;

/// memcached's item header size on a 64-bit build.
pub const ITEM_HEADER: usize = 48;
/// Bytes per item for our hash-table slot and list links, on top of [`item_size`].
pub const INDEX_OVERHEAD: usize = 16;
/// Longest key (memcached's `KEY_MAX_LENGTH`).
pub const KEY_MAX: usize = 250;
/// Relative expiry times above this (30 days) are absolute Unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// The size memcached gives an item (`ITEM_ntotal` with CAS): what `-I` limits.
pub fn item_size(nkey: usize, flags: u32, vlen: usize) -> usize {
    ITEM_HEADER + nkey + 1 + if flags != 0 { 4 } else { 0 } + vlen + 2 + 8
}

/// The server's clock: Unix time mapped to [`RelTime`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix time (seconds) of `RelTime` 0.
    pub epoch: u64,
}

impl Clock {
    /// A clock starting now (now is `RelTime` 2).
    pub fn start() -> Self {
        Self {
            epoch: unix_now().saturating_sub(2),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> RelTime {
        u32::try_from(unix_now().saturating_sub(self.epoch)).unwrap_or(u32::MAX)
    }

    /// Unix time of `t`.
    pub fn unix(&self, t: RelTime) -> u64 {
        self.epoch + u64::from(t)
    }

    /// memcached's `realtime()`: an expiry time from a client (0 = never; up to 30 days =
    /// relative seconds; above = absolute Unix time; negative = already expired) as a
    /// [`RelTime`] (0 = never).
    pub fn expiry(&self, exptime: i64, now: RelTime) -> RelTime {
        if exptime == 0 {
            return 0;
        }
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if exptime > REALTIME_MAXDELTA {
            // Absolute. Anything at or before our start is "expired long ago".
            let abs = exptime as u64;
            if abs <= self.epoch {
                1
            } else {
                u32::try_from(abs - self.epoch).unwrap_or(u32::MAX)
            }
        } else {
            // exptime <= 30 days fits in u32.
            now.saturating_add(exptime as u32)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// How a store is sized.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoreConfig {
    /// Memory limit in bytes (`-m`, MiB there).
    pub max_bytes: usize,
    /// Largest item, as counted by [`item_size`] (`-I`).
    pub item_max: usize,
    /// Number of stripes (0: pick from the memory limit, see [`StoreConfig::stripes`]).
    pub stripes: usize,
}

impl StoreConfig {
    /// memcached's defaults: 64 MiB, 1 MiB items.
    pub fn new(max_bytes: usize, item_max: usize) -> Self {
        Self {
            max_bytes,
            item_max,
            stripes: 0,
        }
    }

    /// The number of stripes used: the configured one, or the largest power of two up to 64
    /// that leaves every stripe room for two items of the largest size.
    pub fn stripes(&self) -> usize {
        if self.stripes > 0 {
            return self.stripes;
        }
        let mut n = 64;
        while n > 1 && self.max_bytes / n < 2 * self.item_max {
            n /= 2;
        }
        n
    }
}

/// An item as lent to a reader.
#[derive(Debug, Clone, Copy)]
pub struct Item<'a> {
    /// The key.
    pub key: &'a [u8],
    /// The value (without memcached's trailing CRLF).
    pub value: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// CAS unique value.
    pub cas: u64,
}

/// How a store command treats an existing item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SetMode {
    /// Store unconditionally.
    Set,
    /// Only if absent.
    Add,
    /// Only if present.
    Replace,
    /// Add to the end of a present item (its flags and expiry stay); a non-zero CAS must
    /// match (binary protocol).
    Append(u64),
    /// Add to the start of a present item; a non-zero CAS must match.
    Prepend(u64),
    /// Only if present with this CAS value.
    Cas(u64),
}

/// What a store command did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOutcome {
    /// Stored, with its new CAS value.
    Stored(u64),
    /// CAS mismatch.
    Exists,
    /// CAS on a missing item.
    NotFound,
    /// The mode's condition failed (add on present, replace/append/prepend on absent, or
    /// an append/prepend result too large).
    NotStored,
    /// The item is larger than a stripe can ever hold.
    NoMemory,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed.
    Deleted,
    /// Not there.
    NotFound,
    /// CAS mismatch (binary protocol).
    Exists,
}

/// What an incr/decr did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeltaOutcome {
    /// The new value and CAS.
    Value(u64, u64),
    /// Not there.
    NotFound,
    /// The value is not a decimal number.
    NonNumeric,
    /// CAS mismatch (binary protocol).
    Exists,
}

/// Counters of the store, summed over stripes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Items present (expired ones not yet found included, as memcached does).
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Bytes counted against the limit.
    pub bytes: u64,
    /// Live items evicted to make room.
    pub evictions: u64,
    /// Evicted items that had never been read.
    pub evicted_unfetched: u64,
    /// Expired items whose room was reused.
    pub reclaimed: u64,
    /// Expired items that had never been read.
    pub expired_unfetched: u64,
    /// Reads that found an expired item.
    pub get_expired: u64,
    /// Reads that found a flushed item.
    pub get_flushed: u64,
    /// The memory limit.
    pub limit_maxbytes: u64,
}

const NIL: u32 = u32::MAX;

struct Entry {
    key: Box<[u8]>,
    value: Vec<u8>,
    hash: u64,
    flags: u32,
    exptime: RelTime,
    time: RelTime,
    cas: u64,
    fetched: bool,
    prev: u32,
    next: u32,
}

impl Entry {
    fn size(&self) -> usize {
        item_size(self.key.len(), self.flags, self.value.len()) + INDEX_OVERHEAD
    }

    fn expired(&self, now: RelTime) -> bool {
        self.exptime != 0 && self.exptime <= now
    }
}

#[derive(Default)]
struct Shard {
    table: HashTable<u32>,
    slots: Vec<Option<Entry>>,
    free: Vec<u32>,
    /// Most recently used.
    head: u32,
    /// Least recently used.
    tail: u32,
    used: usize,
    limit: usize,
    /// The delayed flush deadline already applied.
    flushed: RelTime,
    stats: StoreStats,
}

impl Shard {
    fn new(limit: usize) -> Self {
        Self {
            head: NIL,
            tail: NIL,
            limit,
            ..Self::default()
        }
    }

    fn entry(&self, i: u32) -> Option<&Entry> {
        self.slots.get(i as usize).and_then(Option::as_ref)
    }

    fn entry_mut(&mut self, i: u32) -> Option<&mut Entry> {
        self.slots.get_mut(i as usize).and_then(Option::as_mut)
    }

    fn find(&self, hash: u64, key: &[u8]) -> Option<u32> {
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

    fn detach(&mut self, i: u32) {
        let (prev, next) = match self.entry(i) {
            Some(e) => (e.prev, e.next),
            None => return,
        };
        match self.entry_mut(prev) {
            Some(p) => p.next = next,
            None => self.head = next,
        }
        match self.entry_mut(next) {
            Some(n) => n.prev = prev,
            None => self.tail = prev,
        }
    }

    fn push_front(&mut self, i: u32) {
        let old = self.head;
        if let Some(e) = self.entry_mut(i) {
            e.prev = NIL;
            e.next = old;
        }
        match self.entry_mut(old) {
            Some(o) => o.prev = i,
            None => self.tail = i,
        }
        self.head = i;
    }

    fn bump(&mut self, i: u32) {
        if self.head != i {
            self.detach(i);
            self.push_front(i);
        }
    }

    /// Removes item `i` from table, list and accounting; returns it.
    fn unlink(&mut self, i: u32) -> Option<Entry> {
        self.detach(i);
        let e = self.slots.get_mut(i as usize)?.take()?;
        let slots = &self.slots;
        if let Ok(occ) = self.table.find_entry(e.hash, |&j| j == i) {
            occ.remove();
        }
        let _ = slots;
        self.free.push(i);
        self.used = self.used.saturating_sub(e.size());
        self.stats.curr_items = self.stats.curr_items.saturating_sub(1);
        Some(e)
    }

    fn link(&mut self, e: Entry) -> u32 {
        let size = e.size();
        let hash = e.hash;
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
        self.used += size;
        self.stats.curr_items += 1;
        self.stats.total_items += 1;
        i
    }

    /// Applies a delayed flush whose deadline has passed.
    fn apply_flush(&mut self, deadline: RelTime, now: RelTime) {
        if deadline == 0 || deadline > now || self.flushed == deadline {
            return;
        }
        self.flushed = deadline;
        let doomed: Vec<u32> = self
            .slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| match s {
                Some(e) if e.time <= deadline => Some(i as u32),
                _ => None,
            })
            .collect();
        for i in doomed {
            self.unlink(i);
        }
    }

    fn clear(&mut self) {
        let n = self.stats.curr_items;
        self.table.clear();
        self.slots.clear();
        self.free.clear();
        self.head = NIL;
        self.tail = NIL;
        self.used = 0;
        self.stats.curr_items = 0;
        let _ = n;
    }

    /// The live item for `key`, removing it if expired.
    fn lookup(&mut self, hash: u64, key: &[u8], now: RelTime) -> Option<u32> {
        let i = self.find(hash, key)?;
        if self.entry(i).is_some_and(|e| e.expired(now)) {
            if let Some(e) = self.unlink(i) {
                self.stats.get_expired += 1;
                if !e.fetched {
                    self.stats.expired_unfetched += 1;
                }
            }
            return None;
        }
        Some(i)
    }

    /// Makes room for `size` bytes; false if it can never fit.
    fn make_room(&mut self, size: usize, now: RelTime) -> bool {
        if size > self.limit {
            return false;
        }
        while self.used + size > self.limit {
            let t = self.tail;
            let Some(e) = self.unlink(t) else {
                return false;
            };
            if e.expired(now) {
                self.stats.reclaimed += 1;
                if !e.fetched {
                    self.stats.expired_unfetched += 1;
                }
            } else {
                self.stats.evictions += 1;
                if !e.fetched {
                    self.stats.evicted_unfetched += 1;
                }
            }
        }
        true
    }
}

/// The cache shared by every core. See the module docs.
pub struct Store {
    shards: Box<[Mutex<Shard>]>,
    hasher: DefaultHashBuilder,
    next_cas: AtomicU64,
    flush_at: AtomicU32,
    config: StoreConfig,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("stripes", &self.shards.len())
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let n = config.stripes().max(1);
        let limit = config.max_bytes / n;
        Self {
            shards: (0..n).map(|_| Mutex::new(Shard::new(limit))).collect(),
            hasher: DefaultHashBuilder::default(),
            next_cas: AtomicU64::new(1),
            flush_at: AtomicU32::new(0),
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Number of stripes.
    pub fn stripes(&self) -> usize {
        self.shards.len()
    }

    /// Whether an item of this shape is within `-I` (memcached's `item_size_ok`).
    pub fn size_ok(&self, nkey: usize, flags: u32, vlen: usize) -> bool {
        item_size(nkey, flags, vlen) <= self.config.item_max
    }

    fn next_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    /// Runs `f` on the locked stripe of `key` (delayed flushes applied first).
    fn with_shard<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(&mut Shard, u64) -> R) -> R {
        let hash = self.hasher.hash_one(key);
        // High bits pick the stripe; the table uses all of them.
        let idx = ((hash >> 32) as usize) % self.shards.len();
        let mut guard = match self.shards.get(idx) {
            Some(m) => m.lock().unwrap_or_else(|p| p.into_inner()),
            None => unreachable_shard(),
        };
        guard.apply_flush(self.flush_at.load(Ordering::Relaxed), now);
        f(&mut guard, hash)
    }

    /// Reads `key`: `f` sees the item (and its LRU position is refreshed).
    pub fn get<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(Item<'_>) -> R) -> Option<R> {
        self.with_shard(key, now, |s, hash| {
            let i = s.lookup(hash, key, now)?;
            s.bump(i);
            let e = s.entry_mut(i)?;
            e.fetched = true;
            e.time = now;
            Some(f(Item {
                key: &e.key,
                value: &e.value,
                flags: e.flags,
                cas: e.cas,
            }))
        })
    }

    /// Sets the expiry of `key` to `exptime` and reads it (`gat`, `touch`).
    pub fn touch<R>(
        &self,
        key: &[u8],
        exptime: RelTime,
        now: RelTime,
        f: impl FnOnce(Item<'_>) -> R,
    ) -> Option<R> {
        self.with_shard(key, now, |s, hash| {
            let i = s.lookup(hash, key, now)?;
            s.bump(i);
            let e = s.entry_mut(i)?;
            e.exptime = exptime;
            e.fetched = true;
            e.time = now;
            Some(f(Item {
                key: &e.key,
                value: &e.value,
                flags: e.flags,
                cas: e.cas,
            }))
        })
    }

    /// Stores `value` under `key` as `mode` says.
    pub fn store(
        &self,
        mode: SetMode,
        key: &[u8],
        flags: u32,
        exptime: RelTime,
        value: &[u8],
        now: RelTime,
    ) -> StoreOutcome {
        self.with_shard(key, now, |s, hash| {
            let old = s.lookup(hash, key, now);
            let (flags, exptime, value) = match (mode, old.and_then(|i| s.entry(i))) {
                (SetMode::Add, Some(_)) => {
                    if let Some(i) = old {
                        s.bump(i);
                    }
                    return StoreOutcome::NotStored;
                }
                (SetMode::Replace | SetMode::Append(_) | SetMode::Prepend(_), None) => {
                    return StoreOutcome::NotStored;
                }
                (SetMode::Cas(_), None) => return StoreOutcome::NotFound,
                (SetMode::Cas(cas), Some(e)) if e.cas != cas => return StoreOutcome::Exists,
                (SetMode::Append(cas) | SetMode::Prepend(cas), Some(e))
                    if cas != 0 && e.cas != cas =>
                {
                    return StoreOutcome::Exists;
                }
                (SetMode::Append(_), Some(e)) => {
                    let mut v = Vec::with_capacity(e.value.len() + value.len());
                    v.extend_from_slice(&e.value);
                    v.extend_from_slice(value);
                    (e.flags, e.exptime, v)
                }
                (SetMode::Prepend(_), Some(e)) => {
                    let mut v = Vec::with_capacity(e.value.len() + value.len());
                    v.extend_from_slice(value);
                    v.extend_from_slice(&e.value);
                    (e.flags, e.exptime, v)
                }
                _ => (flags, exptime, value.to_vec()),
            };
            if matches!(mode, SetMode::Append(_) | SetMode::Prepend(_))
                && item_size(key.len(), flags, value.len()) > self.config.item_max
            {
                return StoreOutcome::NotStored;
            }
            if let Some(i) = old {
                s.unlink(i);
            }
            let entry = Entry {
                key: key.into(),
                value,
                hash,
                flags,
                exptime,
                time: now,
                cas: self.next_cas(),
                fetched: false,
                prev: NIL,
                next: NIL,
            };
            if !s.make_room(entry.size(), now) {
                return StoreOutcome::NoMemory;
            }
            let cas = entry.cas;
            s.link(entry);
            StoreOutcome::Stored(cas)
        })
    }

    /// Removes `key` if present (a non-zero `cas` must match).
    pub fn delete(&self, key: &[u8], cas: u64, now: RelTime) -> DeleteOutcome {
        self.with_shard(key, now, |s, hash| match s.lookup(hash, key, now) {
            None => DeleteOutcome::NotFound,
            Some(i) => {
                if cas != 0 && s.entry(i).is_some_and(|e| e.cas != cas) {
                    return DeleteOutcome::Exists;
                }
                s.unlink(i);
                DeleteOutcome::Deleted
            }
        })
    }

    /// incr (wraps at 2^64) or decr (floors at 0) of a decimal value, as memcached does: a
    /// result no longer than the old value is written in place, padded with spaces.
    pub fn delta(
        &self,
        key: &[u8],
        incr: bool,
        delta: u64,
        cas: u64,
        now: RelTime,
    ) -> DeltaOutcome {
        self.with_shard(key, now, |s, hash| {
            let Some(i) = s.lookup(hash, key, now) else {
                return DeltaOutcome::NotFound;
            };
            let new_cas = self.next_cas();
            let Some(e) = s.entry_mut(i) else {
                return DeltaOutcome::NotFound;
            };
            if cas != 0 && e.cas != cas {
                return DeltaOutcome::Exists;
            }
            let Some(v) = parse_counter(&e.value) else {
                return DeltaOutcome::NonNumeric;
            };
            let v = if incr {
                v.wrapping_add(delta)
            } else {
                v.saturating_sub(delta)
            };
            let digits = v.to_string();
            let old_size = e.size();
            if digits.len() <= e.value.len() {
                let (head, tail) = e.value.split_at_mut(digits.len());
                head.copy_from_slice(digits.as_bytes());
                tail.fill(b' ');
            } else {
                e.value = digits.into_bytes();
            }
            e.cas = new_cas;
            e.time = now;
            let new_size = e.size();
            s.used = s.used + new_size - old_size;
            s.bump(i);
            DeltaOutcome::Value(v, new_cas)
        })
    }

    /// Drops `key` without counting anything (a failed `set` must not leave stale data).
    pub fn unlink(&self, key: &[u8], now: RelTime) {
        self.with_shard(key, now, |s, hash| {
            if let Some(i) = s.find(hash, key) {
                s.unlink(i);
            }
        });
    }

    /// `flush_all`: every item invalid now (`at` = `None`), or every item stored before
    /// `at` invalid from `at` on.
    pub fn flush_all(&self, at: Option<RelTime>, now: RelTime) {
        match at {
            Some(t) if t > now => self.flush_at.store(t, Ordering::Relaxed),
            _ => {
                self.flush_at.store(0, Ordering::Relaxed);
                for m in self.shards.iter() {
                    m.lock().unwrap_or_else(|p| p.into_inner()).clear();
                }
            }
        }
    }

    /// Counters, summed over stripes.
    pub fn stats(&self) -> StoreStats {
        let mut t = StoreStats {
            limit_maxbytes: self.config.max_bytes as u64,
            ..StoreStats::default()
        };
        for m in self.shards.iter() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            t.curr_items += s.stats.curr_items;
            t.total_items += s.stats.total_items;
            t.bytes += s.used as u64;
            t.evictions += s.stats.evictions;
            t.evicted_unfetched += s.stats.evicted_unfetched;
            t.reclaimed += s.stats.reclaimed;
            t.expired_unfetched += s.stats.expired_unfetched;
            t.get_expired += s.stats.get_expired;
            t.get_flushed += s.stats.get_flushed;
        }
        t
    }
}

#[cold]
fn unreachable_shard() -> ! {
    // `idx` is reduced modulo the number of stripes, which is at least 1.
    panic!("stripe index out of range")
}

/// memcached's `safe_strtoull` on a stored value (as if followed by its CRLF): optional
/// leading white space, an optional sign, decimal digits, then white space or the end.
pub fn parse_counter(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    crate::text::c_strtoull(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn store(bytes: usize) -> Store {
        Store::new(StoreConfig {
            max_bytes: bytes,
            item_max: 1024 * 1024,
            stripes: 1,
        })
    }

    #[test]
    fn set_get_replace_and_cas() {
        let s = store(1 << 20);
        assert!(matches!(
            s.store(SetMode::Set, b"k", 5, 0, b"v1", 10),
            StoreOutcome::Stored(_)
        ));
        let (v, cas) = s.get(b"k", 10, |i| (i.value.to_vec(), i.cas)).unwrap();
        assert_eq!(v, b"v1");
        assert_eq!(
            s.store(SetMode::Cas(cas + 1), b"k", 0, 0, b"x", 10),
            StoreOutcome::Exists
        );
        assert!(matches!(
            s.store(SetMode::Cas(cas), b"k", 0, 0, b"x", 10),
            StoreOutcome::Stored(_)
        ));
        assert_eq!(
            s.store(SetMode::Add, b"k", 0, 0, b"y", 10),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(SetMode::Replace, b"z", 0, 0, b"y", 10),
            StoreOutcome::NotStored
        );
        assert_eq!(
            s.store(SetMode::Cas(1), b"z", 0, 0, b"y", 10),
            StoreOutcome::NotFound
        );
    }

    #[test]
    fn lru_evicts_the_coldest_and_keeps_the_bound() {
        let per = item_size(4, 0, 100) + INDEX_OVERHEAD;
        let s = store(per * 10);
        for i in 0..10u32 {
            let k = format!("k{i:03}");
            s.store(SetMode::Set, k.as_bytes(), 0, 0, &[b'x'; 100], 5);
        }
        // Touch k000 so k001 is the coldest.
        assert!(s.get(b"k000", 5, |_| ()).is_some());
        s.store(SetMode::Set, b"k010", 0, 0, &[b'x'; 100], 5);
        assert!(s.get(b"k000", 5, |_| ()).is_some());
        assert!(s.get(b"k001", 5, |_| ()).is_none());
        let st = s.stats();
        assert_eq!(st.evictions, 1);
        assert!(st.bytes as usize <= per * 10);
    }

    #[test]
    fn delta_wraps_floors_and_pads_in_place() {
        let s = store(1 << 20);
        s.store(SetMode::Set, b"n", 0, 0, b"18446744073709551615", 1);
        assert!(matches!(
            s.delta(b"n", true, 2, 0, 1),
            DeltaOutcome::Value(1, _)
        ));
        assert_eq!(
            s.get(b"n", 1, |i| i.value.to_vec()).unwrap(),
            b"1                   "
        );
        assert!(matches!(
            s.delta(b"n", false, 5, 0, 1),
            DeltaOutcome::Value(0, _)
        ));
        s.store(SetMode::Set, b"t", 0, 0, b"abc", 1);
        assert_eq!(s.delta(b"t", true, 1, 0, 1), DeltaOutcome::NonNumeric);
        assert_eq!(s.delta(b"u", true, 1, 0, 1), DeltaOutcome::NotFound);
    }

    #[test]
    fn expiry_and_delayed_flush() {
        let s = store(1 << 20);
        s.store(SetMode::Set, b"a", 0, 12, b"1", 10);
        assert!(s.get(b"a", 11, |_| ()).is_some());
        assert!(s.get(b"a", 12, |_| ()).is_none());
        s.store(SetMode::Set, b"b", 0, 0, b"1", 10);
        s.flush_all(Some(15), 10);
        assert!(s.get(b"b", 14, |_| ()).is_some());
        assert!(s.get(b"b", 15, |_| ()).is_none());
        s.store(SetMode::Set, b"c", 0, 0, b"1", 16);
        assert!(s.get(b"c", 17, |_| ()).is_some());
    }

    #[test]
    fn clock_expiry_rules() {
        let c = Clock {
            epoch: 1_000_000_000,
        };
        assert_eq!(c.expiry(0, 100), 0);
        assert_eq!(c.expiry(10, 100), 110);
        assert_eq!(c.expiry(-1, 100), 1);
        assert_eq!(c.expiry(1_000_000_500, 100), 500);
        assert_eq!(c.expiry(999_000_000, 100), 1);
    }
}
