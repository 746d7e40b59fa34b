//! Two stacks on the wire backend: ARP, ping, TCP echo, RST on a closed port.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use megatcp_stack::{ConnectOpts, Duration, Event, RecvError, TcpState};
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    ArpOperation, ArpPacket, ArpRepr, EthernetFrame, EthernetProtocol, EthernetRepr, Icmpv4Packet,
    Icmpv4Repr, IpProtocol, Ipv4Packet, Ipv4Repr,
};

fn echo_request_frame(ident: u16, seq_no: u16, data: &[u8]) -> Vec<u8> {
    let icmp = Icmpv4Repr::EchoRequest {
        ident,
        seq_no,
        data,
    };
    let ip = Ipv4Repr {
        src_addr: A_IP,
        dst_addr: B_IP,
        next_header: IpProtocol::Icmp,
        payload_len: icmp.buffer_len(),
        hop_limit: 64,
    };
    frame_a_to_b(&ip, |b| {
        icmp.emit(
            &mut Icmpv4Packet::new_unchecked(b),
            &ChecksumCapabilities::default(),
        )
    })
}

fn drain(stack: &mut megatcp_stack::Stack) -> Vec<Vec<u8>> {
    let mut out = Vec::new();
    stack.transmit(&mut |f| {
        out.push(f.to_vec());
        true
    });
    out
}

#[test]
fn ping_is_answered_after_arp_resolves_the_sender() {
    let net = Net::new();
    let mut b = net.b.stack;
    let now = net.now;
    b.receive(now, &echo_request_frame(0x1234, 7, b"hello ping"));
    b.poll(now);
    // B does not know A's MAC yet: the reply waits and B asks.
    let out = drain(&mut b);
    assert_eq!(out.len(), 1, "only the ARP request leaves");
    let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.ethertype(), EthernetProtocol::Arp);
    assert!(eth.dst_addr().is_broadcast());
    let req = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    let ArpRepr::EthernetIpv4 {
        operation,
        target_protocol_addr,
        source_protocol_addr,
        ..
    } = req
    else {
        unreachable!()
    };
    assert_eq!(operation, ArpOperation::Request);
    assert_eq!(target_protocol_addr, A_IP);
    assert_eq!(source_protocol_addr, B_IP);

    // A answers; the queued echo reply is released.
    let reply = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Reply,
        source_hardware_addr: A_MAC,
        source_protocol_addr: A_IP,
        target_hardware_addr: B_MAC,
        target_protocol_addr: B_IP,
    };
    let mut f = vec![0u8; 14 + reply.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    EthernetRepr {
        src_addr: A_MAC,
        dst_addr: B_MAC,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    reply.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    b.receive(now, &f);
    b.poll(now);
    let out = drain(&mut b);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), A_MAC);
    let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
    assert!(ip.verify_checksum());
    assert_eq!(ip.src_addr(), B_IP);
    assert_eq!(ip.dst_addr(), A_IP);
    let icmp = Icmpv4Packet::new_checked(ip.payload()).unwrap();
    let repr = Icmpv4Repr::parse(&icmp, &ChecksumCapabilities::default()).unwrap();
    assert_eq!(
        repr,
        Icmpv4Repr::EchoReply {
            ident: 0x1234,
            seq_no: 7,
            data: b"hello ping"
        }
    );
    let c = b.counters();
    assert_eq!(c.icmp_echo_replies, 1);
    assert_eq!(c.arp_requests_sent, 1);

    // A second ping needs no ARP.
    b.receive(now, &echo_request_frame(0x1234, 8, b"again"));
    b.poll(now);
    assert_eq!(drain(&mut b).len(), 1);
    assert_eq!(b.counters().arp_requests_sent, 1);
}

