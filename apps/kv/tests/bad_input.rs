//! Hostile clients against the real server: oversized keys and values, garbage, 2 GiB length
//! prefixes (text and binary), half-sent commands then disconnects. The answers are
//! memcached's, the server's memory stays bounded, and a well-behaved client on another
//! connection is served correctly throughout.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use common::{connect, read_to_eof, read_until, roundtrip, start_kv, text};
use megatcp_kv::binary::{self, Header, op};

/// A well-behaved client doing set/get in a loop until stopped; returns the round trips.
fn bystander(port: u16, stop: Arc<AtomicBool>) -> std::thread::JoinHandle<u64> {
    std::thread::spawn(move || {
        let mut c = connect(port);
        let mut n = 0u64;
        while !stop.load(Ordering::Relaxed) {
            let v = format!("v{n}");
            let r = roundtrip(
                &mut c,
                format!("set bystander 0 0 {}\r\n{v}\r\nget bystander\r\n", v.len()).as_bytes(),
                b"END\r\n",
            );
            assert_eq!(
                text(&r),
                format!("STORED\r\nVALUE bystander 0 {}\r\n{v}\r\nEND\r\n", v.len())
            );
            n += 1;
        }
        n
    })
}

fn bin_request(opcode: u8, extras: &[u8], key: &[u8], value_len: u32, opaque: u32) -> Vec<u8> {
    let mut b = Vec::new();
    Header {
        opcode,
        keylen: key.len() as u16,
        extlen: extras.len() as u8,
        bodylen: extras.len() as u32 + key.len() as u32 + value_len,
        opaque,
        cas: 0,
    }
    .encode(&mut b);
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b
}

/// Sends `total` bytes of `fill` in 1 MiB writes.
fn stream(c: &mut std::net::TcpStream, total: usize, fill: u8) {
    let chunk = vec![fill; 1024 * 1024];
    let mut left = total;
    while left > 0 {
        let n = left.min(chunk.len());
        c.write_all(&chunk[..n]).unwrap();
        left -= n;
    }
}

