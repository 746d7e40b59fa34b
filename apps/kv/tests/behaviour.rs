//! The store's behaviour through the real server on loopback: eviction under `-m`, expiry
//! (small TTLs, bounded waits), and one logical store across cores (`--cores 0,1`: sets on
//! many connections, gets on many others, whichever core serves them).
#![allow(clippy::unwrap_used)]

mod common;

use std::collections::HashMap;
use std::io::Write;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::{connect, read_until, roundtrip, start_kv, text};

fn stats(port: u16) -> HashMap<String, u64> {
    stats_with(&mut connect(port))
}

fn get(c: &mut std::net::TcpStream, key: &str) -> Option<Vec<u8>> {
    let r = roundtrip(c, format!("get {key}\r\n").as_bytes(), b"END\r\n");
    if r == b"END\r\n" {
        return None;
    }
    let t = text(&r);
    let mut lines = t.split("\r\n");
    let header = lines.next().unwrap();
    assert!(header.starts_with(&format!("VALUE {key} ")), "{t}");
    Some(lines.next().unwrap().as_bytes().to_vec())
}

#[test]
fn eviction_keeps_memory_under_the_limit_and_recent_keys() {
    // 4 MiB of slab pages, items up to 64 KiB (32 stripes).
    let kv = start_kv(&["-m", "4", "-I", "64k"]);
    let mut c = connect(kv.port);
    let value = vec![b'v'; 1000];
    let n = 20_000; // ~20 MB of values into 4 MiB
    let mut batch = Vec::new();
    for i in 0..n {
        batch.extend_from_slice(format!("set key{i} 0 0 {}\r\n", value.len()).as_bytes());
        batch.extend_from_slice(&value);
        batch.extend_from_slice(b"\r\n");
        if i % 100 == 99 {
            c.write_all(&batch).unwrap();
            batch.clear();
            let mut got = Vec::new();
            while got.len() < 100 * 8 {
                let r = read_until(&mut c, b"STORED\r\n");
                assert!(!r.is_empty(), "no answer");
                got.extend_from_slice(&r);
            }
            assert_eq!(got, b"STORED\r\n".repeat(100));
        }
    }
    let s = stats(kv.port);
    let limit = 4 * 1024 * 1024;
    assert_eq!(s["limit_maxbytes"], limit);
    assert!(s["bytes"] <= limit, "bytes {} over the limit", s["bytes"]);
    assert!(s["bytes"] > limit / 2, "memory not used: {}", s["bytes"]);
    assert!(s["evictions"] > 10_000, "evictions {}", s["evictions"]);
    assert_eq!(s["curr_items"] + s["evictions"], n);
    assert_eq!(s["total_items"], n);
    // The most recent keys are all there, the oldest all gone.
    for i in n - 50..n {
        assert_eq!(
            get(&mut c, &format!("key{i}")),
            Some(value.clone()),
            "key{i}"
        );
    }
    for i in 0..50 {
        assert_eq!(get(&mut c, &format!("key{i}")), None, "key{i}");
    }
    // A read refreshes: key read often survives a second flood.
    let mut c2 = connect(kv.port);
    let hot = format!("key{}", n - 1);
    for i in 0..n {
        if i % 50 == 0 {
            assert!(get(&mut c2, &hot).is_some(), "hot key evicted at {i}");
        }
        let r = roundtrip(
            &mut c,
            &[
                format!("set other{i} 0 0 {}\r\n", value.len()).as_bytes(),
                &value,
                b"\r\n",
            ]
            .concat(),
            b"\r\n",
        );
        assert_eq!(r, b"STORED\r\n");
    }
    assert!(stats(kv.port)["bytes"] <= limit);
}

#[test]
fn items_expire_on_time_and_touch_extends() {
    let kv = start_kv(&[]);
    let mut c = connect(kv.port);
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let abs = now + 2;
    let cmds = format!(
        "set t1 0 1 1\r\na\r\nset t2 0 2 1\r\nb\r\nset abs 0 {abs} 1\r\nc\r\n\
         set long 0 100 1\r\nd\r\nset never 0 0 1\r\ne\r\nset neg 0 -1 1\r\nf\r\n\
         set touched 0 1 1\r\ng\r\nset gat 0 1 1\r\nh\r\n"
    );
    let r = roundtrip(&mut c, cmds.as_bytes(), b"STORED\r\n".repeat(8).as_slice());
    assert_eq!(r, b"STORED\r\n".repeat(8), "{}", text(&r));
    assert_eq!(get(&mut c, "neg"), None, "negative TTL: expired at once");
    for k in ["t2", "abs", "long", "never", "touched", "gat"] {
        assert!(get(&mut c, k).is_some(), "{k} gone too early");
    }
    assert_eq!(
        roundtrip(&mut c, b"touch touched 100\r\n", b"\r\n"),
        b"TOUCHED\r\n"
    );
    let r = roundtrip(&mut c, b"gat 100 gat\r\n", b"END\r\n");
    assert_eq!(r, b"VALUE gat 0 1\r\nh\r\nEND\r\n");
    std::thread::sleep(Duration::from_millis(3200));
    for k in ["t1", "t2", "abs"] {
        assert_eq!(get(&mut c, k), None, "{k} should have expired");
    }
    for k in ["long", "never", "touched", "gat"] {
        assert!(get(&mut c, k).is_some(), "{k} expired too early");
    }
    // Delayed flush_all: everything gone after the delay, not before.
    assert_eq!(roundtrip(&mut c, b"flush_all 2\r\n", b"\r\n"), b"OK\r\n");
    assert!(get(&mut c, "never").is_some());
    std::thread::sleep(Duration::from_millis(2200));
    assert_eq!(get(&mut c, "never"), None);
    assert_eq!(
        roundtrip(&mut c, b"set after 0 0 1\r\nx\r\n", b"\r\n"),
        b"STORED\r\n"
    );
    assert!(get(&mut c, "after").is_some());
}

