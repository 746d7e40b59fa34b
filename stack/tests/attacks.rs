//! Hostile and off-path peers, as raw frames: SYN floods against a full backlog (SYN
//! cookies), forged cookie ACKs, RSTs and SYNs inside the window (RFC 5961 challenge ACKs),
//! old timestamps (PAWS).
#![allow(clippy::unwrap_used)]

mod common;

use common::raw::Seg;
use common::*;
use megatcp_stack::{ConnId, ConnectOpts, Duration, Event, TcpState};
use smoltcp::wire::TcpControl;

const MS: Duration = Duration::from_millis(1);

/// An established connection from the raw peer (port `port`, timestamps on) to B:80, with
/// the server side accepted. Returns (server id, our next seq, B's next seq, B's last TSval).
fn establish(solo: &mut Solo, port: u16) -> (ConnId, u32, u32, u32) {
    let lid = match solo.host.stack.listen(sa(B_IP, 80), None) {
        Ok(l) => l,
        Err(_) => panic!("listen"),
    };
    let (me, srv) = (sa(A_IP, port), sa(B_IP, 80));
    let mut syn = Seg::new(me, srv, TcpControl::Syn, 10_000).ts(1000, 0);
    syn.mss = Some(1460);
    let out = solo.exchange(&syn, MS);
    let synack = out.iter().find(|s| s.is_syn_ack()).unwrap().clone();
    let ts_b = synack.ts.unwrap().0;
    let ack = Seg::new(me, srv, TcpControl::None, 10_001)
        .ack(synack.seq + 1)
        .ts(1001, ts_b);
    solo.exchange(&ack, MS);
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    (conn, 10_001, synack.seq + 1, ts_b)
}

#[test]
fn rst_inside_the_window_gets_a_challenge_ack_and_the_connection_lives() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 21));
    let (conn, seq, b_seq, ts_b) = establish(&mut solo, 40_100);
    let (me, srv) = (sa(A_IP, 40_100), sa(B_IP, 80));
    // 1,000 bytes inside the window, not at its start: a blind attacker's guess.
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Rst, seq + 1000), MS);
    assert_eq!(out.len(), 1, "one challenge ACK: {out:?}");
    assert!(out[0].is_pure_ack());
    assert_eq!((out[0].seq, out[0].ack), (b_seq, Some(seq)));
    assert_eq!(solo.host.stack.state(conn).unwrap(), TcpState::Established);
    // Outside the window: silently dropped.
    assert!(
        solo.exchange(
            &Seg::new(me, srv, TcpControl::Rst, seq.wrapping_add(1 << 30)),
            MS
        )
        .is_empty()
    );
    // A SYN on the connection: a challenge ACK too.
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 77).ts(1002, ts_b), MS);
    assert_eq!(out.len(), 1);
    assert!(out[0].is_pure_ack() && out[0].ack == Some(seq));
    let c = solo.host.stack.counters();
    assert_eq!(
        (
            c.drops.tcp_rst_challenged,
            c.drops.tcp_rst_out_of_window,
            c.drops.tcp_syn_challenged
        ),
        (1, 1, 1)
    );
    assert_eq!(c.challenge_acks_sent, 2);
    // The connection still carries data both ways.
    let data = Seg::new(me, srv, TcpControl::Psh, seq)
        .ack(b_seq)
        .ts(1003, ts_b)
        .data(b"still here");
    solo.exchange(&data, MS);
    let mut buf = [0u8; 32];
    assert_eq!(solo.host.stack.recv(conn, &mut buf).unwrap(), 10);
    assert_eq!(solo.host.stack.send(conn, b"yes").unwrap(), 3);
    let out = solo.run(MS * 5);
    assert!(out.iter().any(|s| s.payload == b"yes"));
    // An RST at exactly the next expected sequence number resets it.
    solo.exchange(&Seg::new(me, srv, TcpControl::Rst, seq + 10), MS);
    assert!(solo.host.events.contains(&Event::Reset { conn }));
}

