//! Tests of the fault layer: each fault alone and combined, over a scripted queue and the
//! wire; reproducible from the seed; no allocation per frame.

use super::*;
use crate::ChecksumOffloads;
use crate::alloc_count::allocations_during;
use crate::tx_copy;
use crate::wire::{self, WireConfig};
use proptest::prelude::*;

/// A queue that delivers frames pushed into it (in order, up to the budget), each with
/// its index as the RSS hash, and records what is sent through it.
struct Script {
    caps: Capabilities,
    rx: VecDeque<Vec<u8>>,
    pushed: u32,
    hashes: VecDeque<u32>,
    sent: Vec<Vec<u8>>,
    flushes: usize,
}

impl Script {
    fn new() -> Self {
        Self {
            caps: Capabilities {
                mtu: 1500,
                checksum: ChecksumOffloads::default(),
                queues: 1,
                rss: None,
            },
            rx: VecDeque::new(),
            pushed: 0,
            hashes: VecDeque::new(),
            sent: Vec::new(),
            flushes: 0,
        }
    }

    fn push(&mut self, frame: Vec<u8>) {
        self.rx.push_back(frame);
        self.hashes.push_back(self.pushed);
        self.pushed += 1;
    }
}

impl NicQueue for Script {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }
    fn queue_id(&self) -> u16 {
        0
    }
    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let mut n = 0;
        while n < budget {
            let Some(f) = self.rx.pop_front() else { break };
            let h = self.hashes.pop_front();
            sink(RxFrame {
                data: &f,
                rss_hash: h,
            });
            n += 1;
        }
        n
    }
    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        let mut buf = vec![0; self.caps.max_frame_len()];
        let n = fill(&mut buf);
        buf.truncate(n);
        self.sent.push(buf);
        Ok(())
    }
    fn tx_flush(&mut self) -> usize {
        self.flushes += 1;
        self.sent.len()
    }
    fn stats(&self) -> QueueStats {
        QueueStats::default()
    }
}

fn numbered(i: u32) -> Vec<u8> {
    let mut f = vec![0u8; 64];
    f[..4].copy_from_slice(&i.to_le_bytes());
    f
}

fn number(f: &[u8]) -> u32 {
    u32::from_le_bytes(f[..4].try_into().unwrap())
}

/// A faulty queue over a script that holds the frames numbered 0..n.
fn scripted(cfg: FaultConfig, n: u32) -> FaultyQueue<Script> {
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    for i in 0..n {
        q.inner_mut().push(numbered(i));
    }
    q
}

/// Feeds frames 0..n through a faulty queue in chunks of `chunk`, receiving with `budget`,
/// then drains what is held. Returns the numbers delivered, in order, and the counters.
fn run_with(cfg: FaultConfig, n: u32, chunk: u32, budget: usize) -> (Vec<u32>, FaultStats) {
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    let mut out = Vec::new();
    let mut recv = |q: &mut FaultyQueue<Script>| {
        let k = q.rx_burst(budget, &mut |f| out.push(number(f.data)));
        assert!(
            k <= budget,
            "a burst of {k} frames over a budget of {budget}"
        );
        k
    };
    for i in 0..n {
        q.inner_mut().push(numbered(i));
        if i % chunk == chunk - 1 {
            while !q.inner().rx.is_empty() {
                recv(&mut q);
            }
        }
    }
    while !q.inner().rx.is_empty() {
        recv(&mut q);
    }
    q.release_held();
    while recv(&mut q) > 0 {}
    assert_eq!(q.held(), 0);
    (out, q.fault_stats())
}

fn run(cfg: FaultConfig, n: u32) -> (Vec<u32>, FaultStats) {
    run_with(cfg, n, 64, usize::MAX)
}

fn mixed(seed: u64) -> FaultConfig {
    FaultConfig {
        seed,
        loss: 0.05,
        duplicate: 0.03,
        reorder: 0.04,
        reorder_window: 6,
        corrupt: 0.0,
        delay: None,
    }
}

#[test]
fn wrapped_wire_queues_are_send() {
    fn send<T: Send>() {}
    send::<FaultyQueue<wire::WireQueue>>();
}

