//! The way out: routing, Ethernet framing and ARP resolution for every packet the stack
//! sends, plus the smoltcp `Device` view through which one connection's packets pass.

use core::net::Ipv4Addr;

use smoltcp::phy::{self, ChecksumCapabilities, DeviceCapabilities, Medium};
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetAddress, EthernetFrame, EthernetProtocol,
    EthernetRepr, Ipv4Packet, Ipv4Repr,
};

use crate::FrameSink;
use crate::arp::{Enqueued, Neighbours};
use crate::checksum::TxChecksum;
use crate::config::LocalAddr;
use crate::counters::Counters;
use crate::out::OutQueue;
use crate::xlate::{Sent, Xlate};
use crate::{Duration, Instant, MacAddr};

/// Length of the Ethernet II header the stack writes.
pub(crate) const ETH_HDR: usize = 14;

/// Everything needed to put an IPv4 packet on the wire.
pub(crate) struct Egress {
    pub(crate) mac: MacAddr,
    pub(crate) addrs: Vec<LocalAddr>,
    pub(crate) gateway: Option<Ipv4Addr>,
    pub(crate) neighbours: Neighbours,
    pub(crate) out: OutQueue,
    pub(crate) counters: Counters,
    pub(crate) now: Instant,
    /// Who fills the checksums of outgoing TCP segments.
    pub(crate) tx_checksum: TxChecksum,
}

impl Egress {
    /// Index of the local address `ip`, if it is one.
    pub(crate) fn local_index(&self, ip: Ipv4Addr) -> Option<usize> {
        self.addrs.iter().position(|a| a.addr == ip)
    }

    /// The Ethernet address to send a packet for `dst` to, if it is known now.
    pub(crate) fn next_hop_mac(&self, dst: Ipv4Addr) -> Option<MacAddr> {
        self.neighbours.lookup(self.next_hop(dst)?, self.now)
    }

    /// The neighbour that gets packets for `dst`: itself if on a local subnet, else the
    /// gateway.
    fn next_hop(&self, dst: Ipv4Addr) -> Option<Ipv4Addr> {
        if self.addrs.iter().any(|a| a.contains(dst)) {
            Some(dst)
        } else {
            self.gateway
        }
    }

    /// Sends `buf`, which holds an IPv4 packet at `buf[ETH_HDR..]` and room for the Ethernet
    /// header before it. Resolves the next hop (queueing the frame while ARP runs).
    pub(crate) fn send_ipv4(&mut self, mut buf: Vec<u8>) {
        let dst = match buf.get(ETH_HDR + 16..ETH_HDR + 20) {
            Some(b) => Ipv4Addr::new(b[0], b[1], b[2], b[3]),
            None => {
                self.out.recycle(buf);
                return;
            }
        };
        let Some(hop) = self.next_hop(dst) else {
            self.counters.tx_no_route += 1;
            self.out.recycle(buf);
            return;
        };
        if let Some(mac) = self.neighbours.lookup(hop, self.now) {
            write_eth(&mut buf, mac, self.mac);
            self.out.push(buf);
            return;
        }
        match self.neighbours.enqueue(hop, buf, self.now) {
            Enqueued::Queued { ask } => {
                if ask {
                    self.send_arp(ArpOperation::Request, hop, EthernetAddress::BROADCAST);
                }
            }
            Enqueued::Full(buf) => {
                self.counters.tx_arp_queue_full += 1;
                self.out.recycle(buf);
            }
        }
    }

    /// Sends frames that were waiting for `mac`.
    pub(crate) fn release(&mut self, frames: Vec<Vec<u8>>, mac: MacAddr) {
        for mut f in frames {
            write_eth(&mut f, mac, self.mac);
            self.out.push(f);
        }
    }

    /// Builds and sends an IPv4 packet: header from `repr`, payload written by `fill`
    /// (`repr.payload_len` bytes); a TCP segment's checksums finished as `tx_checksum`
    /// says.
    pub(crate) fn send_ip_with(&mut self, repr: &Ipv4Repr, fill: impl FnOnce(&mut [u8])) {
        let mut buf = self.out.take_buf();
        buf.resize(ETH_HDR + repr.buffer_len() + repr.payload_len, 0);
        let mut ip = Ipv4Packet::new_unchecked(&mut buf[ETH_HDR..]);
        repr.emit(&mut ip, &ChecksumCapabilities::default());
        fill(ip.payload_mut());
        self.tx_checksum.finish(&mut buf[ETH_HDR..]);
        self.send_ipv4(buf);
    }

