//! A raw-frame TCP peer: writes segments with exactly the fields a test asks for (sequence
//! numbers, flags, options) onto a wire queue, and reads back what the stack under test
//! sends, decoded. It plays hostile or hand-driven peers (spoofed SYNs, forged cookies,
//! in-window RSTs, retransmitted FINs).

use std::net::{Ipv4Addr, SocketAddrV4};

use megatcp_nic::wire::WireQueue;
use megatcp_nic::{NicQueue, tx_copy};
use megatcp_stack::MacAddr;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress,
    IpProtocol, Ipv4Packet, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

/// One TCP segment, owned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Seg {
    pub src: SocketAddrV4,
    pub dst: SocketAddrV4,
    pub control: TcpControl,
    pub seq: u32,
    pub ack: Option<u32>,
    pub window: u16,
    pub mss: Option<u16>,
    pub wscale: Option<u8>,
    pub sack_permitted: bool,
    pub ts: Option<(u32, u32)>,
    pub payload: Vec<u8>,
}

impl Seg {
    /// A segment from `src` to `dst` with nothing set.
    pub fn new(src: SocketAddrV4, dst: SocketAddrV4, control: TcpControl, seq: u32) -> Self {
        Seg {
            src,
            dst,
            control,
            seq,
            ack: None,
            window: 64_000,
            mss: None,
            wscale: None,
            sack_permitted: false,
            ts: None,
            payload: Vec::new(),
        }
    }

    /// A SYN as Linux opens: MSS 1460, window scale 7, SACK, timestamps (`tsval`, 0).
    pub fn linux_syn(src: SocketAddrV4, dst: SocketAddrV4, seq: u32, tsval: u32) -> Self {
        let mut syn = Seg::new(src, dst, TcpControl::Syn, seq).ts(tsval, 0);
        syn.mss = Some(1460);
        syn.wscale = Some(7);
        syn.sack_permitted = true;
        syn
    }

    pub fn ack(mut self, ack: u32) -> Self {
        self.ack = Some(ack);
        self
    }

    pub fn ts(mut self, tsval: u32, tsecr: u32) -> Self {
        self.ts = Some((tsval, tsecr));
        self
    }

    pub fn data(mut self, payload: &[u8]) -> Self {
        self.payload = payload.to_vec();
        self
    }

    pub fn is_syn_ack(&self) -> bool {
        self.control == TcpControl::Syn && self.ack.is_some()
    }

    pub fn is_pure_ack(&self) -> bool {
        matches!(self.control, TcpControl::None | TcpControl::Psh)
            && self.ack.is_some()
            && self.payload.is_empty()
    }

    /// An Ethernet frame carrying this segment.
    pub fn frame(&self, src_mac: MacAddr, dst_mac: MacAddr) -> Vec<u8> {
        let tcp = TcpRepr {
            src_port: self.src.port(),
            dst_port: self.dst.port(),
            control: self.control,
            seq_number: TcpSeqNumber(self.seq as i32),
            ack_number: self.ack.map(|a| TcpSeqNumber(a as i32)),
            window_len: self.window,
            window_scale: self.wscale,
            max_seg_size: self.mss,
            sack_permitted: self.sack_permitted,
            sack_ranges: [None; 3],
            timestamp: self.ts.map(|(v, e)| TcpTimestampRepr::new(v, e)),
            payload: &self.payload,
        };
        super::frames::tcp_frame((src_mac, *self.src.ip()), (dst_mac, *self.dst.ip()), &tcp)
    }

    /// Decodes a frame, if it is a valid IPv4/TCP one.
    pub fn parse(frame: &[u8]) -> Option<Seg> {
        let eth = EthernetFrame::new_checked(frame).ok()?;
        if eth.ethertype() != EthernetProtocol::Ipv4 {
            return None;
        }
        let ip = Ipv4Packet::new_checked(eth.payload()).ok()?;
        if ip.next_header() != IpProtocol::Tcp {
            return None;
        }
        let (s, d) = (
            IpAddress::Ipv4(ip.src_addr()),
            IpAddress::Ipv4(ip.dst_addr()),
        );
        let tcp = TcpPacket::new_checked(ip.payload()).ok()?;
        assert!(
            tcp.verify_checksum(&s, &d),
            "bad TCP checksum from the stack"
        );
        let r = TcpRepr::parse(&tcp, &s, &d, &ChecksumCapabilities::default()).ok()?;
        Some(Seg {
            src: SocketAddrV4::new(ip.src_addr(), r.src_port),
            dst: SocketAddrV4::new(ip.dst_addr(), r.dst_port),
            control: r.control,
            seq: r.seq_number.0 as u32,
            ack: r.ack_number.map(|a| a.0 as u32),
            window: r.window_len,
            mss: r.max_seg_size,
            wscale: r.window_scale,
            sack_permitted: r.sack_permitted,
            ts: r.timestamp.map(|t| (t.tsval, t.tsecr)),
            payload: r.payload.to_vec(),
        })
    }
}

/// A peer that speaks raw frames on one wire queue.
pub struct RawPeer {
    pub q: WireQueue,
    pub mac: MacAddr,
    pub peer_mac: MacAddr,
    pub ip: Ipv4Addr,
}

impl RawPeer {
    pub fn send(&mut self, seg: &Seg) {
        let f = seg.frame(self.mac, self.peer_mac);
        tx_copy(&mut self.q, &f).unwrap();
        self.q.tx_flush();
    }

    /// Asks the stack for `target`'s MAC (an ARP request from this peer): the stack learns
    /// this peer's address from it.
    pub fn announce(&mut self, target: Ipv4Addr) {
        let repr = ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Request,
            source_hardware_addr: self.mac,
            source_protocol_addr: self.ip,
            target_hardware_addr: MacAddr([0; 6]),
            target_protocol_addr: target,
        };
        let mut buf = vec![0u8; 14 + repr.buffer_len()];
        let mut eth = EthernetFrame::new_unchecked(&mut buf[..]);
        EthernetRepr {
            src_addr: self.mac,
            dst_addr: MacAddr::BROADCAST,
            ethertype: EthernetProtocol::Arp,
        }
        .emit(&mut eth);
        repr.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
        tx_copy(&mut self.q, &buf).unwrap();
        self.q.tx_flush();
    }

    /// Every TCP segment received since the last call (other frames are skipped).
    pub fn recv(&mut self) -> Vec<Seg> {
        let mut out = Vec::new();
        self.q.rx_burst(1024, &mut |f| {
            if let Some(s) = Seg::parse(f.data) {
                out.push(s);
            }
        });
        out
    }
}
