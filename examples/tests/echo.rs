//! The async echo server (`async_echo.rs`) under the same byte-verifying load as
//! `megatcp-echo serve` (the channel load generator of apps/echo): 1,000 short and 1,000
//! persistent connections, random sizes up to 64 KiB, on megatcp's own stack over the
//! in-memory wire and on the kernel's TCP through epoll and io_uring (loopback).
//! AF_XDP and DPDK: `afxdp.rs`, `dpdk.rs`.
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../async_echo.rs"]
mod async_echo;
mod common;

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::atomic::Ordering;
use std::time::Duration;

use common::{echo_load_opts, pair_client};
use megatcp_async::AsyncApp;
use megatcp_echo::{LoadApp, LoadReport};
use megatcp_launch::BackendKind::{self, Epoll, Uring};
use megatcp_launch::pair::{PairConfig, run_pair};
use megatcp_launch::{BackendArgs, Cores, Launch, UringConfig};
use megatcp_test_support::free_port;

/// The async echo on core 0 and the load on core 1, over the in-memory wire.
fn over_the_wire(connections: usize, txns_per_conn: u64, max: u64) -> (LoadReport, u64) {
    let server = AsyncApp::new(|_| async_echo::serve(7, 65536));
    let client = pair_client(connections, txns_per_conn, max);
    let r = run_pair(&server, &client, &PairConfig::default()).unwrap();
    let accepted = r.server[0].output.as_ref().unwrap().as_ref().unwrap();
    let report = r.client.into_iter().next().unwrap().output.unwrap();
    (report, *accepted)
}

/// The async echo on `backend` (core 0) and the load over epoll (core 1), on loopback.
fn over_the_kernel(
    backend: BackendKind,
    connections: usize,
    txns_per_conn: u64,
    max: u64,
) -> (LoadReport, u64) {
    let port = free_port();
    let args = |backend, core| BackendArgs {
        backend,
        cores: Cores(vec![core]),
        ..BackendArgs::default()
    };
    let (server_args, client_args) = (args(backend, 0), args(Epoll, 1));
    let launch = |a| {
        Launch::new(a)
            .pin(false)
            .handle_signals(false)
            .uring_config(UringConfig {
                files: 4096,
                ..UringConfig::default()
            })
    };
    let server_run = launch(&server_args);
    let stop = server_run.stop_flag();
    let server = AsyncApp::new(move |_| async_echo::serve(port, 4096));
    std::thread::scope(|s| {
        let server = s.spawn(|| server_run.run(&server));
        std::thread::sleep(Duration::from_millis(200));
        let target = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
        let client = launch(&client_args).run(&LoadApp {
            base: echo_load_opts(target, connections, txns_per_conn, max),
            cores: 1,
        });
        stop.store(true, Ordering::Relaxed);
        let accepted = server.join().unwrap().unwrap().remove(0).output.unwrap();
        (client.unwrap().remove(0).output.unwrap(), accepted.unwrap())
    })
}

fn short(r: &LoadReport, accepted: u64) {
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 2000, "{r}");
    assert!(r.connections >= r.transactions, "{r}");
    assert!(accepted >= 2000, "accepted {accepted}");
}

fn persistent(r: &LoadReport, accepted: u64) {
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(accepted, 1000, "persistent: each connection accepted once");
}

#[test]
fn async_echo_1000_short_connections_over_the_wire_every_byte_verified() {
    let (r, accepted) = over_the_wire(1000, 1, 2000);
    short(&r, accepted);
}

#[test]
fn async_echo_1000_persistent_connections_over_the_wire_every_byte_verified() {
    let (r, accepted) = over_the_wire(1000, 0, 5000);
    persistent(&r, accepted);
}

#[test]
fn async_echo_1000_short_connections_over_epoll_every_byte_verified() {
    let (r, accepted) = over_the_kernel(Epoll, 1000, 1, 2000);
    short(&r, accepted);
}

#[test]
fn async_echo_1000_persistent_connections_over_epoll_every_byte_verified() {
    let (r, accepted) = over_the_kernel(Epoll, 1000, 0, 5000);
    persistent(&r, accepted);
}

#[test]
fn async_echo_1000_short_connections_over_uring_every_byte_verified() {
    let (r, accepted) = over_the_kernel(Uring, 1000, 1, 2000);
    short(&r, accepted);
}

#[test]
fn async_echo_1000_persistent_connections_over_uring_every_byte_verified() {
    let (r, accepted) = over_the_kernel(Uring, 1000, 0, 5000);
    persistent(&r, accepted);
}
