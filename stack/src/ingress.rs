//! The way in: every received frame is checked layer by layer (Ethernet, ARP, IPv4, ICMP,
//! TCP) through smoltcp's checked packet views; anything malformed is dropped and counted
//! under one reason (and every frame that is not dropped counts as delivered). Valid TCP
//! segments go to their connection (found by 4-tuple), to a TIME-WAIT record, or to a
//! listener (a SYN, or an ACK carrying a SYN cookie).
//!
//! Before a segment reaches a synchronized connection's socket, the stack applies what
//! smoltcp does not: an RST must carry exactly the next expected sequence number, an RST
//! elsewhere in the window and a SYN get a challenge ACK instead (RFC 5961), and a segment
//! whose timestamp is older than the connection's last one is refused (PAWS, RFC 7323).

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet,
    Icmpv4Repr, IpAddress, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr,
};

use crate::counters::DropCounters;
use crate::craft;
use crate::egress::FlowDevice;
use crate::flow::{FourTuple, is_unicast};
use crate::lifecycle::{fin_received, set_ts};
use crate::xlate::{ACK, FIN, RST, SYN, SegInfo, seq_lt};
use crate::{Instant, MacAddr, Stack, TcpState, mark_dirty};

/// What became of a received frame. A dropped frame has been counted under its reason.
#[must_use]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Rx {
    Delivered,
    Dropped,
}

/// Counts a drop under `reason`.
pub(crate) fn drop(reason: &mut u64) -> Rx {
    *reason += 1;
    Rx::Dropped
}

impl Stack {
    /// Processes one received Ethernet frame (without FCS). Output it causes is deferred to
    /// the next [`Stack::poll`]; events are queued for [`Stack::next_event`].
    pub fn receive(&mut self, now: Instant, frame: &[u8]) {
        self.set_now(now);
        let c = &mut self.eg.counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        if self.on_frame(frame) == Rx::Delivered {
            self.eg.counters.rx_delivered += 1;
        }
    }

