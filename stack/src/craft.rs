//! TCP segments the stack builds itself, not smoltcp: RSTs for segments that match nothing,
//! ACKs of TIME-WAIT records, challenge ACKs (RFC 5961), SYN-ACKs carrying a SYN cookie,
//! and the segments replayed into a socket (a cookie's handshake, a tail-loss probe's
//! duplicate ACKs). All go through smoltcp's `TcpRepr::emit`.

use core::net::Ipv4Addr;

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber,
    TcpTimestampRepr,
};

use crate::checksum::TxChecksum;
use crate::egress::Egress;
use crate::flow::FourTuple;

/// A bare segment from `tuple.local` to `tuple.remote`.
pub(crate) fn segment(
    tuple: &FourTuple,
    control: TcpControl,
    seq: u32,
    ack: Option<u32>,
) -> TcpRepr<'static> {
    TcpRepr {
        src_port: tuple.local.port(),
        dst_port: tuple.remote.port(),
        control,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: ack.map(|a| TcpSeqNumber(a as i32)),
        window_len: 0,
        window_scale: None,
        max_seg_size: None,
        sack_permitted: false,
        sack_ranges: [None; 3],
        timestamp: None,
        payload: &[],
    }
}

/// A pure ACK with an optional timestamp `(tsval, tsecr)`.
pub(crate) fn ack(
    tuple: &FourTuple,
    seq: u32,
    ack: u32,
    window: u16,
    ts: Option<(u32, u32)>,
) -> TcpRepr<'static> {
    let mut r = segment(tuple, TcpControl::None, seq, Some(ack));
    r.window_len = window;
    r.timestamp = ts.map(|(v, e)| TcpTimestampRepr::new(v, e));
    r
}

/// The same 4-tuple seen from the other side.
pub(crate) fn reversed(t: &FourTuple) -> FourTuple {
    FourTuple {
        local: t.remote,
        remote: t.local,
    }
}

impl Egress {
    /// Sends a segment from `tuple.local` to `tuple.remote`.
    pub(crate) fn send_tcp(&mut self, tuple: &FourTuple, repr: &TcpRepr<'_>) {
        let (ip, src, dst) = ip_header(tuple, repr);
        let cs = self.tx_checksum;
        self.send_ip_with(&ip, |buf| emit_tcp(repr, src, dst, buf, cs));
    }
}

/// The IPv4 header of a segment from `tuple.local` to `tuple.remote`, and the two addresses.
fn ip_header(tuple: &FourTuple, repr: &TcpRepr<'_>) -> (Ipv4Repr, Ipv4Addr, Ipv4Addr) {
    let (src, dst) = (*tuple.local.ip(), *tuple.remote.ip());
    let ip = Ipv4Repr {
        src_addr: src,
        dst_addr: dst,
        next_header: IpProtocol::Tcp,
        payload_len: repr.buffer_len(),
        hop_limit: 64,
    };
    (ip, src, dst)
}

fn emit_tcp(repr: &TcpRepr<'_>, src: Ipv4Addr, dst: Ipv4Addr, buf: &mut [u8], cs: TxChecksum) {
    repr.emit(
        &mut TcpPacket::new_unchecked(buf),
        &IpAddress::Ipv4(src),
        &IpAddress::Ipv4(dst),
        &cs.smoltcp_caps(),
    );
}

/// Writes an IPv4 packet carrying `repr` from `tuple.local` to `tuple.remote` into `out`
/// (for handing to a socket as if it had been received; never to a NIC, so its checksums
/// are the stack's own).
pub(crate) fn ip_packet(tuple: &FourTuple, repr: &TcpRepr<'_>, out: &mut Vec<u8>) {
    let (ip, src, dst) = ip_header(tuple, repr);
    out.clear();
    out.resize(ip.buffer_len() + repr.buffer_len(), 0);
    let mut p = Ipv4Packet::new_unchecked(&mut out[..]);
    ip.emit(&mut p, &ChecksumCapabilities::default());
    emit_tcp(repr, src, dst, p.payload_mut(), TxChecksum::Software);
}
