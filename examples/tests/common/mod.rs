//! What the example tests share: the examples' own code, and driving an HTTP server with
//! curl and wrk.
#![allow(clippy::unwrap_used, dead_code, unreachable_pub)]

#[path = "../../hyper_server.rs"]
pub mod hyper_server;

use std::net::SocketAddrV4;
use std::process::Command;
use std::time::{Duration, Instant};

use megatcp_echo::LoadOpts;

/// The echo load of the async echo's tests: `connections` at a time, `txns_per_conn`
/// transactions each (0: persistent), messages of 1 B to 64 KiB, every byte verified, until
/// `max` transactions (at most 60 s).
pub fn echo_load_opts(
    target: SocketAddrV4,
    connections: usize,
    txns_per_conn: u64,
    max: u64,
) -> LoadOpts {
    LoadOpts {
        seed: 11,
        ..LoadOpts::until(target, connections, txns_per_conn, max)
    }
}

/// The client of an echo pair run in one process (in-memory wire or DPDK ring pair): the
/// load of [`echo_load_opts`] to the pair's server address, on one core.
pub fn pair_client(connections: usize, txns_per_conn: u64, max: u64) -> megatcp_echo::LoadApp {
    let target = SocketAddrV4::new(megatcp_launch::pair::SERVER_IP, 7);
    megatcp_echo::LoadApp {
        base: echo_load_opts(target, connections, txns_per_conn, max),
        cores: 1,
    }
}

/// Whether `tool` is installed; when it is not, a test that needs it is skipped (a note), or
/// fails as root (`scripts/install-deps` installs it, so it must be there).
pub fn have(tool: &str) -> bool {
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
pub fn run(args: &[&str]) -> Vec<u8> {
    megatcp_test_support::output_ok(Command::new(args[0]).args(&args[1..])).stdout
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
