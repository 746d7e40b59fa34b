//! The item store: one logical cache for every core, memory-bounded as memcached bounds it.
//!
//! A [`Store`] is `Sync` and shared by reference between the cores' threads. It is split into
//! `N` **stripes** (`stripe.rs`), each a `Mutex` over its own hash table and one LRU list per
//! slab class; a key's hash picks its stripe. Two cores only meet on the same lock when they
//! touch keys of the same stripe at the same moment, and a lock is held for one hash lookup
//! plus a copy of the value (tens of nanoseconds). The crate docs give the measurement behind
//! this choice (`benches/store.rs`: 1 lock vs N stripes).
//!
//! How to drive it: build it once with [`StoreConfig`], then call [`Store::get`],
//! [`Store::touch`], [`Store::store`] (or [`Store::update`]), [`Store::delete`],
//! [`Store::delta`], [`Store::flush_all`], or [`Store::access`] for the meta commands'
//! finer steps, with the current time as a [`RelTime`] (seconds on the server's clock, see
//! [`Clock`](crate::clock::Clock)). The store has no clock of its own, so tests drive time
//! explicitly.
//!
//! # Memory
//!
//! Items are counted in memcached's slab classes (`slabs.rs`): an item takes a chunk of the
//! smallest class it fits in (or several chunks when it is larger than half a page), and
//! classes get 1 MiB pages while `-m` allows. Every allocation does what memcached's
//! allocator does without its background threads: reclaim expired or flushed items at the
//! cold end of the class (`reclaimed`), take a free chunk, else a new page if `-m` allows
//! (first reclaiming dead items of the class in the other stripes, which one list per class
//! would have found, so that churn of expiring items does not grow memory), else evict the
//! coldest item of the class over all stripes (`evictions`) and try again. An item read
//! twice since its last pass is spared once (moved to the head instead), as memcached's
//! segmented LRU spares active items; reads refresh an item's place at most once a minute
//! (memcached's `ITEM_UPDATE_INTERVAL`). Pages are never returned: `total_malloced` grows up
//! to `-m` and stays there.
//!
//! # Expiry and flush
//!
//! Expired items are removed when found (`get_expired`), when their memory is needed
//! (`reclaimed`), or when a store replaces them (`reclaimed`). `flush_all` is lazy, as in
//! memcached: it records the time (and the CAS value) before which items are invalid, and an
//! item found to be older is removed then (`get_flushed`).

use std::hash::BuildHasher;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use hashbrown::DefaultHashBuilder;

use crate::clock::RelTime;
use crate::numbers::c_strtoull;
use crate::slabs::{Layout, SlabConfig, Slabs, item_total};
use crate::stripe::{ClassStats, Entry, Stripe, bits};

/// Longest key (memcached's `KEY_MAX_LENGTH`).
pub const KEY_MAX: usize = 250;

/// Items looked at from the cold end of a list for one that has expired (memcached's
/// `lru_pull_tail` search depth).
const TAIL_SEARCH: usize = 5;
/// Seconds between two refreshes of an item's access time (memcached's
/// `ITEM_UPDATE_INTERVAL`).
const ITEM_UPDATE_INTERVAL: RelTime = 60;
/// Evictions tried for one allocation before giving up (memcached's `do_item_alloc_pull`).
const EVICT_TRIES: usize = 10;

/// How a store is sized.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StoreConfig {
    /// Memory limit in bytes (`-m`, MiB there).
    pub max_bytes: usize,
    /// Largest item, as counted by [`item_total`] (`-I`).
    pub item_max: usize,
    /// Number of stripes (0: pick from the memory limit, see [`StoreConfig::stripes`]).
    pub stripes: usize,
    /// Growth factor of the slab classes (`-f`).
    pub factor: f64,
    /// Space for key, value and flags in the smallest chunk (`-n`).
    pub min_chunk: usize,
}

impl StoreConfig {
    /// memcached's defaults for everything but the memory limit and the largest item.
    pub fn new(max_bytes: usize, item_max: usize) -> Self {
        Self {
            max_bytes,
            item_max,
            stripes: 0,
            factor: 1.25,
            min_chunk: 48,
        }
    }

    /// The number of stripes used: the configured one, or the largest power of two up to 64
    /// that leaves room for two items of the largest size per stripe (a small cache keeps
    /// few stripes, so that each class's eviction order stays close to one LRU).
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

