//! A slab with generations: the runtime's sockets, tasks and timers each live in one, and a
//! stale key (its entry removed, the slot perhaps reused) finds nothing.

/// Generations are kept to 24 bits: a socket's key travels in a cookie with its operation.
const GEN_MASK: u32 = 0x00ff_ffff;

/// A slot's index and the generation it had when the key was made.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) struct Key {
    pub(crate) index: u32,
    pub(crate) generation: u32,
}

impl Key {
    /// A key no slab ever issues.
    pub(crate) const NONE: Key = Key {
        index: u32::MAX,
        generation: 0,
    };
}

struct Slot<T> {
    generation: u32,
    value: Option<T>,
}

/// Values addressed by [`Key`]s; a removed value's key never reaches the slot's next value.
pub(crate) struct Slots<T> {
    slots: Vec<Slot<T>>,
    free: Vec<u32>,
    len: usize,
}

impl<T> Default for Slots<T> {
    fn default() -> Self {
        Self {
            slots: Vec::new(),
            free: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slots<T> {
    /// Stores `value`; its key.
    pub(crate) fn insert(&mut self, value: T) -> Key {
        self.len += 1;
        if let Some(index) = self.free.pop() {
            let slot = &mut self.slots[index as usize];
            slot.value = Some(value);
            return Key {
                index,
                generation: slot.generation,
            };
        }
        let index = self.slots.len() as u32;
        self.slots.push(Slot {
            generation: 0,
            value: Some(value),
        });
        Key {
            index,
            generation: 0,
        }
    }

    /// The value under `key`, unless it was removed.
    pub(crate) fn get_mut(&mut self, key: Key) -> Option<&mut T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        slot.value.as_mut()
    }

    /// Takes the value under `key` out; the key (and every copy of it) goes stale.
    pub(crate) fn remove(&mut self, key: Key) -> Option<T> {
        let slot = self.slots.get_mut(key.index as usize)?;
        if slot.generation != key.generation {
            return None;
        }
        let value = slot.value.take()?;
        slot.generation = (slot.generation + 1) & GEN_MASK;
        self.free.push(key.index);
        self.len -= 1;
        Some(value)
    }

    /// Values stored.
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    /// Every value's key.
    pub(crate) fn keys(&self) -> Vec<Key> {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, s)| s.value.is_some())
            .map(|(i, s)| Key {
                index: i as u32,
                generation: s.generation,
            })
            .collect()
    }

    /// Every value, mutably.
    pub(crate) fn values_mut(&mut self) -> impl Iterator<Item = &mut T> {
        self.slots.iter_mut().filter_map(|s| s.value.as_mut())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_removed_key_is_stale_even_when_its_slot_is_reused() {
        let mut s = Slots::default();
        let a = s.insert("a");
        assert_eq!(s.remove(a), Some("a"));
        let b = s.insert("b");
        assert_eq!(a.index, b.index, "the slot is reused");
        assert_eq!(s.get_mut(a), None);
        assert_eq!(s.remove(a), None);
        assert_eq!(s.get_mut(b), Some(&mut "b"));
        assert_eq!(s.len(), 1);
        assert_eq!(s.keys(), vec![b]);
    }

    #[test]
    fn generations_wrap_within_24_bits() {
        let mut s = Slots::default();
        let mut k = s.insert(0u8);
        for _ in 0..(GEN_MASK + 2) / 4096 {
            // Reuse one slot many times: its generation stays inside the mask.
            for _ in 0..4096 {
                s.remove(k);
                k = s.insert(0);
            }
        }
        assert!(k.generation <= GEN_MASK);
        assert_eq!(s.get_mut(Key::NONE), None);
    }
}
