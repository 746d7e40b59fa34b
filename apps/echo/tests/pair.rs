//! The echo server and load generator over the wire backend, on the engine's pinned cores:
//! every echoed byte is verified by the load generator.
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};

use megatcp_echo::pair::{PairConfig, PairOpts, run_pair};
use megatcp_echo::{LoadOpts, MsgSize};

fn opts(connections: usize, msg: MsgSize, txns_per_conn: u64, max_txns: u64) -> PairOpts {
    PairOpts {
        load: LoadOpts {
            msg,
            seed: 42,
            ..LoadOpts::until(
                SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
                connections,
                txns_per_conn,
                max_txns,
            )
        },
        pair: PairConfig::default(),
    }
}

/// Ordinary FIN closes at full rate: the client closes first and holds TIME-WAIT (as
/// records); its ports are reused long before the records expire.
#[test]
fn two_hundred_thousand_fin_closed_short_connections_every_byte_verified() {
    let r = run_pair(opts(64, MsgSize::Fixed(64), 1, 200_000)).unwrap();
    assert_eq!(r.load.errors.total(), 0, "{}", r.load);
    assert!(r.load.transactions >= 200_000, "{}", r.load);
    assert!(r.load.connections >= 200_000, "{}", r.load);
    let client = |f: fn(&megatcp_launch::CoreReport) -> u64| r.client.iter().map(f).sum::<u64>();
    let server = |f: fn(&megatcp_launch::CoreReport) -> u64| r.server.iter().map(f).sum::<u64>();
    assert_eq!(
        client(|c| c.stack.conns_reset) + server(|c| c.stack.conns_reset),
        0
    );
    // More connections than the client has ephemeral ports: TIME-WAIT ports were reused.
    assert!(client(|c| c.stack.tcp_time_wait_entered) >= 200_000);
    assert!(client(|c| c.stack.tcp_time_wait_reused) > 0);
}

/// Loss, duplication and reordering (1 % each, both ways): every byte still arrives.
#[test]
fn persistent_connections_through_one_percent_loss_duplication_and_reordering() {
    let mut o = opts(64, MsgSize::Fixed(64), 0, 20_000);
    o.pair.faults = Some(megatcp_echo::pair::FaultConfig {
        seed: 9,
        loss: 0.01,
        duplicate: 0.01,
        reorder: 0.01,
        ..Default::default()
    });
    let r = run_pair(o).unwrap();
    assert_eq!(r.load.errors.total(), 0, "{}", r.load);
    assert!(r.load.transactions >= 20_000, "{}", r.load);
    let retransmits: u64 = r
        .server
        .iter()
        .chain(&r.client)
        .map(|c| c.stack.tcp_retransmits)
        .sum();
    assert!(retransmits > 0, "the faults were real");
}

#[test]
fn a_thousand_short_connections_with_random_sizes_every_byte_verified() {
    let r = run_pair(opts(1000, MsgSize::Range(1, 65536), 1, 2000)).unwrap();
    assert_eq!(r.load.errors.total(), 0, "{}", r.load);
    assert!(r.load.transactions >= 2000, "{}", r.load);
    // One transaction per connection: every transaction had its own connection.
    assert!(r.load.connections >= r.load.transactions, "{}", r.load);
    let accepted: u64 = r.server.iter().map(|c| c.stack.conns_accepted).sum();
    assert!(accepted >= 2000);
    assert!(
        r.load.bytes > 2000 * 16 * 1024,
        "sizes up to 64 KiB were used"
    );
}

#[test]
fn a_thousand_persistent_connections_with_random_sizes_every_byte_verified() {
    let r = run_pair(opts(1000, MsgSize::Range(1, 65536), 0, 5000)).unwrap();
    assert_eq!(r.load.errors.total(), 0, "{}", r.load);
    assert!(r.load.transactions >= 5000, "{}", r.load);
    let accepted: u64 = r.server.iter().map(|c| c.stack.conns_accepted).sum();
    assert_eq!(accepted, 1000, "persistent: each connection opened once");
}

#[test]
fn two_cores_serve_one_port_each_connection_on_one_core() {
    let mut o = opts(200, MsgSize::Fixed(100), 1, 2000);
    o.pair.server_cores = vec![0, 1];
    o.pair.client_cores = vec![0, 1];
    let r = run_pair(o).unwrap();
    assert_eq!(r.load.errors.total(), 0, "{}", r.load);
    assert!(r.load.transactions >= 2000, "{}", r.load);
    // Partitioned listening: both cores accepted connections on the shared port.
    for core in &r.server {
        assert!(
            core.stack.conns_accepted > 0,
            "core {} accepted nothing",
            core.core
        );
        // A segment for a connection owned by the other core would land here unknown.
        assert_eq!(
            core.stack.drops.tcp_no_socket, 0,
            "core {}: {:?}",
            core.core, core.stack
        );
    }
    let accepted: u64 = r.server.iter().map(|c| c.stack.conns_accepted).sum();
    let opened: u64 = r.client.iter().map(|c| c.stack.conns_opened).sum();
    assert_eq!(
        accepted, opened,
        "every connection was accepted by exactly one core"
    );
}
