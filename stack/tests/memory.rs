//! Closed and timed-out connections release all their memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;

use cap::Cap;
use common::*;
use megatcp_stack::{ConnectOpts, Duration, Event};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

/// The tests measure the whole process's heap: one at a time.
static SERIAL: std::sync::Mutex<()> = std::sync::Mutex::new(());

fn serial() -> std::sync::MutexGuard<'static, ()> {
    SERIAL
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[test]
fn ten_thousand_connections_open_and_close_and_memory_returns() {
    let _one_at_a_time = serial();
    const N: usize = 10_000;
    let mut ca = config(A_MAC, A_IP, 21);
    let mut cb = config(B_MAC, B_IP, 22);
    for c in [&mut ca, &mut cb] {
        c.tcp.rx_buffer = 4096;
        c.tcp.tx_buffer = 4096;
        c.tx_queue_limit = 1 << 16;
    }
    let mut net = Net::with_configs(ca, cb);
    let lid = net.b.stack.listen(sa(B_IP, 6000), None).unwrap();
    // Warm up ARP and the frame pools with one connection, then measure.
    let c0 = net.connect(lid, 6000);
    let (s0, _) = net.b.stack.accept(lid).unwrap();
    net.a.events.clear();
    net.b.events.clear();
    let base_a = net.a.stack.stats();
    let base_b = net.b.stack.stats();
    let before = ALLOC.allocated();

    let (clients, servers) = net.open_many(N, lid, 6000);
    let peak = ALLOC.allocated();
    assert!(
        peak - before > N * 8192,
        "connections hold their buffers while open"
    );

    // Half close from the client side, half from the server side; one in ten aborted.
    for (i, (&c, &s)) in clients.iter().zip(&servers).enumerate() {
        match i % 10 {
            0 => net.a.stack.abort(c).unwrap(),
            1..=4 => net.a.stack.close(c).unwrap(),
            _ => net.b.stack.close(s).unwrap(),
        }
    }
    // Close the other ends as their peers' FINs arrive.
    let end = net.now + Duration::from_secs(20);
    net.run_until(Duration::from_secs(21), |n| {
        for e in std::mem::take(&mut n.a.events) {
            if let Event::PeerClosed { conn } = e {
                n.a.stack.close(conn).unwrap();
            }
        }
        for e in std::mem::take(&mut n.b.events) {
            if let Event::PeerClosed { conn } = e {
                n.b.stack.close(conn).unwrap();
            }
        }
        n.now >= end
    });
    // Past TIME-WAIT, everything but the first connection is gone.
    net.run_for(Duration::from_secs(15));
    net.a.events.clear();
    net.b.events.clear();
    net.a.events.shrink_to_fit();
    net.b.events.shrink_to_fit();
    assert_eq!(net.a.stack.stats().flows, 1);
    assert_eq!(net.b.stack.stats().flows, 1);
    let (sa_, sb_) = (net.a.stack.stats(), net.b.stack.stats());
    // The timer heap is compacted in proportion to the live connections.
    assert!(sa_.timer_entries <= 2 + 64, "{sa_:?}");
    assert!(sb_.timer_entries <= 2 + 64, "{sb_:?}");
    let _ = (base_a.timer_entries, base_b.timer_entries);
    assert!(
        sa_.flow_table_bytes <= base_a.flow_table_bytes + 4096,
        "{sa_:?} vs {base_a:?}"
    );
    assert!(
        sb_.flow_table_bytes <= base_b.flow_table_bytes + 4096,
        "{sb_:?} vs {base_b:?}"
    );
    // The survivor still works.
    assert_eq!(net.a.stack.send(c0, b"still here").unwrap(), 10);
    let mut buf = [0u8; 16];
    net.run_until(Duration::from_secs(5), |n| {
        n.b.stack.recv_queue(s0).unwrap() == 10
    });
    assert_eq!(net.b.stack.recv(s0, &mut buf).unwrap(), 10);
    net.run_for(Duration::from_millis(10));

    // What each stack still holds: measured by freeing it. Allowed: its pools of spare frame
    // buffers and closed sockets (bounded, not per connection), the surviving connection (two 4 KiB buffers),
    // fixed tables (the timer wheel's 2048 slots) and slack: 256 KiB in all. 10,000 leaked
    // connections would be over 80 MB.
    drop((clients, servers));
    let (sa_, sb_) = (net.a.stack.stats(), net.b.stack.stats());
    let after = ALLOC.allocated();
    let Net { a, b, .. } = net;
    for (name, host, stats) in [("a", a, sa_), ("b", b, sb_)] {
        let Host { stack, nic, events } = host;
        drop(events);
        let x = ALLOC.allocated();
        drop(stack);
        let held = x - ALLOC.allocated();
        let allowed = stats.pooled_frame_bytes + stats.pooled_socket_bytes + 256 * 1024;
        assert!(
            held <= allowed,
            "stack {name} holds {held} bytes (allowed {allowed}): {stats:?}"
        );
        drop(nic);
    }
    let grown = after.saturating_sub(before);
    assert!(grown < 8 << 20, "heap grew by {grown} bytes in all");
}

