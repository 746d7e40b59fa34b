//! Fault injection over any NIC queue: seeded and reproducible loss, duplication,
//! reordering, bit corruption and delay.
//!
//! Faults apply to frames on their way *in* (as they come out of the wrapped queue's
//! `rx_burst`); transmission passes through untouched. Wrap both ends of a wire to affect
//! both directions.
//!
//! For each frame the wrapped queue delivers, in order: it is lost with probability `loss`;
//! otherwise it is delivered twice (back to back) with probability `duplicate`, has one
//! random bit flipped with probability `corrupt` (both copies alike), and each copy is held
//! back with probability `reorder` until 1 ..= `reorder_window` later frames (lost ones
//! included) have come out of the wrapped queue, then delivered right after the last of
//! them. With `delay`, every copy is also held until that long after the `rx_burst` call that
//! received it. Every random decision is drawn for every frame, from a ChaCha8 generator
//! seeded with `seed`, so one fault's setting does not shift the others' decisions.
//!
//! Reproducibility: without `delay`, the sequence of delivered frames depends only on the
//! seed and the sequence of frames the wrapped queue delivers, not on how they are split
//! into bursts nor on the budgets asked for. With `delay`, release times follow the clock.
//!
//! # Driving a `FaultyQueue`
//!
//! Use it as the queue it wraps, and poll it regularly (an engine loop does): frames held
//! back are released only by later [`NicQueue::rx_burst`] calls. A frame held for
//! reordering waits for later frames; if none come (an idle link), it stays held until
//! [`FaultyQueue::release_held`] is called. `rx_burst` never delivers more than its budget
//! (frames over it wait, in order, for the next call) except when the hold pool is
//! exhausted.
//!
//! Held frames are copied into a pool of buffers allocated when the queue is made
//! ([`DEFAULT_HOLD_CAPACITY`] of them, or [`FaultyQueue::with_hold_capacity`]). When the pool
//! is exhausted a frame that should be held is delivered at once instead, never dropped, and
//! counted in [`FaultStats::pool_exhausted`]. Nothing is allocated per packet.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};

/// What to inject; given to [`FaultyQueue::new`]. Probabilities are per received frame, in
/// `0.0..=1.0`. The default injects nothing.
#[derive(Debug, Clone, PartialEq)]
pub struct FaultConfig {
    /// Seed of every random decision.
    pub seed: u64,
    /// Probability that a frame is lost.
    pub loss: f64,
    /// Probability that a frame is delivered twice.
    pub duplicate: f64,
    /// Probability that a frame is held back and delivered after later ones.
    pub reorder: f64,
    /// A held-back frame is released after 1 ..= this many later frames (at least 1 when
    /// `reorder` is above 0).
    pub reorder_window: usize,
    /// Probability that one random bit of a frame is flipped.
    pub corrupt: f64,
    /// Hold every frame this long before delivering it (at most [`MAX_DELAY`]).
    pub delay: Option<Duration>,
}

/// Longest `delay` a [`FaultConfig`] accepts: one day.
pub const MAX_DELAY: Duration = Duration::from_secs(86_400);

impl Default for FaultConfig {
    /// No faults (seed 0, reorder window 8).
    fn default() -> Self {
        Self {
            seed: 0,
            loss: 0.0,
            duplicate: 0.0,
            reorder: 0.0,
            reorder_window: 8,
            corrupt: 0.0,
            delay: None,
        }
    }
}

impl FaultConfig {
    /// Checks that every probability is a finite number in `0.0..=1.0`, that reordering
    /// has a window and that the delay is at most [`MAX_DELAY`].
    pub fn validate(&self) -> Result<(), FaultConfigError> {
        for (name, value) in [
            ("loss", self.loss),
            ("duplicate", self.duplicate),
            ("reorder", self.reorder),
            ("corrupt", self.corrupt),
        ] {
            // NaN is not in the range; neither are the infinities.
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultConfigError::BadProbability { name, value });
            }
        }
        if self.reorder > 0.0 && self.reorder_window == 0 {
            return Err(FaultConfigError::ZeroWindow);
        }
        if let Some(delay) = self.delay.filter(|&d| d > MAX_DELAY) {
            return Err(FaultConfigError::DelayTooLong(delay));
        }
        Ok(())
    }
}

