//! One connection as the wire sees it, and the translation between the wire and its smoltcp
//! socket.
//!
//! smoltcp draws a socket's initial sequence number itself (from a PRNG seeded once per
//! interface) and offers no way to choose it. The wire must see ours instead: RFC 6528
//! ISNs, and for connections made from a SYN cookie, the cookie. So each flow keeps a
//! *sequence offset*: `wire = socket + seq_off` in this side's sequence space. It is learned
//! from the first SYN the socket sends (`want_isn - socket ISN`); every segment the socket
//! sends has its sequence number shifted (and its checksum patched, RFC 1624), and every
//! segment it receives has its acknowledgment number and SACK blocks shifted back, on a
//! copy. The peer's sequence space is never translated.
//!
//! The same view records what our own segments (challenge ACKs, TIME-WAIT records, tail
//! probes) need: the highest sequence number sent and acknowledged each way, the peer's
//! last timestamp, the window last advertised, and an RTT estimate.

use crate::checksum::{TxChecksum, patch32};
use crate::{Duration, Instant};

/// TCP flag bits.
pub(crate) const FIN: u8 = 0x01;
pub(crate) const SYN: u8 = 0x02;
pub(crate) const RST: u8 = 0x04;
pub(crate) const ACK: u8 = 0x10;

/// `a < b` in sequence space (RFC 9293 modular comparison).
pub(crate) fn seq_lt(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) < 0
}

/// `a <= b` in sequence space.
pub(crate) fn seq_le(a: u32, b: u32) -> bool {
    (a.wrapping_sub(b) as i32) <= 0
}

/// The wire-side state of one connection. All sequence numbers here are as on the wire.
#[derive(Debug, Clone, Default)]
pub(crate) struct Xlate {
    /// `wire seq = socket seq + seq_off` for this side's sequence numbers.
    pub(crate) seq_off: u32,
    /// The ISN the wire must see; `seq_off` is learned from the socket's first SYN.
    pub(crate) want_isn: Option<u32>,
    /// Added to the stack's millisecond clock to give this connection's TSval.
    pub(crate) ts_off: u32,
    /// End of the sequence space sent so far.
    pub(crate) snd_max: Option<u32>,
    /// Highest acknowledgment number received from the peer.
    pub(crate) snd_una: Option<u32>,
    /// Highest acknowledgment number sent: what this side acknowledged so far.
    pub(crate) rcv_nxt: Option<u32>,
    /// The peer's initial sequence number.
    pub(crate) irs: Option<u32>,
    /// Bytes the application has read (mod 2^32): with `irs` and the receive queue it gives
    /// the exact next expected sequence number, pending ACKs included.
    pub(crate) read: u32,
    /// The window field of the last segment sent.
    pub(crate) last_win: u16,
    /// The window field of the peer's last segment.
    pub(crate) peer_win: u16,
    /// Whether our segments carry timestamps (known after the first non-SYN segment).
    pub(crate) ts_on: Option<bool>,
    /// The peer's most recent TSval that passed the RFC 7323 update rule.
    pub(crate) ts_recent: Option<u32>,
    /// Drop (do not send) what the socket emits: a SYN cookie's handshake is replayed into
    /// a fresh socket, and its SYN-ACK was already sent as the cookie.
    pub(crate) capture: bool,
    /// RTT estimate and tail-loss probe.
    pub(crate) probe: Probe,
    /// The last segment sent was a retransmission.
    pub(crate) last_retransmit: bool,
    /// The active open was started over once (its SYN was answered by a stray ACK).
    pub(crate) syn_restarted: bool,
}

/// What an egress pass learned from one segment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Sent {
    /// The segment re-sent sequence space already sent.
    pub(crate) retransmit: bool,
    /// It carried new data (payload beyond what was sent before).
    pub(crate) new_data: bool,
}