    /// Sends an ARP request for `target` (broadcast) or a reply to it.
    pub(crate) fn send_arp(&mut self, op: ArpOperation, target: Ipv4Addr, target_mac: MacAddr) {
        let src = self
            .addrs
            .iter()
            .find(|a| a.contains(target))
            .or(self.addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr);
        self.send_arp_from(op, src, target, target_mac);
    }

    pub(crate) fn send_arp_from(
        &mut self,
        op: ArpOperation,
        src: Ipv4Addr,
        target: Ipv4Addr,
        target_mac: MacAddr,
    ) {
        let repr = ArpRepr::EthernetIpv4 {
            operation: op,
            source_hardware_addr: self.mac,
            source_protocol_addr: src,
            target_hardware_addr: if op == ArpOperation::Request {
                EthernetAddress([0; 6])
            } else {
                target_mac
            },
            target_protocol_addr: target,
        };
        let mut buf = self.out.take_buf();
        buf.resize(ETH_HDR + repr.buffer_len(), 0);
        let eth = EthernetRepr {
            src_addr: self.mac,
            dst_addr: target_mac,
            ethertype: EthernetProtocol::Arp,
        };
        let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
        eth.emit(&mut frame);
        repr.emit(&mut ArpPacket::new_unchecked(frame.payload_mut()));
        if op == ArpOperation::Request {
            self.counters.arp_requests_sent += 1;
        } else {
            self.counters.arp_replies_sent += 1;
        }
        self.out.push(buf);
    }
}

fn write_eth(buf: &mut [u8], dst: MacAddr, src: MacAddr) {
    if buf.len() < ETH_HDR {
        return;
    }
    let eth = EthernetRepr {
        src_addr: src,
        dst_addr: dst,
        ethertype: EthernetProtocol::Ipv4,
    };
    eth.emit(&mut EthernetFrame::new_unchecked(&mut buf[..]));
}

/// Capabilities of the IP-level device smoltcp sees. The stack validates IPv4 and TCP
/// checksums itself before handing a packet over, so smoltcp at most computes them (as
/// `cs` says).
pub(crate) fn ip_caps(mtu: usize, cs: TxChecksum) -> DeviceCapabilities {
    let mut caps = DeviceCapabilities::default();
    caps.medium = Medium::Ip;
    caps.max_transmission_unit = mtu;
    caps.max_burst_size = None;
    caps.checksum = cs.smoltcp_caps();
    caps
}

/// The device one connection's `SocketSet` is polled through: it yields at most the one
/// packet it was built with (so no other connection's packet can reach this socket set and
/// be answered with a RST), and routes what smoltcp sends through [`Egress`], translated to
/// the wire's sequence space (see [`Xlate`]). With a `sink`, a frame for a resolved
/// neighbour is written straight into the NIC's buffer (nothing is queued then).
pub(crate) struct FlowDevice<'a, 's> {
    pub(crate) rx: Option<&'a [u8]>,
    pub(crate) eg: &'a mut Egress,
    pub(crate) x: &'a mut Xlate,
    pub(crate) mtu: usize,
    /// The tail-loss probe's allowance (`None`: no probes).
    pub(crate) probe: Option<Duration>,
    /// Where frames go in place, and the peer they go to.
    pub(crate) sink: Option<(&'a mut FrameSink<'s>, Ipv4Addr)>,
}

impl<'a> FlowDevice<'a, '_> {
    /// A device that gives the flow's interface `packet` (once) and queues what the socket
    /// answers: no tail-loss probe, no in-place sink.
    pub(crate) fn receiving(
        packet: &'a [u8],
        eg: &'a mut Egress,
        x: &'a mut Xlate,
        mtu: usize,
    ) -> Self {
        Self {
            rx: Some(packet),
            eg,
            x,
            mtu,
            probe: None,
            sink: None,
        }
    }
}

