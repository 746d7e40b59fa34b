//! Closed and timed-out connections release all their memory.
#![allow(clippy::unwrap_used)]

mod common;

use std::alloc::System;

use cap::Cap;
use common::*;
use megatcp_stack::{ConnectOpts, Duration, Event};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

#[test]
fn ten_thousand_connections_open_and_close_and_memory_returns() {
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
    let c0 = net
        .a
        .stack
        .connect(net.now, sa(B_IP, 6000), ConnectOpts::default())
        .unwrap();
    net.run_until(Duration::from_secs(5), |n| {
        n.a.events.contains(&Event::Connected { conn: c0 })
    });
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