/// Why a [`FaultConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    /// A probability outside `0.0..=1.0`, infinite or not a number.
    #[error("{name} must be a probability in 0..=1, got {value}")]
    BadProbability {
        /// Which field.
        name: &'static str,
        /// Its value.
        value: f64,
    },
    /// Reordering needs a window of at least one frame.
    #[error("reorder_window must be at least 1 when reorder > 0")]
    ZeroWindow,
    /// A delay over [`MAX_DELAY`].
    #[error("delay {0:?} is over the maximum of one day")]
    DelayTooLong(Duration),
}

/// Counters of injected faults, from [`FaultyQueue::fault_stats`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames lost.
    pub dropped: u64,
    /// Frames delivered twice (each counts once: the extra copies).
    pub duplicated: u64,
    /// Copies held back for reordering.
    pub reordered: u64,
    /// Frames with a flipped bit (a duplicated one counts once).
    pub corrupted: u64,
    /// Copies held back by `delay`.
    pub delayed: u64,
    /// Copies that should have been held (reordering, delay, or over the budget) but were
    /// delivered at once because the hold pool was exhausted.
    pub pool_exhausted: u64,
}

/// Frames a [`FaultyQueue`] can hold back unless told otherwise.
pub const DEFAULT_HOLD_CAPACITY: usize = 1024;

/// A frame held back, in a pool buffer.
struct Slot {
    buf: Vec<u8>,
    hash: Option<u32>,
    /// Due once this many frames have come out of the wrapped queue.
    after_seen: u64,
    /// Due at this time (delay).
    at: Option<Instant>,
}

/// Everything but the wrapped queue, so that it can be borrowed inside the wrapped queue's
/// `rx_burst` closure.
struct Shaper {
    cfg: FaultConfig,
    rng: ChaCha8Rng,
    /// Frames held back, in the order they were held.
    held: VecDeque<Slot>,
    /// Frames due but over the budget of the call that released them, in delivery order.
    ready: VecDeque<Slot>,
    /// Free pool buffers.
    spare: Vec<Vec<u8>>,
    /// Where a corrupted frame delivered at once is built.
    scratch: Vec<u8>,
    /// Frames that have come out of the wrapped queue.
    seen: u64,
    /// No held frame becomes due by count before `seen` reaches this.
    next_due: u64,
    /// Stands for the time when there is no delay (the clock is then not read).
    epoch: Instant,
    stats: FaultStats,
}

/// Frames delivered by the current `rx_burst` call, and its budget.
struct Burst<'s> {
    budget: usize,
    delivered: usize,
    now: Instant,
    sink: &'s mut dyn FnMut(RxFrame<'_>),
}

impl Shaper {
    /// Whether what comes next must wait in `ready` (the budget is spent, or earlier frames
    /// already wait there).
    fn must_wait(&self, b: &Burst<'_>) -> bool {
        b.delivered >= b.budget || !self.ready.is_empty()
    }

    /// Delivers (or queues in `ready`) a frame that is in a pool buffer.
    fn emit_slot(&mut self, slot: Slot, b: &mut Burst<'_>) {
        if self.must_wait(b) {
            self.ready.push_back(slot);
        } else {
            self.deliver(slot, b);
        }
    }

    /// Hands a frame in a pool buffer to the sink; the buffer goes back to the pool.
    fn deliver(&mut self, slot: Slot, b: &mut Burst<'_>) {
        (b.sink)(RxFrame {
            data: &slot.buf,
            rss_hash: slot.hash,
        });
        b.delivered += 1;
        self.spare.push(slot.buf);
    }