    fn on_frame(&mut self, frame: &[u8]) -> Rx {
        let drops = &mut self.eg.counters.drops;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            return drop(&mut drops.eth_truncated);
        };
        let dst = eth.dst_addr();
        if dst != self.eg.mac && !dst.is_broadcast() {
            return drop(&mut drops.eth_not_for_us);
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.on_arp(eth.payload()),
            EthernetProtocol::Ipv4 => self.on_ipv4(eth.payload(), eth.src_addr()),
            _ => drop(&mut drops.eth_unsupported_type),
        }
    }

    fn on_arp(&mut self, payload: &[u8]) -> Rx {
        let eg = &mut self.eg;
        let repr = ArpPacket::new_checked(payload).and_then(|p| ArpRepr::parse(&p));
        let Ok(ArpRepr::EthernetIpv4 {
            operation,
            source_hardware_addr: smac,
            source_protocol_addr: sip,
            target_protocol_addr: tip,
            ..
        }) = repr
        else {
            return drop(&mut eg.counters.drops.arp_malformed);
        };
        if !smac.is_unicast() || !is_unicast(sip) {
            return drop(&mut eg.counters.drops.arp_malformed);
        }
        let for_us = eg.local_index(tip).is_some();
        let known = eg.neighbours.knows(sip);
        if for_us || known {
            let frames = eg.neighbours.learn(sip, smac, eg.now);
            eg.release(frames, smac);
        }
        if !for_us {
            if !known {
                return drop(&mut eg.counters.drops.arp_not_for_us);
            }
            return Rx::Delivered;
        }
        if operation == ArpOperation::Request {
            eg.send_arp_from(ArpOperation::Reply, tip, sip, smac);
        }
        Rx::Delivered
    }

    fn on_ipv4(&mut self, bytes: &[u8], src_mac: MacAddr) -> Rx {
        let local = self.eg.addrs.iter().position(|a| a.addr == dst_of(bytes));
        let broadcast_src = self
            .eg
            .addrs
            .iter()
            .any(|a| a.broadcast() == Some(src_of(bytes)));
        let drops = &mut self.eg.counters.drops;
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            return drop(&mut drops.ipv4_malformed);
        };
        if ip.version() != 4 {
            return drop(&mut drops.ipv4_malformed);
        }
        if !ip.verify_checksum() {
            return drop(&mut drops.ipv4_bad_checksum);
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            return drop(&mut drops.ipv4_fragment);
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Some(iface) = local else {
            return drop(&mut drops.ipv4_not_for_us);
        };
        if !is_unicast(src) || broadcast_src {
            return drop(&mut drops.ipv4_bad_source);
        }
        let header_len = usize::from(ip.header_len());
        // `new_checked` guarantees header_len <= total_len <= bytes.len().
        let packet = &bytes[..usize::from(ip.total_len())];
        match ip.next_header() {
            IpProtocol::Tcp => self.on_tcp(iface, src, dst, packet, header_len, src_mac),
            IpProtocol::Icmp => self.on_icmp(src, dst, &packet[header_len..]),
            _ => drop(&mut drops.ip_unsupported_protocol),
        }
    }

    fn on_icmp(&mut self, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) -> Rx {
        let eg = &mut self.eg;
        let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
            return drop(&mut eg.counters.drops.icmp_malformed);
        };
        if !icmp.verify_checksum() {
            return drop(&mut eg.counters.drops.icmp_bad_checksum);
        }
        if icmp.msg_type() != Icmpv4Message::EchoRequest {
            return drop(&mut eg.counters.drops.icmp_ignored);
        }
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::ignored())
        else {
            return drop(&mut eg.counters.drops.icmp_malformed);
        };
        let reply = Icmpv4Repr::EchoReply {
            ident,
            seq_no,
            data,
        };
        let ip = Ipv4Repr {
            src_addr: dst,
            dst_addr: src,
            next_header: IpProtocol::Icmp,
            payload_len: reply.buffer_len(),
            hop_limit: 64,
        };
        eg.counters.icmp_echo_replies += 1;
        eg.send_ip_with(&ip, |buf| {
            reply.emit(
                &mut Icmpv4Packet::new_unchecked(buf),
                &ChecksumCapabilities::default(),
            );
        });
        Rx::Delivered
    }

    fn on_tcp(
        &mut self,
        iface: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        packet: &[u8],
        header_len: usize,
        src_mac: MacAddr,
    ) -> Rx {
        let drops = &mut self.eg.counters.drops;
        let Ok(tcp) = TcpPacket::new_checked(&packet[header_len..]) else {
            return drop(&mut drops.tcp_malformed);
        };
        let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        if !tcp.verify_checksum(&s, &d) {
            return drop(&mut drops.tcp_bad_checksum);
        }
        // What a connection needs, read straight off the header (with the checks smoltcp's
        // parser makes, so that what passes here smoltcp takes); the full parse only for
        // segments no connection holds.
        let Some(seg) = SegInfo::read(&tcp) else {
            return drop(&mut drops.tcp_malformed);
        };
        let tuple = FourTuple {
            local: SocketAddrV4::new(dst, tcp.dst_port()),
            remote: SocketAddrV4::new(src, tcp.src_port()),
        };
        if let Some(index) = self.flows.lookup(&tuple) {
            return self.flow_ingress(index, packet, &seg);
        }
        let Ok(repr) = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::ignored()) else {
            return drop(&mut self.eg.counters.drops.tcp_malformed);
        };
        if self.time_waits.contains(&tuple) {
            return self.time_wait_segment(iface, &tuple, packet, &repr, src_mac);
        }
        let syn = repr.control == TcpControl::Syn && repr.ack_number.is_none();
        let bare_ack =
            matches!(repr.control, TcpControl::None | TcpControl::Psh) && repr.ack_number.is_some();
        if let Some(lid) = self.listeners.find(tuple.local) {
            if syn {
                self.learn_from_syn(src, src_mac);
                return self.on_syn(lid, tuple, iface, packet, &repr, None);
            }
            if bare_ack && self.cookies_recent(lid) {
                return self.on_cookie_ack(lid, tuple, iface, packet, &repr);
            }
        }
        if repr.control != TcpControl::Rst {
            self.send_rst(&tuple, &repr);
        }
        drop(&mut self.eg.counters.drops.tcp_no_socket)
    }

    /// Learns an on-link peer's MAC address from its SYN, unless already known. With several
    /// cores on one address, ARP replies reach one core only (they carry no flow hash); this
    /// lets every core answer the connections it is given without an ARP round of its own.
    pub(crate) fn learn_from_syn(&mut self, src: Ipv4Addr, src_mac: MacAddr) {
        let eg = &mut self.eg;
        if src_mac.is_unicast()
            && eg.addrs.iter().any(|a| a.contains(src))
            && eg.neighbours.lookup(src, eg.now).is_none()
        {
            let frames = eg.neighbours.learn(src, src_mac, eg.now);
            eg.release(frames, src_mac);
        }
    }

    /// Hands one IP packet to the connection in slot `index`, after the checks smoltcp does
    /// not make (RFC 5961, PAWS) and the translation to the socket's sequence space.
    pub(crate) fn flow_ingress(&mut self, index: u32, packet: &[u8], seg: &SegInfo) -> Rx {
        let snow = self.clock.socket_time(self.now);
        let (mtu, now_ms) = (self.cfg.mtu, self.now_ms());
        let Some(flow) = self.flows.slot_mut(index) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        let id = flow.id(index);
        let state = flow.socket().state();
        if !matches!(
            state,
            TcpState::Listen | TcpState::SynSent | TcpState::SynReceived | TcpState::Closed
        ) && let Some(reason) = self.guard(index, seg, state)
        {
            return drop(reason(&mut self.eg.counters.drops));
        }
        if state == TcpState::SynSent
            && let Some(rx) = self.restart_syn(index, seg)
        {
            return rx;
        }
        let Some(flow) = self.flows.slot_mut(index) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        let una = flow.x.snd_una;
        flow.x.on_ingress(seg);
        if let (Some(ack), Some(min)) = (seg.ack, self.cfg.tcp.tail_probe) {
            let advanced = flow.x.snd_una != una;
            let outstanding = flow.x.outstanding();
            flow.x
                .probe
                .on_ack(ack, advanced, outstanding, self.now, min);
        }
        let rescue = flow.x.rcv_nxt.and_then(|r| old_ack_rescue(seg, r));
        if rescue.is_some() {
            self.eg.counters.tcp_old_acks_rescued += 1;
        }
        let packet = if flow.x.to_socket(packet, rescue, &mut self.rewrite) {
            &self.rewrite[..]
        } else {
            packet
        };
        set_ts(now_ms, flow.x.ts_off);
        let iface = &mut self.ifaces[flow.iface];
        let mut dev = FlowDevice {
            probe: self.cfg.tcp.tail_probe,
            ..FlowDevice::receiving(packet, &mut self.eg, &mut flow.x, mtu)
        };
        iface.poll_ingress_single(snow, &mut dev, &mut flow.sockets);
        self.eg.counters.tcp_segments_in += 1;
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Rx::Delivered
    }

    /// RFC 5961 and PAWS for a segment on a synchronized connection: `None` lets it through;
    /// otherwise the drop reason (a challenge ACK or an ACK has been sent when due).
    fn guard(
        &mut self,
        index: u32,
        seg: &SegInfo,
        state: TcpState,
    ) -> Option<fn(&mut DropCounters) -> &mut u64> {
        let flow = self.flows.slot_mut(index)?;
        let s = flow.socket();
        let queued = s.recv_queue();
        let window = (s.recv_capacity() - queued).max(1) as u32;
        let x = &flow.x;
        if seg.flags & RST != 0 {
            let rcv_nxt = x.rcv_next(queued, fin_received(state))?;
            if seg.seq == rcv_nxt {
                return None;
            }
            if seg.seq.wrapping_sub(rcv_nxt) >= window {
                return Some(|d| &mut d.tcp_rst_out_of_window);
            }
            self.challenge_ack(index, state);
            return Some(|d| &mut d.tcp_rst_challenged);
        }
        if seg.flags & SYN != 0 {
            self.challenge_ack(index, state);
            return Some(|d| &mut d.tcp_syn_challenged);
        }
        // PAWS guards the data: a pure ACK with an old timestamp is a reordered or
        // duplicated ACK, not data from an old incarnation, and fast retransmit needs it
        // (Linux lets such "disordered" ACKs through too).
        let carries_data = seg.payload > 0 || seg.flags & FIN != 0;
        if carries_data
            && x.ts_on == Some(true)
            && let (Some((tsval, _)), Some(recent)) = (seg.ts, x.ts_recent)
            && seq_lt(tsval, recent)
        {
            // RFC 7323 5.3: drop it, but acknowledge (rate-limited like challenge ACKs: an
            // attacker replaying old segments must not make us send a flood).
            self.challenge_ack(index, state);
            return Some(|d| &mut d.tcp_paws);
        }
        None
    }

    /// Sends the ACK RFC 5961 calls a challenge ACK: <SEQ=SND.NXT><ACK=RCV.NXT><CTL=ACK>,
    /// with the window and timestamps the connection uses; within the stack's rate limit.
    fn challenge_ack(&mut self, index: u32, state: TcpState) {
        let now_ms = self.now_ms();
        let Some(flow) = self.flows.slot_mut(index) else {
            return;
        };
        let x = &flow.x;
        let queued = flow.socket().recv_queue();
        let (Some(seq), Some(ack)) = (x.snd_max, x.rcv_next(queued, fin_received(state))) else {
            return;
        };
        let ts = match (x.ts_on, x.ts_recent) {
            (Some(true), Some(r)) => Some((now_ms.wrapping_add(x.ts_off), r)),
            _ => None,
        };
        let repr = craft::ack(&flow.tuple, seq, ack, x.last_win, ts);
        let tuple = flow.tuple;
        if self.may_challenge() {
            self.eg.send_tcp(&tuple, &repr);
        }
    }

    /// Answers a segment that matched nothing with a RST (RFC 9293 section 3.10.7.1).
    fn send_rst(&mut self, tuple: &FourTuple, seg: &TcpRepr<'_>) {
        let (seq, ack) = match seg.ack_number {
            Some(ack) => (ack.0 as u32, None),
            None => (0, Some((seg.seq_number + seg.segment_len()).0 as u32)),
        };
        let rst = craft::segment(tuple, TcpControl::Rst, seq, ack);
        self.eg.counters.tcp_rst_sent += 1;
        self.eg.send_tcp(tuple, &rst);
    }
}

