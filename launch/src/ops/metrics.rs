//! Prometheus metrics (`--metrics ADDR`): the cores' counters in Prometheus' text format
//! (version 0.0.4) at `GET /metrics`, served by one thread on a kernel socket of its own,
//! off the data path (it reads the cores' monitors).
//!
//! Names: `megatcp_<field>_total` for counters, `megatcp_<field>` for gauges, with labels
//! `core` (and `side` when the process runs a server and a client); drops by reason as
//! `megatcp_drops_by_reason_total{reason=...}`; busy and idle time as
//! `megatcp_busy_seconds_total` and `megatcp_idle_seconds_total`; `megatcp_info` carries the
//! program, backend and version. Kernel backends publish no stack counters: only
//! `megatcp_info` is served for them.

use std::fmt::Write as _;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use megatcp_engine::monitor::{Field, Kind, drop_reasons};

use super::stats::{CoreSample, sample};
use super::{Group, Identity};
use crate::LaunchError;

/// The exposition of `samples` in Prometheus' text format.
pub fn render(samples: &[CoreSample], who: &Identity) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# HELP megatcp_info The process: program, backend, version.\n# TYPE megatcp_info gauge"
    );
    let _ = writeln!(
        s,
        "megatcp_info{{program=\"{}\",backend=\"{}\",version=\"{}\"}} 1",
        escape(&who.name),
        escape(&who.backend),
        env!("CARGO_PKG_VERSION")
    );
    let cores: Vec<&CoreSample> = samples.iter().filter(|c| c.bypass).collect();
    let labels = |c: &CoreSample| {
        if c.group.is_empty() {
            format!("core=\"{}\"", c.core)
        } else {
            format!("side=\"{}\",core=\"{}\"", escape(&c.group), c.core)
        }
    };
    for &f in Field::ALL {
        let (name, kind, seconds) = match (f, f.kind()) {
            (Field::busy_ns, _) => ("megatcp_busy_seconds_total".to_string(), "counter", true),
            (Field::idle_ns, _) => ("megatcp_idle_seconds_total".to_string(), "counter", true),
            (_, Kind::Counter) => (format!("megatcp_{}_total", f.name()), "counter", false),
            (_, Kind::Gauge) => (format!("megatcp_{}", f.name()), "gauge", false),
        };
        let _ = writeln!(s, "# HELP {name} {}\n# TYPE {name} {kind}", f.help());
        for c in &cores {
            let v = c.snap.get(f);
            if seconds {
                let _ = writeln!(s, "{name}{{{}}} {}", labels(c), v as f64 / 1e9);
            } else {
                let _ = writeln!(s, "{name}{{{}}} {v}", labels(c));
            }
        }
    }
    let _ = writeln!(
        s,
        "# HELP megatcp_drops_by_reason_total Incoming frames dropped, by reason.\n\
         # TYPE megatcp_drops_by_reason_total counter"
    );
    for c in &cores {
        for (r, reason) in drop_reasons().iter().enumerate() {
            let _ = writeln!(
                s,
                "megatcp_drops_by_reason_total{{{},reason=\"{reason}\"}} {}",
                labels(c),
                c.snap.drops[r]
            );
        }
    }
    s
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// Starts the thread answering on `listener` until `stop`.
pub(crate) fn serve(
    listener: TcpListener,
    groups: Vec<Group>,
    who: Identity,
    stop: Arc<AtomicBool>,
) -> Result<JoinHandle<()>, LaunchError> {
    listener
        .set_nonblocking(true)
        .map_err(|e| LaunchError::Usage(format!("--metrics: {e}")))?;
    Ok(std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            match listener.accept() {
                Ok((conn, _)) => {
                    if let Err(e) = answer(conn, &groups, &who) {
                        tracing::debug!("metrics request: {e}");
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => {
                    tracing::warn!("metrics: accept failed: {e}");
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    }))
}

/// Reads one request (headers only, at most 8 KiB, 2 s) and answers it.
fn answer(mut conn: TcpStream, groups: &[Group], who: &Identity) -> std::io::Result<()> {
    conn.set_nonblocking(false)?;
    conn.set_read_timeout(Some(Duration::from_secs(2)))?;
    conn.set_write_timeout(Some(Duration::from_secs(2)))?;
    let mut buf = vec![0u8; 8192];
    let mut len = 0;
    let path = loop {
        let n = conn.read(&mut buf[len..])?;
        if n == 0 {
            return Ok(());
        }
        len += n;
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut req = httparse::Request::new(&mut headers);
        match req.parse(&buf[..len]) {
            Ok(httparse::Status::Complete(_)) => {
                break (req.method == Some("GET")).then(|| req.path.unwrap_or("").to_string());
            }
            Ok(httparse::Status::Partial) if len < buf.len() => continue,
            _ => break None,
        }
    };
    let (status, body) = match path.as_deref() {
        Some("/metrics") => ("200 OK", render(&sample(groups), who)),
        Some(_) => ("404 Not Found", "see /metrics\n".to_string()),
        None => ("400 Bad Request", "bad request\n".to_string()),
    };
    write!(
        conn,
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )?;
    conn.flush()
}
