//! What every core shares: the store, the clock, the settings, the counters behind `stats`
//! (the reports themselves are built in `stats.rs`).
//!
//! How to drive it: build one [`Kv`] (from [`Settings`]) before starting the cores and hand
//! each core a reference. Sessions count into a per-connection [`Local`] and add it to the
//! shared [`Counters`] once per batch of input ([`Local::flush`]), so the shared atomics are
//! touched once per read, not once per command.

use std::net::Ipv4Addr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use crate::conns::Conns;
use crate::prefixes::{Op, Prefixes};

use crate::clock::{Clock, RelTime};
use crate::store::{Store, StoreConfig};

/// The version we report (`version`, `stats`): memcached's protocol level, our name.
pub const VERSION: &str = "1.6.18-megatcp-kv";

/// memcached's highest verbosity level.
pub const MAX_VERBOSITY: u32 = 2;

/// Server settings (the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// TCP port (`-p`).
    pub port: u16,
    /// Listening address (`-l`; 0.0.0.0: every address).
    pub listen: Ipv4Addr,
    /// Memory limit, bytes (`-m`).
    pub max_bytes: usize,
    /// Largest item (`-I`).
    pub item_max: usize,
    /// Connection limit over all cores (`-c`).
    pub max_conns: usize,
    /// Cores serving.
    pub threads: usize,
    /// Listen backlog per core.
    pub backlog: u32,
    /// Verbosity (`-v`).
    pub verbose: u32,
    /// Growth factor of the slab classes (`-f`).
    pub factor: f64,
    /// Space for key, value and flags in the smallest chunk (`-n`).
    pub min_chunk: usize,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 11211,
            listen: Ipv4Addr::UNSPECIFIED,
            max_bytes: 64 * 1024 * 1024,
            item_max: 1024 * 1024,
            max_conns: 1024,
            threads: 1,
            backlog: 1024,
            verbose: 0,
            factor: 1.25,
            min_chunk: 48,
        }
    }
}

macro_rules! counters {
    ($($name:ident => $stat:literal,)*) => {
        /// The counters behind `stats`, in memcached's names.
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(missing_docs)]
        pub enum Ctr { $($name,)* }

        impl Ctr {
            /// All counters.
            pub const ALL: &'static [Ctr] = &[$(Ctr::$name,)*];

            /// memcached's name of the counter.
            pub fn name(self) -> &'static str {
                match self { $(Ctr::$name => $stat,)* }
            }
        }
    };
}

// The hit counters (get_hits, cmd_set, delete_hits, ...) are the store's, per slab class,
// as memcached keeps them; these are the rest.
counters! {
    CmdGet => "cmd_get",
    CmdFlush => "cmd_flush",
    CmdTouch => "cmd_touch",
    CmdMeta => "cmd_meta",
    GetMisses => "get_misses",
    DeleteMisses => "delete_misses",
    IncrMisses => "incr_misses",
    DecrMisses => "decr_misses",
    CasMisses => "cas_misses",
    TouchMisses => "touch_misses",
    StoreTooLarge => "store_too_large",
    StoreNoMemory => "store_no_memory",
    BytesRead => "bytes_read",
    BytesWritten => "bytes_written",
    TotalConnections => "total_connections",
    RejectedConnections => "rejected_connections",
}

const N: usize = 16;

/// Shared counters (relaxed atomics).
#[derive(Debug, Default)]
pub struct Counters([AtomicU64; N]);

impl Counters {
    /// A counter's value.
    pub fn get(&self, c: Ctr) -> u64 {
        self.0
            .get(c as usize)
            .map_or(0, |a| a.load(Ordering::Relaxed))
    }

    /// Adds to a counter.
    pub fn add(&self, c: Ctr, v: u64) {
        if let Some(a) = self.0.get(c as usize) {
            a.fetch_add(v, Ordering::Relaxed);
        }
    }

    fn reset(&self) {
        for a in &self.0 {
            a.store(0, Ordering::Relaxed);
        }
    }
}

/// One connection's counts, added to the shared ones in batches.
#[derive(Debug, Default, Clone)]
pub struct Local([u64; N]);

impl Local {
    /// Counts one.
    #[inline]
    pub fn inc(&mut self, c: Ctr) {
        self.add(c, 1);
    }

    /// Counts `v`.
    #[inline]
    pub fn add(&mut self, c: Ctr, v: u64) {
        if let Some(x) = self.0.get_mut(c as usize) {
            *x += v;
        }
    }

