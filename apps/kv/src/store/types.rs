//! What the store takes and gives: its configuration, items, modes and outcomes.

use crate::clock::RelTime;
use crate::slabs::{SlabConfig, item_total};
use crate::stripe::{ClassStats, Entry, bits};

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
    pub(super) fn of(e: &'a Entry) -> Self {
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
