//! TIME-WAIT as a compact record: what it answers (checked on a pcap capture of the
//! stack's NIC), and port reuse by a client that closes first.
#![allow(clippy::unwrap_used)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::raw::Seg;
use common::*;
use megatcp_nic::pcap::PcapQueue;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{ConnectOpts, Duration, Event, TcpState};
use smoltcp::wire::TcpControl;

const MS: Duration = Duration::from_millis(1);

fn pcap_path(name: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("{name}-{}.pcap", std::process::id()))
}

/// The TCP segments of a pcap file the stack's NIC wrote, in order.
fn read_pcap(path: &Path) -> Vec<Seg> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..4], &0xa1b2_c3d4u32.to_le_bytes(), "pcap magic");
    let mut at = 24;
    let mut segs = Vec::new();
    while at + 16 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()) as usize;
        let frame = &bytes[at + 16..at + 16 + len];
        segs.extend(Seg::parse(frame));
        at += 16 + len;
    }
    assert_eq!(at, bytes.len(), "pcap ends on a record boundary");
    segs
}

/// Runs tshark over the capture (when installed: CI has it): it must decode every frame
/// as TCP; returns the flags it shows per frame.
fn tshark_flags(path: &Path) -> Option<Vec<String>> {
    let out = Command::new("tshark")
        .args([
            "-r",
            path.to_str().unwrap(),
            "-T",
            "fields",
            "-e",
            "tcp.flags.str",
        ])
        .output()
        .ok()?;
    assert!(
        out.status.success(),
        "tshark: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    Some(
        String::from_utf8_lossy(&out.stdout)
            .lines()
            .map(|l| l.trim().to_string())
            .collect(),
    )
}

