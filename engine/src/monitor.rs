//! Live counters of each core, readable from any thread while the runtime runs.
//!
//! A core's thread publishes its counters (stack, engine loop, NIC queue, steering) into its
//! [`CoreMonitor`] about every millisecond (not per packet: a few dozen relaxed stores), and
//! once more when it ends, so a [`CoreMonitor::snapshot`] taken after the runtime returned
//! holds exactly the counters of the exit report. Readers (the live stats, the Prometheus
//! endpoint, the shared-memory view of `megatcp-stat`) live on other threads, off the data
//! path. A connection list is made only when asked ([`CoreMonitor::request_connections`]).

use std::net::SocketAddrV4;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use megatcp_stack::{DROP_REASONS, DropCounters};

/// Whether a value only grows (a counter: rates make sense) or goes up and down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only grows while the process runs.
    Counter,
    /// A level (connections in the table, ...).
    Gauge,
}

macro_rules! fields {
    ($($id:ident: $kind:ident, $help:literal;)*) => {
        /// One published value of a core (see [`Field::ALL`] for the list).
        #[derive(Debug, Clone, Copy, PartialEq, Eq)]
        #[allow(non_camel_case_types, missing_docs)]
        pub enum Field { $($id,)* }

        impl Field {
            /// Every field, in publishing order.
            pub const ALL: &'static [Field] = &[$(Field::$id,)*];

            /// Its name (snake case, as in the stats' JSON and the metrics).
            pub fn name(self) -> &'static str {
                match self { $(Field::$id => stringify!($id),)* }
            }

            /// What it counts.
            pub fn help(self) -> &'static str {
                match self { $(Field::$id => $help,)* }
            }

            /// Counter or gauge.
            pub fn kind(self) -> Kind {
                match self { $(Field::$id => Kind::$kind,)* }
            }
        }
    };
}

fields! {
    rx_frames: Counter, "Frames received by the stack.";
    rx_bytes: Counter, "Bytes in the frames received by the stack.";
    tx_frames: Counter, "Frames sent by the stack.";
    tx_bytes: Counter, "Bytes in the frames sent by the stack.";
    drops: Counter, "Incoming frames dropped, all reasons (see the per-reason drops).";
    conns_accepted: Counter, "Passive opens that reached ESTABLISHED.";
    conns_opened: Counter, "Active opens started.";
    conns_closed: Counter, "Connections that ended after an orderly close.";
    conns_reset: Counter, "Connections that ended by a reset or a timeout.";
    conns_connect_failed: Counter, "Active opens that failed.";
    retransmits: Counter, "TCP segments sent again.";
    tail_probes: Counter, "Tail-loss probes sent.";
    rst_sent: Counter, "RSTs sent for segments that matched no connection.";
    syn_cookies_sent: Counter, "SYN-ACKs sent with a SYN cookie.";
    challenge_acks_sent: Counter, "Challenge ACKs sent (RFC 5961).";
    time_wait_entered: Counter, "Connections that entered TIME-WAIT.";
    flows: Gauge, "Connections in the flow table (any state).";
    time_wait: Gauge, "TIME-WAIT records.";
    queued_frames: Gauge, "Frames waiting for the NIC.";
    timer_entries: Gauge, "Entries in the stack's timers (some may be stale).";
    queued_events: Gauge, "Stack events waiting for the engine.";
    arp_entries: Gauge, "Neighbours in the ARP cache.";
    flow_table_bytes: Gauge, "Approximate heap bytes of the flow table (slots and index, not the flows).";
    time_wait_bytes: Gauge, "Approximate heap bytes of the TIME-WAIT records and their index.";
    pooled_frame_bytes: Gauge, "Heap bytes of spare frame buffers kept for reuse.";
    pooled_socket_bytes: Gauge, "Heap bytes of closed TCP sockets kept for reuse (at most 256).";
    turns: Counter, "Engine loop turns.";
    busy_turns: Counter, "Turns that did work (frames in or out, completions).";
    busy_ns: Counter, "Nanoseconds in turns that did work, and the application's time after them.";
    idle_ns: Counter, "Nanoseconds in turns that found nothing to do, and idle sleeps.";
    sleeps: Counter, "Sleeps taken by the idle policy.";
    tx_batches: Counter, "NIC transmit flushes.";
    tx_ring_full: Counter, "Frames the NIC refused (ring full); they stayed queued.";
    nic_rx_frames: Counter, "Frames the NIC queue delivered.";
    nic_tx_frames: Counter, "Frames the NIC queue accepted.";
    nic_tx_full: Counter, "Transmit calls the NIC queue refused (ring full).";
    nic_dropped: Counter, "Frames the NIC queue dropped.";
    steered_out: Counter, "Frames passed to another core (software steering).";
    steered_in: Counter, "Frames received from another core.";
    steer_dropped: Counter, "Frames lost between cores (ring full).";
    capture_frames: Counter, "Frames written to pcap captures.";
}

/// Number of [`Field`]s.
pub const FIELDS: usize = Field::ALL.len();

/// The names of the drop reasons, in [`Snapshot::drops`] order.
pub fn drop_reasons() -> [&'static str; DROP_REASONS] {
    DropCounters::default().by_reason().map(|(name, _)| name)
}

