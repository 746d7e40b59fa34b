//! Differential answers against nginx (one worker, Debian's 1.22) serving the same directory:
//! for each request, well-formed and malformed, the status, the headers that must agree
//! (`Content-Type`, `Content-Length`, `Last-Modified`, the `Location` path, whether the
//! connection closes) and the body of successful responses are compared. The few places
//! where megatcp-http answers differently on purpose are listed in `known_differences` and
//! checked to stay what they are.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

/// (request, whether it is HEAD, description)
fn cases(last_modified: &str) -> Vec<(Vec<u8>, bool, String)> {
    let mut v: Vec<(Vec<u8>, bool, String)> = Vec::new();
    let mut add = |req: String, head: bool| {
        let name = req
            .lines()
            .next()
            .unwrap_or_default()
            .chars()
            .take(60)
            .collect();
        v.push((req.into_bytes(), head, name));
    };
    let close = "Connection: close\r\n";
    for path in [
        "/",
        "/index.html",
        "/a.txt",
        "/empty.txt",
        "/style.css",
        "/data/64.bin",
        "/data/65536.bin",
        "/data/1mib.bin",
        "/sub/deep/x.json",
        "/a.txt?x=1&y=2",
        "/%61.txt",
        "/sub/../a.txt",
        "/sub/./deep/x.json",
        "//a.txt",
        "/missing",
        "/sub",
        "/sub/",
        "/sub/deep",
        "/data/",
        "/nope/",
    ] {
        add(
            format!("GET {path} HTTP/1.1\r\nHost: t\r\n{close}\r\n"),
            false,
        );
    }
    add(
        format!("HEAD /data/4096.bin HTTP/1.1\r\nHost: t\r\n{close}\r\n"),
        true,
    );
    add(
        format!("HEAD /missing HTTP/1.1\r\nHost: t\r\n{close}\r\n"),
        true,
    );
    add("GET /a.txt HTTP/1.0\r\n\r\n".into(), false);
    add("GET /a.txt HTTP/1.0\r\nHost: t\r\n\r\n".into(), false);
    add(
        "GET /a.txt HTTP/1.2\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
        false,
    );
    add(
        "GET http://t/a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n".into(),
        false,
    );
    add(
        format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: {last_modified}\r\n{close}\r\n"
        ),
        false,
    );
    add(
        format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n{close}\r\n"
        ),
        false,
    );
    add(
        format!("GET /a.txt HTTP/1.1\r\nHost: t\r\nIf-Modified-Since: garbage\r\n{close}\r\n"),
        false,
    );
    add(
        format!("DELETE /a.txt HTTP/1.1\r\nHost: t\r\n{close}\r\n"),
        false,
    );
    add(
        format!("POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 3\r\n{close}\r\nabc"),
        false,
    );
    add(
        format!(
            "GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n{close}\r\n3\r\nabc\r\n0\r\n\r\n"
        ),
        false,
    );
    // Pipelined: three requests in one write, answered in order.
    add(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\n\r\nGET /missing HTTP/1.1\r\nHost: t\r\n\r\n\
         GET /style.css HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n"
            .into(),
        false,
    );
    // Malformed or refused.
    add("GARBAGE\r\n\r\n".into(), false);
    add("GET / HTTP/2.0\r\nHost: t\r\n\r\n".into(), false);
    add("GET / HTTP/1.1\r\n\r\n".into(), false);
    add("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n".into(), false);
    add(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: abc\r\n\r\n".into(),
        false,
    );
    add(
        "GET /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n".into(),
        false,
    );
    add(
        "GET /a.txt HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n".into(),
        false,
    );
    add(
        "POST /a.txt HTTP/1.1\r\nHost: t\r\nContent-Length: 2000000\r\n\r\n".into(),
        false,
    );
    add(
        "GET /../etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n".into(),
        false,
    );
    add("GET /%zz HTTP/1.1\r\nHost: t\r\n\r\n".into(), false);
    add("GET /a%00b HTTP/1.1\r\nHost: t\r\n\r\n".into(), false);
    add(
        format!("GET /{} HTTP/1.1\r\nHost: t\r\n\r\n", "a".repeat(20_000)),
        false,
    );
    add(
        format!("GET  /a.txt HTTP/1.1\r\nHost: t\r\n{close}\r\n"),
        false,
    );
    add("GET /a.txt HTTP/1.1\r\nHost t\r\n\r\n".into(), false);
    v
}

