//! Loss recovered in milliseconds: the minimum RTO (200 ms, not smoltcp's 1 s) and the
//! tail-loss probe (a lost last segment resent after two round trips plus 10 ms), and 64 MiB
//! each way through 1 % loss, duplication and reordering.
#![allow(clippy::unwrap_used)]

mod common;

use common::raw::Seg;
use common::*;
use megatcp_stack::{Duration, Instant};
use smoltcp::wire::TcpControl;

const MS: Duration = Duration::from_millis(1);

/// Runs until the stack sends something; returns when (virtual) and what.
fn next_output(solo: &mut Solo, limit: Duration) -> (Instant, Vec<Seg>) {
    let end = solo.now + limit;
    while solo.now < end {
        let out = solo.run(MS);
        if !out.is_empty() {
            return (solo.now, out);
        }
    }
    panic!("nothing sent within {limit}");
}

#[test]
fn a_lost_syn_ack_is_resent_after_the_200ms_minimum_rto() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 41));
    solo.host.stack.listen(sa(B_IP, 80), None).unwrap();
    let (me, srv) = (sa(A_IP, 41_000), sa(B_IP, 80));
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 1).ts(1, 0), MS);
    assert!(out[0].is_syn_ack());
    let sent = solo.now;
    // We "lose" it: no ACK. The retransmission comes after the minimum RTO.
    let (at, again) = next_output(&mut solo, Duration::from_secs(2));
    assert!(again[0].is_syn_ack() && again[0].seq == out[0].seq);
    let waited = at - sent;
    assert!(
        waited >= Duration::from_millis(195) && waited <= Duration::from_millis(215),
        "resent after {waited}"
    );
    assert_eq!(solo.host.stack.counters().tcp_retransmits, 1);
}

#[test]
fn a_lost_reply_is_probed_within_milliseconds_not_at_the_rto() {
    let mut solo = Solo::new(config(B_MAC, B_IP, 42));
    let lid = solo.host.stack.listen(sa(B_IP, 80), None).unwrap();
    let (me, srv) = (sa(A_IP, 41_001), sa(B_IP, 80));
    let out = solo.exchange(&Seg::new(me, srv, TcpControl::Syn, 1).ts(1, 0), MS);
    let (isn, ts_b) = (out[0].seq, out[0].ts.unwrap().0);
    solo.exchange(
        &Seg::new(me, srv, TcpControl::None, 2)
            .ack(isn + 1)
            .ts(2, ts_b),
        MS,
    );
    let (conn, _) = solo.host.stack.accept(lid).unwrap();
    // A few request/replies, answered at once: the stack learns a round trip of ~1 ms.
    let mut seq = 2u32;
    let mut b_next = isn + 1;
    let mut buf = [0u8; 64];
    for i in 0..5u32 {
        let req = Seg::new(me, srv, TcpControl::Psh, seq)
            .ack(b_next)
            .ts(100 + 2 * i, ts_b)
            .data(b"req");
        solo.exchange(&req, Duration::from_micros(100));
        seq += 3;
        assert_eq!(
            solo.host.stack.recv(conn, &mut buf).unwrap(),
            3,
            "{i} {:?}",
            solo.host.stack.counters()
        );
        solo.host.stack.send(conn, b"reply").unwrap();
        let out = solo.run(MS);
        let reply = out.iter().find(|s| s.payload == b"reply").unwrap();
        b_next = reply.seq + 5;
        if i < 4 {
            solo.exchange(
                &Seg::new(me, srv, TcpControl::None, seq)
                    .ack(b_next)
                    .ts(101 + 2 * i, ts_b),
                MS,
            );
        }
    }
    // The last reply is "lost": no ACK comes. It is sent again well before the 200 ms RTO.
    let sent = solo.now;
    let (at, again) = next_output(&mut solo, Duration::from_secs(1));
    assert_eq!(again[0].payload, b"reply");
    let waited = at - sent;
    assert!(waited <= Duration::from_millis(20), "probe after {waited}");
    let c = solo.host.stack.counters();
    assert_eq!(c.tail_probes, 1);
    assert_eq!(c.tcp_retransmits, 1);
}

#[test]
fn sixty_four_mib_each_way_through_one_percent_loss_duplication_and_reordering() {
    let stats = common::bulk::each_way(
        megatcp_nic::fault::FaultConfig {
            seed: 0x1001,
            loss: 0.01,
            duplicate: 0.01,
            reorder: 0.01,
            reorder_window: 8,
            corrupt: 0.0,
            delay: None,
        },
        64 << 20,
    );
    assert!(stats.retransmits > 0, "the faults were real");
}
