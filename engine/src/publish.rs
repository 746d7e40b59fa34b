//! Publication of one core's counters to its [`CoreMonitor`] (live stats, metrics,
//! `megatcp-stat`), about once a millisecond, from the loop's own thread.
//!
//! Driving a [`Publisher`]: after each turn, [`Publisher::due`] with the turn's clock says
//! whether to publish; [`Publisher::publish`] then copies the [`Sources`] into the monitor
//! (plain relaxed stores: nothing on the data path waits for a reader).

use std::sync::Arc;
use std::time::{Duration as StdDuration, Instant as StdInstant};

use megatcp_nic::QueueStats;
use megatcp_stack::Stack;

use crate::idle::LoopStats;
use crate::monitor::{ConnInfo, CoreMonitor, Field};
use crate::steer::SteerStats;

/// How often a core publishes its counters to its monitor.
const PUBLISH_EVERY: StdDuration = StdDuration::from_millis(1);

/// Everything a core publishes, borrowed for one publication.
pub(crate) struct Sources<'a> {
    pub(crate) stack: &'a Stack,
    pub(crate) engine: LoopStats,
    pub(crate) nic: QueueStats,
    pub(crate) steer: SteerStats,
    pub(crate) capture_frames: u64,
}

/// One core's link to its monitor (none until the runtime sets one).
pub(crate) struct Publisher {
    monitor: Option<(Arc<Vec<CoreMonitor>>, usize)>,
    next: StdInstant,
}

impl Publisher {
    pub(crate) fn new(start: StdInstant) -> Self {
        Self {
            monitor: None,
            next: start,
        }
    }

    /// Publishes to `monitors[index]` from now on.
    pub(crate) fn set(&mut self, monitors: Arc<Vec<CoreMonitor>>, index: usize) {
        self.monitor = Some((monitors, index));
    }

    /// Whether a publication is due at `clock` (then the next one is a period later).
    pub(crate) fn due(&mut self, clock: StdInstant) -> bool {
        if clock < self.next {
            return false;
        }
        self.next = clock + PUBLISH_EVERY;
        true
    }

    /// Copies `src` into the monitor (and the connection list, if a reader asked for it).
    pub(crate) fn publish(&self, src: Sources<'_>) {
        let Some(m) = self.monitor.as_ref().and_then(|(m, i)| m.get(*i)) else {
            return;
        };
        let (c, s, l, n, steer) = (
            src.stack.counters(),
            src.stack.stats(),
            src.engine,
            src.nic,
            src.steer,
        );
        let values = [
            (Field::rx_frames, c.rx_frames),
            (Field::rx_bytes, c.rx_bytes),
            (Field::tx_frames, c.tx_frames),
            (Field::tx_bytes, c.tx_bytes),
            (Field::drops, c.drops.total()),
            (Field::conns_accepted, c.conns_accepted),
            (Field::conns_opened, c.conns_opened),
            (Field::conns_closed, c.conns_closed),
            (Field::conns_reset, c.conns_reset),
            (Field::conns_connect_failed, c.conns_connect_failed),
            (Field::retransmits, c.tcp_retransmits),
            (Field::tail_probes, c.tail_probes),
            (Field::rst_sent, c.tcp_rst_sent),
            (Field::syn_cookies_sent, c.syn_cookies_sent),
            (Field::challenge_acks_sent, c.challenge_acks_sent),
            (Field::time_wait_entered, c.tcp_time_wait_entered),
            (Field::flows, s.flows as u64),
            (Field::time_wait, s.time_wait as u64),
            (Field::queued_frames, s.queued_frames as u64),
            (Field::timer_entries, s.timer_entries as u64),
            (Field::queued_events, s.queued_events as u64),
            (Field::arp_entries, s.arp_entries as u64),
            (Field::flow_table_bytes, s.flow_table_bytes as u64),
            (Field::time_wait_bytes, s.time_wait_bytes as u64),
            (Field::pooled_frame_bytes, s.pooled_frame_bytes as u64),
            (Field::pooled_socket_bytes, s.pooled_socket_bytes as u64),
            (Field::turns, l.iterations),
            (Field::busy_turns, l.busy_iterations),
            (Field::busy_ns, l.busy_ns),
            (Field::idle_ns, l.idle_ns),
            (Field::sleeps, l.sleeps),
            (Field::tx_batches, l.tx_batches),
            (Field::tx_ring_full, l.tx_ring_full),
            (Field::nic_rx_frames, n.rx_frames),
            (Field::nic_tx_frames, n.tx_frames),
            (Field::nic_tx_full, n.tx_full),
            (Field::nic_dropped, n.dropped),
            (Field::steered_out, steer.steered_out),
            (Field::steered_in, steer.steered_in),
            (Field::steer_dropped, steer.dropped),
            (Field::capture_frames, src.capture_frames),
        ];
        debug_assert_eq!(values.len(), Field::ALL.len());
        for (f, v) in values {
            m.set(f, v);
        }
        m.set_drops(&c.drops);
        if m.connections_wanted() {
            m.put_connections(connections(src.stack));
        }
    }
}

/// Every connection of the stack, for listings.
fn connections(stack: &Stack) -> Vec<ConnInfo> {
    stack
        .connections()
        .into_iter()
        .filter_map(|id| {
            Some(ConnInfo {
                local: stack.local_addr(id).ok()?,
                remote: stack.peer_addr(id).ok()?,
                state: stack.state(id).ok()?.to_string(),
                recv_queue: stack.recv_queue(id).unwrap_or(0),
                send_queue: stack.send_queue(id).unwrap_or(0),
            })
        })
        .collect()
}
