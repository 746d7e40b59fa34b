//! Receive-side scaling: the Toeplitz hash real NICs use to pick a receive queue, so that a
//! core opening a connection can choose a source port whose replies the NIC delivers to
//! that core's own queue.

use std::net::SocketAddrV4;

/// Microsoft's reference RSS key (the default of many drivers).
pub const DEFAULT_KEY: [u8; 40] = [
    0x6d, 0x5a, 0x56, 0xda, 0x25, 0x5b, 0x0e, 0xc2, 0x41, 0x67, 0x25, 0x3d, 0x43, 0xa3, 0x8f, 0xb0,
    0xd0, 0xca, 0x2b, 0xcb, 0xae, 0x7b, 0x30, 0xb4, 0x77, 0xcb, 0x2d, 0xa3, 0x80, 0x30, 0xf2, 0x0c,
    0x6a, 0x42, 0xb7, 0x3b, 0xbe, 0xac, 0x01, 0xfa,
];

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

#[cfg(test)]
mod tests {
    use super::*;

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
}