    /// Delivers (or queues in `ready`, in a pool buffer) a frame lent by the caller.
    fn emit_bytes(&mut self, data: &[u8], hash: Option<u32>, b: &mut Burst<'_>) {
        if self.must_wait(b) {
            if let Some(mut buf) = self.spare.pop() {
                buf.clear();
                buf.extend_from_slice(data);
                self.ready.push_back(Slot {
                    buf,
                    hash,
                    after_seen: 0,
                    at: None,
                });
                return;
            }
            self.stats.pool_exhausted += 1;
        }
        (b.sink)(RxFrame {
            data,
            rss_hash: hash,
        });
        b.delivered += 1;
    }

    /// Delivers the held frames that are due, in the order they were held (into `ready`
    /// once the budget is spent, so that the delivery order does not depend on budgets).
    fn release_due(&mut self, b: &mut Burst<'_>) {
        let mut next_due = u64::MAX;
        let mut i = 0;
        while let Some(slot) = self.held.get(i) {
            let by_count = slot.after_seen <= self.seen;
            if by_count && slot.at.is_none_or(|t| t <= b.now) {
                if let Some(slot) = self.held.remove(i) {
                    self.emit_slot(slot, b);
                }
            } else {
                if !by_count {
                    next_due = next_due.min(slot.after_seen);
                }
                i += 1;
            }
        }
        self.next_due = next_due;
    }

    /// Handles one frame out of the wrapped queue.
    fn on_frame(&mut self, f: RxFrame<'_>, b: &mut Burst<'_>) {
        self.seen += 1;
        let len = f.data.len();
        // Every decision is drawn for every frame, so that one fault's setting does not
        // shift the random sequence of the others.
        let lose = self.rng.random_bool(self.cfg.loss);
        let dup = self.rng.random_bool(self.cfg.duplicate);
        let corrupt = self.rng.random_bool(self.cfg.corrupt) && len > 0;
        let bit = self.rng.random_range(0..len.max(1).saturating_mul(8));
        let reorder = self.rng.random_bool(self.cfg.reorder);
        let after = self.rng.random_range(1..=self.cfg.reorder_window.max(1));
        if lose {
            self.stats.dropped += 1;
        } else {
            self.stats.duplicated += u64::from(dup);
            self.stats.corrupted += u64::from(corrupt);
            let mut scratch = std::mem::take(&mut self.scratch);
            let data = if corrupt {
                scratch.clear();
                scratch.extend_from_slice(f.data);
                flip(&mut scratch, bit);
                &scratch[..]
            } else {
                f.data
            };
            for _ in 0..1 + usize::from(dup) {
                self.hold_or_emit(data, f.rss_hash, reorder, after, b);
            }
            self.scratch = scratch;
        }
        if self.seen >= self.next_due {
            self.release_due(b);
        }
    }

    /// Holds one copy of a frame back (reordering, delay) or delivers it.
    fn hold_or_emit(
        &mut self,
        data: &[u8],
        hash: Option<u32>,
        reorder: bool,
        after: usize,
        b: &mut Burst<'_>,
    ) {
        let delay = self.cfg.delay;
        if !reorder && delay.is_none() {
            return self.emit_bytes(data, hash, b);
        }
        let Some(mut buf) = self.spare.pop() else {
            self.stats.pool_exhausted += 1;
            return self.emit_bytes(data, hash, b);
        };
        buf.clear();
        buf.extend_from_slice(data);
        let after_seen = if reorder {
            self.stats.reordered += 1;
            let at = self.seen.saturating_add(after as u64);
            self.next_due = self.next_due.min(at);
            at
        } else {
            self.seen
        };
        self.stats.delayed += u64::from(delay.is_some());
        self.held.push_back(Slot {
            buf,
            hash,
            after_seen,
            at: delay.map(|d| b.now + d),
        });
    }
}

/// Flips bit `bit` of `frame` (bit 0 is the most significant bit of byte 0).
fn flip(frame: &mut [u8], bit: usize) {
    if let Some(byte) = frame.get_mut(bit / 8) {
        *byte ^= 0x80 >> (bit % 8);
    }
}

/// A queue with faults injected on receive; made by [`FaultyQueue::new`]. See the module
/// docs for what it does and how to drive it.
pub struct FaultyQueue<Q: NicQueue> {
    inner: Q,
    shaper: Shaper,
}

