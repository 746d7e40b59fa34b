//! Helpers of the integration tests: a directory of test files, `megatcp-http` and nginx
//! on loopback ports of their own (test-support's ports and processes: killed on drop),
//! raw request/response exchanges, and the third-party clients (curl, wrk, ab) run against
//! a server.
#![allow(dead_code, clippy::unwrap_used, unreachable_pub)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

pub use megatcp_test_support::{Proc, free_port};

/// The binary under test.
pub const HTTP: &str = env!("CARGO_BIN_EXE_megatcp-http");

/// A server process listening on `port` (killed and reaped on drop).
pub struct Server {
    pub process: Proc,
    pub port: u16,
}

impl Server {
    /// Resident memory, KiB.
    pub fn rss_kib(&self) -> u64 {
        let s = std::fs::read_to_string(format!("/proc/{}/status", self.process.id())).unwrap();
        s.lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap()
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.process.alive()
    }
}

/// Bytes of test file `name` of `len` bytes: deterministic, not periodic at small scales.
pub fn file_bytes(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// A fresh directory of test files: `index.html`, `a.txt`, `empty.txt`, `style.css`,
/// `data/64.bin` .. `data/65536.bin`, `data/1mib.bin`, `sub/` (no index), `sub/deep/x.json`.
pub fn tree(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("megatcp-http-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(d.join("data")).unwrap();
    std::fs::create_dir_all(d.join("sub/deep")).unwrap();
    std::fs::write(d.join("index.html"), b"<html><body>index</body></html>\n").unwrap();
    std::fs::write(d.join("a.txt"), b"aaa\n").unwrap();
    std::fs::write(d.join("empty.txt"), b"").unwrap();
    std::fs::write(d.join("style.css"), b"body { color: red }\n").unwrap();
    for (i, n) in [64usize, 1024, 4096, 65_536].into_iter().enumerate() {
        std::fs::write(d.join(format!("data/{n}.bin")), file_bytes(n, i as u64)).unwrap();
    }
    std::fs::write(d.join("data/1mib.bin"), file_bytes(1 << 20, 99)).unwrap();
    std::fs::write(d.join("sub/deep/x.json"), b"{\"x\": 1}\n").unwrap();
    d
}

/// Every file of the tree, as (URL path, local path).
pub fn files_of(root: &Path) -> Vec<(String, PathBuf)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap() {
            let p = e.unwrap().path();
            if p.is_dir() {
                stack.push(p);
            } else {
                let url = format!("/{}", p.strip_prefix(root).unwrap().display());
                out.push((url, p));
            }
        }
    }
    out.sort();
    out
}