#[test]
fn arp_requests_for_us_are_answered_and_teach_us_the_sender() {
    let net = Net::new();
    let mut b = net.b.stack;
    let req = ArpRepr::EthernetIpv4 {
        operation: ArpOperation::Request,
        source_hardware_addr: A_MAC,
        source_protocol_addr: A_IP,
        target_hardware_addr: smoltcp::wire::EthernetAddress([0; 6]),
        target_protocol_addr: B_IP,
    };
    let mut f = vec![0u8; 14 + req.buffer_len()];
    let mut eth = EthernetFrame::new_unchecked(&mut f[..]);
    EthernetRepr {
        src_addr: A_MAC,
        dst_addr: smoltcp::wire::EthernetAddress::BROADCAST,
        ethertype: EthernetProtocol::Arp,
    }
    .emit(&mut eth);
    req.emit(&mut ArpPacket::new_unchecked(eth.payload_mut()));
    b.receive(net.now, &f);
    let out = drain(&mut b);
    assert_eq!(out.len(), 1);
    let eth = EthernetFrame::new_checked(&out[0][..]).unwrap();
    assert_eq!(eth.dst_addr(), A_MAC);
    let rep = ArpRepr::parse(&ArpPacket::new_checked(eth.payload()).unwrap()).unwrap();
    assert_eq!(
        rep,
        ArpRepr::EthernetIpv4 {
            operation: ArpOperation::Reply,
            source_hardware_addr: B_MAC,
            source_protocol_addr: B_IP,
            target_hardware_addr: A_MAC,
            target_protocol_addr: A_IP,
        }
    );
    // The sender was learned: a ping from A is answered without an ARP round.
    b.receive(net.now, &echo_request_frame(1, 1, b"x"));
    b.poll(net.now);
    assert_eq!(drain(&mut b).len(), 1);
    assert_eq!(b.counters().arp_requests_sent, 0);
}

#[test]
fn tcp_echo_between_two_stacks() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 7), None).unwrap();
    let conn = net.connect(lid, 7);
    // ARP: A asked once, B learned A from the request and never asked.
    assert_eq!(net.a.stack.counters().arp_requests_sent, 1);
    assert_eq!(net.b.stack.counters().arp_replies_sent, 1);
    assert_eq!(net.b.stack.counters().arp_requests_sent, 0);

    let (server, peer) = net.b.stack.accept(lid).unwrap();
    assert_eq!(peer, net.a.stack.local_addr(conn).unwrap());
    assert_eq!(net.b.stack.state(server).unwrap(), TcpState::Established);

    let msg: Vec<u8> = (0..10_000u32).map(|i| (i * 7 + 3) as u8).collect();
    let mut sent = 0;
    let mut echoed = Vec::new();
    let mut buf = vec![0u8; 4096];
    net.run_until(Duration::from_secs(10), |n| {
        if sent < msg.len() {
            sent += n.a.stack.send(conn, &msg[sent..]).unwrap();
        }
        // Server echoes whatever it has.
        loop {
            let k = n.b.stack.recv(server, &mut buf).unwrap();
            if k == 0 {
                break;
            }
            let mut off = 0;
            while off < k {
                let w = n.b.stack.send(server, &buf[off..k]).unwrap();
                assert!(w > 0, "server send buffer stuck");
                off += w;
            }
        }
        loop {
            let k = n.a.stack.recv(conn, &mut buf).unwrap();
            if k == 0 {
                break;
            }
            echoed.extend_from_slice(&buf[..k]);
        }
        echoed.len() == msg.len()
    });
    assert_eq!(echoed, msg);

    // Orderly close: client closes, server sees end of stream and closes too.
    net.a.stack.close(conn).unwrap();
    net.run_until(Duration::from_secs(5), |n| {
        n.b.events.contains(&Event::PeerClosed { conn: server })
    });
    assert_eq!(net.b.stack.recv(server, &mut buf), Err(RecvError::Finished));
    net.b.stack.close(server).unwrap();
    net.run_until(Duration::from_secs(5), |n| {
        n.a.events.contains(&Event::Closed { conn })
            && n.b.events.contains(&Event::Closed { conn: server })
    });
    // After TIME-WAIT both flow tables are empty.
    net.run_for(Duration::from_secs(11));
    assert_eq!(net.a.stack.stats().flows, 0);
    assert_eq!(net.b.stack.stats().flows, 0);
    assert_eq!(net.a.stack.counters().conns_closed, 1);
    assert_eq!(net.b.stack.counters().conns_closed, 1);
    assert_eq!(net.a.stack.counters().drops.total(), 0);
    assert_eq!(net.b.stack.counters().drops.total(), 0);
    // Stale handles are refused.
    assert!(net.a.stack.send(conn, b"x").is_err());
}

#[test]
fn connect_to_a_closed_port_is_refused_with_rst() {
    let mut net = Net::new();
    let conn = net
        .a
        .stack
        .connect(net.now, sa(B_IP, 9), ConnectOpts::default())
        .unwrap();
    net.run_until(Duration::from_secs(5), |n| {
        n.a.events.contains(&Event::ConnectFailed { conn })
    });
    let b = net.b.stack.counters();
    assert_eq!(b.tcp_rst_sent, 1);
    assert_eq!(b.drops.tcp_no_socket, 1);
    assert_eq!(net.a.stack.counters().conns_connect_failed, 1);
    assert_eq!(net.a.stack.stats().flows, 0);
    assert!(net.a.stack.state(conn).is_err());
}