    /// The slab classes' configuration.
    pub fn slab_config(&self) -> SlabConfig {
        SlabConfig {
            factor: self.factor,
            min_chunk: self.min_chunk,
            item_max: self.item_max,
            max_bytes: self.max_bytes,
        }
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
    /// Expiry time (0: never).
    pub exptime: RelTime,
    /// Last access time as memcached keeps it.
    pub time: RelTime,
    /// Slab class.
    pub class: u8,
    bits: u8,
}

impl<'a> Item<'a> {
    fn of(e: &'a Entry) -> Self {
        Item {
            key: &e.key,
            value: &e.value,
            flags: e.flags,
            cas: e.cas,
            exptime: e.exptime,
            time: e.time,
            class: e.layout.class,
            bits: e.bits,
        }
    }

    /// Whether it has been read before.
    pub fn fetched(&self) -> bool {
        self.bits & bits::FETCHED != 0
    }

    /// Whether a meta invalidation marked it stale.
    pub fn stale(&self) -> bool {
        self.bits & bits::STALE != 0
    }

    /// Whether a client was already told to recache it.
    pub fn token_sent(&self) -> bool {
        self.bits & bits::TOKEN_SENT != 0
    }

    /// Whether its key came base64-encoded.
    pub fn key_binary(&self) -> bool {
        self.bits & bits::KEY_BINARY != 0
    }

    /// memcached's `ITEM_ntotal`.
    pub fn ntotal(&self) -> usize {
        item_total(self.key.len(), self.flags, self.value.len())
    }
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
    /// match (binary and meta protocols).
    Append(u64),
    /// Add to the start of a present item; a non-zero CAS must match.
    Prepend(u64),
    /// Only if present with this CAS value.
    Cas(u64),
}

/// A store command with everything the meta protocol can add.
#[derive(Debug, Clone, Copy)]
pub struct Update<'a> {
    /// How an existing item is treated.
    pub mode: SetMode,
    /// The key.
    pub key: &'a [u8],
    /// Client flags.
    pub flags: u32,
    /// Expiry (0: never).
    pub exptime: RelTime,
    /// The value.
    pub value: &'a [u8],
    /// The key came base64-encoded (meta `b`).
    pub key_binary: bool,
    /// `ms I`: a CAS older than the item's replaces it anyway, marked stale.
    pub invalidate: bool,
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
    /// No memory could be found for the item.
    NoMemory,
    /// The item is above `-I`.
    TooLarge,
}

/// What a delete did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeleteOutcome {
    /// Removed.
    Deleted,
    /// Not there.
    NotFound,
    /// CAS mismatch (binary and meta protocols).
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
    /// CAS mismatch (binary and meta protocols).
    Exists,
    /// The longer value found no memory.
    NoMemory,
}

/// Counters of the store, summed over stripes and classes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StoreStats {
    /// Items present (expired ones not yet found included, as memcached does).
    pub curr_items: u64,
    /// Items ever stored.
    pub total_items: u64,
    /// Their sizes summed (memcached's `bytes`).
    pub bytes: u64,
    /// Reads that found an expired item.
    pub get_expired: u64,
    /// Reads that found a flushed item.
    pub get_flushed: u64,
    /// The memory limit.
    pub limit_maxbytes: u64,
    /// Bytes of slab pages handed out.
    pub total_malloced: u64,
    /// The per-class counters, summed over classes.
    pub classes: ClassStats,
}

/// What a read counts as, per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hit {
    /// A get (`get_hits`).
    Get,
    /// A touch or get-and-touch (`touch_hits`).
    Touch,
}

/// The cache shared by every core. See the module docs.
pub struct Store {
    stripes: Box<[Mutex<Stripe>]>,
    hasher: DefaultHashBuilder,
    next_cas: AtomicU64,
    /// memcached's `settings.oldest_live`: items last accessed at or before it are flushed
    /// (0: no flush).
    oldest_live: AtomicU32,
    /// memcached's `settings.oldest_cas`: items with a lower CAS are flushed.
    oldest_cas: AtomicU64,
    slabs: Slabs,
    config: StoreConfig,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("config", &self.config)
            .field("stripes", &self.stripes.len())
            .finish()
    }
}

impl Store {
    /// An empty store.
    pub fn new(config: StoreConfig) -> Self {
        let n = config.stripes().max(1);
        let slabs = Slabs::new(&config.slab_config());
        let classes = slabs.classes().largest() + 1;
        Self {
            stripes: (0..n).map(|_| Mutex::new(Stripe::new(classes))).collect(),
            hasher: DefaultHashBuilder::default(),
            next_cas: AtomicU64::new(1),
            oldest_live: AtomicU32::new(0),
            oldest_cas: AtomicU64::new(0),
            slabs,
            config,
        }
    }

    /// The configuration.
    pub fn config(&self) -> StoreConfig {
        self.config
    }

    /// Number of stripes.
    pub fn stripes(&self) -> usize {
        self.stripes.len()
    }