#[test]
fn no_faults_is_transparent_over_a_wire() {
    let (mut a, mut b) = wire::pair(WireConfig {
        ring_size: 256,
        ..WireConfig::default()
    });
    let mut rx = FaultyQueue::new(b.remove(0), FaultConfig::default()).unwrap();
    let mut out = Vec::new();
    for round in 0..100u32 {
        for i in 0..100 {
            tx_copy(&mut a[0], &numbered(round * 100 + i)).unwrap();
        }
        a[0].tx_flush();
        rx.rx_burst(usize::MAX, &mut |f| {
            assert_eq!(f.data.len(), 64);
            out.push(number(f.data));
        });
    }
    assert_eq!(out, (0..10_000).collect::<Vec<_>>());
    assert_eq!(rx.fault_stats(), FaultStats::default());
    assert_eq!(rx.stats().rx_frames, 10_000);
}

#[test]
fn rss_hashes_survive_holding() {
    let cfg = FaultConfig {
        reorder: 0.5,
        duplicate: 0.2,
        reorder_window: 3,
        seed: 5,
        ..FaultConfig::default()
    };
    let mut q = scripted(cfg, 1000);
    q.release_held();
    let mut n = 0;
    while q.rx_burst(7, &mut |f| {
        assert_eq!(f.rss_hash, Some(number(f.data)));
        n += 1;
    }) > 0
    {}
    q.release_held();
    while q.rx_burst(7, &mut |_| n += 1) > 0 {}
    assert!(n >= 1000);
}

#[test]
fn transmission_passes_through_unchanged() {
    let cfg = FaultConfig {
        loss: 1.0,
        corrupt: 1.0,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    for i in 0..10 {
        tx_copy(&mut q, &numbered(i)).unwrap();
    }
    assert_eq!(q.tx_flush(), 10);
    let sent: Vec<_> = q.inner().sent.iter().map(|f| number(f)).collect();
    assert_eq!(sent, (0..10).collect::<Vec<_>>());
    assert_eq!(q.inner().flushes, 1);
    assert_eq!(q.fault_stats(), FaultStats::default());
}

#[test]
fn both_directions_of_a_wire_can_be_faulty() {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let lossy = |seed| FaultConfig {
        seed,
        loss: 0.5,
        ..FaultConfig::default()
    };
    let mut qa = FaultyQueue::new(a.remove(0), lossy(1)).unwrap();
    let mut qb = FaultyQueue::new(b.remove(0), lossy(2)).unwrap();
    for i in 0..1000 {
        tx_copy(&mut qa, &numbered(i)).unwrap();
        tx_copy(&mut qb, &numbered(i)).unwrap();
    }
    qa.tx_flush();
    qb.tx_flush();
    let (mut na, mut nb) = (0, 0);
    qa.rx_burst(usize::MAX, &mut |_| na += 1);
    qb.rx_burst(usize::MAX, &mut |_| nb += 1);
    assert!(
        (350..650).contains(&na) && (350..650).contains(&nb),
        "{na} {nb}"
    );
    assert_eq!(qa.fault_stats().dropped + na as u64, 1000);
    assert_eq!(qb.fault_stats().dropped + nb as u64, 1000);
}

#[test]
fn bad_configs_are_refused() {
    let bad = |cfg: FaultConfig| FaultyQueue::new(Script::new(), cfg).err();
    for value in [1.5, -0.1, f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let cfg = FaultConfig {
            loss: value,
            ..FaultConfig::default()
        };
        assert!(
            matches!(
                bad(cfg),
                Some(FaultConfigError::BadProbability { name: "loss", .. })
            ),
            "{value}"
        );
    }
    for (name, cfg) in [
        (
            "duplicate",
            FaultConfig {
                duplicate: 2.0,
                ..FaultConfig::default()
            },
        ),
        (
            "reorder",
            FaultConfig {
                reorder: -1.0,
                ..FaultConfig::default()
            },
        ),
        (
            "corrupt",
            FaultConfig {
                corrupt: f64::NAN,
                ..FaultConfig::default()
            },
        ),
    ] {
        match bad(cfg) {
            Some(FaultConfigError::BadProbability { name: n, .. }) => assert_eq!(n, name),
            other => panic!("{name}: {other:?}"),
        }
    }
    let cfg = FaultConfig {
        reorder: 0.1,
        reorder_window: 0,
        ..FaultConfig::default()
    };
    assert_eq!(bad(cfg), Some(FaultConfigError::ZeroWindow));
    let cfg = FaultConfig {
        delay: Some(Duration::MAX),
        ..FaultConfig::default()
    };
    assert_eq!(
        bad(cfg),
        Some(FaultConfigError::DelayTooLong(Duration::MAX))
    );
    let cfg = FaultConfig {
        delay: Some(MAX_DELAY),
        ..FaultConfig::default()
    };
    assert!(cfg.validate().is_ok());
    let msg = FaultConfigError::BadProbability {
        name: "loss",
        value: 1.5,
    }
    .to_string();
    assert_eq!(msg, "loss must be a probability in 0..=1, got 1.5");
    // The edges are fine, and a zero window without reordering too.
    let edges = FaultConfig {
        loss: 0.0,
        duplicate: 1.0,
        reorder: 0.0,
        reorder_window: 0,
        corrupt: 1.0,
        ..FaultConfig::default()
    };
    assert!(edges.validate().is_ok());
    assert!(FaultConfig::default().validate().is_ok());
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
    assert_eq!(out.len() as u64, 100_000 - st.dropped);
    assert!(
        out.windows(2).all(|w| w[0] < w[1]),
        "loss alone keeps order"
    );
    assert_eq!(
        st,
        FaultStats {
            dropped: st.dropped,
            ..FaultStats::default()
        }
    );
}

#[test]
fn certain_loss_drops_everything() {
    let cfg = FaultConfig {
        loss: 1.0,
        duplicate: 1.0,
        reorder: 1.0,
        ..FaultConfig::default()
    };
    let (out, st) = run(cfg, 1000);
    assert!(out.is_empty());
    assert_eq!(st.dropped, 1000);
    assert_eq!(st.duplicated + st.reordered, 0);
}

#[test]
fn duplicates_come_back_to_back() {
    let cfg = FaultConfig {
        seed: 11,
        duplicate: 0.05,
        ..FaultConfig::default()
    };
    let (out, st) = run(cfg, 50_000);
    assert!((2_000..3_000).contains(&st.duplicated), "{st:?}");
    assert_eq!(out.len() as u64, 50_000 + st.duplicated);
    let mut dedup = out.clone();
    dedup.dedup();
    assert_eq!(dedup, (0..50_000).collect::<Vec<_>>());
}

#[test]
fn reordering_stays_within_the_window() {
    const N: u32 = 4000;
    const WINDOW: usize = 5;
    let cfg = FaultConfig {
        seed: 9,
        reorder: 0.1,
        reorder_window: WINDOW,
        ..FaultConfig::default()
    };
    let (out, st) = run(cfg, N);
    assert!((250..550).contains(&st.reordered), "{st:?}");
    let mut sorted = out.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, (0..N).collect::<Vec<_>>(), "nothing lost or added");
    assert!(
        out.windows(2).any(|w| w[0] > w[1]),
        "some came out of order"
    );
    // A frame is overtaken by at most WINDOW later frames (held ones overtake nothing
    // but are overtaken; release_held at the end can only shorten the wait).
    for (p, &v) in out.iter().enumerate() {
        let overtaken_by = out[..p].iter().filter(|&&w| w > v).count();
        assert!(
            overtaken_by <= WINDOW,
            "frame {v} overtaken by {overtaken_by}"
        );
    }
}

