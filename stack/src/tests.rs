//! Unit tests of the whole stack: two stacks joined directly (frames handed from one's
//! `transmit` to the other's `receive`), in explicit time.
#![allow(clippy::unwrap_used)]

use core::net::{Ipv4Addr, SocketAddrV4};

use crate::*;

const A: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 1);
const B: Ipv4Addr = Ipv4Addr::new(10, 1, 0, 2);

fn pair() -> (Stack, Stack, Instant) {
    let now = Instant::from_secs(5);
    let mut ca = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), LocalAddr::new(A, 24));
    ca.seed = 1;
    let mut cb = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 2]), LocalAddr::new(B, 24));
    cb.seed = 2;
    (
        Stack::new(ca, now).unwrap(),
        Stack::new(cb, now).unwrap(),
        now,
    )
}

/// Moves frames both ways until quiet; returns the events of each side.
fn settle(a: &mut Stack, b: &mut Stack, now: Instant) -> (Vec<Event>, Vec<Event>) {
    let (mut ea, mut eb) = (Vec::new(), Vec::new());
    for _ in 0..1000 {
        a.poll(now);
        b.poll(now);
        let mut to_b = Vec::new();
        let mut to_a = Vec::new();
        a.transmit(&mut |f| {
            to_b.push(f.to_vec());
            true
        });
        b.transmit(&mut |f| {
            to_a.push(f.to_vec());
            true
        });
        if to_a.is_empty() && to_b.is_empty() {
            break;
        }
        to_b.iter().for_each(|f| b.receive(now, f));
        to_a.iter().for_each(|f| a.receive(now, f));
    }
    while let Some(e) = a.next_event() {
        ea.push(e);
    }
    while let Some(e) = b.next_event() {
        eb.push(e);
    }
    (ea, eb)
}

#[test]
fn handshake_data_and_close() {
    let (mut a, mut b, mut now) = pair();
    let l = b
        .listen(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 80), None)
        .unwrap();
    let c = a
        .connect(now, SocketAddrV4::new(B, 80), ConnectOpts::default())
        .unwrap();
    let (ea, eb) = settle(&mut a, &mut b, now);
    assert_eq!(ea, vec![Event::Connected { conn: c }]);
    assert_eq!(eb, vec![Event::Acceptable { listener: l }]);
    let (s, peer) = b.accept(l).unwrap();
    assert_eq!(peer, a.local_addr(c).unwrap());
    assert_eq!(a.send(c, b"ping").unwrap(), 4);
    let (_, eb) = settle(&mut a, &mut b, now);
    assert_eq!(eb, vec![Event::Readable { conn: s }]);
    let mut buf = [0u8; 8];
    assert_eq!(b.recv(s, &mut buf).unwrap(), 4);
    assert_eq!(&buf[..4], b"ping");
    assert_eq!(b.recv(s, &mut buf).unwrap(), 0);
    b.close(s).unwrap();
    assert!(
        b.send(s, b"x").is_err(),
        "closed handle is stale for the application"
    );
    now += Duration::from_millis(5);
    let (ea, _) = settle(&mut a, &mut b, now);
    assert_eq!(ea, vec![Event::PeerClosed { conn: c }]);
    assert_eq!(a.recv(c, &mut buf), Err(RecvError::Finished));
    a.close(c).unwrap();
    now += Duration::from_millis(5);
    let (ea, eb) = settle(&mut a, &mut b, now);
    assert_eq!(ea, vec![Event::Closed { conn: c }]);
    assert_eq!(eb, vec![Event::Closed { conn: s }]);
    // B closed first: it holds TIME-WAIT, as a record (its socket is freed); A is gone.
    assert_eq!(a.stats().flows, 0);
    assert_eq!((b.stats().flows, b.stats().time_wait), (0, 1));
    assert_eq!(b.counters().tcp_time_wait_entered, 1);
    now += b.config().tcp.time_wait;
    settle(&mut a, &mut b, now);
    assert_eq!(b.stats().time_wait, 0);
    assert_eq!(b.counters().tcp_time_wait_expired, 1);
    assert_eq!(b.stats().timer_entries, 0);
}

