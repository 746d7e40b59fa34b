//! Frames built from smoltcp's wire representations, checksums filled. Shared by the stack's
//! tests (`common`), its benchmarks (`benches/workload.rs`) and its fuzz target
//! (`fuzz/fuzz_targets/receive.rs`), which include this file by `#[path]`.

use std::net::Ipv4Addr;

use megatcp_stack::MacAddr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr,
    TcpPacket, TcpRepr,
};

/// An Ethernet frame from `src_mac` to `dst_mac` carrying `ip` and an L4 payload written by
/// `fill` (`ip.payload_len` bytes).
pub fn ipv4_frame(
    src_mac: MacAddr,
    dst_mac: MacAddr,
    ip: &Ipv4Repr,
    fill: impl FnOnce(&mut [u8]),
) -> Vec<u8> {
    let mut buf = vec![0u8; 14 + ip.buffer_len() + ip.payload_len];
    let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
    EthernetRepr {
        src_addr: src_mac,
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    }
    .emit(&mut eth);
    let mut p = Ipv4Packet::new_unchecked(eth.payload_mut());
    ip.emit(&mut p, &ChecksumCapabilities::default());
    fill(p.payload_mut());
    buf
}

/// An Ethernet frame carrying `tcp` from `src` to `dst` (MAC and IPv4 address each).
pub fn tcp_frame(
    (src_mac, src): (MacAddr, Ipv4Addr),
    (dst_mac, dst): (MacAddr, Ipv4Addr),
    tcp: &TcpRepr<'_>,
) -> Vec<u8> {
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    ipv4_frame(src_mac, dst_mac, &ip, |payload| {
        tcp.emit(
            &mut TcpPacket::new_unchecked(payload),
            &IpAddress::Ipv4(src),
            &IpAddress::Ipv4(dst),
            &ChecksumCapabilities::default(),
        );
    })
}
