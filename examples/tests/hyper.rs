//! hyper 1.x, unchanged, on megatcp's async runtime: the `hyper-server` binary over epoll
//! and io_uring answers curl (bodies compared byte for byte), wrk (keep-alive, no error) and
//! the `hyper-client` binary; and the server and client examples talk to each other over
//! megatcp's own stack (the in-memory wire) in one process. AF_XDP: `afxdp.rs`; DPDK:
//! `dpdk.rs`.
#![allow(clippy::unwrap_used)]

#[allow(dead_code, unreachable_pub)]
#[path = "../hyper_client.rs"]
mod hyper_client;
#[allow(dead_code, unreachable_pub)]
#[path = "../hyper_server.rs"]
mod hyper_server;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use bytes::Bytes;
use megatcp_async::AsyncApp;
use megatcp_launch::pair::{PairConfig, SERVER_IP, run_pair};
use megatcp_test_support::{Proc, free_port};

const SERVER: &str = env!("CARGO_BIN_EXE_hyper-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_hyper-client");

/// Whether `tool` is installed; when it is not, a test that needs it is skipped (a note), or
/// fails as root (`scripts/install-deps` installs it, so it must be there).
fn have(tool: &str) -> bool {
    let found = Command::new("sh")
        .args(["-c", &format!("command -v {tool}")])
        .output()
        .is_ok_and(|o| o.status.success());
    assert!(
        found || !megatcp_test_support::is_root(),
        "{tool} missing: scripts/install-deps installs it"
    );
    if !found {
        eprintln!("note: {tool} not installed: skipped");
    }
    found
}

/// Runs `args`; its stdout, after checking it succeeded.
fn run(args: &[&str]) -> Vec<u8> {
    let out = Command::new(args[0]).args(&args[1..]).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Checks an HTTP server at `base` (e.g. `http://127.0.0.1:8080`) with curl: the three
/// routes, every body compared.
pub fn curl_checks(base: &str, wrapper: &[&str]) {
    let curl = |extra: &[&str]| {
        let mut args: Vec<&str> = wrapper.to_vec();
        args.extend(["curl", "-sS", "--max-time", "20"]);
        args.extend_from_slice(extra);
        run(&args)
    };
    assert_eq!(curl(&[&format!("{base}/")]), hyper_server::HELLO);
    let big = hyper_server::pattern(1_000_000);
    assert_eq!(curl(&[&format!("{base}/bytes/1000000")]), big);
    let file = std::env::temp_dir().join(format!("megatcp-post-{}", std::process::id()));
    let post: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 256) as u8).collect();
    std::fs::write(&file, &post).unwrap();
    let echoed = curl(&[
        "--data-binary",
        &format!("@{}", file.display()),
        &format!("{base}/echo"),
    ]);
    let _ = std::fs::remove_file(&file);
    assert!(echoed == post, "POST /echo: {} bytes back", echoed.len());
}

/// Runs wrk (keep-alive) against `url` for `secs`; requests per second, after checking that
/// no request failed.
pub fn wrk(url: &str, connections: u32, secs: u32, wrapper: &[&str]) -> f64 {
    let mut args: Vec<String> = wrapper.iter().map(|s| s.to_string()).collect();
    args.extend(
        [
            "wrk",
            "-t1",
            &format!("-c{connections}"),
            &format!("-d{secs}s"),
            url,
        ]
        .map(String::from),
    );
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let text = String::from_utf8(run(&args)).unwrap();
    assert!(!text.contains("Socket errors"), "{text}");
    assert!(!text.contains("Non-2xx"), "{text}");
    let rps: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .unwrap_or_else(|| panic!("no Requests/sec in {text}"))
        .trim()
        .parse()
        .unwrap();
    assert!(rps > 0.0, "{text}");
    rps
}

/// Waits until `GET /` answers at `base` (20 s at most).
pub fn wait_for(base: &str, wrapper: &[&str]) {
    let end = Instant::now() + Duration::from_secs(20);
    loop {
        let mut args: Vec<&str> = wrapper.to_vec();
        let url = format!("{base}/");
        args.extend(["curl", "-sS", "--max-time", "1", &url]);
        let ok = Command::new(args[0])
            .args(&args[1..])
            .output()
            .is_ok_and(|o| o.status.success());
        if ok {
            return;
        }
        assert!(Instant::now() < end, "the server at {base} did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
}

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
