//! Running one client against the server for one point: our load generator (over AF_XDP,
//! every response verified), wrk or ab (over the kernel), each pinned to CPU 1 in the client
//! namespace; their outputs parsed into one [`Measure`].

use std::path::Path;
use std::process::Command;

use super::plan::{Client, Point};
use super::servers::PORT;
use crate::cpu::CpuUse;
use crate::procs::{self, CLI_BYPASS_IP, CLI_IF, CLI_NS, CLIENT_CPU, SERVER_CPU};

/// What one client run measured.
#[derive(Debug, Clone, Default)]
pub(crate) struct Measure {
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Errors the client counted (verification, non-200, socket errors).
    pub(crate) errors: u64,
    pub(crate) cpu: CpuUse,
}

/// The command for `point` against `addr`.
fn command(http_bin: &Path, point: &Point, addr: &str, secs: f64, warmup: f64) -> Command {
    let mut c = Command::new("ip");
    c.args(["netns", "exec", CLI_NS]);
    let path = format!("/{}.bin", point.size);
    let n = point.connections.to_string();
    match point.client {
        Client::Ours => {
            c.arg(http_bin)
                .args([
                    "load",
                    "--json",
                    "--cores",
                    CLIENT_CPU,
                    "--backend",
                    "afxdp",
                ])
                .args(["--iface", CLI_IF, "--ip", &format!("{CLI_BYPASS_IP}/24")])
                .args(["--connect", &format!("{addr}:{PORT}"), "--path", &path])
                .args([
                    "--expect-hello",
                    &point.size.to_string(),
                    "--connections",
                    &n,
                ])
                .args([
                    "--duration",
                    &secs.to_string(),
                    "--warmup",
                    &warmup.to_string(),
                ]);
            if !point.keep_alive {
                // One request per connection, closed with FIN after the response, as wrk
                // and ab close theirs.
                c.arg("--close");
            }
        }
        Client::Wrk => {
            let d = format!("{}s", secs.ceil().max(1.0));
            c.args([
                "taskset",
                "-c",
                CLIENT_CPU,
                "wrk",
                "-t1",
                "-c",
                &n,
                "-d",
                &d,
                "--latency",
            ]);
            if !point.keep_alive {
                c.args(["-H", "Connection: close"]);
            }
            c.arg(format!("http://{addr}:{PORT}{path}"));
        }
        Client::Ab => {
            let t = format!("{}", secs.ceil().max(1.0));
            c.args(["taskset", "-c", CLIENT_CPU, "ab", "-q", "-r", "-t", &t])
                .args(["-n", "100000000", "-c", &n]);
            if point.keep_alive {
                c.arg("-k");
            }
            c.arg(format!("http://{addr}:{PORT}{path}"));
        }
    }
    c
}

/// Microseconds of a wrk duration (`812.00us`, `1.20ms`, `2.00s`).
fn wrk_us(s: &str) -> Option<f64> {
    let (num, mult) = if let Some(v) = s.strip_suffix("us") {
        (v, 1.0)
    } else if let Some(v) = s.strip_suffix("ms") {
        (v, 1e3)
    } else if let Some(v) = s.strip_suffix('s') {
        (v, 1e6)
    } else {
        return None;
    };
    num.parse::<f64>().ok().map(|v| v * mult)
}

