//! libmemcached's conformance suite (`memccapable`, Debian's libmemcached-tools) against
//! `megatcp-kv` over the kernel backends on loopback: every ASCII (`-a`) and binary (`-b`)
//! test must pass. The same suite is first run against real memcached as a control.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{start_kv, start_memcached, text};

fn memccapable(port: u16, mode: &str) -> (bool, String) {
    let out = Command::new("memccapable")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "-t", "5", mode])
        .output()
        .unwrap_or_else(|e| panic!("memccapable: {e} (install libmemcached-tools)"));
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    (
        out.status.success() && all.contains("All tests passed") && !all.contains("[FAIL]"),
        all,
    )
}

fn check(extra: &[&str]) {
    let kv = start_kv(extra);
    for mode in ["-a", "-b"] {
        let (ok, out) = memccapable(kv.port, mode);
        assert!(
            ok,
            "memccapable {mode} against megatcp-kv {extra:?}:\n{out}"
        );
        // Every test of the suite ran (none skipped).
        let ran = out.lines().filter(|l| l.contains("[pass]")).count();
        assert!(ran >= 27, "only {ran} tests ran:\n{out}");
    }
}

#[test]
fn memccapable_passes_against_real_memcached_as_control() {
    let mc = start_memcached(&[]);
    for mode in ["-a", "-b"] {
        let (ok, out) = memccapable(mc.port, mode);
        assert!(ok, "memccapable {mode} against memcached:\n{out}");
    }
}

#[test]
fn memccapable_passes_over_epoll() {
    check(&["--backend", "epoll", "--cores", "0"]);
}

#[test]
fn memccapable_passes_over_uring() {
    check(&["--backend", "uring", "--cores", "0"]);
}

#[test]
fn memccapable_passes_over_epoll_on_two_cores() {
    check(&["--backend", "epoll", "--cores", "0,1"]);
}
