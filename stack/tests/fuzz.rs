//! 100,000 random and mutated frames into a stack: no panic, every bad frame dropped and
//! counted under its reason, and an established connection still works afterwards.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use megatcp_stack::{Counters, Duration};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
};

/// A well-formed TCP segment from A to B (port 7), as a full Ethernet frame.
fn tcp_frame(rng: &mut ChaCha8Rng, payload: &[u8], syn: bool) -> Vec<u8> {
    let tcp = TcpRepr {
        src_port: rng.random_range(1024..65535),
        dst_port: 7,
        control: if syn {
            TcpControl::Syn
        } else {
            TcpControl::None
        },
        seq_number: TcpSeqNumber(rng.random()),
        ack_number: if syn {
            None
        } else {
            Some(TcpSeqNumber(rng.random()))
        },
        window_len: rng.random(),
        window_scale: if syn { Some(7) } else { None },
        max_seg_size: if syn { Some(1460) } else { None },
        sack_permitted: syn,
        sack_ranges: [None; 3],
        timestamp: None,
        payload,
    };
    let ip = Ipv4Repr {
        src_addr: A_IP,
        dst_addr: B_IP,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    frame_a_to_b(&ip, |b| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(b),
            &IpAddress::Ipv4(A_IP),
            &IpAddress::Ipv4(B_IP),
            &ChecksumCapabilities::default(),
        )
    })
}

fn fix_ip_checksum(frame: &mut [u8]) {
    let mut p = Ipv4Packet::new_unchecked(&mut frame[14..]);
    p.fill_checksum();
}

fn drops(c: &Counters) -> u64 {
    c.drops.total()
}

