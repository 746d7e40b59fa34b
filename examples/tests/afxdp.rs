//! The async runtime over AF_XDP on the veth testbed (root only; feature `afxdp`; each test
//! takes the testbed's lock): the async echo (`async-echo`, server namespace) passes the
//! byte-verifying load of `megatcp-echo load` (the kernel's TCP, client namespace) with
//! 1,000 short and 1,000 persistent connections; hyper's server (`hyper-server`) answers
//! curl (bodies compared) and wrk; hyper's client (`hyper-client`, client namespace) fetches
//! from nginx on the kernel side of the testbed, bodies compared.
#![cfg(feature = "afxdp")]
#![allow(clippy::unwrap_used)]

mod common;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use megatcp_test_support::Proc;
use megatcp_test_support::testbed;

const ECHO: &str = env!("CARGO_BIN_EXE_async-echo");
const SERVER: &str = env!("CARGO_BIN_EXE_hyper-server");
const CLIENT: &str = env!("CARGO_BIN_EXE_hyper-client");
/// The stack's address in the server namespace; the kernel's there.
const STACK: &str = "10.77.0.10";
const SERVER_KERNEL: &str = "10.77.0.1";
const IN_CLIENT: [&str; 4] = ["ip", "netns", "exec", "megatcp-cli"];

