//! The DPDK backend (feature `dpdk`) against real DPDK vdevs, without the PCI NIC:
//!
//! * in one process: two megatcp stacks over a `rte_eth_from_rings` port pair, 1,000
//!   connections, every echoed byte verified;
//! * process to process over `net_memif`: `megatcp-echo serve --backend dpdk` and
//!   `megatcp-echo load --backend dpdk`, every byte verified, clean stop on SIGTERM;
//! * bad EAL arguments, a missing device, no hugepages: a clear error, a non-zero exit, no
//!   hang;
//! * on the veth testbed (root): the Linux kernel's TCP (the epoll load generator in
//!   namespace megatcp-cli) against the DPDK server on `net_af_packet` over veth mtcp-srv;
//! * in a namespace of its own (root): the kernel's TCP against the DPDK server on a
//!   `net_tap` device, whose PMD offers transmit checksum offload: on (the start line says
//!   so) and forced off, every byte verified, every checksum on the wire good (tshark).
#![cfg(feature = "dpdk")]
#![allow(clippy::unwrap_used)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use megatcp_echo::{LoadApp, LoadOpts, LoadReport, MsgSize, Protocol, ServeApp, ServeOpts};
use megatcp_launch::dpdk::run_ring_pair;
use megatcp_launch::pair::{PairConfig, SERVER_IP};
use megatcp_test_support::netns::{Capture, Netns};
use megatcp_test_support::testbed::{self, Testbed};
use megatcp_test_support::{Log, Proc, tshark};

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-echo");

/// Runs the echo server on core 0 and the load generator on core 1, each on one port of a
/// fresh ring pair; returns the load report and both ports' device counters.
fn ring_run(name: &str, load: LoadOpts) -> (LoadReport, u64, u64) {
    // EAL picks its memory when it starts: not while the testbed reserves hugepages.
    let _hugepages = hugepages();
    let server = ServeApp {
        protocol: Protocol::Echo,
        opts: ServeOpts {
            port: 7,
            backlog: 4096,
            close_after: None,
        },
    };
    let client = LoadApp {
        base: LoadOpts {
            target: SocketAddrV4::new(SERVER_IP, 7),
            ..load
        },
        cores: 1,
    };
    let run = run_ring_pair(name, &server, &client, &PairConfig::default()).unwrap();
    let (sa, sb, r) = (run.server_port, run.client_port, run.cores);
    let (s, c) = (&r.server[0], &r.client[0]);
    eprintln!("{}\n{}", s.report, c.report);
    assert!(matches!(s.output, Some(Ok(_))), "server: {:?}", s.output);
    // The stacks' frames went through the DPDK ports.
    let (se, ce) = (s.engine.as_ref().unwrap(), c.engine.as_ref().unwrap());
    assert!(ce.nic.tx_frames > 0 && se.nic.rx_frames > 0);
    let report = r.client.into_iter().next().unwrap().output.unwrap();
    (report, sa.ipackets + sa.opackets, sb.ipackets + sb.opackets)
}

fn opts(connections: usize, msg: MsgSize, txns_per_conn: u64, duration: Duration) -> LoadOpts {
    LoadOpts {
        target: SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0),
        connections,
        msg,
        txns_per_conn,
        duration,
        warmup: Duration::ZERO,
        rate: None,
        max_txns: None,
        seed: 0xd9d4,
        close_rst: txns_per_conn > 0,
    }
}

#[test]
fn ring_pair_echo_1000_connections_every_byte_verified() {
    // 1,000 concurrent persistent connections, random sizes up to 16 KiB.
    let (r, a, b) = ring_run(
        "mtcp_r1",
        opts(
            1000,
            MsgSize::Range(1, 16384),
            0,
            Duration::from_millis(2000),
        ),
    );
    eprintln!("persistent: {r}");
    assert_eq!(r.errors.total(), 0, "{r:?}");
    assert!(r.transactions >= 1000, "{r:?}");
    assert!(r.bytes > 1_000_000, "{r:?}");
    // DPDK's own counters saw the traffic (ring ports count what they move).
    assert!(a > 0 || b > 0);

    // 1,000 short connections (one transaction each), sizes up to 64 KiB, on a new pair.
    let (r, _, _) = ring_run(
        "mtcp_r2",
        opts(
            1000,
            MsgSize::Range(1, 65536),
            1,
            Duration::from_millis(2000),
        ),
    );
    eprintln!("short: {r}");
    assert_eq!(r.errors.verify, 0, "{r:?}");
    assert_eq!(r.errors.connect, 0, "{r:?}");
    assert!(r.connections >= 1000, "{r:?}");
}

