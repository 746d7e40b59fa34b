//! memcached's slab classes, as accounting: which class an item falls in, how many chunks
//! of which classes it takes, and how many 1 MiB pages each class holds (no I/O, no items).
//!
//! The store keeps items in its own layout (hash tables and `Vec`s), but sizes are counted
//! as memcached counts them, so that `-m`, `stats slabs` and `stats items` mean what they
//! mean there. How to drive it:
//!
//! * [`SlabClasses::new`] computes the classes from the growth factor (`-f`), the minimum
//!   chunk (`-n`) and `-I`, as memcached's `slabs_init` does: the first chunk is the item
//!   header plus `-n` bytes, each next one the previous times the factor, 8-byte aligned,
//!   up to half a page; the last class is half a page (`slab_chunk_max`).
//! * [`SlabClasses::layout`] says where an item goes: its LRU class and size (memcached's
//!   `ITEM_ntotal`) and its chunks. An item above `slab_chunk_max` is chunked as memcached
//!   chunks it: a header chunk in a small class, full chunks of the largest class, and a
//!   last chunk sized to what is left.
//! * [`Slabs`] counts pages and free chunks per class. [`Slabs::take`] takes a free chunk,
//!   [`Slabs::grow`] gives a class a new page while `-m` allows it (a class's first page is
//!   always granted, as in memcached), [`Slabs::give`] returns a chunk. Memory is never
//!   given back to the page pool: a class that had a page keeps it (`total_malloced` only
//!   grows, up to `-m`); reusing chunks of expired and evicted items is the store's job.
//!
//! The counters are atomics shared by every core (one cache line per class); the store
//! touches them only when an item changes size class, is created or is removed.

use std::sync::atomic::{AtomicU32, AtomicUsize, Ordering};

/// memcached's item header (`sizeof(item)` on a 64-bit build).
pub const ITEM_HEADER: usize = 48;
/// memcached's chunk header (`sizeof(item_chunk)`), in front of every chunk of a large item.
pub const CHUNK_HEADER: usize = 48;
/// The CAS value stored with every item.
pub const CAS_SIZE: usize = 8;
/// Chunk sizes are multiples of this.
pub const CHUNK_ALIGN: usize = 8;
/// memcached's `MAX_NUMBER_OF_SLAB_CLASSES`: classes are numbered 1 to 63.
pub const MAX_CLASSES: usize = 64;
/// The page every class is carved from (memcached's `slab_page_size`).
pub const PAGE_SIZE: usize = 1024 * 1024;

/// The size memcached gives an item (`ITEM_ntotal` with CAS): header, key and a NUL, the
/// client flags when not zero, the value with its CRLF, the CAS.
pub fn item_total(nkey: usize, flags: u32, vlen: usize) -> usize {
    ITEM_HEADER + nkey + 1 + suffix(flags) + vlen + 2 + CAS_SIZE
}

fn suffix(flags: u32) -> usize {
    if flags != 0 { 4 } else { 0 }
}

/// How the classes are cut.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SlabConfig {
    /// Growth factor between classes (`-f`, memcached's default 1.25).
    pub factor: f64,
    /// Space for key, value and flags in the smallest chunk (`-n`, default 48).
    pub min_chunk: usize,
    /// Largest item (`-I`).
    pub item_max: usize,
    /// Memory limit in bytes (`-m`).
    pub max_bytes: usize,
}

impl Default for SlabConfig {
    fn default() -> Self {
        Self {
            factor: 1.25,
            min_chunk: 48,
            item_max: 1024 * 1024,
            max_bytes: 64 * 1024 * 1024,
        }
    }
}

/// Where an item's memory is: its LRU class and the chunks it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Layout {
    /// The class whose LRU the item is on and whose figures count it (`items:N:`).
    pub class: u8,
    /// The class of its one chunk, or of its header chunk when it is chunked.
    pub head: u8,
    /// Full chunks of the largest class (chunked items only).
    pub full: u32,
    /// The class of the last, partly used chunk of a chunked item (0: none).
    pub last: u8,
}

impl Layout {
    /// Whether the item is split into chunks (memcached's `ITEM_CHUNKED`).
    pub fn chunked(&self) -> bool {
        self.full > 0 || self.last != 0
    }
}

/// The classes: chunk size and chunks per page of each. See the module docs.
#[derive(Debug, Clone)]
pub struct SlabClasses {
    size: [u32; MAX_CLASSES],
    perslab: [u32; MAX_CLASSES],
    largest: usize,
    chunk_max: usize,
    item_max: usize,
}

