//! `megatcp-bench --quick` on the veth testbed (root; CI runs as root): the report is
//! complete, every variant has its rows, and a variant that cannot run is reported as failed
//! with its error, not dropped. Uses the `megatcp-echo` that `cargo test --workspace` builds
//! next to this binary (with `--features megatcp-echo/afxdp`, as `scripts/test` does).
#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Mutex;

const BENCH: &str = env!("CARGO_BIN_EXE_megatcp-bench");

/// The two tests share the testbed: one at a time.
static TESTBED: Mutex<()> = Mutex::new(());

fn is_root() -> bool {
    let out = Command::new("id").arg("-u").output().unwrap();
    String::from_utf8_lossy(&out.stdout).trim() == "0"
}

fn out_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("megatcp-bench-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    d
}

const LOCK: &str = "/run/megatcp-testbed.lock";

/// Whether some ancestor process is a `flock` on the testbed lock (the test was started
/// under it).
fn under_lock() -> bool {
    let mut pid = std::process::id().to_string();
    while pid != "0" && pid != "1" {
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let Some(parent) = status.lines().find_map(|l| l.strip_prefix("PPid:")) else {
            return false;
        };
        pid = parent.trim().to_string();
        let argv = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        if argv.starts_with(b"flock") && String::from_utf8_lossy(&argv).contains(LOCK) {
            return true;
        }
    }
    false
}

/// Runs megatcp-bench, holding the testbed's lock: the testbed is shared with the other
/// tests and people that use it.
fn run(args: &[&str]) -> std::process::Output {
    let _guard = TESTBED
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if under_lock() {
        return Command::new(BENCH).args(args).output().unwrap();
    }
    Command::new("flock")
        .args(["-w", "1800", LOCK, BENCH])
        .args(args)
        .output()
        .unwrap()
}

fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"))
}

/// The rows of trials.csv as (variant, sweep, ok, error).
fn rows(dir: &Path) -> Vec<(String, String, bool, String)> {
    read(dir, "trials.csv")
        .lines()
        .skip(1)
        .map(|l| {
            let f: Vec<&str> = l.splitn(21, ',').collect();
            assert_eq!(f.len(), 21, "{l}");
            (
                f[0].to_string(),
                f[2].to_string(),
                f[9] == "true",
                f[20].to_string(),
            )
        })
        .collect()
}

#[test]
fn quick_head_to_head_writes_a_complete_report() {
    if !is_root() {
        eprintln!("skipped: needs root (network namespaces, AF_XDP); CI runs it as root");
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
    for v in ["afxdp", "dpdk", "uring", "epoll"] {
        let mine: Vec<_> = rows.iter().filter(|r| r.0 == v).collect();
        // 11 points x 2 trials.
        assert_eq!(mine.len(), 22, "{v}: {mine:?}");
        for sweep in [
            "txns_per_conn",
            "msg_size",
            "connections",
            "latency",
            "kernel_client",
        ] {
            assert!(mine.iter().any(|r| r.1 == sweep), "{v} has no {sweep} rows");
        }
        for r in &mine {
            assert!(
                r.2 || !r.3.is_empty(),
                "a failed row without its error: {r:?}"
            );
        }
        // A megatcp-echo built without `--features dpdk` refuses that backend: its rows are
        // all failed with that error (checked above); anything else must mostly work.
        if v == "dpdk"
            && mine
                .iter()
                .all(|r| r.3.contains("not built into this binary"))
        {
            eprintln!("dpdk: megatcp-echo was built without it; its rows are marked failed");
            continue;
        }
        // The real thing runs here: most of each variant's runs succeed.
        let ok = mine.iter().filter(|r| r.2).count();
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
        "afxdp/epoll",
        "afxdp/uring",
        "p99",
    ] {
        assert!(md.contains(needle), "summary lacks {needle:?}:\n{md}");
    }
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
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn a_variant_that_cannot_start_is_reported_failed_with_its_error() {
    if !is_root() {
        eprintln!("skipped: needs root");
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
        assert!(!r.2 && r.3.contains("broken on purpose"), "{r:?}");
    }
    let md = read(&dir, "summary.md");
    assert!(
        md.contains("FAILED") && md.contains("broken on purpose"),
        "{md}"
    );
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_file(&fake);
}
