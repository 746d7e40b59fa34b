//! The same echo server and load generator over the kernel path (epoll and io_uring) on
//! loopback: the channel API runs unchanged on every backend, and the two kernel backends
//! talk to each other; every echoed byte is verified.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::Duration;

use megatcp_channel::Backend;
use megatcp_channel::epoll::Epoll;
use megatcp_channel::uring::{Uring, UringConfig};
use megatcp_echo::{LoadOpts, LoadReport, MsgSize, ServeOpts, ServerStats, run_load, serve_with};
use megatcp_engine::{EngineError, Runtime};

type Stop = std::sync::Arc<std::sync::atomic::AtomicBool>;

/// A port no other test of this binary gets, below the ephemeral range. Servers listen with
/// `SO_REUSEPORT`, so two tests whose servers were handed the same port (which a released
/// `bind(0)` probe allows) would silently split each other's connections. The probe binds
/// without listening (`SO_REUSEPORT` too), so it never answers a connection meant for the
/// server.
fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(24_000);
    loop {
        let port = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(port < 32_768, "ran out of test ports");
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .and_then(|s| {
                s.set_reuse_address(true)?;
                s.set_reuse_port(true)?;
                s.bind(&SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, port).into())
            });
        if probe.is_ok() {
            return port;
        }
    }
}

fn epoll(core: usize, stop: Stop) -> Result<Epoll, EngineError> {
    Epoll::new(stop).map_err(|e| EngineError::Backend {
        core,
        reason: e.to_string(),
    })
}

fn uring(core: usize, stop: Stop) -> Result<Uring, EngineError> {
    let config = UringConfig {
        files: 4096,
        ..UringConfig::default()
    };
    Uring::new(stop, &config).map_err(|e| EngineError::Backend {
        core,
        reason: e.to_string(),
    })
}

/// Runs an echo server made by `server` on `server_cores` and the load on one core over a
/// backend made by `client`; returns the load report and the servers' stats.
fn run<S, C>(
    server: fn(usize, Stop) -> Result<S, EngineError>,
    client: fn(usize, Stop) -> Result<C, EngineError>,
    server_cores: &[usize],
    load: LoadOpts,
) -> (LoadReport, Vec<ServerStats>)
where
    S: Backend,
    C: Backend,
{
    run_closing_after(server, client, server_cores, None, load)
}

/// [`run`], the server closing each connection after `close_after` bytes (if set).
fn run_closing_after<S, C>(
    server: fn(usize, Stop) -> Result<S, EngineError>,
    client: fn(usize, Stop) -> Result<C, EngineError>,
    server_cores: &[usize],
    close_after: Option<u64>,
    load: LoadOpts,
) -> (LoadReport, Vec<ServerStats>)
where
    S: Backend,
    C: Backend,
{
    let serve_opts = ServeOpts {
        port: load.target.port(),
        backlog: 4096,
        close_after,
    };
    let server_rt = Runtime::new(server_cores).handle_signals(false).pin(false);
    let stop = server_rt.stop_flag();
    let stats = Mutex::new(Vec::new());
    let report = Mutex::new(None);
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            server_rt.run_with(
                server,
                |_, ch| {
                    let r = serve_with(ch, &serve_opts).unwrap();
                    stats.lock().unwrap().push(r);
                },
                |_, _| (),
            )
        });
        // Let every core's listener come up.
        std::thread::sleep(Duration::from_millis(200));
        let client = Runtime::new(&[1])
            .handle_signals(false)
            .pin(false)
            .run_with(
                client,
                |_, ch| *report.lock().unwrap() = Some(run_load(ch, load.clone())),
                |_, _| (),
            );
        stop.store(true, Ordering::Relaxed);
        client.unwrap();
        server.join().unwrap().unwrap();
    });
    (
        report.into_inner().unwrap().unwrap(),
        stats.into_inner().unwrap(),
    )
}

fn opts(connections: usize, txns_per_conn: u64, max_txns: u64) -> LoadOpts {
    LoadOpts {
        target: SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port()),
        connections,
        msg: MsgSize::Range(1, 65536),
        txns_per_conn,
        duration: Duration::from_secs(60),
        warmup: Duration::ZERO,
        rate: None,
        max_txns: Some(max_txns),
        seed: 7,
        close_rst: false,
    }
}