    /// The slab accounting.
    pub fn slabs(&self) -> &Slabs {
        &self.slabs
    }

    /// Whether an item of this shape is within `-I` (memcached's `item_size_ok`).
    pub fn size_ok(&self, nkey: usize, flags: u32, vlen: usize) -> bool {
        self.slabs.classes().layout(nkey, flags, vlen).is_some()
    }

    fn next_cas(&self) -> u64 {
        self.next_cas.fetch_add(1, Ordering::Relaxed)
    }

    fn lock(&self, i: usize) -> std::sync::MutexGuard<'_, Stripe> {
        match self.stripes.get(i) {
            Some(m) => m.lock().unwrap_or_else(|p| p.into_inner()),
            None => unreachable_stripe(),
        }
    }

    /// Runs `f` on the locked stripe of `key`.
    fn with_stripe<R>(&self, key: &[u8], f: impl FnOnce(&mut Stripe, u64, usize) -> R) -> R {
        let hash = self.hasher.hash_one(key);
        // High bits pick the stripe; the table uses all of them.
        let idx = ((hash >> 32) as usize) % self.stripes.len();
        let mut guard = self.lock(idx);
        f(&mut guard, hash, idx)
    }

    /// memcached's `item_is_flushed`.
    fn flushed(&self, e: &Entry, now: RelTime) -> bool {
        let live = self.oldest_live.load(Ordering::Relaxed);
        if live == 0 || live > now {
            return false;
        }
        let oldest_cas = self.oldest_cas.load(Ordering::Relaxed);
        e.time <= live || (oldest_cas != 0 && e.cas != 0 && e.cas < oldest_cas)
    }

    fn dead(&self, e: &Entry, now: RelTime) -> bool {
        e.expired(now) || self.flushed(e, now)
    }

    /// Removes item `i` and returns its chunks.
    fn remove(&self, s: &mut Stripe, i: u32) -> Option<Entry> {
        let e = s.unlink(i)?;
        self.slabs.give_layout(&e.layout);
        Some(e)
    }

    /// The live item for `key` (a read: an expired or flushed one found is removed and
    /// counted as `get_expired` / `get_flushed`).
    fn lookup(&self, s: &mut Stripe, hash: u64, key: &[u8], now: RelTime) -> Option<u32> {
        let i = s.find(hash, key)?;
        let e = s.entry(i)?;
        if self.flushed(e, now) {
            self.remove(s, i);
            s.get_flushed += 1;
            return None;
        }
        if e.expired(now) {
            self.remove(s, i);
            s.get_expired += 1;
            return None;
        }
        Some(i)
    }

    /// Removes dead item `i`, counted as reclaimed.
    fn reclaim(&self, s: &mut Stripe, i: u32) {
        if let Some(e) = self.remove(s, i) {
            let c = s.class_mut(e.layout.class);
            c.reclaimed += 1;
            if !e.has(bits::FETCHED) {
                c.expired_unfetched += 1;
            }
        }
    }

    /// Removes live item `i` to make room, counted as an eviction.
    fn evict(&self, s: &mut Stripe, i: u32, now: RelTime) {
        if let Some(e) = self.remove(s, i) {
            let c = s.class_mut(e.layout.class);
            c.evicted += 1;
            c.evicted_time = u64::from(now.saturating_sub(e.time));
            if e.exptime != 0 {
                c.evicted_nonzero += 1;
            }
            if !e.has(bits::FETCHED) {
                c.evicted_unfetched += 1;
            }
        }
    }

    /// memcached's `lru_pull_tail` on class `c` of `s`: from the cold end, reclaims dead
    /// items (up to [`TAIL_SEARCH`] looked at) until a live one; with `evict`, that live one
    /// is evicted, unless it was read again since its last pass (then it is spared: moved
    /// to the head, as memcached's segmented LRU moves active items out of its cold part).
    /// Returns how many items went or moved.
    fn pull_tail(&self, s: &mut Stripe, c: u8, evict: bool, now: RelTime) -> usize {
        let mut removed = 0;
        let mut next = s.tail(c, 1).next();
        for _ in 0..TAIL_SEARCH {
            let Some(i) = next else { break };
            // The next one up, read before this one moves or goes.
            next = s.tail_prev(i);
            let Some(e) = s.entry_mut(i) else { break };
            if self.dead(e, now) {
                self.reclaim(s, i);
                removed += 1;
                continue;
            }
            if !evict {
                break;
            }
            if e.has(bits::ACTIVE) {
                e.bits &= !bits::ACTIVE;
                s.bump(i);
                removed += 1;
                continue;
            }
            self.evict(s, i, now);
            removed += 1;
            break;
        }
        removed
    }

    /// Runs `f` on the other stripes that are not busy (never waits: the caller holds
    /// stripe `own`) until it returns true.
    fn elsewhere(&self, own: usize, mut f: impl FnMut(&mut Stripe) -> bool) -> bool {
        let n = self.stripes.len();
        (1..n).any(|k| {
            self.stripes
                .get((own + k) % n)
                .and_then(|m| m.try_lock().ok())
                .is_some_and(|mut g| f(&mut g))
        })
    }

    /// Evicts (or reclaims, when dead) the least recently used item of class `c` over all
    /// stripes that are not busy: the stripes' cold ends are compared by access time, then
    /// by CAS (the order items were stored in), so that eviction follows one LRU order per
    /// class as in memcached.
    fn evict_oldest(&self, s: &mut Stripe, own: usize, c: u8, now: RelTime) -> bool {
        let coldest = |t: &Stripe| {
            t.tail(c, 1)
                .next()
                .and_then(|i| t.entry(i))
                .map(|e| (e.time, e.cas))
        };
        let mine = coldest(s);
        let n = self.stripes.len();
        let mut best: Option<((RelTime, u64), std::sync::MutexGuard<'_, Stripe>)> = None;
        for k in 1..n {
            let Some(g) = self
                .stripes
                .get((own + k) % n)
                .and_then(|m| m.try_lock().ok())
            else {
                continue;
            };
            let Some(key) = coldest(&g) else { continue };
            let older_than_best = best.as_ref().is_none_or(|(b, _)| key < *b);
            if older_than_best && mine.is_none_or(|m| key < m) {
                best = Some((key, g));
            }
        }
        match best {
            Some((_, mut g)) => self.pull_tail(&mut g, c, true, now) > 0,
            None => self.pull_tail(s, c, true, now) > 0,
        }
    }

    /// A free chunk of class `c`, or a new page for it while `-m` allows (dead items of the
    /// class in other stripes are reclaimed first, as memcached's one LRU per class would
    /// have found them).
    fn take_or_grow(&self, own: usize, c: usize, now: RelTime) -> bool {
        if self.slabs.take(c) {
            return true;
        }
        if !self.slabs.can_grow(c) {
            return false;
        }
        let class = c as u8;
        if self.elsewhere(own, |t| self.pull_tail(t, class, false, now) > 0) && self.slabs.take(c) {
            return true;
        }
        self.slabs.grow(c) && self.slabs.take(c)
    }

    /// Finds one chunk of class `c` for an item being stored into stripe `s` (number
    /// `own`), as memcached's `do_item_alloc_pull` does without its LRU maintainer: reclaim
    /// dead items at the cold end, take a free chunk or a new page, else evict the coldest
    /// item of the class (in this stripe, else in another one) and try again.
    fn alloc_chunk(&self, s: &mut Stripe, own: usize, c: usize, now: RelTime) -> bool {
        let class = c as u8;
        let mut tries = 0;
        let mut got = false;
        while tries < EVICT_TRIES {
            self.pull_tail(s, class, false, now);
            if self.take_or_grow(own, c, now) {
                got = true;
                break;
            }
            let freed = self.evict_oldest(s, own, class, now);
            if !freed {
                break;
            }
            tries += 1;
        }
        if tries > 0 {
            s.class_mut(class).direct_reclaims += tries as u64;
        }
        got
    }

    /// Takes every chunk of `l` (the last chunk of a large item falls back to the largest
    /// class, as in memcached); `None` (and nothing taken) when memory cannot be found.
    fn alloc(&self, s: &mut Stripe, own: usize, l: Layout, now: RelTime) -> Option<Layout> {
        let classes = self.slabs.classes();
        let mut got = l;
        let mut taken: Vec<usize> = Vec::new();
        let mut ok = true;
        'outer: for (c, n) in classes.chunks(&l) {
            for _ in 0..n {
                if self.alloc_chunk(s, own, c, now) {
                    taken.push(c);
                } else if c == usize::from(l.last)
                    && c != classes.largest()
                    && self.alloc_chunk(s, own, classes.largest(), now)
                {
                    taken.push(classes.largest());
                    got.last = classes.largest() as u8;
                } else {
                    ok = false;
                    break 'outer;
                }
            }
        }
        if ok {
            return Some(got);
        }
        for c in taken {
            self.slabs.give(c, 1);
        }
        s.class_mut(l.class).outofmemory += 1;
        None
    }

    /// Reads `key`: `f` sees the item (it counts as a get hit, and is refreshed in its LRU).
    pub fn get<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(Item<'_>) -> R) -> Option<R> {
        self.read(key, now, None, f)
    }

    /// Sets the expiry of `key` to `exptime` and reads it (`gat`, `touch`; a touch hit).
    pub fn touch<R>(
        &self,
        key: &[u8],
        exptime: RelTime,
        now: RelTime,
        f: impl FnOnce(Item<'_>) -> R,
    ) -> Option<R> {
        self.read(key, now, Some(exptime), f)
    }

    /// A get (`touch` None) or touch: the hot path, one lookup and one pass over the item.
    fn read<R>(
        &self,
        key: &[u8],
        now: RelTime,
        touch: Option<RelTime>,
        f: impl FnOnce(Item<'_>) -> R,
    ) -> Option<R> {
        self.with_stripe(key, |s, hash, _| {
            let i = self.lookup(s, hash, key, now)?;
            let e = s.entry_mut(i)?;
            let class = e.layout.class;
            let relink = mark_read(e, now);
            if let Some(t) = touch {
                e.exptime = t;
            }
            let r = f(Item::of(e));
            if relink {
                s.bump(i);
            }
            let c = s.class_mut(class);
            match touch {
                None => c.get_hits += 1,
                Some(_) => c.touch_hits += 1,
            }
            Some(r)
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
        self.update(
            &Update {
                mode,
                key,
                flags,
                exptime,
                value,
                key_binary: false,
                invalidate: false,
            },
            now,
        )
    }

    /// Counts a store command whose data was refused after it was read (bad data chunk):
    /// memcached counts `cmd_set` for the item it had allocated.
    pub fn count_set(&self, key: &[u8], flags: u32, vlen: usize) {
        if let Some(l) = self.slabs.classes().layout(key.len(), flags, vlen) {
            self.with_stripe(key, |s, _, _| s.class_mut(l.class).cmd_set += 1);
        }
    }

    /// Stores as `u` says, with memcached's `do_store_item` rules.
    pub fn update(&self, u: &Update<'_>, now: RelTime) -> StoreOutcome {
        let classes = self.slabs.classes();
        let Some(layout) = classes.layout(u.key.len(), u.flags, u.value.len()) else {
            return StoreOutcome::TooLarge;
        };
        self.with_stripe(u.key, |s, hash, own| {
            s.class_mut(layout.class).cmd_set += 1;
            // memcached allocates the new item before looking at the old one; when the old
            // one would simply give its chunk back to a class with chunks to spare, the
            // two steps cancel out and are skipped.
            let concat = matches!(u.mode, SetMode::Append(_) | SetMode::Prepend(_));
            let found = s.find(hash, u.key);
            let reuse = !concat
                && found.and_then(|i| s.entry(i)).is_some_and(|e| {
                    e.layout == layout
                        && !self.dead(e, now)
                        && self.slabs.has_free(usize::from(layout.class))
                });
            let mut got = layout;
            if reuse {
                // What memcached's allocator would have done first: reclaim dead items at
                // the cold end of the class.
                self.pull_tail(s, layout.class, false, now);
            } else {
                match self.alloc(s, own, layout, now) {
                    Some(l) => got = l,
                    None => {
                        if u.mode == SetMode::Set {
                            // A failed set must not leave the old value behind.
                            if let Some(i) = self.lookup(s, hash, u.key, now) {
                                self.remove(s, i);
                            }
                        }
                        return StoreOutcome::NoMemory;
                    }
                }
            }
            // Chunks of the new item to give back unless it is linked.
            let release = |store: &Store, got: &Layout| {
                if !reuse {
                    store.slabs.give_layout(got);
                }
            };
            // Making room only removes items: the slot found still holds the key, or
            // nothing. A dead item there is reclaimed: its memory goes to the new one.
            let mut old = if reuse {
                found
            } else {
                found.filter(|&i| s.entry(i).is_some_and(|e| &*e.key == u.key))
            };
            if let Some(i) =
                old.filter(|&i| !reuse && s.entry(i).is_some_and(|e| self.dead(e, now)))
            {
                self.reclaim(s, i);
                old = None;
            }
            let it_cas = match u.mode {
                SetMode::Cas(c) | SetMode::Append(c) | SetMode::Prepend(c) => c,
                _ => 0,
            };
            let mut value = None;
            let mut flags = u.flags;
            let mut exptime = u.exptime;
            let mut keep = u8::from(u.key_binary) * bits::KEY_BINARY;
            let found = old
                .and_then(|i| s.entry(i))
                .map(|e| (e.cas, e.layout.class, e.exptime, e.bits, e.flags));
            match (u.mode, found) {
                (SetMode::Add, Some(_)) => {
                    if let Some(i) = old {
                        refresh(s, i, now);
                    }
                    release(self, &got);
                    return StoreOutcome::NotStored;
                }
                (SetMode::Cas(_), None) => {
                    release(self, &got);
                    return StoreOutcome::NotFound;
                }
                (SetMode::Replace | SetMode::Append(_) | SetMode::Prepend(_), None) => {
                    release(self, &got);
                    return StoreOutcome::NotStored;
                }
                (SetMode::Cas(_), Some((cas, class, old_exptime, old_bits, _))) => {
                    if cas == it_cas {
                        s.class_mut(class).cas_hits += 1;
                    } else if u.invalidate && it_cas < cas {
                        // A stale value replaces the item but keeps its expiry, marked
                        // stale, with its recache token.
                        exptime = old_exptime;
                        keep |= bits::STALE | (old_bits & bits::TOKEN_SENT);
                        s.class_mut(class).cas_hits += 1;
                    } else {
                        s.class_mut(class).cas_badval += 1;
                        release(self, &got);
                        return StoreOutcome::Exists;
                    }
                }
                (
                    SetMode::Append(_) | SetMode::Prepend(_),
                    Some((cas, _, old_exptime, _, old_flags)),
                ) => {
                    if it_cas != 0 && it_cas != cas {
                        release(self, &got);
                        return StoreOutcome::Exists;
                    }
                    let old_value = old
                        .and_then(|i| s.entry(i))
                        .map_or(&[][..], |e| &e.value[..]);
                    let mut v = Vec::with_capacity(old_value.len() + u.value.len());
                    if matches!(u.mode, SetMode::Append(_)) {
                        v.extend_from_slice(old_value);
                        v.extend_from_slice(u.value);
                    } else {
                        v.extend_from_slice(u.value);
                        v.extend_from_slice(old_value);
                    }
                    flags = old_flags;
                    exptime = old_exptime;
                    // The combined item is a new allocation (memcached's does not carry
                    // the base64-key mark).
                    keep = 0;
                    let Some(l) = classes.layout(u.key.len(), flags, v.len()) else {
                        release(self, &got);
                        return StoreOutcome::NotStored;
                    };
                    let combined = self.alloc(s, own, l, now);
                    // The appended data's own chunks go back either way.
                    release(self, &got);
                    match combined {
                        Some(l) => got = l,
                        None => return StoreOutcome::NotStored,
                    }
                    value = Some(v);
                }
                _ => {}
            }
            if let Some(i) = old {
                if reuse {
                    s.unlink(i);
                } else {
                    self.remove(s, i);
                }
            }
            let cas = self.next_cas();
            let value = value.unwrap_or_else(|| u.value.to_vec());
            s.link(Entry::new(
                u.key, value, hash, flags, exptime, now, cas, got, keep,
            ));
            StoreOutcome::Stored(cas)
        })
    }

    /// Removes `key` if present (a non-zero `cas` must match).
    pub fn delete(&self, key: &[u8], cas: u64, now: RelTime) -> DeleteOutcome {
        self.access(key, now, |a| match a.item() {
            None => DeleteOutcome::NotFound,
            Some(it) if cas != 0 && it.cas != cas => DeleteOutcome::Exists,
            Some(_) => {
                a.remove();
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
        self.access(key, now, |a| a.delta(incr, delta, cas))
    }

    /// Drops `key` without counting anything but a lazy expiry (a set refused for its size
    /// must not leave stale data).
    pub fn unlink(&self, key: &[u8], now: RelTime) {
        self.with_stripe(key, |s, hash, _| {
            if let Some(i) = self.lookup(s, hash, key, now) {
                self.remove(s, i);
            }
        });
    }

    /// `flush_all`: items last accessed at or before `oldest_live` are invalid once that
    /// time has come; when it has already come, so are items stored until now (memcached
    /// marks them by CAS). 0 cancels a pending flush.
    pub fn flush_all(&self, oldest_live: RelTime, now: RelTime) {
        self.oldest_live.store(oldest_live, Ordering::Relaxed);
        if oldest_live <= now {
            let cas = self.next_cas();
            self.oldest_cas.store(cas, Ordering::Relaxed);
        }
    }

    /// Runs `f` with the locked item of `key` (looked up as a read: nothing is bumped or
    /// counted unless `f` says so).
    pub fn access<R>(&self, key: &[u8], now: RelTime, f: impl FnOnce(&mut Access<'_>) -> R) -> R {
        self.with_stripe(key, |s, hash, own| {
            let idx = self.lookup(s, hash, key, now);
            f(&mut Access {
                store: self,
                stripe: s,
                own,
                hash,
                key,
                idx,
                now,
            })
        })
    }

    /// Counters, summed over stripes and classes.
    pub fn stats(&self) -> StoreStats {
        let mut t = StoreStats {
            limit_maxbytes: self.config.max_bytes as u64,
            total_malloced: self.slabs.malloced() as u64,
            ..StoreStats::default()
        };
        for m in self.stripes.iter() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            t.total_items += s.total_items;
            t.get_expired += s.get_expired;
            t.get_flushed += s.get_flushed;
            for c in &s.cls {
                t.classes.add(c);
            }
        }
        t.curr_items = t.classes.number;
        t.bytes = t.classes.mem_requested;
        t.classes.age = 0;
        t.classes.evicted_time = 0;
        t
    }

    /// Per-class counters summed over stripes, indexed by class (0 is unused).
    pub fn class_stats(&self, now: RelTime) -> Vec<ClassStats> {
        let mut v = vec![ClassStats::default(); self.slabs.classes().largest() + 1];
        for m in self.stripes.iter() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            for (t, c) in v.iter_mut().zip(s.class_stats(now)) {
                t.add(&c);
            }
        }
        v
    }

    /// `stats reset`: every counter to zero.
    pub fn reset_stats(&self) {
        for m in self.stripes.iter() {
            m.lock().unwrap_or_else(|p| p.into_inner()).reset_stats();
        }
    }

    /// Up to `limit` (0: all) items of class `c`, most recently used first (as one LRU
    /// list: by access time, then by CAS): `f` sees each until it returns false (`stats
    /// cachedump`); items with base64 keys are skipped.
    pub fn dump(&self, c: u8, limit: usize, mut f: impl FnMut(Item<'_>) -> bool) {
        let mut order: Vec<(RelTime, u64, usize, u32)> = Vec::new();
        for (k, m) in self.stripes.iter().enumerate() {
            let s = m.lock().unwrap_or_else(|p| p.into_inner());
            order.extend(
                s.class_items(c)
                    .filter(|(_, e)| !e.has(bits::KEY_BINARY))
                    .map(|(i, e)| (e.time, e.cas, k, i)),
            );
        }
        order.sort_unstable_by(|a, b| b.cmp(a));
        if limit != 0 {
            order.truncate(limit);
        }
        for (_, cas, k, i) in order {
            let s = self.lock(k);
            // Skip what changed since it was listed.
            if let Some(e) = s.entry(i).filter(|e| e.cas == cas) {
                if !f(Item::of(e)) {
                    return;
                }
            }
        }
    }
}

/// One key's item, locked, for the meta commands' steps ([`Store::access`]).
pub struct Access<'s> {
    store: &'s Store,
    stripe: &'s mut Stripe,
    own: usize,
    hash: u64,
    key: &'s [u8],
    idx: Option<u32>,
    now: RelTime,
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

/// memcached's `do_item_bump` on item `e` read at `now`: marks it fetched (active when it
/// was already); an item last refreshed more than a minute ago gets the current time, and
/// the caller moves it to the head of its list (true). Refreshing on every access would
/// cost a list relink per read for no difference in what is evicted.
fn mark_read(e: &mut Entry, now: RelTime) -> bool {
    if e.has(bits::FETCHED) {
        e.bits |= bits::ACTIVE;
    }
    e.bits |= bits::FETCHED;
    refresh_time(e, now)
}

/// memcached's `do_item_update`: true (and the time updated) when the item was last
/// refreshed more than a minute ago and should move to the head of its list.
fn refresh_time(e: &mut Entry, now: RelTime) -> bool {
    if e.time < now.saturating_sub(ITEM_UPDATE_INTERVAL) {
        e.time = now;
        return true;
    }
    false
}

/// [`refresh_time`], then the move to the head of the list.
fn refresh(s: &mut Stripe, i: u32, now: RelTime) {
    if s.entry_mut(i).is_some_and(|e| refresh_time(e, now)) {
        s.bump(i);
    }
}

#[cold]
fn unreachable_stripe() -> ! {
    // The index is reduced modulo the number of stripes, which is at least 1.
    panic!("stripe index out of range")
}

/// memcached's `safe_strtoull` on a stored value (as if followed by its CRLF): optional
/// leading white space, an optional sign, decimal digits, then white space or the end.
pub fn parse_counter(v: &[u8]) -> Option<u64> {
    if v.is_empty() {
        return None;
    }
    c_strtoull(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::slabs::PAGE_SIZE;

    fn store(bytes: usize) -> Store {
        Store::new(StoreConfig {
            stripes: 1,
            ..StoreConfig::new(bytes, 1024 * 1024)
        })
    }

    #[test]
    fn set_get_replace_and_cas() {
        let s = store(1 << 26);
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
        let st = s.stats();
        assert_eq!(st.classes.cas_hits, 1);
        assert_eq!(st.classes.cas_badval, 1);
        assert_eq!(st.classes.get_hits, 1);
    }

    #[test]
    fn lru_evicts_the_coldest_of_the_class_and_keeps_the_bound() {
        // 2 MiB: class 1 gets its first page and a second one, then memory is full.
        let s = store(2 * PAGE_SIZE);
        let per_page = s.slabs().classes().per_page(1) as usize;
        for i in 0..2 * per_page {
            let k = format!("k{i:06}");
            assert!(matches!(
                s.store(SetMode::Set, k.as_bytes(), 0, 0, b"x", 5),
                StoreOutcome::Stored(_)
            ));
        }
        // A read more than a minute later refreshes k000000, so k000001 is the coldest.
        assert!(s.get(b"k000000", 100, |_| ()).is_some());
        s.store(SetMode::Set, b"new", 0, 0, b"x", 100);
        assert!(s.get(b"k000000", 100, |_| ()).is_some());
        assert!(s.get(b"k000001", 100, |_| ()).is_none());
        let st = s.stats();
        assert_eq!(st.classes.evicted, 1);
        assert_eq!(st.total_malloced, 2 * PAGE_SIZE as u64);
    }

    #[test]
    fn expired_items_are_reused_before_memory_grows() {
        let s = store(64 * PAGE_SIZE);
        let big = vec![b'B'; 66560];
        for i in 0..10 {
            s.store(SetMode::Set, format!("key{i}").as_bytes(), 0, 12, &big, 10);
        }
        let before = s.stats().total_malloced;
        for i in 10..30 {
            s.store(SetMode::Set, format!("key{i}").as_bytes(), 0, 0, &big, 13);
        }
        let st = s.stats();
        // 12 chunks per page of class 31: 20 live items need 2 pages, not 3.
        assert_eq!(before, PAGE_SIZE as u64);
        assert_eq!(st.total_malloced, 2 * PAGE_SIZE as u64);
        assert_eq!(st.classes.reclaimed, 10);
        assert_eq!(st.curr_items, 20);
    }

    #[test]
    fn delta_wraps_floors_and_pads_in_place() {
        let s = store(1 << 26);
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
        s.store(SetMode::Set, b"g", 0, 0, b"9", 1);
        assert!(matches!(
            s.delta(b"g", true, 1, 0, 1),
            DeltaOutcome::Value(10, _)
        ));
        assert_eq!(s.get(b"g", 1, |i| i.value.to_vec()).unwrap(), b"10");
    }

    #[test]
    fn expiry_and_lazy_flush() {
        let s = store(1 << 26);
        s.store(SetMode::Set, b"a", 0, 12, b"1", 10);
        assert!(s.get(b"a", 11, |_| ()).is_some());
        assert!(s.get(b"a", 12, |_| ()).is_none());
        assert_eq!(s.stats().get_expired, 1);
        s.store(SetMode::Set, b"b", 0, 0, b"1", 10);
        // A flush due at 15 (items accessed up to 14 go).
        s.flush_all(14, 10);
        assert!(s.get(b"b", 13, |_| ()).is_some());
        assert!(s.get(b"b", 15, |_| ()).is_none());
        assert_eq!(s.stats().get_flushed, 1);
        s.store(SetMode::Set, b"c", 0, 0, b"1", 16);
        assert!(s.get(b"c", 17, |_| ()).is_some());
        // An immediate flush also takes what was stored in the same second.
        s.store(SetMode::Set, b"d", 0, 0, b"1", 20);
        s.flush_all(19, 20);
        s.store(SetMode::Set, b"e", 0, 0, b"1", 20);
        assert!(s.get(b"d", 20, |_| ()).is_none());
        assert!(s.get(b"e", 20, |_| ()).is_some());
    }

    #[test]
    fn appends_keep_flags_and_expiry_and_check_cas() {
        let s = store(1 << 26);
        s.store(SetMode::Set, b"a", 7, 100, b"x", 1);
        assert!(matches!(
            s.store(SetMode::Append(0), b"a", 0, 0, b"yz", 1),
            StoreOutcome::Stored(_)
        ));
        let (v, f, e, cas) = s
            .get(b"a", 1, |i| (i.value.to_vec(), i.flags, i.exptime, i.cas))
            .unwrap();
        assert_eq!((v.as_slice(), f, e), (&b"xyz"[..], 7, 100));
        assert_eq!(
            s.store(SetMode::Prepend(cas + 1), b"a", 0, 0, b"w", 1),
            StoreOutcome::Exists
        );
        assert_eq!(
            s.store(SetMode::Append(0), b"none", 0, 0, b"w", 1),
            StoreOutcome::NotStored
        );
    }
}