#[test]
fn challenge_acks_are_rate_limited() {
    let mut cfg = config(B_MAC, B_IP, 22);
    cfg.challenge_ack_limit = 100;
    let mut solo = Solo::new(cfg);
    let (conn, seq, _, _) = establish(&mut solo, 40_101);
    let (me, srv) = (sa(A_IP, 40_101), sa(B_IP, 80));
    let mut answers = 0;
    for i in 0..1000u32 {
        solo.raw
            .send(&Seg::new(me, srv, TcpControl::Rst, seq + 1 + i));
        if i % 50 == 49 {
            answers += solo.run(Duration::from_micros(100)).len();
        }
    }
    answers += solo.run(MS).len();
    assert_eq!(answers, 100);
    let c = solo.host.stack.counters();
    assert_eq!(
        (c.challenge_acks_sent, c.challenge_acks_limited),
        (100, 900)
    );
    assert_eq!(c.drops.tcp_rst_challenged, 1000);
    assert_eq!(solo.host.stack.state(conn).unwrap(), TcpState::Established);
}

#[test]
fn data_with_an_old_timestamp_is_refused_and_acknowledged() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 23));
    let (conn, seq, b_seq, ts_b) = establish(&mut solo, 40_102);
    let (me, srv) = (sa(A_IP, 40_102), sa(B_IP, 80));
    let fresh = Seg::new(me, srv, TcpControl::Psh, seq)
        .ack(b_seq)
        .ts(5000, ts_b)
        .data(b"new");
    solo.exchange(&fresh, MS);
    // The same sequence space again, with an older timestamp (a wrapped old duplicate).
    let stale = Seg::new(me, srv, TcpControl::Psh, seq + 3)
        .ack(b_seq)
        .ts(4000, ts_b)
        .data(b"old");
    let out = solo.exchange(&stale, MS);
    assert_eq!(out.len(), 1);
    assert!(out[0].is_pure_ack());
    assert_eq!(out[0].ack, Some(seq + 3), "the old data was not taken");
    assert_eq!(solo.host.stack.counters().drops.tcp_paws, 1);
    assert_eq!(solo.host.stack.recv_queue(conn).unwrap(), 3);
}

#[test]
fn with_the_backlog_full_of_half_open_connections_new_clients_still_connect() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 80), Some(64)).unwrap();
    // A flood from one unanswering address: 5,000 SYNs that will never be ACKed.
    let spoofed = std::net::Ipv4Addr::new(10, 77, 0, 99);
    for i in 0..5000u32 {
        let mut syn = Seg::new(
            sa(spoofed, 1024 + (i % 60_000) as u16),
            sa(B_IP, 80),
            TcpControl::Syn,
            i.wrapping_mul(2_654_435_761),
        )
        .ts(i, 0);
        syn.mss = Some(1460);
        let f = syn.frame(A_MAC, B_MAC);
        megatcp_nic::tx_copy(&mut net.a.nic, &f).unwrap();
        if i % 64 == 63 {
            megatcp_nic::NicQueue::tx_flush(&mut net.a.nic);
            net.b.step(net.now);
            net.now += Duration::from_micros(10);
        }
    }
    megatcp_nic::NicQueue::tx_flush(&mut net.a.nic);
    net.b.step(net.now);
    // Drop what B answered to the flood (it reaches A's NIC, not a real host).
    megatcp_nic::NicQueue::rx_burst(&mut net.a.nic, usize::MAX, &mut |_| {});
    let c = net.b.stack.counters();
    assert_eq!(
        net.b.stack.stats().flows,
        64,
        "the backlog is full of half-open ones"
    );
    assert_eq!(c.syn_cookies_sent, 5000 - 64);
    // Real clients connect at once and exchange data.
    let (clients, servers) = net.open_many(200, lid, 80);
    for (&c, &s) in clients.iter().zip(&servers) {
        assert_eq!(net.a.stack.send(c, b"ping").unwrap(), 4);
        net.run_until(Duration::from_secs(1), |n| {
            n.b.stack.recv_queue(s).unwrap() == 4
        });
    }
    let b = net.b.stack.counters();
    assert_eq!(b.syn_cookies_accepted, 200);
    assert_eq!(net.a.stack.counters().conns_connect_failed, 0);
    // The half-open ones are given up after the handshake timeout, silently.
    net.run_for(Duration::from_secs(11));
    let b = net.b.stack.counters();
    assert_eq!(b.handshake_timeouts, 64);
    assert_eq!(b.conns_embryonic_dropped, 64);
    assert_eq!(net.b.stack.stats().flows, 200);
}