#[test]
fn a_server_that_closes_first_keeps_a_record_that_answers_like_time_wait() {
    let path = pcap_path("time-wait");
    let (mut qa, mut qb) = wire::pair(WireConfig::default());
    let q = PcapQueue::create(qb.remove(0), &path).unwrap();
    let mut solo: Solo<PcapQueue<WireQueue>> =
        Solo::with_queue(config(B_MAC, B_IP, 7), q, qa.remove(0));
    let lid = solo.host.stack.listen(sa(B_IP, 80), None).unwrap();
    let (me, srv) = (sa(A_IP, 40_000), sa(B_IP, 80));

    // Handshake with timestamps, window scaling and SACK, as Linux opens.
    let syn = Seg::linux_syn(me, srv, 1000, 100);
    let out = solo.exchange(&syn, MS);
    let synack = out.iter().find(|s| s.is_syn_ack()).unwrap().clone();
    let isn = synack.seq;
    let (ts_b, _) = synack.ts.expect("timestamps negotiated");
    let req = Seg::new(me, srv, TcpControl::Psh, 1001)
        .ack(isn + 1)
        .ts(101, ts_b)
        .data(b"GET");
    solo.exchange(&req, MS);
    // The application answers and closes first (HTTP `Connection: close`).
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(solo.host.stack.recv(conn, &mut buf).unwrap(), 3);
    assert_eq!(solo.host.stack.send(conn, b"OK").unwrap(), 2);
    solo.host.stack.close(conn).unwrap();
    let out = solo.run(MS * 5);
    let fin = out
        .iter()
        .find(|s| s.control == TcpControl::Fin)
        .expect("the server's FIN");
    let fin_end = fin.seq + fin.payload.len() as u32 + 1;
    assert_eq!(fin_end, isn + 1 + 2 + 1);
    // We acknowledge everything and send our FIN: the server ACKs it and enters TIME-WAIT.
    let our_fin = Seg::new(me, srv, TcpControl::Fin, 1004)
        .ack(fin_end)
        .ts(110, ts_b);
    let out = solo.exchange(&our_fin, MS * 5);
    let last_ack = out.last().unwrap().clone();
    assert!(last_ack.is_pure_ack());
    assert_eq!(last_ack.ack, Some(1005));
    let s = solo.host.stack.stats();
    assert_eq!(
        (s.flows, s.time_wait),
        (0, 1),
        "the socket is gone, a record stays"
    );

    // 1. A retransmitted FIN is acknowledged again, from the record.
    let out = solo.exchange(&our_fin.clone().ts(120, ts_b), MS * 5);
    assert_eq!(out.len(), 1, "{out:?}");
    assert!(out[0].is_pure_ack());
    assert_eq!((out[0].seq, out[0].ack), (fin_end, Some(1005)));
    let (tsval, tsecr) = out[0].ts.unwrap();
    assert_eq!(tsecr, 120, "echoes the peer's newest timestamp");
    assert!(tsval >= ts_b, "our clock goes on");

    // 2. An RST that is not at the record's exact sequence number (here inside what a
    // window would be) is ignored (RFC 1337): no answer, the record stays.
    let rst = Seg::new(me, srv, TcpControl::Rst, 1005 + 1000);
    assert!(solo.exchange(&rst, MS * 5).is_empty());
    assert_eq!(solo.host.stack.stats().time_wait, 1);
    assert_eq!(solo.host.stack.counters().drops.tcp_time_wait_rst, 1);

    // 3. A SYN whose timestamp is not newer is old: answered with the record's ACK.
    let old_syn = Seg::new(me, srv, TcpControl::Syn, 9000).ts(115, 0);
    let out = solo.exchange(&old_syn, MS * 5);
    assert_eq!(out.len(), 1);
    assert!(out[0].is_pure_ack() && out[0].ack == Some(1005));
    assert_eq!(solo.host.stack.stats().time_wait, 1);

    // 4. A SYN with a newer timestamp opens a new connection (RFC 6191), whose ISN starts
    // past the old connection's sequence space.
    let mut new_syn = Seg::new(me, srv, TcpControl::Syn, 500).ts(300, 0);
    new_syn.mss = Some(1460);
    let out = solo.exchange(&new_syn, MS * 5);
    let synack2 = out
        .iter()
        .find(|s| s.is_syn_ack())
        .expect("a SYN-ACK")
        .clone();
    assert_eq!(synack2.ack, Some(501));
    assert_eq!(synack2.seq, fin_end.wrapping_add(65_537));
    let s = solo.host.stack.stats();
    assert_eq!((s.flows, s.time_wait), (1, 0));
    let c = solo.host.stack.counters();
    assert_eq!(
        (
            c.tcp_time_wait_acks,
            c.tcp_time_wait_reopened,
            c.tcp_time_wait_entered
        ),
        (2, 1, 1)
    );
    // ... and it works.
    let (ts_b2, _) = synack2.ts.unwrap();
    let hello = Seg::new(me, srv, TcpControl::Psh, 501)
        .ack(synack2.seq + 1)
        .ts(301, ts_b2)
        .data(b"again");
    solo.exchange(&hello, MS);
    let (conn2, _) = solo.host.stack.accept(lid).unwrap();
    assert_eq!(solo.host.stack.recv(conn2, &mut buf).unwrap(), 5);
    assert_eq!(&buf[..5], b"again");
    assert_eq!(solo.host.stack.state(conn2).unwrap(), TcpState::Established);

    // The capture holds exactly what the peer received, in order.
    solo.host.nic.flush().unwrap();
    let captured: Vec<Seg> = read_pcap(&path)
        .into_iter()
        .filter(|s| s.src == srv)
        .collect();
    let fins = captured
        .iter()
        .filter(|s| s.control == TcpControl::Fin)
        .count();
    let rsts = captured
        .iter()
        .filter(|s| s.control == TcpControl::Rst)
        .count();
    let synacks: Vec<_> = captured.iter().filter(|s| s.is_syn_ack()).collect();
    assert_eq!((fins, rsts, synacks.len()), (1, 0, 2), "{captured:#?}");
    let reacks = captured
        .iter()
        .filter(|s| s.is_pure_ack() && s.ack == Some(1005))
        .count();
    assert_eq!(
        reacks, 3,
        "the last ACK, the re-ACK of the FIN, the answer to the old SYN"
    );
    if let Some(flags) = tshark_flags(&path) {
        assert_eq!(flags.len() as u64, solo.host.nic.records());
        assert!(
            flags.iter().all(|f| !f.is_empty()),
            "tshark decodes every frame as TCP"
        );
    }
    let _ = std::fs::remove_file(&path);
}

