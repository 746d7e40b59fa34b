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
use crate::slabs::{Layout, Slabs};
use crate::stripe::{ClassStats, Entry, Stripe, bits};

mod access;
mod types;

pub use access::Access;
pub use types::{
    DeleteOutcome, DeltaOutcome, Hit, Item, SetMode, StoreConfig, StoreOutcome, StoreStats, Update,
};

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
mod tests;
