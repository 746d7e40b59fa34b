//! The queue of frames a stack has produced and the caller has not yet taken.
//!
//! Frame buffers are recycled through a free list, so a stack in steady state allocates
//! nothing per packet.

use std::collections::VecDeque;

/// Outgoing frames, in order, plus a pool of spare buffers.
#[derive(Debug)]
pub(crate) struct OutQueue {
    frames: VecDeque<Vec<u8>>,
    free: Vec<Vec<u8>>,
    buf_capacity: usize,
    limit: usize,
}

/// Spare buffers kept for reuse at most (beyond it, buffers are freed).
const MAX_FREE: usize = 1024;

impl OutQueue {
    pub(crate) fn new(buf_capacity: usize, limit: usize) -> Self {
        Self {
            frames: VecDeque::new(),
            free: Vec::new(),
            buf_capacity,
            limit,
        }
    }

    /// An empty buffer with room for one full frame.
    pub(crate) fn take_buf(&mut self) -> Vec<u8> {
        match self.free.pop() {
            Some(mut b) => {
                b.clear();
                b
            }
            None => Vec::with_capacity(self.buf_capacity),
        }
    }

    /// Returns a buffer to the pool.
    pub(crate) fn recycle(&mut self, buf: Vec<u8>) {
        if self.free.len() < MAX_FREE {
            self.free.push(buf);
        }
    }

    pub(crate) fn push(&mut self, frame: Vec<u8>) {
        self.frames.push_back(frame);
    }

    /// Whether the queue reached its limit (egress should stop until it drains).
    pub(crate) fn is_full(&self) -> bool {
        self.frames.len() >= self.limit
    }

    /// Heap bytes held by spare buffers.
    pub(crate) fn pooled_bytes(&self) -> usize {
        self.free.iter().map(Vec::capacity).sum::<usize>()
            + self.free.capacity() * core::mem::size_of::<Vec<u8>>()
    }

    pub(crate) fn len(&self) -> usize {
        self.frames.len()
    }

    /// Hands queued frames to `sink` in order until it refuses one (returns `false`); the
    /// refused frame stays queued. Returns (frames, bytes) handed out.
    pub(crate) fn drain(&mut self, sink: &mut dyn FnMut(&[u8]) -> bool) -> (usize, usize) {
        let (mut n, mut bytes) = (0, 0);
        while let Some(frame) = self.frames.front() {
            if !sink(frame) {
                break;
            }
            n += 1;
            bytes += frame.len();
            if let Some(frame) = self.frames.pop_front() {
                self.recycle(frame);
            }
        }
        if self.frames.is_empty() && self.frames.capacity() > 4096 {
            self.frames.shrink_to(1024);
        }
        (n, bytes)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn drain_stops_at_refusal_and_keeps_order() {
        let mut q = OutQueue::new(64, 4);
        for i in 0..3u8 {
            let mut b = q.take_buf();
            b.push(i);
            q.push(b);
        }
        let mut seen = Vec::new();
        let (n, _) = q.drain(&mut |f| {
            if seen.len() == 2 {
                return false;
            }
            seen.push(f[0]);
            true
        });
        assert_eq!(n, 2);
        assert_eq!(seen, vec![0, 1]);
        assert_eq!(q.len(), 1);
        let mut rest = Vec::new();
        q.drain(&mut |f| {
            rest.push(f[0]);
            true
        });
        assert_eq!(rest, vec![2]);
        // Buffers are recycled, not reallocated.
        assert_eq!(q.free.len(), 3);
    }
}