/// One connection of a core, as `megatcp-stat conns` lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConnInfo {
    /// This side.
    pub local: SocketAddrV4,
    /// The peer.
    pub remote: SocketAddrV4,
    /// TCP state (smoltcp's name).
    pub state: String,
    /// Bytes received and not yet read by the application.
    pub recv_queue: usize,
    /// Bytes written by the application and not yet acknowledged.
    pub send_queue: usize,
}

/// A copy of one core's values at one moment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Snapshot {
    /// The [`Field`]s' values, in [`Field::ALL`] order.
    pub values: [u64; FIELDS],
    /// Drops by reason, in [`drop_reasons`] order.
    pub drops: [u64; DROP_REASONS],
}

impl Snapshot {
    /// One field's value.
    pub fn get(&self, f: Field) -> u64 {
        self.values[f as usize]
    }

    /// The fraction of the time (0..=1) spent in turns that did work, from counters `self`
    /// and an earlier `before` (`None`: since the start); `None` when no time was counted.
    pub fn busy_fraction(&self, before: Option<&Snapshot>) -> Option<f64> {
        let d = |f| self.get(f) - before.map_or(0, |b| b.get(f));
        let (busy, idle) = (d(Field::busy_ns), d(Field::idle_ns));
        (busy + idle > 0).then(|| busy as f64 / (busy + idle) as f64)
    }
}

/// Live counters of one core (see the module docs). Relaxed atomics: a monitoring view, not
/// a synchronisation point.
#[derive(Debug)]
pub struct CoreMonitor {
    values: [AtomicU64; FIELDS],
    drops: [AtomicU64; DROP_REASONS],
    /// Whether the core runs megatcp's stack (kernel backends publish nothing).
    bypass: AtomicBool,
    conns_wanted: AtomicBool,
    conns: Mutex<Option<Vec<ConnInfo>>>,
}

impl Default for CoreMonitor {
    fn default() -> Self {
        Self {
            values: std::array::from_fn(|_| AtomicU64::new(0)),
            drops: std::array::from_fn(|_| AtomicU64::new(0)),
            bypass: AtomicBool::new(false),
            conns_wanted: AtomicBool::new(false),
            conns: Mutex::new(None),
        }
    }
}

impl CoreMonitor {
    /// The values now.
    pub fn snapshot(&self) -> Snapshot {
        Snapshot {
            values: std::array::from_fn(|i| self.values[i].load(Ordering::Relaxed)),
            drops: std::array::from_fn(|i| self.drops[i].load(Ordering::Relaxed)),
        }
    }

    /// Whether the core publishes megatcp's stack counters (bypass backends); the kernel
    /// backends' cores publish none.
    pub fn is_bypass(&self) -> bool {
        self.bypass.load(Ordering::Relaxed)
    }

    /// Asks the core for its connection list; it is made at the core's next publication
    /// (within a few milliseconds while it runs): see [`CoreMonitor::take_connections`].
    pub fn request_connections(&self) {
        self.conns_wanted.store(true, Ordering::Relaxed);
    }

    /// The connection list made since the last request, if it is there yet.
    pub fn take_connections(&self) -> Option<Vec<ConnInfo>> {
        self.conns.lock().ok().and_then(|mut c| c.take())
    }

    /// Whether a connection list was asked for (the core's side).
    pub(crate) fn connections_wanted(&self) -> bool {
        self.conns_wanted.load(Ordering::Relaxed)
    }

    /// Hands over the asked-for connection list (the core's side).
    pub(crate) fn put_connections(&self, list: Vec<ConnInfo>) {
        if let Ok(mut c) = self.conns.lock() {
            *c = Some(list);
        }
        self.conns_wanted.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set(&self, f: Field, v: u64) {
        self.values[f as usize].store(v, Ordering::Relaxed);
    }

    pub(crate) fn set_drops(&self, d: &DropCounters) {
        self.bypass.store(true, Ordering::Relaxed);
        for (slot, (_, v)) in self.drops.iter().zip(d.by_reason()) {
            slot.store(v, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_names_are_unique_snake_case() {
        let mut names: Vec<_> = Field::ALL.iter().map(|f| f.name()).collect();
        assert!(
            names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_'))
        );
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), FIELDS);
        assert_eq!(drop_reasons().len(), DROP_REASONS);
    }

    #[test]
    fn busy_fraction_is_the_share_of_busy_time() {
        let m = CoreMonitor::default();
        assert_eq!(m.snapshot().busy_fraction(None), None);
        m.set(Field::busy_ns, 300);
        m.set(Field::idle_ns, 100);
        let a = m.snapshot();
        assert_eq!(a.busy_fraction(None), Some(0.75));
        m.set(Field::busy_ns, 400);
        m.set(Field::idle_ns, 400);
        assert_eq!(m.snapshot().busy_fraction(Some(&a)), Some(0.25));
    }

    #[test]
    fn a_connection_list_is_made_only_when_asked() {
        let m = CoreMonitor::default();
        assert!(!m.connections_wanted());
        m.request_connections();
        assert!(m.connections_wanted());
        m.put_connections(vec![]);
        assert!(!m.connections_wanted());
        assert_eq!(m.take_connections(), Some(vec![]));
        assert_eq!(m.take_connections(), None);
    }
}