#[test]
fn a_window_of_one_swaps_neighbours() {
    let cfg = FaultConfig {
        reorder: 1.0,
        reorder_window: 1,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    let mut out = Vec::new();
    q.inner_mut().push(numbered(0));
    assert_eq!(q.rx_burst(8, &mut |f| out.push(number(f.data))), 0);
    assert_eq!(q.held(), 1);
    // Every frame is held for one later frame: each is released right after the next
    // one arrives (and is held in turn).
    for i in 1..5 {
        q.inner_mut().push(numbered(i));
        assert_eq!(q.rx_burst(8, &mut |f| out.push(number(f.data))), 1);
    }
    assert_eq!(out, vec![0, 1, 2, 3]);
    q.release_held();
    q.rx_burst(8, &mut |f| out.push(number(f.data)));
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
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
    let mut positions = std::collections::HashSet::new();
    for _ in 0..200 {
        tx_copy(&mut a[0], &[0u8; 100]).unwrap();
        a[0].tx_flush();
        let mut ones = 0;
        let mut n = 0;
        rx.rx_burst(1, &mut |f| {
            assert_eq!(f.data.len(), 100);
            ones = f.data.iter().map(|b| b.count_ones()).sum();
            positions.insert(f.data.iter().position(|&b| b != 0));
            n += 1;
        });
        assert_eq!((n, ones), (1, 1));
    }
    assert_eq!(rx.fault_stats().corrupted, 200);
    assert!(positions.len() > 50, "bits spread over the frame");
}

#[test]
fn corruption_rate_is_about_right_and_empty_frames_are_spared() {
    let cfg = FaultConfig {
        seed: 21,
        corrupt: 0.3,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    let mut flipped = 0u64;
    for _ in 0..20 {
        for _ in 0..1000 {
            q.inner_mut().push(vec![0u8; 60]);
        }
        q.rx_burst(usize::MAX, &mut |f| {
            flipped += u64::from(f.data.iter().any(|&b| b != 0));
        });
    }
    assert!((5_000..7_000).contains(&flipped), "{flipped}");
    assert_eq!(q.fault_stats().corrupted, flipped);
    let cfg = FaultConfig {
        corrupt: 1.0,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::new(Script::new(), cfg).unwrap();
    q.inner_mut().push(Vec::new());
    assert_eq!(q.rx_burst(8, &mut |f| assert!(f.data.is_empty())), 1);
    assert_eq!(q.fault_stats().corrupted, 0);
}

#[test]
fn same_seed_same_faults_whatever_the_bursts() {
    let cfg = mixed(42);
    let reference = run(cfg.clone(), 20_000);
    assert!(reference.1.dropped > 0 && reference.1.duplicated > 0);
    assert!(reference.1.reordered > 0);
    for (chunk, budget) in [(1, 1), (7, 3), (64, 64), (1000, usize::MAX), (5000, 17)] {
        assert_eq!(
            run_with(cfg.clone(), 20_000, chunk, budget),
            reference,
            "chunk {chunk} budget {budget}"
        );
    }
    assert_ne!(
        run(mixed(43), 20_000).0,
        reference.0,
        "another seed differs"
    );
}

#[test]
fn corruption_is_reproducible() {
    let cfg = FaultConfig {
        seed: 77,
        corrupt: 0.5,
        duplicate: 0.1,
        ..FaultConfig::default()
    };
    let frames = |cfg: FaultConfig| {
        let mut q = scripted(cfg, 2000);
        let mut out = Vec::new();
        while q.rx_burst(10, &mut |f| out.push(f.data.to_vec())) > 0 {}
        out
    };
    assert_eq!(frames(cfg.clone()), frames(cfg));
}

#[test]
fn budget_is_respected_and_leftovers_come_first() {
    let cfg = FaultConfig {
        duplicate: 1.0,
        ..FaultConfig::default()
    };
    let mut q = scripted(cfg, 3);
    let mut out = Vec::new();
    // One frame from the inner queue makes two; the second waits.
    assert_eq!(q.rx_burst(1, &mut |f| out.push(number(f.data))), 1);
    assert_eq!(q.held(), 1);
    assert_eq!(q.rx_burst(2, &mut |f| out.push(number(f.data))), 2);
    assert_eq!(q.rx_burst(0, &mut |f| out.push(number(f.data))), 0);
    assert_eq!(q.rx_burst(100, &mut |f| out.push(number(f.data))), 3);
    assert_eq!(out, vec![0, 0, 1, 1, 2, 2]);
    assert_eq!(q.held(), 0);
}

#[test]
fn delay_holds_frames_in_order() {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let delay = Duration::from_millis(30);
    let cfg = FaultConfig {
        delay: Some(delay),
        ..FaultConfig::default()
    };
    let mut rx = FaultyQueue::new(b.remove(0), cfg).unwrap();
    for i in 0..10 {
        tx_copy(&mut a[0], &numbered(i)).unwrap();
    }
    a[0].tx_flush();
    let t0 = Instant::now();
    let mut out = Vec::new();
    assert_eq!(rx.rx_burst(64, &mut |f| out.push(number(f.data))), 0);
    assert_eq!(rx.held(), 10);
    while out.len() < 10 {
        rx.rx_burst(4, &mut |f| out.push(number(f.data)));
        assert!(t0.elapsed() < Duration::from_secs(5), "never released");
    }
    assert!(t0.elapsed() >= delay);
    assert_eq!(out, (0..10).collect::<Vec<_>>());
    assert_eq!(rx.fault_stats().delayed, 10);
}

#[test]
fn release_held_ends_a_delay_early() {
    let cfg = FaultConfig {
        delay: Some(Duration::from_secs(3600)),
        reorder: 1.0,
        reorder_window: 1000,
        ..FaultConfig::default()
    };
    let mut q = scripted(cfg, 5);
    assert_eq!(q.rx_burst(64, &mut |_| {}), 0);
    q.release_held();
    let mut out = Vec::new();
    q.rx_burst(64, &mut |f| out.push(number(f.data)));
    assert_eq!(out, vec![0, 1, 2, 3, 4]);
}

#[test]
fn an_exhausted_hold_pool_delivers_at_once() {
    let cfg = FaultConfig {
        reorder: 1.0,
        reorder_window: 1000,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::with_hold_capacity(Script::new(), cfg, 4).unwrap();
    for i in 0..10 {
        q.inner_mut().push(numbered(i));
    }
    let mut out = Vec::new();
    assert_eq!(q.rx_burst(64, &mut |f| out.push(number(f.data))), 6);
    assert_eq!(out, vec![4, 5, 6, 7, 8, 9]);
    let st = q.fault_stats();
    assert_eq!((st.reordered, st.pool_exhausted), (4, 6));
    q.release_held();
    q.rx_burst(64, &mut |f| out.push(number(f.data)));
    assert_eq!(out.len(), 10, "nothing lost");
    // A pool of zero: nothing is ever held.
    let cfg = FaultConfig {
        reorder: 1.0,
        ..FaultConfig::default()
    };
    let mut q = FaultyQueue::with_hold_capacity(Script::new(), cfg, 0).unwrap();
    q.inner_mut().push(numbered(0));
    assert_eq!(q.rx_burst(64, &mut |_| {}), 1);
}

#[test]
fn steady_state_allocates_nothing() {
    let cfg = FaultConfig {
        seed: 1,
        loss: 0.1,
        duplicate: 0.1,
        reorder: 0.1,
        reorder_window: 4,
        corrupt: 0.1,
        delay: None,
    };
    let (mut a, mut b) = wire::pair(WireConfig {
        ring_size: 256,
        ..WireConfig::default()
    });
    let mut rx = FaultyQueue::new(b.remove(0), cfg).unwrap();
    let frame = [0x5au8; 300];
    let mut round = |budget: usize| {
        for _ in 0..64 {
            tx_copy(&mut a[0], &frame).unwrap();
        }
        a[0].tx_flush();
        while rx.rx_burst(budget, &mut |f| assert_eq!(f.data.len(), 300)) > 0 {}
    };
    round(usize::MAX);
    let allocs = allocations_during(|| {
        for i in 0..500 {
            round([1, 5, 64, usize::MAX][i % 4]);
        }
    });
    assert_eq!(allocs, 0);
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Random frames (empty, short, garbage, over the largest frame) under random faults:
    /// no panic, nothing over budget, and every frame accounted for.
    #[test]
    fn random_frames_and_faults_never_panic(
        frames in proptest::collection::vec((0usize..1600, any::<u8>()), 0..60),
        seed in any::<u64>(),
        loss in 0.0..=1.0f64,
        duplicate in 0.0..=1.0f64,
        reorder in 0.0..=1.0f64,
        corrupt in 0.0..=1.0f64,
        window in 1usize..20,
        capacity in 0usize..8,
        budget in 0usize..10,
        delay_us in proptest::option::of(0u64..500),
    ) {
        let cfg = FaultConfig {
            seed, loss, duplicate, reorder, reorder_window: window, corrupt,
            delay: delay_us.map(Duration::from_micros),
        };
        let mut q = FaultyQueue::with_hold_capacity(Script::new(), cfg, capacity).unwrap();
        let n = frames.len() as u64;
        // The wrapper never looks inside a frame: lengths matter, not contents.
        for (len, byte) in frames {
            q.inner_mut().push(vec![byte; len]);
        }
        let mut delivered = 0u64;
        for _ in 0..50 {
            let k = q.rx_burst(budget, &mut |_| {});
            prop_assert!(k <= budget || q.fault_stats().pool_exhausted > 0);
            delivered += k as u64;
        }
        loop {
            q.release_held();
            let k = q.rx_burst(usize::MAX, &mut |_| {});
            delivered += k as u64;
            if k == 0 && q.held() == 0 && q.inner().rx.is_empty() {
                break;
            }
        }
        let st = q.fault_stats();
        prop_assert_eq!(delivered, n - st.dropped + st.duplicated);
    }
}
