//! Listening ports of one stack, each with its backlog and accept queue.
//!
//! Every core's stack has its own table: listening on a shared port is partitioned by
//! construction (MegaPipe's partitioned listening; no shared accept queue, no lock).

use core::net::{Ipv4Addr, SocketAddrV4};
use std::collections::VecDeque;

use hashbrown::HashMap;

use crate::{ConnId, ListenerId};

pub(crate) struct Listener {
    generation: u32,
    pub(crate) addr: SocketAddrV4,
    pub(crate) backlog: usize,
    /// Connections counted against the backlog: embryonic plus queued (not yet accepted).
    pub(crate) pending: usize,
    /// Established connections waiting for `accept`, oldest first. May hold ids released
    /// since (they are skipped).
    pub(crate) queue: VecDeque<ConnId>,
    /// Receive and send buffer sizes of accepted connections, when not the stack's default.
    pub(crate) buffers: Option<(usize, usize)>,
    /// When this listener last answered a SYN with a cookie: until two cookie periods
    /// later, ACKs that match no connection are checked as cookies.
    pub(crate) last_cookie: Option<crate::Instant>,
}

#[derive(Default)]
pub(crate) struct Listeners {
    slots: Vec<Option<Listener>>,
    by_addr: HashMap<SocketAddrV4, u32>,
    next_generation: u32,
}

impl Listeners {
    pub(crate) fn add(&mut self, addr: SocketAddrV4, backlog: usize) -> Option<ListenerId> {
        if self.by_addr.contains_key(&addr) {
            return None;
        }
        self.next_generation = self.next_generation.wrapping_add(1).max(1);
        let generation = self.next_generation;
        let listener = Listener {
            generation,
            addr,
            backlog,
            pending: 0,
            queue: VecDeque::new(),
            buffers: None,
            last_cookie: None,
        };
        let index = match self.slots.iter().position(Option::is_none) {
            Some(i) => {
                self.slots[i] = Some(listener);
                i
            }
            None => {
                self.slots.push(Some(listener));
                self.slots.len() - 1
            }
        } as u32;
        self.by_addr.insert(addr, index);
        Some(ListenerId { index, generation })
    }

    pub(crate) fn remove(&mut self, id: ListenerId) -> Option<Listener> {
        self.get(id)?;
        let l = self.slots.get_mut(id.index as usize)?.take()?;
        self.by_addr.remove(&l.addr);
        Some(l)
    }

    pub(crate) fn get(&self, id: ListenerId) -> Option<&Listener> {
        self.slots
            .get(id.index as usize)?
            .as_ref()
            .filter(|l| l.generation == id.generation)
    }

    pub(crate) fn get_mut(&mut self, id: ListenerId) -> Option<&mut Listener> {
        self.slots
            .get_mut(id.index as usize)?
            .as_mut()
            .filter(|l| l.generation == id.generation)
    }

    /// The listener a SYN to `local` belongs to: an exact address match first, then a
    /// wildcard (0.0.0.0) listener on the port.
    pub(crate) fn find(&self, local: SocketAddrV4) -> Option<ListenerId> {
        let index = match self.by_addr.get(&local) {
            Some(i) => *i,
            None => *self
                .by_addr
                .get(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, local.port()))?,
        };
        let l = self.slots.get(index as usize)?.as_ref()?;
        Some(ListenerId {
            index,
            generation: l.generation,
        })
    }
}