#[test]
fn one_store_across_two_cores() {
    for backend in ["epoll", "uring"] {
        let kv = start_kv(&["--backend", backend, "--cores", "0,1"]);
        let keys_per_conn = 200;
        let setters: Vec<_> = (0..16)
            .map(|w| {
                let port = kv.port;
                std::thread::spawn(move || {
                    let mut c = connect(port);
                    let mut req = Vec::new();
                    for i in 0..keys_per_conn {
                        let v = format!("value-{w}-{i}");
                        req.extend_from_slice(
                            format!("set k{w}:{i} {w} 0 {}\r\n{v}\r\n", v.len()).as_bytes(),
                        );
                    }
                    let want = b"STORED\r\n".repeat(keys_per_conn);
                    let r = roundtrip(&mut c, &req, &want);
                    assert_eq!(r, want);
                })
            })
            .collect();
        for t in setters {
            t.join().unwrap();
        }
        let getters: Vec<_> = (0..16)
            .map(|g| {
                let port = kv.port;
                std::thread::spawn(move || {
                    let mut c = connect(port);
                    // Each getter reads every setter's keys.
                    for w in 0..16 {
                        let w = (w + g) % 16;
                        let keys: Vec<String> =
                            (0..keys_per_conn).map(|i| format!("k{w}:{i}")).collect();
                        let r = roundtrip(
                            &mut c,
                            format!("get {}\r\n", keys.join(" ")).as_bytes(),
                            b"END\r\n",
                        );
                        let mut want = Vec::new();
                        for i in 0..keys_per_conn {
                            let v = format!("value-{w}-{i}");
                            want.extend_from_slice(
                                format!("VALUE k{w}:{i} {w} {}\r\n{v}\r\n", v.len()).as_bytes(),
                            );
                        }
                        want.extend_from_slice(b"END\r\n");
                        assert_eq!(text(&r), text(&want), "getter {g}, setter {w}");
                    }
                })
            })
            .collect();
        for t in getters {
            t.join().unwrap();
        }
        let s = stats(kv.port);
        assert_eq!(s["curr_items"], 16 * keys_per_conn as u64, "{backend}");
        assert_eq!(s["get_hits"], 16 * 16 * keys_per_conn as u64, "{backend}");
        assert_eq!(s["threads"], 2);
    }
}

#[test]
fn connection_limit_is_enforced_over_all_cores() {
    let kv = start_kv(&["-c", "4", "--cores", "0,1"]);
    // Let the server see the close of the start-up probe connection.
    std::thread::sleep(Duration::from_millis(300));
    let mut held: Vec<_> = (0..4).map(|_| connect(kv.port)).collect();
    for c in &mut held {
        let r = roundtrip(c, b"version\r\n", b"\r\n");
        assert!(r.starts_with(b"VERSION "), "{}", text(&r));
    }
    let mut extra = connect(kv.port);
    let (r, closed) = common::read_to_eof(&mut extra);
    assert!(closed);
    assert_eq!(r, b"ERROR Too many open connections\r\n");
    drop(held.pop());
    // The slot comes back once the server has seen the close.
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        let mut c = connect(kv.port);
        let r = roundtrip(&mut c, b"version\r\n", b"\r\n");
        if r.starts_with(b"VERSION ") {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "slot not released");
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(stats_with(&mut held[0])["rejected_connections"] >= 1);
}

fn stats_with(c: &mut std::net::TcpStream) -> HashMap<String, u64> {
    let r = roundtrip(c, b"stats\r\n", b"END\r\n");
    text(&r)
        .lines()
        .filter_map(|l| {
            let mut p = l.split(' ');
            match (p.next(), p.next(), p.next()) {
                (Some("STAT"), Some(k), Some(v)) => Some((k.to_string(), v.parse().ok()?)),
                _ => None,
            }
        })
        .collect()
}
