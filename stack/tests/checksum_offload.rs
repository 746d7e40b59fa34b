//! Transmit checksum offload (`StackConfig::tx_checksum`): with `TxChecksum::Offload` the
//! stack leaves the IPv4 header checksum 0 and writes the TCP pseudo-header sum, for the
//! NIC to complete. Here a NIC queue wrapper completes them as a NIC does (its own code,
//! not the stack's), and the same scripted exchange (handshake with options, data both
//! ways through the sequence offset, challenge ACK, RST to a closed port, SYN cookie
//! SYN-ACK and cookie connection, FIN, TIME-WAIT ACK) is run in software and in offload
//! mode: every frame the stack sent must be the same once completed.
#![allow(clippy::unwrap_used)]

mod common;

use common::raw::Seg;
use common::*;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_nic::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};
use megatcp_stack::{Duration, TxChecksum};
use smoltcp::wire::TcpControl;

const MS: Duration = Duration::from_millis(1);

/// A wire queue that records every frame sent as the stack wrote it, then (when `offload`)
/// completes IPv4/TCP checksums as a NIC with transmit checksum offload does.
struct Completing {
    q: WireQueue,
    offload: bool,
    written: Vec<Vec<u8>>,
}

fn sum16(b: &[u8]) -> u32 {
    b.chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)])))
        .sum()
}

fn fold(mut s: u32) -> u16 {
    while s > 0xffff {
        s = (s & 0xffff) + (s >> 16);
    }
    s as u16
}

/// The NIC's part: IPv4 header checksum over the header (field 0), TCP checksum as the
/// complement of the sum over the segment, whose checksum field holds the pseudo-header
/// sum.
fn complete(frame: &mut [u8]) {
    if frame.len() < 34 || frame[12..14] != [8, 0] || frame[23] != 6 {
        return;
    }
    let ip = &mut frame[14..];
    let ihl = usize::from(ip[0] & 0x0f) * 4;
    let total = usize::from(u16::from_be_bytes([ip[2], ip[3]]));
    let c = !fold(sum16(&ip[..ihl]));
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    let c = !fold(sum16(&ip[ihl..total]));
    ip[ihl + 16..ihl + 18].copy_from_slice(&c.to_be_bytes());
}

impl NicQueue for Completing {
    fn capabilities(&self) -> &Capabilities {
        self.q.capabilities()
    }
    fn queue_id(&self) -> u16 {
        self.q.queue_id()
    }
    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        self.q.rx_burst(budget, sink)
    }
    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        let (offload, written) = (self.offload, &mut self.written);
        self.q.tx_frame(&mut |buf: &mut [u8]| {
            let n = fill(buf);
            written.push(buf[..n].to_vec());
            if offload {
                complete(&mut buf[..n]);
            }
            n
        })
    }
    fn tx_flush(&mut self) -> usize {
        self.q.tx_flush()
    }
    fn stats(&self) -> QueueStats {
        self.q.stats()
    }
}

