//! Differential test of the meta protocol: one script of `mg`, `ms`, `md`, `ma`, `me` and
//! `mn` commands (every flag, quiet mode, opaque, base64 keys, CAS, TTL, stale / win /
//! recache, errors) is sent to real memcached 1.6 (`-t 1 -U 0`, with the options that make
//! it work as megatcp-kv does) and to `megatcp-kv`; the answers must match byte for byte,
//! but for CAS values (masked; `{CAS}` in a step is the last CAS that server returned) and
//! times (a TTL or an access age may differ by one second: memcached's clock ticks on a
//! timer of its own).
//!
//! Each step is followed by `mn` (answered `MN`), which marks the end of its answers and
//! shows what quiet mode left out.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;

use common::{
    MEMCACHED_LIKE_KV, connect, differential, read_to_eof, read_until, text, times_close,
};

enum Step {
    /// Send, then the marker.
    Cmd(String),
    /// Wait this many milliseconds (for TTLs and access ages to move).
    Sleep(u64),
    /// Send; the server closes the connection (the runner reconnects).
    Closes(String),
}

fn cmd(s: impl Into<String>) -> Step {
    Step::Cmd(s.into())
}

fn script() -> Vec<Step> {
    let k250 = "k".repeat(250);
    let k251 = "k".repeat(251);
    let opaque32 = format!("O{}", "o".repeat(31));
    let opaque33 = format!("O{}", "o".repeat(32));
    let many_flags = "v s t f c k h l q u O1 T1 N1 R1 F1 C1 I M";
    let big = 1_048_576 - 48 - 4 - 2 - 8; // the largest value of key "big", flags 0
    vec![
        cmd("flush_all\r\n"),
        // mg: hits and misses, every output flag.
        cmd("set a 5 0 3\r\nabc\r\n"),
        cmd("mg a\r\n"),
        cmd("mg a v\r\n"),
        cmd("mg a s v f t c k O123\r\n"),
        cmd("mg a k O123 v s\r\n"),
        cmd("mg a h l\r\n"),
        cmd("mg a h l u\r\n"),
        cmd("mg missing\r\n"),
        cmd("mg missing v s t c f\r\n"),
        cmd("mg missing k O99 v\r\n"),
        cmd("mg missing q v\r\nmg missing q k O1\r\n"),
        cmd("mg a q v\r\n"),
        cmd("mg a T30 t v\r\nmg a t\r\n"),
        cmd("mg a T-1 t\r\nmg a v\r\n"),
        cmd(format!("mg {k250} v\r\nmg {k251} v\r\n")),
        cmd(format!("mg a {opaque32}\r\nmg a {opaque33}\r\nmg missing {opaque33}\r\n")),
        // mg: flag errors.
        cmd("mg a v v\r\n"),
        cmd("mg a x\r\n"),
        cmd("mg a Tabc\r\nmg a N\r\nmg a R1x\r\nmg a Mxx\r\nmg a Fx v\r\n"),
        cmd(format!("mg a {many_flags}\r\n")),
        cmd("mg\r\nmg \r\n"),
        cmd("mx a\r\nm a\r\n"),
        // ms: modes, flags, CAS.
        cmd("ms b 3\r\nxyz\r\nmg b v f t\r\n"),
        cmd("ms b 3 T100 F7 c k O5\r\nxyz\r\nmg b v f t c\r\n"),
        cmd("ms b 2 q\r\nqq\r\nmg b v\r\n"),
        cmd("ms b 2 ME\r\nno\r\nms new 2 ME c\r\nok\r\nmg new v\r\n"),
        cmd("ms b 2 MA\r\n-a\r\nms b 2 MP\r\np-\r\nmg b v f t\r\n"),
        cmd("ms none 1 MA\r\nx\r\nms none 1 MP\r\nx\r\nms none 1 MR\r\nx\r\n"),
        cmd("ms b 3 MR F9\r\nrep\r\nms b 3 MS\r\nset\r\nmg b v f\r\n"),
        cmd("ms b 1 MX\r\nx\r\nmg b v\r\n"),
        cmd("ms b 1 Mxy\r\nx\r\nmg b v\r\n"),
        cmd("mg b c\r\n"),
        cmd("ms b 1 C{CAS} c\r\n1\r\nms b 1 C{CAS}\r\n2\r\nmg b v\r\n"),
        cmd("ms gone 1 C5\r\n1\r\nms gone 1 C5 MR\r\n1\r\nms gone 1 C5 ME\r\n1\r\n"),
        cmd("mg b c\r\n"),
        cmd("ms b 2 MA C{CAS}\r\n-x\r\nms b 2 MA C1\r\n-y\r\nmg b v\r\n"),
        cmd("ms b 3 T0 F0\r\nnew\r\nmg b v t f\r\n"),
        cmd("ms b 3 T-1\r\ndie\r\nmg b v\r\n"),
        cmd("ms b 3 q k O7\r\nqqq\r\nms b 3 q ME\r\nqqq\r\n"),
        cmd("ms b 5\r\nabc\r\nmg b v\r\n"),
        cmd("ms b abc\r\nms b -1\r\nms b\r\nms\r\n"),
        cmd("ms b 2 x\r\nzz\r\nms b 2 v v\r\nzz\r\n"),
        cmd(format!("ms b 1 {opaque33}\r\nz\r\nms b 1 MX {opaque33}\r\nz\r\n")),
        cmd(format!("ms {k251} 1\r\nz\r\n")),
        cmd(format!(
            "ms big {big}\r\n{}\r\nmg big s\r\n",
            "x".repeat(big)
        )),
        cmd(format!(
            "ms big {}\r\n{}\r\nmg big s\r\n",
            big + 1,
            "x".repeat(big + 1)
        )),
        // md: delete, CAS, invalidate (stale, win, recache).
        cmd("ms d 1\r\n1\r\nmd d\r\nmd d\r\nmd d q\r\nmg d v\r\n"),
        cmd("ms d 1\r\n1\r\nmd d q\r\nmg d v\r\n"),
        cmd("ms d 1\r\n1\r\nmd d k O3 C1\r\nmg d c\r\n"),
        cmd("md d C{CAS} k\r\nmg d v\r\n"),
        cmd("ms d 3 T100\r\nold\r\nmd d I T30\r\nmg d v t c\r\nmg d v t\r\nmg d v\r\n"),
        cmd("mg d c\r\n"),
        cmd("ms d 3 I C1\r\nnew\r\nmg d v c\r\n"),
        cmd("ms d 3 C{CAS}\r\nnew\r\nmg d v\r\n"),
        cmd("md d I\r\nmg d v\r\nmg d v\r\nms d 3 I C{CAS}\r\nold\r\n"),
        cmd("md missing q\r\nmd missing I\r\n"),
        cmd("md d x\r\nmd d v v\r\nmd\r\n"),
        cmd(format!("md d {opaque33}\r\nmd {k251}\r\n")),
        // Autovivification and recache.
        cmd("mg viv N30 v t c\r\nmg viv N30 v t\r\nmg viv v t\r\n"),
        cmd("ms viv 4 T60\r\nfill\r\nmg viv v t\r\n"),
        cmd("mg viv R30 v t\r\nmg viv R90 v t\r\nmg viv R90 v t\r\n"),
        cmd("ms viv 4 T60\r\nfill\r\nmg viv R90 v\r\n"),
        cmd("mg viv2 N0 q v\r\nmg viv2 q v\r\n"),
        // ma: arithmetic.
        cmd("ma n\r\nma n q\r\nma n N0 J10 v\r\nma n v t c\r\n"),
        cmd("ma n D5 v\r\nma n MD D3 v\r\nma n M- D100 v\r\nma n M+ v\r\nma n MI v\r\n"),
        cmd("ma n q v\r\nma n q\r\nmg n v\r\n"),
        cmd("ma n T30 t v\r\nma n t\r\nma n k O9 v\r\n"),
        cmd("ms n 20\r\n18446744073709551615\r\nma n v\r\nma n v D18446744073709551615\r\n"),
        cmd("ms n 2\r\n99\r\nma n v\r\nmg n v s\r\n"),
        cmd("mg n c\r\n"),
        cmd("ma n C{CAS} v\r\nma n C1 v\r\nma missing C1\r\n"),
        cmd("ms t 3\r\nabc\r\nma t\r\nma t q\r\nms e 0\r\n\r\nma e\r\n"),
        cmd("ma n MX\r\nma n Dx\r\nma n Jx N0\r\nma n v v\r\nma\r\n"),
        cmd("ma viv3 N30 J7 T10 t v c\r\nma viv3 t v\r\n"),
        cmd(format!("ma n {opaque33}\r\nma missing {opaque33}\r\nma {k251}\r\n")),
        // Base64 keys.
        cmd("ms Zm9vYmFy 3 b k\r\nbin\r\nmg Zm9vYmFy b k v\r\nget foobar\r\n"),
        cmd("mg Zm9vYmFy b k v O1\r\nme Zm9vYmFy b\r\nme foobar\r\n"),
        cmd("ma AAEC b N0 J5 k v\r\nmg AAEC b k v\r\nmd AAEC b k\r\nmg AAEC b k v\r\n"),
        cmd("mg !!!! b v\r\nmg Zm9 b v\r\nms Zm9 1 b\r\nx\r\nmd Zm9 b\r\nma Zm9 b\r\nme Zm9 b\r\n"),
        cmd("mg missing b k v\r\nmg bWlzc2luZw== b k v O2\r\n"),
        cmd("set plain 0 0 1\r\np\r\nmg cGxhaW4= b k v\r\n"),
        // me.
        cmd("set m 3 0 2\r\nhi\r\nme m\r\nmg m v\r\nme m\r\nme missing\r\n"),
        cmd("me\r\nme m b\r\nme m x y\r\n"),
        cmd(format!("me {k251}\r\n")),
        Step::Sleep(2100),
        cmd("mg m l t v\r\nme m\r\nmg viv t\r\nmg a t l h\r\n"),
        // Quiet pipelines.
        cmd("mg a q v\r\nmg none q v\r\nms q1 1 q\r\n1\r\nmd q1 q\r\nmd q1 q\r\nma q2 q\r\nmn\r\n"),
        // Meta commands and stats.
        cmd("stats detail on\r\nmg pre:a v\r\nms pre:a 1\r\n1\r\nstats detail dump\r\nstats detail off\r\n"),
        cmd("mn\r\nmn extra tokens\r\n"),
    ]
    .into_iter()
    .chain([Step::Closes(
        "ms c 1 T10\r\n1\r\nmg c v\r\nquit\r\nmg c v\r\n".into(),
    )])
    .chain([cmd("mg c v\r\n")])
    .collect()
}

