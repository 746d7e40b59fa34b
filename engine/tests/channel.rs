//! What the bypass backend adds to the channel's rules (which `launch/tests/rules.rs` checks
//! on every backend): one dispatch is one flush and one NIC batch, and a connect to a closed
//! port is answered by the peer stack's RST. Two channels (a server and a client) joined by
//! the wire, driven by hand in one thread.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use megatcp_channel::{Channel, ChannelError, Completion, ConnectError, Handle};
use megatcp_engine::{Bypass, IdlePolicy};
use megatcp_nic::NicQueue;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};
use megatcp_test_support::completions::{accepted, connected, error_of};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 2);

type Ch = Channel<Bypass<WireQueue>>;

fn channels() -> (Ch, Ch) {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let mk = |q, mac, ip| {
        let cfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, mac]), LocalAddr::new(ip, 24));
        let stop = Arc::new(AtomicBool::new(false));
        Channel::new(Bypass::new(q, cfg, stop, IdlePolicy::BusyPoll).unwrap())
    };
    (mk(a.remove(0), 1, SERVER), mk(b.remove(0), 2, CLIENT))
}

/// Dispatches both channels until `done` holds for the collected completions.
fn run(
    s: &mut Ch,
    c: &mut Ch,
    got_s: &mut Vec<Completion>,
    got_c: &mut Vec<Completion>,
    mut done: impl FnMut(&[Completion], &[Completion]) -> bool,
) {
    for _ in 0..100_000 {
        got_s.extend(s.dispatch(Some(Duration::ZERO)));
        got_c.extend(c.dispatch(Some(Duration::ZERO)));
        if done(got_s, got_c) {
            return;
        }
    }
    panic!("not done: server {got_s:?} client {got_c:?}");
}

/// A connected pair of handles: (server side, client side, listener).
fn connect(s: &mut Ch, c: &mut Ch) -> (Handle, Handle, Handle) {
    let (mut gs, mut gc) = (Vec::new(), Vec::new());
    s.listen(SocketAddrV4::new(SERVER, 7), 128, 1);
    let lst = loop {
        if let Some(Completion::Listening { handle, .. }) = s.dispatch(Some(Duration::ZERO)).pop() {
            break handle;
        }
    };
    s.accept(lst, false, 2);
    c.connect(SocketAddrV4::new(SERVER, 7), 3);
    run(s, c, &mut gs, &mut gc, |a, b| {
        a.iter().any(|x| matches!(x, Completion::Accepted { .. }))
            && b.iter().any(|x| matches!(x, Completion::Connected { .. }))
    });
    (accepted(&gs).unwrap(), connected(&gc).unwrap(), lst)
}

#[test]
fn writes_queued_before_one_dispatch_are_one_flush_and_one_nic_batch() {
    let (mut s, mut c) = channels();
    // Eight connections, so that eight writes make eight segments.
    let pairs: Vec<_> = {
        let (sh, ch, lst) = connect(&mut s, &mut c);
        let mut v = vec![(sh, ch)];
        for i in 0..7u64 {
            s.accept(lst, false, 100 + i);
            c.connect(SocketAddrV4::new(SERVER, 7), 200 + i);
            let (mut gs, mut gc) = (Vec::new(), Vec::new());
            run(&mut s, &mut c, &mut gs, &mut gc, |a, b| {
                a.iter().any(|x| matches!(x, Completion::Accepted { .. }))
                    && b.iter().any(|x| matches!(x, Completion::Connected { .. }))
            });
            v.push((accepted(&gs).unwrap(), connected(&gc).unwrap()));
        }
        v
    };
    // Quiet the wire (delayed ACKs and the like) before measuring.
    std::thread::sleep(Duration::from_millis(5));
    for _ in 0..10 {
        let _ = c.dispatch(Some(Duration::ZERO));
        let _ = s.dispatch(Some(Duration::ZERO));
    }
    let flushes = c.stats().flushes;
    let batches = c.backend().loop_stats().tx_batches;
    let frames = c.backend().nic().stats().tx_frames;
    for (i, &(_, ch)) in pairs.iter().enumerate() {
        c.write(ch, vec![i as u8; 100], 300 + i as u64);
    }
    assert_eq!(
        c.stats().flushes,
        flushes,
        "nothing is flushed before the dispatch"
    );
    let done = c.dispatch(Some(Duration::ZERO));
    assert_eq!(c.stats().flushes, flushes + 1, "one flush");
    assert_eq!(
        c.backend().loop_stats().tx_batches,
        batches + 1,
        "one NIC batch"
    );
    assert_eq!(
        c.backend().nic().stats().tx_frames,
        frames + 8,
        "with all eight segments"
    );
    assert_eq!(
        done.iter()
            .filter(|x| matches!(x, Completion::Written { len: 100, .. }))
            .count(),
        8
    );
}

#[test]
fn connecting_to_a_closed_port_fails_with_the_peer_named() {
    let (mut s, mut c) = channels();
    let target = SocketAddrV4::new(SERVER, 9);
    c.connect(target, 40);
    let (mut gs, mut gc) = (Vec::new(), Vec::new());
    run(&mut s, &mut c, &mut gs, &mut gc, |_, b| {
        error_of(b, 40).is_some()
    });
    match error_of(&gc, 40) {
        Some(ChannelError::Connect(to, why)) => {
            assert_eq!(to, target);
            assert_eq!(why, ConnectError::RefusedOrTimedOut, "{why}");
        }
        other => panic!("expected a connect error, got {other:?}"),
    }
    assert_eq!(
        c.backend().live_handles(),
        0,
        "the failed connection's handle is gone"
    );
    assert_eq!(s.backend().stack().counters().tcp_rst_sent, 1);
}
