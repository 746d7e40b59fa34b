//! `megatcp-http` over AF_XDP on the veth testbed (root only, feature `afxdp`): the server
//! runs megatcp's own stack on `mtcp-srv` (namespace `megatcp-srv`, 10.77.0.10/24); curl,
//! wrk and ab run unchanged in `megatcp-cli` over the Linux kernel, every file compared byte
//! for byte; then our load generator over epoll and over AF_XDP (keep-alive, and
//! `Connection: close` with FIN and with RST closes), every response verified. The test
//! takes the testbed's lock (`/run/megatcp-testbed.lock`) itself, through test-support.
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use megatcp_test_support::testbed;

const SERVER: &str = "10.77.0.10";
/// The server's metrics port, inside the server's namespace.
const METRICS: u16 = 9181;

/// Our load generator in the client namespace against the server, 2 s: its report, with
/// every response verified.
fn load_in_client_ns(args: &[&str]) -> serde_json::Value {
    let target = format!("{SERVER}:8080");
    let mut all = vec![HTTP, "load", "--json", "--cores", "1", "--connect", &target];
    all.extend_from_slice(&["--duration", "2"]);
    all.extend_from_slice(args);
    let r = testbed::report_in_client(&all).unwrap_or_else(|e| panic!("load {args:?}: {e}"));
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert_eq!(r["errors"]["status"], 0, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 1000, "{r}");
    r
}

#[test]
fn clients_against_the_afxdp_server() {
    let Some(_testbed) = testbed::fresh("clients_against_the_afxdp_server") else {
        return;
    };
    let root = tree("afxdp");
    let child = Command::new("ip")
        .args(["netns", "exec", "megatcp-srv", HTTP, "-p", "8080", "--root"])
        .arg(&root)
        .args(["--backend", "afxdp", "--iface", "mtcp-srv", "--cores", "0"])
        .args(["--ip", &format!("{SERVER}/24")])
        // The operating flags, as every megatcp server takes them.
        .args(["--metrics", &format!("127.0.0.1:{METRICS}")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Proc::new(child);
    // Up when curl from the client namespace gets /hello.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let ok = cmd_in(Some("megatcp-cli"), "curl")
            .args([
                "-sf",
                "-m",
                "1",
                "-o",
                "/dev/null",
                &format!("http://{SERVER}:8080/hello"),
            ])
            .status()
            .unwrap()
            .success();
        if ok {
            break;
        }
        assert!(server.alive(), "the AF_XDP server exited");
        assert!(
            Instant::now() < deadline,
            "the AF_XDP server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    third_party_clients(
        Some("megatcp-cli"),
        &format!("http://{SERVER}:8080"),
        &root,
        64,
    );
    let big = root.join("data/65536.bin");
    // Our client over AF_XDP, with its own address on the client's veth.
    fn afxdp<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        let mut v = testbed::CLIENT_AFXDP.to_vec();
        v.extend_from_slice(extra);
        v
    }
    let big = big.to_str().unwrap();
    for args in [
        vec!["--backend", "epoll"],
        afxdp(&[]),
        vec!["--backend", "epoll", "--close"],
        afxdp(&["--close"]),
        // After the FIN-closing run the server holds every client port in TIME-WAIT (5 s):
        // this new client process (new timestamp offsets) finds about half of its SYNs
        // answered with a record's ACK, ends the record with an RST and starts over at once
        // (before the client did, every such connection waited for a 200 ms RTO).
        afxdp(&["--close", "--close-rst"]),
        afxdp(&["--path", "/data/65536.bin", "--expect-file", big]),
    ] {
        let r = load_in_client_ns(&args);
        eprintln!("load {args:?}: {} requests/s", r["requests_per_sec"]);
    }
    // Operating it: megatcp-stat reads the running server's counters, and its metrics
    // (served inside its namespace) count the frames it received.
    let view = Command::new(megatcp_test_support::sibling_bin(HTTP, "megatcp-stat"))
        .args(["show", &server.id().to_string()])
        .output()
        .unwrap();
    let view: serde_json::Value = serde_json::from_slice(&view.stdout).unwrap();
    assert_eq!(view["program"], "megatcp-http", "{view}");
    let metrics = cmd_in(Some("megatcp-srv"), "curl")
        .args([
            "-sf",
            "-m",
            "2",
            &format!("http://127.0.0.1:{METRICS}/metrics"),
        ])
        .output()
        .unwrap();
    let metrics = String::from_utf8_lossy(&metrics.stdout).to_string();
    let rx: f64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("megatcp_rx_frames_total{"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no megatcp_rx_frames_total in the metrics:\n{metrics}"));
    assert!(rx > 1000.0, "{metrics}");
    // A clean stop on SIGTERM.
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
    let _ = std::fs::remove_dir_all(&root);
}