impl SlabClasses {
    /// The classes memcached makes for this configuration.
    pub fn new(cfg: &SlabConfig) -> Self {
        let chunk_max = PAGE_SIZE / 2;
        let mut size_of = [0u32; MAX_CLASSES];
        let mut perslab = [0u32; MAX_CLASSES];
        let mut size = (ITEM_HEADER + cfg.min_chunk) as f64;
        let mut i = 1;
        while i < MAX_CLASSES - 1 {
            if size >= chunk_max as f64 / cfg.factor {
                break;
            }
            let mut s = size as usize;
            if s % CHUNK_ALIGN != 0 {
                s += CHUNK_ALIGN - s % CHUNK_ALIGN;
            }
            size_of[i] = s as u32;
            perslab[i] = (PAGE_SIZE / s) as u32;
            // memcached multiplies the aligned size, truncating to an integer.
            size = ((s as f64) * cfg.factor).trunc();
            i += 1;
        }
        size_of[i] = chunk_max as u32;
        perslab[i] = (PAGE_SIZE / chunk_max) as u32;
        Self {
            size: size_of,
            perslab,
            largest: i,
            chunk_max,
            item_max: cfg.item_max,
        }
    }

    /// The number of the largest class.
    pub fn largest(&self) -> usize {
        self.largest
    }

    /// Chunk size of class `c` (0 for no class).
    pub fn chunk_size(&self, c: usize) -> u32 {
        self.size.get(c).copied().unwrap_or(0)
    }

    /// Chunks per page of class `c`.
    pub fn per_page(&self, c: usize) -> u32 {
        self.perslab.get(c).copied().unwrap_or(0)
    }

    /// The largest chunk (memcached's `slab_chunk_max`).
    pub fn chunk_max(&self) -> usize {
        self.chunk_max
    }

    /// memcached's `slabs_clsid`: the smallest class a `size`-byte item fits in (the largest
    /// class for items above it, which are chunked); 0 when `size` is 0 or above `-I`.
    pub fn class_of(&self, size: usize) -> usize {
        if size == 0 || size > self.item_max {
            return 0;
        }
        // The sizes grow with the class: the first one that fits.
        let sizes = &self.size[1..=self.largest];
        1 + sizes
            .partition_point(|&s| (s as usize) < size)
            .min(self.largest - 1)
    }

    /// Where an item with this key length, flags and value length goes; `None` above `-I`.
    pub fn layout(&self, nkey: usize, flags: u32, vlen: usize) -> Option<Layout> {
        let ntotal = item_total(nkey, flags, vlen);
        let class = self.class_of(ntotal);
        if class == 0 {
            return None;
        }
        if ntotal <= self.chunk_max {
            return Some(Layout {
                class: class as u8,
                head: class as u8,
                full: 0,
                last: 0,
            });
        }
        // A header chunk (the item header, key, flags, CAS and one chunk header), then the
        // value with its CRLF in chunks of at most `chunk_max` (each with its own header).
        let head = self.class_of(ITEM_HEADER + nkey + 1 + suffix(flags) + CAS_SIZE + CHUNK_HEADER);
        let room = self.chunk_max - CHUNK_HEADER;
        let mut remain = vlen + 2;
        let mut full = 0;
        let mut last = 0;
        while remain > 0 {
            if remain + CHUNK_HEADER >= self.chunk_max {
                full += 1;
                remain -= remain.min(room);
            } else {
                last = self.class_of(remain + CHUNK_HEADER);
                remain = 0;
            }
        }
        Some(Layout {
            class: class as u8,
            head: head as u8,
            full,
            last: last as u8,
        })
    }

    /// The chunks of `l`, as (class, count) pairs.
    pub fn chunks(&self, l: &Layout) -> [(usize, u32); 3] {
        [
            (usize::from(l.head), 1),
            (self.largest, l.full),
            (usize::from(l.last), u32::from(l.last != 0)),
        ]
    }
}

/// Pages and free chunks per class, shared by every core. See the module docs.
#[derive(Debug)]
pub struct Slabs {
    classes: SlabClasses,
    limit: usize,
    malloced: AtomicUsize,
    pages: [AtomicU32; MAX_CLASSES],
    free: [AtomicU32; MAX_CLASSES],
}

/// One class's page figures (`stats slabs`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ClassPages {
    /// Pages given to the class.
    pub pages: u32,
    /// Chunks not in use.
    pub free: u32,
}

impl Slabs {
    /// No pages yet; at most `max_bytes` of pages (plus one first page per class).
    pub fn new(cfg: &SlabConfig) -> Self {
        Self {
            classes: SlabClasses::new(cfg),
            limit: cfg.max_bytes,
            malloced: AtomicUsize::new(0),
            pages: std::array::from_fn(|_| AtomicU32::new(0)),
            free: std::array::from_fn(|_| AtomicU32::new(0)),
        }
    }

    /// The classes.
    pub fn classes(&self) -> &SlabClasses {
        &self.classes
    }

    /// The memory limit.
    pub fn limit(&self) -> usize {
        self.limit
    }

    /// Bytes of pages handed out (memcached's `total_malloced`).
    pub fn malloced(&self) -> usize {
        self.malloced.load(Ordering::Relaxed)
    }

