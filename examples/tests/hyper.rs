//! hyper 1.x, unchanged, on megatcp's async runtime: the `hyper-server` binary over epoll
//! and io_uring answers curl (bodies compared byte for byte), wrk (keep-alive, no error) and
//! the `hyper-client` binary; and the server and client examples talk to each other over
//! megatcp's own stack (the in-memory wire) in one process. AF_XDP: `afxdp.rs`; DPDK:
//! `dpdk.rs`.
#![allow(clippy::unwrap_used)]

mod common;
#[allow(dead_code, unreachable_pub)]
#[path = "../hyper_client.rs"]
mod hyper_client;

use std::process::{Command, Stdio};

use bytes::Bytes;
use megatcp_async::AsyncApp;
use megatcp_launch::pair::{PairConfig, SERVER_IP, run_pair};
use megatcp_test_support::{Proc, free_port};

use common::{curl_checks, have, hyper_server, run, wait_for, wrk};

const SERVER: &str = env!("CARGO_BIN_EXE_hyper-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_hyper-client");

#[test]
fn hyper_server_over_epoll_and_uring_answers_curl_wrk_and_the_hyper_client() {
    if !have("curl") || !have("wrk") {
        return;
    }
    for (server, client) in [("epoll", "uring"), ("uring", "epoll")] {
        let port = free_port().to_string();
        let proc = Proc::new(
            Command::new(SERVER)
                .args(["--backend", server, "--cores", "0", "--port", &port])
                .stderr(Stdio::null())
                .spawn()
                .unwrap(),
        );
        let base = format!("http://127.0.0.1:{port}");
        wait_for(&base, &[]);
        curl_checks(&base, &[]);
        let rps = wrk(&format!("{base}/"), 32, 1, &[]);
        eprintln!("{server}: wrk {rps:.0} requests/s");
        // hyper's client on megatcp against hyper's server on megatcp: 2,000 requests.
        let out = run(&[
            CLIENT,
            "--backend",
            client,
            "--cores",
            "1",
            "--url",
            &format!("{base}/bytes/100"),
            "--requests",
            "2000",
            "--connections",
            "8",
        ]);
        let r: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(r["ok"], 2000, "{r}");
        assert_eq!(r["bytes"], 200_000, "{r}");
        // SIGTERM: the connections are shut down gracefully, exit 0.
        assert!(proc.terminate().success());
    }
}

#[test]
fn hyper_server_and_client_on_megatcps_own_stack_in_one_process() {
    let server = AsyncApp::new(|_| hyper_server::serve(80));
    let client = AsyncApp::new(|_| async {
        let url = |p: &str| format!("http://{SERVER_IP}:80{p}").parse().unwrap();
        let get = hyper_client::fetch(hyper_client::Fetch {
            url: url("/bytes/100000"),
            requests: 300,
            connections: 4,
            post: None,
        })
        .await;
        let body: Vec<u8> = (0..200_000u32).map(|i| (i % 13) as u8).collect();
        let post = hyper_client::fetch(hyper_client::Fetch {
            url: url("/echo"),
            requests: 20,
            connections: 2,
            post: Some(Bytes::from(body)),
        })
        .await;
        let missing = hyper_client::fetch(hyper_client::Fetch {
            url: url("/nothing"),
            requests: 1,
            connections: 1,
            post: None,
        })
        .await;
        (get, post, missing)
    });
    let r = run_pair(&server, &client, &PairConfig::default()).unwrap();
    let (get, post, missing) = r.client.into_iter().next().unwrap().output.unwrap();
    assert_eq!((get.ok, get.failed), (300, 0), "{get:?}");
    assert_eq!(get.bytes, 300 * 100_000);
    assert!(get.last_body == hyper_server::pattern(100_000));
    assert_eq!((post.ok, post.failed), (20, 0), "{:?}", post.error);
    assert!(post.last_body == (0..200_000u32).map(|i| (i % 13) as u8).collect::<Vec<_>>());
    assert_eq!(missing.failed, 1);
    assert!(missing.error.unwrap().contains("404"));
    // Six connections, accepted by the server's runtime.
    assert_eq!(r.server[0].output.as_ref().unwrap().as_ref().unwrap(), &7);
}
