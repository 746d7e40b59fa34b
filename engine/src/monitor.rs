//! Live counters of each core, readable from any thread while the runtime runs.

use std::sync::atomic::{AtomicU64, Ordering};

use megatcp_stack::Counters;

/// Live counters of one core, updated by its thread about every millisecond and readable
/// from any thread (relaxed atomics: a monitoring view, not a synchronisation point).
#[derive(Debug, Default)]
pub struct CoreMonitor {
    /// Frames received by the stack.
    pub rx_frames: AtomicU64,
    /// Frames sent by the stack.
    pub tx_frames: AtomicU64,
    /// Connections accepted.
    pub accepted: AtomicU64,
    /// Connections opened (active).
    pub opened: AtomicU64,
    /// Incoming frames dropped (all reasons).
    pub drops: AtomicU64,
    /// Retransmitted segments.
    pub retransmits: AtomicU64,
}

impl CoreMonitor {
    pub(crate) fn publish(&self, c: &Counters) {
        self.rx_frames.store(c.rx_frames, Ordering::Relaxed);
        self.tx_frames.store(c.tx_frames, Ordering::Relaxed);
        self.accepted.store(c.conns_accepted, Ordering::Relaxed);
        self.opened.store(c.conns_opened, Ordering::Relaxed);
        self.drops.store(c.drops.total(), Ordering::Relaxed);
        self.retransmits.store(c.tcp_retransmits, Ordering::Relaxed);
    }
}
