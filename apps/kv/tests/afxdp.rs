//! `megatcp-kv` over AF_XDP on the veth testbed (root only, feature `afxdp`; the test takes
//! the testbed's lock `/run/megatcp-testbed.lock` itself unless run under it): the server runs megatcp's own stack on `mtcp-srv` in
//! namespace `megatcp-srv` with the address 10.77.0.10/24; the clients run in `megatcp-cli`
//! over the Linux kernel: libmemcached's `memccapable` (ASCII and binary suites) and our
//! load generator (every value verified).
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use megatcp_test_support::Proc;
use megatcp_test_support::testbed;

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-kv");
const SERVER: &str = "10.77.0.10";

fn memccapable(mode: &str) -> (bool, String) {
    let out = testbed::in_client(&["memccapable", "-h", SERVER, "-p", "11211", "-t", "5", mode]);
    let all = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (
        out.status.success() && all.contains("All tests passed") && !all.contains("[FAIL]"),
        all,
    )
}

#[test]
fn memcached_clients_against_the_afxdp_server() {
    let Some(_testbed) = testbed::fresh("memcached_clients_against_the_afxdp_server") else {
        return;
    };
    let child = Command::new("ip")
        .args(["netns", "exec", "megatcp-srv", BIN, "-p", "11211"])
        .args(["--backend", "afxdp", "--iface", "mtcp-srv"])
        .args(["--ip", &format!("{SERVER}/24"), "--cores", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let server = Proc::new(child);
    // Up when it answers: the version test of the suite passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = testbed::in_client(&[
            "memccapable",
            "-h",
            SERVER,
            "-p",
            "11211",
            "-t",
            "1",
            "-a",
            "-T",
            "ascii version",
        ]);
        if out.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the AF_XDP server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    for mode in ["-a", "-b"] {
        let (ok, out) = memccapable(mode);
        assert!(ok, "memccapable {mode} over AF_XDP:\n{out}");
    }
    let out = testbed::in_client(&[
        BIN,
        "load",
        "--backend",
        "epoll",
        "--cores",
        "1",
        "--connect",
        &format!("{SERVER}:11211"),
        "--connections",
        "64",
        "--depth",
        "4",
        "--duration",
        "2",
        "--json",
    ]);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    assert_eq!(report["errors"]["verify"], 0, "{report}");
    assert!(report["ops"].as_u64().unwrap() > 10_000, "{report}");
    assert_eq!(
        report["hits"], report["gets"],
        "preloaded keys missing: {report}"
    );
    // A clean stop on SIGTERM.
    let status = server.terminate();
    assert!(status.success(), "exit status {status}");
}