impl Xlate {
    /// Translates one IPv4 packet the socket emitted (in place; its checksum kept right as
    /// `cs` says) and records what it says.
    /// Returns `None` when the packet is not a TCP segment the stack can read (never the
    /// case for smoltcp's output; such a packet is passed on unchanged).
    pub(crate) fn on_egress(&mut self, ip: &mut [u8], cs: TxChecksum) -> Option<Sent> {
        let ihl = usize::from(*ip.first()? & 0x0f) * 4;
        if ip.get(9) != Some(&6) {
            return None;
        }
        let tcp = ip.get_mut(ihl..)?;
        if tcp.len() < 20 {
            return None;
        }
        let flags = tcp[13];
        let mut seq = be32(&tcp[4..8]);
        if flags & SYN != 0
            && let Some(want) = self.want_isn.take()
        {
            self.seq_off = want.wrapping_sub(seq);
        }
        if self.seq_off != 0 {
            let wire = seq.wrapping_add(self.seq_off);
            cs.set32(tcp, 4, wire);
            seq = wire;
        }
        let doff = usize::from(tcp[12] >> 4) * 4;
        if flags & ACK != 0 {
            let ack = be32(&tcp[8..12]);
            if self.rcv_nxt.is_none_or(|r| seq_le(r, ack)) {
                self.rcv_nxt = Some(ack);
            }
        }
        self.last_win = u16::from_be_bytes([tcp[14], tcp[15]]);
        if flags & SYN == 0 && self.ts_on.is_none() {
            let opts = tcp.get(20..doff).unwrap_or_default();
            self.ts_on = Some(find_timestamp(opts).is_some());
        }
        let ctl = u32::from(flags & SYN != 0) + u32::from(flags & FIN != 0);
        let len = tcp.len().saturating_sub(doff) as u32 + ctl;
        let mut sent = Sent::default();
        if len == 0 || flags & RST != 0 {
            self.last_retransmit = false;
            return Some(sent);
        }
        let end = seq.wrapping_add(len);
        match self.snd_max {
            Some(max) if seq_le(end, max) => sent.retransmit = true,
            _ => {
                sent.new_data = tcp.len() > doff;
                self.snd_max = Some(end);
            }
        }
        self.last_retransmit = sent.retransmit;
        Some(sent)
    }

    /// Records the facts of a segment received on this connection (wire values): the
    /// peer's ISN, the highest ACK, its window and timestamp. `ts_update` applies RFC 7323's
    /// rule for TS.Recent (only segments at or before what was acknowledged update it).
    pub(crate) fn on_ingress(&mut self, seg: &SegInfo) {
        if seg.flags & SYN != 0 {
            self.irs = Some(seg.seq);
        }
        if let Some(ack) = seg.ack
            && self.snd_una.is_none_or(|u| seq_lt(u, ack))
            && self.snd_max.is_some_and(|m| seq_le(ack, m))
        {
            self.snd_una = Some(ack);
        }
        if seg.flags & SYN == 0 {
            self.peer_win = seg.window;
        }
        if let Some((tsval, _)) = seg.ts {
            let fresh = self.ts_recent.is_none_or(|r| seq_le(r, tsval));
            let in_order = seg.flags & SYN != 0 || self.rcv_nxt.is_none_or(|r| seq_le(seg.seq, r));
            if fresh && in_order {
                self.ts_recent = Some(tsval);
            }
        }
    }

    /// Whether data this side sent is not yet acknowledged.
    pub(crate) fn outstanding(&self) -> bool {
        match (self.snd_una, self.snd_max) {
            (Some(u), Some(m)) => seq_lt(u, m),
            (None, Some(_)) => true,
            _ => false,
        }
    }

    /// Copies an IP packet for the socket, with acknowledgment and SACK numbers moved back
    /// into the socket's sequence space, and, when `rescue` is given, the sequence number of
    /// a pure ACK set to it (see `ingress::rescue_old_ack`). Returns `false` (and leaves
    /// `out` alone) when there is nothing to change.
    pub(crate) fn to_socket(&self, packet: &[u8], rescue: Option<u32>, out: &mut Vec<u8>) -> bool {
        if self.seq_off == 0 && rescue.is_none() {
            return false;
        }
        let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
        let Some(tcp) = packet.get(ihl..) else {
            return false;
        };
        if tcp.len() < 20 || tcp[13] & ACK == 0 {
            return false;
        }
        out.clear();
        out.extend_from_slice(packet);
        let tcp = &mut out[ihl..];
        if let Some(r) = rescue {
            patch32(tcp, 4, r);
        }
        if self.seq_off != 0 {
            let ack = be32(&tcp[8..12]).wrapping_sub(self.seq_off);
            patch32(tcp, 8, ack);
            let doff = (usize::from(tcp[12] >> 4) * 4).min(tcp.len());
            if doff > 20 {
                shift_sack(&mut tcp[20..doff], self.seq_off);
            }
        }
        true
    }

