//! AF_XDP against the Linux kernel on the veth testbed (root only; `scripts/test` runs it;
//! the test takes the testbed's lock itself):
//! the Linux TCP stack (the echo load generator on the epoll backend, in the client
//! namespace) talks to `megatcp-echo serve --backend afxdp` (in the server namespace);
//! every echoed byte is verified. Also: ping and ARP both ways, a clean stop on SIGTERM
//! (XDP program detached), and a clean restart after `kill -9`.
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use megatcp_test_support::Proc;
use megatcp_test_support::testbed::{self, Testbed};

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-echo");
const SERVER: &str = "10.77.0.10";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

fn start_server() -> Proc {
    start_server_on("0", Stdio::null())
}

/// Starts the AF_XDP echo server on `cores`, its stderr to `stderr`.
fn start_server_on(cores: &str, stderr: Stdio) -> Proc {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            "megatcp-srv",
            BIN,
            "serve",
            "--backend",
            "afxdp",
        ])
        .args([
            "--iface",
            "mtcp-srv",
            "--ip",
            &format!("{SERVER}/24"),
            "--port",
            "7",
            "--cores",
            cores,
        ])
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let server = Proc::new(child);
    // Wait until it answers ARP and TCP: a short load run succeeds.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if load(&[
            "--connections",
            "1",
            "--duration",
            "200ms",
            "--warmup",
            "0s",
        ])
        .is_ok()
        {
            return server;
        }
        assert!(
            Instant::now() < deadline,
            "the AF_XDP server did not come up"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// Runs the kernel-path load generator in the client namespace; the JSON report.
fn load(extra: &[&str]) -> Result<serde_json::Value, String> {
    run_load(
        &[
            "--backend",
            "epoll",
            "--cores",
            "1",
            "--connect",
            &format!("{SERVER}:7"),
        ],
        extra,
    )
}

/// Runs `megatcp-echo load` in the client namespace with `args` then `extra`.
fn run_load(args: &[&str], extra: &[&str]) -> Result<serde_json::Value, String> {
    let mut all = vec![BIN, "load", "--json"];
    all.extend_from_slice(args);
    all.extend_from_slice(extra);
    testbed::report_in_client(&all)
}

#[test]
fn linux_kernel_client_against_the_afxdp_server() {
    if !megatcp_test_support::is_root() {
        eprintln!("note: not root: the AF_XDP test needs network namespaces; skipped");
        return;
    }
    if !testbed::hold_lock("linux_kernel_client_against_the_afxdp_server") {
        return;
    }
    let bed = Testbed::up();
    let server = start_server();

    // 1,000 concurrent connections, one transaction each, random sizes up to 64 KiB.
    let r = load(&[
        "--connections",
        "1000",
        "--msg-size",
        "1..65536",
        "--txns-per-conn",
        "1",
        "--duration",
        "3s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() >= 1000, "{r}");
    // Persistent connections, 64 B.
    let r = load(&[
        "--connections",
        "64",
        "--msg-size",
        "64",
        "--duration",
        "2s",
    ])
    .unwrap();
    assert!(r["transactions"].as_u64().unwrap() > 1000, "{r}");

    // 1 GiB each way on one connection (1,024 echoes of 1 MiB), every byte compared.
    let r = load(&[
        "--connections",
        "1",
        "--msg-size",
        "1048576",
        "--max-txns",
        "1024",
        "--duration",
        "120s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["bytes"].as_u64().unwrap() >= 1 << 30, "{r}");

    // Ping is answered; ARP resolved both ways (the kernel knows our MAC).
    let ping = sh(&[
        "ip",
        "netns",
        "exec",
        "megatcp-cli",
        "ping",
        "-c",
        "3",
        "-i",
        "0.2",
        "-W",
        "2",
        SERVER,
    ]);
    assert!(
        ping.status.success(),
        "ping: {}",
        String::from_utf8_lossy(&ping.stdout)
    );
    let neigh = sh(&["ip", "-n", "megatcp-cli", "neigh", "show", SERVER]);
    assert!(
        String::from_utf8_lossy(&neigh.stdout).contains("lladdr"),
        "no ARP entry"
    );

    // SIGTERM: graceful stop, exit 0, XDP program gone.
    assert!(server.terminate().success());
    let link = sh(&["ip", "-n", "megatcp-srv", "link", "show", "mtcp-srv"]);
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP program left attached"
    );

    // The other way round: megatcp's load generator over AF_XDP (client namespace) against
    // a Linux kernel echo server (the epoll backend, server namespace, kernel address).
    let kernel_server = Proc::new(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                "megatcp-srv",
                BIN,
                "serve",
                "--backend",
                "epoll",
                "--port",
                "7",
                "--cores",
                "0",
            ])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    let xdp_client = [
        "--backend",
        "afxdp",
        "--iface",
        "mtcp-cli",
        "--ip",
        "10.77.0.20/24",
        "--cores",
        "1",
        "--connect",
        "10.77.0.1:7",
    ];
    let r = run_load(
        &xdp_client,
        &[
            "--connections",
            "1000",
            "--msg-size",
            "1..65536",
            "--txns-per-conn",
            "1",
            "--duration",
            "3s",
            "--warmup",
            "0s",
        ],
    )
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() >= 1000, "{r}");
    let r = run_load(
        &xdp_client,
        &[
            "--connections",
            "1",
            "--msg-size",
            "1048576",
            "--max-txns",
            "1024",
            "--duration",
            "120s",
            "--warmup",
            "0s",
        ],
    )
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["bytes"].as_u64().unwrap() >= 1 << 30, "{r}");
    assert!(kernel_server.terminate().success());

    // kill -9 leaves the XDP program attached; the next start says so, replaces it, serves.
    let server = start_server();
    server.signal("-KILL");
    let restart_log =
        std::env::temp_dir().join(format!("megatcp-restart-{}.log", std::process::id()));
    let server = start_server_on(
        "0",
        Stdio::from(std::fs::File::create(&restart_log).unwrap()),
    );
    let r = load(&["--connections", "16", "--duration", "1s"]).unwrap();
    assert!(r["transactions"].as_u64().unwrap() > 0, "{r}");
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&restart_log).unwrap();
    let _ = std::fs::remove_file(&restart_log);
    assert!(
        text.contains("still attached") && text.contains("replacing it"),
        "{text}"
    );
    assert!(
        text.contains("native XDP, copy mode"),
        "mode not reported: {text}"
    );

    // Two queues, two cores: both accept, and flows the veth delivers to the core that does
    // not own them are steered to their owner (counted) and served.
    drop(bed);
    let _bed = Testbed::up_with(&["--queues", "2"]);
    let log_path = std::env::temp_dir().join(format!("megatcp-afxdp-{}.log", std::process::id()));
    let log = std::fs::File::create(&log_path).unwrap();
    let server = start_server_on("0,1", Stdio::from(log));
    let r = load(&[
        "--connections",
        "200",
        "--txns-per-conn",
        "1",
        "--msg-size",
        "1..4096",
        "--duration",
        "2s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() > 200, "{r}");
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&log_path).unwrap();
    let _ = std::fs::remove_file(&log_path);
    let field = |line: &str, name: &str| -> u64 {
        let at = line
            .find(name)
            .unwrap_or_else(|| panic!("no {name:?} in {line}"))
            + name.len();
        line[at..]
            .split(|c: char| !c.is_ascii_digit())
            .find(|t| !t.is_empty())
            .unwrap()
            .parse()
            .unwrap()
    };
    // The runtime's per-core report lines (the server prints its own per-core line too).
    let cores: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("core ") && l.contains(" steered out "))
        .collect();
    assert_eq!(cores.len(), 2, "{text}");
    let mut steered = 0;
    for line in &cores {
        assert!(
            field(line, "conns accepted ") > 0,
            "a core accepted nothing: {line}"
        );
        // "... steered out X in Y dropped Z"
        let tail = &line[line.find("steered out ").unwrap()..];
        let nums: Vec<u64> = tail.split(' ').filter_map(|t| t.parse().ok()).collect();
        assert_eq!(nums.len(), 3, "{line}");
        assert_eq!(nums[2], 0, "steering dropped frames: {line}");
        steered += nums[0] + nums[1];
    }
    assert!(steered > 0, "no frame was steered: {text}");
}
