//! The in-memory wire: two endpoints joined by bounded lock-free rings.
//!
//! [`pair`] returns endpoint A's queues and endpoint B's queues. A frame sent on any queue of
//! one endpoint arrives on one queue of the other. With several queues the receiving queue is
//! chosen by a symmetric software flow hash over the IPv4 addresses and TCP/UDP ports
//! ([`flow_hash`](crate::rss::flow_hash)), so both directions of a flow use the same queue
//! index, like a NIC with a symmetric RSS key. Frames without a flow hash (ARP, anything not
//! IPv4, anything truncated) go to queue 0, as on a real NIC; a multi-core engine shares them
//! in software.
//!
//! Frame buffers are allocated once, at creation: each direction has a pool of
//! `ring_size * queues` buffers of [`WireConfig::max_frame_len`] bytes. A buffer travels
//! sender's pool -> sender's batch -> receiver's ring -> receiver's closure -> pool. Nothing
//! is allocated per packet.
//!
//! # Driving a `WireQueue`
//!
//! Each queue is owned by one thread (it is `Send`; the two endpoints usually live on two
//! threads). To send, call [`NicQueue::tx_frame`] (or [`crate::tx_copy`]) once per frame:
//! the frame is written into a pool buffer and kept in a local batch, **invisible to the peer
//! until [`NicQueue::tx_flush`]**, which pushes the whole batch into the peer's rings. A frame
//! that finds its ring full is dropped and counted in the sender's [`QueueStats::dropped`],
//! as on a real wire. `tx_frame` fails with [`TxError::Full`] when the direction's pool is
//! exhausted (frames in the peer's rings plus frames waiting to be flushed): receive on the
//! other side, or flush, and try again. To receive, call [`NicQueue::rx_burst`]; each frame's
//! buffer goes back to the pool as soon as the closure returns.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::{
    Capabilities, ChecksumOffloads, ETHERNET_HEADER_LEN, NicQueue, QueueStats, RssInfo, RxFrame,
    TxError,
};

/// Most queues an endpoint of a wire can have.
pub const MAX_QUEUES: u16 = 64;

/// Shape of a wire, given to [`pair`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireConfig {
    /// Queues per endpoint (`1..=`[`MAX_QUEUES`]); more than one turns on flow steering.
    pub queues: u16,
    /// Frames each ring holds; each direction has `ring_size * queues` buffers.
    pub ring_size: usize,
    /// IP MTU in bytes; buffers hold `mtu + 14` bytes.
    pub mtu: usize,
}

impl Default for WireConfig {
    /// One queue, rings of 4096 frames, MTU 1500.
    fn default() -> Self {
        Self {
            queues: 1,
            ring_size: 4096,
            mtu: 1500,
        }
    }
}

impl WireConfig {
    /// Largest frame the wire carries (`mtu + 14`): the size of every buffer.
    pub fn max_frame_len(&self) -> usize {
        self.mtu.saturating_add(ETHERNET_HEADER_LEN)
    }
}

/// A frame in flight: a pool buffer, the length used, and its flow hash.
struct Frame {
    buf: Box<[u8]>,
    len: usize,
    hash: Option<u32>,
}

/// One direction of the wire: a ring per receiving queue and the pool of free buffers.
struct Direction {
    rings: Vec<ArrayQueue<Frame>>,
    pool: ArrayQueue<Box<[u8]>>,
}

impl Direction {
    fn new(cfg: &WireConfig, buffers: usize) -> Self {
        let pool = ArrayQueue::new(buffers);
        for _ in 0..buffers {
            // The pool was made with room for exactly this many buffers.
            let _ = pool.push(vec![0u8; cfg.max_frame_len()].into_boxed_slice());
        }
        Self {
            rings: (0..cfg.queues)
                .map(|_| ArrayQueue::new(cfg.ring_size))
                .collect(),
            pool,
        }
    }

