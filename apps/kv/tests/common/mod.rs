//! Helpers of the integration tests: start `megatcp-kv` and real memcached on free loopback
//! ports (killed on drop), talk to them over plain sockets.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// The binary under test.
pub const KV: &str = env!("CARGO_BIN_EXE_megatcp-kv");

/// A server process, killed and reaped on drop.
pub struct Proc {
    child: Child,
    pub port: u16,
}

impl Proc {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Resident memory of the process, KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.child.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Whether the process still runs.
    pub fn alive(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub use megatcp_test_support::free_port;

/// Waits until the server answers `version` on its port (a connection alone could reach a
/// socket that is not the server's).
fn wait_listening(mut p: Proc, what: &str) -> Proc {
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", p.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            if s.write_all(b"version\r\n").is_ok()
                && read_until(&mut s, b"\r\n").starts_with(b"VERSION ")
            {
                return p;
            }
        }
        assert!(p.alive(), "{what} exited at start");
        assert!(Instant::now() < deadline, "{what} did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `megatcp-kv` on a free port with extra arguments (epoll on core 0 unless given).
pub fn start_kv(extra: &[&str]) -> Proc {
    let port = free_port();
    let child = Command::new(KV)
        .args(["-p", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    wait_listening(Proc { child, port }, "megatcp-kv")
}

/// memcached's options that make it work as megatcp-kv does: one LRU per slab class and
/// no background threads (no LRU maintainer, LRU crawler or slab mover), so that
/// statistics and memory use can be compared value for value.
pub const MEMCACHED_LIKE_KV: &[&str] = &["-o", "no_lru_maintainer,no_lru_crawler,no_slab_reassign"];

/// Starts Debian's memcached on a free loopback port (`-t 1 -U 0`); panics with a hint
/// when it is not installed (`scripts/install-deps` installs it).
pub fn start_memcached(extra: &[&str]) -> Proc {
    let port = free_port();
    let child = Command::new("memcached")
        .args([
            "-l",
            "127.0.0.1",
            "-p",
            &port.to_string(),
            "-t",
            "1",
            "-U",
            "0",
        ])
        .args(["-u", "nobody"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("memcached: {e} (install it: scripts/install-deps)"));
    wait_listening(Proc { child, port }, "memcached")
}

/// A differential run: `script` (one transcript entry per step) against real memcached
/// started with `mc_args`, then against megatcp-kv started with `kv_args`; the transcripts
/// must agree step by step (`agree`), `label(i)` names step `i` in the failure message.
/// With `KV_DIFF_DUMP` set, memcached's transcript is printed.
pub fn differential<T: std::fmt::Debug>(
    mc_args: &[&str],
    kv_args: &[&str],
    script: impl Fn(u16) -> Vec<T>,
    agree: impl Fn(&T, &T) -> bool,
    label: impl Fn(usize) -> String,
) {
    let mc = start_memcached(mc_args);
    let expected = script(mc.port);
    drop(mc);
    let kv = start_kv(kv_args);
    let got = script(kv.port);
    if std::env::var_os("KV_DIFF_DUMP").is_some() {
        for (i, e) in expected.iter().enumerate() {
            eprintln!("{i}: {e:?}");
        }
    }
    let diffs: Vec<String> = expected
        .iter()
        .zip(&got)
        .enumerate()
        .filter(|(_, (e, g))| !agree(e, g))
        .map(|(i, (e, g))| {
            format!(
                "step {i} {}\n  memcached:  {e:?}\n  megatcp-kv: {g:?}",
                label(i)
            )
        })
        .collect();
    assert_eq!(expected.len(), got.len());
    assert!(
        diffs.is_empty(),
        "{} differences:\n{}",
        diffs.len(),
        diffs.join("\n")
    );
}

/// Whether two lists of time values (seconds) agree within a second: memcached's clock
/// ticks on a timer of its own.
pub fn times_close(a: &[i64], b: &[i64]) -> bool {
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| (x - y).abs() <= 1)
}

/// A connection with a 10 s read timeout.
pub fn connect(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("connect to 127.0.0.1:{port}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s.set_nodelay(true).unwrap();
    s
}

/// Reads until `buf` ends with `suffix` (or EOF / timeout: then whatever came).
pub fn read_until(s: &mut TcpStream, suffix: &[u8]) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    while !buf.ends_with(suffix) {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

/// Reads until the peer closes (or timeout).
pub fn read_to_eof(s: &mut TcpStream) -> (Vec<u8>, bool) {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) => return (buf, true),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (buf, true),
            Err(_) => return (buf, false),
        }
    }
}

/// Sends `req` and reads the reply up to `suffix`.
pub fn roundtrip(s: &mut TcpStream, req: &[u8], suffix: &[u8]) -> Vec<u8> {
    s.write_all(req).unwrap();
    read_until(s, suffix)
}

/// Text of bytes, for assertion messages.
pub fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}