#[test]
fn hostile_input_gets_memcached_answers_and_bounded_memory() {
    let mut kv = start_kv(&["-I", "1m"]);
    let stop = Arc::new(AtomicBool::new(false));
    let by = bystander(kv.port, stop.clone());
    std::thread::sleep(Duration::from_millis(100));
    let rss0 = kv.rss_kib();

    // Oversized keys.
    let mut c = connect(kv.port);
    let k = "k".repeat(251);
    let r = roundtrip(&mut c, format!("get {k}\r\n").as_bytes(), b"\r\n");
    assert_eq!(r, b"CLIENT_ERROR bad command line format\r\n");
    let r = roundtrip(
        &mut c,
        format!("set {k} 0 0 1\r\nx\r\n").as_bytes(),
        b"ERROR\r\n",
    );
    assert_eq!(r, b"CLIENT_ERROR bad command line format\r\nERROR\r\n");
    // A control character in a key.
    let r = roundtrip(&mut c, b"set a\x01b 0 0 1\r\nx\r\n", b"ERROR\r\n");
    assert_eq!(r, b"CLIENT_ERROR bad command line format\r\nERROR\r\n");

    // Oversized value, sent whole: answered, swallowed, the connection goes on.
    c.write_all(b"set big 0 0 3000000\r\n").unwrap();
    assert_eq!(
        read_until(&mut c, b"\r\n"),
        b"SERVER_ERROR object too large for cache\r\n"
    );
    stream(&mut c, 3_000_000, b'x');
    let r = roundtrip(&mut c, b"\r\nget big\r\nversion\r\n", b"\r\n");
    let r = [r, read_until(&mut c, b"\r\n")].concat();
    assert!(text(&r).starts_with("END\r\nVERSION "), "{}", text(&r));

    // Garbage lines.
    let r = roundtrip(
        &mut c,
        b"\x00\xff garbage\r\nfoo bar\r\n\r\n",
        b"ERROR\r\nERROR\r\nERROR\r\n",
    );
    assert_eq!(r, b"ERROR\r\nERROR\r\nERROR\r\n");

    // A 2 GiB text length: memcached's answer (the length does not fit its int), then the
    // bytes that follow are not a command line: past 2048 bytes without a newline the
    // server closes, having buffered at most that.
    let mut t = connect(kv.port);
    let r = roundtrip(&mut t, b"set k 0 0 2147483648\r\n", b"\r\n");
    assert_eq!(r, b"CLIENT_ERROR bad command line format\r\n");
    let mut sent = 0usize;
    let chunk = vec![b'y'; 1024 * 1024];
    while sent < 256 * 1024 * 1024 {
        if t.write_all(&chunk).is_err() {
            break;
        }
        sent += chunk.len();
    }
    let (_, closed) = read_to_eof(&mut t);
    assert!(
        closed,
        "the server kept a connection sending an endless line"
    );
    assert!(
        sent < 256 * 1024 * 1024,
        "the server read an endless line for 256 MiB"
    );

    // A value just under 2 GiB within the int range: too large, swallowed as it streams.
    let mut t = connect(kv.port);
    t.write_all(b"set k 0 0 2147483645\r\n").unwrap();
    assert_eq!(
        read_until(&mut t, b"\r\n"),
        b"SERVER_ERROR object too large for cache\r\n"
    );
    stream(&mut t, 300 * 1024 * 1024, b'z');
    assert!(
        kv.rss_kib() < rss0 + 64 * 1024,
        "memory grew while swallowing"
    );
    drop(t);

    // A 2 GiB binary body: "Too large." (status 3), body swallowed, connection usable.
    let mut b = connect(kv.port);
    let req = bin_request(op::SET, &[0; 8], b"bk", 0x8000_0000 - 10, 7);
    b.write_all(&req).unwrap();
    let resp = read_until(&mut b, binary::Status::TooLarge.message().as_bytes());
    let (r, _) = binary::parse_response(&resp).unwrap().unwrap();
    assert_eq!((r.status, r.opaque, r.value), (3, 7, &b"Too large."[..]));
    stream(&mut b, 300 * 1024 * 1024, 0);
    assert!(
        kv.rss_kib() < rss0 + 64 * 1024,
        "memory grew while swallowing"
    );
    drop(b);
    // ... and a binary key length of 64 KiB: refused and closed.
    let mut b = connect(kv.port);
    let mut req = bin_request(op::GET, &[], &[], 0, 9);
    req[2] = 0xff;
    req[3] = 0xff;
    req[8..12].copy_from_slice(&0xffffu32.to_be_bytes());
    b.write_all(&req).unwrap();
    b.write_all(&vec![b'k'; 0xffff]).unwrap();
    let (resp, closed) = read_to_eof(&mut b);
    assert!(closed);
    let (r, _) = binary::parse_response(&resp).unwrap().unwrap();
    assert_eq!(r.status, binary::Status::Invalid as u16);
    // A bad magic byte closes at once (after a good NOOP).
    let mut b = connect(kv.port);
    b.write_all(&bin_request(op::NOOP, &[], &[], 0, 1)).unwrap();
    let mut bad = bin_request(op::NOOP, &[], &[], 0, 2);
    bad[0] = 0x42;
    b.write_all(&bad).unwrap();
    let (resp, closed) = read_to_eof(&mut b);
    assert!(closed);
    let (r, n) = binary::parse_response(&resp).unwrap().unwrap();
    assert_eq!((r.status, r.opaque, n), (0, 1, resp.len()));

    // Half-sent commands, then disconnect, many times over.
    for i in 0..200 {
        let mut h = connect(kv.port);
        let half: &[u8] = match i % 4 {
            0 => b"set half 0 0 100\r\nabc",
            1 => b"get hal",
            2 => &[0x80, op::SET, 0, 4],
            _ => b"set half 0 0 2000000\r\nxxxx",
        };
        h.write_all(half).unwrap();
    }
    std::thread::sleep(Duration::from_millis(300));
    let mut c = connect(kv.port);
    assert_eq!(roundtrip(&mut c, b"get half\r\n", b"\r\n"), b"END\r\n");
    let r = roundtrip(&mut c, b"stats\r\n", b"END\r\n");
    let conns = text(&r)
        .lines()
        .find_map(|l| l.strip_prefix("STAT curr_connections "))
        .map(|v| v.parse::<u64>().unwrap())
        .unwrap();
    assert!(conns <= 3, "half-open connections not released: {conns}");

    stop.store(true, Ordering::Relaxed);
    let rounds = by.join().unwrap();
    assert!(
        rounds > 10,
        "the well-behaved client starved: {rounds} round trips"
    );
    assert!(kv.alive());
    let grown = kv.rss_kib().saturating_sub(rss0);
    assert!(grown < 64 * 1024, "RSS grew by {grown} KiB");
}

#[test]
fn pipelined_gets_of_large_values_do_not_buffer_without_bound() {
    // A client pipelining gets of a 512 KiB value and reading nothing: the server must stop
    // reading it (output bound), not build gigabytes of responses.
    let mut kv = start_kv(&[]);
    let mut c = connect(kv.port);
    let v = vec![b'v'; 512 * 1024];
    let r = roundtrip(
        &mut c,
        &[b"set big 0 0 524288\r\n".as_slice(), &v, b"\r\n"].concat(),
        b"\r\n",
    );
    assert_eq!(r, b"STORED\r\n");
    let rss0 = kv.rss_kib();
    c.set_write_timeout(Some(Duration::from_secs(3))).unwrap();
    let req = b"get big\r\n".repeat(1000);
    let mut sent = 0usize;
    while sent < 20_000 {
        // 20,000 gets = 10 GiB of responses if the server kept executing.
        if c.write_all(&req).is_err() {
            break;
        }
        sent += 1000;
    }
    std::thread::sleep(Duration::from_millis(500));
    let grown = kv.rss_kib().saturating_sub(rss0);
    assert!(
        grown < 128 * 1024,
        "RSS grew by {grown} KiB for an unread pipeline"
    );
    // Another client is served meanwhile.
    let mut d = connect(kv.port);
    assert!(roundtrip(&mut d, b"version\r\n", b"\r\n").starts_with(b"VERSION "));
    assert!(kv.alive());
}