/// A server that closes first keeps every connection in TIME-WAIT: as a record, each costs
/// at most 128 bytes (its socket and buffers are gone). 100,000 records by default;
/// `MEGATCP_TW_RECORDS=1000000` for the benchmark's million (in multiples of 10,000).
#[test]
fn time_wait_records_cost_at_most_128_bytes_each() {
    let _one_at_a_time = serial();
    let n: usize = std::env::var("MEGATCP_TW_RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let mut ca = config(A_MAC, A_IP, 23);
    // Enough source addresses for N distinct 4-tuples to one port.
    ca.addrs = (1..=(n / 16_000 + 2).min(150) as u8)
        .map(|i| megatcp_stack::LocalAddr::new(std::net::Ipv4Addr::new(10, 77, 0, 100 + i), 24))
        .collect();
    let mut cb = config(B_MAC, B_IP, 24);
    cb.tcp.time_wait = Duration::from_secs(120);
    for c in [&mut ca, &mut cb] {
        c.tcp.rx_buffer = 4096;
        c.tcp.tx_buffer = 4096;
    }
    let mut net = Net::with_configs(ca, cb);
    let lid = net.b.stack.listen(sa(B_IP, 80), None).unwrap();
    let pools = |net: &Net| {
        let (a, b) = (net.a.stack.stats(), net.b.stack.stats());
        a.pooled_socket_bytes + a.pooled_frame_bytes + b.pooled_socket_bytes + b.pooled_frame_bytes
    };
    // Each connection gets a 4-tuple of its own (a SYN for a 4-tuple in TIME-WAIT would
    // reopen it): 16,000 source ports per source address. The server closes first, the
    // client follows. Warm up (ARP, pools) with a first batch.
    let addrs: Vec<_> = net.a.stack.config().addrs.iter().map(|a| a.addr).collect();
    let mut next = 0usize;
    let mut batch = |net: &mut Net, n: usize| {
        let clients: Vec<_> = (0..n)
            .map(|_| {
                next += 1;
                let opts = ConnectOpts {
                    local_ip: Some(addrs[next / 16_000]),
                    local_port: Some(20_000 + (next % 16_000) as u16),
                };
                net.a.stack.connect(net.now, sa(B_IP, 80), opts).unwrap()
            })
            .collect();
        let mut servers = Vec::new();
        net.run_until(Duration::from_secs(30), |net| {
            while let Some((s, _)) = net.b.stack.accept(lid) {
                net.b.stack.close(s).unwrap();
                servers.push(s);
            }
            servers.len() == n
        });
        let mut closed = 0;
        net.run_until(Duration::from_secs(60), |net| {
            for e in net.a.events.drain(..) {
                if let Event::PeerClosed { conn } = e {
                    net.a.stack.close(conn).unwrap();
                    closed += 1;
                }
            }
            closed == clients.len()
                && net.a.stack.stats().flows == 0
                && net.b.stack.stats().flows == 0
        });
        net.b.events.clear();
    };
    batch(&mut net, 1000);
    let before = ALLOC.allocated() - pools(&net);
    let tw_before = net.b.stack.stats().time_wait;
    for _ in 0..n / 10_000 {
        batch(&mut net, 10_000);
    }
    let s = net.b.stack.stats();
    assert_eq!(s.time_wait - tw_before, n);
    assert_eq!((s.flows, net.a.stack.stats().flows), (0, 0));
    let after = ALLOC.allocated() - pools(&net);
    let per = (after.saturating_sub(before)) as f64 / n as f64;
    eprintln!(
        "{n} TIME-WAIT records: {per:.1} bytes each (stack's own estimate {} B in all)",
        s.time_wait_bytes
    );
    assert!(per <= 128.0, "{per:.1} bytes per TIME-WAIT record");
}
