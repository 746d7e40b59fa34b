//! Receive-side scaling: how a frame's flow picks a queue. The Toeplitz hash real NICs use,
//! so that a core opening a connection can choose a source port whose replies the NIC
//! delivers to that core's own queue; and the symmetric software flow hash ([`flow_hash`])
//! that the wire NIC spreads flows with and the engine steers frames between cores by,
//! where no NIC hash helps.

use std::net::SocketAddrV4;

use crate::ETHERNET_HEADER_LEN;

/// Microsoft's reference RSS key (the default of many drivers).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

/// A symmetric Toeplitz key (0x6d5a repeated): both directions of a flow hash alike, so one
/// core sees both. Cut to the device's key size (40 or 52 bytes on most NICs).
pub const SYMMETRIC_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// [`SYMMETRIC_KEY`]'s pattern for a key of `len` bytes.
pub fn symmetric_key(len: usize) -> Vec<u8> {
    (0..len)
        .map(|i| if i % 2 == 0 { 0x6d } else { 0x5a })
        .collect()
}

/// The Toeplitz hash of `input` under `key` (the key must be at least 4 bytes longer than
/// the input; shorter keys are extended with zeros).
pub fn toeplitz(key: &[u8], input: &[u8]) -> u32 {
    let key_bit = |i: usize| key.get(i / 8).map_or(0, |b| (b >> (7 - i % 8)) & 1);
    // The 32-bit window of the key starting at bit 0.
    let mut window: u32 = (0..32).fold(0, |w, i| (w << 1) | u32::from(key_bit(i)));
    let mut hash = 0;
    for (byte_index, byte) in input.iter().enumerate() {
        for bit in 0..8 {
            if byte & (0x80 >> bit) != 0 {
                hash ^= window;
            }
            window = (window << 1) | u32::from(key_bit(byte_index * 8 + bit + 32));
        }
    }
    hash
}

/// The RSS hash a NIC computes for a TCP/IPv4 segment from `src` to `dst`.
pub fn tcp4_hash(key: &[u8], src: SocketAddrV4, dst: SocketAddrV4) -> u32 {
    let mut input = [0u8; 12];
    input[..4].copy_from_slice(&src.ip().octets());
    input[4..8].copy_from_slice(&dst.ip().octets());
    input[8..10].copy_from_slice(&src.port().to_be_bytes());
    input[10..12].copy_from_slice(&dst.port().to_be_bytes());
    toeplitz(key, &input)
}

/// The queue a NIC with `queues` queues and the default indirection table (128 entries,
/// round robin) delivers a segment from `src` to `dst` to.
pub fn tcp4_queue(key: &[u8], src: SocketAddrV4, dst: SocketAddrV4, queues: u16) -> u16 {
    ((tcp4_hash(key, src, dst) & 127) % u32::from(queues.max(1))) as u16
}

/// Symmetric hash of a frame's flow, the same for both directions of a flow.
///
/// For an Ethernet II frame of type IPv4 (0x0800) with a well-formed IPv4 header: the two
/// addresses and, for TCP and UDP (not fragments), the two ports; the addresses alone for
/// other protocols and for fragments (so all fragments of a datagram hash alike). `None` for
/// anything else (ARP, IPv6, VLAN tags, truncated or malformed headers). Never panics.
pub fn flow_hash(frame: &[u8]) -> Option<u32> {
    if frame.get(12..14)? != [0x08, 0x00] {
        return None;
    }
    let ip = frame.get(ETHERNET_HEADER_LEN..)?;
    let version_ihl = *ip.first()?;
    let ihl = usize::from(version_ihl & 0x0f) * 4;
    if version_ihl >> 4 != 4 || ihl < 20 || ip.len() < ihl {
        return None;
    }
    let be16 = |at: usize| -> Option<u16> {
        let b = ip.get(at..at + 2)?;
        Some(u16::from_be_bytes([*b.first()?, *b.get(1)?]))
    };
    let be32 =
        |at: usize| -> Option<u32> { Some(u32::from(be16(at)?) << 16 | u32::from(be16(at + 2)?)) };
    let src = be32(12)?;
    let dst = be32(16)?;
    let proto = *ip.get(9)?;
    let fragment = be16(6)? & 0x3fff != 0;
    let (sport, dport) = match (proto, fragment) {
        (6 | 17, false) => (be16(ihl)?, be16(ihl + 2)?),
        _ => (0, 0),
    };
    Some(symmetric(src, sport, dst, dport))
}

