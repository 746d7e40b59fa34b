//! Fault injection over any NIC queue: seeded and reproducible loss, duplication,
//! reordering, bit corruption and delay.
//!
//! Faults apply to frames on their way *in* (out of the wrapped queue's `rx_burst`);
//! transmission passes through untouched. Wrap both ends of a wire to affect both
//! directions. With the same seed and the same input, the same frames are lost, duplicated,
//! held back and corrupted.
//!
//! # Driving a `FaultyQueue`
//!
//! Use it as the queue it wraps. Frames held back (reordering, delay) are copied into a
//! preallocated pool and released by later `rx_burst` calls, so poll it regularly (an engine
//! loop does). When the pool is exhausted a frame is delivered at once instead (counted as
//! `pool_exhausted`), never dropped silently.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};

/// What to inject. Probabilities are per received frame, in `0.0..=1.0`.
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
    /// A held-back frame is released after 1 ..= this many later frames.
    pub reorder_window: usize,
    /// Probability that one random bit of a frame is flipped.
    pub corrupt: f64,
    /// Hold every frame this long before delivering it.
    pub delay: Option<Duration>,
}

impl Default for FaultConfig {
    /// No faults.
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

/// Why a [`FaultConfig`] was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum FaultConfigError {
    /// A probability outside `0.0..=1.0` (or not a number).
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
}

/// Counters of injected faults.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct FaultStats {
    /// Frames dropped.
    pub dropped: u64,
    /// Extra copies delivered.
    pub duplicated: u64,
    /// Frames held back and delivered late.
    pub reordered: u64,
    /// Frames with a flipped bit.
    pub corrupted: u64,
    /// Frames delayed.
    pub delayed: u64,
    /// Frames delivered at once because the hold pool was full.
    pub pool_exhausted: u64,
}

/// Frames held back at most.
const POOL: usize = 1024;

struct Held {
    buf: Vec<u8>,
    /// Release after this many more frames pass (reordering).
    after: usize,
    /// Release at this time (delay).
    at: Option<Instant>,
}

/// A queue with faults injected on receive. See the module docs.
pub struct FaultyQueue<Q: NicQueue> {
    inner: Q,
    cfg: FaultConfig,
    rng: ChaCha8Rng,
    held: VecDeque<Held>,
    spare: Vec<Vec<u8>>,
    scratch: Vec<u8>,
    stats: FaultStats,
}

impl<Q: NicQueue> FaultyQueue<Q> {
    /// Wraps `inner`.
    pub fn new(inner: Q, cfg: FaultConfig) -> Result<Self, FaultConfigError> {
        for (name, value) in [
            ("loss", cfg.loss),
            ("duplicate", cfg.duplicate),
            ("reorder", cfg.reorder),
            ("corrupt", cfg.corrupt),
        ] {
            if !(0.0..=1.0).contains(&value) {
                return Err(FaultConfigError::BadProbability { name, value });
            }
        }
        if cfg.reorder > 0.0 && cfg.reorder_window == 0 {
            return Err(FaultConfigError::ZeroWindow);
        }
        let cap = inner.capabilities().max_frame_len();
        Ok(Self {
            inner,
            rng: ChaCha8Rng::seed_from_u64(cfg.seed),
            cfg,
            held: VecDeque::with_capacity(POOL),
            spare: (0..POOL).map(|_| Vec::with_capacity(cap)).collect(),
            scratch: Vec::with_capacity(cap),
            stats: FaultStats::default(),
        })
    }