    /// Gives a buffer back to the pool. The pool has room for every buffer of the direction,
    /// so this cannot fail; if it ever did, the buffer would simply be freed.
    fn recycle(&self, buf: Box<[u8]>) {
        let _ = self.pool.push(buf);
    }
}

/// One queue of one endpoint of a wire: a [`NicQueue`] made by [`pair`]. See the module
/// docs for how to drive it (frames reach the peer at [`NicQueue::tx_flush`]).
pub struct WireQueue {
    id: u16,
    caps: Capabilities,
    /// Frames to this endpoint (this queue receives from `inbound.rings[id]`).
    inbound: Arc<Direction>,
    /// Frames from this endpoint.
    outbound: Arc<Direction>,
    /// Frames written but not yet flushed.
    batch: Vec<Frame>,
    stats: QueueStats,
}

impl std::fmt::Debug for WireQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WireQueue")
            .field("id", &self.id)
            .field("queues", &self.caps.queues)
            .field("unflushed", &self.batch.len())
            .field("stats", &self.stats)
            .finish_non_exhaustive()
    }
}

/// Makes a wire: endpoint A's queues and endpoint B's queues, `cfg.queues` each, in queue
/// index order. Every buffer of both directions is allocated here.
///
/// # Panics
/// If `cfg.queues` is 0 or over [`MAX_QUEUES`], or `cfg.ring_size` is 0, or
/// `ring_size * queues` overflows (programming errors).
pub fn pair(cfg: WireConfig) -> (Vec<WireQueue>, Vec<WireQueue>) {
    assert!(
        (1..=MAX_QUEUES).contains(&cfg.queues),
        "a wire has 1 to {MAX_QUEUES} queues, not {}",
        cfg.queues
    );
    assert!(cfg.ring_size > 0, "rings need room for at least one frame");
    let buffers = cfg
        .ring_size
        .checked_mul(usize::from(cfg.queues))
        .expect("ring_size * queues overflows");
    let ab = Arc::new(Direction::new(&cfg, buffers));
    let ba = Arc::new(Direction::new(&cfg, buffers));
    let caps = Capabilities {
        mtu: cfg.mtu,
        checksum: ChecksumOffloads::default(),
        queues: cfg.queues,
        rss: (cfg.queues > 1).then_some(RssInfo {
            key: None,
            symmetric: true,
            table: Vec::new(),
        }),
    };
    let side = |inbound: &Arc<Direction>, outbound: &Arc<Direction>| {
        (0..cfg.queues)
            .map(|id| WireQueue {
                id,
                caps: caps.clone(),
                inbound: Arc::clone(inbound),
                outbound: Arc::clone(outbound),
                batch: Vec::with_capacity(buffers.min(256)),
                stats: QueueStats::default(),
            })
            .collect()
    };
    (side(&ba, &ab), side(&ab, &ba))
}

impl WireQueue {
    /// Buffers free right now in the pool this endpoint sends from (shared by all of its
    /// queues). When it is 0, `tx_frame` fails with [`TxError::Full`].
    pub fn free_tx_buffers(&self) -> usize {
        self.outbound.pool.len()
    }

    /// Frames written by `tx_frame` and not yet published by `tx_flush`.
    pub fn unflushed(&self) -> usize {
        self.batch.len()
    }

    /// Frames waiting in this queue's receive ring.
    pub fn rx_pending(&self) -> usize {
        self.inbound
            .rings
            .get(usize::from(self.id))
            .map_or(0, ArrayQueue::len)
    }
}