impl<Q: NicQueue> FaultyQueue<Q> {
    /// Wraps `inner`, able to hold back [`DEFAULT_HOLD_CAPACITY`] frames.
    pub fn new(inner: Q, cfg: FaultConfig) -> Result<Self, FaultConfigError> {
        Self::with_hold_capacity(inner, cfg, DEFAULT_HOLD_CAPACITY)
    }

    /// Wraps `inner`, able to hold back `capacity` frames (buffers of the inner queue's
    /// largest frame, allocated now). Large delays at high rates need many.
    pub fn with_hold_capacity(
        inner: Q,
        cfg: FaultConfig,
        capacity: usize,
    ) -> Result<Self, FaultConfigError> {
        cfg.validate()?;
        let frame = inner.capabilities().max_frame_len();
        Ok(Self {
            inner,
            shaper: Shaper {
                rng: ChaCha8Rng::seed_from_u64(cfg.seed),
                cfg,
                held: VecDeque::with_capacity(capacity),
                ready: VecDeque::with_capacity(capacity),
                spare: (0..capacity).map(|_| Vec::with_capacity(frame)).collect(),
                scratch: Vec::with_capacity(frame),
                seen: 0,
                next_due: u64::MAX,
                epoch: Instant::now(),
                stats: FaultStats::default(),
            },
        })
    }

    /// Counters of injected faults. ([`NicQueue::stats`] gives the wrapped queue's counters,
    /// which count frames before faults.)
    pub fn fault_stats(&self) -> FaultStats {
        self.shaper.stats
    }

    /// The faults being injected.
    pub fn config(&self) -> &FaultConfig {
        &self.shaper.cfg
    }

    /// Frames held back or waiting for the next `rx_burst`, not yet delivered.
    pub fn held(&self) -> usize {
        self.shaper.held.len() + self.shaper.ready.len()
    }

    /// Makes every held frame due now, whatever its window or delay: the next `rx_burst`
    /// calls deliver them first, in the order they were held. For draining at the end of a
    /// test, or when the link has gone idle.
    pub fn release_held(&mut self) {
        for slot in &mut self.shaper.held {
            slot.after_seen = 0;
            slot.at = None;
        }
        self.shaper.next_due = 0;
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    /// The wrapped queue, mutably (receiving from it directly bypasses the faults).
    pub fn inner_mut(&mut self) -> &mut Q {
        &mut self.inner
    }

    /// Unwraps the queue; frames still held are discarded.
    pub fn into_inner(self) -> Q {
        self.inner
    }
}

impl<Q: NicQueue> std::fmt::Debug for FaultyQueue<Q> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FaultyQueue")
            .field("queue_id", &self.inner.queue_id())
            .field("config", &self.shaper.cfg)
            .field("held", &self.held())
            .field("stats", &self.shaper.stats)
            .finish_non_exhaustive()
    }
}

impl<Q: NicQueue> NicQueue for FaultyQueue<Q> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }

    /// Delivers, in order: frames left over the previous call's budget, held frames now due,
    /// then frames from the wrapped queue (asked for with the budget left) with faults
    /// applied, each followed by the held frames it makes due.
    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let Self { inner, shaper } = self;
        let mut b = Burst {
            budget,
            delivered: 0,
            // Only delays look at the time.
            now: if shaper.cfg.delay.is_some() {
                Instant::now()
            } else {
                shaper.epoch
            },
            sink,
        };
        while b.delivered < budget {
            let Some(slot) = shaper.ready.pop_front() else {
                break;
            };
            shaper.deliver(slot, &mut b);
        }
        // The clock moved: any held frame may be due, whatever `next_due` says.
        shaper.release_due(&mut b);
        if shaper.must_wait(&b) {
            return b.delivered;
        }
        inner.rx_burst(budget - b.delivered, &mut |f| shaper.on_frame(f, &mut b));
        b.delivered
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        self.inner.tx_frame(fill)
    }

    fn tx_flush(&mut self) -> usize {
        self.inner.tx_flush()
    }

    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }

    fn checksum_hint(&self) -> Option<&str> {
        self.inner.checksum_hint()
    }
}

#[cfg(test)]
mod tests;
