//! The way in: every received frame is checked layer by layer (Ethernet, ARP, IPv4, ICMP,
//! TCP) through smoltcp's checked packet views; anything malformed is dropped and counted
//! under one reason. Valid TCP segments go to their connection (found by 4-tuple) or, for a
//! SYN, to a listener.

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, Icmpv4Message, Icmpv4Packet,
    Icmpv4Repr, IpAddress, IpListenEndpoint, IpProtocol, Ipv4Packet, Ipv4Repr, TcpControl,
    TcpPacket, TcpRepr, TcpSeqNumber,
};

use crate::egress::FlowDevice;
use crate::flow::{FourTuple, Phase, is_unicast};
use crate::{Instant, MacAddr, Stack, mark_dirty, new_socket};

impl Stack {
    /// Processes one received Ethernet frame (without FCS). Output it causes is deferred to
    /// the next [`Stack::poll`]; events are queued for [`Stack::next_event`].
    pub fn receive(&mut self, now: Instant, frame: &[u8]) {
        self.set_now(now);
        let c = &mut self.eg.counters;
        c.rx_frames += 1;
        c.rx_bytes += frame.len() as u64;
        let Ok(eth) = EthernetFrame::new_checked(frame) else {
            c.drops.eth_truncated += 1;
            return;
        };
        let dst = eth.dst_addr();
        if dst != self.eg.mac && !dst.is_broadcast() {
            c.drops.eth_not_for_us += 1;
            return;
        }
        match eth.ethertype() {
            EthernetProtocol::Arp => self.on_arp(eth.payload()),
            EthernetProtocol::Ipv4 => self.on_ipv4(eth.payload(), eth.src_addr()),
            _ => c.drops.eth_unsupported_type += 1,
        }
    }