    /// Takes a free chunk of class `c`; false when there is none.
    pub fn take(&self, c: usize) -> bool {
        self.free.get(c).is_some_and(|f| {
            f.fetch_update(Ordering::AcqRel, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
        })
    }

    /// Whether class `c` has a free chunk now (a hint: another core may take it).
    pub fn has_free(&self, c: usize) -> bool {
        self.free
            .get(c)
            .is_some_and(|f| f.load(Ordering::Relaxed) > 0)
    }

    /// Whether [`Slabs::grow`] could give class `c` a page now.
    pub fn can_grow(&self, c: usize) -> bool {
        let first = self
            .pages
            .get(c)
            .is_some_and(|p| p.load(Ordering::Relaxed) == 0);
        first || self.malloced() + PAGE_SIZE <= self.limit
    }

    /// Gives class `c` a new page of free chunks, as memcached's `do_slabs_newslab`: refused
    /// once `-m` is reached, except for a class that has no page yet.
    pub fn grow(&self, c: usize) -> bool {
        let (Some(pages), Some(free)) = (self.pages.get(c), self.free.get(c)) else {
            return false;
        };
        if c == 0 || c > self.classes.largest {
            return false;
        }
        let first = pages.load(Ordering::Relaxed) == 0;
        let limit = self.limit;
        let granted = self
            .malloced
            .fetch_update(Ordering::AcqRel, Ordering::Relaxed, |m| {
                (first || m + PAGE_SIZE <= limit).then_some(m + PAGE_SIZE)
            })
            .is_ok();
        if granted {
            pages.fetch_add(1, Ordering::Relaxed);
            free.fetch_add(self.classes.per_page(c), Ordering::AcqRel);
        }
        granted
    }

    /// Returns `n` chunks of class `c`.
    pub fn give(&self, c: usize, n: u32) {
        if let Some(f) = self.free.get(c) {
            f.fetch_add(n, Ordering::AcqRel);
        }
    }

    /// Returns every chunk of `l`.
    pub fn give_layout(&self, l: &Layout) {
        for (c, n) in self.classes.chunks(l) {
            if n > 0 {
                self.give(c, n);
            }
        }
    }

    /// Class `c`'s pages and free chunks.
    pub fn class_pages(&self, c: usize) -> ClassPages {
        ClassPages {
            pages: self.pages.get(c).map_or(0, |p| p.load(Ordering::Relaxed)),
            free: self.free.get(c).map_or(0, |f| f.load(Ordering::Relaxed)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_classes_are_memcacheds() {
        let c = SlabClasses::new(&SlabConfig::default());
        // memcached 1.6 -vv: class 1 is 96 bytes (10922 per page), ... class 39 is 512 KiB.
        assert_eq!((c.chunk_size(1), c.per_page(1)), (96, 10922));
        assert_eq!(c.chunk_size(2), 120);
        assert_eq!(c.chunk_size(3), 152);
        assert_eq!(c.chunk_size(30), 66232);
        assert_eq!(c.chunk_size(31), 82792);
        assert_eq!(c.largest(), 39);
        assert_eq!((c.chunk_size(39), c.per_page(39)), (524_288, 2));
        assert_eq!(c.class_of(96), 1);
        assert_eq!(c.class_of(97), 2);
        assert_eq!(c.class_of(1024 * 1024), 39);
        assert_eq!(c.class_of(1024 * 1024 + 1), 0);
    }

    #[test]
    fn factor_and_min_chunk_change_the_classes() {
        let c = SlabClasses::new(&SlabConfig {
            factor: 2.0,
            min_chunk: 100,
            ..SlabConfig::default()
        });
        assert_eq!(c.chunk_size(1), 152);
        assert_eq!(c.chunk_size(2), 304);
        assert_eq!(c.chunk_size(c.largest()), 524_288);
        assert!(c.largest() < 20);
    }

    #[test]
    fn large_items_are_chunked() {
        let c = SlabClasses::new(&SlabConfig::default());
        let small = c.layout(3, 0, 100).unwrap();
        assert!(!small.chunked());
        assert_eq!(small.class, small.head);
        let big = c.layout(3, 0, 1024 * 1024 - 250).unwrap();
        assert!(big.chunked());
        assert_eq!(usize::from(big.class), c.largest());
        // 1048328 bytes with the CRLF: one full chunk, and the rest (524088 bytes plus a
        // chunk header) is still above class 38: a second largest-class chunk.
        assert_eq!((big.full, usize::from(big.last)), (1, c.largest()));
        let mid = c.layout(3, 0, 600_000).unwrap();
        assert_eq!(mid.full, 1);
        assert_eq!(usize::from(mid.last), c.class_of(600_002 - 524_240 + 48));
        assert!(c.layout(3, 0, 1024 * 1024).is_none());
    }

    #[test]
    fn pages_stop_at_the_limit_but_every_class_gets_one() {
        let s = Slabs::new(&SlabConfig {
            max_bytes: 2 * PAGE_SIZE,
            ..SlabConfig::default()
        });
        assert!(!s.take(1));
        assert!(s.grow(1));
        assert!(s.take(1));
        assert!(s.grow(1));
        assert!(!s.grow(1));
        assert!(s.grow(5), "a class's first page is always granted");
        assert_eq!(s.malloced(), 3 * PAGE_SIZE);
        assert_eq!(s.class_pages(1).pages, 2);
        s.give(1, 1);
        assert_eq!(s.class_pages(1).free, 2 * 10922);
    }
}
