//! Differential test of the statistics and of memory accounting: the same commands go to
//! real memcached 1.6 (`-t 1 -U 0`, with the options that make it work as megatcp-kv
//! does: one LRU per slab class, no background threads) and to `megatcp-kv`, with the
//! same `-m`, `-I`, `-f` and `-n`; after each phase `stats items`, `stats slabs`,
//! `stats sizes`, `stats cachedump` and `stats detail dump` must match byte for byte, value
//! for value (slab classes, pages, chunks used and free, hits per class, evictions,
//! reclaims, memory requested), and so must the binary `STAT` groups (`items`, `slabs`,
//! `sizes`, `detail on|off|dump`, `reset`, and the not-found answers). Ages may differ by
//! one second (memcached's clock ticks on a timer of its own); the general statistics and
//! `settings` are compared by name (and `settings` by value where the setting means the
//! same here).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use common::{
    MEMCACHED_LIKE_KV, connect, differential, read_until, start_kv, start_memcached, text,
    times_close,
};
use megatcp_kv::binary::{Header, op, parse_response};

const MARK: u32 = 0xffff_ffff;

enum Step {
    /// A text command; `mn` marks the end of its answers.
    Text(String),
    /// A binary `STAT` with this key; a NOOP marks the end.
    Stat(&'static str),
    /// Wait (for expiry).
    Sleep(u64),
}

fn t(s: impl Into<String>) -> Step {
    Step::Text(s.into())
}

/// `n` stores of `len`-byte values under `prefix<i>` (noreply), with an expiry.
fn fill(prefix: &str, n: usize, len: usize, exptime: u32) -> Step {
    let v = "v".repeat(len);
    let mut s = String::new();
    for i in 0..n {
        s.push_str(&format!(
            "set {prefix}{i} 0 {exptime} {len} noreply\r\n{v}\r\n"
        ));
    }
    Step::Text(s)
}

fn report() -> Vec<Step> {
    vec![
        t("stats items\r\n"),
        t("stats slabs\r\n"),
        Step::Stat("items"),
        Step::Stat("slabs"),
    ]
}

/// Classes, pages and per-class counters at the default sizes.
fn classes_script() -> Vec<Step> {
    let mut s = vec![
        t("stats items\r\nstats slabs\r\nstats sizes\r\n"),
        t("set a 0 0 1\r\n1\r\nset bb 5 0 100\r\n".to_string() + &"b".repeat(100) + "\r\n"),
        t(format!("set c 0 0 1000\r\n{}\r\n", "c".repeat(1000))),
        t(format!("set d 7 0 5000\r\n{}\r\n", "d".repeat(5000))),
        t(format!("set e 0 0 70000\r\n{}\r\n", "e".repeat(70000))),
        t(format!("set big 0 0 600000\r\n{}\r\n", "g".repeat(600_000))),
        t(format!(
            "set huge 0 0 1000000\r\n{}\r\n",
            "h".repeat(1_000_000)
        )),
    ];
    s.extend(report());
    s.extend([
        t("get a bb c missing\r\ngets d\r\ntouch a 100\r\ngat 100 bb\r\ngat 100 none\r\n"),
        t("set n 0 0 1\r\n9\r\nincr n 1\r\nincr n 5\r\ndecr n 2\r\ndecr none 1\r\n"),
        t("cas c 0 0 1 1\r\nx\r\ncas none 0 0 1 1\r\nx\r\n"),
        t("delete a\r\ndelete none\r\n"),
        t(format!(
            "set bb 0 0 3000\r\n{}\r\nappend c 0 0 2000\r\n{}\r\n",
            "B".repeat(3000),
            "C".repeat(2000)
        )),
        t("mg c v\r\nmg e s t\r\nmd d\r\nma n D10\r\nms m 2 T100\r\nhi\r\nmg m v\r\n"),
        t("set x 0 0 3\r\nabc\r\nset x 0 0 4\r\nabcd\r\nset x 0 0 3 noreply\r\nab\r\n"),
        t("stats cachedump 1 0\r\nstats cachedump 5 1\r\nstats cachedump 70 1\r\n"),
        t("stats cachedump 1\r\nstats cachedump x 1\r\n"),
    ]);
    s.extend(report());
    s.extend([
        // Detail counts, several prefixes (their order is memcached's hash order).
        t("stats detail on\r\nset p1:a 0 0 1\r\n1\r\nset p2:b 0 0 1\r\n2\r\n"),
        t("get p1:a p2:b p3:c nopfx\r\ndelete p4:d\r\nset p5:e 0 0 1\r\nxx\r\n"),
        t("stats detail dump\r\n"),
        Step::Stat("detail dump"),
        Step::Stat("detail off"),
        t("get p1:a\r\nstats detail dump\r\n"),
        Step::Stat("detail on"),
        t("get p1:a\r\nstats detail dump\r\nstats detail off\r\n"),
        Step::Stat("detail"),
        Step::Stat("detail bogus"),
        Step::Stat("sizes"),
        Step::Stat("conns"),
        Step::Stat("bogus"),
        Step::Stat("reset"),
        t("stats detail dump\r\nstats slabs\r\n"),
        t("stats reset\r\nstats items\r\n"),
        // A lazy flush: items stay counted until found or reclaimed.
        t("flush_all\r\n"),
    ]);
    s.extend(report());
    s.extend([t("get bb c\r\nget d\r\n")]);
    s.extend(report());
    s
}

/// A full cache: evictions, reclaimed expired items, memory that stops growing.
fn eviction_script() -> Vec<Step> {
    let mut s = vec![fill("k", 12_000, 100, 0), t("get k0 k1 k11999\r\n")];
    s.extend(report());
    s.extend([
        fill("e", 200, 1000, 1),
        fill("f", 200, 1000, 0),
        Step::Sleep(2100),
        fill("g", 300, 1000, 0),
        fill("k", 100, 100, 0),
    ]);
    s.extend(report());
    s.push(t(format!(
        "set toobig 0 0 2000000\r\n{}\r\n",
        "x".repeat(2_000_000)
    )));
    s.extend(report());
    s
}

/// Other growth factor, minimum chunk and item size: chunked items above 1 MiB.
fn factor_script() -> Vec<Step> {
    let mut s = vec![
        t(format!("set a 0 0 10\r\n{}\r\n", "a".repeat(10))),
        t(format!("set b 0 0 400\r\n{}\r\n", "b".repeat(400))),
        t(format!(
            "set c 1 0 1500000\r\n{}\r\n",
            "c".repeat(1_500_000)
        )),
        t(format!(
            "set d 0 0 2097000\r\n{}\r\n",
            "d".repeat(2_097_000)
        )),
        t("get a c\r\n"),
    ];
    s.extend(report());
    s
}

fn bin_stat(key: &str) -> Vec<u8> {
    let mut b = Vec::new();
    Header {
        opcode: op::STAT,
        keylen: key.len() as u16,
        extlen: 0,
        bodylen: key.len() as u32,
        opaque: 7,
        cas: 0,
    }
    .encode(&mut b);
    b.extend_from_slice(key.as_bytes());
    Header {
        opcode: op::NOOP,
        keylen: 0,
        extlen: 0,
        bodylen: 0,
        opaque: MARK,
        cas: 0,
    }
    .encode(&mut b);
    b
}

/// Binary answers up to the marker, one line per packet.
fn read_binary(c: &mut TcpStream) -> Vec<String> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let mut off = 0;
        let mut lines = Vec::new();
        while let Ok(Some((r, n))) = parse_response(&buf[off..]) {
            off += n;
            if r.opaque == MARK {
                return lines;
            }
            lines.push(format!(
                "op {:#04x} status {} opaque {} key {:?} value {:?}",
                r.opcode,
                r.status,
                r.opaque,
                text(r.key),
                text(r.value)
            ));
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed while waiting for the marker");
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Statistics whose values are times: compared within a second.
fn is_time(name: &str) -> bool {
    name.ends_with(":age") || name.ends_with(":evicted_time")
}

/// One answer: lines with time values taken out, and the times.
fn normalize(lines: Vec<String>) -> (Vec<String>, Vec<i64>) {
    let mut times = Vec::new();
    let out = lines
        .into_iter()
        .map(|l| {
            // Text `STAT name value`, binary `key "name" value "v"`, cachedump `[n b; T s]`.
            let parts: Vec<&str> = l.split(' ').collect();
            if parts.len() == 3 && parts[0] == "STAT" && is_time(parts[1]) {
                times.push(parts[2].parse().unwrap_or(-1));
                return format!("STAT {} <time>", parts[1]);
            }
            if let Some(i) = l.find("key \"") {
                let name = l[i + 5..].split('"').next().unwrap_or("");
                if is_time(name) {
                    let v = l.rsplit('"').nth(1).unwrap_or("");
                    times.push(v.parse().unwrap_or(-1));
                    return format!("{} <time>", &l[..i + 5 + name.len() + 1]);
                }
            }
            if l.starts_with("ITEM ") {
                if let Some(p) = l.rfind("; ") {
                    // An absolute expiry: compared as seconds from now (the two servers
                    // run one after the other).
                    let v: i64 = l[p + 2..].trim_end_matches(" s]").parse().unwrap_or(-1);
                    times.push(if v > 0 { v - unix_now() } else { v });
                    return format!("{}; <time> s]", &l[..p]);
                }
            }
            l
        })
        .collect();
    (out, times)
}

fn run(port: u16, steps: &[Step]) -> Vec<(Vec<String>, Vec<i64>)> {
    let mut tc = connect(port);
    let mut bc = connect(port);
    let mut out = Vec::new();
    for step in steps {
        let lines = match step {
            Step::Text(s) => {
                tc.write_all(s.as_bytes()).unwrap();
                tc.write_all(b"mn\r\n").unwrap();
                let r = read_until(&mut tc, b"MN\r\n");
                text(&r).split("\r\n").map(str::to_string).collect()
            }
            Step::Stat(key) => {
                bc.write_all(&bin_stat(key)).unwrap();
                read_binary(&mut bc)
            }
            Step::Sleep(ms) => {
                std::thread::sleep(Duration::from_millis(*ms));
                Vec::new()
            }
        };
        out.push(normalize(lines));
    }
    out
}

fn compare(args: &[&str], steps: fn() -> Vec<Step>) {
    let mc_args: Vec<&str> = args.iter().chain(MEMCACHED_LIKE_KV).copied().collect();
    let mut kv_args = args.to_vec();
    kv_args.extend(["--backend", "epoll", "--cores", "0"]);
    differential(
        &mc_args,
        &kv_args,
        |port| run(port, &steps()),
        |(e, et), (g, gt)| e == g && times_close(et, gt),
        |_| String::new(),
    );
}

#[test]
fn slab_and_item_statistics_match_memcached() {
    compare(&[], classes_script);
}

#[test]
fn a_full_cache_evicts_and_reclaims_as_memcached() {
    compare(&["-m", "2"], eviction_script);
}

#[test]
fn growth_factor_minimum_chunk_and_large_items_match_memcached() {
    compare(
        &["-f", "2", "-n", "100", "-I", "2m", "-m", "16"],
        factor_script,
    );
}

/// The names of the general statistics and of the settings, and the settings that mean
/// the same here, match memcached's (over both protocols).
#[test]
fn general_statistics_and_settings_have_memcacheds_names() {
    let same = [
        "maxbytes",
        "maxconns",
        "udpport",
        "verbosity",
        "evictions",
        "domain_socket",
        "growth_factor",
        "chunk_size",
        "stat_key_prefix",
        "detail_enabled",
        "cas_enabled",
        "tcp_backlog",
        "binding_protocol",
        "auth_enabled_sasl",
        "item_size_max",
        "slab_reassign",
        "slab_chunk_max",
        "lru_crawler",
        "flush_enabled",
        "dump_enabled",
        "lru_maintainer_thread",
        "lru_segmented",
        "temp_lru",
        "track_sizes",
    ];
    let grab = |port: u16| {
        let mut c = connect(port);
        c.write_all(b"stats\r\nmn\r\n").unwrap();
        let general = text(&read_until(&mut c, b"MN\r\n"));
        c.write_all(b"stats settings\r\nmn\r\n").unwrap();
        let settings = text(&read_until(&mut c, b"MN\r\n"));
        let mut b = connect(port);
        b.write_all(&bin_stat("")).unwrap();
        let bin_general = read_binary(&mut b);
        let names = |s: &str| -> Vec<String> {
            s.lines()
                .filter_map(|l| l.strip_prefix("STAT "))
                .map(|l| l.split(' ').next().unwrap_or("").to_string())
                .collect()
        };
        let values: Vec<String> = settings
            .lines()
            .filter_map(|l| l.strip_prefix("STAT "))
            .filter(|l| same.contains(&l.split(' ').next().unwrap_or("")))
            .map(str::to_string)
            .collect();
        let bin_names: Vec<String> = bin_general
            .iter()
            .filter_map(|l| l.split("key \"").nth(1))
            .map(|l| l.split('"').next().unwrap_or("").to_string())
            .filter(|k| !k.is_empty())
            .collect();
        (names(&general), values, bin_names)
    };
    let mc_args: Vec<&str> = ["-m", "32", "-c", "500", "-f", "1.5", "-n", "60"]
        .iter()
        .chain(MEMCACHED_LIKE_KV)
        .copied()
        .collect();
    let mc = start_memcached(&mc_args);
    let expected = grab(mc.port);
    drop(mc);
    let kv = start_kv(&["-m", "32", "-c", "500", "-f", "1.5", "-n", "60"]);
    let got = grab(kv.port);
    assert_eq!(expected.0, got.0, "general statistics");
    assert_eq!(expected.1, got.1, "settings");
    assert_eq!(expected.2, got.2, "binary general statistics");
    assert_eq!(expected.0, expected.2, "text and binary list the same");
}