/// Requests where megatcp-http follows the RFC or its own limits and nginx does not, each
/// with both statuses: checked separately (`known_differences_stay_as_documented`).
fn known_differences() -> Vec<(Vec<u8>, u16, u16, &'static str)> {
    let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
    vec![
        (
            b"GET /a.txt HTTP/1.1\r\nHost: t\r\nRange: bytes=0-1\r\nConnection: close\r\n\r\n"
                .to_vec(),
            200,
            206,
            "ranges are not supported: the whole file (RFC 9110 allows ignoring Range)",
        ),
        (
            b"GET /a.txt HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: gzip\r\n\r\n".to_vec(),
            400,
            501,
            "chunked not final: 400 and close (RFC 9112 section 6.3); nginx says 501",
        ),
        (
            format!(
                "GET / HTTP/1.1\r\nHost: t\r\nX: {}\r\n\r\n",
                "v".repeat(20_000)
            )
            .into_bytes(),
            431,
            400,
            "header section over the bound: 431 (RFC 6585); nginx says 400",
        ),
        (
            format!("GET /a.txt HTTP/1.1\r\nHost: t\r\n{many}Connection: close\r\n\r\n")
                .into_bytes(),
            431,
            200,
            "more than 64 header fields: 431; nginx has no count limit",
        ),
    ]
}

fn closes(r: &Response) -> bool {
    r.header("connection")
        .is_some_and(|v| v.eq_ignore_ascii_case("close"))
}

#[test]
fn answers_match_nginx_on_the_same_directory() {
    let root = tree("differential");
    let ours = start_http(&["--root", root.to_str().unwrap(), "--no-hello"]);
    let nginx = start_nginx(&root);
    let lm = {
        let b = exchange(
            ours.port,
            b"HEAD /a.txt HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n",
        );
        responses(&b, &[true])[0]
            .header("last-modified")
            .unwrap()
            .to_string()
    };
    let mut checked = 0;
    for (req, head, name) in cases(&lm) {
        let (a, b) = (exchange(ours.port, &req), exchange(nginx.port, &req));
        let heads: Vec<bool> = vec![head; 3];
        let (ra, rb) = (responses(&a, &heads), responses(&b, &heads));
        assert_eq!(
            ra.len(),
            rb.len(),
            "{name}: number of responses\nours {ra:?}\nnginx {rb:?}"
        );
        for (x, y) in ra.iter().zip(&rb) {
            assert_eq!(x.code, y.code, "{name}\nours {x:?}\nnginx {y:?}");
            assert_eq!(
                closes(x),
                closes(y),
                "{name}: Connection\nours {x:?}\nnginx {y:?}"
            );
            if x.code == 200 || x.code == 304 {
                for h in ["content-type", "content-length", "last-modified"] {
                    assert_eq!(x.header(h), y.header(h), "{name}: {h}");
                }
            }
            if x.code == 200 {
                assert!(x.body == y.body, "{name}: the bodies differ");
            }
            if x.code == 301 {
                let (l1, l2) = (x.header("location").unwrap(), y.header("location").unwrap());
                assert!(l2.ends_with(l1), "{name}: Location {l1} vs {l2}");
            }
            for h in ["server", "date"] {
                assert!(x.header(h).is_some(), "{name}: no {h}");
            }
            checked += 1;
        }
    }
    assert!(checked >= 45, "{checked} responses compared");
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn known_differences_stay_as_documented() {
    let root = tree("differences");
    let ours = start_http(&["--root", root.to_str().unwrap(), "--no-hello"]);
    let nginx = start_nginx(&root);
    for (req, want_ours, want_nginx, why) in known_differences() {
        let a = responses(&exchange(ours.port, &req), &[]);
        let b = responses(&exchange(nginx.port, &req), &[]);
        assert_eq!((a[0].code, b[0].code), (want_ours, want_nginx), "{why}");
        if want_ours >= 400 {
            assert!(closes(&a[0]), "{why}: the connection must close");
        }
    }
    let _ = std::fs::remove_dir_all(&root);
}