impl NicQueue for WireQueue {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let Some(ring) = self.inbound.rings.get(usize::from(self.id)) else {
            return 0;
        };
        let mut n = 0;
        while n < budget {
            let Some(frame) = ring.pop() else { break };
            let data = frame.buf.get(..frame.len).unwrap_or(&[]);
            sink(RxFrame {
                data,
                rss_hash: frame.hash,
            });
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += data.len() as u64;
            self.inbound.recycle(frame.buf);
            n += 1;
        }
        n
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        let Some(mut buf) = self.outbound.pool.pop() else {
            self.stats.tx_full += 1;
            return Err(TxError::Full);
        };
        let len = fill(&mut buf);
        let Some(data) = buf.get(..len).filter(|_| len > 0) else {
            let max = buf.len();
            self.outbound.recycle(buf);
            return if len == 0 {
                Ok(())
            } else {
                Err(TxError::TooLong { len, max })
            };
        };
        let hash = crate::rss::flow_hash(data);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.batch.push(Frame { buf, len, hash });
        Ok(())
    }

    /// Pushes the batch into the peer's rings (each frame to the ring its flow hash picks);
    /// frames that find their ring full are dropped and counted. Returns the number of
    /// frames published, dropped ones included (they left this queue).
    fn tx_flush(&mut self) -> usize {
        let n = self.batch.len();
        let queues = self.caps.queues;
        for frame in self.batch.drain(..) {
            let ring = self
                .outbound
                .rings
                .get(usize::from(queue_of(frame.hash, queues)));
            let refused = match ring {
                Some(ring) => ring.push(frame).err(),
                None => Some(frame),
            };
            if let Some(frame) = refused {
                self.stats.dropped += 1;
                self.outbound.recycle(frame.buf);
            }
        }
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

impl Drop for WireQueue {
    /// Unflushed frames are discarded; their buffers go back to the pool.
    fn drop(&mut self) {
        for f in self.batch.drain(..) {
            self.outbound.recycle(f.buf);
        }
    }
}

/// The queue index (out of `queues`) the wire delivers a frame with flow hash `hash` to:
/// `hash % queues`, and queue 0 for frames without a flow hash.
pub fn queue_of(hash: Option<u32>, queues: u16) -> u16 {
    match hash {
        // The result is below `queues`, so it fits.
        Some(h) if queues > 1 => (h % u32::from(queues)) as u16,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::alloc_count::allocations_during;
    use crate::tx_copy;
    use std::net::SocketAddrV4;

    use crate::rss::tests::frame_between;
    use crate::rss::{flow_hash, tuple_hash};

    fn sa(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip.into(), port)
    }

    fn recv_all(q: &mut WireQueue) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        q.rx_burst(usize::MAX, &mut |f| out.push(f.data.to_vec()));
        out
    }

    #[test]
    fn queues_are_send_and_capabilities_are_right() {
        fn send<T: Send + 'static>() {}
        send::<WireQueue>();
        let (a, b) = pair(WireConfig::default());
        assert_eq!((a.len(), b.len()), (1, 1));
        let c = a[0].capabilities();
        assert_eq!((c.mtu, c.queues, c.max_frame_len()), (1500, 1, 1514));
        assert_eq!(c.rss, None);
        let (a, b) = pair(WireConfig {
            queues: 3,
            ring_size: 16,
            mtu: 9000,
        });
        assert_eq!((a.len(), b.len()), (3, 3));
        for (i, q) in a.iter().chain(&b).enumerate() {
            assert_eq!(usize::from(q.queue_id()), i % 3);
            assert_eq!(q.capabilities().max_frame_len(), 9014);
            assert_eq!(
                q.capabilities().rss,
                Some(RssInfo {
                    key: None,
                    symmetric: true,
                    table: Vec::new(),
                })
            );
            assert_eq!(q.free_tx_buffers(), 48);
        }
    }

    #[test]
    #[should_panic(expected = "1 to 64 queues")]
    fn zero_queues_is_refused() {
        let _ = pair(WireConfig {
            queues: 0,
            ..WireConfig::default()
        });
    }

    #[test]
    #[should_panic(expected = "at least one frame")]
    fn zero_ring_is_refused() {
        let _ = pair(WireConfig {
            ring_size: 0,
            ..WireConfig::default()
        });
    }

    #[test]
    fn round_trip_in_order_visible_at_flush() {
        let (mut a, mut b) = pair(WireConfig::default());
        for i in 0..100u8 {
            tx_copy(&mut a[0], &[i; 60]).unwrap();
        }
        assert_eq!(a[0].unflushed(), 100);
        assert!(
            recv_all(&mut b[0]).is_empty(),
            "nothing is visible before the flush"
        );
        assert_eq!(a[0].tx_flush(), 100);
        assert_eq!(a[0].unflushed(), 0);
        assert_eq!(b[0].rx_pending(), 100);
        let got = recv_all(&mut b[0]);
        assert_eq!(got.len(), 100);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f, &vec![i as u8; 60]);
        }
        tx_copy(&mut b[0], b"back").unwrap();
        assert_eq!(b[0].tx_flush(), 1);
        assert_eq!(recv_all(&mut a[0]), vec![b"back".to_vec()]);
        assert_eq!(a[0].tx_flush(), 0, "an empty flush publishes nothing");
        let (sa, sb) = (a[0].stats(), b[0].stats());
        assert_eq!((sa.tx_frames, sa.tx_bytes), (100, 6000));
        assert_eq!((sb.rx_frames, sb.rx_bytes), (100, 6000));
        assert_eq!((sb.tx_frames, sa.rx_frames, sa.rx_bytes), (1, 1, 4));
        assert_eq!(sa.dropped + sb.dropped + sa.tx_full + sb.tx_full, 0);
    }

    #[test]
    fn budget_limits_a_burst_and_the_rest_waits() {
        let (mut a, mut b) = pair(WireConfig::default());
        for i in 0..10u8 {
            tx_copy(&mut a[0], &[i]).unwrap();
        }
        a[0].tx_flush();
        let mut got = Vec::new();
        assert_eq!(b[0].rx_burst(0, &mut |f| got.push(f.data[0])), 0);
        assert_eq!(b[0].rx_burst(3, &mut |f| got.push(f.data[0])), 3);
        assert_eq!(b[0].rx_burst(3, &mut |f| got.push(f.data[0])), 3);
        assert_eq!(b[0].rx_burst(64, &mut |f| got.push(f.data[0])), 4);
        assert_eq!(b[0].rx_burst(64, &mut |f| got.push(f.data[0])), 0);
        assert_eq!(got, (0..10).collect::<Vec<u8>>());
    }

    #[test]
    fn empty_frames_are_abandoned_and_full_size_frames_pass() {
        let (mut a, mut b) = pair(WireConfig::default());
        a[0].tx_frame(&mut |_| 0).unwrap();
        assert_eq!(a[0].unflushed(), 0);
        let mut seen_len = 0;
        a[0].tx_frame(&mut |buf| {
            seen_len = buf.len();
            buf.fill(0xab);
            buf.len()
        })
        .unwrap();
        assert_eq!(seen_len, 1514);
        a[0].tx_flush();
        assert_eq!(recv_all(&mut b[0]), vec![vec![0xab; 1514]]);
        assert_eq!(a[0].stats().tx_frames, 1);
    }

    #[test]
    fn oversized_frames_are_refused_and_their_buffer_kept() {
        let (mut a, _b) = pair(WireConfig {
            ring_size: 4,
            ..WireConfig::default()
        });
        assert_eq!(
            tx_copy(&mut a[0], &[0; 1515]),
            Err(TxError::TooLong {
                len: 1515,
                max: 1514
            })
        );
        assert_eq!(
            a[0].tx_frame(&mut |_| 5000),
            Err(TxError::TooLong {
                len: 5000,
                max: 1514
            })
        );
        assert_eq!(a[0].free_tx_buffers(), 4);
        assert_eq!(a[0].stats().tx_frames, 0);
    }

    #[test]
    fn pool_exhaustion_is_full_and_buffers_come_back() {
        let (mut a, mut b) = pair(WireConfig {
            ring_size: 8,
            ..WireConfig::default()
        });
        for _ in 0..8 {
            tx_copy(&mut a[0], &[1; 64]).unwrap();
        }
        assert_eq!(a[0].free_tx_buffers(), 0);
        assert_eq!(tx_copy(&mut a[0], &[1; 64]), Err(TxError::Full));
        assert_eq!(a[0].stats().tx_full, 1);
        a[0].tx_flush();
        // Still full: the frames sit in B's ring until B receives them.
        assert_eq!(tx_copy(&mut a[0], &[1; 64]), Err(TxError::Full));
        assert_eq!(recv_all(&mut b[0]).len(), 8);
        assert_eq!(a[0].free_tx_buffers(), 8);
        tx_copy(&mut a[0], &[1; 64]).unwrap();
        // The other direction has a pool of its own.
        assert_eq!(b[0].free_tx_buffers(), 8);
    }

    #[test]
    fn steady_state_allocates_nothing_and_keeps_the_pool_whole() {
        let (mut a, mut b) = pair(WireConfig {
            ring_size: 64,
            ..WireConfig::default()
        });
        let frame = [7u8; 200];
        let round = |a: &mut WireQueue, b: &mut WireQueue| {
            for _ in 0..32 {
                tx_copy(a, &frame).unwrap();
            }
            a.tx_flush();
            let mut n = 0;
            b.rx_burst(usize::MAX, &mut |f| {
                assert_eq!(f.data, &frame[..]);
                n += 1;
            });
            assert_eq!(n, 32);
        };
        // Warm-up: nothing should need it, but it keeps the measurement honest.
        round(&mut a[0], &mut b[0]);
        let allocs = allocations_during(|| {
            for _ in 0..1000 {
                round(&mut a[0], &mut b[0]);
                round(&mut b[0], &mut a[0]);
            }
        });
        assert_eq!(allocs, 0, "allocations in steady state");
        assert_eq!((a[0].free_tx_buffers(), b[0].free_tx_buffers()), (64, 64));
    }

    #[test]
    fn dropping_a_queue_returns_its_unflushed_buffers() {
        let (mut a, b) = pair(WireConfig {
            ring_size: 4,
            ..WireConfig::default()
        });
        let mut q = a.remove(0);
        for _ in 0..3 {
            tx_copy(&mut q, &[1; 64]).unwrap();
        }
        let pool = Arc::clone(&q.outbound);
        assert_eq!(pool.pool.len(), 1);
        drop(q);
        assert_eq!(pool.pool.len(), 4);
        drop(b);
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        // Two queues: the pool holds 8 buffers; frames of one flow all go to one ring of 4.
        let (mut a, mut b) = pair(WireConfig {
            ring_size: 4,
            queues: 2,
            mtu: 1500,
        });
        let c = sa([10, 0, 0, 1], 1000);
        let s = sa([10, 0, 0, 2], 80);
        for _ in 0..8 {
            tx_copy(&mut a[0], &frame_between(c, s, 6)).unwrap();
        }
        assert_eq!(a[0].tx_flush(), 8);
        assert_eq!(a[0].stats().dropped, 4);
        let q = usize::from(queue_of(Some(tuple_hash(c, s)), 2));
        assert_eq!(recv_all(&mut b[q]).len(), 4);
        assert!(recv_all(&mut b[1 - q]).is_empty());
        // Dropped buffers went back to the pool.
        assert_eq!(a[0].free_tx_buffers(), 8);
    }

    #[test]
    fn frames_without_a_flow_go_to_queue_zero() {
        let (mut a, mut b) = pair(WireConfig {
            queues: 3,
            ..WireConfig::default()
        });
        let arp_like = b"an ARP-like frame, not IPv4".to_vec();
        tx_copy(&mut a[2], &arp_like).unwrap();
        a[2].tx_flush();
        let mut hashes = Vec::new();
        b[0].rx_burst(8, &mut |f| hashes.push((f.data.to_vec(), f.rss_hash)));
        assert_eq!(hashes, vec![(arp_like, None)]);
        assert!(recv_all(&mut b[1]).is_empty());
        assert!(recv_all(&mut b[2]).is_empty());
    }

    #[test]
    fn both_directions_of_a_flow_use_the_same_queue() {
        let (mut a, mut b) = pair(WireConfig {
            queues: 4,
            ..WireConfig::default()
        });
        let mut used = [0usize; 4];
        for port in 1000..1400u16 {
            let c = sa([10, 0, 0, 1], port);
            let s = sa([10, 0, 0, 2], 80);
            let fwd = frame_between(c, s, 6);
            let rev = frame_between(s, c, 6);
            assert_eq!(flow_hash(&fwd), flow_hash(&rev));
            assert_eq!(flow_hash(&fwd), Some(tuple_hash(c, s)));
            // Sent from any queue of A.
            let from = usize::from(port % 4);
            tx_copy(&mut a[from], &fwd).unwrap();
            a[from].tx_flush();
            let mut qb = None;
            for (i, q) in b.iter_mut().enumerate() {
                q.rx_burst(8, &mut |f| {
                    assert_eq!(f.rss_hash, Some(tuple_hash(c, s)));
                    assert!(qb.replace(i).is_none(), "delivered once");
                });
            }
            let qb = qb.unwrap();
            tx_copy(&mut b[qb], &rev).unwrap();
            b[qb].tx_flush();
            let qa = (0..4).find(|&q| !recv_all(&mut a[q]).is_empty()).unwrap();
            assert_eq!(qa, qb);
            used[qa] += 1;
        }
        assert!(
            used.iter().all(|&n| n > 50),
            "flows spread over queues: {used:?}"
        );
    }

    #[test]
    fn queue_of_picks_queue_zero_without_a_hash() {
        assert_eq!(queue_of(None, 8), 0);
        assert_eq!(queue_of(Some(13), 1), 0);
        assert_eq!(queue_of(Some(13), 8), 5);
        assert_eq!(queue_of(Some(u32::MAX), 64), 63);
    }

    #[test]
    fn two_threads_ping_pong_a_million_frames() {
        // 500k frames A -> B, each echoed B -> A: a million frames cross the wire, in order.
        const N: u32 = 500_000;
        const WINDOW: u32 = 512;
        const BURST: usize = 64;
        let (mut a, mut b) = pair(WireConfig {
            ring_size: 1024,
            ..WireConfig::default()
        });
        let mut qa = a.remove(0);
        let mut qb = b.remove(0);
        let echo = std::thread::spawn(move || {
            let mut seen = 0u32;
            let mut got = [0u32; BURST];
            while seen < N {
                let mut k = 0;
                qb.rx_burst(BURST, &mut |f| {
                    got[k] = f
                        .data
                        .get(..4)
                        .map_or(u32::MAX, |b| u32::from_le_bytes(b.try_into().unwrap()));
                    k += 1;
                });
                for &v in &got[..k] {
                    assert_eq!(v, seen, "A -> B order");
                    seen += 1;
                    tx_copy(&mut qb, &v.to_le_bytes()).unwrap();
                }
                if k == 0 {
                    std::thread::yield_now();
                }
                qb.tx_flush();
            }
            qb.stats()
        });
        let (mut sent, mut back) = (0u32, 0u32);
        while back < N {
            while sent < N && sent - back < WINDOW {
                tx_copy(&mut qa, &sent.to_le_bytes()).unwrap();
                sent += 1;
            }
            qa.tx_flush();
            let n = qa.rx_burst(BURST, &mut |f| {
                assert_eq!(u32::from_le_bytes(f.data.try_into().unwrap()), back);
                back += 1;
            });
            if n == 0 {
                std::thread::yield_now();
            }
        }
        let sb = echo.join().unwrap();
        let sa = qa.stats();
        assert_eq!((sa.tx_frames, sa.rx_frames), (u64::from(N), u64::from(N)));
        assert_eq!((sb.tx_frames, sb.rx_frames), (u64::from(N), u64::from(N)));
        assert_eq!(sa.dropped + sb.dropped + sa.tx_full + sb.tx_full, 0);
        assert_eq!(qa.free_tx_buffers(), 1024);
    }
}