#[test]
fn without_timestamps_the_sequence_number_decides() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 8));
    let lid = solo.host.stack.listen(sa(B_IP, 80), None).unwrap();
    let (me, srv) = (sa(A_IP, 40_001), sa(B_IP, 80));
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 7000), MS);
    let isn = out.iter().find(|s| s.is_syn_ack()).unwrap().seq;
    assert!(out[0].ts.is_none());
    solo.exchange(&Seg::new(me, srv, TcpControl::None, 7001).ack(isn + 1), MS);
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    solo.host.stack.close(conn).unwrap();
    solo.run(MS * 5);
    solo.exchange(
        &Seg::new(me, srv, TcpControl::Fin, 7001).ack(isn + 2),
        MS * 5,
    );
    assert_eq!(solo.host.stack.stats().time_wait, 1);
    // Not beyond what was received: old.
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 7000), MS * 5);
    assert!(out.iter().all(|s| !s.is_syn_ack()) && out.len() == 1);
    // Beyond it: new.
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 9_000_000), MS * 5);
    assert!(out.iter().any(|s| s.is_syn_ack()));
    assert_eq!(solo.host.stack.counters().tcp_time_wait_reopened, 1);
}

#[test]
fn records_expire_after_the_configured_time() {
    let mut cb = config(B_MAC, B_IP, 9);
    cb.tcp.time_wait = Duration::from_secs(2);
    let mut net = Net::with_configs(config(A_MAC, A_IP, 10), cb);
    let lid = net.b.stack.listen(sa(B_IP, 80), None).unwrap();
    let (clients, servers) = net.open_many(50, lid, 80);
    for &s in &servers {
        net.b.stack.close(s).unwrap();
    }
    net.run_until(Duration::from_secs(1), |n| {
        n.a.events
            .iter()
            .filter(|e| matches!(e, Event::PeerClosed { .. }))
            .count()
            == 50
    });
    for &c in &clients {
        net.a.stack.close(c).unwrap();
    }
    net.run_until(Duration::from_secs(1), |n| {
        n.b.stack.stats().time_wait == 50 && n.a.stack.stats().flows == 0
    });
    let made = net.now;
    net.run_until(Duration::from_secs(5), |n| n.b.stack.stats().time_wait == 0);
    let lived = net.now - made;
    assert!(
        lived >= Duration::from_millis(1990) && lived <= Duration::from_millis(2100),
        "records lived {lived}"
    );
    assert_eq!(net.b.stack.counters().tcp_time_wait_expired, 50);
}

/// One client address, one server port, connections one after the other, each closed by
/// the client first (so the client holds TIME-WAIT): ports are reused long before their
/// records expire, so 100,000 connections take far less virtual time than the 16,384
/// ephemeral ports x 5 s of TIME-WAIT would allow without reuse (30 s).
#[test]
fn one_client_address_opens_100000_sequential_fin_closed_connections() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 7), None).unwrap();
    let start = net.now;
    let mut buf = [0u8; 8];
    for i in 0..100_000u32 {
        let c = net
            .a
            .stack
            .connect(net.now, sa(B_IP, 7), ConnectOpts::default())
            .unwrap_or_else(|e| panic!("connection {i}: {e}"));
        let mut server = None;
        net.run_until(Duration::from_secs(1), |n| {
            if server.is_none() {
                server = n.b.stack.accept(lid).map(|(s, _)| s);
            }
            server.is_some() && n.a.events.contains(&Event::Connected { conn: c })
        });
        let s = server.unwrap();
        assert_eq!(net.a.stack.send(c, &i.to_le_bytes()).unwrap(), 4);
        net.run_until(Duration::from_secs(1), |n| {
            n.b.stack.recv_queue(s).unwrap() == 4
        });
        assert_eq!(net.b.stack.recv(s, &mut buf).unwrap(), 4);
        assert_eq!(buf[..4], i.to_le_bytes());
        net.a.stack.close(c).unwrap();
        net.run_until(Duration::from_secs(1), |n| {
            n.b.events.contains(&Event::PeerClosed { conn: s })
        });
        net.b.stack.close(s).unwrap();
        net.run_until(Duration::from_secs(1), |n| {
            n.a.events.contains(&Event::Closed { conn: c })
                && n.b.events.contains(&Event::Closed { conn: s })
        });
        net.a.events.clear();
        net.b.events.clear();
    }
    let took = net.now - start;
    let (a, b) = (net.a.stack.counters(), net.b.stack.counters());
    eprintln!(
        "100000 connections in {took} (virtual); reused {} TIME-WAIT ports",
        a.tcp_time_wait_reused
    );
    assert!(took < Duration::from_secs(10), "took {took}");
    assert_eq!(a.conns_closed, 100_000);
    assert_eq!(b.conns_closed, 100_000);
    assert_eq!(a.conns_reset + b.conns_reset + a.conns_connect_failed, 0);
    assert!(a.tcp_time_wait_reused >= 100_000 - 16_384);
    assert_eq!(b.drops.total() + a.drops.total(), 0);
}

