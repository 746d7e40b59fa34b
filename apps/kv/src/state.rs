//! What every core shares: the store, the clock, the settings, the counters behind `stats`.
//!
//! How to drive it: build one [`Kv`] (from [`Settings`]) before starting the cores and hand
//! each core a reference. Sessions count into a per-connection [`Local`] and add it to the
//! shared [`Counters`] once per batch of input ([`Local::flush`]), so the shared atomics are
//! touched once per read, not once per command.

use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use crate::store::{Clock, RelTime, Store, StoreConfig};

/// The version we report (`version`, `stats`): memcached's protocol level, our name.
pub const VERSION: &str = "1.6.18-megatcp-kv";

/// memcached's highest verbosity level.
pub const MAX_VERBOSITY: u32 = 2;

/// Server settings (the command line).
#[derive(Debug, Clone)]
pub struct Settings {
    /// TCP port (`-p`).
    pub port: u16,
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
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            port: 11211,
            max_bytes: 64 * 1024 * 1024,
            item_max: 1024 * 1024,
            max_conns: 1024,
            threads: 1,
            backlog: 1024,
            verbose: 0,
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

counters! {
    CmdGet => "cmd_get",
    CmdSet => "cmd_set",
    CmdFlush => "cmd_flush",
    CmdTouch => "cmd_touch",
    CmdMeta => "cmd_meta",
    GetHits => "get_hits",
    GetMisses => "get_misses",
    DeleteMisses => "delete_misses",
    DeleteHits => "delete_hits",
    IncrMisses => "incr_misses",
    IncrHits => "incr_hits",
    DecrMisses => "decr_misses",
    DecrHits => "decr_hits",
    CasMisses => "cas_misses",
    CasHits => "cas_hits",
    CasBadval => "cas_badval",
    TouchHits => "touch_hits",
    TouchMisses => "touch_misses",
    StoreTooLarge => "store_too_large",
    StoreNoMemory => "store_no_memory",
    BytesRead => "bytes_read",
    BytesWritten => "bytes_written",
    TotalConnections => "total_connections",
    RejectedConnections => "rejected_connections",
}

const N: usize = 24;

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
    started: Instant,
}