    /// Counters of injected faults.
    pub fn fault_stats(&self) -> FaultStats {
        self.stats
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    /// Whether a held frame is due.
    fn due(h: &Held, now: Instant) -> bool {
        h.after == 0 && h.at.is_none_or(|t| t <= now)
    }

    /// Delivers due held frames (in order of holding).
    fn release(&mut self, now: Instant, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let mut n = 0;
        let mut i = 0;
        while i < self.held.len() {
            if Self::due(&self.held[i], now) {
                if let Some(h) = self.held.remove(i) {
                    sink(RxFrame {
                        data: &h.buf,
                        rss_hash: None,
                    });
                    self.spare.push(h.buf);
                    n += 1;
                }
            } else {
                i += 1;
            }
        }
        n
    }
}

impl<Q: NicQueue> NicQueue for FaultyQueue<Q> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let now = Instant::now();
        let mut delivered = self.release(now, sink);
        let Self {
            inner,
            cfg,
            rng,
            held,
            spare,
            scratch,
            stats,
        } = self;
        inner.rx_burst(budget, &mut |f| {
            for h in held.iter_mut() {
                h.after = h.after.saturating_sub(1);
            }
            // Every decision is drawn for every frame, so one fault's setting does not shift
            // the random sequence of the others.
            let lose = rng.random_bool(cfg.loss);
            let dup = rng.random_bool(cfg.duplicate);
            let corrupt = rng.random_bool(cfg.corrupt) && !f.data.is_empty();
            let bit = rng.random_range(0..f.data.len().max(1) * 8);
            let reorder = rng.random_bool(cfg.reorder);
            let after = rng.random_range(1..=cfg.reorder_window.max(1));
            if lose {
                stats.dropped += 1;
                return;
            }
            stats.duplicated += u64::from(dup);
            stats.corrupted += u64::from(corrupt);
            let hold = reorder || cfg.delay.is_some();
            for _ in 0..1 + usize::from(dup) {
                let copy = |buf: &mut Vec<u8>| {
                    buf.clear();
                    buf.extend_from_slice(f.data);
                    if corrupt {
                        buf[bit / 8] ^= 1 << (bit % 8);
                    }
                };
                match hold.then(|| spare.pop()).flatten() {
                    Some(mut buf) => {
                        copy(&mut buf);
                        stats.reordered += u64::from(reorder);
                        stats.delayed += u64::from(cfg.delay.is_some());
                        let at = cfg.delay.map(|d| now + d);
                        held.push_back(Held {
                            buf,
                            after: if reorder { after } else { 0 },
                            at,
                        });
                    }
                    None => {
                        stats.pool_exhausted += u64::from(hold);
                        copy(scratch);
                        sink(RxFrame {
                            data: scratch,
                            rss_hash: f.rss_hash,
                        });
                        delivered += 1;
                    }
                }
            }
        });
        delivered + self.release(now, sink)
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx_copy;
    use crate::wire::{self, WireConfig, WireQueue};

    fn run(cfg: FaultConfig, n: u32) -> (Vec<u32>, FaultStats) {
        let (mut a, mut b) = wire::pair(WireConfig {
            ring_size: 1024,
            ..WireConfig::default()
        });
        let mut tx = a.remove(0);
        let mut rx = FaultyQueue::new(b.remove(0), cfg).unwrap();
        let mut out = Vec::new();
        let recv = |rx: &mut FaultyQueue<WireQueue>, out: &mut Vec<u32>| {
            rx.rx_burst(usize::MAX, &mut |f| {
                out.push(u32::from_le_bytes(f.data[..4].try_into().unwrap()));
            })
        };
        for i in 0..n {
            tx_copy(&mut tx, &[&i.to_le_bytes()[..], &[0u8; 60]].concat()).unwrap();
            if i % 64 == 63 {
                tx.tx_flush();
                recv(&mut rx, &mut out);
            }
        }
        tx.tx_flush();
        for _ in 0..100 {
            recv(&mut rx, &mut out);
            tx_copy(&mut tx, &[0xff; 64]).unwrap();
            tx.tx_flush();
        }
        out.retain(|&v| v != u32::from_le_bytes([0xff; 4]));
        (out, rx.fault_stats())
    }

    #[test]
    fn no_faults_is_transparent() {
        let (out, st) = run(FaultConfig::default(), 10_000);
        assert_eq!(out, (0..10_000).collect::<Vec<_>>());
        assert_eq!(st, FaultStats::default());
    }