    /// The sequence number the peer's next byte must have (wire = socket space for the
    /// peer's side): its ISN + 1, plus what the application read, what waits to be read, and
    /// its FIN once received.
    pub(crate) fn rcv_next(&self, queued: usize, fin: bool) -> Option<u32> {
        let irs = self.irs?;
        Some(
            irs.wrapping_add(1)
                .wrapping_add(self.read)
                .wrapping_add(queued as u32)
                .wrapping_add(u32::from(fin)),
        )
    }
}

/// The facts of a received segment the stack acts on (wire values).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SegInfo {
    pub(crate) flags: u8,
    pub(crate) seq: u32,
    pub(crate) ack: Option<u32>,
    pub(crate) window: u16,
    pub(crate) ts: Option<(u32, u32)>,
    pub(crate) payload: usize,
}

/// RTT estimate (RFC 6298 smoothing of one timed segment per round trip, Karn's rule) and
/// the tail-loss probe deadline.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Probe {
    /// Smoothed RTT, microseconds (0: no sample yet).
    pub(crate) srtt_us: u32,
    /// RTT variation, microseconds.
    pub(crate) rttvar_us: u32,
    /// The segment being timed: the sequence number that acknowledges it, and when it left.
    timing: Option<(u32, Instant)>,
    /// When to probe, if the tail is still unacknowledged.
    pub(crate) deadline: Option<Instant>,
    /// A probe was sent for the current tail.
    pub(crate) probed: bool,
}

/// No probe when it would come as late as the smallest RTO: the RTO does the job then.
const PROBE_MAX: Duration = Duration::from_millis(200);

impl Probe {
    /// After a segment left: starts timing new data, stops timing on a retransmission (its
    /// ACK would be ambiguous), arms the probe for a new tail.
    pub(crate) fn on_sent(
        &mut self,
        sent: Sent,
        snd_max: Option<u32>,
        now: Instant,
        min: Duration,
    ) {
        if sent.retransmit {
            self.timing = None;
            return;
        }
        if sent.new_data {
            if self.timing.is_none()
                && let Some(end) = snd_max
            {
                self.timing = Some((end, now));
            }
            self.deadline = self.pto(min).map(|p| now + p);
            self.probed = false;
        }
    }

    /// After an ACK: takes an RTT sample if it covers the timed segment; re-arms the probe
    /// while data stays outstanding, disarms it when all is acknowledged.
    pub(crate) fn on_ack(
        &mut self,
        ack: u32,
        advanced: bool,
        outstanding: bool,
        now: Instant,
        min: Duration,
    ) {
        if let Some((end, at)) = self.timing
            && seq_le(end, ack)
        {
            self.timing = None;
            let sample = (now - at).total_micros().min(u64::from(u32::MAX / 8)) as u32;
            if self.srtt_us == 0 {
                self.srtt_us = sample.max(1);
                self.rttvar_us = sample / 2;
            } else {
                // RFC 6298: rttvar += (|srtt - sample| - rttvar) / 4; srtt += (sample - srtt) / 8.
                let err = self.srtt_us.abs_diff(sample);
                self.rttvar_us = ((u64::from(self.rttvar_us) * 3 + u64::from(err)) / 4) as u32;
                self.srtt_us =
                    ((u64::from(self.srtt_us) * 7 + u64::from(sample)) / 8).max(1) as u32;
            }
        }
        if !outstanding {
            self.deadline = None;
            self.probed = false;
        } else if advanced {
            self.deadline = self.pto(min).map(|p| now + p);
            self.probed = false;
        }
    }

