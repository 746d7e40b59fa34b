//! The in-memory wire: two endpoints joined by bounded lock-free rings.
//!
//! `pair(cfg)` returns endpoint A's queues and endpoint B's queues. A frame sent on any queue
//! of one endpoint arrives on one queue of the other. With several queues, the receiving
//! queue is chosen by a symmetric software flow hash over IPv4 addresses and TCP/UDP ports
//! ([`flow_hash`]), so both directions of a flow use the same queue index, like a NIC with a
//! symmetric RSS key. Frames without a flow hash (ARP, anything not IPv4) are delivered to
//! every queue, so that each core's stack sees the neighbour traffic it needs (a real NIC
//! puts them on queue 0, and the engine has to share them in software).
//!
//! Frame buffers are allocated once, at creation, into a pool per direction; a buffer goes
//! sender -> ring -> receiver -> pool. Nothing is allocated per packet.
//!
//! # Driving a `WireQueue`
//!
//! Each queue is owned by one thread (it is `Send`, not `Sync`). `tx_frame` writes into a
//! pool buffer and keeps the frame in a local batch; `tx_flush` pushes the batch into the
//! peer's rings, where it becomes visible to the peer's `rx_burst`. A frame that finds the
//! peer's ring full is dropped and counted, as on a real wire. `tx_frame` fails with
//! [`TxError::Full`] when the direction's pool is exhausted (frames in flight plus frames
//! waiting to be flushed).

use std::net::SocketAddrV4;
use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

use crate::{Capabilities, ChecksumOffloads, NicQueue, QueueStats, RssInfo, RxFrame, TxError};

/// Shape of a wire.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WireConfig {
    /// Queues per endpoint (1 ..= 64).
    pub queues: u16,
    /// Frames each ring holds; also the buffers per queue and direction.
    pub ring_size: usize,
    /// IP MTU; buffers are `mtu + 14` bytes.
    pub mtu: usize,
}

impl Default for WireConfig {
    fn default() -> Self {
        Self {
            queues: 1,
            ring_size: 4096,
            mtu: 1500,
        }
    }
}

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
    fn new(cfg: &WireConfig) -> Self {
        let n = usize::from(cfg.queues);
        let total = cfg.ring_size * n;
        let pool = ArrayQueue::new(total);
        for _ in 0..total {
            let _ = pool.push(vec![0u8; cfg.mtu + crate::ETHERNET_HEADER_LEN].into_boxed_slice());
        }
        Self {
            rings: (0..n).map(|_| ArrayQueue::new(cfg.ring_size)).collect(),
            pool,
        }
    }
}

/// One queue of one endpoint of a wire. See the module docs.
pub struct WireQueue {
    id: u16,
    caps: Capabilities,
    /// Frames to this endpoint.
    inbound: Arc<Direction>,
    /// Frames from this endpoint.
    outbound: Arc<Direction>,
    batch: Vec<Frame>,
    stats: QueueStats,
}

/// Makes a wire: endpoint A's queues and endpoint B's queues.
///
/// # Panics
/// If `cfg.queues` is 0 or over 64, or `cfg.ring_size` is 0 (programming errors).
pub fn pair(cfg: WireConfig) -> (Vec<WireQueue>, Vec<WireQueue>) {
    assert!((1..=64).contains(&cfg.queues), "a wire has 1 to 64 queues");
    assert!(cfg.ring_size > 0, "rings need room for at least one frame");
    let ab = Arc::new(Direction::new(&cfg));
    let ba = Arc::new(Direction::new(&cfg));
    let caps = Capabilities {
        mtu: cfg.mtu,
        checksum: ChecksumOffloads::default(),
        queues: cfg.queues,
        rss: (cfg.queues > 1).then_some(RssInfo {
            key: None,
            symmetric: true,
        }),
    };
    let side = |inbound: &Arc<Direction>, outbound: &Arc<Direction>| {
        (0..cfg.queues)
            .map(|id| WireQueue {
                id,
                caps: caps.clone(),
                inbound: inbound.clone(),
                outbound: outbound.clone(),
                batch: Vec::with_capacity(256),
                stats: QueueStats::default(),
            })
            .collect()
    };
    (side(&ba, &ab), side(&ab, &ba))
}

impl NicQueue for WireQueue {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn queue_id(&self) -> u16 {
        self.id
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let ring = &self.inbound.rings[usize::from(self.id)];
        let mut n = 0;
        while n < budget {
            let Some(frame) = ring.pop() else { break };
            let data = frame.buf.get(..frame.len).unwrap_or(&[]);
            sink(RxFrame {
                data,
                rss_hash: frame.hash,
            });
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += frame.len as u64;
            // The pool has room for every buffer of this direction: this cannot fail.
            let _ = self.inbound.pool.push(frame.buf);
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
        if len == 0 {
            let _ = self.outbound.pool.push(buf);
            return Ok(());
        }
        if len > buf.len() {
            let max = buf.len();
            let _ = self.outbound.pool.push(buf);
            return Err(TxError::TooLong { len, max });
        }
        let hash = flow_hash(&buf[..len]);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.batch.push(Frame { buf, len, hash });
        Ok(())
    }