#[test]
fn a_server_that_closes_first_ends_each_connection_after_its_last_transaction() {
    // HTTP `Connection: close` style: 4 transactions of 100 B, then the server closes.
    let mut o = opts(50, 4, 2000);
    o.msg = MsgSize::Fixed(100);
    let (r, servers) = run_closing_after(epoll, epoll, &[0], Some(400), o.clone());
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000 && r.connections >= 500, "{r}");
    assert!(servers[0].accepted >= 500, "{:?}", servers[0]);
    // A client that wants more than the server gives sees its transactions cut short.
    o.txns_per_conn = 8;
    o.max_txns = Some(200);
    o.duration = Duration::from_secs(2);
    o.target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let (r, _) = run_closing_after(epoll, epoll, &[0], Some(400), o);
    assert!(r.errors.eof + r.errors.reset > 0, "{r}");
}

#[test]
fn a_thousand_short_connections_over_epoll_every_byte_verified() {
    let (r, servers) = run(epoll, epoll, &[0], opts(1000, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    assert!(r.connections >= r.transactions, "{r}");
    assert!(servers[0].accepted >= 2000);
}

#[test]
fn a_thousand_persistent_connections_over_epoll_every_byte_verified() {
    let (r, servers) = run(epoll, epoll, &[0], opts(1000, 0, 5000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(servers[0].accepted, 1000);
}

#[test]
fn two_epoll_cores_share_the_port_through_reuseport() {
    let (r, servers) = run(epoll, epoll, &[0, 1], opts(200, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(servers.len(), 2);
    for s in &servers {
        assert!(s.accepted > 0, "a core accepted nothing: {servers:?}");
    }
}

#[test]
fn a_thousand_short_connections_over_uring_every_byte_verified() {
    let (r, servers) = run(uring, uring, &[0], opts(1000, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    assert!(r.connections >= r.transactions, "{r}");
    assert!(servers[0].accepted >= 2000);
}

#[test]
fn a_thousand_persistent_connections_over_uring_every_byte_verified() {
    let (r, servers) = run(uring, uring, &[0], opts(1000, 0, 5000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(servers[0].accepted, 1000);
}

#[test]
fn two_uring_cores_share_the_port_through_reuseport() {
    let (r, servers) = run(uring, uring, &[0, 1], opts(200, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(servers.len(), 2);
    for s in &servers {
        assert!(s.accepted > 0, "a core accepted nothing: {servers:?}");
    }
}

#[test]
fn uring_server_and_epoll_client_interoperate_and_back() {
    let (r, _) = run(uring, epoll, &[0], opts(100, 4, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    let (r, _) = run(epoll, uring, &[0], opts(100, 4, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
}

/// Dispatches until `pick` finds a completion (5 s at most).
fn wait<B: Backend>(
    ch: &mut megatcp_channel::Channel<B>,
    mut pick: impl FnMut(&megatcp_channel::Completion) -> bool,
) -> megatcp_channel::Completion {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    let mut seen = Vec::new();
    while std::time::Instant::now() < deadline {
        for c in ch.dispatch(Some(Duration::from_millis(20))) {
            if pick(&c) {
                return c;
            }
            seen.push(c);
        }
    }
    panic!("no such completion; saw {seen:?}");
}

#[test]
fn uring_reports_refused_connects_stale_handles_and_half_close() {
    use megatcp_channel::{Channel, ChannelError, Completion};
    let stop = Stop::default();
    let mut ch = Channel::new(uring(0, stop).unwrap());
    // Nobody listens on this port: the connect fails with the kernel's reason.
    let closed = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    ch.connect(closed, 1);
    match wait(&mut ch, |c| {
        matches!(c, Completion::Error { cookie: 1, .. })
    }) {
        Completion::Error {
            error: ChannelError::Connect(addr, why),
            ..
        } => {
            assert_eq!(addr, closed);
            assert!(why.contains("refused"), "{why}");
        }
        other => panic!("{other:?}"),
    }
    // A Linux peer: half-close from our side, then the peer's bytes still arrive.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match l.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!(),
    };
    ch.connect(addr, 2);
    // The kernel completes the handshake before the peer's accept.
    let h = match wait(&mut ch, |c| matches!(c, Completion::Connected { .. })) {
        Completion::Connected { handle, .. } => handle,
        other => panic!("{other:?}"),
    };
    let (mut peer, _) = l.accept().unwrap();
    peer.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    ch.write(h, b"ping".to_vec(), 3);
    ch.shutdown(h, 4);
    wait(&mut ch, |c| {
        matches!(c, Completion::ShutDown { cookie: 4, .. })
    });
    let mut got = Vec::new();
    std::io::Read::read_to_end(&mut peer, &mut got).unwrap();
    assert_eq!(got, b"ping", "bytes then FIN");
    ch.write(h, b"late".to_vec(), 5);
    assert!(matches!(
        wait(&mut ch, |c| matches!(
            c,
            Completion::Error { cookie: 5, .. }
        )),
        Completion::Error {
            error: ChannelError::InvalidState(..),
            ..
        }
    ));
    std::io::Write::write_all(&mut peer, b"pong").unwrap();
    drop(peer);
    ch.read(h, 6);
    match wait(&mut ch, |c| matches!(c, Completion::Read { cookie: 6, .. })) {
        Completion::Read { data, .. } => assert_eq!(data, b"pong"),
        other => panic!("{other:?}"),
    }
    ch.read(h, 7);
    wait(&mut ch, |c| matches!(c, Completion::Eof { cookie: 7, .. }));
    ch.close(h, 8);
    wait(&mut ch, |c| {
        matches!(c, Completion::Closed { cookie: 8, .. })
    });
    // The handle is stale now.
    ch.read(h, 9);
    assert!(matches!(
        wait(&mut ch, |c| matches!(
            c,
            Completion::Error { cookie: 9, .. }
        )),
        Completion::Error {
            error: ChannelError::BadHandle(_),
            ..
        }
    ));
    assert_eq!(ch.backend().live_handles(), 0);
}

#[test]
fn uring_stops_receiving_while_unread_and_resumes_in_order() {
    use megatcp_channel::{Channel, Completion};
    let mut ch = Channel::new(uring(0, Stop::default()).unwrap());
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = match l.local_addr().unwrap() {
        std::net::SocketAddr::V4(a) => a,
        std::net::SocketAddr::V6(_) => unreachable!(),
    };
    ch.connect(addr, 1);
    let h = match wait(&mut ch, |c| matches!(c, Completion::Connected { .. })) {
        Completion::Connected { handle, .. } => handle,
        other => panic!("{other:?}"),
    };
    let (mut peer, _) = l.accept().unwrap();
    // 8 MiB, far past the 1 MiB the backend receives ahead of the application.
    let data: Vec<u8> = (0..8u32 << 20).map(|i| (i % 251) as u8).collect();
    let sent = data.clone();
    let writer = std::thread::spawn(move || {
        std::io::Write::write_all(&mut peer, &sent).unwrap();
    });
    // Nobody reads for a while: the inbox fills and receiving pauses.
    let idle = std::time::Instant::now() + Duration::from_millis(300);
    while std::time::Instant::now() < idle {
        let _ = ch.dispatch(Some(Duration::from_millis(10)));
    }
    let mut got = Vec::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while got.len() < data.len() {
        assert!(
            std::time::Instant::now() < deadline,
            "stalled at {} bytes",
            got.len()
        );
        ch.read(h, 2);
        match wait(&mut ch, |c| {
            matches!(c, Completion::Read { .. } | Completion::Eof { .. })
        }) {
            Completion::Read { data: d, .. } => got.extend_from_slice(&d),
            other => panic!("{other:?} after {} bytes", got.len()),
        }
    }
    writer.join().unwrap();
    assert!(got == data, "bytes out of order or changed");
    assert!(
        ch.backend().stats().recv_rearms > 0,
        "receiving never paused: {:?}",
        ch.backend().stats()
    );
    ch.close(h, 3);
    wait(&mut ch, |c| {
        matches!(c, Completion::Closed { cookie: 3, .. })
    });
}
