//! A handle table: entries in slots addressed by index + generation, tagged with the
//! owning table, so that stale and foreign handles are refused. Backends keep their
//! per-connection state in one.

use crate::Handle;

struct Slot<E> {
    generation: u32,
    entry: Option<E>,
}

/// Entries of type `E` behind [`Handle`]s.
pub struct HandleTable<E> {
    owner: u32,
    slots: Vec<Slot<E>>,
    free: Vec<u32>,
    live: usize,
}

impl<E> Default for HandleTable<E> {
    fn default() -> Self {
        Self::new()
    }
}

impl<E> HandleTable<E> {
    /// An empty table with a tag of its own.
    pub fn new() -> Self {
        Self {
            owner: crate::new_owner_tag(),
            slots: Vec::new(),
            free: Vec::new(),
            live: 0,
        }
    }

    /// The handle the next [`HandleTable::insert`] returns (for backends that register a
    /// resource under its handle before storing it).
    pub fn vacant(&self) -> Handle {
        match self.free.last() {
            Some(&i) => {
                let generation = self.slots.get(i as usize).map_or(1, |s| s.generation);
                Handle::new(self.owner, i, generation.wrapping_add(1).max(1))
            }
            None => Handle::new(self.owner, self.slots.len() as u32, 1),
        }
    }

    /// Stores `entry`; returns its handle.
    pub fn insert(&mut self, entry: E) -> Handle {
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

    fn slot(&self, h: Handle) -> Option<&Slot<E>> {
        let slot = self.slots.get(h.index() as usize)?;
        (h.owner() == self.owner && slot.generation == h.generation()).then_some(slot)
    }

    /// The entry of a live handle.
    pub fn get(&self, h: Handle) -> Option<&E> {
        self.slot(h)?.entry.as_ref()
    }

    /// The entry of a live handle, mutably.
    pub fn get_mut(&mut self, h: Handle) -> Option<&mut E> {
        self.slot(h)?;
        self.slots.get_mut(h.index() as usize)?.entry.as_mut()
    }

    /// Removes a live handle's entry; the handle is stale from now on.
    pub fn remove(&mut self, h: Handle) -> Option<E> {
        self.slot(h)?;
        let e = self.slots.get_mut(h.index() as usize)?.entry.take()?;
        self.free.push(h.index());
        self.live -= 1;
        Some(e)
    }

    /// Live entries.
    pub fn len(&self) -> usize {
        self.live
    }

    /// Whether there are no live entries.
    pub fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// Every live handle.
    pub fn handles(&self) -> Vec<Handle> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.entry.is_some())
            .map(|(i, s)| Handle::new(self.owner, i as u32, s.generation))
            .collect()
    }

    /// The handle a slot index and generation stand for in this table (e.g. read back from
    /// an epoll event), if it is live.
    pub fn handle(&self, index: u32, generation: u32) -> Option<Handle> {
        let h = Handle::new(self.owner, index, generation);
        self.get(h).map(|_| h)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_and_foreign_handles_never_reach_an_entry() {
        let mut t = HandleTable::new();
        let a = t.insert("a");
        assert_eq!(t.remove(a), Some("a"));
        let b = t.insert("b");
        assert_eq!(a.index(), b.index(), "slot reused");
        assert_eq!(t.get(a), None, "old handle is stale");
        assert_eq!(t.remove(a), None);
        assert_eq!(t.get(b), Some(&"b"));
        assert_eq!(t.get(Handle::new(b.owner(), 99, 1)), None, "unknown slot");
        let other: HandleTable<&str> = HandleTable::new();
        let foreign = Handle::new(other.owner, b.index(), b.generation());
        assert_eq!(t.get(foreign), None, "a handle of another table is refused");
        assert_eq!(t.len(), 1);
        assert_eq!(t.handle(b.index(), b.generation()), Some(b));
        assert_eq!(t.handle(a.index(), a.generation()), None);
    }

    #[test]
    fn vacant_names_the_next_handle() {
        let mut t = HandleTable::new();
        for _ in 0..3 {
            let v = t.vacant();
            assert_eq!(t.insert(()), v);
        }
        let a = t.handles()[1];
        t.remove(a);
        let v = t.vacant();
        assert_eq!(v.index(), a.index());
        assert_ne!(v, a, "a reused slot gets a new generation");
        assert_eq!(t.insert(()), v);
    }
}
