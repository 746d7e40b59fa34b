//! AF_XDP against the Linux kernel on the veth testbed (root only; `scripts/test` runs it;
//! the test takes the testbed's lock itself):
//! the Linux TCP stack (the echo load generator on the epoll backend, in the client
//! namespace) talks to `megatcp-echo serve --backend afxdp` (in the server namespace);
//! every echoed byte is verified. Also: ping and ARP both ways, a clean stop on SIGTERM
//! (XDP program detached), and a clean restart after `kill -9`. Interop (`interop_*`):
//! timestamps negotiated both ways and ISNs and timestamps unpredictable across restarts
//! (read off tcpdump captures with tshark), FIN-closed short connections both ways (the
//! megatcp server closing first, HTTP style; the megatcp client against a Linux server),
//! and a Linux client served under a SYN flood (`megatcp-bench synflood`).
//! On a shared interface (issue 13): the host's own address answers ping and a kernel TCP echo
//! while megatcp serves beside it, after SIGTERM and after kill -9 and a restart; two megatcp
//! processes on two addresses of one interface; the queue-count advice, RSS key and refusals
//! at start; MTU 9000 carrying 1 GiB each way; the checksum hint on a veth.
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use megatcp_test_support::netns::Capture;
use megatcp_test_support::testbed::{self, Testbed};
use megatcp_test_support::{Log, Proc, sibling_bin, tshark};

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-echo");
const SERVER: &str = "10.77.0.10";
/// The kernel's addresses in the client and the server namespace.
const CLIENT_KERNEL: &str = "10.77.0.2";
const SERVER_KERNEL: &str = "10.77.0.1";

fn sh(args: &[&str]) -> std::process::Output {
    Command::new(args[0]).args(&args[1..]).output().unwrap()
}

fn start_server() -> Proc {
    start_server_on("0", Stdio::null())
}

/// Starts the AF_XDP echo server on `cores`, its stderr to `stderr`.
fn start_server_on(cores: &str, stderr: Stdio) -> Proc {
    start_server_with(&[], &["--cores", cores], stderr)
}

/// Starts `wrapper BIN serve --backend afxdp ... args` in the server namespace (e.g. in a
/// fresh PID namespace with `unshare`) and waits until it serves.
fn start_server_with(wrapper: &[&str], args: &[&str], stderr: Stdio) -> Proc {
    start_xdp_server(wrapper, SERVER, args, stderr)
}

/// `wrapper BIN serve --backend afxdp --iface mtcp-srv --ip ADDR/24 --port 7` in the server
/// namespace.
fn serve_command(wrapper: &[&str], addr: &str) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", "megatcp-srv"])
        .args(wrapper)
        .args([BIN, "serve", "--backend", "afxdp"])
        .args(["--iface", "mtcp-srv", "--ip", &format!("{addr}/24")])
        .args(["--port", "7"]);
    cmd
}

/// Starts `wrapper BIN serve --backend afxdp --ip ADDR/24 ... args` in the server namespace
/// and waits until it serves: a kernel client's short run to `addr` succeeds.
fn start_xdp_server(wrapper: &[&str], addr: &str, args: &[&str], stderr: Stdio) -> Proc {
    let child = serve_command(wrapper, addr)
        .args(args)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let server = Proc::new(child);
    // Up when it answers ARP and TCP: a short load run succeeds.
    let what = format!("the AF_XDP server on {addr}");
    testbed::wait_until_echo_serves(BIN, &format!("{addr}:7"), &what);
    server
}

/// Runs the kernel-path load generator in the client namespace; the JSON report.
fn load(extra: &[&str]) -> Result<serde_json::Value, String> {
    load_to(SERVER, extra)
}

/// Load options for 1 GiB each way on one connection (1,024 echoes of 1 MiB).
const GIB_EACH_WAY: [&str; 10] = [
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
];

/// 1 GiB each way on one connection to the server (kernel client), every byte compared.
fn gibibyte_each_way() {
    assert_gibibyte_echoed(&load(&GIB_EACH_WAY).unwrap());
}

/// The report `r` of a [`GIB_EACH_WAY`] run: every byte back, and equal.
fn assert_gibibyte_echoed(r: &serde_json::Value) {
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["bytes"].as_u64().unwrap() >= 1 << 30, "{r}");
}