/// A client process that restarts (new secret: new ISNs, new timestamp offsets) and reuses
/// the ports of connections the server closed first (HTTP `Connection: close`), whose
/// records the server still holds. About half of its SYNs carry an older timestamp than the
/// record and are answered with the record's ACK; the client answers that with an RST at the
/// exact sequence number, which ends the record (as Linux does by default), and sends its SYN
/// again at once rather than after the initial RTO (200 ms): every connection opens within
/// a few round trips.
#[test]
fn a_restarted_client_opens_every_port_the_server_holds_in_time_wait() {
    const N: u16 = 64;
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 80), None).unwrap();
    let port = |i: u16| ConnectOpts {
        local_port: Some(40_000 + i),
        ..ConnectOpts::default()
    };
    // First client: the server answers and closes first; the client closes on its FIN.
    let mut clients = Vec::new();
    for i in 0..N {
        clients.push(net.a.stack.connect(net.now, sa(B_IP, 80), port(i)).unwrap());
    }
    let mut servers = Vec::new();
    net.run_until(Duration::from_secs(2), |n| {
        while let Some((s, _)) = n.b.stack.accept(lid) {
            servers.push(s);
        }
        servers.len() == usize::from(N)
    });
    for &s in &servers {
        net.b.stack.close(s).unwrap();
    }
    net.run_until(Duration::from_secs(2), |n| {
        clients
            .iter()
            .all(|&c| n.a.events.contains(&Event::PeerClosed { conn: c }))
    });
    for &c in &clients {
        net.a.stack.close(c).unwrap();
    }
    net.run_until(Duration::from_secs(2), |n| {
        n.b.stack.stats().time_wait == usize::from(N)
    });
    // The client restarts: a new stack with another secret, on the same ports, 100 ms on.
    net.run_for(Duration::from_millis(100));
    let fresh = megatcp_stack::Stack::new(config(A_MAC, A_IP, 99), net.now).unwrap();
    net.a.stack = fresh;
    net.a.events.clear();
    let start = net.now;
    let again: Vec<_> = (0..N)
        .map(|i| net.a.stack.connect(net.now, sa(B_IP, 80), port(i)).unwrap())
        .collect();
    net.run_until(Duration::from_secs(3), |n| {
        again
            .iter()
            .all(|&c| n.a.events.contains(&Event::Connected { conn: c }))
    });
    let took = net.now - start;
    let (a, b) = (net.a.stack.counters(), net.b.stack.counters());
    eprintln!(
        "{N} connections opened in {took}: {} reopened from TIME-WAIT by the SYN, {} by the \
         client's RST ({} SYNs started over)",
        b.tcp_time_wait_reopened, b.tcp_time_wait_reset, a.tcp_syn_restarted
    );
    assert_eq!(a.conns_connect_failed, 0);
    assert_eq!(
        b.tcp_time_wait_reopened + b.tcp_time_wait_reset,
        u64::from(N)
    );
    assert_eq!(a.tcp_syn_restarted, b.tcp_time_wait_reset);
    assert!(took < Duration::from_millis(20), "took {took}");
}
