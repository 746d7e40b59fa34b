//! Differential test: one script of text-protocol commands (normal use, edge cases, errors)
//! is sent to real memcached (`-t 1 -U 0`, started here on a free loopback port) and to
//! `megatcp-kv`; the responses must match byte for byte, CAS values, stats values and the
//! version string masked.
//!
//! Each step is sent on its own, followed by `mn` (answered `MN`) to mark the end of its
//! responses; `{CAS}` in a step is replaced by the last CAS value that server returned.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::time::Duration;

use common::{MEMCACHED_LIKE_KV, connect, differential, read_to_eof, read_until, text};

enum Step {
    /// Send, then the marker.
    Cmd(Vec<u8>),
    /// Send in two parts with a pause between (a request split across reads).
    Split(Vec<u8>, usize),
    /// Send; the server closes the connection (the runner reconnects).
    Closes(Vec<u8>),
}

fn cmd(s: impl AsRef<[u8]>) -> Step {
    Step::Cmd(s.as_ref().to_vec())
}

fn script() -> Vec<Step> {
    let k250 = "k".repeat(250);
    let k251 = "k".repeat(251);
    let big_ok = 1_048_576 - 48 - 2 - 8 - 2; // the largest value of key "b", flags 0
    let mut s = vec![
        cmd("flush_all\r\n"),
        cmd("set a 0 0 1\r\n1\r\n"),
        cmd("get a\r\n"),
        cmd("gets a\r\n"),
        cmd("get a b c a\r\n"),
        cmd("set b 123 0 5\r\nhello\r\nset c 4294967295 0 0\r\n\r\nget b c\r\n"),
        cmd("set f 4294967296 0 1\r\nx\r\nget f\r\n"),
        cmd("add a 0 0 1\r\n2\r\n"),
        cmd("add n 0 0 1\r\n2\r\nget n\r\n"),
        cmd("replace zz 0 0 1\r\n2\r\n"),
        cmd("replace a 7 0 3\r\nabc\r\nget a\r\n"),
        cmd("append a 9 0 2\r\nde\r\nprepend a 9 0 2\r\nxy\r\nget a\r\n"),
        cmd("append missing 0 0 1\r\nx\r\nprepend missing 0 0 1\r\nx\r\n"),
        cmd("gets a\r\n"),
        cmd("cas a 0 0 1 1\r\nz\r\n"),
        cmd("cas a 0 0 1 {CAS}\r\nz\r\ngets a\r\n"),
        cmd("cas a 0 0 1 {CAS}\r\nq\r\n"),
        cmd("cas nope 0 0 1 1\r\nz\r\n"),
        cmd("cas a 0 0 1 abc\r\nz\r\n"),
        cmd("cas a 0 0 1\r\n"),
        // incr / decr
        cmd("set n 0 0 2\r\n10\r\nincr n 5\r\ndecr n 3\r\nget n\r\n"),
        cmd("set n 0 0 3\r\n100\r\ndecr n 91\r\nget n\r\nincr n 1000\r\nget n\r\n"),
        cmd("set n 0 0 20\r\n18446744073709551615\r\nincr n 2\r\nget n\r\n"),
        cmd("decr n 100\r\nget n\r\n"),
        cmd("incr n 18446744073709551616\r\nincr n -1\r\nincr n abc\r\n"),
        cmd("set t 0 0 3\r\nabc\r\nincr t 1\r\ndecr t 1\r\n"),
        cmd("set t 0 0 0\r\n\r\nincr t 1\r\n"),
        cmd("set t 0 0 3\r\n 12\r\nincr t 1\r\nget t\r\n"),
        cmd("incr missing 1\r\ndecr missing 1\r\n"),
        cmd("incr n\r\nincr\r\nincr n 1 2 3\r\n"),
        cmd("incr n 1 noreply\r\nget n\r\n"),
        // delete
        cmd("delete a\r\ndelete a\r\n"),
        cmd(
            "set d 0 0 1\r\n1\r\ndelete d 0\r\nset d 0 0 1\r\n1\r\ndelete d 0 noreply\r\nget d\r\n",
        ),
        cmd("delete d 1\r\ndelete d 0 0\r\ndelete\r\ndelete d x noreply\r\n"),
        cmd("set d 0 0 1\r\n1\r\ndelete d noreply\r\nget d\r\n"),
        // touch, gat, gats
        cmd("set t 0 0 1\r\n1\r\ntouch t 100\r\ntouch nope 100\r\ntouch t abc\r\n"),
        cmd("gat 100 t nope\r\ngats 100 t\r\ngat abc t\r\ngat 100\r\ngat\r\n"),
        cmd("touch t\r\ntouch t 1 2 3\r\n"),
        // expiry: negative and absolute times in the past are already expired
        cmd("set e 0 -1 1\r\n1\r\nget e\r\n"),
        cmd("set e 0 1000000000 1\r\n1\r\nget e\r\n"),
        cmd("set e 0 100 1\r\n1\r\nget e\r\n"),
        cmd("set e 0 abc 1\r\n1\r\n"),
        // noreply everywhere
        cmd(
            "set q 0 0 1 noreply\r\n1\r\nadd q 0 0 1 noreply\r\n2\r\nreplace q 0 0 1 noreply\r\n3\r\n\
             append q 0 0 1 noreply\r\n4\r\nprepend q 0 0 1 noreply\r\n5\r\nget q\r\n",
        ),
        cmd("touch q 10 noreply\r\nincr q 1 noreply\r\ndelete q noreply\r\nget q\r\n"),
        cmd("flush_all noreply\r\nverbosity 1 noreply\r\nget b\r\n"),
        // keys
        cmd(format!("set {k250} 0 0 1\r\n1\r\nget {k250}\r\n")),
        cmd(format!("set {k251} 0 0 1\r\n1\r\n")),
        cmd(format!("get a {k251}\r\n")),
        cmd(format!(
            "delete {k251}\r\nincr {k251} 1\r\ntouch {k251} 1\r\n"
        )),
        // sizes and bad data
        cmd(format!("set b 0 0 {big_ok}\r\n{}\r\n", "x".repeat(big_ok))),
        cmd(format!(
            "set b 0 0 {}\r\n{}\r\nget b\r\n",
            big_ok + 1,
            "x".repeat(big_ok + 1)
        )),
        cmd("set k 0 0 1\r\nabc\r\n"),
        cmd("set k 0 0 3\r\nab\r\n\r\n"),
        cmd("set k 0 0 -1\r\n"),
        cmd("set k 0 0 2147483648\r\n"),
        cmd("set k 0 0 4294967297\r\nx\r\nget k\r\n"),
        cmd("set k abc 0 1\r\nx\r\n"),
        cmd("set k 0 0 1 2 3\r\nset k 0 0\r\nset\r\n"),
        cmd("set k 0 0 01\r\nx\r\nget k\r\n"),
        cmd("set k 0 0 +1\r\nx\r\nget k\r\n"),
        // garbage
        cmd("\r\n"),
        cmd("\n"),
        cmd("foo\r\n"),
        cmd("x\r\n"),
        cmd("GET a\r\n"),
        cmd("get\r\n"),
        cmd("  get   a    b  \r\n"),
        cmd("get a\n"),
        cmd("verbosity\r\nverbosity 1\r\nverbosity abc\r\nverbosity 5 6 7\r\n"),
        cmd("flush_all abc\r\nflush_all 0\r\nflush_all 1 2 3\r\n"),
        cmd("stats bogus\r\nstats detail\r\nstats detail on\r\nstats detail off\r\n"),
        cmd("stats reset\r\n"),
        cmd("version\r\n"),
        // pipelining and partial requests
        cmd("set p 0 0 3\r\nabc\r\nget p\r\nget p\r\ndelete p\r\nget p\r\n"),
        Step::Split(b"set s 0 0 10\r\n0123456789\r\nget s\r\n".to_vec(), 7),
        Step::Split(b"set s 0 0 10\r\n0123456789\r\nget s\r\n".to_vec(), 20),
        Step::Split(b"get s s s\r\n".to_vec(), 10),
        // many keys (memcached tokenizes 24 tokens at a time)
        cmd(format!(
            "get {}\r\n",
            (0..60)
                .map(|i| if i % 3 == 0 {
                    "s".to_string()
                } else {
                    format!("m{i}")
                })
                .collect::<Vec<_>>()
                .join(" ")
        )),
        cmd(format!("set {} 0 1\r\n", vec!["x"; 30].join(" "))),
        cmd("flush_all\r\nget s\r\n"),
    ];
    s.push(cmd("stats\r\n"));
    s.push(Step::Closes(b"set z 0 0 1\r\n1\r\nquit\r\n".to_vec()));
    s.push(cmd("get z\r\n"));
    s.push(Step::Closes(b"GET / HTTP/1.1\r\n".to_vec()));
    s.push(Step::Closes(vec![b'x'; 4000]));
    s.push(cmd("get z\r\n"));
    s
}