/// The kernel-path load generator against port 7 of `addr`.
fn load_to(addr: &str, extra: &[&str]) -> Result<serde_json::Value, String> {
    testbed::kernel_echo_load(BIN, &format!("{addr}:7"), extra)
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
    let Some(bed) = testbed::fresh("linux_kernel_client_against_the_afxdp_server") else {
        return;
    };
    let server = start_server();

    // 1,000 concurrent connections, one transaction each, random sizes up to 64 KiB.
    let r = load(&testbed::short_random_sizes("3s")).unwrap();
    testbed::assert_short_random_sizes(&r);
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
    gibibyte_each_way();

    // Ping is answered; ARP resolved both ways (the kernel knows our MAC).
    let ping = ping_from_client("3", "0.2", SERVER);
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
    let kernel_server = kernel_echo_server();
    let xdp_client = xdp_client_args();
    let r = run_load(&xdp_client, &testbed::short_random_sizes("3s")).unwrap();
    testbed::assert_short_random_sizes(&r);
    assert_gibibyte_echoed(&run_load(&xdp_client, &GIB_EACH_WAY).unwrap());
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
        text.contains(
            "native XDP (frames for 10.77.0.10 and ARP for it, the rest to the kernel), copy mode"
        ),
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
    // The runtime's per-core report lines (the server prints its own per-core line too).
    let cores: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("core ") && l.contains(" steered out "))
        .collect();
    assert_eq!(cores.len(), 2, "{text}");
    let mut steered = 0;
    for line in &cores {
        assert!(
            numbers_in(line, "conns accepted ")[0] > 0,
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

/// One TCP segment of a capture, as tshark decodes it.
#[derive(Debug, Clone)]
struct Segment {
    src: String,
    sport: u16,
    dport: u16,
    syn: bool,
    ack: bool,
    rst: bool,
    seq: u32,
    len: u32,
    /// The timestamp option (TSval, TSecr), if present.
    ts: Option<(u32, u32)>,
}

fn segments(file: &Path) -> Vec<Segment> {
    let out = tshark(
        file,
        &[
            "-T",
            "fields",
            "-E",
            "separator=,",
            "-e",
            "ip.src",
            "-e",
            "tcp.srcport",
            "-e",
            "tcp.dstport",
            "-e",
            "tcp.flags.syn",
            "-e",
            "tcp.flags.ack",
            "-e",
            "tcp.flags.reset",
            "-e",
            "tcp.seq_raw",
            "-e",
            "tcp.len",
            "-e",
            "tcp.options.timestamp.tsval",
            "-e",
            "tcp.options.timestamp.tsecr",
        ],
    );
    let flag = |f: &str| f == "1" || f == "True";
    out.lines()
        .map(|l| {
            let f: Vec<&str> = l.split(',').collect();
            assert_eq!(f.len(), 10, "{l}");
            Segment {
                src: f[0].to_string(),
                sport: f[1].parse().unwrap(),
                dport: f[2].parse().unwrap(),
                syn: flag(f[3]),
                ack: flag(f[4]),
                rst: flag(f[5]),
                seq: f[6].parse().unwrap(),
                len: f[7].parse().unwrap(),
                ts: (!f[8].is_empty()).then(|| (f[8].parse().unwrap(), f[9].parse().unwrap())),
            }
        })
        .collect()
}

/// A Linux client from fixed source ports (one connection each, one 64-byte echo checked,
/// closed with RST so that no TIME-WAIT keeps the 4-tuple): the same 4-tuples again after
/// a server restart.
const FIXED_PORT_CLIENT: &str = r#"
import socket, struct, sys
local, server, ports = sys.argv[1], sys.argv[2], [int(p) for p in sys.argv[3:]]
for port in ports:
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    s.settimeout(5)
    s.bind((local, port))
    s.connect((server, 7))
    msg = bytes((port + i) % 256 for i in range(64))
    s.sendall(msg)
    got = b""
    while len(got) < len(msg):
        chunk = s.recv(len(msg) - len(got))
        if not chunk:
            sys.exit("closed before the echo was complete")
        got += chunk
    if got != msg:
        sys.exit("the echo differs")
    s.close()
"#;

const FIXED_PORTS: [u16; 3] = [40001, 40002, 40003];

/// Every SYN-ACK from `server` carries the TSval of the SYN it answers (the last SYN to
/// its port before it) as its TSecr.
fn echoes_syn_timestamps(segs: &[Segment], server: &str) {
    for (i, sa) in segs.iter().enumerate() {
        if !(sa.syn && sa.ack && sa.src == server) {
            continue;
        }
        let syn = segs[..i]
            .iter()
            .rfind(|s| s.syn && !s.ack && s.sport == sa.dport && s.dport == sa.sport)
            .unwrap_or_else(|| panic!("no SYN before {sa:?}"));
        assert_eq!(sa.ts.unwrap().1, syn.ts.unwrap().0, "TSecr of {sa:?}");
    }
}

/// Stops a server started in its own PID namespace (`unshare --fork` ignores SIGTERM, so
/// the server, its child, gets it).
fn stop_in_pid_namespace(server: Proc) -> std::process::ExitStatus {
    server.signal_children("-TERM")
}

#[test]
fn interop_timestamps_both_ways_isns_and_tsvals_differ_across_restarts() {
    let Some(_testbed) =
        testbed::fresh("interop_timestamps_both_ways_isns_and_tsvals_differ_across_restarts")
    else {
        return;
    };
    let dir = std::env::temp_dir();
    let file = dir.join(format!("megatcp-ts-{}.pcap", std::process::id()));
    let ports: Vec<String> = FIXED_PORTS.iter().map(u16::to_string).collect();
    // Linux client -> megatcp server, twice, each server in a fresh PID namespace: both
    // have the same process id (1), as in the issue's reproduction.
    let capture = Capture::start("megatcp-cli", "mtcp-cli", &file, "tcp port 7");
    for _ in 0..2 {
        let server = start_server_with(
            &["unshare", "--pid", "--fork", "--kill-child=SIGTERM"],
            &["--cores", "0"],
            Stdio::null(),
        );
        megatcp_test_support::output_ok(
            Command::new("ip")
                .args(["netns", "exec", "megatcp-cli", "python3", "-c"])
                .arg(FIXED_PORT_CLIENT)
                .args([CLIENT_KERNEL, SERVER])
                .args(&ports),
        );
        assert!(stop_in_pid_namespace(server).success());
    }
    drop(capture);
    let segs = segments(&file);
    let _ = std::fs::remove_file(&file);
    let ours = |s: &&Segment| s.src == SERVER;
    // Every segment either way carries a timestamp once negotiated (the readiness probes'
    // connections included); a RST needs none.
    for s in segs.iter().filter(|s| !s.rst) {
        assert!(s.ts.is_some(), "no timestamp option: {s:?}");
    }
    // Our SYN-ACKs echo the client's SYN timestamp.
    echoes_syn_timestamps(&segs, SERVER);
    let syn_acks: Vec<&Segment> = segs
        .iter()
        .filter(ours)
        .filter(|s| s.syn && s.ack)
        .collect();
    // The fixed 4-tuples: one SYN-ACK each per server run, and they differ between runs.
    for port in FIXED_PORTS {
        let runs: Vec<&&Segment> = syn_acks.iter().filter(|s| s.dport == port).collect();
        assert_eq!(runs.len(), 2, "port {port}: {runs:?}");
        assert_ne!(
            runs[0].seq, runs[1].seq,
            "same ISN after a restart: {runs:?}"
        );
        assert_ne!(
            runs[0].ts, runs[1].ts,
            "same TSval after a restart: {runs:?}"
        );
        // The echo came back on the same connection with data.
        assert!(
            segs.iter()
                .any(|s| ours(&s) && s.dport == port && s.len == 64)
        );
    }
    // A timestamp clock that counts from the process start would give small values
    // (milliseconds since the server started) on every connection.
    assert!(
        syn_acks.iter().any(|s| s.ts.unwrap().0 > 600_000),
        "TSvals look like milliseconds since start: {syn_acks:?}"
    );

    // megatcp client (AF_XDP) -> Linux server: the capture on the server's side.
    let file = dir.join(format!("megatcp-ts2-{}.pcap", std::process::id()));
    let capture = Capture::start("megatcp-srv", "mtcp-srv", &file, "tcp port 7");
    let kernel_server = kernel_echo_server();
    for _ in 0..2 {
        let r = run_load(
            &xdp_client_args(),
            &[
                &UNTIL_MAX[..],
                &[
                    "--connections",
                    "4",
                    "--txns-per-conn",
                    "1",
                    "--max-txns",
                    "40",
                ],
            ]
            .concat(),
        )
        .unwrap();
        assert_eq!(r["errors"]["verify"], 0, "{r}");
    }
    assert!(kernel_server.terminate().success());
    drop(capture);
    let segs = segments(&file);
    let _ = std::fs::remove_file(&file);
    let ours: Vec<&Segment> = segs.iter().filter(|s| s.src == "10.77.0.20").collect();
    assert!(
        ours.iter().filter(|s| s.syn).count() >= 80,
        "{} SYNs",
        ours.len()
    );
    for s in segs.iter().filter(|s| !s.rst) {
        assert!(s.ts.is_some(), "no timestamp option: {s:?}");
    }
    echoes_syn_timestamps(&segs, SERVER_KERNEL);
    // Ephemeral ports are drawn from the secret (RFC 6056): the two runs' first ports differ.
    let syn_ports: Vec<u16> = ours.iter().filter(|s| s.syn).map(|s| s.sport).collect();
    assert_ne!(syn_ports[..4], syn_ports[40..44], "{syn_ports:?}");
}

/// The Linux kernel's echo server (the epoll backend) in the server namespace, on the
/// kernel's address.
fn kernel_echo_server() -> Proc {
    let server = Proc::new(
        Command::new("ip")
            .args([
                "netns",
                "exec",
                "megatcp-srv",
                BIN,
                "serve",
                "--backend",
                "epoll",
            ])
            .args(["--port", "7", "--cores", "0"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    std::thread::sleep(Duration::from_millis(500));
    server
}

/// `megatcp-echo load` over AF_XDP in the client namespace, against the kernel server.
fn xdp_client_args() -> Vec<&'static str> {
    let to = ["--cores", "1", "--connect", "10.77.0.1:7"];
    [&testbed::CLIENT_AFXDP[..], &to].concat()
}

/// `megatcp-echo load` over AF_XDP with address `ip` on queue (and core) `queue` of the
/// client's interface, against `target`.
fn xdp_client_on(
    queue: &'static str,
    ip: &'static str,
    target: &'static str,
) -> [&'static str; 12] {
    [
        "--backend",
        "afxdp",
        "--iface",
        "mtcp-cli",
        "--ip",
        ip,
        "--queues",
        queue,
        "--cores",
        queue,
        "--connect",
        target,
    ]
}

/// `ping -c count -i interval -W 2 to` from the client namespace.
fn ping_from_client(count: &str, interval: &str, to: &str) -> std::process::Output {
    sh(&[
        "ip",
        "netns",
        "exec",
        "megatcp-cli",
        "ping",
        "-c",
        count,
        "-i",
        interval,
        "-W",
        "2",
        to,
    ])
}

/// Until the transaction cap, without warm-up.
const UNTIL_MAX: [&str; 4] = ["--warmup", "0s", "--duration", "120s"];

/// The integers after `name` in `line`.
fn numbers_in(line: &str, name: &str) -> Vec<u64> {
    let at = line
        .find(name)
        .unwrap_or_else(|| panic!("no {name:?} in {line}"))
        + name.len();
    line[at..]
        .split(|c: char| !c.is_ascii_digit())
        .filter_map(|t| t.parse().ok())
        .collect()
}

/// The integers after `name` in the runtime's per-core line of `log`.
fn numbers_after(log: &str, name: &str) -> Vec<u64> {
    let line = log
        .lines()
        .find(|l| l.starts_with("core ") && l.contains(name))
        .unwrap_or_else(|| panic!("no {name:?} in {log}"));
    numbers_in(line, name)
}

/// The first integer after `name` in the runtime's per-core line of `log`.
fn counter(log: &str, name: &str) -> u64 {
    numbers_after(log, name)[0]
}

/// TIME-WAIT sockets of the Linux kernel in namespace `ns`.
fn kernel_time_wait(ns: &str) -> usize {
    let out = sh(&[
        "ip",
        "netns",
        "exec",
        ns,
        "ss",
        "-Htan",
        "state",
        "time-wait",
    ]);
    String::from_utf8_lossy(&out.stdout).lines().count()
}

#[test]
fn interop_linux_client_fin_closes_to_an_afxdp_server_that_closes_first() {
    let Some(_testbed) =
        testbed::fresh("interop_linux_client_fin_closes_to_an_afxdp_server_that_closes_first")
    else {
        return;
    };
    let log = std::env::temp_dir().join(format!("megatcp-http-{}.log", std::process::id()));
    // HTTP `Connection: close` style: the server closes once it echoed the one request.
    let server = start_server_with(
        &[],
        &["--cores", "0", "--close-after", "64"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    let before = kernel_time_wait("megatcp-cli");
    let r = load(&[
        "--connections",
        "64",
        "--msg-size",
        "64",
        "--txns-per-conn",
        "1",
        "--max-txns",
        "10000",
        "--duration",
        "120s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    assert_eq!(
        r["errors"],
        serde_json::json!({"verify": 0, "connect": 0, "reset": 0, "eof": 0, "other": 0}),
        "{r}"
    );
    assert!(r["transactions"].as_u64().unwrap() >= 10_000, "{r}");
    assert!(r["connections"].as_u64().unwrap() >= 10_000, "{r}");
    // The server closed first, so the client holds (almost) no TIME-WAIT: only its last
    // connections, closed by the client when the run ended, do.
    let tw = kernel_time_wait("megatcp-cli").saturating_sub(before);
    assert!(
        tw <= 200,
        "{tw} client sockets in TIME-WAIT: the client closed first"
    );
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    // ... and the server held it, as compact records.
    assert!(counter(&text, "time-wait ") >= 10_000, "{text}");
}

#[test]
fn interop_afxdp_client_fin_closes_to_a_linux_server() {
    let Some(_testbed) = testbed::fresh("interop_afxdp_client_fin_closes_to_a_linux_server") else {
        return;
    };
    let server = kernel_echo_server();
    // More connections than ephemeral ports (16,384): TIME-WAIT ports are reused.
    let out = Command::new("ip")
        .args(["netns", "exec", "megatcp-cli", BIN, "load", "--json"])
        .args(xdp_client_args())
        .args(UNTIL_MAX)
        .args([
            "--connections",
            "64",
            "--msg-size",
            "1..1460",
            "--txns-per-conn",
            "1",
        ])
        .args(["--max-txns", "20000"])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stderr);
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(out.status.success(), "{r}\n{text}");
    assert_eq!(
        r["errors"],
        serde_json::json!({"verify": 0, "connect": 0, "reset": 0, "eof": 0, "other": 0}),
        "{r}"
    );
    assert!(r["transactions"].as_u64().unwrap() >= 20_000, "{r}");
    // The client closed first: it held TIME-WAIT (records), the Linux server none.
    assert!(counter(&text, "time-wait ") >= 20_000, "{text}");
    assert!(kernel_time_wait("megatcp-srv") <= 200);
    assert!(server.terminate().success());
}

#[test]
fn interop_linux_client_served_under_a_syn_flood() {
    let Some(_testbed) = testbed::fresh("interop_linux_client_served_under_a_syn_flood") else {
        return;
    };
    let log = std::env::temp_dir().join(format!("megatcp-flood-{}.log", std::process::id()));
    let server = start_server_with(
        &[],
        &["--cores", "0"],
        Stdio::from(std::fs::File::create(&log).unwrap()),
    );
    // 20,000 SYNs a second from 100 addresses nobody answers for: the 4,096 half-open
    // entries of the backlog are full after a fifth of a second, and stay full (they
    // last 10 s).
    let flood = Command::new("ip")
        .args(["netns", "exec", "megatcp-cli"])
        .arg(sibling_bin(BIN, "megatcp-bench"))
        .args([
            "synflood",
            "--iface",
            "mtcp-cli",
            "--target",
            &format!("{SERVER}:7"),
        ])
        .args(["--sources", "10.77.0.100-10.77.0.199", "--rate", "20000"])
        .args(["--duration", "8s", "--json"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_secs(1));
    // Established connections keep echoing while new clients come and go.
    let established = std::thread::spawn(|| {
        load(&["--connections", "16", "--duration", "4s", "--warmup", "0s"]).unwrap()
    });
    let r = load(&[
        "--connections",
        "8",
        "--txns-per-conn",
        "1",
        "--rate",
        "500",
        "--duration",
        "4s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    let e = established.join().unwrap();
    let out = flood.wait_with_output().unwrap();
    assert!(out.status.success());
    let f: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(f["sent"].as_u64().unwrap() >= 100_000, "{f}");
    assert!(server.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    for rep in [&r, &e] {
        assert_eq!(
            rep["errors"],
            serde_json::json!({"verify": 0, "connect": 0, "reset": 0, "eof": 0, "other": 0}),
            "{rep}"
        );
    }
    assert!(r["connections"].as_u64().unwrap() >= 1000, "{r}");
    assert!(e["transactions"].as_u64().unwrap() >= 1000, "{e}");
    // No SYN of the client was lost or refused: a lost one costs Linux a second.
    assert!(r["connect"]["p99_us"].as_f64().unwrap() < 1e6, "{r}");
    // The client got in through SYN cookies: the backlog was full of the flood's entries.
    // "syn cookies ACCEPTED/SENT"
    let cookies = numbers_after(&text, "syn cookies ");
    let (accepted, sent) = (cookies[0], cookies[1]);
    assert!(sent >= 100_000 && accepted >= 1000, "{text}");
}

/// Whether megatcp's XDP program is attached to the server's interface.
fn xdp_attached() -> bool {
    let link = sh(&["ip", "-n", "megatcp-srv", "link", "show", "mtcp-srv"]);
    String::from_utf8_lossy(&link.stdout).contains("megatcp_xdp")
}

/// The host's own traffic on the server's interface, all at once: ping to the kernel's
/// address, thousands of connections to the kernel's echo server (every byte checked),
/// and, when `megatcp` is set, megatcp's server on its own address under load too.
fn host_traffic_works(when: &str, megatcp: bool) {
    let ping = std::thread::spawn(|| ping_from_client("20", "0.1", SERVER_KERNEL));
    let ours = megatcp.then(|| {
        std::thread::spawn(|| {
            load(&[
                "--connections",
                "64",
                "--msg-size",
                "1..2048",
                "--duration",
                "2s",
                "--warmup",
                "0s",
            ])
        })
    });
    // A count, not a rate: 2,000 connections however busy the machine is (the window only
    // bounds the run).
    let kernel = load_to(
        SERVER_KERNEL,
        &[
            "--connections",
            "200",
            "--txns-per-conn",
            "1",
            "--msg-size",
            "1..4096",
            "--max-txns",
            "2000",
            "--duration",
            "60s",
            "--warmup",
            "0s",
        ],
    )
    .unwrap_or_else(|e| panic!("{when}: the kernel's echo server: {e}"));
    assert_eq!(kernel["errors"]["verify"], 0, "{when}: {kernel}");
    assert!(
        kernel["connections"].as_u64().unwrap() >= 2000,
        "{when}: fewer than 2,000 connections to the kernel: {kernel}"
    );
    let ping = ping.join().unwrap();
    let text = String::from_utf8_lossy(&ping.stdout);
    assert!(
        ping.status.success() && text.contains(" 0% packet loss"),
        "{when}: ping to the kernel's address: {text}"
    );
    if let Some(ours) = ours {
        let r = ours
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("{when}: megatcp's server: {e}"));
        assert_eq!(r["errors"]["verify"], 0, "{when}: {r}");
        assert!(r["transactions"].as_u64().unwrap() > 1000, "{when}: {r}");
    }
}

#[test]
fn the_host_keeps_its_own_address_beside_the_afxdp_server() {
    let Some(_bed) = testbed::fresh("the_host_keeps_its_own_address_beside_the_afxdp_server")
    else {
        return;
    };
    let kernel = kernel_echo_server();
    host_traffic_works("before megatcp", false);

    let server = start_server();
    assert!(xdp_attached(), "megatcp's XDP program is not attached");
    host_traffic_works("while megatcp serves", true);

    assert!(server.terminate().success());
    assert!(!xdp_attached(), "the XDP program stayed after SIGTERM");
    host_traffic_works("after SIGTERM", false);

    // kill -9 leaves the program (and its rule) attached: the kernel still gets its frames.
    let server = start_server();
    server.signal("-KILL");
    assert!(xdp_attached(), "kill -9 detached the program?");
    host_traffic_works("after kill -9", false);

    let log = Log::new("host-restart");
    let server = start_server_on("0", log.stdio());
    host_traffic_works("after kill -9 and a restart", true);
    assert!(server.terminate().success());
    assert!(
        log.text().contains("still attached") && log.text().contains("replacing it"),
        "{}",
        log.text()
    );
    assert!(!xdp_attached());
    drop(kernel);
}

#[test]
fn two_afxdp_servers_on_two_addresses_of_one_interface() {
    let Some(_bed) = testbed::fresh_with(
        "two_afxdp_servers_on_two_addresses_of_one_interface",
        &["--queues", "2"],
    ) else {
        return;
    };
    let (log_a, log_b) = (Log::new("two-a"), Log::new("two-b"));
    let a = start_xdp_server(
        &[],
        "10.77.0.10",
        &["--cores", "0", "--queues", "0"],
        log_a.stdio(),
    );
    let b = start_xdp_server(
        &[],
        "10.77.0.11",
        &["--cores", "1", "--queues", "1"],
        log_b.stdio(),
    );
    // One AF_XDP client per server, each on the queue of its server: a veth delivers what an
    // AF_XDP socket sends on queue q to queue q of the peer (on a NIC, `ethtool -N` rules
    // steer each address to its process's queues).
    let client = |queue: &'static str, ip: &'static str, target: &'static str| {
        std::thread::spawn(move || {
            run_load(
                &xdp_client_on(queue, ip, target),
                &[
                    "--connections",
                    "100",
                    "--txns-per-conn",
                    "1",
                    "--msg-size",
                    "1..4096",
                    "--duration",
                    "2s",
                    "--warmup",
                    "0s",
                ],
            )
        })
    };
    let to_a = client("0", "10.77.0.20/24", "10.77.0.10:7");
    let to_b = client("1", "10.77.0.21/24", "10.77.0.11:7");
    for (name, r) in [("a", to_a), ("b", to_b)] {
        let r = r
            .join()
            .unwrap()
            .unwrap_or_else(|e| panic!("server {name}: {e}"));
        assert_eq!(r["errors"]["verify"], 0, "{name}: {r}");
        assert!(r["transactions"].as_u64().unwrap() > 1000, "{name}: {r}");
    }
    // The first to leave keeps the program for the other, which still serves.
    assert!(a.terminate().success());
    assert!(xdp_attached(), "the program went with the first server");
    let r = run_load(
        &xdp_client_on("1", "10.77.0.21/24", "10.77.0.11:7"),
        &["--connections", "16", "--duration", "1s", "--warmup", "0s"],
    )
    .unwrap();
    assert!(r["transactions"].as_u64().unwrap() > 0, "{r}");
    assert!(b.terminate().success());
    assert!(!xdp_attached(), "the last server left the program behind");
    for log in [&log_a, &log_b] {
        assert!(
            log.text().contains("megatcp reads 1 (queue"),
            "the queue count was not compared: {}",
            log.text()
        );
    }
}

#[test]
fn queue_counts_rss_and_mtu_are_checked_at_start() {
    let Some(_bed) = testbed::fresh_with(
        "queue_counts_rss_and_mtu_are_checked_at_start",
        &["--queues", "2"],
    ) else {
        return;
    };
    let log = Log::new("queues");
    let server = start_server_on("0", log.stdio());
    assert!(server.terminate().success());
    let text = log.text();
    assert!(
        text.contains("mtcp-srv receives on 2 queues but megatcp reads 1")
            && text.contains("`ethtool -L mtcp-srv rx 1 tx 1`"),
        "{text}"
    );
    // The RSS key: what `ethtool -x` shows, where the kernel exposes it; else the fallback.
    let ethtool = sh(&[
        "ip",
        "netns",
        "exec",
        "megatcp-srv",
        "ethtool",
        "-x",
        "mtcp-srv",
    ]);
    if ethtool.status.success() {
        let shown = String::from_utf8_lossy(&ethtool.stdout);
        let key: String = shown
            .lines()
            .skip_while(|l| !l.starts_with("RSS hash key"))
            .nth(1)
            .unwrap_or_default()
            .replace(':', "");
        assert!(text.contains(&format!("RSS key {key}")), "{shown}\n{text}");
    } else {
        assert!(
            text.contains("RSS key not available")
                && text.contains("Operation not supported")
                && text.contains("steer flows between them in software"),
            "{text}"
        );
    }

    // A queue the interface does not have, and an MTU above the interface's: refused, with
    // what to do.
    let refused = |args: &[&str]| {
        let out = serve_command(&[], SERVER).args(args).output().unwrap();
        assert!(!out.status.success());
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let e = refused(&["--cores", "0", "--queues", "2"]);
    assert!(
        e.contains("asked to read queue 2") && e.contains("`ethtool -L mtcp-srv rx 3 tx 3`"),
        "{e}"
    );
    let e = refused(&["--cores", "0", "--mtu", "9000"]);
    assert!(
        e.contains("above mtcp-srv's MTU 1500") && e.contains("mtu 9000"),
        "{e}"
    );
    assert!(!xdp_attached());
}

#[test]
fn jumbo_frames_carry_a_gibibyte_each_way() {
    let Some(_bed) =
        testbed::fresh_with("jumbo_frames_carry_a_gibibyte_each_way", &["--mtu", "9000"])
    else {
        return;
    };
    let log = Log::new("jumbo");
    let server = start_server_with(&[], &["--cores", "0", "--mtu", "9000"], log.stdio());
    gibibyte_each_way();
    assert!(server.terminate().success());
    let text = log.text();
    assert!(
        text.contains("MTU 9000 (interface 9000, MSS 8960)")
            && text.contains("multi-buffer frames for MTU 9000"),
        "{text}"
    );
    // Jumbo frames did carry the bytes: frames average well above a 1500-byte MTU's.
    for dir in ["rx ", "tx "] {
        let n = numbers_after(&text, dir);
        assert!(n[1] >= 1 << 30, "{dir}bytes: {n:?}");
        assert!(
            n[1] / n[0] > 4000,
            "{dir}{} frames / {} B: no jumbo frames",
            n[0],
            n[1]
        );
    }
}

#[test]
fn a_veth_peer_leaving_checksums_to_offload_gets_a_hint() {
    let Some(_bed) = testbed::fresh("a_veth_peer_leaving_checksums_to_offload_gets_a_hint") else {
        return;
    };
    let log = Log::new("checksum-hint");
    let server = Proc::new(
        serve_command(&[], SERVER)
            .args(["--cores", "0"])
            .stdout(Stdio::null())
            .stderr(log.stdio())
            .spawn()
            .unwrap(),
    );
    log.wait_for("AF_XDP on mtcp-srv", Duration::from_secs(20));
    // The client's kernel now leaves TCP checksums to an offload the veth never does.
    let on = sh(&[
        "ip",
        "netns",
        "exec",
        "megatcp-cli",
        "ethtool",
        "-K",
        "mtcp-cli",
        "tx",
        "on",
    ]);
    assert!(on.status.success());
    let r = load(&["--connections", "4", "--duration", "2s", "--warmup", "0s"]);
    assert!(
        r.as_ref().map_or(true, |r| r["transactions"] == 0),
        "served despite bad checksums: {r:?}"
    );
    assert!(server.terminate().success());
    let text = log.text();
    let hints: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("failed their checksum"))
        .collect();
    // Rate-limited: one hint in these few seconds, with the count and what to run.
    assert_eq!(hints.len(), 1, "{text}");
    assert!(
        hints[0].contains("mtcp-srv is a veth device")
            && hints[0].contains("ethtool -K PEER tx off")
            && hints[0].contains("received frame(s) failed their checksum"),
        "{text}"
    );
}