    fn tx_flush(&mut self) -> usize {
        let n = self.batch.len();
        let queues = self.outbound.rings.len() as u32;
        for frame in self.batch.drain(..) {
            let q = match frame.hash {
                Some(h) if queues > 1 => (h % queues) as usize,
                _ => 0,
            };
            if frame.hash.is_none() {
                // To every other queue too, each a copy in a buffer of its own.
                for other in 1..self.outbound.rings.len() {
                    let Some(mut buf) = self.outbound.pool.pop() else {
                        self.stats.dropped += 1;
                        continue;
                    };
                    buf[..frame.len].copy_from_slice(&frame.buf[..frame.len]);
                    let copy = Frame {
                        buf,
                        len: frame.len,
                        hash: None,
                    };
                    if let Err(copy) = self.outbound.rings[other].push(copy) {
                        self.stats.dropped += 1;
                        let _ = self.outbound.pool.push(copy.buf);
                    }
                }
            }
            if let Err(frame) = self.outbound.rings[q].push(frame) {
                self.stats.dropped += 1;
                let _ = self.outbound.pool.push(frame.buf);
            }
        }
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

impl Drop for WireQueue {
    fn drop(&mut self) {
        for f in self.batch.drain(..) {
            let _ = self.outbound.pool.push(f.buf);
        }
    }
}

/// Symmetric hash of a frame's flow: IPv4 addresses plus TCP/UDP ports (addresses only for
/// other IPv4 protocols and for fragments); `None` for anything else or anything
/// truncated. Both directions of a flow hash alike.
pub fn flow_hash(frame: &[u8]) -> Option<u32> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(14..)?;
    let ihl = usize::from(ip.first()? & 0x0f) * 4;
    if ip.first()? >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let src = u32::from_be_bytes(ip.get(12..16)?.try_into().ok()?);
    let dst = u32::from_be_bytes(ip.get(16..20)?.try_into().ok()?);
    let proto = ip[9];
    let fragment = u16::from_be_bytes([ip[6], ip[7]]) & 0x3fff != 0;
    let (sport, dport) = match (proto, fragment) {
        (6 | 17, false) => {
            let l4 = ip.get(ihl..ihl + 4)?;
            (
                u16::from_be_bytes([l4[0], l4[1]]),
                u16::from_be_bytes([l4[2], l4[3]]),
            )
        }
        _ => (0, 0),
    };
    Some(symmetric(src, sport, dst, dport))
}

/// [`flow_hash`] of the TCP/UDP flow between `a` and `b` (either order).
pub fn tuple_hash(a: SocketAddrV4, b: SocketAddrV4) -> u32 {
    symmetric(u32::from(*a.ip()), a.port(), u32::from(*b.ip()), b.port())
}

fn symmetric(ip1: u32, port1: u16, ip2: u32, port2: u16) -> u32 {
    let e1 = (u64::from(ip1) << 16) | u64::from(port1);
    let e2 = (u64::from(ip2) << 16) | u64::from(port2);
    let (lo, hi) = if e1 <= e2 { (e1, e2) } else { (e2, e1) };
    let mut x = lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi.rotate_left(29);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    (x ^ (x >> 32)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx_copy;

    fn frame_between(a: SocketAddrV4, b: SocketAddrV4, proto: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 20];
        f[12] = 0x08;
        f[14] = 0x45;
        f[14 + 9] = proto;
        f[14 + 12..14 + 16].copy_from_slice(&a.ip().octets());
        f[14 + 16..14 + 20].copy_from_slice(&b.ip().octets());
        f[34..36].copy_from_slice(&a.port().to_be_bytes());
        f[36..38].copy_from_slice(&b.port().to_be_bytes());
        f
    }

    fn recv_all(q: &mut WireQueue) -> Vec<Vec<u8>> {
        let mut out = Vec::new();
        q.rx_burst(usize::MAX, &mut |f| out.push(f.data.to_vec()));
        out
    }

    #[test]
    fn frames_cross_in_order() {
        let (mut a, mut b) = pair(WireConfig::default());
        for i in 0..100u8 {
            tx_copy(&mut a[0], &[i; 60]).unwrap();
        }
        assert!(
            recv_all(&mut b[0]).is_empty(),
            "nothing is visible before the flush"
        );
        assert_eq!(a[0].tx_flush(), 100);
        let got = recv_all(&mut b[0]);
        assert_eq!(got.len(), 100);
        for (i, f) in got.iter().enumerate() {
            assert_eq!(f, &vec![i as u8; 60]);
        }
        tx_copy(&mut b[0], b"back").unwrap();
        b[0].tx_flush();
        assert_eq!(recv_all(&mut a[0]), vec![b"back".to_vec()]);
        assert_eq!(a[0].stats().tx_frames, 100);
        assert_eq!(b[0].stats().rx_frames, 100);
    }

    #[test]
    fn pool_exhaustion_is_full_and_buffers_come_back() {
        let cfg = WireConfig {
            ring_size: 8,
            ..WireConfig::default()
        };
        let (mut a, mut b) = pair(cfg);
        for _ in 0..8 {
            tx_copy(&mut a[0], &[1; 64]).unwrap();
        }
        assert_eq!(tx_copy(&mut a[0], &[1; 64]), Err(TxError::Full));
        a[0].tx_flush();
        assert_eq!(recv_all(&mut b[0]).len(), 8);
        // Steady state: the same 8 buffers go round and round.
        for _ in 0..1000 {
            tx_copy(&mut a[0], &[2; 64]).unwrap();
            a[0].tx_flush();
            assert_eq!(recv_all(&mut b[0]).len(), 1);
        }
        assert_eq!(a[0].outbound.pool.len(), 8);
    }

    #[test]
    fn oversized_frames_are_refused() {
        let (mut a, _b) = pair(WireConfig::default());
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
    }

    #[test]
    fn a_full_ring_drops_and_counts() {
        // Two queues: the pool holds 8 buffers; frames of one flow all go to one ring of 4.
        let cfg = WireConfig {
            ring_size: 4,
            queues: 2,
            mtu: 1500,
        };
        let (mut a, mut b) = pair(cfg);
        let c = SocketAddrV4::new([10, 0, 0, 1].into(), 1000);
        let s = SocketAddrV4::new([10, 0, 0, 2].into(), 80);
        for _ in 0..8 {
            tx_copy(&mut a[0], &frame_between(c, s, 6)).unwrap();
        }
        assert_eq!(a[0].tx_flush(), 8);
        assert_eq!(a[0].stats().dropped, 4);
        let q = (tuple_hash(c, s) % 2) as usize;
        assert_eq!(recv_all(&mut b[q]).len(), 4);
        assert!(recv_all(&mut b[1 - q]).is_empty());
        // Dropped buffers went back to the pool.
        assert_eq!(a[0].outbound.pool.len(), 8);
    }

    #[test]
    fn frames_without_a_flow_reach_every_queue() {
        let cfg = WireConfig {
            queues: 3,
            ..WireConfig::default()
        };
        let (mut a, mut b) = pair(cfg);
        tx_copy(&mut a[2], b"an ARP-like frame, not IPv4").unwrap();
        a[2].tx_flush();
        for q in &mut b {
            assert_eq!(recv_all(q), vec![b"an ARP-like frame, not IPv4".to_vec()]);
        }
    }

    #[test]
    fn both_directions_of_a_flow_use_the_same_queue() {
        let cfg = WireConfig {
            queues: 4,
            ..WireConfig::default()
        };
        let (mut a, mut b) = pair(cfg);
        let mut used = [0usize; 4];
        for port in 1000..1400u16 {
            let c = SocketAddrV4::new([10, 0, 0, 1].into(), port);
            let s = SocketAddrV4::new([10, 0, 0, 2].into(), 80);
            let fwd = frame_between(c, s, 6);
            let rev = frame_between(s, c, 6);
            assert_eq!(flow_hash(&fwd), flow_hash(&rev));
            assert_eq!(flow_hash(&fwd), Some(tuple_hash(c, s)));
            tx_copy(&mut a[1], &fwd).unwrap();
            a[1].tx_flush();
            let qb = (0..4).find(|&q| !recv_all(&mut b[q]).is_empty()).unwrap();
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
    fn two_threads_ping_pong() {
        let (mut a, mut b) = pair(WireConfig::default());
        let mut qa = a.remove(0);
        let mut qb = b.remove(0);
        const N: u32 = 200_000;
        let t = std::thread::spawn(move || {
            let mut seen = 0u32;
            while seen < N {
                let mut got = Vec::new();
                qb.rx_burst(64, &mut |f| {
                    got.push(u32::from_le_bytes(f.data[..4].try_into().unwrap()))
                });
                for v in got {
                    assert_eq!(v, seen);
                    seen += 1;
                    tx_copy(&mut qb, &v.to_le_bytes()).unwrap();
                }
                qb.tx_flush();
            }
        });
        let (mut sent, mut back) = (0u32, 0u32);
        while back < N {
            while sent < N && sent - back < 1000 {
                tx_copy(&mut qa, &sent.to_le_bytes()).unwrap();
                sent += 1;
            }
            qa.tx_flush();
            qa.rx_burst(64, &mut |f| {
                assert_eq!(u32::from_le_bytes(f.data[..4].try_into().unwrap()), back);
                back += 1;
            });
        }
        t.join().unwrap();
    }

    #[test]
    fn flow_hash_never_panics_on_garbage() {
        let mut x = 0x12345678u32;
        for len in 0..200 {
            for _ in 0..50 {
                let f: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 17;
                        x ^= x << 5;
                        x as u8
                    })
                    .collect();
                let _ = flow_hash(&f);
                let mut g = f.clone();
                if g.len() > 14 {
                    g[12] = 8;
                    g[13] = 0;
                    g[14] = 0x40 | (g[14] & 0x0f);
                }
                let _ = flow_hash(&g);
            }
        }
    }
}
