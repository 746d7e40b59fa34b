//! `megatcp-http` over AF_XDP on the veth testbed (root only, feature `afxdp`): the server
//! runs megatcp's own stack on `mtcp-srv` (namespace `megatcp-srv`, 10.77.0.10/24); curl,
//! wrk and ab run unchanged in `megatcp-cli` over the Linux kernel, every file compared byte
//! for byte; then our load generator over AF_XDP too (keep-alive, and `Connection: close`
//! with RST closes), every response verified. The test holds the testbed's lock
//! (`/run/megatcp-testbed.lock`) itself.
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

const SERVER: &str = "10.77.0.10";
const LOCK: &str = "/run/megatcp-testbed.lock";

fn testbed(arg: &str) {
    let script = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/testbed");
    let out = Command::new(script).arg(arg).output().unwrap();
    assert!(
        out.status.success(),
        "testbed {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Takes the testbed down however the test ends.
struct Testbed;

impl Drop for Testbed {
    fn drop(&mut self) {
        testbed("down");
    }
}

/// Whether some ancestor process is a `flock` holding the testbed lock.
fn lock_held_by_an_ancestor() -> bool {
    let mut pid = std::process::id().to_string();
    while pid != "0" && pid != "1" {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let Some(parent) = status.lines().find_map(|l| l.strip_prefix("PPid:")) else {
            return false;
        };
        pid = parent.trim().to_string();
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let argv = String::from_utf8_lossy(&argv);
        if argv.starts_with("flock") && argv.contains(LOCK) {
            return true;
        }
    }
    false
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(1))
            == Some("0")
    })
}

fn load_in_client_ns(args: &[&str]) -> serde_json::Value {
    let out = Command::new("ip")
        .args([
            "netns",
            "exec",
            "megatcp-cli",
            HTTP,
            "load",
            "--json",
            "--cores",
            "1",
        ])
        .args(["--connect", &format!("{SERVER}:8080"), "--duration", "2"])
        .args(args)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{r}");
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert_eq!(r["errors"]["status"], 0, "{r}");
    assert!(r["requests"].as_u64().unwrap() > 1000, "{r}");
    r
}

#[test]
fn clients_against_the_afxdp_server() {
    if !is_root() {
        eprintln!("note: not root: the AF_XDP test needs network namespaces; skipped");
        return;
    }
    if !lock_held_by_an_ancestor() {
        let status = Command::new("flock")
            .args(["-w", "1800", LOCK])
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", "clients_against_the_afxdp_server", "--nocapture"])
            .status()
            .unwrap();
        assert!(status.success(), "the test under {LOCK} failed");
        return;
    }
    testbed("down");
    testbed("up");
    let _testbed = Testbed;
    let root = tree("afxdp");
    let child = Command::new("ip")
        .args(["netns", "exec", "megatcp-srv", HTTP, "-p", "8080", "--root"])
        .arg(&root)
        .args(["--backend", "afxdp", "--iface", "mtcp-srv", "--cores", "0"])
        .args(["--ip", &format!("{SERVER}/24")])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Proc { child, port: 8080 };
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
    for args in [
        vec!["--backend", "epoll"],
        vec![
            "--backend",
            "afxdp",
            "--iface",
            "mtcp-cli",
            "--ip",
            "10.77.0.20/24",
        ],
        vec![
            "--backend",
            "afxdp",
            "--iface",
            "mtcp-cli",
            "--ip",
            "10.77.0.20/24",
            "--close",
            "--close-rst",
        ],
        vec![
            "--backend",
            "afxdp",
            "--iface",
            "mtcp-cli",
            "--ip",
            "10.77.0.20/24",
            "--path",
            "/data/65536.bin",
            "--expect-file",
            big.to_str().unwrap(),
        ],
    ] {
        let r = load_in_client_ns(&args);
        eprintln!("load {args:?}: {} requests/s", r["requests_per_sec"]);
    }
    // A clean stop on SIGTERM.
    Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = server.child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = std::fs::remove_dir_all(&root);
}