/// Waits until `GET /path` on `host` at `p`'s port gets an HTTP response.
pub fn wait_http(p: &mut Server, host: &str, path: &str, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Ok(mut s) = TcpStream::connect((host, p.port)) {
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let req = format!("GET {path} HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n");
            let mut b = [0u8; 9];
            if s.write_all(req.as_bytes()).is_ok()
                && s.read_exact(&mut b).is_ok()
                && &b == b"HTTP/1.1 "
            {
                return;
            }
        }
        assert!(p.alive(), "{what} exited at start");
        assert!(Instant::now() < deadline, "{what} did not start serving");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Starts `megatcp-http` on a free loopback port (epoll on core 0 unless `extra` says).
pub fn start_http(extra: &[&str]) -> Server {
    start_http_to(extra, Stdio::inherit())
}

/// The same, its standard error going to `stderr`.
pub fn start_http_to(extra: &[&str], stderr: Stdio) -> Server {
    let port = free_port();
    let child = Command::new(HTTP)
        .args(["-p", &port.to_string()])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(stderr)
        .spawn()
        .unwrap();
    let mut p = Server {
        process: Proc::new(child),
        port,
    };
    wait_http(&mut p, "127.0.0.1", "/", "megatcp-http");
    p
}

/// An nginx configuration serving `root` on `listen` with one worker, no access log and
/// keep-alive limits raised; its files go under `prefix`.
pub fn nginx_conf(prefix: &Path, root: &Path, listen: &str) -> String {
    let p = prefix.display();
    format!(
        "worker_processes 1;\ndaemon off;\nmaster_process off;\npid {p}/nginx.pid;\n\
         error_log {p}/error.log;\nevents {{ worker_connections 20000; }}\n\
         worker_rlimit_nofile 40000;\n\
         http {{\n  include /etc/nginx/mime.types;\n  default_type application/octet-stream;\n\
         access_log off;\n  server_tokens off;\n  keepalive_requests 100000000;\n\
         keepalive_timeout 300s;\n  client_body_temp_path {p}/body;\n\
         proxy_temp_path {p}/proxy;\n  fastcgi_temp_path {p}/fastcgi;\n\
         uwsgi_temp_path {p}/uwsgi;\n  scgi_temp_path {p}/scgi;\n\
         server {{ listen {listen} reuseport backlog=4096; root {}; }}\n}}\n",
        root.display()
    )
}

/// Starts Debian's nginx on a free loopback port serving `root` (temporary configuration,
/// never the system's service); panics with a hint when it is not installed.
pub fn start_nginx(root: &Path) -> Server {
    let port = free_port();
    let prefix =
        std::env::temp_dir().join(format!("megatcp-http-nginx-{}-{port}", std::process::id()));
    std::fs::create_dir_all(&prefix).unwrap();
    let conf = prefix.join("nginx.conf");
    std::fs::write(
        &conf,
        nginx_conf(&prefix, root, &format!("127.0.0.1:{port}")),
    )
    .unwrap();
    let child = Command::new("nginx")
        .arg("-c")
        .arg(&conf)
        .arg("-p")
        .arg(&prefix)
        .arg("-e")
        .arg(prefix.join("error.log"))
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("nginx: {e} (install it: scripts/install-deps)"));
    let mut p = Server {
        process: Proc::new(child),
        port,
    };
    wait_http(&mut p, "127.0.0.1", "/", "nginx");
    p
}

/// Sends `req` on a new connection and reads everything until the server closes (10 s
/// at most).
pub fn exchange(port: u16, req: &[u8]) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    // The server may answer and close before taking the whole request (413).
    let _ = s.write_all(req);
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        match s.read(&mut chunk) {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    buf
}

/// One parsed response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response {
    pub code: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Response {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Splits a byte stream into responses (`head_only`: the i-th response has no body
/// whatever its Content-Length says, as for HEAD).
pub fn responses(mut b: &[u8], head_only: &[bool]) -> Vec<Response> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let mut h = [httparse::EMPTY_HEADER; 64];
        let mut r = httparse::Response::new(&mut h);
        let Ok(httparse::Status::Complete(n)) = r.parse(b) else {
            panic!("unparsable response: {:?}", String::from_utf8_lossy(b));
        };
        let headers: Vec<(String, String)> = r
            .headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).into_owned(),
                )
            })
            .collect();
        let code = r.code.unwrap();
        let len = headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
            .map_or(0, |(_, v)| v.parse::<usize>().unwrap());
        let no_body = head_only.get(out.len()).copied().unwrap_or(false) || code == 304;
        let len = if no_body { 0 } else { len };
        let body = b[n..n + len].to_vec();
        b = &b[n + len..];
        out.push(Response {
            code,
            headers,
            body,
        });
    }
    out
}

/// A command run directly, or inside network namespace `ns`.
pub fn cmd_in(ns: Option<&str>, program: &str) -> Command {
    match ns {
        Some(ns) => {
            let mut c = Command::new("ip");
            c.args(["netns", "exec", ns, program]);
            c
        }
        None => Command::new(program),
    }
}

fn run(mut c: Command) -> (bool, String, Vec<u8>) {
    let out = c.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text, out.stdout)
}

