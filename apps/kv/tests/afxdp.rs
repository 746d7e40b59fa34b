//! `megatcp-kv` over AF_XDP on the veth testbed (root only, feature `afxdp`; the test takes
//! the testbed's lock `/run/megatcp-testbed.lock` itself unless run under it): the server runs megatcp's own stack on `mtcp-srv` in
//! namespace `megatcp-srv` with the address 10.77.0.10/24; the clients run in `megatcp-cli`
//! over the Linux kernel: libmemcached's `memccapable` (ASCII and binary suites) and our
//! load generator (every value verified).
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-kv");
const SERVER: &str = "10.77.0.10";

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn testbed(arg: &str) {
    let out = Command::new(repo().join("scripts/testbed"))
        .arg(arg)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "testbed {arg}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The testbed, taken down when the test ends, however it ends.
struct Testbed;

impl Drop for Testbed {
    fn drop(&mut self) {
        testbed("down");
    }
}

/// The server, killed if the test fails half-way.
struct Server(Option<Child>);

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn in_client_ns(args: &[&str]) -> std::process::Output {
    Command::new("ip")
        .args(["netns", "exec", "megatcp-cli"])
        .args(args)
        .output()
        .unwrap()
}

fn memccapable(mode: &str) -> (bool, String) {
    let out = in_client_ns(&["memccapable", "-h", SERVER, "-p", "11211", "-t", "5", mode]);
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

const LOCK: &str = "/run/megatcp-testbed.lock";

/// Whether an ancestor of this process is `flock` on the testbed lock.
fn under_testbed_lock() -> bool {
    let mut pid = std::process::id();
    for _ in 0..64 {
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            return false;
        };
        let Some(ppid) = stat
            .rsplit_once(')')
            .and_then(|(_, r)| r.split_whitespace().nth(1))
            .and_then(|p| p.parse::<u32>().ok())
        else {
            return false;
        };
        if ppid <= 1 {
            return false;
        }
        let cmd = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("flock") && cmd.contains(LOCK) {
            return true;
        }
        pid = ppid;
    }
    false
}

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

#[test]
fn memcached_clients_against_the_afxdp_server() {
    if !is_root() {
        eprintln!("note: not root: the AF_XDP test needs network namespaces; skipped");
        return;
    }
    if !under_testbed_lock() {
        // The testbed is shared: run this test again under its lock.
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("flock")
            .args(["-w", "900", LOCK])
            .arg(exe)
            .args([
                "--exact",
                "memcached_clients_against_the_afxdp_server",
                "--nocapture",
            ])
            .status()
            .unwrap();
        assert!(status.success(), "the test under {LOCK} failed");
        return;
    }
    testbed("down");
    testbed("up");
    let _testbed = Testbed;
    let child = Command::new("ip")
        .args(["netns", "exec", "megatcp-srv", BIN, "-p", "11211"])
        .args(["--backend", "afxdp", "--iface", "mtcp-srv"])
        .args(["--ip", &format!("{SERVER}/24"), "--cores", "0"])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    let mut server = Server(Some(child));
    // Up when it answers: the version test of the suite passes.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = in_client_ns(&[
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
    let out = in_client_ns(&[
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
    let mut child = server.0.take().unwrap();
    Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            assert!(status.success(), "exit status {status}");
            break;
        }
        assert!(Instant::now() < deadline, "no exit after SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    }
}
