//! Third-party clients against `megatcp-http` on the kernel path (loopback): curl (HTTP/1.0
//! and 1.1, keep-alive, HEAD, a range answered whole; every byte of every file compared),
//! wrk and ab; our own load generator, keep-alive and close; the access log and counters;
//! thousands of sequential `Connection: close` exchanges, closed by FIN and by RST.
#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[test]
fn curl_wrk_and_ab_over_epoll() {
    let root = tree("clients-epoll");
    let server = start_http(&["--root", root.to_str().unwrap(), "--backend", "epoll"]);
    third_party_clients(
        None,
        &format!("http://127.0.0.1:{}", server.port),
        &root,
        64,
    );
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn curl_wrk_and_ab_over_io_uring() {
    let root = tree("clients-uring");
    let server = start_http(&[
        "--root",
        root.to_str().unwrap(),
        "--backend",
        "uring",
        "--hello-size",
        "1000",
    ]);
    third_party_clients(
        None,
        &format!("http://127.0.0.1:{}", server.port),
        &root,
        1000,
    );
    let _ = std::fs::remove_dir_all(&root);
}

fn load(port: u16, extra: &[&str]) -> serde_json::Value {
    let out = std::process::Command::new(HTTP)
        .args(["load", "--backend", "epoll", "--cores", "1", "--json"])
        .args([
            "--connect",
            &format!("127.0.0.1:{port}"),
            "--duration",
            "1",
            "--warmup",
            "0.2",
        ])
        .args(extra)
        .output()
        .unwrap();
    let report: serde_json::Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&out.stderr)));
    assert!(out.status.success(), "{report}");
    report
}

#[test]
fn our_load_generator_verifies_keep_alive_close_and_pipelined_runs() {
    let root = tree("load");
    let log = root.with_extension("log");
    let server = start_http(&[
        "--root",
        root.to_str().unwrap(),
        "--access-log",
        log.to_str().unwrap(),
        "--hello-size",
        "300",
    ]);
    let file = root.join("data/65536.bin");
    for extra in [
        &["--expect-hello", "300"][..],
        &["--expect-hello", "300", "--close"],
        &[
            "--expect-hello",
            "300",
            "--depth",
            "8",
            "--connections",
            "4",
        ],
        &[
            "--path",
            "/data/65536.bin",
            "--expect-file",
            file.to_str().unwrap(),
        ],
    ] {
        let r = load(server.port, extra);
        assert_eq!(r["errors"]["verify"], 0, "{extra:?}: {r}");
        assert_eq!(r["errors"]["status"], 0, "{extra:?}: {r}");
        assert!(r["requests"].as_u64().unwrap() > 500, "{extra:?}: {r}");
    }
    // A wrong expectation is caught: the load generator really compares the bytes.
    let out = std::process::Command::new(HTTP)
        .args([
            "load",
            "--cores",
            "1",
            "--json",
            "--duration",
            "0.5",
            "--warmup",
            "0",
        ])
        .args([
            "--connect",
            &format!("127.0.0.1:{}", server.port),
            "--expect-hello",
            "300",
        ])
        .args(["--path", "/data/64.bin"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let r: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert!(r["errors"]["verify"].as_u64().unwrap() > 0, "{r}");
    // The access log is written off the data path, one line per response.
    drop(server);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 1000,
        "{} lines",
        text.lines().count()
    );
    assert!(
        text.lines()
            .any(|l| l.contains("\"GET /hello HTTP/1.1\" 200 ")),
        "{}",
        &text[..200]
    );
    let _ = std::fs::remove_file(&log);
    let _ = std::fs::remove_dir_all(&root);
}

#[test]
fn a_tree_over_the_bound_is_refused_at_start() {
    let root = tree("bound");
    let out = std::process::Command::new(HTTP)
        .args([
            "--root",
            root.to_str().unwrap(),
            "--max-bytes",
            "1000",
            "-p",
            "1",
        ])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("more than 1000 bytes"));
    let _ = std::fs::remove_dir_all(&root);
}

/// Sequential `Connection: close` requests for `/hello` (64 bytes), each on a new
/// connection that the client closes after the server's end of stream, every other one with
/// a RST (SO_LINGER 0): every response must arrive whole before the end of stream.
fn sequential_closes(backend: &str, connections: usize) {
    use std::io::{Read, Write};
    let server = start_http(&["--backend", backend]);
    let req = b"GET /hello HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n";
    let body = megatcp_http::files::hello_body(64);
    for i in 0..connections {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        s.set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .unwrap();
        s.write_all(req).unwrap();
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        let r = responses(&got, &[]);
        assert!(
            r.len() == 1 && r[0].code == 200 && r[0].body == body,
            "{backend}: connection {i} got {:?}",
            String::from_utf8_lossy(&got)
        );
        if i % 2 == 0 {
            socket2::SockRef::from(&s)
                .set_linger(Some(std::time::Duration::ZERO))
                .unwrap();
        }
    }
}

#[test]
fn every_close_mode_response_arrives_whole_over_io_uring() {
    sequential_closes("uring", 20_000);
}

#[test]
fn every_close_mode_response_arrives_whole_over_epoll() {
    sequential_closes("epoll", 5_000);
}
