//! The channel's handle table (lightweight sockets): slots addressed by index + generation,
//! mapping the application's [`Handle`]s to the stack's connections and listeners.

use std::collections::VecDeque;

use megatcp_channel::{Cookie, Handle};
use megatcp_stack::{ConnId, ListenerId};

/// A write not yet taken whole by the stack.
pub(crate) struct PendingWrite {
    pub(crate) data: Vec<u8>,
    pub(crate) off: usize,
    pub(crate) cookie: Cookie,
}

pub(crate) struct Conn {
    pub(crate) id: ConnId,
    /// The peer.
    pub(crate) remote: std::net::SocketAddrV4,
    /// `Connect` cookie while the active open is in progress.
    pub(crate) connecting: Option<Cookie>,
    pub(crate) read: Option<Cookie>,
    pub(crate) writes: VecDeque<PendingWrite>,
    /// `Shutdown` waiting for the pending writes.
    pub(crate) shutdown: Option<Cookie>,
    pub(crate) shut: bool,
    /// The peer's FIN arrived.
    pub(crate) peer_closed: bool,
    /// The stack released the connection (orderly end after both FINs).
    pub(crate) finished: bool,
}

pub(crate) struct Listener {
    pub(crate) id: ListenerId,
    /// Pending `Accept`: cookie and whether it is multishot.
    pub(crate) accept: Option<(Cookie, bool)>,
}

pub(crate) enum Entry {
    Conn(Conn),
    Listener(Listener),
}

impl Entry {
    pub(crate) fn kind(&self) -> &'static str {
        match self {
            Entry::Conn(_) => "connection",
            Entry::Listener(_) => "listener",
        }
    }
}

struct Slot {
    generation: u32,
    entry: Option<Entry>,
}

pub(crate) struct Handles {
    owner: u32,
    slots: Vec<Slot>,
    free: Vec<u32>,
    live: usize,
}

impl Default for Handles {
    fn default() -> Self {
        Self {
            owner: megatcp_channel::new_owner_tag(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }
}

impl Handles {
    pub(crate) fn insert(&mut self, entry: Entry) -> Handle {
        self.live += 1;
        if let Some(i) = self.free.pop() {
            let slot = &mut self.slots[i as usize];
            slot.generation = slot.generation.wrapping_add(1).max(1);
            slot.entry = Some(entry);
            return Handle::new(self.owner, i, slot.generation);
        }
        self.slots.push(Slot {
            generation: 1,
            entry: Some(entry),
        });
        Handle::new(self.owner, (self.slots.len() - 1) as u32, 1)
    }

    pub(crate) fn get_mut(&mut self, h: Handle) -> Option<&mut Entry> {
        let slot = self.slots.get_mut(h.index() as usize)?;
        if h.owner() != self.owner || slot.generation != h.generation() {
            return None;
        }
        slot.entry.as_mut()
    }

    pub(crate) fn remove(&mut self, h: Handle) -> Option<Entry> {
        let slot = self.slots.get_mut(h.index() as usize)?;
        if h.owner() != self.owner || slot.generation != h.generation() {
            return None;
        }
        let e = slot.entry.take()?;
        self.free.push(h.index());
        self.live -= 1;
        Some(e)
    }

    pub(crate) fn len(&self) -> usize {
        self.live
    }

    /// Every live handle.
    pub(crate) fn all(&self) -> Vec<Handle> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(i, s)| Handle::new(self.owner, i as u32, s.generation))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn listener() -> Entry {
        Entry::Listener(Listener {
            id: test_listener_id(),
            accept: None,
        })
    }

    fn test_listener_id() -> ListenerId {
        // Any listener id will do: the table never interprets it.
        let now = megatcp_stack::Instant::from_secs(0);
        let cfg = megatcp_stack::StackConfig::new(
            megatcp_stack::MacAddr([2, 0, 0, 0, 0, 1]),
            megatcp_stack::LocalAddr::new([10, 0, 0, 1].into(), 24),
        );
        let mut s = megatcp_stack::Stack::new(cfg, now).unwrap();
        s.listen("10.0.0.1:1".parse().unwrap(), None).unwrap()
    }

    #[test]
    fn stale_handles_never_reach_a_reused_slot() {
        let mut t = Handles::default();
        let a = t.insert(listener());
        assert!(t.remove(a).is_some());
        let b = t.insert(listener());
        assert_eq!(a.index(), b.index(), "slot reused");
        assert!(t.get_mut(a).is_none(), "old handle is stale");
        assert!(t.remove(a).is_none());
        assert!(t.get_mut(b).is_some());
        assert!(
            t.get_mut(Handle::new(b.owner(), 99, 1)).is_none(),
            "unknown slot"
        );
        let other = Handles::default();
        let foreign = Handle::new(other.owner, b.index(), b.generation());
        assert!(
            t.get_mut(foreign).is_none(),
            "a handle of another channel is refused"
        );
        assert_eq!(t.len(), 1);
    }
}