/// The last CAS value in a transcript.
fn last_cas(resp: &[u8]) -> Option<String> {
    text(resp)
        .lines()
        .filter(|l| l.starts_with("VALUE "))
        .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
        .next_back()
}

fn mask(resp: &[u8]) -> String {
    let t = text(resp);
    let mut out = String::new();
    for line in t.split_inclusive("\r\n") {
        let parts: Vec<&str> = line.trim_end_matches("\r\n").split(' ').collect();
        let masked = match parts.as_slice() {
            ["VALUE", k, f, n, _cas] => format!("VALUE {k} {f} {n} <cas>\r\n"),
            ["STAT", name, _] => format!("STAT {name} <v>\r\n"),
            ["VERSION", _] => "VERSION <v>\r\n".to_string(),
            _ => line.to_string(),
        };
        out.push_str(&masked);
    }
    out
}

fn run_script(port: u16) -> Vec<String> {
    let mut conn = connect(port);
    let mut cas = String::from("0");
    let mut transcript = Vec::new();
    for (i, step) in script().into_iter().enumerate() {
        let resp = match step {
            Step::Cmd(b) => {
                let b = text(&b).replace("{CAS}", &cas).into_bytes();
                conn.write_all(&b).unwrap();
                conn.write_all(b"mn\r\n").unwrap();
                read_until(&mut conn, b"MN\r\n")
            }
            Step::Split(b, at) => {
                conn.write_all(&b[..at]).unwrap();
                conn.flush().unwrap();
                std::thread::sleep(Duration::from_millis(50));
                conn.write_all(&b[at..]).unwrap();
                conn.write_all(b"mn\r\n").unwrap();
                read_until(&mut conn, b"MN\r\n")
            }
            Step::Closes(b) => {
                conn.write_all(&b).unwrap();
                let (resp, closed) = read_to_eof(&mut conn);
                assert!(closed, "step {i}: the server did not close");
                conn = connect(port);
                resp
            }
        };
        if let Some(c) = last_cas(&resp) {
            cas = c;
        }
        transcript.push(mask(&resp));
    }
    transcript
}

#[test]
fn text_protocol_matches_real_memcached_byte_for_byte() {
    let steps = script();
    differential(
        MEMCACHED_LIKE_KV,
        &["--backend", "epoll", "--cores", "0"],
        run_script,
        |e, g| e == g,
        |i| match &steps[i] {
            Step::Cmd(b) | Step::Split(b, _) | Step::Closes(b) => {
                format!("{:?}", text(b).chars().take(120).collect::<String>())
            }
        },
    );
}
