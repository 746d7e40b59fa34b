//! The same echo server and load generator over the kernel path (epoll) on loopback: the
//! channel API runs unchanged on another backend; every echoed byte is verified.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4, TcpListener};
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::Duration;

use megatcp_channel::epoll::Epoll;
use megatcp_echo::{LoadOpts, LoadReport, MsgSize, ServerStats, run_load, serve};
use megatcp_engine::{EngineError, Runtime};

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn epoll(
    core: usize,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> Result<Epoll, EngineError> {
    Epoll::new(stop).map_err(|e| EngineError::Backend {
        core,
        reason: e.to_string(),
    })
}

/// Runs an epoll echo server on `server_cores` and the load on one core; returns the load
/// report and the servers' stats.
fn run(server_cores: &[usize], load: LoadOpts) -> (LoadReport, Vec<ServerStats>) {
    let server_rt = Runtime::new(server_cores).handle_signals(false).pin(false);
    let stop = server_rt.stop_flag();
    let port = load.target.port();
    let stats = Mutex::new(Vec::new());
    let report = Mutex::new(None);
    std::thread::scope(|s| {
        let server = s.spawn(|| {
            server_rt.run_with(
                epoll,
                |_, ch| {
                    let r = serve(ch, port, 4096).unwrap();
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
                epoll,
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
fn a_thousand_short_connections_over_epoll_every_byte_verified() {
    let (r, servers) = run(&[0], opts(1000, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    assert!(r.connections >= r.transactions, "{r}");
    assert!(servers[0].accepted >= 2000);
}

#[test]
fn a_thousand_persistent_connections_over_epoll_every_byte_verified() {
    let (r, servers) = run(&[0], opts(1000, 0, 5000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(servers[0].accepted, 1000);
}

#[test]
fn two_epoll_cores_share_the_port_through_reuseport() {
    let (r, servers) = run(&[0, 1], opts(200, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(servers.len(), 2);
    for s in &servers {
        assert!(s.accepted > 0, "a core accepted nothing: {servers:?}");
    }
}