#[test]
fn hostile_frames_are_dropped_and_counted_and_the_stack_keeps_working() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 7), None).unwrap();
    let conn = net.connect(lid, 7);
    let (server, _) = net.b.stack.accept(lid).unwrap();

    let mut rng = ChaCha8Rng::seed_from_u64(0x6d65_6761);
    let now = net.now;
    let b = &mut net.b.stack;
    let mut expect = Counters::default();
    let mut unclassified = 0u64;
    let start = b.counters();
    for i in 0..100_000u32 {
        let payload: Vec<u8> = (0..rng.random_range(0..64)).map(|_| rng.random()).collect();
        let syn = rng.random_bool(0.5);
        let mut f = tcp_frame(&mut rng, &payload, syn);
        match i % 10 {
            // Truncated somewhere inside the headers.
            0 => {
                let cut = rng.random_range(0..54);
                f.truncate(cut);
                if cut < 14 {
                    expect.drops.eth_truncated += 1;
                } else if cut < 34 {
                    expect.drops.ipv4_malformed += 1;
                } else {
                    // IPv4 total length now exceeds the frame.
                    expect.drops.ipv4_malformed += 1;
                }
            }
            // Bad IPv4 header checksum.
            1 => {
                f[24] ^= 0x5a;
                expect.drops.ipv4_bad_checksum += 1;
            }
            // Bad IHL (below 5), checksum fixed.
            2 => {
                f[14] = 0x40 | rng.random_range(0..5);
                fix_ip_checksum(&mut f);
                expect.drops.ipv4_malformed += 1;
            }
            // Bad TCP checksum.
            3 => {
                let at = rng.random_range(34..f.len());
                f[at] = f[at].wrapping_add(rng.random_range(1..=255));
                // Changing a byte always changes the one's-complement sum, unless it is the
                // checksum field itself being moved between the two zeros; both are bad.
                expect.drops.tcp_bad_checksum += 1;
            }
            // Bad TCP data offset (below 5 or beyond the segment), checksum fixed.
            4 => {
                let doff = if rng.random_bool(0.5) {
                    rng.random_range(0..5)
                } else {
                    15
                };
                f[46] = (doff << 4) | (f[46] & 0x0f);
                if doff < 5 || 14 + 20 + 60 > f.len() {
                    let mut p = Ipv4Packet::new_unchecked(&mut f[14..]);
                    let mut t = TcpPacket::new_unchecked(p.payload_mut());
                    t.fill_checksum(&IpAddress::Ipv4(A_IP), &IpAddress::Ipv4(B_IP));
                    expect.drops.tcp_malformed += 1;
                } else {
                    unclassified += 1;
                }
            }
            // Bogus options: a SYN whose options area holds garbage lengths.
            5 => {
                let mut g = tcp_frame(&mut rng, &[], true);
                // SYN options start at byte 54; an option with length 0 or 1 is invalid.
                g[54] = 2;
                g[55] = rng.random_range(0..2);
                let mut p = Ipv4Packet::new_unchecked(&mut g[14..]);
                let mut t = TcpPacket::new_unchecked(p.payload_mut());
                t.fill_checksum(&IpAddress::Ipv4(A_IP), &IpAddress::Ipv4(B_IP));
                f = g;
                expect.drops.tcp_malformed += 1;
            }
            // Fragments.
            6 => {
                f[20] |= 0x20;
                fix_ip_checksum(&mut f);
                expect.drops.ipv4_fragment += 1;
            }
            // Not for us: other MAC, other IP, other EtherType, unknown protocol.
            7 => match rng.random_range(0..4) {
                0 => {
                    f[0] = 0x02;
                    f[5] = 0x77;
                    expect.drops.eth_not_for_us += 1;
                }
                1 => {
                    f[33] = 99;
                    fix_ip_checksum(&mut f);
                    expect.drops.ipv4_not_for_us += 1;
                }
                2 => {
                    f[12] = 0x86;
                    f[13] = 0xdd;
                    expect.drops.eth_unsupported_type += 1;
                }
                _ => {
                    f[23] = 17;
                    fix_ip_checksum(&mut f);
                    expect.drops.ip_unsupported_protocol += 1;
                }
            },
            // Garbage after a valid Ethernet header.
            8 => {
                let len = rng.random_range(0..200);
                f.truncate(14);
                f.extend((0..len).map(|_| rng.random::<u8>()));
                unclassified += 1;
            }
            // Random bit flips anywhere (most break a checksum).
            _ => {
                for _ in 0..rng.random_range(1..4) {
                    let at = rng.random_range(0..f.len());
                    f[at] ^= 1 << rng.random_range(0..8);
                }
                unclassified += 1;
            }
        }
        b.receive(now, &f);
        if i % 64 == 0 {
            b.poll(now);
            b.transmit(&mut |_| true);
        }
    }
    let end = b.counters();
    assert_eq!(end.rx_frames - start.rx_frames, 100_000);
    let d = |f: fn(&Counters) -> u64| f(&end) - f(&start);
    // Exact where no other category can add to the reason, at least where the unclassified
    // frames (random flips, garbage) may land there too.
    assert_eq!(d(|c| c.drops.eth_truncated), expect.drops.eth_truncated);
    let reason = |c: &Counters, name: &str| {
        c.drops
            .by_reason()
            .into_iter()
            .find(|&(n, _)| n == name)
            .map(|(_, count)| count)
            .expect("a drop reason")
    };
    for name in [
        "ipv4_bad_checksum",
        "ipv4_fragment",
        "eth_unsupported_type",
        "ip_unsupported_protocol",
        "eth_not_for_us",
        "ipv4_malformed",
        "ipv4_not_for_us",
    ] {
        let (got, want) = (
            reason(&end, name) - reason(&start, name),
            reason(&expect, name),
        );
        assert!(got >= want, "{name}: {got} < {want}");
    }
    // A flipped byte in the data-offset field makes a bad-checksum segment malformed too.
    assert!(
        d(|c| c.drops.tcp_bad_checksum + c.drops.tcp_malformed)
            >= expect.drops.tcp_bad_checksum + expect.drops.tcp_malformed
    );
    assert!(d(|c| c.drops.tcp_malformed) >= expect.drops.tcp_malformed);
    // Every frame we know to be bad was dropped; the rest were dropped or handled as
    // segments, SYNs or ARP (all of them counted somewhere).
    let known_bad = expect.drops.total();
    let dropped = drops(&end) - drops(&start);
    assert!(
        dropped >= known_bad,
        "dropped {dropped} < known bad {known_bad}"
    );
    assert_eq!(known_bad + unclassified, 100_000);
    // Every frame is either delivered or dropped under one reason.
    assert_eq!(end.rx_frames, end.rx_delivered + end.drops.total());

    // The established connection still works.
    net.b.events.clear();
    assert_eq!(net.a.stack.send(conn, b"still alive").unwrap(), 11);
    net.run_until(Duration::from_secs(5), |n| {
        n.b.stack.recv_queue(server).unwrap() == 11
    });
    let mut buf = [0u8; 32];
    assert_eq!(net.b.stack.recv(server, &mut buf).unwrap(), 11);
    assert_eq!(&buf[..11], b"still alive");
    assert_eq!(net.b.stack.send(server, b"pong").unwrap(), 4);
    net.run_until(Duration::from_secs(5), |n| {
        n.a.stack.recv_queue(conn).unwrap() == 4
    });
}
