//! `megatcp-kv`: a memcached-compatible key-value server on megatcp's channel API.
//!
//! Real memcached clients talk to it unchanged: the text protocol (get, gets, gat, gats,
//! set, add, replace, append, prepend, cas, delete, incr, decr, touch, flush_all, version,
//! verbosity, stats, quit, `mn`, `noreply`) and the binary protocol (quiet variants
//! included) with memcached 1.6's responses, error strings and status codes.
//!
//! # Layers
//!
//! * [`text`] and [`binary`]: the protocols, no I/O (parsers and encoders, fuzzed in
//!   `tests/fuzz.rs`).
//! * [`store`]: the cache. One logical store for all cores, memory-bounded (`-m`, counted
//!   as memcached counts item sizes) with LRU eviction, expiry, CAS, incr/decr.
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
//!   over its own hash table, LRU list and `1/N` of the memory. Any core serves any key;
//!   cores only contend when they touch the same stripe at the same instant.
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
//! With one lock, a second core makes the store *slower* than one core alone (the lock's
//! cache line bounces on every operation); with 32 stripes two cores get 2.3x the
//! single-lock throughput and 1.5x one core alone. At ~60-90 ns per operation the store is
//! far from the bottleneck of a server doing ~1 M requests/s per core, and any core serves
//! any key with no forwarding. The number of stripes is the largest power of two up to 64
//! that leaves each stripe room for two maximum-size items (32 with `-m 64 -I 1m`).
//!
//! # Deliberate differences from memcached
//!
//! * Text-protocol keys with control characters are refused (`CLIENT_ERROR bad command
//!   line format`); memcached does not check, the protocol forbids them.
//! * Memory is not slab-allocated: `-m` bounds the sum of item sizes (memcached's
//!   `ITEM_ntotal` plus 16 bytes of index per item); each stripe has its own LRU (memcached
//!   has one per slab class). `stats items`/`stats slabs` report one class.
//! * A `get`/`gets` line may be up to 256 KiB (memcached: unbounded); longer closes.
//! * An unknown binary opcode swallows the rest of its body (memcached swallows the whole
//!   body length again after having read the key and extras).
//! * Meta commands other than `mn` are not implemented (`ERROR`).

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
pub mod store;
pub mod stripe;
pub mod text;
mod text_exec;

pub use server::{ServerStats, serve};
pub use session::{Flow, Session};
pub use state::{Kv, Settings};
pub use store::{Store, StoreConfig};