#[test]
fn a_forged_cookie_ack_is_dropped_and_counted() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 24));
    let lid = solo.host.stack.listen(sa(B_IP, 80), Some(1)).unwrap();
    let srv = sa(B_IP, 80);
    // One half-open connection fills the backlog; the next SYN gets a cookie.
    solo.exchange(&Seg::new(sa(A_IP, 50_000), srv, TcpControl::Syn, 1), MS);
    let me = sa(A_IP, 50_001);
    let syn = Seg::linux_syn(me, srv, 5000, 10);
    let out = solo.exchange(&syn, MS);
    let cookie = out
        .iter()
        .find(|s| s.is_syn_ack() && s.dst == me)
        .unwrap()
        .clone();
    assert_eq!(solo.host.stack.counters().syn_cookies_sent, 1);
    assert_eq!(cookie.mss, Some(1460));
    assert!(
        cookie.sack_permitted && cookie.wscale.is_some(),
        "kept in the timestamp"
    );
    let ts_b = cookie.ts.unwrap().0;
    // Forged: a blind attacker's ACK numbers. None makes a connection; none gets a RST.
    for guess in [cookie.seq, cookie.seq + 2, cookie.seq ^ 0x0100_0000, 12345] {
        let forged = Seg::new(me, srv, TcpControl::None, 5001)
            .ack(guess)
            .ts(11, ts_b);
        assert!(solo.exchange(&forged, MS).is_empty());
    }
    // The right ISN from another port (another 4-tuple): refused too.
    let other = Seg::new(sa(A_IP, 50_002), srv, TcpControl::None, 5001)
        .ack(cookie.seq + 1)
        .ts(11, ts_b);
    assert!(solo.exchange(&other, MS).is_empty());
    let c = solo.host.stack.counters();
    assert_eq!(c.drops.tcp_syn_cookie_bad, 5);
    assert_eq!(c.syn_cookies_accepted, 0);
    assert_eq!(solo.host.stack.stats().flows, 1);
    // The real ACK makes the connection, with the options the cookie carried.
    let ok = Seg::new(me, srv, TcpControl::Psh, 5001)
        .ack(cookie.seq + 1)
        .ts(12, ts_b)
        .data(b"hi");
    let out = solo.exchange(&ok, MS);
    assert_eq!(solo.host.stack.counters().syn_cookies_accepted, 1);
    assert!(out.iter().all(|s| s.control != TcpControl::Rst));
    // The half-open connection never completed: the cookie one is the only one queued.
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    assert!(solo.host.stack.accept(lid).is_none());
    let mut buf = [0u8; 8];
    assert_eq!(solo.host.stack.recv(conn, &mut buf).unwrap(), 2);
    // Its segments use the cookie's sequence space and the client's window scale.
    assert_eq!(solo.host.stack.send(conn, &[7u8; 3000]).unwrap(), 3000);
    let out = solo.run(MS * 5);
    let data: Vec<_> = out.iter().filter(|s| !s.payload.is_empty()).collect();
    assert_eq!(data[0].seq, cookie.seq + 1);
    assert!(data.iter().all(|s| s.payload.len() <= 1460 - 12));
    assert!(data.iter().all(|s| s.ts.is_some()));
}

#[test]
fn two_stacks_alike_but_for_the_secret_choose_different_isns_and_ports() {
    let mut seen = Vec::new();
    for secret in [[1u8; 16], [2u8; 16]] {
        let mut cfg = config(B_MAC, B_IP, 25);
        cfg.secret = secret;
        let mut solo = Solo::new(cfg);
        solo.raw.announce(B_IP);
        solo.run(MS);
        solo.host
            .stack
            .connect(solo.now, sa(A_IP, 80), ConnectOpts::default())
            .unwrap();
        let syns = solo.run(MS);
        let syn = syns
            .into_iter()
            .find(|s| s.control == TcpControl::Syn)
            .unwrap();
        seen.push((syn.seq, syn.src.port()));
    }
    assert_ne!(seen[0].0, seen[1].0, "ISNs");
    assert_ne!(seen[0].1, seen[1].1, "ephemeral ports");
}
