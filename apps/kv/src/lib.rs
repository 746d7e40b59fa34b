//! `megatcp-kv`: a memcached-compatible key-value server on megatcp's channel API.
//!
//! Real memcached clients talk to it unchanged: the text protocol (get, gets, gat, gats,
//! set, add, replace, append, prepend, cas, delete, incr, decr, touch, flush_all, version,
//! verbosity, stats, slabs automove, quit, `noreply`), the meta protocol (`mg`, `ms`,
//! `md`, `ma`, `me`, `mn` with every flag of memcached 1.6.18) and the binary protocol
//! (quiet variants and `STAT` groups included), with memcached 1.6's responses, error
//! strings and status codes, and memcached's statistics (`stats`, `settings`, `items`,
//! `slabs`, `sizes`, `conns`, `detail`, `cachedump`), memory counted in its slab classes.
//!
//! # Layers
//!
//! * [`text`], [`meta`] and [`binary`]: the protocols, no I/O (parsers and encoders,
//!   fuzzed in `tests/fuzz.rs`), run against the store by `text_exec` and `binary_exec`;
//!   [`stats`] builds the reports ([`prefixes`]: `stats detail`; [`conns`]: `stats conns`).
//! * [`store`]: the cache. One logical store for all cores ([`stripe`]: one of its
//!   stripes), memory-bounded as memcached bounds it ([`slabs`]: its slab classes, as
//!   accounting), LRU eviction per class, expiry, lazy flush, CAS, incr/decr.
//! * [`session`]: one connection, sans-I/O: bytes in, responses out; partial and pipelined
//!   requests; bounded buffers (a 2 GiB value announcement is answered and swallowed).
//! * [`server`]: the loop on the channel API, generic over the backend.
//! * [`load`]: a load generator on the channel API (verifies every response).
//!
//! # How the cores share the store
//!
//! A SET on one core must be visible to a GET on any other. Two designs were weighed:
//!
//! * **Striped store** (chosen): the key's hash picks one of `N` stripes, each a `Mutex`
//!   over its own hash table and LRU lists (one per slab class); the slab pages are
//!   counted for all stripes together. Any core serves any key; cores only contend when
//!   they touch the same stripe at the same instant.
//! * **Key ownership with forwarding** (Seastar-style): each core owns a partition and
//!   requests for other cores' keys travel over SPSC rings. No locks, but with N cores a
//!   fraction `(N-1)/N` of requests pays a cross-core hop both ways, and a request's
//!   response must wait for another core's loop (latency tied to the slowest core); the
//!   channel API has no cross-core message path yet.
//!
//! Measured (`cargo bench -p megatcp-kv --bench store`: each thread runs 10,000
//! operations, 90 % get / 10 % set, uniform over 10,000 keys, 64 B values, on one shared
//! store; 2-core VM shared with other builds, criterion medians):
//!
//! | threads | stripes | time per iteration | operations/s |
//! |---------|---------|--------------------|--------------|
//! | 1       | 1       | 0.88 ms            | 11.4 M       |
//! | 2       | 1       | 2.62 ms            | 7.6 M        |
//! | 2       | 32      | 1.15 ms            | 17.4 M       |
//!
//! (Measured before memory was counted in slab classes. With the classes, one thread doing
//! 90 % get / 10 % set over 10,000 keys of 64 B costs the same per operation within the
//! machine's noise, 73-92 ns against 69-90 ns before, and 3 % more instructions, counted
//! with `valgrind --tool=cachegrind`.)
//!
//! With one lock, a second core makes the store *slower* than one core alone (the lock's
//! cache line bounces on every operation); with 32 stripes two cores get 2.3x the
//! single-lock throughput and 1.5x one core alone. At ~60-90 ns per operation the store is
//! far from the bottleneck of a server doing ~1 M requests/s per core, and any core serves
//! any key with no forwarding. The number of stripes is the largest power of two up to 64
//! with `-m` at least two maximum-size items per stripe (32 with `-m 64 -I 1m`): a small
//! cache has few stripes, so each class's LRU order is split in few parts.
//!
//! # Deliberate differences from memcached
//!
//! memcached 1.6's own test files run against both (`scripts/memcached-suite`); where the
//! answers differ, it is one of these:
//!
//! * The server works as memcached does without its background threads (`-o
//!   no_lru_maintainer,no_lru_crawler,no_slab_reassign`), and reports in that format: one
//!   LRU per slab class (no hot/warm/cold figures), no crawler, pages never moved between
//!   classes (`slabs reassign` answers "disabled"; `slabs automove` is recorded and
//!   reported, to no effect). Expired items are reclaimed when found, when their memory
//!   is needed, or when a store replaces them (counted `reclaimed`), not in the background.
//! * Items live in the store's own layout; their sizes are counted in memcached's slab
//!   classes (`-m` bounds pages of chunks, as in memcached), so the process's real memory
//!   is about the sum of item sizes plus the index, not `-m`.
//! * Each class's LRU is split over the stripes: dead items are reclaimed from a stripe's
//!   own part of a class (from all parts before memory grows), evictions take the coldest
//!   item over all parts. An item read twice is spared once from eviction (memcached's
//!   segmented LRU keeps active items; its compatibility mode does not).
//! * `stats conns` numbers connections from 16 (memcached: file descriptors) and shows the
//!   listening address as `0.0.0.0`; `stats sizes` is always disabled (no
//!   `sizes_enable`); `hash_algorithm` is `foldhash`.
//! * Text-protocol keys with control characters are refused (`CLIENT_ERROR bad command
//!   line format`); memcached does not check, the protocol forbids them.
//! * A `get`/`gets` line may be up to 256 KiB (memcached: unbounded); longer closes.
//! * A value above `-I` is answered at once (memcached answers after its bytes arrived).
//! * An unknown binary opcode swallows the rest of its body (memcached swallows the whole
//!   body length again after having read the key and extras).
//! * Not implemented (answered `ERROR`): `watch`, `lru`, `lru_crawler`, `extstore`,
//!   `cache_memlimit`, `shutdown`, the debug build's `debugtime`; SASL, TLS, UDP and unix
//!   sockets.

#![forbid(unsafe_code)]

pub mod base64;
pub mod binary;
mod binary_exec;
pub mod clock;
pub mod conns;
pub mod load;
pub mod meta;
pub mod numbers;
pub mod prefixes;
pub mod server;
pub mod session;
pub mod slabs;
pub mod state;
pub mod stats;
mod step;
pub mod store;
pub mod stripe;
pub mod text;
mod text_exec;
pub mod verbose;

pub use server::{ServerStats, serve};
pub use session::{Flow, Session};
pub use state::{Kv, Settings};
pub use store::{Store, StoreConfig};