impl<'s> phy::Device for FlowDevice<'_, 's> {
    type RxToken<'b>
        = PacketRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PacketTx<'b, 's>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(PacketRx<'_>, PacketTx<'_, 's>)> {
        let packet = self.rx.take()?;
        Some((
            PacketRx(packet),
            PacketTx {
                eg: self.eg,
                x: self.x,
                probe: self.probe,
                sink: self.sink.as_mut().map(|(s, ip)| (&mut **s, *ip)),
            },
        ))
    }

    fn transmit(&mut self, _now: Instant) -> Option<PacketTx<'_, 's>> {
        if self.eg.out.is_full() {
            return None;
        }
        Some(PacketTx {
            eg: self.eg,
            x: self.x,
            probe: self.probe,
            sink: self.sink.as_mut().map(|(s, ip)| (&mut **s, *ip)),
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ip_caps(self.mtu, self.eg.tx_checksum)
    }
}

/// A device that never has a packet: used to create interfaces (which keep its
/// capabilities).
pub(crate) struct NullDevice {
    pub(crate) mtu: usize,
    pub(crate) tx_checksum: TxChecksum,
}

impl phy::Device for NullDevice {
    type RxToken<'b>
        = PacketRx<'b>
    where
        Self: 'b;
    type TxToken<'b>
        = PacketTx<'b, 'b>
    where
        Self: 'b;

    fn receive(&mut self, _now: Instant) -> Option<(PacketRx<'_>, PacketTx<'_, '_>)> {
        None
    }

    fn transmit(&mut self, _now: Instant) -> Option<PacketTx<'_, '_>> {
        None
    }

    fn capabilities(&self) -> DeviceCapabilities {
        ip_caps(self.mtu, self.tx_checksum)
    }
}

/// One received IP packet.
pub(crate) struct PacketRx<'a>(&'a [u8]);

impl phy::RxToken for PacketRx<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        f(self.0)
    }
}

/// Room for one IP packet on its way out.
pub(crate) struct PacketTx<'a, 's> {
    eg: &'a mut Egress,
    x: &'a mut Xlate,
    probe: Option<Duration>,
    sink: Option<(&'a mut FrameSink<'s>, Ipv4Addr)>,
}

impl PacketTx<'_, '_> {
    /// Records a segment that left (or was captured): counters, the tail-loss probe.
    fn sent(&mut self, sent: Option<Sent>) {
        if let Some(sent) = sent {
            let c = &mut self.eg.counters;
            c.tcp_segments_out += 1;
            c.tcp_retransmits += u64::from(sent.retransmit);
            if let Some(min) = self.probe {
                self.x.probe.on_sent(sent, self.x.snd_max, self.eg.now, min);
            }
        }
    }
}

impl phy::TxToken for PacketTx<'_, '_> {
    fn consume<R, F>(mut self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        let mut f = Some(f);
        // In place: into the NIC's buffer, when nothing is queued ahead of it (order) and
        // the next hop's address is known.
        if let Some((sink, remote)) = self.sink.take()
            && !self.x.capture
            && self.eg.out.len() == 0
            && let Some(mac) = self.eg.next_hop_mac(remote)
        {
            let (src_mac, x, cs) = (self.eg.mac, &mut *self.x, self.eg.tx_checksum);
            let mut done = None;
            sink(&mut |buf: &mut [u8]| {
                let Some(frame) = buf.get_mut(..ETH_HDR + len) else {
                    return 0;
                };
                let Some(f) = f.take() else { return 0 };
                write_eth(frame, mac, src_mac);
                let r = f(&mut frame[ETH_HDR..]);
                let sent = x.on_egress(&mut frame[ETH_HDR..], cs);
                cs.finish(&mut frame[ETH_HDR..]);
                done = Some((r, sent));
                ETH_HDR + len
            });
            if let Some((r, sent)) = done {
                self.eg.counters.tx_frames += 1;
                self.eg.counters.tx_bytes += (ETH_HDR + len) as u64;
                self.sent(sent);
                return r;
            }
        }
        // Queued: the stack's own buffer.
        let mut buf = self.eg.out.take_buf();
        buf.resize(ETH_HDR + len, 0);
        let r = match f.take() {
            Some(f) => f(&mut buf[ETH_HDR..]),
            None => unreachable!("the frame was written only if the sink took it"),
        };
        let cs = self.eg.tx_checksum;
        let sent = self.x.on_egress(&mut buf[ETH_HDR..], cs);
        cs.finish(&mut buf[ETH_HDR..]);
        if self.x.capture {
            self.eg.out.recycle(buf);
            return r;
        }
        self.sent(sent);
        self.eg.send_ipv4(buf);
        r
    }
}