/// curl, wrk and ab against the server at `base` (e.g. `http://127.0.0.1:8080`) serving
/// `root` (plus `/hello` of `hello_size` bytes), run in namespace `ns` if given: every file
/// fetched with HTTP/1.0 and HTTP/1.1 and compared byte for byte, keep-alive reuse, HEAD,
/// a range request answered whole, then wrk (keep-alive) and ab (close, then keep-alive)
/// with no errors.
pub fn third_party_clients(ns: Option<&str>, base: &str, root: &Path, hello_size: usize) {
    // One download file per server tree: tests run in parallel threads of one process.
    let dl = root.with_extension("download");
    let files = files_of(root);
    for version in ["--http1.0", "--http1.1"] {
        for (url, local) in &files {
            let mut c = cmd_in(ns, "curl");
            c.args(["-sS", "--fail", version, "-o"])
                .arg(&dl)
                .arg(format!("{base}{url}"));
            let (ok, text, _) = run(c);
            assert!(ok, "curl {version} {url}: {text}");
            assert!(
                std::fs::read(&dl).unwrap() == std::fs::read(local).unwrap(),
                "curl {version} {url}: the bytes differ from the file"
            );
        }
    }
    let _ = std::fs::remove_file(&dl);
    // Keep-alive: curl reuses one connection for several URLs.
    let mut c = cmd_in(ns, "curl");
    c.args([
        "-sS",
        "-v",
        "--fail",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
        "-o",
        "/dev/null",
    ])
    .args([
        format!("{base}/a.txt"),
        format!("{base}/hello"),
        format!("{base}/data/4096.bin"),
    ]);
    let (ok, text, _) = run(c);
    assert!(ok, "curl keep-alive: {text}");
    assert_eq!(
        text.matches("Re-using existing connection").count(),
        2,
        "{text}"
    );
    // HEAD: the GET's headers, no body.
    let mut c = cmd_in(ns, "curl");
    c.args(["-sS", "-I", &format!("{base}/data/1024.bin")]);
    let (ok, text, _) = run(c);
    assert!(ok && text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(text.contains("Content-Length: 1024"), "{text}");
    // A range is refused cleanly: the whole file, 200, Accept-Ranges: none.
    let mut c = cmd_in(ns, "curl");
    c.args(["-sS", "-i", "-r", "0-3", &format!("{base}/a.txt")]);
    let (ok, text, _) = run(c);
    assert!(ok && text.starts_with("HTTP/1.1 200 OK"), "{text}");
    assert!(
        text.contains("Accept-Ranges: none") && text.ends_with("\r\n\r\naaa\n"),
        "{text}"
    );
    // wrk, keep-alive, on /hello and on a 64 KiB file.
    for path in ["/hello", "/data/65536.bin"] {
        let mut c = cmd_in(ns, "wrk");
        c.args(["-t1", "-c16", "-d1", "--latency", &format!("{base}{path}")]);
        let (ok, text, _) = run(c);
        assert!(ok, "wrk: {text}");
        assert!(
            !text.contains("Non-2xx") && !text.contains("Socket errors"),
            "wrk {path}: {text}"
        );
        let done: u64 = text
            .lines()
            .find_map(|l| l.trim().split_once(" requests in "))
            .and_then(|(n, _)| n.trim().parse().ok())
            .unwrap_or(0);
        assert!(done > 100, "wrk {path}: {text}");
    }
    // ab: Connection: close (its default), then keep-alive; it checks every length.
    for keep in [false, true] {
        let mut c = cmd_in(ns, "ab");
        c.args(["-n", "2000", "-c", "8", "-r"]);
        if keep {
            c.arg("-k");
        }
        c.arg(format!("{base}/hello"));
        let (ok, text, _) = run(c);
        assert!(ok, "ab: {text}");
        assert!(text.contains("Complete requests:      2000"), "ab: {text}");
        assert!(text.contains("Failed requests:        0"), "ab: {text}");
        assert!(
            text.contains(&format!("Document Length:        {hello_size} bytes")),
            "ab: {text}"
        );
        assert!(!text.contains("Non-2xx"), "ab: {text}");
    }
}
