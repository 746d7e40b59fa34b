//! Operating a running server (no root: `megatcp-echo pair`, both stacks in one process over
//! the in-memory wire): the live stats and the metrics against the exit report of the same
//! run, the Prometheus text through the Prometheus client library's own parser, a capture
//! taken on demand mid-run read by tshark (one TCP stream followed whole), `megatcp-stat`
//! on the running process, and the exit statuses.
#![allow(clippy::unwrap_used)]

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use megatcp_test_support::{Proc, free_port, output_ok, sibling_bin, tshark};
use serde_json::Value;

const BIN: &str = env!("CARGO_BIN_EXE_megatcp-echo");

fn tmp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("megatcp-ops-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// `GET /metrics` on `port`: the body, or `None` when nothing answers yet.
fn scrape(port: u16) -> Option<String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .ok()?;
    let mut all = String::new();
    s.read_to_string(&mut all).ok()?;
    let (head, body) = all.split_once("\r\n\r\n")?;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    assert!(head.contains("text/plain; version=0.0.4"), "{head}");
    Some(body.to_string())
}

/// The samples of a Prometheus text, parsed by the Prometheus client library
/// (`prometheus_client.parser`, Debian's python3-prometheus-client): a list of
/// `[name, labels, value]`.
fn parse_prometheus(text: &str) -> Vec<(String, serde_json::Map<String, Value>, f64)> {
    let script = "import sys, json\n\
        from prometheus_client.parser import text_string_to_metric_families\n\
        out = []\n\
        for fam in text_string_to_metric_families(sys.stdin.read()):\n\
        \x20   for s in fam.samples:\n\
        \x20       out.append([s.name, s.labels, s.value])\n\
        print(json.dumps(out))\n";
    let mut child = Command::new("/usr/bin/python3")
        .args(["-c", script])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("python3 (scripts/install-deps installs python3-prometheus-client)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "the Prometheus parser refused the text: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v: Vec<Value> = serde_json::from_slice(&out.stdout).unwrap();
    v.into_iter()
        .map(|s| {
            (
                s[0].as_str().unwrap().to_string(),
                s[1].as_object().unwrap().clone(),
                s[2].as_f64().unwrap(),
            )
        })
        .collect()
}

fn sample(
    samples: &[(String, serde_json::Map<String, Value>, f64)],
    name: &str,
    side: &str,
) -> f64 {
    samples
        .iter()
        .find(|(n, l, _)| n == name && l["side"] == side && l["core"] == "0")
        .unwrap_or_else(|| panic!("no {name} for {side}"))
        .2
}

/// The numbers of an exit report line (`core 0: rx N frames / B B, tx N frames ...`).
fn report_numbers(line: &str) -> Vec<(String, u64)> {
    let grab = |key: &str| -> u64 {
        let at = line.find(key).unwrap_or_else(|| panic!("{key} in {line}")) + key.len();
        line[at..]
            .trim_start()
            .split(|c: char| !c.is_ascii_digit())
            .next()
            .unwrap()
            .parse()
            .unwrap()
    };
    [
        ("rx_frames", "rx "),
        ("tx_frames", "tx "),
        ("drops", "drops "),
        ("conns_accepted", "conns accepted "),
        ("conns_opened", "opened "),
        ("conns_closed", "closed "),
        ("conns_reset", "reset "),
        ("retransmits", "retransmits "),
    ]
    .iter()
    .map(|(field, key)| (field.to_string(), grab(key)))
    .collect()
}

fn pair(args: &[&str]) -> std::process::Child {
    Command::new(BIN)
        .args([
            "pair",
            "--warmup",
            "0s",
            "--server-cores",
            "0",
            "--client-cores",
            "1",
        ])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

#[test]
fn stats_and_metrics_match_the_exit_report() {
    let port = free_port();
    let metrics = format!("127.0.0.1:{port}");
    let child = pair(&[
        "--duration",
        "3s",
        "--connections",
        "8",
        "--txns-per-conn",
        "20",
        "--stats-interval",
        "300ms",
        "--stats-format",
        "json",
        "--metrics",
        &metrics,
    ]);
    // Scrape while it runs: every scrape parses, and counters only grow.
    let mut scrapes = Vec::new();
    let end = Instant::now() + Duration::from_millis(2500);
    while Instant::now() < end {
        if let Some(body) = scrape(port) {
            scrapes.push(parse_prometheus(&body));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    let out: Output = child.wait_with_output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(scrapes.len() >= 3, "{} scrapes", scrapes.len());
    let rx = |s: &Vec<_>| sample(s, "megatcp_rx_frames_total", "server");
    assert!(rx(&scrapes[0]) <= rx(scrapes.last().unwrap()));
    assert!(rx(scrapes.last().unwrap()) > 0.0);
    let last = scrapes.last().unwrap();
    let busy = sample(last, "megatcp_busy_seconds_total", "server");
    let idle = sample(last, "megatcp_idle_seconds_total", "server");
    assert!(
        busy > 0.0 && idle >= 0.0 && busy + idle < 10.0,
        "{busy} {idle}"
    );
    assert!(
        last.iter()
            .any(|(n, l, _)| n == "megatcp_drops_by_reason_total" && l["reason"] == "tcp_no_socket")
    );

    // The JSON lines: several while it ran, then the final one.
    let lines: Vec<Value> = stderr
        .lines()
        .filter(|l| l.starts_with('{'))
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert!(lines.len() >= 5, "{stderr}");
    let fin = lines.last().unwrap();
    assert_eq!(fin["final"], true);
    assert!(lines[..lines.len() - 1].iter().all(|l| l["final"] == false));
    let busy = fin["cores"][0]["busy"].as_f64().unwrap();
    assert!(busy > 0.0 && busy < 1.0, "{busy}");

    // The final line holds exactly the exit report's counters (server first, then client).
    let reports: Vec<&str> = stderr.lines().filter(|l| l.starts_with("core ")).collect();
    assert_eq!(reports.len(), 2, "{stderr}");
    for (i, (side, line)) in ["server", "client"].iter().zip(&reports).enumerate() {
        let core = &fin["cores"][i];
        assert_eq!(core["group"], *side);
        for (field, want) in report_numbers(line) {
            assert_eq!(
                core["values"][&field].as_u64(),
                Some(want),
                "{side} {field}: {line}"
            );
        }
        // The metrics scraped during the run never exceed the totals.
        let scraped = sample(last, "megatcp_rx_frames_total", side);
        assert!(scraped <= core["values"]["rx_frames"].as_f64().unwrap());
    }
    assert!(
        fin["cores"][0]["values"]["conns_accepted"]
            .as_u64()
            .unwrap()
            > 8
    );
}

#[test]
fn a_capture_taken_on_demand_follows_one_stream_whole() {
    let dir = tmp_dir("pcap");
    let mut child = pair(&[
        "--duration",
        "4s",
        "--connections",
        "4",
        "--txns-per-conn",
        "20",
        "--msg-size",
        "100",
        "--pcap",
        dir.to_str().unwrap(),
    ]);
    let pid = child.id().to_string();
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing captured before asked"
    );
    Command::new("kill").args(["-USR1", &pid]).status().unwrap();
    std::thread::sleep(Duration::from_millis(800));
    Command::new("kill").args(["-USR2", &pid]).status().unwrap();
    assert!(child.wait().unwrap().success());
    let server = dir.join("server-core0-1.pcap");
    assert!(dir.join("client-core0-1.pcap").exists());
    let tshark = |args: &[&str]| tshark(&server, args);
    let streams = |filter: &str| -> Vec<u64> {
        tshark(&["-Y", filter, "-T", "fields", "-e", "tcp.stream"])
            .lines()
            .map(|l| l.trim().parse().unwrap())
            .collect()
    };
    // A connection that opened and closed inside the capture.
    let syns = streams("tcp.flags.syn == 1 && tcp.flags.ack == 0");
    let fins = streams("tcp.flags.fin == 1");
    let whole: Vec<u64> = syns
        .iter()
        .copied()
        .filter(|s| fins.iter().filter(|f| *f == s).count() >= 2)
        .collect();
    assert!(whole.len() > 10, "{} whole streams", whole.len());
    let n = whole[whole.len() / 2];
    let lost = streams(&format!("tcp.stream == {n} && tcp.analysis.lost_segment"));
    assert!(lost.is_empty(), "segments missing from stream {n}");
    // Followed: 20 transactions of 100 bytes each way.
    let follow = tshark(&["-q", "-z", &format!("follow,tcp,raw,{n}")]);
    let (mut sent, mut echoed) = (0, 0);
    for l in follow.lines() {
        let hex = l.trim();
        if hex.is_empty() || !hex.chars().all(|c| c.is_ascii_hexdigit()) {
            continue;
        }
        if l.starts_with('\t') {
            echoed += hex.len() / 2;
        } else {
            sent += hex.len() / 2;
        }
    }
    assert_eq!((sent, echoed), (2000, 2000), "{follow}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn megatcp_stat_reads_a_running_process() {
    let child = pair(&["--duration", "4s", "--connections", "6"]);
    let proc = Proc::new(child);
    let pid = proc.id().to_string();
    std::thread::sleep(Duration::from_millis(1500));
    let stat = |args: &[&str]| {
        let out = output_ok(Command::new(sibling_bin(BIN, "megatcp-stat")).args(args));
        String::from_utf8(out.stdout).unwrap()
    };
    let view: Value = serde_json::from_str(&stat(&["show", &pid])).unwrap();
    assert_eq!(view["program"], "megatcp pair");
    let rx_at = view["fields"]
        .as_array()
        .unwrap()
        .iter()
        .position(|f| f == "rx_frames")
        .unwrap();
    assert!(view["cores"][0]["values"][rx_at].as_u64().unwrap() > 0);
    let top = stat(&["top", &pid, "--count", "1", "--interval", "600ms"]);
    assert!(
        top.contains("server/0") && top.contains("client/0"),
        "{top}"
    );
    let conns = stat(&["conns", &pid]);
    let established = conns
        .lines()
        .filter(|l| l.starts_with("ESTABLISHED"))
        .count();
    assert_eq!(established, 12, "{conns}");
    assert!(stat(&[]).contains(&pid));
    drop(proc);
}

#[test]
fn exit_statuses_say_usage_or_failure() {
    let port = free_port().to_string();
    let run = |args: &[&str]| Command::new(BIN).args(args).output().unwrap();
    // A CPU that does not exist: the pin fails, at run time.
    let out = run(&[
        "serve",
        "--backend",
        "epoll",
        "--cores",
        "999",
        "--port",
        &port,
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("cannot pin"));
    // A backend that needs another command: usage.
    let out = run(&["serve", "--backend", "wire", "--port", &port]);
    assert_eq!(out.status.code(), Some(2));
    // A bad duration: usage (clap).
    let out = run(&["pair", "--duration", "5 parsecs"]);
    assert_eq!(out.status.code(), Some(2));
    let v = String::from_utf8(run(&["--version"]).stdout).unwrap();
    assert!(v.contains("backends: epoll, uring, wire"), "{v}");
}