    /// The probe timeout: the larger of two smoothed RTTs and SRTT + 4 RTTVAR, plus `min`
    /// (RFC 8985's allowance for the peer's delayed ACK and timer granularity). None
    /// without an RTT sample (RFC 8985 would wait a second: the RTO comes first) or when it
    /// would not come before the minimum RTO.
    pub(crate) fn pto(&self, min: Duration) -> Option<Duration> {
        if self.srtt_us == 0 {
            return None;
        }
        let srtt = u64::from(self.srtt_us);
        let spread = (2 * srtt).max(srtt + 4 * u64::from(self.rttvar_us));
        let pto = Duration::from_micros(spread) + min;
        (pto < PROBE_MAX).then_some(pto)
    }
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Walks TCP options; calls `f(kind, body)` for each well-formed one until it returns true.
fn walk_options(opts: &[u8], mut f: impl FnMut(u8, usize, usize) -> bool) {
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => return,
            1 => i += 1,
            kind => {
                let Some(&len) = opts.get(i + 1) else { return };
                let len = usize::from(len);
                if len < 2 || i + len > opts.len() {
                    return;
                }
                if f(kind, i + 2, i + len) {
                    return;
                }
                i += len;
            }
        }
    }
}

/// The (TSval, TSecr) of a TCP options area.
pub(crate) fn find_timestamp(opts: &[u8]) -> Option<(u32, u32)> {
    let mut found = None;
    walk_options(opts, |kind, a, b| {
        if kind == 8 && b - a == 8 {
            found = Some((be32(&opts[a..a + 4]), be32(&opts[a + 4..a + 8])));
            return true;
        }
        false
    });
    found
}

/// Checks a TCP options area as smoltcp's parser does (`None`: it would refuse the
/// segment) and returns the timestamp option's (TSval, TSecr), if any.
pub(crate) fn check_options(opts: &[u8]) -> Option<Option<(u32, u32)>> {
    let mut ts = None;
    let mut i = 0;
    while i < opts.len() {
        match opts[i] {
            0 => break,
            1 => i += 1,
            kind => {
                let len = usize::from(*opts.get(i + 1)?);
                let body = opts.get(i + 2..i + len)?;
                match (kind, len) {
                    (2, 4) | (3, 3) | (4, 2) => {}
                    (2..=4, _) => return None,
                    (5, n) if n < 10 || (n - 2) % 8 != 0 => return None,
                    (8, 10) => ts = Some((be32(&body[..4]), be32(&body[4..8]))),
                    _ => {}
                }
                i += len;
            }
        }
    }
    Some(ts)
}

