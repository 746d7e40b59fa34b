//! The flow table: connections by 4-tuple, in a slab of slots addressed by [`ConnId`].
//!
//! Each connection owns its own one-socket smoltcp `SocketSet`, so that handing it a packet
//! or asking it for output never walks other connections' sockets: per-packet cost does not
//! grow with the number of connections.

use core::net::{Ipv4Addr, SocketAddrV4};

use hashbrown::HashMap;
use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;

use crate::{ConnId, Instant, ListenerId};

/// Local and remote address and port of a TCP connection, as seen by this stack.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct FourTuple {
    pub(crate) local: SocketAddrV4,
    pub(crate) remote: SocketAddrV4,
}

#[cfg(test)]
impl FourTuple {
    /// For unit tests: 10.0.0.1:`local_port` to 10.0.0.2:`remote_port`.
    pub(crate) fn test(local_port: u16, remote_port: u16) -> Self {
        use core::net::Ipv4Addr;
        Self {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), local_port),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), remote_port),
        }
    }
}

/// Who holds a connection and what the stack still owes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Passive open in progress (SYN-RECEIVED), counted in its listener's backlog.
    Embryonic(ListenerId),
    /// Established, waiting in its listener's accept queue.
    Queued(ListenerId),
    /// Active open in progress (SYN-SENT).
    Connecting,
    /// The application holds the id.
    Open,
    /// The application closed or aborted it; the stack finishes the job, then releases it.
    Orphan,
}

/// One TCP connection.
pub(crate) struct Flow {
    pub(crate) generation: u32,
    pub(crate) tuple: FourTuple,
    /// Index of the interface (local address) the connection lives on.
    pub(crate) iface: usize,
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) handle: SocketHandle,
    pub(crate) phase: Phase,
    /// The earliest deadline registered in the timers, if any (it may be earlier than
    /// the connection needs: it then fires and reschedules).
    pub(crate) deadline: Option<Instant>,
    /// Give up by then: an orphan still not closed is aborted, a handshake not completed
    /// is dropped (see `lifecycle::on_timer`).
    pub(crate) give_up: Option<Instant>,
    /// Queued for egress at the next poll.
    pub(crate) dirty: bool,
    /// Receive-queue length last reported (a larger one means new data: `Readable`).
    pub(crate) reported_rx: usize,
    pub(crate) reported_peer_closed: bool,
    /// `Event::Closed` was reported (or must never be: the application never saw the id).
    pub(crate) reported_closed: bool,
    /// The application shut the write side down.
    pub(crate) shut_wr: bool,
    /// The application has read the end of the stream.
    pub(crate) eof_seen: bool,
    /// Ended by an abort (ours or a timeout), not an orderly close.
    pub(crate) aborted: bool,
    /// The application's last send was short: report `Writable` when space frees.
    pub(crate) want_writable: bool,
    /// The connection as the wire sees it (sequence and timestamp offsets, what was sent
    /// and acknowledged each way, RTT, tail-loss probe).
    pub(crate) x: crate::xlate::Xlate,
}

impl Flow {
    pub(crate) fn socket(&self) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket<'static>>(self.handle)
    }

    pub(crate) fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket<'static>>(self.handle)
    }

    pub(crate) fn id(&self, index: u32) -> ConnId {
        ConnId {
            index,
            generation: self.generation,
        }
    }
}

/// Slab of flows plus the 4-tuple index.
pub(crate) struct FlowTable {
    slots: Vec<Option<Flow>>,
    free: Vec<u32>,
    by_tuple: HashMap<FourTuple, u32>,
    next_generation: u32,
}

impl FlowTable {
    pub(crate) fn new() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            by_tuple: HashMap::new(),
            next_generation: 1,
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.by_tuple.len()
    }

    pub(crate) fn lookup(&self, tuple: &FourTuple) -> Option<u32> {
        self.by_tuple.get(tuple).copied()
    }

    pub(crate) fn contains(&self, tuple: &FourTuple) -> bool {
        self.by_tuple.contains_key(tuple)
    }

    /// Next generation number (never 0; unique for 2^32 connections).
    pub(crate) fn next_generation(&mut self) -> u32 {
        let g = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        g
    }

    pub(crate) fn insert(&mut self, flow: Flow) -> ConnId {
        let tuple = flow.tuple;
        let generation = flow.generation;
        let index = loop {
            match self.free.pop() {
                // Skip stale entries: slots trimmed away, or reused since.
                Some(i) if self.slots.get(i as usize).is_some_and(Option::is_none) => break i,
                Some(_) => continue,
                None => {
                    self.slots.push(None);
                    break (self.slots.len() - 1) as u32;
                }
            }
        };
        self.slots[index as usize] = Some(flow);
        self.by_tuple.insert(tuple, index);
        ConnId { index, generation }
    }

    pub(crate) fn get(&self, id: ConnId) -> Option<&Flow> {
        self.slots
            .get(id.index as usize)?
            .as_ref()
            .filter(|f| f.generation == id.generation)
    }

    pub(crate) fn get_mut(&mut self, id: ConnId) -> Option<&mut Flow> {
        self.slots
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|f| f.generation == id.generation)
    }

    /// The flow in slot `index`, whatever its generation.
    pub(crate) fn slot_mut(&mut self, index: u32) -> Option<&mut Flow> {
        self.slots.get_mut(index as usize)?.as_mut()
    }

    /// Removes a flow and frees everything it holds.
    pub(crate) fn remove(&mut self, id: ConnId) -> Option<Flow> {
        let slot = self.slots.get_mut(id.index as usize)?;
        if slot.as_ref().is_none_or(|f| f.generation != id.generation) {
            return None;
        }
        let flow = slot.take()?;
        self.by_tuple.remove(&flow.tuple);
        self.free.push(id.index);
        // Give memory back when the table empties out.
        while matches!(self.slots.last(), Some(None)) {
            self.slots.pop();
        }
        let live = self.by_tuple.len();
        if self.by_tuple.capacity() > 64 && live * 8 < self.by_tuple.capacity() {
            self.by_tuple.shrink_to(live * 2);
        }
        if self.slots.capacity() > 64 && self.slots.len() * 4 < self.slots.capacity() {
            self.slots.shrink_to(self.slots.len() * 2);
        }
        if self.free.len() > self.slots.len() * 2 + 64 {
            let len = self.slots.len();
            self.free.retain(|&i| (i as usize) < len);
            self.free.shrink_to(self.free.len() * 2);
        }
        Some(flow)
    }

    /// Ids of every flow.
    pub(crate) fn ids(&self) -> Vec<ConnId> {
        self.slots
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|f| f.id(i as u32)))
            .collect()
    }

    /// Bytes this table holds on the heap, approximately (slots, index), excluding flows.
    pub(crate) fn table_bytes(&self) -> usize {
        self.slots.capacity() * core::mem::size_of::<Option<Flow>>()
            + self.free.capacity() * 4
            + self.by_tuple.capacity() * (core::mem::size_of::<(FourTuple, u32)>() + 1)
    }
}

/// Whether `ip` can be a TCP peer (not unspecified, broadcast or multicast).
pub(crate) fn is_unicast(ip: Ipv4Addr) -> bool {
    !(ip.is_unspecified() || ip.is_broadcast() || ip.is_multicast())
}
