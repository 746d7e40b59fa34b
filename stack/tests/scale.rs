//! 10,000 concurrent established connections between two stacks, each exchanging messages.
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;

use common::*;
use megatcp_stack::{Duration, Event};

#[test]
fn ten_thousand_concurrent_connections_exchange_messages() {
    const N: usize = 10_000;
    let mut ca = config(A_MAC, A_IP, 11);
    let mut cb = config(B_MAC, B_IP, 12);
    for c in [&mut ca, &mut cb] {
        c.tcp.rx_buffer = 2048;
        c.tcp.tx_buffer = 2048;
        c.tx_queue_limit = 1 << 16;
        // All 10,000 SYNs arrive at once: this test is about established connections, not
        // about the backlog (tests/listen.rs is).
        c.default_backlog = 16_384;
    }
    let mut net = Net::with_configs(ca, cb);
    let lid = net.b.stack.listen(sa(B_IP, 5000), None).unwrap();
    let (clients, _servers) = net.open_many(N, lid, 5000);
    net.run_until(Duration::from_secs(5), |n| {
        n.a.events
            .iter()
            .filter(|e| matches!(e, Event::Connected { .. }))
            .count()
            == N
    });
    assert_eq!(net.a.stack.stats().flows, N);
    assert_eq!(net.b.stack.stats().flows, N);

    // Every connection sends its own message; the server answers with it reversed.
    let msg = |i: usize| format!("request {i} {}", "x".repeat(i % 300)).into_bytes();
    for (i, &c) in clients.iter().enumerate() {
        assert_eq!(net.a.stack.send(c, &msg(i)).unwrap(), msg(i).len());
    }
    let index: HashMap<_, _> = clients.iter().enumerate().map(|(i, &c)| (c, i)).collect();
    let mut got: Vec<Vec<u8>> = vec![Vec::new(); N];
    let mut srv_got: HashMap<_, Vec<u8>> = HashMap::new();
    let mut done = 0;
    let mut buf = [0u8; 2048];
    net.run_until(Duration::from_secs(60), |n| {
        for e in std::mem::take(&mut n.b.events) {
            if let Event::Readable { conn } = e {
                let k = n.b.stack.recv(conn, &mut buf).unwrap();
                let acc = srv_got.entry(conn).or_default();
                acc.extend_from_slice(&buf[..k]);
                // Requests are self-delimiting by length: "request {i} " + i%300 x's.
                let text = String::from_utf8_lossy(acc).into_owned();
                let i: Option<usize> = text.split(' ').nth(1).and_then(|s| s.parse().ok());
                if i.is_some_and(|i| acc.len() == msg(i).len()) {
                    let mut reply = acc.clone();
                    reply.reverse();
                    assert_eq!(n.b.stack.send(conn, &reply).unwrap(), reply.len());
                }
            }
        }
        for e in std::mem::take(&mut n.a.events) {
            if let Event::Readable { conn } = e {
                let k = n.a.stack.recv(conn, &mut buf).unwrap();
                let i = index[&conn];
                got[i].extend_from_slice(&buf[..k]);
                if got[i].len() == msg(i).len() {
                    done += 1;
                }
            }
        }
        done == N
    });
    for (i, g) in got.iter().enumerate() {
        let mut want = msg(i);
        want.reverse();
        assert_eq!(g, &want, "connection {i}");
    }
    assert_eq!(
        net.a.stack.counters().drops.total(),
        0,
        "{:?}",
        net.a.stack.counters()
    );
    assert_eq!(
        net.b.stack.counters().drops.total(),
        0,
        "{:?}",
        net.b.stack.counters().drops
    );
}