/// Runs `megatcp-echo` with `args`, killed after `limit`; (output, elapsed).
fn run_bounded(args: &[&str], limit: Duration) -> (Output, Duration) {
    let start = Instant::now();
    let mut child = Command::new(BIN)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > limit {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    (child.wait_with_output().unwrap(), start.elapsed())
}

fn report(out: &Output) -> serde_json::Value {
    serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "no JSON report ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
}

/// `megatcp-echo serve --backend dpdk` on `cores` over the memif socket `sock`.
fn memif_server(cores: &str, sock: &std::path::Path) -> Proc {
    let _ = std::fs::remove_file(sock);
    let vdev = format!("--vdev net_memif0,role=server,socket={}", sock.display());
    Proc::new(
        Command::new(BIN)
            .args(["serve", "--backend", "dpdk", "--cores", cores])
            .args(["--ip", "10.78.0.1/24", "--dpdk-args", &vdev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `megatcp-echo load --backend dpdk --json` on `cores` over the memif socket `sock`.
fn memif_load(cores: &str, sock: &std::path::Path, extra: &[&str]) -> Output {
    let vdev = format!("--vdev net_memif0,role=client,socket={}", sock.display());
    let mut args = vec!["load", "--backend", "dpdk", "--cores", cores, "--json"];
    args.extend_from_slice(&["--ip", "10.78.0.2/24", "--dpdk-args", &vdev]);
    args.extend_from_slice(&["--connect", "10.78.0.1:7", "--warmup", "0s"]);
    args.extend_from_slice(extra);
    run_bounded(&args, Duration::from_secs(60)).0
}

/// Waits until a short load run over `sock` succeeds (memif connects within a second).
fn wait_for_memif(cores: &str, sock: &std::path::Path) {
    until_memif_carries("the memif server did not come up", "transactions", || {
        memif_load(cores, sock, &["--connections", "1", "--duration", "300ms"])
    });
}

/// Runs `attempt` every 300 ms until its JSON report counts some `counter` (memif connects
/// within a second or so); fails with `what` and the last run's errors after 20 s.
fn until_memif_carries(what: &str, counter: &str, mut attempt: impl FnMut() -> Output) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let out = attempt();
        if out.status.success() && report(&out)[counter].as_u64().unwrap_or(0) > 0 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{what}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn memif_socket(tag: &str) -> PathBuf {
    std::env::temp_dir().join(format!("mtcp-memif-{tag}-{}.sock", std::process::id()))
}

#[test]
fn process_to_process_over_memif() {
    // Its processes take hugepages when some are free: not while another test holds them.
    let _hugepages = hugepages();
    let sock = memif_socket("1");
    let server = memif_server("0", &sock);
    wait_for_memif("1", &sock);
    // 64 persistent connections, random sizes up to 16 KiB, every byte verified.
    let out = memif_load(
        "1",
        &sock,
        &[
            "--connections",
            "64",
            "--msg-size",
            "1..16384",
            "--duration",
            "2s",
        ],
    );
    let r = report(&out);
    assert!(out.status.success(), "{r}");
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() > 1000, "{r}");
    // 1 MiB messages on one connection: 256 MiB each way, every byte compared.
    let out = memif_load(
        "1",
        &sock,
        &[
            "--connections",
            "1",
            "--msg-size",
            "1048576",
            "--max-txns",
            "256",
            "--duration",
            "60s",
        ],
    );
    let r = report(&out);
    assert!(out.status.success(), "{r}");
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["bytes"].as_u64().unwrap() >= 256 << 20, "{r}");
    assert!(server.terminate().success());
    assert!(!sock.exists(), "the memif socket was left behind");
}

/// `megatcp-echo reflect load --json` over the memif socket `sock`, for `duration`.
fn memif_reflect_load(sock: &std::path::Path, duration: &str) -> Output {
    let vdev = format!("--vdev net_memif0,role=client,socket={}", sock.display());
    let args = [
        "reflect",
        "load",
        "--json",
        "--cores",
        "1",
        "--ip",
        "10.78.0.2",
        "--dpdk-args",
        &vdev,
        "--connect",
        "10.78.0.1:7",
        "--window",
        "64",
        "--warmup",
        "0s",
        "--duration",
        duration,
    ];
    run_bounded(&args, Duration::from_secs(30)).0
}

#[test]
fn raw_reflection_over_memif() {
    let _hugepages = hugepages();
    let sock = memif_socket("reflect");
    let _ = std::fs::remove_file(&sock);
    let vdev = format!("--vdev net_memif0,role=server,socket={}", sock.display());
    let server = Proc::new(
        Command::new(BIN)
            .args(["reflect", "serve", "--cores", "0", "--ip", "10.78.0.1"])
            .args(["--dpdk-args", &vdev])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    until_memif_carries("no reflection came back", "received", || {
        memif_reflect_load(&sock, "300ms")
    });
    let out = memif_reflect_load(&sock, "1s");
    let r = report(&out);
    assert!(out.status.success(), "{r}");
    // Frames come back as their own reflections: over the window, what was sent and what
    // came back differ by at most the 64 in flight at its ends (and the frames sent again
    // after a stall).
    let n = |k: &str| r[k].as_u64().unwrap();
    assert!(n("received") > 10_000, "{r}");
    assert!(
        n("sent").abs_diff(n("received")) <= 64 + n("refills"),
        "{r}"
    );
    assert_eq!(r["tx_full"], 0, "{r}");
    assert!(server.terminate().success());
    // Without a device: a usage error that names the two flags.
    let out = run_bounded(
        &[
            "reflect",
            "load",
            "--ip",
            "10.78.0.2",
            "--connect",
            "10.78.0.1:7",
        ],
        Duration::from_secs(10),
    )
    .0;
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("<--iface <IFACE>|--dpdk-args"));
}

#[test]
fn two_queues_each_side_over_memif() {
    // Its processes take hugepages when some are free: not while another test holds them.
    let _hugepages = hugepages();
    let sock = memif_socket("2");
    let server = memif_server("0,1", &sock);
    wait_for_memif("0,1", &sock);
    // Short connections spread over both queues of both sides, every byte verified.
    let out = memif_load(
        "0,1",
        &sock,
        &[
            "--connections",
            "200",
            "--msg-size",
            "1..4096",
            "--txns-per-conn",
            "1",
            "--close-rst",
            "--duration",
            "2s",
        ],
    );
    let r = report(&out);
    assert!(out.status.success(), "{r}");
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert!(r["connections"].as_u64().unwrap() >= 1000, "{r}");
    assert!(server.terminate().success());
}

/// The testbed reserves hugepages while it is up, and a DPDK process takes hugepages when
/// some are free: the test that checks what happens without them, the in-process EAL's
/// start, the testbed and tap tests and the memif processes must not run at the same time
/// (two processes could otherwise both count the same free pages).
static HUGEPAGES: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Holds [`HUGEPAGES`] (whatever a failed test left).
fn hugepages() -> std::sync::MutexGuard<'static, ()> {
    HUGEPAGES
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn expect_failure(args: &[&str], needle: &str) {
    let (out, took) = run_bounded(args, Duration::from_secs(30));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(took < Duration::from_secs(30), "hung: {err}");
    assert!(!out.status.success(), "exit 0 for {args:?}: {err}");
    assert!(err.contains(needle), "no {needle:?} in: {err}");
}

#[test]
fn bad_eal_arguments_a_missing_device_and_no_hugepages_fail_clearly() {
    let _hugepages = hugepages();
    let serve = ["serve", "--backend", "dpdk", "--ip", "10.78.1.1/24"];
    let with = |extra: &[&'static str]| {
        let mut v: Vec<&str> = serve.to_vec();
        v.extend_from_slice(extra);
        v
    };
    // An option EAL does not know.
    expect_failure(
        &with(&["--dpdk-args", "--vdev net_null0 --no-such-eal-option"]),
        "rte_eal_init failed",
    );
    // A driver that does not exist: EAL refuses the device.
    expect_failure(
        &with(&["--dpdk-args", "--vdev net_nosuchdriver0"]),
        "rte_eal_init failed",
    );
    // A vdev whose probe fails: EAL starts all the same, and no port appears.
    expect_failure(
        &with(&["--dpdk-args", "--vdev net_memif0,role=bogus"]),
        "DPDK found no device",
    );
    // A PCI device named in the EAL arguments instead of --pci: refused before EAL runs
    // (EAL always gets --no-pci otherwise).
    expect_failure(
        &with(&["--dpdk-args", "-a 0000:7e:1f.6 --vdev net_null0"]),
        "name a PCI device with --pci",
    );
    // No device at all.
    expect_failure(&with(&[]), "needs a device");
    // Jumbo frames on a port that takes standard frames only (memif reports 1518-byte
    // frames at most): refused with the reason, not sent.
    let sock = memif_socket("mtu");
    let memif = format!("--vdev net_memif0,role=server,socket={}", sock.display());
    let mut args = serve.to_vec();
    args.extend_from_slice(&["--mtu", "9000", "--dpdk-args", &memif]);
    expect_failure(
        &args,
        "takes an MTU of 1500 at most: it takes frames of 1518 bytes at most (max_rx_pktlen",
    );
    let _ = std::fs::remove_file(&sock);
    // Hugepage memory asked for where none is reserved (no PCI device involved).
    if megatcp_launch::dpdk::free_hugepages() == 0 {
        expect_failure(
            &with(&["--dpdk-args", "--vdev net_null0 --socket-mem 64"]),
            "no free hugepages",
        );
        // A PCI NIC needs hugepages: refused before EAL looks at any device.
        expect_failure(&with(&["--pci", "0000:ff:1f.7"]), "no free hugepages");
    } else {
        eprintln!("note: hugepages are reserved: the no-hugepages cases are skipped");
    }
}

// ---- the veth testbed (root) ----

/// Two rounds of the kernel's TCP through `load` against a server (`what` names it):
/// 1,000 short connections (sizes up to 64 KiB, one transaction each, `short` long), then
/// 64 persistent ones for 2 s (sizes `sizes`); every byte verified.
fn kernel_client_rounds(
    what: &str,
    load: &dyn Fn(&[&str]) -> Result<serde_json::Value, String>,
    short: &str,
    sizes: &str,
) {
    let r = load(&testbed::short_random_sizes(short)).unwrap();
    eprintln!("{what}: short connections: {r}");
    testbed::assert_short_random_sizes(&r);
    let r = load(&[
        "--connections",
        "64",
        "--msg-size",
        sizes,
        "--duration",
        "2s",
        "--warmup",
        "0s",
    ])
    .unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{what}: {r}");
    assert!(r["transactions"].as_u64().unwrap() > 1000, "{what}: {r}");
}

fn kernel_load(extra: &[&str]) -> Result<serde_json::Value, String> {
    testbed::kernel_echo_load(BIN, "10.77.0.10:7", extra)
}

#[test]
fn linux_kernel_client_against_the_dpdk_server_on_af_packet() {
    if !megatcp_test_support::is_root() {
        eprintln!("note: not root: the testbed test needs network namespaces; skipped");
        return;
    }
    // Held while the test runs under the testbed lock in a child process, too.
    let _hugepages = hugepages();
    if !testbed::hold_lock("linux_kernel_client_against_the_dpdk_server_on_af_packet") {
        return;
    }
    let _testbed = Testbed::up();
    let server = Proc::new(
        Command::new("ip")
            .args(["netns", "exec", "megatcp-srv", BIN, "serve"])
            .args(["--backend", "dpdk", "--cores", "0", "--ip", "10.77.0.10/24"])
            .args(["--dpdk-args", "--vdev net_af_packet0,iface=mtcp-srv"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    testbed::wait_until_echo_serves(BIN, "10.77.0.10:7", "the DPDK server");
    kernel_client_rounds("af_packet", &kernel_load, "3s", "64");
    assert!(server.terminate().success());
}

// ---- a tap device in a namespace of the test's own (root) ----

/// The DPDK echo server on a `net_tap` port (interface `mtap0`, created by the PMD in `ns`)
/// at 10.79.0.1, with `extra` flags, its stderr in `log`; the kernel side of the tap gets
/// 10.79.0.2. Returns once a kernel client is served.
fn tap_server(ns: &Netns, log: &Log, extra: &[&str]) -> Proc {
    let server = Proc::new(
        ns.command(BIN)
            .args([
                "serve",
                "--backend",
                "dpdk",
                "--cores",
                "0",
                "--ip",
                "10.79.0.1/24",
            ])
            .args(["--dpdk-args", "--no-pci --vdev net_tap0,iface=mtap0"])
            .args(extra)
            .stdout(Stdio::null())
            .stderr(log.stdio())
            .spawn()
            .unwrap(),
    );
    log.wait_for("DPDK port 0 (net_tap0", Duration::from_secs(20));
    let deadline = Instant::now() + Duration::from_secs(20);
    ns.exec(&["ip", "addr", "add", "10.79.0.2/24", "dev", "mtap0"]);
    ns.exec(&["ip", "link", "set", "mtap0", "up"]);
    let probe = [
        "--connections",
        "1",
        "--duration",
        "200ms",
        "--warmup",
        "0s",
    ];
    while tap_load(ns, &probe).is_err() {
        assert!(Instant::now() < deadline, "not served: {}", log.text());
        std::thread::sleep(Duration::from_millis(200));
    }
    server
}

/// The kernel's TCP (the epoll load generator) in `ns` against the tap server.
fn tap_load(ns: &Netns, extra: &[&str]) -> Result<serde_json::Value, String> {
    let out = ns
        .command(BIN)
        .args(["load", "--json", "--backend", "epoll", "--cores", "1"])
        .args(["--connect", "10.79.0.1:7"])
        .args(extra)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
    if !out.status.success() {
        return Err(format!("load failed: {r}"));
    }
    Ok(r)
}

/// (frames, frames whose IPv4 or TCP checksum is not good) the server sent, read off a
/// capture on the tap's kernel side. A TCP checksum of 0xffff where 0x0000 is computed is
/// good: the two are one's complement zero, receivers (Linux) take both, and DPDK's tap PMD
/// writes 0xffff for a zero sum (about one segment in 65,536); tshark calls it bad.
fn checksums_seen(file: &std::path::Path) -> (usize, usize) {
    let text = tshark(
        file,
        &[
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-T",
            "fields",
            "-e",
            "ip.checksum.status",
            "-e",
            "tcp.checksum.status",
            "-e",
            "tcp.checksum",
            "-e",
            "tcp.checksum_calculated",
        ],
    );
    let lines: Vec<Vec<&str>> = text.lines().map(|l| l.split('\t').collect()).collect();
    // Status 1: good (0: bad, 2: not checked).
    let good = |f: &Vec<&str>| matches!(f[..], ["1", "1", ..] | ["1", "0", "0xffff", "0x0000"]);
    let bad = lines.iter().filter(|f| !good(f)).count();
    (lines.len(), bad)
}

#[test]
fn transmit_checksum_offload_on_a_tap_device_against_the_linux_kernel() {
    if !megatcp_test_support::is_root() {
        eprintln!("note: not root: the tap test needs a network namespace; skipped");
        return;
    }
    let _hugepages = hugepages();
    for (mode, said) in [
        (
            "auto",
            "tx checksum offload on (the NIC fills IPv4 and TCP checksums)",
        ),
        (
            "off",
            "tx checksum offload off (--tx-csum-offload off; the NIC offers it)",
        ),
    ] {
        let ns = Netns::new("tap");
        let log = Log::new(&format!("tap-{mode}"));
        let server = tap_server(&ns, &log, &["--tx-csum-offload", mode]);
        assert!(log.text().contains(said), "{mode}: {}", log.text());
        let pcap =
            std::env::temp_dir().join(format!("mtcp-tap-{mode}-{}.pcap", std::process::id()));
        let capture = Capture::start_snap(
            ns.name(),
            "mtap0",
            &pcap,
            "tcp and src host 10.79.0.1",
            65535,
        );
        kernel_client_rounds(
            mode,
            &|extra: &[&str]| tap_load(&ns, extra),
            "6s",
            "1..16384",
        );
        drop(capture);
        let (frames, bad) = checksums_seen(&pcap);
        if bad == 0 {
            let _ = std::fs::remove_file(&pcap);
        }
        eprintln!("{mode}: {frames} frames from the server captured, {bad} with a bad checksum");
        assert!(frames > 10_000, "{mode}: {frames} frames captured");
        assert_eq!(
            bad,
            0,
            "{mode}: frames with a bad checksum ({})",
            pcap.display()
        );
        assert!(server.terminate().success(), "{mode}: {}", log.text());
    }
}