impl SegInfo {
    /// The facts of a TCP segment, read off its header; `None` for what smoltcp's parser
    /// refuses (a zero port, a forbidden combination of SYN, FIN and RST, malformed
    /// options), so that both agree on which segments are malformed.
    pub(crate) fn read(tcp: &TcpPacket<&[u8]>) -> Option<Self> {
        if tcp.src_port() == 0 || tcp.dst_port() == 0 {
            return None;
        }
        let mut flags = match (tcp.syn(), tcp.fin(), tcp.rst()) {
            (false, false, false) => 0,
            (true, false, false) => SYN,
            (false, true, false) => FIN,
            (false, false, true) => RST,
            _ => return None,
        };
        if tcp.ack() {
            flags |= ACK;
        }
        Some(SegInfo {
            flags,
            seq: tcp.seq_number().0 as u32,
            ack: tcp.ack().then(|| tcp.ack_number().0 as u32),
            window: tcp.window_len(),
            ts: crate::xlate::check_options(tcp.options())?,
            payload: tcp.payload().len(),
        })
    }

    pub(crate) fn of(repr: &TcpRepr<'_>) -> Self {
        let mut flags = match repr.control {
            TcpControl::Syn => SYN,
            TcpControl::Fin => FIN,
            TcpControl::Rst => RST,
            TcpControl::None | TcpControl::Psh => 0,
        };
        if repr.ack_number.is_some() {
            flags |= ACK;
        }
        SegInfo {
            flags,
            seq: repr.seq_number.0 as u32,
            ack: repr.ack_number.map(|a| a.0 as u32),
            window: repr.window_len,
            ts: repr.timestamp.map(|t| (t.tsval, t.tsecr)),
            payload: repr.payload.len(),
        }
    }
}