/// Runs the script against a stack in mode `cs`; returns every frame it sent as written
/// and as the wire carried it.
fn script(cs: TxChecksum) -> (Vec<Vec<u8>>, Vec<Vec<u8>>) {
    let (mut qa, mut qb) = wire::pair(WireConfig::default());
    let (peer, q) = (qa.remove(0), qb.remove(0));
    let mut cfg = config(B_MAC, B_IP, 31);
    cfg.tx_checksum = cs;
    let nic = Completing {
        q,
        offload: cs == TxChecksum::Offload,
        written: Vec::new(),
    };
    let mut solo = Solo::with_queue(cfg, nic, peer);
    let lid = solo.host.stack.listen(sa(B_IP, 80), Some(1)).unwrap();
    let (me, srv) = (sa(A_IP, 40_000), sa(B_IP, 80));

    // Handshake with every option (smoltcp's SYN-ACK, sequence offset applied).
    let syn = Seg::linux_syn(me, srv, 1000, 100);
    let out = solo.exchange(&syn, MS);
    let synack = out.iter().find(|s| s.is_syn_ack()).unwrap().clone();
    let (isn, ts_b) = (synack.seq, synack.ts.unwrap().0);
    let req = Seg::new(me, srv, TcpControl::Psh, 1001)
        .ack(isn + 1)
        .ts(101, ts_b)
        .data(&[0x5a; 999]);
    solo.exchange(&req, MS * 3);
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    let mut buf = vec![0u8; 4096];
    assert_eq!(solo.host.stack.recv(conn, &mut buf).unwrap(), 999);
    // Data out: full segments and an odd-length tail.
    let data: Vec<u8> = (0..2001u32).map(|i| (i * 7) as u8).collect();
    assert_eq!(solo.host.stack.send(conn, &data).unwrap(), data.len());
    let out = solo.run(MS * 5);
    let sent: usize = out.iter().map(|s| s.payload.len()).sum();
    assert_eq!(sent, data.len());
    let acked = isn + 1 + data.len() as u32;
    solo.exchange(
        &Seg::new(me, srv, TcpControl::None, 2000)
            .ack(acked)
            .ts(102, ts_b),
        MS * 3,
    );
    // An RST inside the window: a challenge ACK (crafted).
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Rst, 2500), MS);
    assert_eq!(out.len(), 1, "challenge ACK: {out:?}");
    // A segment for a closed port: our RST (crafted).
    let out = solo.exchange(&Seg::new(me, sa(B_IP, 81), TcpControl::None, 7).ack(9), MS);
    assert!(out.iter().any(|s| s.control == TcpControl::Rst), "{out:?}");
    // A half-open connection fills the backlog (1): the next SYN gets a cookie SYN-ACK
    // (crafted); its ACK replays the handshake into a socket, whose data then go out
    // through the cookie's offset.
    solo.exchange(&Seg::new(sa(A_IP, 40_002), srv, TcpControl::Syn, 1), MS);
    let me2 = sa(A_IP, 40_001);
    let syn = Seg::linux_syn(me2, srv, 5000, 10);
    let out = solo.exchange(&syn, MS);
    let cookie = out.iter().find(|s| s.is_syn_ack()).unwrap().clone();
    assert_eq!(solo.host.stack.counters().syn_cookies_sent, 1);
    let ok = Seg::new(me2, srv, TcpControl::Psh, 5001)
        .ack(cookie.seq + 1)
        .ts(11, cookie.ts.unwrap().0)
        .data(b"hi");
    solo.exchange(&ok, MS * 3);
    assert_eq!(solo.host.stack.counters().syn_cookies_accepted, 1);
    let (conn2, _) = solo.host.stack.accept(lid).unwrap();
    assert_eq!(solo.host.stack.recv(conn2, &mut buf).unwrap(), 2);
    assert_eq!(solo.host.stack.send(conn2, b"cookie data").unwrap(), 11);
    let out = solo.run(MS * 5);
    assert!(out.iter().any(|s| s.payload == b"cookie data"));
    // The first connection closes first; our FIN puts it in TIME-WAIT; our FIN again gets
    // the record's ACK (crafted).
    solo.host.stack.close(conn).unwrap();
    let out = solo.run(MS * 5);
    let fin = out
        .iter()
        .find(|s| s.control == TcpControl::Fin)
        .unwrap()
        .clone();
    let fin_end = fin.seq + 1;
    let our_fin = Seg::new(me, srv, TcpControl::Fin, 2000)
        .ack(fin_end)
        .ts(120, ts_b);
    solo.exchange(&our_fin, MS * 5);
    let out = solo.exchange(&our_fin, MS * 5);
    assert!(
        out.iter().any(|s| s.is_pure_ack() && s.ack == Some(2001)),
        "the TIME-WAIT record's ACK: {out:?}"
    );
    let written = std::mem::take(&mut solo.host.nic.written);
    let mut completed = written.clone();
    if cs == TxChecksum::Offload {
        completed.iter_mut().for_each(|f| complete(f));
    }
    (written, completed)
}

#[test]
fn every_frame_sent_in_offload_mode_completes_to_the_software_frame() {
    let (soft, soft_wire) = script(TxChecksum::Software);
    let (off, off_wire) = script(TxChecksum::Offload);
    assert_eq!(soft, soft_wire, "software mode: the NIC changes nothing");
    assert_eq!(off_wire.len(), soft_wire.len());
    let mut tcp = 0;
    for (i, (o, s)) in off_wire.iter().zip(&soft_wire).enumerate() {
        assert_eq!(o, s, "frame {i} differs once completed");
        if s.len() >= 34 && s[12..14] == [8, 0] && s[23] == 6 {
            tcp += 1;
            // As written in offload mode: IPv4 checksum 0, TCP checksum the pseudo sum.
            let w = &off[i];
            assert_eq!(
                &w[24..26],
                &[0, 0],
                "frame {i}: IPv4 checksum left to the NIC"
            );
            let ihl = usize::from(w[14] & 0x0f) * 4;
            let len = u16::from_be_bytes([w[16], w[17]]) as u32 - ihl as u32;
            let pseudo = fold(sum16(&w[26..34]) + 6 + len);
            let at = 14 + ihl + 16;
            assert_eq!(
                u16::from_be_bytes([w[at], w[at + 1]]),
                pseudo,
                "frame {i}: the pseudo-header sum"
            );
        }
    }
    assert!(tcp >= 12, "{tcp} TCP frames");
}