#[test]
fn abort_resets_the_peer() {
    let (mut a, mut b, now) = pair();
    let l = b.listen(SocketAddrV4::new(B, 80), Some(8)).unwrap();
    let c = a
        .connect(now, SocketAddrV4::new(B, 80), ConnectOpts::default())
        .unwrap();
    settle(&mut a, &mut b, now);
    let (s, _) = b.accept(l).unwrap();
    a.abort(c).unwrap();
    let (ea, eb) = settle(&mut a, &mut b, now);
    assert_eq!(ea, vec![Event::Closed { conn: c }]);
    assert_eq!(eb, vec![Event::Reset { conn: s }]);
    assert_eq!(a.stats().flows, 0);
    assert_eq!(b.stats().flows, 0);
    assert_eq!(b.counters().conns_reset, 1);
}

#[test]
fn listen_errors() {
    let (_, mut b, _) = pair();
    assert_eq!(
        b.listen(SocketAddrV4::new(B, 0), None),
        Err(ListenError::ZeroPort)
    );
    assert_eq!(
        b.listen(SocketAddrV4::new(A, 80), None),
        Err(ListenError::NotLocal(A))
    );
    b.listen(SocketAddrV4::new(B, 80), None).unwrap();
    assert_eq!(
        b.listen(SocketAddrV4::new(B, 80), None),
        Err(ListenError::InUse(SocketAddrV4::new(B, 80)))
    );
    assert_eq!(
        b.listen(SocketAddrV4::new(B, 81), Some(0)),
        Err(ListenError::ZeroBacklog)
    );
}

#[test]
fn ephemeral_ports_skip_ports_in_use_and_honour_the_filter() {
    let (mut a, _, now) = pair();
    let remote = SocketAddrV4::new(B, 80);
    a.set_port_filter(Some(Box::new(|local: SocketAddrV4, _| {
        local.port() % 2 == 0
    })));
    let mut seen = std::collections::HashSet::new();
    for _ in 0..100 {
        let c = a.connect(now, remote, ConnectOpts::default()).unwrap();
        let p = a.local_addr(c).unwrap().port();
        assert_eq!(p % 2, 0);
        assert!(seen.insert(p), "port {p} reused while in use");
    }
    let used = *seen.iter().next().unwrap();
    assert_eq!(
        a.connect(
            now,
            remote,
            ConnectOpts {
                local_port: Some(used),
                ..Default::default()
            }
        ),
        Err(ConnectError::PortInUse(used))
    );
}

#[test]
fn bad_configs_are_refused() {
    let now = Instant::from_secs(0);
    let good = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), LocalAddr::new(A, 24));
    let mut c = good.clone();
    c.addrs.clear();
    assert_eq!(Stack::new(c, now).err(), Some(ConfigError::NoAddress));
    let mut c = good.clone();
    c.mac = MacAddr::BROADCAST;
    assert!(matches!(Stack::new(c, now), Err(ConfigError::BadMac(_))));
    let mut c = good.clone();
    c.tcp.rx_buffer = 10;
    assert_eq!(Stack::new(c, now).err(), Some(ConfigError::BufferTooSmall));
    let mut c = good;
    c.ephemeral_ports = 0..=10;
    assert_eq!(Stack::new(c, now).err(), Some(ConfigError::BadPortRange));
}

#[test]
fn several_local_addresses_multiply_the_source_ports() {
    let now = Instant::from_secs(1);
    let mut cfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, 1]), LocalAddr::new(A, 24));
    cfg.addrs
        .push(LocalAddr::new(Ipv4Addr::new(10, 1, 0, 11), 24));
    cfg.ephemeral_ports = 40000..=40099;
    let mut a = Stack::new(cfg, now).unwrap();
    let remote = SocketAddrV4::new(B, 80);
    let mut sources = std::collections::HashSet::new();
    for _ in 0..200 {
        let c = a.connect(now, remote, ConnectOpts::default()).unwrap();
        assert!(sources.insert(a.local_addr(c).unwrap()));
    }
    assert_eq!(sources.iter().filter(|s| *s.ip() == A).count(), 100);
    assert_eq!(
        a.connect(now, remote, ConnectOpts::default()),
        Err(ConnectError::NoFreePort(remote))
    );
    // Another destination has its own 4-tuples.
    assert!(
        a.connect(now, SocketAddrV4::new(B, 81), ConnectOpts::default())
            .is_ok()
    );
}