    fn on_arp(&mut self, payload: &[u8]) {
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
            eg.counters.drops.arp_malformed += 1;
            return;
        };
        if !smac.is_unicast() || !is_unicast(sip) {
            eg.counters.drops.arp_malformed += 1;
            return;
        }
        let for_us = eg.local_index(tip).is_some();
        if for_us || eg.neighbours.knows(sip) {
            let frames = eg.neighbours.learn(sip, smac, eg.now);
            eg.release(frames, smac);
        }
        if !for_us {
            if !eg.neighbours.knows(sip) {
                eg.counters.drops.arp_not_for_us += 1;
            }
            return;
        }
        if operation == ArpOperation::Request {
            eg.send_arp_from(ArpOperation::Reply, tip, sip, smac);
        }
    }

    fn on_ipv4(&mut self, bytes: &[u8], src_mac: MacAddr) {
        let local = self.eg.addrs.iter().position(|a| a.addr == dst_of(bytes));
        let broadcast_src = self
            .eg
            .addrs
            .iter()
            .any(|a| a.broadcast() == Some(src_of(bytes)));
        let drops = &mut self.eg.counters.drops;
        let Ok(ip) = Ipv4Packet::new_checked(bytes) else {
            drops.ipv4_malformed += 1;
            return;
        };
        if ip.version() != 4 {
            drops.ipv4_malformed += 1;
            return;
        }
        if !ip.verify_checksum() {
            drops.ipv4_bad_checksum += 1;
            return;
        }
        if ip.more_frags() || ip.frag_offset() != 0 {
            drops.ipv4_fragment += 1;
            return;
        }
        let (src, dst) = (ip.src_addr(), ip.dst_addr());
        let Some(iface) = local else {
            drops.ipv4_not_for_us += 1;
            return;
        };
        if !is_unicast(src) || broadcast_src {
            drops.ipv4_bad_source += 1;
            return;
        }
        let header_len = usize::from(ip.header_len());
        // `new_checked` guarantees header_len <= total_len <= bytes.len().
        let packet = &bytes[..usize::from(ip.total_len())];
        match ip.next_header() {
            IpProtocol::Tcp => self.on_tcp(iface, src, dst, packet, header_len, src_mac),
            IpProtocol::Icmp => self.on_icmp(src, dst, &packet[header_len..]),
            _ => drops.ip_unsupported_protocol += 1,
        }
    }

    fn on_icmp(&mut self, src: Ipv4Addr, dst: Ipv4Addr, payload: &[u8]) {
        let eg = &mut self.eg;
        let Ok(icmp) = Icmpv4Packet::new_checked(payload) else {
            eg.counters.drops.icmp_malformed += 1;
            return;
        };
        if !icmp.verify_checksum() {
            eg.counters.drops.icmp_bad_checksum += 1;
            return;
        }
        if icmp.msg_type() != Icmpv4Message::EchoRequest {
            eg.counters.drops.icmp_ignored += 1;
            return;
        }
        let Ok(Icmpv4Repr::EchoRequest {
            ident,
            seq_no,
            data,
        }) = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::ignored())
        else {
            eg.counters.drops.icmp_malformed += 1;
            return;
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
    }

    fn on_tcp(
        &mut self,
        iface: usize,
        src: Ipv4Addr,
        dst: Ipv4Addr,
        packet: &[u8],
        header_len: usize,
        src_mac: MacAddr,
    ) {
        let drops = &mut self.eg.counters.drops;
        let Ok(tcp) = TcpPacket::new_checked(&packet[header_len..]) else {
            drops.tcp_malformed += 1;
            return;
        };
        let (s, d) = (IpAddress::Ipv4(src), IpAddress::Ipv4(dst));
        if !tcp.verify_checksum(&s, &d) {
            drops.tcp_bad_checksum += 1;
            return;
        }
        let Ok(repr) = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::ignored()) else {
            drops.tcp_malformed += 1;
            return;
        };
        let tuple = FourTuple {
            local: SocketAddrV4::new(dst, repr.dst_port),
            remote: SocketAddrV4::new(src, repr.src_port),
        };
        if let Some(index) = self.flows.lookup(&tuple) {
            self.flow_ingress(index, packet);
            return;
        }
        if repr.control == TcpControl::Syn && repr.ack_number.is_none() {
            if let Some(lid) = self.listeners.find(tuple.local) {
                self.learn_from_syn(src, src_mac);
                self.passive_open(lid, tuple, iface, packet);
                return;
            }
        }
        drops.tcp_no_socket += 1;
        if repr.control != TcpControl::Rst {
            self.send_rst(&tuple, &repr);
        }
    }

    /// Learns an on-link peer's MAC address from its SYN, unless already known. With several
    /// cores on one address, ARP replies reach one core only (they carry no flow hash); this
    /// lets every core answer the connections it is given without an ARP round of its own.
    fn learn_from_syn(&mut self, src: Ipv4Addr, src_mac: MacAddr) {
        let eg = &mut self.eg;
        if src_mac.is_unicast()
            && eg.addrs.iter().any(|a| a.contains(src))
            && eg.neighbours.lookup(src, eg.now).is_none()
        {
            let frames = eg.neighbours.learn(src, src_mac, eg.now);
            eg.release(frames, src_mac);
        }
    }

    /// A SYN for a listener: a new connection in SYN-RECEIVED, if the backlog has room.
    fn passive_open(
        &mut self,
        lid: crate::ListenerId,
        tuple: FourTuple,
        iface: usize,
        packet: &[u8],
    ) {
        let Some(l) = self.listeners.get_mut(lid) else {
            return;
        };
        if l.pending >= l.backlog {
            self.eg.counters.drops.tcp_backlog_full += 1;
            return;
        }
        l.pending += 1;
        let mut tcp = self.cfg.tcp.clone();
        if let Some((rx, tx)) = l.buffers {
            (tcp.rx_buffer, tcp.tx_buffer) = (rx, tx);
        }
        let mut socket = new_socket(&tcp, &mut self.spare_sockets);
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*tuple.local.ip())),
            port: tuple.local.port(),
        };
        if socket.listen(endpoint).is_err() {
            // Unreachable for a valid port; undo rather than panic.
            l.pending -= 1;
            return;
        }
        let id = self.insert_flow(tuple, iface, socket, Phase::Embryonic(lid));
        self.flow_ingress(id.index, packet);
    }

    /// Hands one IP packet to the connection in slot `index`.
    fn flow_ingress(&mut self, index: u32, packet: &[u8]) {
        let now = self.now;
        let mtu = self.cfg.mtu;
        let Some(flow) = self.flows.slot_mut(index) else {
            return;
        };
        let id = flow.id(index);
        let packet = match flow.seq.rcv_nxt {
            Some(rcv_nxt) if rescue_old_ack(packet, rcv_nxt, &mut self.rewrite) => {
                self.eg.counters.tcp_old_acks_rescued += 1;
                &self.rewrite[..]
            }
            _ => packet,
        };
        let iface = &mut self.ifaces[flow.iface];
        let mut dev = FlowDevice {
            rx: Some(packet),
            eg: &mut self.eg,
            seq: &mut flow.seq,
            mtu,
        };
        iface.poll_ingress_single(now, &mut dev, &mut flow.sockets);
        self.eg.counters.tcp_segments_in += 1;
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
    }

    /// Answers a segment that matched nothing with a RST (RFC 9293 section 3.10.7.1).
    fn send_rst(&mut self, tuple: &FourTuple, seg: &TcpRepr<'_>) {
        let (seq_number, ack_number) = match seg.ack_number {
            Some(ack) => (ack, None),
            None => (TcpSeqNumber(0), Some(seg.seq_number + seg.segment_len())),
        };
        let rst = TcpRepr {
            src_port: tuple.local.port(),
            dst_port: tuple.remote.port(),
            control: TcpControl::Rst,
            seq_number,
            ack_number,
            window_len: 0,
            window_scale: None,
            max_seg_size: None,
            sack_permitted: false,
            sack_ranges: [None; 3],
            timestamp: None,
            payload: &[],
        };
        let (local, remote) = (*tuple.local.ip(), *tuple.remote.ip());
        let ip = Ipv4Repr {
            src_addr: local,
            dst_addr: remote,
            next_header: IpProtocol::Tcp,
            payload_len: rst.buffer_len(),
            hop_limit: 64,
        };
        self.eg.counters.tcp_rst_sent += 1;
        self.eg.send_ip_with(&ip, |buf| {
            rst.emit(
                &mut TcpPacket::new_unchecked(buf),
                &IpAddress::Ipv4(local),
                &IpAddress::Ipv4(remote),
                &ChecksumCapabilities::default(),
            );
        });
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
/// loss/duplication test). Linux accepts the ACK of such a segment. Rewrite the sequence
/// number to `rcv_nxt` so the ACK is processed. Only pure ACKs: an old data segment must
/// stay as it is, since smoltcp answers it with the duplicate ACK its sender needs.
/// Returns whether `out` holds a rewritten packet.
///
/// `packet` has been validated (IPv4 and TCP headers, checksums); smoltcp does not verify
/// checksums again, so none is recomputed.
fn rescue_old_ack(packet: &[u8], rcv_nxt: u32, out: &mut Vec<u8>) -> bool {
    let ihl = usize::from(packet.first().map_or(0, |b| b & 0x0f)) * 4;
    let Some(tcp) = packet.get(ihl..) else {
        return false;
    };
    if tcp.len() < 20 {
        return false;
    }
    let flags = tcp[13];
    // Only ACK-bearing segments without SYN or RST.
    if flags & 0x10 == 0 || flags & 0x06 != 0 {
        return false;
    }
    let doff = usize::from(tcp[12] >> 4) * 4;
    let seq = u32::from_be_bytes([tcp[4], tcp[5], tcp[6], tcp[7]]);
    // Pure ACK (no payload, no FIN) strictly before rcv_nxt.
    if tcp.len() > doff || flags & 0x01 != 0 || (rcv_nxt.wrapping_sub(seq) as i32) <= 0 {
        return false;
    }
    out.clear();
    out.extend_from_slice(packet);
    out[ihl + 4..ihl + 8].copy_from_slice(&rcv_nxt.to_be_bytes());
    true
}
