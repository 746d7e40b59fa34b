//! The async runtime on the DPDK backend (feature `dpdk`), two megatcp stacks over a
//! `rte_eth_from_rings` port pair in one process: the async echo under the byte-verifying
//! load of apps/echo (1,000 short and 1,000 persistent connections), hyper's server and
//! client talking to each other, and timeouts on reads that never complete (within 2 ms of
//! their deadline; the cancelled reads lose nothing).
#![cfg(feature = "dpdk")]
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../async_echo.rs"]
mod async_echo;
mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../hyper_client.rs"]
mod hyper_client;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use common::{hyper_server, pair_client};
use megatcp_async::{AsyncApp, TcpStream, timeout};
use megatcp_echo::LoadReport;
use megatcp_launch::dpdk::run_ring_pair;
use megatcp_launch::pair::{PairConfig, SERVER_IP};
use megatcp_test_support::{IdleCheck, alone, beside_others, machine_on_time};

/// The async echo and the load over a fresh ring pair `name`: the load's report and the
/// connections the server accepted.
fn echo_run(name: &str, connections: usize, txns_per_conn: u64, max: u64) -> (LoadReport, u64) {
    let server = AsyncApp::new(|_| async_echo::serve(7, 65536));
    let client = pair_client(connections, txns_per_conn, max);
    let run = run_ring_pair(name, &server, &client, &PairConfig::default()).unwrap();
    let (s, c) = (&run.cores.server[0], &run.cores.client[0]);
    eprintln!("{}\n{}", s.report, c.report);
    let accepted = *s.output.as_ref().unwrap().as_ref().unwrap();
    // The frames went through the DPDK ports.
    assert!(run.server_port.ipackets > 0 || run.client_port.ipackets > 0);
    let report = run.cores.client.into_iter().next().unwrap().output.unwrap();
    (report, accepted)
}

#[test]
fn async_echo_over_dpdk_1000_short_and_1000_persistent_connections_every_byte_verified() {
    let _timing = beside_others();
    let (r, accepted) = echo_run("mtcp_ae1", 1000, 0, 5000);
    eprintln!("persistent: {r}");
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(r.transactions >= 5000, "{r}");
    assert_eq!(accepted, 1000);
    let (r, accepted) = echo_run("mtcp_ae2", 1000, 1, 2000);
    eprintln!("short: {r}");
    assert_eq!(r.errors.total(), 0, "{r}");
    assert!(
        r.transactions >= 2000 && r.connections >= r.transactions,
        "{r}"
    );
    assert!(accepted >= 2000);
}

#[test]
fn hyper_server_and_client_over_dpdk() {
    let _timing = beside_others();
    let server = AsyncApp::new(|_| hyper_server::serve(80));
    let client = AsyncApp::new(|_| {
        hyper_client::fetch(hyper_client::Fetch {
            url: format!("http://{SERVER_IP}:80/bytes/50000")
                .parse()
                .unwrap(),
            requests: 500,
            connections: 8,
            post: None,
        })
    });
    let run = run_ring_pair("mtcp_ah1", &server, &client, &PairConfig::default()).unwrap();
    let r = run.cores.client.into_iter().next().unwrap().output.unwrap();
    assert_eq!((r.ok, r.failed), (500, 0), "{:?}", r.error);
    assert!(r.last_body == hyper_server::pattern(50_000));
}

#[test]
fn a_timeout_on_a_read_that_never_completes_fires_within_2ms_of_its_deadline_over_dpdk() {
    // Measures timer lateness: no other test of this file runs meanwhile.
    let _alone = alone();
    let server = AsyncApp::new(|_| async_echo::serve(7, 64)).grace(Duration::from_millis(100));
    let client = AsyncApp::new(|_| async {
        let mut s = TcpStream::connect(SocketAddrV4::new(SERVER_IP, 7))
            .await
            .unwrap();
        let mut buf = [0u8; 16];
        let (mut late, mut busy) = (Vec::new(), 0);
        while late.len() < 10 && busy < 400 {
            let idle = IdleCheck::start();
            let deadline = Instant::now() + Duration::from_millis(25);
            let r = timeout(Duration::from_millis(25), s.read(&mut buf)).await;
            let l = Instant::now() - deadline;
            assert!(r.is_err(), "nothing was sent: the read cannot complete");
            // A sample counts when the thread was kept off its CPU by other processes for
            // at most 1 ms in all meanwhile and the machine woke other sleepers at most 1 ms
            // late from the deadline on (the machine is a shared VM); it must still end
            // within the whole 2 ms of its deadline.
            let slack = Duration::from_millis(1);
            if idle.was_idle(slack) && machine_on_time(deadline, slack) {
                late.push(l);
            } else {
                busy += 1;
            }
        }
        // The cancelled reads lost nothing and misrouted nothing: the echo comes whole.
        s.write_all(b"0123456789").await.unwrap();
        let mut got = Vec::new();
        while got.len() < 10 {
            let n = s.read(&mut buf).await.unwrap();
            assert!(n > 0, "EOF after {got:?}");
            got.extend_from_slice(&buf[..n]);
        }
        assert_eq!(got, b"0123456789");
        late.sort();
        (late, busy)
    })
    .grace(Duration::from_millis(100));
    let run = run_ring_pair("mtcp_at1", &server, &client, &PairConfig::default()).unwrap();
    let (late, busy) = run.cores.client.into_iter().next().unwrap().output.unwrap();
    eprintln!(
        "dpdk: timer lateness on an idle core {late:?} ({busy} samples on a busy core set aside)"
    );
    assert_eq!(late.len(), 10, "the machine was too busy to measure");
    let worst = late[late.len() - 1];
    assert!(
        worst <= Duration::from_millis(2),
        "a timeout fired {worst:?} after its deadline"
    );
}