/// [`flow_hash`] of the TCP/UDP flow between `a` and `b` (either order): what a frame of
/// that flow hashes to, without building the frame. Engines use it to choose source ports
/// whose replies come back to their own queue.
pub fn tuple_hash(a: SocketAddrV4, b: SocketAddrV4) -> u32 {
    symmetric(u32::from(*a.ip()), a.port(), u32::from(*b.ip()), b.port())
}

/// Order-independent mix of two (address, port) endpoints.
fn symmetric(ip1: u32, port1: u16, ip2: u32, port2: u16) -> u32 {
    let e1 = (u64::from(ip1) << 16) | u64::from(port1);
    let e2 = (u64::from(ip2) << 16) | u64::from(port2);
    let (lo, hi) = if e1 <= e2 { (e1, e2) } else { (e2, e1) };
    // splitmix64-style finalisation of an asymmetric combination of the sorted pair.
    let mut x = lo.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ hi.rotate_left(29);
    x ^= x >> 31;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 29;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    // Folding the halves keeps every input bit in the low 32.
    (x ^ (x >> 32)) as u32
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use proptest::prelude::*;

    fn sa(ip: [u8; 4], port: u16) -> SocketAddrV4 {
        SocketAddrV4::new(ip.into(), port)
    }

    /// An Ethernet/IPv4 frame from `a` to `b` with protocol `proto` and a 20-byte L4 header.
    pub(crate) fn frame_between(a: SocketAddrV4, b: SocketAddrV4, proto: u8) -> Vec<u8> {
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

    /// The verification suite of Microsoft's RSS specification (IPv4 with TCP).
    #[test]
    fn matches_the_reference_vectors() {
        let cases = [
            ("66.9.149.187:2794", "161.142.100.80:1766", 0x51cc_c178),
            ("199.92.111.2:14230", "65.69.140.83:4739", 0xc626_b0ea),
            ("24.19.198.95:12898", "12.22.207.184:38024", 0x5c2b_394a),
            ("38.27.205.30:48228", "209.142.163.6:2217", 0xafc7_327f),
            ("153.39.163.191:44251", "202.188.127.2:1303", 0x10e8_28a2),
        ];
        for (src, dst, want) in cases {
            let got = tcp4_hash(&DEFAULT_KEY, src.parse().unwrap(), dst.parse().unwrap());
            assert_eq!(got, want, "{src} -> {dst}");
        }
    }

    #[test]
    fn the_symmetric_key_hashes_both_directions_alike() {
        assert_eq!(symmetric_key(52), SYMMETRIC_KEY.to_vec());
        let key = symmetric_key(40);
        let a = sa([10, 1, 2, 3], 40000);
        for port in [1u16, 80, 443, 11211, 65535] {
            let b = sa([192, 168, 7, 9], port);
            assert_eq!(tcp4_hash(&key, a, b), tcp4_hash(&key, b, a));
        }
        // Microsoft's key is not symmetric.
        let b = sa([192, 168, 7, 9], 80);
        assert_ne!(tcp4_hash(&DEFAULT_KEY, a, b), tcp4_hash(&DEFAULT_KEY, b, a));
    }

    #[test]
    fn a_known_table_decides_the_queue() {
        let a = sa([10, 1, 2, 3], 40000);
        let b = sa([10, 1, 2, 4], 80);
        let mut rss = crate::RssInfo {
            key: Some(DEFAULT_KEY.to_vec()),
            symmetric: false,
            table: Vec::new(),
        };
        // No table: the default round robin over 128 entries.
        assert_eq!(
            rss.tcp4_queue(a, b, 4),
            Some(tcp4_queue(&DEFAULT_KEY, a, b, 4))
        );
        // A table sending everything to queue 3, then one alternating 5 and 7.
        rss.table = vec![3; 64];
        assert_eq!(rss.tcp4_queue(a, b, 8), Some(3));
        rss.table = [5u16, 7].repeat(256);
        let h = tcp4_hash(&DEFAULT_KEY, a, b) as usize;
        assert_eq!(
            rss.tcp4_queue(a, b, 8),
            Some(if h % 2 == 0 { 5 } else { 7 })
        );
        rss.key = None;
        assert_eq!(rss.tcp4_queue(a, b, 8), None);
    }

    #[test]
    fn flow_hash_fields() {
        let c = sa([192, 168, 1, 10], 40000);
        let s = sa([192, 168, 1, 20], 443);
        let tcp = frame_between(c, s, 6);
        let udp = frame_between(c, s, 17);
        // TCP and UDP of the same 4-tuple hash alike (the protocol is not an input).
        assert_eq!(flow_hash(&tcp), Some(tuple_hash(c, s)));
        assert_eq!(flow_hash(&udp), Some(tuple_hash(c, s)));
        // Ports matter for TCP and UDP.
        let other = frame_between(sa([192, 168, 1, 10], 40001), s, 6);
        assert_ne!(flow_hash(&tcp), flow_hash(&other));
        // Other protocols: addresses only.
        let icmp = frame_between(c, s, 1);
        let icmp2 = frame_between(sa([192, 168, 1, 10], 1), s, 1);
        assert_eq!(flow_hash(&icmp), flow_hash(&icmp2));
        assert_eq!(
            flow_hash(&icmp),
            Some(tuple_hash(
                sa([192, 168, 1, 10], 0),
                sa([192, 168, 1, 20], 0)
            ))
        );
        // Fragments: addresses only, first fragment (MF) included.
        let mut frag = tcp.clone();
        frag[14 + 6] = 0x20;
        assert_eq!(flow_hash(&frag), flow_hash(&icmp));
        let mut later = tcp.clone();
        later[14 + 7] = 0x10;
        assert_eq!(flow_hash(&later), flow_hash(&icmp));
        // DF alone is not a fragment.
        let mut df = tcp.clone();
        df[14 + 6] = 0x40;
        assert_eq!(flow_hash(&df), flow_hash(&tcp));
        // IP options move the ports.
        let mut opts = vec![0u8; 14 + 24 + 4];
        opts[..34].copy_from_slice(&tcp[..34]);
        opts[14] = 0x46;
        opts[38..42].copy_from_slice(&tcp[34..38]);
        assert_eq!(flow_hash(&opts), flow_hash(&tcp));
    }

    #[test]
    fn flow_hash_refuses_what_it_cannot_parse() {
        let c = sa([10, 0, 0, 1], 5);
        let s = sa([10, 0, 0, 2], 6);
        let good = frame_between(c, s, 6);
        assert_eq!(flow_hash(&[]), None);
        assert_eq!(flow_hash(&good[..13]), None);
        assert_eq!(flow_hash(&good[..14]), None);
        assert_eq!(flow_hash(&good[..33]), None, "truncated IPv4 header");
        assert_eq!(flow_hash(&good[..37]), None, "truncated ports");
        assert!(flow_hash(&good[..38]).is_some());
        let mut arp = good.clone();
        arp[13] = 0x06;
        assert_eq!(flow_hash(&arp), None);
        let mut v6 = good.clone();
        v6[12..14].copy_from_slice(&[0x86, 0xdd]);
        assert_eq!(flow_hash(&v6), None);
        let mut bad_version = good.clone();
        bad_version[14] = 0x65;
        assert_eq!(flow_hash(&bad_version), None);
        let mut short_ihl = good.clone();
        short_ihl[14] = 0x44;
        assert_eq!(flow_hash(&short_ihl), None);
        let mut long_ihl = good.clone();
        long_ihl[14] = 0x4f;
        assert_eq!(flow_hash(&long_ihl), None, "IHL beyond the frame");
        // A truncated ICMP frame is fine: no ports needed.
        let icmp = frame_between(c, s, 1);
        assert!(flow_hash(&icmp[..34]).is_some());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn flow_hash_never_panics_on_random_bytes(frame in proptest::collection::vec(any::<u8>(), 0..120)) {
            let _ = flow_hash(&frame);
        }

        #[test]
        fn flow_hash_never_panics_on_ipv4_looking_frames(
            mut frame in proptest::collection::vec(any::<u8>(), 14..120),
            ihl in 0u8..16,
        ) {
            frame[12] = 0x08;
            frame[13] = 0x00;
            if let Some(b) = frame.get_mut(14) {
                *b = 0x40 | ihl;
            }
            let _ = flow_hash(&frame);
        }

        #[test]
        fn flow_hash_is_symmetric(
            a in any::<[u8; 4]>(), pa in any::<u16>(),
            b in any::<[u8; 4]>(), pb in any::<u16>(),
            proto in prop_oneof![Just(6u8), Just(17u8)],
        ) {
            let fwd = frame_between(sa(a, pa), sa(b, pb), proto);
            let rev = frame_between(sa(b, pb), sa(a, pa), proto);
            prop_assert_eq!(flow_hash(&fwd), flow_hash(&rev));
            prop_assert_eq!(flow_hash(&fwd), Some(tuple_hash(sa(a, pa), sa(b, pb))));
        }

    }
}