/// Destination address of an IPv4 header (unspecified when too short; checked later).
fn dst_of(b: &[u8]) -> Ipv4Addr {
    b.get(16..20).map_or(Ipv4Addr::UNSPECIFIED, |a| {
        Ipv4Addr::new(a[0], a[1], a[2], a[3])
    })
}

/// Source address of an IPv4 header (unspecified when too short; checked later).
fn src_of(b: &[u8]) -> Ipv4Addr {
    b.get(12..16).map_or(Ipv4Addr::UNSPECIFIED, |a| {
        Ipv4Addr::new(a[0], a[1], a[2], a[3])
    })
}

/// A pure ACK whose sequence number lies before what this side has received in order
/// (`rcv_nxt`) is "not acceptable" to smoltcp (RFC 9293 3.10.7.4), which then ignores its
/// ACK field. A smoltcp peer that went back after a retransmission timeout sends exactly
/// such ACKs (they carry its rewound sequence number), so two smoltcp stacks both recovering
/// from loss stop hearing each other's ACKs and stall for good (seen in the 64 MiB
/// loss/duplication test). Linux accepts the ACK of such a segment. The sequence number is
/// set to `rcv_nxt` (on the copy the socket gets) so the ACK is processed. Only pure ACKs:
/// an old data segment must stay as it is, since smoltcp answers it with the duplicate ACK
/// its sender needs. Gives the sequence number to use, if the segment is such an ACK.
fn old_ack_rescue(seg: &SegInfo, rcv_nxt: u32) -> Option<u32> {
    let pure_ack = seg.flags == ACK && seg.payload == 0;
    (pure_ack && seq_lt(seg.seq, rcv_nxt)).then_some(rcv_nxt)
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;
    use smoltcp::phy::ChecksumCapabilities;
    use smoltcp::wire::{IpAddress, Ipv4Address, TcpPacket, TcpRepr};

    use super::SegInfo;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(20_000))]

        /// The quick read of a segment and smoltcp's parser agree on which segments are
        /// malformed, and on the timestamp: what the stack hands a connection, smoltcp takes.
        #[test]
        fn quick_read_agrees_with_smoltcp(
            flags in any::<u8>(),
            ports in (0u16..3, 0u16..3),
            opts in proptest::collection::vec(
                prop_oneof![Just(0u8), Just(1), Just(2), Just(3), Just(4), Just(5), Just(8),
                    Just(10), any::<u8>()],
                0..40,
            ),
        ) {
            let words = opts.len().div_ceil(4);
            let mut seg = vec![0u8; 20 + words * 4 + 3];
            seg[0..2].copy_from_slice(&ports.0.to_be_bytes());
            seg[2..4].copy_from_slice(&ports.1.to_be_bytes());
            seg[12] = ((5 + words) as u8) << 4;
            seg[13] = flags;
            seg[20..20 + opts.len()].copy_from_slice(&opts);
            let (a, b) = (IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 1)), IpAddress::Ipv4(Ipv4Address::new(10, 0, 0, 2)));
            let p = TcpPacket::new_checked(&seg[..]).unwrap();
            let ours = SegInfo::read(&p);
            let theirs = TcpRepr::parse(&p, &a, &b, &ChecksumCapabilities::ignored());
            prop_assert_eq!(ours.is_some(), theirs.is_ok(), "{:?} {:?}", ours, theirs);
            if let (Some(o), Ok(t)) = (ours, theirs) {
                prop_assert_eq!(o.ts, t.timestamp.map(|t| (t.tsval, t.tsecr)));
                prop_assert_eq!(o.payload, t.payload.len());
            }
        }
    }
}