/// The last CAS value in a transcript (`c<digits>` of a meta answer, `cas=` of `me`).
fn last_cas(resp: &str) -> Option<String> {
    let mut found = None;
    for line in resp.lines() {
        for tok in line.split(' ').skip(1) {
            if let Some(d) = tok.strip_prefix('c').or_else(|| tok.strip_prefix("cas=")) {
                if !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()) {
                    found = Some(d.to_string());
                }
            }
        }
    }
    found
}

/// An answer with CAS values masked and time values taken out (compared within a second).
fn mask(resp: &[u8]) -> (String, Vec<i64>) {
    let t = text(resp);
    let mut out = String::new();
    let mut times = Vec::new();
    for line in t.split_inclusive("\r\n") {
        let body = line.trim_end_matches("\r\n");
        let is_meta = ["HD", "VA", "EN", "NF", "NS", "EX", "ME"]
            .iter()
            .any(|c| body == *c || body.starts_with(&format!("{c} ")));
        if !is_meta {
            out.push_str(line);
            continue;
        }
        let toks: Vec<String> = body
            .split(' ')
            .enumerate()
            .map(|(i, tok)| {
                if i == 0 {
                    return tok.to_string();
                }
                for (p, kind) in [
                    ("la=", 't'),
                    ("exp=", 't'),
                    ("cas=", 'c'),
                    ("t", 't'),
                    ("l", 't'),
                    ("c", 'c'),
                ] {
                    if let Some(d) = tok.strip_prefix(p) {
                        if let Ok(v) = d.parse::<i64>() {
                            if kind == 't' {
                                times.push(v);
                                return format!("{p}<time>");
                            }
                            return format!("{p}<cas>");
                        }
                    }
                }
                tok.to_string()
            })
            .collect();
        out.push_str(&toks.join(" "));
        out.push_str("\r\n");
    }
    (out, times)
}

