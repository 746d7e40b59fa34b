//! `megatcp-bench --quick` on the veth testbed (root; CI runs as root): the report is
//! complete, every variant has its rows, each row says how its connections closed, and a
//! variant that cannot run is reported as failed with its error, not dropped. The two-role
//! run (server role in the server namespace, client role in the client namespace, over a
//! control connection between the kernels' addresses) gives the rows of the one-host run.
//! Each test
//! takes the testbed's lock itself. Uses the `megatcp-echo` that `cargo test --workspace` builds
//! next to this binary (with `--features megatcp-echo/afxdp`, as `scripts/test` does).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const BENCH: &str = env!("CARGO_BIN_EXE_megatcp-bench");

/// The two tests share the testbed: one at a time.
static TESTBED: Mutex<()> = Mutex::new(());

/// Whether the test may run here and now: as root, holding the testbed's lock.
fn on_the_testbed(test: &str) -> bool {
    if !megatcp_test_support::is_root() {
        eprintln!("skipped: needs root (network namespaces, AF_XDP); CI runs it as root");
        return false;
    }
    megatcp_test_support::testbed::hold_lock(test)
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("megatcp-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

fn run(args: &[&str]) -> std::process::Output {
    let _guard = TESTBED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    Command::new(BENCH).args(args).output().unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// A row of trials.csv.
#[derive(Debug)]
struct Row {
    variant: String,
    sweep: String,
    txns_per_conn: u64,
    ok: bool,
    /// The server's CPU time per transaction, and how it was measured.
    server_us_per_txn: f64,
    server_cost: String,
    close: String,
    error: String,
}

fn rows(dir: &Path) -> Vec<Row> {
    read(dir, "trials.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(24, ',').collect();
            assert_eq!(f.len(), 24, "{l}");
            Row {
                variant: f[0].to_string(),
                sweep: f[2].to_string(),
                txns_per_conn: f[4].parse().unwrap(),
                ok: f[9] == "true",
                server_us_per_txn: f[20].parse().unwrap(),
                server_cost: f[21].to_string(),
                close: f[22].to_string(),
                error: f[23].to_string(),
            }
        })
        .collect()
}

#[test]
fn quick_head_to_head_writes_a_complete_report() {
    if !on_the_testbed("quick_head_to_head_writes_a_complete_report") {
        return;
    }
    let dir = out_dir("quick");
    let out = run(&["--quick", "--out", dir.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&dir);
    let json: serde_json::Value = serde_json::from_str(&read(&dir, "trials.json")).unwrap();
    assert_eq!(json.as_array().unwrap().len(), rows.len());
    assert_eq!(
        rows.len(),
        22 * 4 + 6 + 12,
        "every variant's rows, nothing else"
    );
    for v in ["afxdp", "afxdp-rst", "dpdk", "uring", "epoll", "reflect"] {
        let mine: Vec<_> = rows.iter().filter(|r| r.variant == v).collect();
        // 11 points x 2 trials; the RST variant runs the 3 with short connections only, the
        // raw reflection the 6 persistent closed-loop points of the AF_XDP client.
        let expected = match v {
            "afxdp-rst" => 6,
            "reflect" => 12,
            _ => 22,
        };
        assert_eq!(mine.len(), expected, "{v}: {mine:?}");
        let sweeps: &[&str] = if v == "afxdp-rst" {
            &["txns_per_conn", "kernel_client"]
        } else if v == "reflect" {
            &["txns_per_conn", "msg_size", "connections"]
        } else {
            &[
                "txns_per_conn",
                "msg_size",
                "connections",
                "latency",
                "kernel_client",
            ]
        };
        for sweep in sweeps {
            assert!(
                mine.iter().any(|r| r.sweep == *sweep),
                "{v} has no {sweep} rows"
            );
        }
        for r in &mine {
            assert!(
                r.ok || !r.error.is_empty(),
                "a failed row without its error: {r:?}"
            );
            // Each row says how its connections closed: FIN unless the variant says RST.
            let close = match (r.txns_per_conn, v) {
                (0, _) => "persistent",
                (_, "afxdp-rst") => "rst",
                _ => "fin",
            };
            assert_eq!(r.close, close, "{r:?}");
            // Every measured server row says what a transaction cost the server: the
            // engine's busy time for a bypass server, process time + softirq for a kernel
            // server. The raw reflection is no server and spins: no cost.
            if r.ok && v == "reflect" {
                assert_eq!(r.server_cost, "none", "{r:?}");
            } else if r.ok {
                let basis = if v.starts_with("afxdp") || v == "dpdk" {
                    "busy"
                } else {
                    "cpu-softirq"
                };
                assert_eq!(r.server_cost, basis, "{r:?}");
                assert!(
                    r.server_us_per_txn.is_finite() && r.server_us_per_txn > 0.0,
                    "no server cost per transaction: {r:?}"
                );
            }
        }
        // A megatcp-echo built without `--features dpdk` refuses that backend: its rows are
        // all failed with that error (checked above); anything else must mostly work.
        if v == "dpdk"
            && mine
                .iter()
                .all(|r| r.error.contains("not built into this binary"))
        {
            eprintln!("dpdk: megatcp-echo was built without it; its rows are marked failed");
            continue;
        }
        // The real thing runs here: most of each variant's runs succeed.
        let ok = mine.iter().filter(|r| r.ok).count();
        assert!(
            ok * 4 >= mine.len() * 3,
            "{v}: only {ok} of {} runs worked: {mine:?}",
            mine.len()
        );
    }
    let md = read(&dir, "summary.md");
    for needle in [
        "## Targets",
        "afxdp >= 3 x epoll",
        "(FIN close) >= 0.9 x afxdp-rst (RST close)",
        "| close |",
        "afxdp/epoll",
        "afxdp/uring",
        "p99",
        "Server µs per transaction",
        "cost epoll/afxdp",
        "afxdp <= 1/5 of epoll",
        "of raw ceiling (afxdp, epoll)",
    ] {
        assert!(md.contains(needle), "summary lacks {needle:?}:\n{md}");
    }
    assert!(
        md.lines()
            .any(|l| l.starts_with("| persistent |") && l.contains("cpu") && l.contains("%, ")),
        "the persistent row gives the servers' fractions of the raw ceiling:\n{md}"
    );
    assert!(stdout.contains("## Targets"), "the summary is printed");
    for svg in [
        "txns_per_conn",
        "msg_size",
        "connections",
        "latency",
        "kernel_client",
    ] {
        let s = read(&dir, &format!("{svg}.svg"));
        assert!(s.starts_with("<svg") && s.contains("afxdp"), "{svg}.svg");
    }
    assert!(
        read(&dir, "txns_per_conn.svg").contains("afxdp-rst (RST close)"),
        "the plot names the RST close"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_variant_that_cannot_start_is_reported_failed_with_its_error() {
    if !on_the_testbed("a_variant_that_cannot_start_is_reported_failed_with_its_error") {
        return;
    }
    let dir = out_dir("broken");
    // A "server" binary that cannot serve: every row must say so.
    let fake = dir.with_extension("sh");
    std::fs::write(
        &fake,
        "#!/bin/sh\necho 'cannot serve: broken on purpose' >&2\nexit 3\n",
    )
    .unwrap();
    let _ = Command::new("chmod").arg("+x").arg(&fake).status();
    let out = run(&[
        "--quick",
        "--trials",
        "1",
        "--variants",
        "epoll",
        "--echo-bin",
        fake.to_str().unwrap(),
        "--out",
        dir.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let rows = rows(&dir);
    assert_eq!(rows.len(), 11, "one row per point");
    for r in &rows {
        assert!(!r.ok && r.error.contains("broken on purpose"), "{r:?}");
    }
    let md = read(&dir, "summary.md");
    assert!(
        md.contains("FAILED") && md.contains("broken on purpose"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&fake);
}

/// A row's key: what was measured, not how it went.
fn keys(rows: &[Row]) -> Vec<(String, String, u64, String)> {
    let mut k: Vec<_> = rows
        .iter()
        .map(|r| {
            (
                r.variant.clone(),
                r.sweep.clone(),
                r.txns_per_conn,
                r.close.clone(),
            )
        })
        .collect();
    k.sort();
    k
}

#[test]
fn two_roles_in_the_two_namespaces_give_the_rows_of_the_one_host_run() {
    if !on_the_testbed("two_roles_in_the_two_namespaces_give_the_rows_of_the_one_host_run") {
        return;
    }
    let _guard = TESTBED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let _bed = megatcp_test_support::testbed::Testbed::up();
    // Not dpdk: DPDK's net_af_xdp takes every frame of the server's queue, the control
    // connection's too.
    let common = ["--quick", "--trials", "1", "--variants", "afxdp,epoll"];

    let one = out_dir("one-host");
    let out = Command::new(BENCH)
        .args(common)
        .args(["--out", one.to_str().unwrap()])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let (server_dir, client_dir) = (out_dir("server-role"), out_dir("client-role"));
    let control = "10.77.0.1:7700";
    let mut server = megatcp_test_support::Proc::new(
        Command::new("ip")
            .args(["netns", "exec", "megatcp-srv", BENCH, "--role", "server"])
            .args(["--control", control, "--server-ns", ""])
            .args(["--out", server_dir.to_str().unwrap()])
            .stdout(std::process::Stdio::null())
            .spawn()
            .unwrap(),
    );
    let out = Command::new("ip")
        .args(["netns", "exec", "megatcp-cli", BENCH])
        .args(common)
        .args(["--role", "client", "--control", control, "--client-ns", ""])
        .args(["--out", client_dir.to_str().unwrap()])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    // The client role's bye ends the server role.
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while server.alive() {
        assert!(
            std::time::Instant::now() < end,
            "the server role did not end after the client role's bye"
        );
        std::thread::sleep(std::time::Duration::from_millis(100));
    }

    let (a, b) = (rows(&one), rows(&client_dir));
    assert_eq!(a.len(), 22, "{a:?}");
    assert_eq!(keys(&a), keys(&b), "the two runs measured different rows");
    for r in &b {
        assert!(r.ok, "two-role row failed: {r:?}\n{stderr}");
    }
    let md = read(&client_dir, "summary.md");
    assert!(
        md.contains("client: Linux") && md.contains("server: Linux"),
        "{md}"
    );
    assert!(
        read(&server_dir, "server-afxdp.log").contains("AF_XDP on mtcp-srv"),
        "the server role ran the servers"
    );
    for d in [&one, &server_dir, &client_dir] {
        let _ = std::fs::remove_dir_all(d);
    }
}