    #[test]
    fn loss_rate_is_about_right() {
        let cfg = FaultConfig {
            seed: 7,
            loss: 0.1,
            ..FaultConfig::default()
        };
        let (out, st) = run(cfg, 100_000);
        assert!((8_000..12_000).contains(&st.dropped), "{st:?}");
        // `dropped` also counts the filler frames the test sends at the end (at most 100).
        let missing = 100_000 - out.len() as u64;
        assert!(
            missing <= st.dropped && st.dropped <= missing + 100,
            "{st:?} {missing}"
        );
    }

    #[test]
    fn duplication_reordering_and_corruption() {
        let cfg = FaultConfig {
            seed: 9,
            duplicate: 0.05,
            reorder: 0.05,
            reorder_window: 4,
            corrupt: 0.0,
            ..FaultConfig::default()
        };
        let (out, st) = run(cfg, 50_000);
        assert!((2_000..3_000).contains(&st.duplicated), "{st:?}");
        assert!(st.reordered > 1_500, "{st:?}");
        let extra = out.len() as u64 - 50_000;
        assert!(
            extra <= st.duplicated && st.duplicated <= extra + 100,
            "{st:?} {extra}"
        );
        let mut sorted = out.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(sorted, (0..50_000).collect::<Vec<_>>(), "nothing lost");
        assert!(
            out.windows(2).any(|w| w[0] > w[1]),
            "some frames came out of order"
        );
    }

    #[test]
    fn corruption_flips_exactly_one_bit() {
        let (mut a, mut b) = wire::pair(WireConfig::default());
        let cfg = FaultConfig {
            seed: 3,
            corrupt: 1.0,
            ..FaultConfig::default()
        };
        let mut rx = FaultyQueue::new(b.remove(0), cfg).unwrap();
        for _ in 0..100 {
            tx_copy(&mut a[0], &[0u8; 100]).unwrap();
            a[0].tx_flush();
            let mut ones = 0;
            rx.rx_burst(1, &mut |f| {
                ones = f.data.iter().map(|b| b.count_ones()).sum()
            });
            assert_eq!(ones, 1);
        }
        assert_eq!(rx.fault_stats().corrupted, 100);
    }

    #[test]
    fn same_seed_same_faults() {
        let cfg = FaultConfig {
            seed: 42,
            loss: 0.05,
            duplicate: 0.02,
            reorder: 0.03,
            reorder_window: 8,
            corrupt: 0.0,
            delay: None,
        };
        assert_eq!(run(cfg.clone(), 20_000), run(cfg, 20_000));
    }

    #[test]
    fn delay_holds_frames() {
        let (mut a, mut b) = wire::pair(WireConfig::default());
        let cfg = FaultConfig {
            delay: Some(Duration::from_millis(30)),
            ..FaultConfig::default()
        };
        let mut rx = FaultyQueue::new(b.remove(0), cfg).unwrap();
        tx_copy(&mut a[0], &[1; 64]).unwrap();
        a[0].tx_flush();
        let t0 = Instant::now();
        let mut got = 0;
        while got == 0 {
            got += rx.rx_burst(8, &mut |_| {});
        }
        assert!(t0.elapsed() >= Duration::from_millis(30));
        assert_eq!(rx.fault_stats().delayed, 1);
    }

    #[test]
    fn bad_configs_are_refused() {
        let (_, mut b) = wire::pair(WireConfig::default());
        let q = b.remove(0);
        let cfg = FaultConfig {
            loss: 1.5,
            ..FaultConfig::default()
        };
        assert!(matches!(
            FaultyQueue::new(q, cfg),
            Err(FaultConfigError::BadProbability { name: "loss", .. })
        ));
        let (_, mut b) = wire::pair(WireConfig::default());
        let cfg = FaultConfig {
            corrupt: f64::NAN,
            ..FaultConfig::default()
        };
        assert!(FaultyQueue::new(b.remove(0), cfg).is_err());
        let (_, mut b) = wire::pair(WireConfig::default());
        let cfg = FaultConfig {
            reorder: 0.1,
            reorder_window: 0,
            ..FaultConfig::default()
        };
        assert_eq!(
            FaultyQueue::new(b.remove(0), cfg).err(),
            Some(FaultConfigError::ZeroWindow)
        );
    }
}