fn run_script(port: u16) -> Vec<(String, Vec<i64>)> {
    let mut conn = connect(port);
    let mut cas = String::from("0");
    let mut transcript = Vec::new();
    for (i, step) in script().into_iter().enumerate() {
        let resp = match step {
            Step::Cmd(s) => {
                conn.write_all(s.replace("{CAS}", &cas).as_bytes()).unwrap();
                conn.write_all(b"mn\r\n").unwrap();
                // The step's own `mn` commands answer too.
                let marks = 1 + s
                    .split("\r\n")
                    .filter(|l| *l == "mn" || l.starts_with("mn "))
                    .count();
                let mut resp = Vec::new();
                while text(&resp).matches("MN\r\n").count() < marks {
                    let more = read_until(&mut conn, b"MN\r\n");
                    assert!(!more.is_empty(), "step {i}: no answer");
                    resp.extend_from_slice(&more);
                }
                resp
            }
            Step::Sleep(ms) => {
                std::thread::sleep(std::time::Duration::from_millis(ms));
                Vec::new()
            }
            Step::Closes(s) => {
                conn.write_all(s.as_bytes()).unwrap();
                let (resp, closed) = read_to_eof(&mut conn);
                assert!(closed, "step {i}: the server did not close");
                conn = connect(port);
                resp
            }
        };
        if let Some(c) = last_cas(&text(&resp)) {
            cas = c;
        }
        transcript.push(mask(&resp));
    }
    transcript
}

#[test]
fn meta_protocol_matches_real_memcached_byte_for_byte() {
    let steps = script();
    differential(
        MEMCACHED_LIKE_KV,
        &["--backend", "epoll", "--cores", "0"],
        run_script,
        |(e, et), (g, gt)| e == g && times_close(et, gt),
        |i| match &steps[i] {
            Step::Cmd(s) | Step::Closes(s) => {
                format!("{:?}", s.chars().take(120).collect::<String>())
            }
            Step::Sleep(_) => String::new(),
        },
    );
}
