//! Slow clients (slowloris): thousands of connections each sending one byte of a request
//! head per second. Meanwhile ordinary clients are served, the server's memory stays
//! bounded, and every slow connection is closed once its header timeout passes (counted
//! as a timeout, not as an error).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::*;

const SLOW: usize = 2000;

fn raise_nofile() {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let mut l = getrlimit(Resource::Nofile);
    l.current = l.maximum.map(|m| m.min(65_536)).or(Some(65_536));
    let _ = setrlimit(Resource::Nofile, l);
}

/// One ordinary request on a new connection; the body must be `/hello`'s.
fn fetch_hello(port: u16) -> Duration {
    let t = Instant::now();
    let r = exchange(
        port,
        b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
    );
    let r = responses(&r, &[]);
    assert_eq!(r.len(), 1);
    assert_eq!(r[0].code, 200);
    assert_eq!(r[0].body, megatcp_http::files::hello_body(64));
    t.elapsed()
}

#[test]
fn slow_clients_are_bounded_timed_out_and_do_not_starve_others() {
    raise_nofile();
    // Its counters at exit (`-v`) go to a file.
    let log =
        std::env::temp_dir().join(format!("megatcp-http-slowloris-{}.log", std::process::id()));
    let mut server = start_http_to(
        &["--header-timeout", "4", "--idle-timeout", "30", "-v"],
        std::fs::File::create(&log).unwrap().into(),
    );
    let base_rss = server.rss_kib();
    let head = b"GET /hello HTTP/1.1\r\nHost: slow\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa";
    let started = Instant::now();
    let mut slow: Vec<TcpStream> = (0..SLOW)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.set_nonblocking(true).unwrap();
            s
        })
        .collect();
    let mut peak_rss = 0;
    let mut worst = Duration::ZERO;
    let mut served = 0;
    // One byte per second per connection for 3 s, ordinary requests in between.
    for second in 0..3 {
        let tick = Instant::now();
        for s in &mut slow {
            let _ = s.write(&head[second..second + 1]);
        }
        while tick.elapsed() < Duration::from_secs(1) {
            worst = worst.max(fetch_hello(server.port));
            served += 1;
            std::thread::sleep(Duration::from_millis(20));
        }
        peak_rss = peak_rss.max(server.rss_kib());
    }
    assert!(server.alive());
    assert!(served > 50, "{served} ordinary requests");
    assert!(
        worst < Duration::from_millis(500),
        "an ordinary request took {worst:?}"
    );
    let growth = peak_rss.saturating_sub(base_rss);
    eprintln!(
        "{SLOW} slow connections: RSS {base_rss} KiB -> {peak_rss} KiB ({} B per connection); \
         {served} ordinary requests, the slowest {worst:?}",
        growth * 1024 / SLOW as u64
    );
    assert!(growth < 32 * 1024, "RSS grew by {growth} KiB");
    // The header timeout (4 s from each request's first byte) closes every slow connection,
    // whatever it keeps sending.
    let deadline = started + Duration::from_secs(12);
    let mut open: Vec<TcpStream> = slow;
    let mut k = 3;
    while !open.is_empty() && Instant::now() < deadline {
        open.retain_mut(|s| {
            let _ = s.write(&head[k % head.len()..k % head.len() + 1]);
            let mut b = [0u8; 64];
            match s.read(&mut b) {
                Ok(0) => false,
                Err(e) if e.kind() == ErrorKind::WouldBlock => true,
                Err(_) => false,
                // No answer is due: the request never completes.
                Ok(_) => panic!("a slow client got an answer"),
            }
        });
        k += 1;
        std::thread::sleep(Duration::from_millis(250));
    }
    assert!(
        open.is_empty(),
        "{} slow connections still open after 12 s",
        open.len()
    );
    assert!(
        started.elapsed() >= Duration::from_secs(4),
        "closed before the timeout"
    );
    fetch_hello(server.port);
    // Every slow connection counted as a timeout, and closing them (reads pending) is no
    // error.
    let status = server.process.terminate();
    assert!(status.success(), "exit status {status}");
    let text = std::fs::read_to_string(&log).unwrap();
    let _ = std::fs::remove_file(&log);
    let counters = text
        .lines()
        .find(|l| l.starts_with("megatcp-http: core 0: accepted"))
        .unwrap_or_else(|| panic!("no counters at exit:\n{text}"));
    let count = |name: &str| -> u64 {
        let mut words = counters.split_whitespace();
        words.find(|w| *w == name);
        words.next().unwrap().parse().unwrap()
    };
    assert_eq!(count("timeouts"), SLOW as u64, "{counters}");
    assert_eq!(count("errors"), 0, "{counters}");
}