/// The number after `key` on the line that starts with it.
fn after(text: &str, key: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.trim().strip_prefix(key))
        .and_then(|r| r.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

fn parse(client: Client, out: &str) -> Result<Measure, String> {
    let mut m = Measure::default();
    match client {
        Client::Ours => {
            let r: serde_json::Value =
                serde_json::from_str(out).map_err(|e| format!("bad report ({e})"))?;
            let num = |k: &str| {
                r.get(k)
                    .and_then(serde_json::Value::as_f64)
                    .unwrap_or(f64::NAN)
            };
            m.requests_per_sec = num("requests_per_sec");
            m.p50_us = num("p50_us");
            m.p99_us = num("p99_us");
            let e = r.get("errors").and_then(serde_json::Value::as_object);
            m.errors = e.map_or(0, |o| {
                o.values().filter_map(serde_json::Value::as_u64).sum()
            });
            let verify = r["errors"]["verify"].as_u64().unwrap_or(0)
                + r["errors"]["status"].as_u64().unwrap_or(0);
            if verify > 0 {
                return Err(format!("{verify} responses failed verification"));
            }
        }
        Client::Wrk => {
            m.requests_per_sec =
                after(out, "Requests/sec:").ok_or("no Requests/sec in wrk's output")?;
            let pct = |p: &str| {
                out.lines()
                    .find_map(|l| l.trim().strip_prefix(p))
                    .and_then(|r| wrk_us(r.trim()))
                    .unwrap_or(f64::NAN)
            };
            m.p50_us = pct("50%");
            m.p99_us = pct("99%");
            m.errors = after(out, "Non-2xx or 3xx responses:").unwrap_or(0.0) as u64;
            if let Some(l) = out.lines().find(|l| l.trim().starts_with("Socket errors:")) {
                m.errors += l
                    .split(|c: char| !c.is_ascii_digit())
                    .filter_map(|n| n.parse::<u64>().ok())
                    .sum::<u64>();
            }
        }
        Client::Ab => {
            m.requests_per_sec = after(out, "Requests per second:")
                .ok_or("no Requests per second in ab's output")?;
            m.p50_us = after(out, "50%").map_or(f64::NAN, |ms| ms * 1e3);
            m.p99_us = after(out, "99%").map_or(f64::NAN, |ms| ms * 1e3);
            m.errors = after(out, "Failed requests:").unwrap_or(0.0) as u64
                + after(out, "Non-2xx responses:").unwrap_or(0.0) as u64;
        }
    }
    if m.requests_per_sec.is_nan() || m.requests_per_sec <= 0.0 {
        return Err("no request completed".into());
    }
    Ok(m)
}

/// Runs `point`'s client against the server at `addr` (pid `server_pid`).
pub(crate) fn run(
    http_bin: &Path,
    point: &Point,
    addr: &str,
    secs: f64,
    warmup: f64,
    server_pid: u32,
) -> Result<Measure, String> {
    // wrk and ab measure from their first request: no warm-up of their own.
    let warm = if point.client == Client::Ours {
        warmup
    } else {
        0.0
    };
    let mut cmd = command(http_bin, point, addr, secs, warm);
    let window = if point.client == Client::Ours {
        secs
    } else {
        secs.ceil().max(1.0)
    };
    let cpu = |c: &str| c.parse::<usize>().map_err(|e| format!("CPU {c}: {e}"));
    let mut server = procs::local_sampler(server_pid, cpu(SERVER_CPU)?);
    let run = procs::run_client(
        &mut cmd,
        "the client",
        &mut server,
        cpu(CLIENT_CPU)?,
        window,
        warm,
    )?;
    let mut m = parse(point.client, &run.stdout).map_err(|e| {
        format!(
            "{} {e}: {}",
            point.client.name(),
            procs::tail(&run.stderr, 3)
        )
    })?;
    m.cpu = run.cpu;
    Ok(m)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wrk_output_parses() {
        let out = "Running 1s test @ http://x/\n  1 threads and 64 connections\n  Latency Distribution\n     50%  343.00us\n     75%  1.00ms\n     90%  2.00ms\n     99%    1.50ms\n  91234 requests in 1.00s, 20 MB read\n  Socket errors: connect 0, read 3, write 0, timeout 1\n  Non-2xx or 3xx responses: 2\nRequests/sec:  91234.56\n";
        let m = parse(Client::Wrk, out).unwrap();
        assert_eq!(m.requests_per_sec, 91234.56);
        assert_eq!((m.p50_us, m.p99_us, m.errors), (343.0, 1500.0, 6));
    }

    #[test]
    fn ab_output_parses() {
        let out = "Complete requests:      20000\nFailed requests:        0\nRequests per second:    22123.45 [#/sec] (mean)\n  50%      2\n  99%      7\n 100%     12 (longest request)\n";
        let m = parse(Client::Ab, out).unwrap();
        assert_eq!(m.requests_per_sec, 22123.45);
        assert_eq!((m.p50_us, m.p99_us, m.errors), (2000.0, 7000.0, 0));
        assert!(parse(Client::Ab, "nothing").is_err());
    }
}