impl Kv {
    /// The state for `settings`.
    pub fn new(settings: Settings) -> Self {
        let store = Store::new(StoreConfig::new(settings.max_bytes, settings.item_max));
        Self {
            store,
            clock: Clock::start(),
            verbosity: AtomicU32::new(settings.verbose),
            settings,
            counters: Counters::default(),
            curr_connections: AtomicUsize::new(0),
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

    /// `stats reset`.
    pub fn reset_stats(&self) {
        self.counters.reset();
    }

    /// `stats`: memcached 1.6's general statistics, by name and in its order; those with
    /// no counterpart here (slab mover, LRU crawler, logger, ...) read 0.
    pub fn general_stats(&self, now: RelTime) -> Vec<(&'static str, String)> {
        let c = |x: Ctr| self.counters.get(x).to_string();
        let st = self.store.stats();
        let (user, sys) = rusage();
        let conns = self.curr_connections.load(Ordering::Relaxed);
        let mut v: Vec<(&'static str, String)> = vec![
            ("pid", std::process::id().to_string()),
            ("uptime", self.started.elapsed().as_secs().to_string()),
            ("time", self.clock.unix(now).to_string()),
            ("version", VERSION.to_string()),
            ("libevent", "megatcp".to_string()),
            ("pointer_size", (usize::BITS).to_string()),
            ("rusage_user", user),
            ("rusage_system", sys),
            ("max_connections", self.settings.max_conns.to_string()),
            ("curr_connections", conns.to_string()),
            ("total_connections", c(Ctr::TotalConnections)),
            ("rejected_connections", c(Ctr::RejectedConnections)),
            ("connection_structures", conns.to_string()),
        ];
        for name in [
            "response_obj_oom",
            "response_obj_count",
            "response_obj_bytes",
            "read_buf_count",
            "read_buf_bytes",
            "read_buf_bytes_free",
            "read_buf_oom",
            "reserved_fds",
        ] {
            v.push((name, "0".into()));
        }
        for x in [
            Ctr::CmdGet,
            Ctr::CmdSet,
            Ctr::CmdFlush,
            Ctr::CmdTouch,
            Ctr::CmdMeta,
        ] {
            v.push((x.name(), c(x)));
        }
        v.push(("get_hits", c(Ctr::GetHits)));
        v.push(("get_misses", c(Ctr::GetMisses)));
        v.push(("get_expired", st.get_expired.to_string()));
        v.push(("get_flushed", st.get_flushed.to_string()));
        for x in [
            Ctr::DeleteMisses,
            Ctr::DeleteHits,
            Ctr::IncrMisses,
            Ctr::IncrHits,
            Ctr::DecrMisses,
            Ctr::DecrHits,
            Ctr::CasMisses,
            Ctr::CasHits,
            Ctr::CasBadval,
            Ctr::TouchHits,
            Ctr::TouchMisses,
            Ctr::StoreTooLarge,
            Ctr::StoreNoMemory,
        ] {
            v.push((x.name(), c(x)));
        }
        v.push(("auth_cmds", "0".into()));
        v.push(("auth_errors", "0".into()));
        v.push(("bytes_read", c(Ctr::BytesRead)));
        v.push(("bytes_written", c(Ctr::BytesWritten)));
        v.push(("limit_maxbytes", st.limit_maxbytes.to_string()));
        v.push(("accepting_conns", "1".into()));
        v.push(("listen_disabled_num", "0".into()));
        v.push(("time_in_listen_disabled_us", "0".into()));
        v.push(("threads", self.settings.threads.to_string()));
        v.push(("conn_yields", "0".into()));
        v.push(("hash_power_level", "0".into()));
        v.push(("hash_bytes", "0".into()));
        v.push(("hash_is_expanding", "0".into()));
        for name in [
            "slab_reassign_rescues",
            "slab_reassign_chunk_rescues",
            "slab_reassign_evictions_nomem",
            "slab_reassign_inline_reclaim",
            "slab_reassign_busy_items",
            "slab_reassign_busy_deletes",
            "slab_reassign_running",
            "slabs_moved",
            "lru_crawler_running",
            "lru_crawler_starts",
            "lru_maintainer_juggles",
            "malloc_fails",
            "log_worker_dropped",
            "log_worker_written",
            "log_watcher_skipped",
            "log_watcher_sent",
            "log_watchers",
            "unexpected_napi_ids",
            "round_robin_fallback",
        ] {
            v.push((name, "0".into()));
        }
        v.push(("bytes", st.bytes.to_string()));
        v.push(("curr_items", st.curr_items.to_string()));
        v.push(("total_items", st.total_items.to_string()));
        v.push(("slab_global_page_pool", "0".into()));
        v.push(("expired_unfetched", st.expired_unfetched.to_string()));
        v.push(("evicted_unfetched", st.evicted_unfetched.to_string()));
        v.push(("evicted_active", "0".into()));
        v.push(("evictions", st.evictions.to_string()));
        v.push(("reclaimed", st.reclaimed.to_string()));
        for name in [
            "crawler_reclaimed",
            "crawler_items_checked",
            "lrutail_reflocked",
            "moves_to_cold",
            "moves_to_warm",
            "moves_within_lru",
            "direct_reclaims",
            "lru_bumps_dropped",
        ] {
            v.push((name, "0".into()));
        }
        v
    }

    /// `stats settings`: the settings that mean something here, in memcached's names.
    pub fn settings_stats(&self) -> Vec<(&'static str, String)> {
        let s = &self.settings;
        vec![
            ("maxbytes", s.max_bytes.to_string()),
            ("maxconns", s.max_conns.to_string()),
            ("tcpport", s.port.to_string()),
            ("udpport", "0".into()),
            ("inter", "NULL".into()),
            (
                "verbosity",
                self.verbosity.load(Ordering::Relaxed).to_string(),
            ),
            ("evictions", "on".into()),
            ("num_threads", s.threads.to_string()),
            ("cas_enabled", "yes".into()),
            ("tcp_backlog", s.backlog.to_string()),
            ("binding_protocol", "auto-negotiate".into()),
            ("item_size_max", s.item_max.to_string()),
            ("flush_enabled", "yes".into()),
            ("store_stripes", self.store.stripes().to_string()),
        ]
    }

    /// `stats items`: one item class (no slabs here); nothing when empty, as memcached.
    pub fn items_stats(&self) -> Vec<(String, String)> {
        let st = self.store.stats();
        if st.curr_items == 0 {
            return Vec::new();
        }
        [
            ("number", st.curr_items),
            ("evicted", st.evictions),
            ("evicted_unfetched", st.evicted_unfetched),
            ("expired_unfetched", st.expired_unfetched),
            ("reclaimed", st.reclaimed),
        ]
        .into_iter()
        .map(|(k, v)| (format!("items:1:{k}"), v.to_string()))
        .collect()
    }

    /// `stats slabs`: memory in use (one class, no slabs here).
    pub fn slabs_stats(&self) -> Vec<(String, String)> {
        let st = self.store.stats();
        let mut v = Vec::new();
        if st.curr_items > 0 {
            v.push(("1:used_chunks".to_string(), st.curr_items.to_string()));
            v.push(("1:mem_requested".to_string(), st.bytes.to_string()));
        }
        v.push((
            "active_slabs".to_string(),
            u8::from(st.curr_items > 0).to_string(),
        ));
        v.push(("total_malloced".to_string(), st.bytes.to_string()));
        v
    }
}

/// CPU time of the process (user, system) from /proc, in memcached's format.
fn rusage() -> (String, String) {
    let fields = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = fields.rsplit_once(')').map_or("", |(_, r)| r);
    let mut it = after.split_whitespace().skip(11);
    let ticks = |s: Option<&str>| s.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let (u, s) = (ticks(it.next()), ticks(it.next()));
    // Linux reports in clock ticks of 1/100 s.
    let fmt = |t: u64| format!("{}.{:06}", t / 100, (t % 100) * 10_000);
    (fmt(u), fmt(s))
}
