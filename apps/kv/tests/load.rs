//! The load generator (`megatcp-kv load`, on the epoll and io_uring backends) against real
//! memcached and against megatcp-kv on loopback: every response verified, no errors, every
//! preloaded key found, and gets/sets in the requested ratio.
#![allow(clippy::unwrap_used)]

mod common;

use std::process::Command;

use common::{KV, start_kv, start_memcached, text};

fn load(port: u16, backend: &str, depth: &str) -> serde_json::Value {
    let out = Command::new(KV)
        .args(["load", "--backend", backend, "--cores", "1"])
        .args(["--connect", &format!("127.0.0.1:{port}")])
        .args(["--connections", "16", "--depth", depth, "--keys", "2000"])
        .args(["--value-size", "100", "--get-ratio", "0.8"])
        .args(["--duration", "1", "--warmup", "0.2", "--json"])
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", text(&out.stderr)));
    assert!(out.status.success(), "{r}");
    r
}

fn check(r: &serde_json::Value, what: &str) {
    let n = |k: &str| r[k].as_u64().unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{what}: {r}");
    assert_eq!(r["errors"]["protocol"], 0, "{what}: {r}");
    assert!(n("ops") > 1000, "{what}: {r}");
    assert_eq!(n("preloaded"), 2000, "{what}: {r}");
    assert_eq!(n("hits"), n("gets"), "{what}: preloaded keys missing: {r}");
    let ratio = n("gets") as f64 / n("ops") as f64;
    assert!(
        (0.75..0.85).contains(&ratio),
        "{what}: get ratio {ratio}: {r}"
    );
}

#[test]
fn the_generator_verifies_real_memcached_and_megatcp_kv() {
    let mc = start_memcached(&[]);
    check(&load(mc.port, "epoll", "1"), "memcached, epoll");
    check(&load(mc.port, "uring", "8"), "memcached, uring, depth 8");
    drop(mc);
    let kv = start_kv(&["--backend", "uring", "--cores", "0"]);
    check(&load(kv.port, "epoll", "1"), "megatcp-kv, epoll");
    check(&load(kv.port, "epoll", "16"), "megatcp-kv, epoll, depth 16");
}
