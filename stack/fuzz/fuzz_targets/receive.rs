//! Arbitrary frames and segment sequences into `Stack::receive`, interleaved with time and
//! application commands: no panic, and the counters account for every frame
//! (`rx_frames = rx_delivered + drops.total()`).
//!
//! Most inputs are *segments* built from fuzzed fields (flags, sequence and acknowledgment
//! numbers relative to what the stack last sent, timestamps, payload) with valid checksums,
//! aimed at a listener and at an established connection, so that they get past the
//! checksums to the TCP machinery; raw frames cover the parsers.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};

#[path = "../../tests/common/frames.rs"]
mod frames;

use arbitrary::Arbitrary;
use libfuzzer_sys::fuzz_target;
use megatcp_stack::{ConnectOpts, Duration, Instant, LocalAddr, MacAddr, Stack, StackConfig};
use smoltcp::wire::{
    EthernetFrame, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

const US: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);
const US_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 1]);
const PEER_MAC: MacAddr = MacAddr([2, 0, 0, 0, 0, 2]);

#[derive(Debug, Arbitrary)]
enum Ctl {
    None,
    Syn,
    Fin,
    Rst,
    Psh,
}

#[derive(Debug, Arbitrary)]
struct Segment {
    /// Port of the peer: a few values, so that flows repeat.
    src_port: u8,
    /// Our port: the listener (80) or the connection's (its local port) or another.
    to_listener: bool,
    ctl: Ctl,
    /// Relative to the last sequence number we acknowledged to this port, when known.
    seq_delta: i32,
    ack: Option<i32>,
    window: u16,
    ts: Option<(u32, u32)>,
    mss: Option<u16>,
    wscale: Option<u8>,
    sack: bool,
    payload: u16,
    bad_checksum: bool,
}

#[derive(Debug, Arbitrary)]
enum Op {
    Segment(Segment),
    Frame(Vec<u8>),
    Advance(u16),
    Send(u16),
    Read,
    Close,
    Connect,
}

fn frame(seg: &Segment, known: &[(u16, u32, u32)]) -> Vec<u8> {
    let src_port = 40_000 + u16::from(seg.src_port % 8);
    // What the stack last sent on this port: (port, its seq, its ack).
    let last = known.iter().rev().find(|k| k.0 == src_port);
    let (base_seq, base_ack) = last.map_or((0, 0), |k| (k.2, k.1));
    let payload = vec![0x5a; usize::from(seg.payload % 1500)];
    let tcp = TcpRepr {
        src_port,
        dst_port: if seg.to_listener { 80 } else { 81 },
        control: match seg.ctl {
            Ctl::None => TcpControl::None,
            Ctl::Syn => TcpControl::Syn,
            Ctl::Fin => TcpControl::Fin,
            Ctl::Rst => TcpControl::Rst,
            Ctl::Psh => TcpControl::Psh,
        },
        seq_number: TcpSeqNumber(base_seq.wrapping_add(seg.seq_delta as u32) as i32),
        ack_number: seg
            .ack
            .map(|a| TcpSeqNumber(base_ack.wrapping_add(a as u32) as i32)),
        window_len: seg.window,
        window_scale: seg.wscale,
        max_seg_size: seg.mss,
        sack_permitted: seg.sack,
        sack_ranges: [None; 3],
        timestamp: seg.ts.map(|(v, e)| TcpTimestampRepr::new(v, e)),
        payload: &payload,
    };
    let mut buf = frames::tcp_frame((PEER_MAC, PEER), (US_MAC, US), &tcp);
    if seg.bad_checksum {
        let n = buf.len();
        buf[n - 1] ^= 0xff;
    }
    buf
}

/// Records (peer port, seq, ack) of each TCP segment the stack sent.
fn learn(frame: &[u8], known: &mut Vec<(u16, u32, u32)>) {
    let Ok(eth) = EthernetFrame::new_checked(frame) else { return };
    let Ok(ip) = Ipv4Packet::new_checked(eth.payload()) else { return };
    let Ok(tcp) = TcpPacket::new_checked(ip.payload()) else { return };
    known.push((tcp.dst_port(), tcp.seq_number().0 as u32, tcp.ack_number().0 as u32));
    if known.len() > 64 {
        known.remove(0);
    }
}

fuzz_target!(|ops: Vec<Op>| {
    let mut cfg = StackConfig::new(US_MAC, LocalAddr::new(US, 24));
    cfg.seed = 1;
    cfg.default_backlog = 4;
    let mut now = Instant::from_secs(1);
    let Ok(mut stack) = Stack::new(cfg, now) else { return };
    let Ok(lid) = stack.listen(SocketAddrV4::new(US, 80), None) else { return };
    let mut conns = Vec::new();
    let mut known = Vec::new();
    for op in ops.into_iter().take(256) {
        match op {
            Op::Segment(s) => stack.receive(now, &frame(&s, &known)),
            Op::Frame(f) => stack.receive(now, &f),
            Op::Advance(ms) => now += Duration::from_millis(u64::from(ms % 20_000)),
            Op::Send(n) => {
                if let Some(&c) = conns.last() {
                    let _ = stack.send(c, &vec![1; usize::from(n % 4096)]);
                }
            }
            Op::Read => {
                if let Some(&c) = conns.last() {
                    let mut buf = [0u8; 4096];
                    let _ = stack.recv(c, &mut buf);
                }
            }
            Op::Close => {
                if let Some(c) = conns.pop() {
                    let _ = stack.close(c);
                }
            }
            Op::Connect => {
                let opts = ConnectOpts {
                    local_port: Some(81),
                    ..ConnectOpts::default()
                };
                if let Ok(c) = stack.connect(now, SocketAddrV4::new(PEER, 40_000), opts) {
                    conns.push(c);
                }
            }
        }
        stack.poll(now);
        stack.transmit(&mut |f| {
            learn(f, &mut known);
            true
        });
        while let Some(e) = stack.next_event() {
            if let megatcp_stack::Event::Acceptable { .. } = e {
                while let Some((c, _)) = stack.accept(lid) {
                    conns.push(c);
                }
            }
        }
        let c = stack.counters();
        assert_eq!(c.rx_frames, c.rx_delivered + c.drops.total(), "{c:?}");
    }
});
