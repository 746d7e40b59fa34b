//! Two engines made from the very same configuration (as two processes with the same pid
//! and address would build) choose different initial sequence numbers and source ports:
//! each stack's secret comes from the operating system, not from its configuration.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use megatcp_channel::Channel;
use megatcp_engine::{Bypass, IdlePolicy};
use megatcp_nic::wire::{self, WireConfig};
use megatcp_nic::{NicQueue, tx_copy};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};

const ME: Ipv4Addr = Ipv4Addr::new(10, 6, 0, 1);
const PEER: Ipv4Addr = Ipv4Addr::new(10, 6, 0, 2);
const PEER_MAC: [u8; 6] = [2, 0, 0, 0, 0, 2];

/// Opens a connection from a fresh engine and returns the SYN's (sequence number, source
/// port), read off the wire.
fn first_syn(cfg: &StackConfig) -> (u32, u16) {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let stop = Arc::new(AtomicBool::new(false));
    let bypass = Bypass::new(a.remove(0), cfg.clone(), stop, IdlePolicy::BusyPoll).unwrap();
    let mut ch = Channel::new(bypass);
    let mut peer = b.remove(0);
    ch.connect(SocketAddrV4::new(PEER, 80), 1);
    for _ in 0..1000 {
        let _ = ch.dispatch(Some(Duration::ZERO));
        let mut syn = None;
        let mut arp = None;
        peer.rx_burst(64, &mut |f| {
            let d = f.data;
            if d.len() >= 42 && d[12..14] == [0x08, 0x06] {
                arp = Some(d.to_vec());
            } else if d.len() >= 54 && d[12..14] == [0x08, 0x00] && d[23] == 6 && d[47] & 0x02 != 0
            {
                let seq = u32::from_be_bytes([d[38], d[39], d[40], d[41]]);
                syn = Some((seq, u16::from_be_bytes([d[34], d[35]])));
            }
        });
        if let Some(s) = syn {
            return s;
        }
        if let Some(req) = arp {
            // Answer the ARP request: PEER is at PEER_MAC.
            let mut r = req.clone();
            r[0..6].copy_from_slice(&req[6..12]);
            r[6..12].copy_from_slice(&PEER_MAC);
            r[20..22].copy_from_slice(&2u16.to_be_bytes());
            r[22..28].copy_from_slice(&PEER_MAC);
            r[28..32].copy_from_slice(&PEER.octets());
            r[32..38].copy_from_slice(&req[22..28]);
            r[38..42].copy_from_slice(&req[28..32]);
            tx_copy(&mut peer, &r).unwrap();
            peer.tx_flush();
        }
    }
    panic!("no SYN left the engine");
}

#[test]
fn same_configuration_different_isns_and_ports() {
    // No secret set: the engine takes one from the operating system each time.
    let cfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), LocalAddr::new(ME, 24));
    assert_eq!(cfg.secret, [0; 16]);
    let runs: Vec<(u32, u16)> = (0..3).map(|_| first_syn(&cfg)).collect();
    for i in 0..runs.len() {
        for j in i + 1..runs.len() {
            assert_ne!(runs[i].0, runs[j].0, "ISNs {runs:?}");
        }
    }
    // Ports are drawn from 16,384: two may meet by chance (1 in 16,384), three hardly.
    assert!(
        runs.iter().any(|r| r.1 != runs[0].1),
        "the same source port every time: {runs:?}"
    );
}
