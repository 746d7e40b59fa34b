//! Handles: the lightweight sockets of the channel.

/// A connection or listener, meaningful only inside the channel that issued it
/// (MegaPipe's lightweight socket): a slot index plus a generation, tagged with the issuing
/// channel so that a handle from another channel is refused rather than mistaken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Handle {
    owner: u32,
    index: u32,
    generation: u32,
}

impl Handle {
    /// For backends: the handle of slot `index` at `generation` in the handle table tagged
    /// `owner` (see [`new_owner_tag`]).
    pub const fn new(owner: u32, index: u32, generation: u32) -> Self {
        Self {
            owner,
            index,
            generation,
        }
    }

    /// Tag of the handle table (channel) that issued the handle.
    pub const fn owner(self) -> u32 {
        self.owner
    }

    /// Slot index.
    pub const fn index(self) -> u32 {
        self.index
    }

    /// Generation of the slot when the handle was issued.
    pub const fn generation(self) -> u32 {
        self.generation
    }
}

impl core::fmt::Display for Handle {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "#{}.{}@{}", self.index, self.generation, self.owner)
    }
}

/// A tag unique in the process, for a backend's handle table (taken once per channel at
/// creation, not on the data path).
pub fn new_owner_tag() -> u32 {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}
