//! The same echo server and load generator over the kernel path (epoll and io_uring) on
//! loopback: the channel API runs unchanged on every backend, and the two kernel backends
//! talk to each other; every echoed byte is verified.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::time::Duration;

use megatcp_echo::{
    LoadApp, LoadOpts, LoadReport, MsgSize, Protocol, ServeApp, ServeOpts, ServerStats,
};
use megatcp_launch::BackendKind::{self, Epoll, Uring};
use megatcp_launch::{BackendArgs, Cores, Launch, UringConfig};
use megatcp_test_support::free_port;

/// A run on `backend` and `cores`, unpinned, without signal handlers.
fn launch(args: &BackendArgs) -> Launch<'_> {
    let uring = UringConfig {
        files: 4096,
        ..UringConfig::default()
    };
    Launch::new(args)
        .pin(false)
        .handle_signals(false)
        .uring_config(uring)
}

/// Runs an echo server on `server` over `server_cores` and the load on core 1 over
/// `client`; returns the load report and the servers' stats.
fn run(
    server: BackendKind,
    client: BackendKind,
    server_cores: &[usize],
    load: LoadOpts,
) -> (LoadReport, Vec<ServerStats>) {
    run_closing_after(server, client, server_cores, None, load)
}

/// [`run`], the server closing each connection after `close_after` bytes (if set).
fn run_closing_after(
    server: BackendKind,
    client: BackendKind,
    server_cores: &[usize],
    close_after: Option<u64>,
    load: LoadOpts,
) -> (LoadReport, Vec<ServerStats>) {
    let args = |backend, cores: &[usize]| BackendArgs {
        backend,
        cores: Cores(cores.to_vec()),
        ..BackendArgs::default()
    };
    let (server_args, client_args) = (args(server, server_cores), args(client, &[1]));
    let server_run = launch(&server_args);
    let stop = server_run.stop_flag();
    let app = ServeApp {
        protocol: Protocol::Echo,
        opts: ServeOpts {
            port: load.target.port(),
            backlog: 4096,
            close_after,
        },
    };
    std::thread::scope(|s| {
        let server = s.spawn(|| server_run.run(&app));
        // Let every core's listener come up.
        std::thread::sleep(Duration::from_millis(200));
        let client = launch(&client_args).run(&LoadApp {
            base: load,
            cores: 1,
        });
        stop.store(true, Ordering::Relaxed);
        let stats = server.join().unwrap().unwrap();
        let stats = stats.into_iter().map(|c| c.output.unwrap().unwrap());
        (client.unwrap().remove(0).output.unwrap(), stats.collect())
    })
}

fn opts(connections: usize, txns_per_conn: u64, max_txns: u64) -> LoadOpts {
    let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    LoadOpts::until(target, connections, txns_per_conn, max_txns)
}

#[test]
fn a_server_that_closes_first_ends_each_connection_after_its_last_transaction() {
    // HTTP `Connection: close` style: 4 transactions of 100 B, then the server closes.
    let mut o = opts(50, 4, 2000);
    o.msg = MsgSize::Fixed(100);
    let (r, servers) = run_closing_after(Epoll, Epoll, &[0], Some(400), o.clone());
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000 && r.connections >= 500, "{r}");
    assert!(servers[0].accepted >= 500, "{:?}", servers[0]);
    // A client that wants more than the server gives sees its transactions cut short.
    o.txns_per_conn = 8;
    o.max_txns = Some(200);
    o.duration = Duration::from_secs(2);
    o.target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, free_port());
    let (r, _) = run_closing_after(Epoll, Epoll, &[0], Some(400), o);
    assert!(r.errors.eof + r.errors.reset > 0, "{r}");
}

/// 1,000 connections, one transaction each, random sizes up to 64 KiB.
fn a_thousand_short_connections(backend: BackendKind) {
    let (r, servers) = run(backend, backend, &[0], opts(1000, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    assert!(r.connections >= r.transactions, "{r}");
    assert!(servers[0].accepted >= 2000);
}

/// 1,000 persistent connections, random sizes up to 64 KiB.
fn a_thousand_persistent_connections(backend: BackendKind) {
    let (r, servers) = run(backend, backend, &[0], opts(1000, 0, 5000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(servers[0].accepted, 1000);
}

/// Two server cores on one port: each gets connections (`SO_REUSEPORT`).
fn two_cores_share_the_port(backend: BackendKind) {
    let (r, servers) = run(backend, backend, &[0, 1], opts(200, 1, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert_eq!(servers.len(), 2);
    for s in &servers {
        assert!(s.accepted > 0, "a core accepted nothing: {servers:?}");
    }
}

#[test]
fn a_thousand_short_connections_over_epoll_every_byte_verified() {
    a_thousand_short_connections(Epoll);
}

#[test]
fn a_thousand_persistent_connections_over_epoll_every_byte_verified() {
    a_thousand_persistent_connections(Epoll);
}

#[test]
fn two_epoll_cores_share_the_port_through_reuseport() {
    two_cores_share_the_port(Epoll);
}

#[test]
fn a_thousand_short_connections_over_uring_every_byte_verified() {
    a_thousand_short_connections(Uring);
}

#[test]
fn a_thousand_persistent_connections_over_uring_every_byte_verified() {
    a_thousand_persistent_connections(Uring);
}

#[test]
fn two_uring_cores_share_the_port_through_reuseport() {
    two_cores_share_the_port(Uring);
}

#[test]
fn uring_server_and_epoll_client_interoperate_and_back() {
    let (r, _) = run(Uring, Epoll, &[0], opts(100, 4, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    let (r, _) = run(Epoll, Uring, &[0], opts(100, 4, 2000));
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
}
