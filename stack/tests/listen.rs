//! Listening with a real backlog: thousands of simultaneous SYNs on one port.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;
use megatcp_stack::{ConnId, ConnectOpts, Duration, Event};

/// Opens `n` connections from A to B:80 at once (all SYNs leave in one burst).
fn burst(net: &mut Net, n: usize) -> Vec<ConnId> {
    (0..n)
        .map(|_| {
            net.a
                .stack
                .connect(net.now, sa(B_IP, 80), ConnectOpts::default())
                .unwrap()
        })
        .collect()
}

/// Sends one distinct message on each client connection, echoes on the server, checks.
fn echo_each(net: &mut Net, pairs: &[(ConnId, ConnId)]) {
    for (i, &(c, _)) in pairs.iter().enumerate() {
        let msg = format!("hello from connection {i}");
        assert_eq!(net.a.stack.send(c, msg.as_bytes()).unwrap(), msg.len());
    }
    let mut got = vec![Vec::new(); pairs.len()];
    let mut buf = [0u8; 256];
    net.run_until(Duration::from_secs(10), |n| {
        for &(_, s) in pairs {
            let k = n.b.stack.recv(s, &mut buf).unwrap();
            if k > 0 {
                assert_eq!(n.b.stack.send(s, &buf[..k]).unwrap(), k);
            }
        }
        let mut done = true;
        for (i, &(c, _)) in pairs.iter().enumerate() {
            let k = n.a.stack.recv(c, &mut buf).unwrap();
            got[i].extend_from_slice(&buf[..k]);
            done &= got[i].len() == format!("hello from connection {i}").len();
        }
        done
    });
    for (i, g) in got.iter().enumerate() {
        assert_eq!(g, format!("hello from connection {i}").as_bytes());
    }
}

/// Pairs each accepted server connection with its client connection (by address).
fn pair_up(net: &Net, clients: &[ConnId], servers: &[ConnId]) -> Vec<(ConnId, ConnId)> {
    let by_port: std::collections::HashMap<_, _> = clients
        .iter()
        .map(|&c| (net.a.stack.local_addr(c).unwrap(), c))
        .collect();
    servers
        .iter()
        .map(|&s| (by_port[&net.b.stack.peer_addr(s).unwrap()], s))
        .collect()
}

#[test]
fn two_thousand_simultaneous_syns_are_all_accepted_with_the_default_backlog() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 80), None).unwrap();
    // Resolve ARP first (with one connection), so that the burst is about the backlog, not
    // about the ARP queue (which holds a bounded number of packets per neighbour).
    let first = burst(&mut net, 1);
    net.run_until(Duration::from_secs(5), |n| {
        n.b.stack.accept_queue_len(lid) == 1
    });
    let (first_s, _) = net.b.stack.accept(lid).unwrap();
    net.a.events.clear();
    let clients = burst(&mut net, 2000);
    // The application does not accept until every connection is established: all 2000 wait
    // in the accept queue (default backlog 4096).
    net.run_until(Duration::from_secs(5), |n| {
        n.b.stack.accept_queue_len(lid) == 2000
    });
    let b = net.b.stack.counters();
    assert_eq!(b.drops.tcp_backlog_full, 0);
    assert_eq!(b.conns_accepted, 2001);
    let mut servers = Vec::new();
    while let Some((s, _)) = net.b.stack.accept(lid) {
        servers.push(s);
    }
    assert_eq!(servers.len(), 2000);
    net.run_until(Duration::from_secs(5), |n| {
        n.a.events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
            == 2000
    });
    let mut pairs = pair_up(&net, &clients, &servers);
    pairs.push((first[0], first_s));
    echo_each(&mut net, &pairs);
    assert_eq!(net.a.stack.counters().tcp_retransmits, 0);
}

#[test]
fn a_full_backlog_answers_with_syn_cookies_and_every_client_gets_in() {
    let mut net = Net::new();
    let lid = net.b.stack.listen(sa(B_IP, 80), Some(100)).unwrap();
    // One established connection before the flood: it must keep working.
    let early_c = burst(&mut net, 1)[0];
    net.run_until(Duration::from_secs(5), |n| {
        n.b.stack.accept_queue_len(lid) == 1
    });
    let (early_s, _) = net.b.stack.accept(lid).unwrap();

    let clients = burst(&mut net, 2000);
    // Less than the SYN retransmission timeout: only the first burst counts.
    net.run_for(Duration::from_millis(150));
    let b = net.b.stack.counters();
    // 100 half-open connections filled the backlog; the other 1900 SYNs got cookies.
    assert_eq!(b.syn_cookies_sent, 1900);
    // Cookie ACKs that came back while the accept queue had room made connections at once
    // (some arrive before the 100 half-open ones are established); the others found it
    // full: dropped and counted. Nothing else.
    let early_cookies = b.syn_cookies_accepted;
    assert_eq!(b.drops.tcp_backlog_full + early_cookies, 1900);
    assert_eq!(b.drops.total(), b.drops.tcp_backlog_full);
    assert_eq!(b.conns_accepted, 101 + early_cookies);
    assert_eq!(net.b.stack.stats().flows as u64, 101 + early_cookies);
    assert_eq!(
        net.b.stack.accept_queue_len(lid) as u64,
        100 + early_cookies
    );
    // Every client completed its handshake.
    let connected = |n: &Net| {
        n.a.events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
    };
    assert_eq!(connected(&net), 2001);

    // The established connection was not starved by the flood.
    echo_each(&mut net, &[(early_c, early_s)]);

    // Each client sends; its segment carries the cookie again, and once the application
    // has made room in the accept queue, it makes the connection.
    for (i, &c) in clients.iter().enumerate() {
        let msg = format!("hello from connection {i}");
        assert_eq!(net.a.stack.send(c, msg.as_bytes()).unwrap(), msg.len());
    }
    let mut servers = Vec::new();
    let mut echoed = vec![Vec::new(); clients.len()];
    let mut buf = [0u8; 256];
    net.run_until(Duration::from_secs(30), |n| {
        while let Some((s, _)) = n.b.stack.accept(lid) {
            servers.push(s);
        }
        for &s in &servers {
            let k = n.b.stack.recv(s, &mut buf).unwrap();
            if k > 0 {
                assert_eq!(n.b.stack.send(s, &buf[..k]).unwrap(), k);
            }
        }
        let mut done = true;
        for (i, &c) in clients.iter().enumerate() {
            let k = n.a.stack.recv(c, &mut buf).unwrap();
            echoed[i].extend_from_slice(&buf[..k]);
            done &= echoed[i].len() == format!("hello from connection {i}").len();
        }
        done
    });
    for (i, e) in echoed.iter().enumerate() {
        assert_eq!(e, format!("hello from connection {i}").as_bytes());
    }
    assert_eq!(servers.len(), 2000);
    let b = net.b.stack.counters();
    assert_eq!(b.syn_cookies_accepted, 1900);
    assert!(b.drops.tcp_backlog_full >= 1900 - early_cookies);
    assert_eq!(b.drops.tcp_syn_cookie_bad, 0);
    assert_eq!(net.a.stack.counters().conns_reset, 0);
}
