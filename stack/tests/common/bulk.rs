//! Bulk transfers through injected faults, checked byte for byte.

use megatcp_nic::fault::{FaultConfig, FaultyQueue};
use megatcp_nic::wire::{self, WireConfig};
use megatcp_stack::{ConnectOpts, Duration, Event, RecvError};
use rand::{RngCore, SeedableRng};
use rand_chacha::ChaCha8Rng;
use sha2::{Digest, Sha256};

use super::*;

/// The sending end of one direction: a seeded byte stream, hashed as it is generated.
struct Sender {
    total: usize,
    rng: ChaCha8Rng,
    pending: Vec<u8>,
    sent: usize,
    hash: Sha256,
}

/// The receiving end of one direction.
#[derive(Default)]
struct Receiver {
    received: usize,
    hash: Sha256,
}

impl Sender {
    fn new(seed: u64, total: usize) -> Self {
        Sender {
            total,
            rng: ChaCha8Rng::seed_from_u64(seed),
            pending: Vec::new(),
            sent: 0,
            hash: Sha256::new(),
        }
    }

    /// The next bytes to send (generated in 64 KiB chunks).
    fn next_chunk(&mut self) -> &[u8] {
        if self.pending.is_empty() && self.sent < self.total {
            let n = (self.total - self.sent).min(64 * 1024);
            self.pending = vec![0; n];
            self.rng.fill_bytes(&mut self.pending);
            self.hash.update(&self.pending);
            self.sent += n;
        }
        &self.pending
    }
}

/// What a bulk transfer saw.
pub struct BulkStats {
    /// Retransmissions of both sides.
    pub retransmits: u64,
}

/// `total` bytes each way over one connection through a wire whose two ends inject the
/// faults of `faults` (with two seeds derived from its seed): every byte arrives, in order
/// (hash compared), and both sides close in order. Panics on a stall, a reset or a loss.
pub fn each_way(faults: FaultConfig, total: usize) -> BulkStats {
    let (mut qa, mut qb) = wire::pair(WireConfig::default());
    let fa = FaultConfig {
        seed: faults.seed ^ 0xa,
        ..faults.clone()
    };
    let fb = FaultConfig {
        seed: faults.seed ^ 0xb,
        ..faults
    };
    let qa = FaultyQueue::new(qa.remove(0), fa).unwrap();
    let qb = FaultyQueue::new(qb.remove(0), fb).unwrap();
    let ca = config(A_MAC, A_IP, 31);
    let cb = config(B_MAC, B_IP, 32);
    let mut net = Net::with_queues(ca, cb, qa, qb);
    let lid = net.b.stack.listen(sa(B_IP, 9000), None).unwrap();
    let conn = net
        .a
        .stack
        .connect(net.now, sa(B_IP, 9000), ConnectOpts::default())
        .unwrap();
    let mut server = None;
    net.run_until(Duration::from_secs(60), |n| {
        if server.is_none() {
            server = n.b.stack.accept(lid).map(|(s, _)| s);
        }
        server.is_some() && n.a.events.contains(&Event::Connected { conn })
    });
    let server = server.unwrap();

    let (mut ab_tx, mut ab_rx) = (Sender::new(1, total), Receiver::default()); // A -> B
    let (mut ba_tx, mut ba_rx) = (Sender::new(2, total), Receiver::default()); // B -> A
    let mut buf = vec![0u8; 64 * 1024];
    let (mut a_shut, mut b_shut) = (false, false);
    let (mut a_eof, mut b_eof) = (false, false);
    let mut last_rx = (0, net.now);
    net.run_until(Duration::from_secs(3600), |n| {
        let rx = n.a.stack.counters().rx_frames + n.b.stack.counters().rx_frames;
        if rx != last_rx.0 {
            last_rx = (rx, n.now);
        } else if n.now - last_rx.1 > Duration::from_secs(200) {
            panic!(
                "stalled at {}: a {:?} sq {:?} rq {:?} poll_at {:?} stats {:?} | b {:?} sq {:?} rq {:?} poll_at {:?} stats {:?}; nic a {:?} b {:?}",
                n.now,
                n.a.stack.state(conn), n.a.stack.send_queue(conn), n.a.stack.recv_queue(conn), n.a.stack.poll_at(), n.a.stack.stats(),
                n.b.stack.state(server), n.b.stack.send_queue(server), n.b.stack.recv_queue(server), n.b.stack.poll_at(), n.b.stack.stats(),
                n.a.nic.fault_stats(), n.b.nic.fault_stats(),
            );
        }
        if n.a.events.iter().chain(&n.b.events).any(|e| matches!(e, Event::Reset { .. })) {
            panic!(
                "reset at {} (virtual); a: {:?} b: {:?}",
                n.now,
                n.a.stack.counters(),
                n.b.stack.counters()
            );
        }
        for (stack, conn, out, inn, shut, eof) in [
            (&mut n.a.stack, conn, &mut ab_tx, &mut ba_rx, &mut a_shut, &mut a_eof),
            (&mut n.b.stack, server, &mut ba_tx, &mut ab_rx, &mut b_shut, &mut b_eof),
        ] {
            loop {
                let chunk = out.next_chunk();
                if chunk.is_empty() {
                    break;
                }
                let k = match stack.send(conn, chunk) {
                    Ok(k) => k,
                    Err(e) => panic!("send: {e}; counters {:#?}", stack.counters()),
                };
                if k == 0 {
                    break;
                }
                out.pending.drain(..k);
            }
            if out.sent == out.total && out.pending.is_empty() && !*shut {
                stack.shutdown(conn).unwrap();
                *shut = true;
            }
            // Once the end of stream is read, the connection may go (TIME-WAIT as a record).
            while !*eof {
                match stack.recv(conn, &mut buf) {
                    Ok(0) => break,
                    Ok(k) => {
                        inn.hash.update(&buf[..k]);
                        inn.received += k;
                    }
                    Err(RecvError::Finished) => {
                        *eof = true;
                        break;
                    }
                    Err(e) => panic!("recv: {e}"),
                }
            }
        }
        a_eof && b_eof
    });
    assert_eq!(ab_rx.received, total);
    assert_eq!(ba_rx.received, total);
    assert_eq!(ab_tx.hash.finalize(), ab_rx.hash.finalize());
    assert_eq!(ba_tx.hash.finalize(), ba_rx.hash.finalize());
    // Both sides shut down and saw the other's FIN: an orderly close on both ends.
    net.run_until(Duration::from_secs(120), |n| {
        n.a.events.contains(&Event::Closed { conn })
            && n.b.events.contains(&Event::Closed { conn: server })
    });
    assert!(
        !net.a
            .events
            .iter()
            .any(|e| matches!(e, Event::Reset { .. }))
    );
    let (ca, cb) = (net.a.stack.counters(), net.b.stack.counters());
    assert!(
        ca.tcp_retransmits > 0 && cb.tcp_retransmits > 0,
        "the faults were real"
    );
    assert_eq!(ca.conns_closed + cb.conns_closed, 2);
    eprintln!(
        "retransmits a={} b={}, drops a={:?} b={:?}",
        ca.tcp_retransmits, cb.tcp_retransmits, ca.drops, cb.drops
    );
    BulkStats {
        retransmits: ca.tcp_retransmits + cb.tcp_retransmits,
    }
}
