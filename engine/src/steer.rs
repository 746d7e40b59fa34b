//! Software flow steering between cores: when the NIC delivers a frame to a core that does
//! not own its flow (veth and other devices without a usable RSS hash), the frame is copied
//! into an SPSC ring to the owning core. A flow's owner is its symmetric flow hash modulo
//! the number of cores (`megatcp_nic::rss::flow_hash`), the same for both directions, and
//! active opens choose source ports that hash to their own core. Frames without a flow
//! (ARP) are handled where they arrive and copied to every other core, so that each core's
//! stack knows its neighbours.
//!
//! Each ordered pair of cores has one ring of frames and one ring that returns the emptied
//! buffers, so steady-state steering allocates nothing.

use std::sync::Arc;

use crossbeam_queue::ArrayQueue;

/// Frames one ring holds.
const RING: usize = 4096;

/// The rings from one core to another.
pub(crate) struct Link {
    frames: ArrayQueue<Vec<u8>>,
    spare: ArrayQueue<Vec<u8>>,
}

/// Every core pair's link: `links[from][to]`.
pub(crate) type Links = Vec<Vec<Option<Arc<Link>>>>;

/// Builds the links of `n` cores.
pub(crate) fn links(n: usize) -> Links {
    (0..n)
        .map(|from| {
            (0..n)
                .map(|to| {
                    (from != to).then(|| {
                        Arc::new(Link {
                            frames: ArrayQueue::new(RING),
                            spare: ArrayQueue::new(RING),
                        })
                    })
                })
                .collect()
        })
        .collect()
}

/// Counters of steering on one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SteerStats {
    /// Frames sent to the core that owns their flow.
    pub steered_out: u64,
    /// Frames received from other cores.
    pub steered_in: u64,
    /// Frames dropped because the ring to their owner was full.
    pub dropped: u64,
}

/// One core's end of the steering rings.
pub(crate) struct Steer {
    me: usize,
    /// The NIC spreads flows itself (a real RSS hash): every flow frame is already on the
    /// right queue, only frames without a flow are shared.
    hardware_rss: bool,
    out: Vec<Option<Arc<Link>>>,
    inbound: Vec<Arc<Link>>,
    pub(crate) stats: SteerStats,
}

/// Where a received frame goes.
pub(crate) enum Route {
    /// Handle it here.
    Local,
    /// Handle it here and copy it to every other core (no flow: ARP).
    Everywhere,
    /// Send it to this core.
    To(usize),
}

impl Steer {
    pub(crate) fn new(me: usize, links: &Links, hardware_rss: bool) -> Self {
        let out = links[me].clone();
        let inbound = links.iter().filter_map(|row| row[me].clone()).collect();
        Self {
            me,
            hardware_rss,
            out,
            inbound,
            stats: SteerStats::default(),
        }
    }

    /// This core's index.
    pub(crate) fn me(&self) -> usize {
        self.me
    }

    /// Number of cores.
    pub(crate) fn cores(&self) -> usize {
        self.out.len()
    }

    pub(crate) fn route(&self, frame: &[u8]) -> Route {
        let n = self.out.len();
        match megatcp_nic::rss::flow_hash(frame) {
            None => Route::Everywhere,
            Some(_) if self.hardware_rss => Route::Local,
            Some(h) if (h as usize) % n == self.me => Route::Local,
            Some(h) => Route::To((h as usize) % n),
        }
    }

    /// Copies `frame` into the ring to core `to`.
    pub(crate) fn send(&mut self, to: usize, frame: &[u8]) {
        let Some(Some(link)) = self.out.get(to) else {
            return;
        };
        let mut buf = link.spare.pop().unwrap_or_default();
        buf.clear();
        buf.extend_from_slice(frame);
        match link.frames.push(buf) {
            Ok(()) => self.stats.steered_out += 1,
            Err(_) => self.stats.dropped += 1,
        }
    }

    /// Copies `frame` to every other core.
    pub(crate) fn broadcast(&mut self, frame: &[u8]) {
        for to in 0..self.out.len() {
            if to != self.me {
                self.send(to, frame);
            }
        }
    }

    /// Hands every frame waiting for this core to `sink`.
    pub(crate) fn receive(&mut self, sink: &mut dyn FnMut(&[u8])) -> usize {
        let mut n = 0;
        for link in &self.inbound {
            while let Some(buf) = link.frames.pop() {
                sink(&buf);
                n += 1;
                let _ = link.spare.push(buf);
            }
        }
        self.stats.steered_in += n as u64;
        n
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tcp_frame(sport: u16) -> Vec<u8> {
        let mut f = vec![0u8; 54];
        f[12] = 0x08;
        f[14] = 0x45;
        f[23] = 6;
        f[26..30].copy_from_slice(&[10, 0, 0, 2]);
        f[30..34].copy_from_slice(&[10, 0, 0, 1]);
        f[34..36].copy_from_slice(&sport.to_be_bytes());
        f[36..38].copy_from_slice(&80u16.to_be_bytes());
        f
    }

    #[test]
    fn frames_reach_their_owner_and_arp_reaches_everyone() {
        let l = links(3);
        let mut cores: Vec<Steer> = (0..3).map(|i| Steer::new(i, &l, false)).collect();
        let mut delivered = [0usize; 3];
        for port in 1000..1300u16 {
            let f = tcp_frame(port);
            match cores[0].route(&f) {
                Route::Local => delivered[0] += 1,
                Route::To(c) => cores[0].send(c, &f),
                Route::Everywhere => unreachable!(),
            }
        }
        cores[0].broadcast(b"arp");
        for (i, core) in cores.iter_mut().enumerate().skip(1) {
            let mut arp = 0;
            let n = core.receive(&mut |f| {
                if f == b"arp" {
                    arp += 1;
                } else if let Route::Local = Steer::new(i, &l, false).route(f) {
                    delivered[i] += 1;
                } else {
                    panic!("frame steered to the wrong core");
                }
            });
            assert_eq!(arp, 1);
            assert!(n > 50, "core {i} got {n}");
        }
        assert_eq!(delivered.iter().sum::<usize>(), 300);
        assert!(delivered.iter().all(|&d| d > 50), "{delivered:?}");
    }
}