/// `bin ARGS` over AF_XDP on the server side of the testbed.
fn afxdp_server(bin: &str, args: &[&str]) -> Proc {
    Proc::new(
        Command::new("ip")
            .args(["netns", "exec", "megatcp-srv", bin])
            .args(["--backend", "afxdp", "--iface", "mtcp-srv"])
            .args(["--ip", &format!("{STACK}/24"), "--cores", "0"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

/// `megatcp-echo load` (kernel TCP, client namespace) against the async echo; its report.
fn load(extra: &[&str]) -> Result<serde_json::Value, String> {
    let bin = megatcp_test_support::sibling_bin(ECHO, "megatcp-echo");
    testbed::kernel_echo_load(bin.to_str().unwrap(), &format!("{STACK}:7"), extra)
}

#[test]
fn async_echo_over_afxdp_passes_the_echo_load_short_and_persistent() {
    let Some(_bed) =
        testbed::fresh("async_echo_over_afxdp_passes_the_echo_load_short_and_persistent")
    else {
        return;
    };
    let server = afxdp_server(ECHO, &["--port", "7"]);
    let bin = megatcp_test_support::sibling_bin(ECHO, "megatcp-echo");
    let target = format!("{STACK}:7");
    testbed::wait_until_echo_serves(bin.to_str().unwrap(), &target, "the async echo");
    let until = [
        "--duration",
        "60s",
        "--warmup",
        "0s",
        "--msg-size",
        "1..65536",
    ];
    // 1,000 connections, one transaction each.
    let mut args = vec![
        "--connections",
        "1000",
        "--txns-per-conn",
        "1",
        "--max-txns",
        "2000",
    ];
    args.extend(until);
    let r = load(&args).unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert_eq!(r["errors"]["connect"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() >= 2000, "{r}");
    // 1,000 persistent connections.
    let mut args = vec![
        "--connections",
        "1000",
        "--txns-per-conn",
        "0",
        "--max-txns",
        "5000",
    ];
    args.extend(until);
    let r = load(&args).unwrap();
    assert_eq!(r["errors"]["verify"], 0, "{r}");
    assert_eq!(r["errors"]["connect"], 0, "{r}");
    assert!(r["transactions"].as_u64().unwrap() >= 5000, "{r}");
    // SIGTERM: graceful stop, exit 0.
    assert!(server.terminate().success());
}

#[test]
fn hyper_server_over_afxdp_answers_curl_and_wrk() {
    let Some(_bed) = testbed::fresh("hyper_server_over_afxdp_answers_curl_and_wrk") else {
        return;
    };
    let server = afxdp_server(SERVER, &["--port", "80"]);
    let base = format!("http://{STACK}:80");
    common::wait_for(&base, &IN_CLIENT);
    common::curl_checks(&base, &IN_CLIENT);
    let rps = common::wrk(&format!("{base}/"), 64, 2, &IN_CLIENT);
    eprintln!("hyper on AF_XDP: wrk {rps:.0} requests/s");
    common::curl_checks(&base, &IN_CLIENT);
    assert!(server.terminate().success());
}

/// nginx on the server namespace's kernel address, serving `root` on port 8080, in the
/// foreground (killed when dropped).
fn nginx(dir: &Path, root: &Path) -> Proc {
    let conf = dir.join("nginx.conf");
    let d = dir.display();
    std::fs::write(
        &conf,
        format!(
            "daemon off;\nmaster_process off;\nworker_processes 1;\npid {d}/nginx.pid;\n\
             error_log {d}/error.log;\nevents {{ worker_connections 1024; }}\n\
             http {{\n access_log off;\n client_body_temp_path {d}/body;\n\
             proxy_temp_path {d}/proxy;\n fastcgi_temp_path {d}/fastcgi;\n\
             uwsgi_temp_path {d}/uwsgi;\n scgi_temp_path {d}/scgi;\n keepalive_requests 100000;\n\
             server {{ listen {SERVER_KERNEL}:8080; root {}; }}\n}}\n",
            root.display()
        ),
    )
    .unwrap();
    let p = Proc::new(
        Command::new("ip")
            .args(["netns", "exec", "megatcp-srv", "nginx", "-c"])
            .arg(&conf)
            .args(["-p"])
            .arg(dir)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let end = Instant::now() + Duration::from_secs(10);
    let url = format!("http://{SERVER_KERNEL}:8080/index.html");
    while !Command::new("ip")
        .args([
            "netns",
            "exec",
            "megatcp-cli",
            "curl",
            "-sf",
            "--max-time",
            "1",
            &url,
        ])
        .output()
        .is_ok_and(|o| o.status.success())
    {
        assert!(Instant::now() < end, "nginx did not come up");
        std::thread::sleep(Duration::from_millis(100));
    }
    p
}

/// `hyper-client` over AF_XDP in the client namespace; its report and the last body.
fn fetch(url: &str, requests: &str, connections: &str, out: &Path) -> (serde_json::Value, Vec<u8>) {
    let o = Command::new("ip")
        .args(["netns", "exec", "megatcp-cli", CLIENT])
        .args(testbed::CLIENT_AFXDP)
        .args(["--cores", "1", "--url", url, "--requests", requests])
        .args(["--connections", connections, "--out"])
        .arg(out)
        .output()
        .unwrap();
    let r: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap_or_else(|e| {
        panic!("{e}: {}", String::from_utf8_lossy(&o.stderr));
    });
    assert!(
        o.status.success(),
        "{r}\n{}",
        String::from_utf8_lossy(&o.stderr)
    );
    (r, std::fs::read(out).unwrap())
}

#[test]
fn hyper_client_over_afxdp_fetches_from_nginx_on_the_kernel_side() {
    let Some(_bed) =
        testbed::fresh("hyper_client_over_afxdp_fetches_from_nginx_on_the_kernel_side")
    else {
        return;
    };
    let dir = std::env::temp_dir().join(format!("megatcp-nginx-{}", std::process::id()));
    let root = dir.join("www");
    std::fs::create_dir_all(&root).unwrap();
    let index = b"<html>megatcp: hyper over AF_XDP</html>\n".to_vec();
    let big: Vec<u8> = (0..1_000_003u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    std::fs::write(root.join("index.html"), &index).unwrap();
    std::fs::write(root.join("big.bin"), &big).unwrap();
    let server = nginx(&dir, &root);
    let out = dir.join("fetched");
    let (r, body) = fetch(
        &format!("http://{SERVER_KERNEL}:8080/index.html"),
        "500",
        "4",
        &out,
    );
    assert_eq!(r["ok"], 500, "{r}");
    assert_eq!(body, index);
    let (r, body) = fetch(
        &format!("http://{SERVER_KERNEL}:8080/big.bin"),
        "20",
        "2",
        &out,
    );
    assert_eq!(r["ok"], 20, "{r}");
    assert_eq!(r["bytes"], 20 * big.len() as u64, "{r}");
    assert!(body == big, "big.bin: {} bytes, not the file", body.len());
    drop(server);
    let _ = std::fs::remove_dir_all(&dir);
}