    /// Adds the counts to `to` and zeroes them.
    pub fn flush(&mut self, to: &Counters) {
        for (i, x) in self.0.iter_mut().enumerate() {
            if *x != 0 {
                if let Some(a) = to.0.get(i) {
                    a.fetch_add(*x, Ordering::Relaxed);
                }
                *x = 0;
            }
        }
    }
}

/// The process-wide state of the server. See the module docs.
#[derive(Debug)]
pub struct Kv {
    /// The cache.
    pub store: Store,
    /// The clock.
    pub clock: Clock,
    /// Settings.
    pub settings: Settings,
    /// Counters.
    pub counters: Counters,
    /// Connections open now.
    pub curr_connections: AtomicUsize,
    /// Verbosity (changed by the `verbosity` command).
    pub verbosity: AtomicU32,
    /// The open connections (`stats conns`).
    pub conns: Conns,
    /// `slabs automove` level: recorded and reported; pages are never moved between
    /// classes here, whatever it says.
    pub slab_automove: AtomicU32,
    /// `slabs automove ratio` (the bits of an `f64`), likewise.
    pub slab_automove_ratio: AtomicU64,
    /// Listeners up (one per core): the server is ready when all are.
    pub listening: AtomicUsize,
    /// The backend and the cores' live counters, for `stats megatcp`.
    pub node: OnceLock<Node>,
    detail: AtomicBool,
    prefixes: Mutex<Prefixes>,
    started: Instant,
}

/// What `stats megatcp` reports on: the backend and its cores' monitors.
#[derive(Debug, Clone)]
pub struct Node {
    /// The backend's name.
    pub backend: String,
    /// Each core's live counters.
    pub monitors: Arc<Vec<megatcp_launch::CoreMonitor>>,
}

impl Kv {
    /// The state for `settings`.
    pub fn new(settings: Settings) -> Self {
        let store = Store::new(StoreConfig {
            factor: settings.factor,
            min_chunk: settings.min_chunk,
            ..StoreConfig::new(settings.max_bytes, settings.item_max)
        });
        Self {
            store,
            clock: Clock::start(),
            verbosity: AtomicU32::new(settings.verbose),
            settings,
            counters: Counters::default(),
            curr_connections: AtomicUsize::new(0),
            conns: Conns::default(),
            slab_automove: AtomicU32::new(0),
            slab_automove_ratio: AtomicU64::new(0.8f64.to_bits()),
            listening: AtomicUsize::new(0),
            node: OnceLock::new(),
            detail: AtomicBool::new(false),
            prefixes: Mutex::new(Prefixes::default()),
            started: Instant::now(),
        }
    }

    /// The current time on the server's clock.
    pub fn now(&self) -> RelTime {
        self.clock.now()
    }

    /// Takes a connection slot; false when `-c` connections are open already (the caller
    /// then refuses the connection, counted).
    pub fn admit(&self) -> bool {
        let prev = self.curr_connections.fetch_add(1, Ordering::Relaxed);
        if prev >= self.settings.max_conns {
            self.curr_connections.fetch_sub(1, Ordering::Relaxed);
            self.counters.add(Ctr::RejectedConnections, 1);
            return false;
        }
        self.counters.add(Ctr::TotalConnections, 1);
        true
    }

    /// Gives a connection slot back.
    pub fn release(&self) {
        self.curr_connections.fetch_sub(1, Ordering::Relaxed);
    }

    /// `stats reset`: the counters, the per-class counters and the prefix counts.
    pub fn reset_stats(&self) {
        self.counters.reset();
        self.store.reset_stats();
        self.prefixes().clear();
    }

    /// Whether `stats detail` counting is on.
    pub fn detail_on(&self) -> bool {
        self.detail.load(Ordering::Relaxed)
    }

    /// Turns `stats detail` counting on or off.
    pub fn set_detail(&self, on: bool) {
        self.detail.store(on, Ordering::Relaxed);
    }

    /// Counts `op` for `key`'s prefix when `stats detail` is on.
    pub fn record_prefix(&self, key: &[u8], op: Op) {
        if self.detail_on() {
            self.prefixes().record(key, op);
        }
    }

    /// The per-prefix counts (`stats detail`).
    pub fn prefixes(&self) -> std::sync::MutexGuard<'_, Prefixes> {
        self.prefixes.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Seconds since the server started.
    pub fn uptime(&self) -> u64 {
        self.started.elapsed().as_secs()
    }
}