/// Moves the edges of SACK blocks (option 5) back by `off`.
fn shift_sack(opts: &mut [u8], off: u32) {
    let mut sack = None;
    walk_options(opts, |kind, a, b| {
        sack = (kind == 5).then_some((a, b));
        sack.is_some()
    });
    let Some((mut at, end)) = sack else { return };
    while at + 4 <= end {
        let v = be32(&opts[at..at + 4]).wrapping_sub(off);
        opts[at..at + 4].copy_from_slice(&v.to_be_bytes());
        at += 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Address, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber};

    const SRC: Ipv4Address = Ipv4Address::new(10, 0, 0, 1);
    const DST: Ipv4Address = Ipv4Address::new(10, 0, 0, 2);

    fn segment(seq: u32, ack: u32, sack: Option<(u32, u32)>) -> Vec<u8> {
        let repr = TcpRepr {
            src_port: 1,
            dst_port: 2,
            control: TcpControl::Psh,
            seq_number: TcpSeqNumber(seq as i32),
            ack_number: Some(TcpSeqNumber(ack as i32)),
            window_len: 100,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [sack, None, None],
            timestamp: None,
            payload: b"hello",
        };
        // A minimal IPv4 header (IHL 5, protocol TCP) in front; only the TCP part matters.
        let mut p = vec![0u8; 20 + repr.buffer_len()];
        p[0] = 0x45;
        p[9] = 6;
        repr.emit(
            &mut TcpPacket::new_unchecked(&mut p[20..]),
            &IpAddress::Ipv4(SRC),
            &IpAddress::Ipv4(DST),
            &ChecksumCapabilities::default(),
        );
        p
    }

    fn checksum_ok(p: &[u8]) -> bool {
        TcpPacket::new_checked(&p[20..])
            .unwrap()
            .verify_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST))
    }

    #[test]
    fn egress_learns_the_offset_and_patches_the_checksum() {
        let mut x = Xlate {
            want_isn: Some(1000),
            ..Default::default()
        };
        let mut syn = segment(u32::MAX - 5, 0, None);
        syn[20 + 13] |= SYN;
        // Flags changed: recompute the checksum before translating.
        let mut t = TcpPacket::new_unchecked(&mut syn[20..]);
        t.fill_checksum(&IpAddress::Ipv4(SRC), &IpAddress::Ipv4(DST));
        x.on_egress(&mut syn, TxChecksum::Software).unwrap();
        assert_eq!(x.seq_off, 1000u32.wrapping_sub(u32::MAX - 5));
        assert_eq!(be32(&syn[24..28]), 1000);
        assert!(checksum_ok(&syn));
        // The SYN carried 5 bytes: the data goes on at MAX - 5 + 6 = 0 (wrapped).
        for seq in [0, 5, 10] {
            let mut p = segment(seq, 77, None);
            let sent = x.on_egress(&mut p, TxChecksum::Software).unwrap();
            assert_eq!(be32(&p[24..28]), seq.wrapping_add(x.seq_off));
            assert!(checksum_ok(&p), "checksum after rewriting seq {seq}");
            assert!(!sent.retransmit);
        }
        // The same data again is a retransmission.
        let mut p = segment(5, 77, None);
        assert!(
            x.on_egress(&mut p, TxChecksum::Software)
                .unwrap()
                .retransmit
        );
    }

    #[test]
    fn ingress_copy_moves_ack_and_sack_back() {
        let x = Xlate {
            seq_off: 500,
            ..Default::default()
        };
        let p = segment(1, 1500, Some((2000, 2500)));
        let mut out = Vec::new();
        assert!(x.to_socket(&p, None, &mut out));
        let t = TcpPacket::new_checked(&out[20..]).unwrap();
        assert_eq!(t.ack_number(), TcpSeqNumber(1000));
        let repr = TcpRepr::parse(
            &t,
            &IpAddress::Ipv4(SRC),
            &IpAddress::Ipv4(DST),
            &ChecksumCapabilities::ignored(),
        )
        .unwrap();
        assert_eq!(repr.sack_ranges[0], Some((1500, 2000)));
        // No offset and no rescue: no copy.
        assert!(!Xlate::default().to_socket(&p, None, &mut out));
    }

    #[test]
    fn rtt_and_probe() {
        let min = Duration::from_millis(10);
        let mut p = Probe::default();
        let t0 = Instant::from_millis(100);
        let sent = Sent {
            retransmit: false,
            new_data: true,
        };
        // No RTT sample yet: no probe (the RTO covers the first round trip).
        p.on_sent(sent, Some(200), t0, min);
        assert_eq!(p.deadline, None);
        p.on_ack(200, true, false, t0 + Duration::from_millis(4), min);
        assert_eq!((p.srtt_us, p.rttvar_us), (4000, 2000));
        assert_eq!(p.deadline, None);
        // srtt 4 ms, rttvar 2 ms: max(8, 4 + 8) + 10 = 22 ms.
        p.on_sent(sent, Some(300), t0, min);
        assert_eq!(p.deadline, Some(t0 + Duration::from_millis(22)));
        // Data in flight and an ACK that advances: re-armed from the ACK.
        p.on_ack(250, true, true, t0 + Duration::from_millis(1), min);
        assert!(p.deadline.is_some());
        // A round trip as long as the RTO: no probe.
        let mut slow = Probe::default();
        slow.on_sent(sent, Some(100), t0, min);
        slow.on_ack(100, true, false, t0 + Duration::from_millis(150), min);
        assert_eq!(slow.pto(min), None);
    }
}
