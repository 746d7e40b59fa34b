//! memcached's command-line flags on megatcp-kv: `-l` (listen address), `-t` (threads =
//! cores), a served port refused as memcached refuses it, `-d`/`-P` (daemon, pid file),
//! `-vv` lines compared with real memcached's, `stats megatcp`.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

fn stats(port: u16, group: &str) -> Vec<(String, String)> {
    let mut s = connect(port);
    let out = text(&roundtrip(
        &mut s,
        format!("stats {group}\r\n").as_bytes(),
        b"END\r\n",
    ));
    out.lines()
        .filter_map(|l| l.strip_prefix("STAT "))
        .filter_map(|l| l.split_once(' '))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn stat(all: &[(String, String)], key: &str) -> String {
    all.iter()
        .find(|(k, _)| k == key)
        .unwrap_or_else(|| panic!("no {key} in {all:?}"))
        .1
        .clone()
}

#[test]
fn listen_address_is_the_only_one_served() {
    let kv = start_kv(&["-l", "127.0.0.1"]);
    assert!(TcpStream::connect(("127.0.0.1", kv.port)).is_ok());
    let other = TcpStream::connect_timeout(
        &(std::net::Ipv4Addr::new(127, 0, 0, 2), kv.port).into(),
        Duration::from_secs(2),
    );
    assert!(other.is_err(), "reachable on 127.0.0.2");
}

#[test]
fn threads_run_that_many_cores() {
    let kv = start_kv(&["-t", "2"]);
    let general = stats(kv.port, "");
    assert_eq!(stat(&general, "threads"), "2");
    let ours = stats(kv.port, "megatcp");
    assert_eq!(stat(&ours, "backend"), "epoll");
    assert_eq!(stat(&ours, "cores"), "2");
    // Two listeners, one per core: connections land on both (SO_REUSEPORT spreads them).
    // The cores accept (and see the earlier stats connections closed) a moment after the
    // kernel completed the handshakes: ask until they have, for at most 10 s.
    let conns: Vec<TcpStream> = (0..32).map(|_| connect(kv.port)).collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut current = stat(&stats(kv.port, ""), "curr_connections");
    while current != "33" && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(50));
        current = stat(&stats(kv.port, ""), "curr_connections");
    }
    assert_eq!(current, "33", "32 connections and the one asking");
    drop(conns);
}

#[test]
fn a_served_port_is_refused_as_memcached_refuses_it() {
    for first in ["kv", "memcached"] {
        let server = if first == "kv" {
            start_kv(&[])
        } else {
            start_memcached(&[])
        };
        let out = Command::new(KV)
            .args(["-p", &server.port.to_string()])
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(1), "after {first}");
        assert_eq!(
            String::from_utf8_lossy(&out.stderr).trim(),
            format!(
                "failed to listen on TCP port {}: Address already in use",
                server.port
            )
        );
    }
}

#[test]
fn daemon_writes_its_pid_file_and_serves() {
    let port = free_port();
    let pidfile = std::env::temp_dir().join(format!("megatcp-kv-{}.pid", std::process::id()));
    let t0 = Instant::now();
    let status = Command::new(KV)
        .args([
            "-d",
            "-P",
            pidfile.to_str().unwrap(),
            "-p",
            &port.to_string(),
        ])
        .status()
        .unwrap();
    assert!(status.success());
    assert!(t0.elapsed() < Duration::from_secs(10));
    let pid: u32 = std::fs::read_to_string(&pidfile)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stop = || {
        let _ = Command::new("kill").arg(pid.to_string()).status();
    };
    let mut s = connect(port);
    let v = text(&roundtrip(&mut s, b"version\r\n", b"\r\n"));
    let ours = text(&roundtrip(&mut s, b"stats\r\n", b"END\r\n"));
    if !v.starts_with("VERSION") || !ours.contains(&format!("STAT pid {pid}\r\n")) {
        stop();
        panic!("{v} {ours}");
    }
    drop(s);
    stop();
    let end = Instant::now() + Duration::from_secs(10);
    while pidfile.exists() && Instant::now() < end {
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(!pidfile.exists(), "pid file left behind");
}

/// Runs `session` against a server started by `cmd` with `-vv` and returns its
/// per-connection lines, connection numbers replaced by `N`.
fn vv_lines(cmd: &mut Command, port: u16, session: &[u8]) -> Vec<String> {
    let log = std::env::temp_dir().join(format!("megatcp-vv-{}-{port}.log", std::process::id()));
    let mut child = cmd
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let end = Instant::now() + Duration::from_secs(10);
    let mut s = loop {
        if let Ok(s) = TcpStream::connect(("127.0.0.1", port)) {
            break s;
        }
        assert!(Instant::now() < end, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    };
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(session).unwrap();
    let _ = read_to_eof(&mut s);
    std::thread::sleep(Duration::from_millis(300));
    let _ = child.kill();
    let _ = child.wait();
    let all = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let start = all
        .find("new auto-negotiating")
        .expect("no -vv connection line");
    let from = all[..start].rfind('\n').map_or(0, |i| i + 1);
    all[from..]
        .lines()
        .take_while(|l| !l.starts_with("core "))
        .map(|l| {
            let digits = |t: &str| {
                let n = t.chars().take_while(char::is_ascii_digit).count();
                (n > 0).then(|| t[n..].to_string())
            };
            match l.chars().next() {
                Some(c @ ('<' | '>')) => match digits(&l[1..]) {
                    Some(rest) => format!("{c}N{rest}"),
                    None => l.to_string(),
                },
                _ => digits(l).map_or(l.to_string(), |rest| format!("N{rest}")),
            }
        })
        .collect()
}

#[test]
fn very_verbose_lines_are_memcached_s() {
    let session = b"set foo 0 0 3\r\nbar\r\nget foo\r\nget nope\r\nadd foo 0 0 1\r\nx\r\n\
        delete foo\r\ndelete foo\r\nset n 0 0 1\r\n5\r\nincr n 2\r\nbogus\r\nquit\r\n";
    let (p1, p2) = (free_port(), free_port());
    let memcached = vv_lines(
        Command::new("memcached").args([
            "-vv",
            "-u",
            "nobody",
            "-U",
            "0",
            "-t",
            "1",
            "-l",
            "127.0.0.1",
            "-p",
            &p1.to_string(),
        ]),
        p1,
        session,
    );
    let ours = vv_lines(
        Command::new(KV).args(["-vv", "--no-shm", "-p", &p2.to_string()]),
        p2,
        session,
    );
    assert!(memcached.len() > 10, "{memcached:?}");
    if std::env::var_os("VV_DUMP").is_some() {
        eprintln!("{}", memcached.join("\n"));
    }
    assert_eq!(ours, memcached);
}
