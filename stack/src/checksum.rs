//! Who fills the checksums of the TCP segments the stack sends, and the one rule every
//! emit path (smoltcp's segments in `egress`, the stack's own in `craft`, the sequence
//! rewrite in `xlate`) follows for it.
//!
//! * [`TxChecksum::Software`]: the stack writes the IPv4 header checksum and the TCP
//!   checksum; a rewritten field patches the TCP checksum incrementally (RFC 1624).
//! * [`TxChecksum::Offload`]: the NIC fills both (DPDK's `RTE_MBUF_F_TX_IP_CKSUM` and
//!   `RTE_MBUF_F_TX_TCP_CKSUM`). The stack leaves the IPv4 header checksum 0 and puts the
//!   pseudo-header sum (source, destination, protocol, TCP length; folded, not
//!   complemented: what DPDK's `rte_ipv4_phdr_cksum` gives without TSO) in the TCP checksum
//!   field; a rewritten field is written as is, since the NIC sums the segment afterwards.
//!
//! Only TCP over IPv4 is offloaded: ICMP replies and ARP keep their software checksums, and
//! a NIC queue flags only IPv4/TCP frames for the NIC to complete. Packets the stack hands
//! to its own sockets (replayed handshakes) never reach a NIC and keep software checksums.

use smoltcp::phy::{Checksum, ChecksumCapabilities};

/// Who fills the IPv4 header and TCP checksums of outgoing TCP segments (see the module
/// docs).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum TxChecksum {
    /// The stack computes both.
    #[default]
    Software,
    /// The NIC computes both; the stack leaves the IPv4 checksum 0 and writes the TCP
    /// pseudo-header sum.
    Offload,
}

impl TxChecksum {
    /// What smoltcp is told when it emits a segment: compute the checksums (software), or
    /// leave them 0 for [`TxChecksum::finish`] (offload). Received packets are never
    /// checked by smoltcp: the stack checks them before they reach it.
    pub(crate) fn smoltcp_caps(self) -> ChecksumCapabilities {
        let tx = match self {
            Self::Software => Checksum::Tx,
            Self::Offload => Checksum::None,
        };
        let mut cs = ChecksumCapabilities::default();
        cs.ipv4 = tx;
        cs.tcp = tx;
        cs
    }

    /// Writes 32-bit field `at` of the TCP header `tcp` (at least 20 bytes), keeping the
    /// checksum right for this mode.
    pub(crate) fn set32(self, tcp: &mut [u8], at: usize, value: u32) {
        match self {
            Self::Software => patch32(tcp, at, value),
            Self::Offload => tcp[at..at + 4].copy_from_slice(&value.to_be_bytes()),
        }
    }

    /// Last step of every TCP segment put on the wire, on its IPv4 packet `ip`: nothing in
    /// software mode (the checksums are already right); in offload mode, the IPv4 checksum
    /// set to 0 and the TCP checksum field to the pseudo-header sum. Other packets are left
    /// alone.
    pub(crate) fn finish(self, ip: &mut [u8]) {
        if self == Self::Software || ip.len() < 20 || ip[0] >> 4 != 4 || ip[9] != 6 {
            return;
        }
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let total = usize::from(u16::from_be_bytes([ip[2], ip[3]])).min(ip.len());
        if ihl < 20 || total < ihl + 20 {
            return;
        }
        ip[10..12].fill(0);
        let sum = pseudo_header_sum(&ip[12..16], &ip[16..20], (total - ihl) as u16);
        ip[ihl + 16..ihl + 18].copy_from_slice(&sum.to_be_bytes());
    }
}

/// The IPv4 pseudo-header sum of a TCP segment of `tcp_len` bytes from `src` to `dst`:
/// one's complement sum of the addresses, the protocol and the length, folded to 16 bits,
/// not complemented.
fn pseudo_header_sum(src: &[u8], dst: &[u8], tcp_len: u16) -> u16 {
    let mut sum = 6u32 + u32::from(tcp_len);
    for w in src.chunks_exact(2).chain(dst.chunks_exact(2)) {
        sum += u32::from(u16::from_be_bytes([w[0], w[1]]));
    }
    fold(sum)
}

fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    sum as u16
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Writes a 32-bit field of a TCP header and patches the header's checksum (RFC 1624:
/// `HC' = ~(~HC + ~m + m')`, word by word).
pub(crate) fn patch32(tcp: &mut [u8], at: usize, value: u32) {
    let old = be32(&tcp[at..at + 4]);
    tcp[at..at + 4].copy_from_slice(&value.to_be_bytes());
    let mut sum = u32::from(!u16::from_be_bytes([tcp[16], tcp[17]]));
    for (o, n) in [(old >> 16, value >> 16), (old & 0xffff, value & 0xffff)] {
        sum += u32::from(!(o as u16)) + n;
    }
    tcp[16..18].copy_from_slice(&(!fold(sum)).to_be_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::wire::{IpAddress, Ipv4Address, Ipv4Packet, TcpPacket};

    /// What a NIC does with an offloaded segment: the IPv4 header checksum, and the TCP
    /// checksum as the complement of the sum over the segment whose checksum field holds
    /// the pseudo-header sum.
    fn complete(ip: &mut [u8]) {
        let ihl = usize::from(ip[0] & 0x0f) * 4;
        let mut sum = 0u32;
        for w in ip[..ihl].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        ip[10..12].copy_from_slice(&(!fold(sum)).to_be_bytes());
        let mut sum = 0u32;
        for w in ip[ihl..].chunks(2) {
            sum += u32::from(u16::from_be_bytes([w[0], *w.get(1).unwrap_or(&0)]));
        }
        ip[ihl + 16..ihl + 18].copy_from_slice(&(!fold(sum)).to_be_bytes());
    }

    #[test]
    fn an_offloaded_segment_completed_like_a_nic_has_the_software_checksums() {
        let (src, dst) = (
            Ipv4Address::new(10, 1, 2, 3),
            Ipv4Address::new(192, 168, 9, 250),
        );
        for payload in [0usize, 1, 7, 1000, 1459] {
            let mut soft = vec![0u8; 20 + 20 + payload];
            soft[0] = 0x45;
            soft[2..4].copy_from_slice(&((40 + payload) as u16).to_be_bytes());
            soft[8] = 64;
            soft[9] = 6;
            soft[12..16].copy_from_slice(&src.octets());
            soft[16..20].copy_from_slice(&dst.octets());
            for (i, b) in soft[20..].iter_mut().enumerate() {
                *b = (i as u8).wrapping_mul(37) ^ payload as u8;
            }
            soft[32] = 0x50;
            let mut off = soft.clone();
            // Software: full checksums, then a rewritten sequence number.
            Ipv4Packet::new_unchecked(&mut soft[..]).fill_checksum();
            TcpPacket::new_unchecked(&mut soft[20..])
                .fill_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst));
            TxChecksum::Software.set32(&mut soft[20..], 4, 0xdead_beef);
            // Offload: the same segment, the same rewrite, finished for the NIC.
            TxChecksum::Offload.set32(&mut off[20..], 4, 0xdead_beef);
            TxChecksum::Offload.finish(&mut off);
            assert_eq!(&off[10..12], &[0, 0], "the NIC fills the IPv4 checksum");
            complete(&mut off);
            assert_eq!(off, soft, "payload {payload}");
            assert!(Ipv4Packet::new_unchecked(&soft[..]).verify_checksum());
            assert!(
                TcpPacket::new_unchecked(&soft[20..])
                    .verify_checksum(&IpAddress::Ipv4(src), &IpAddress::Ipv4(dst))
            );
        }
    }

    #[test]
    fn software_mode_and_other_protocols_are_left_alone() {
        let mut icmp = vec![0u8; 28];
        icmp[0] = 0x45;
        icmp[2..4].copy_from_slice(&28u16.to_be_bytes());
        icmp[9] = 1;
        icmp[10] = 0xab;
        let before = icmp.clone();
        TxChecksum::Offload.finish(&mut icmp);
        assert_eq!(icmp, before);
        let mut tcp = before.clone();
        tcp[9] = 6;
        tcp.resize(40, 0);
        let before = tcp.clone();
        TxChecksum::Software.finish(&mut tcp);
        assert_eq!(tcp, before);
        // Truncated: left alone, no panic.
        let mut short = before[..30].to_vec();
        TxChecksum::Offload.finish(&mut short);
        assert_eq!(short, before[..30]);
    }
}
