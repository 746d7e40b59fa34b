//! The server side of a head-to-head, here or on another machine.
//!
//! One machine: [`Local`] starts each variant's server itself. Two machines: `megatcp-bench
//! --role server --control ADDR:PORT` waits for one client role on a control connection and
//! runs [`Local`] at its request; `megatcp-bench --role client --control ADDR:PORT` drives it
//! through [`Remote`] and writes the same report as the one-machine run. The control
//! protocol is one JSON object per line each way: a request (`{"op": "start", "variant":
//! "afxdp"}`, `sample`, `alive`, `stop`, `host`, `bye`) and its answer (`{"ok": ...}` or
//! `{"error": "..."}`).
//!
//! The control connection must not cross an interface a bypass server takes whole: the
//! afxdp variants leave the kernel its own addresses, but the dpdk variant (DPDK's
//! `net_af_xdp`) takes every frame of its queue.

use std::io::{BufRead, BufReader, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::plan::Variant;
use crate::procs::{self, Net, Server};

/// The server process's CPU time and its CPU's, at one moment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sample {
    /// utime + stime of the server process, in clock ticks.
    pub(crate) ticks: u64,
    /// (busy, total) clock ticks of the server's CPU.
    pub(crate) core: (u64, u64),
    /// Softirq clock ticks of the server's CPU.
    pub(crate) softirq: u64,
    /// A bypass server's engine time, from its published counters.
    pub(crate) engine: Option<EngineTime>,
}

/// The busy time of a bypass server's cores, as it published it last.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct EngineTime {
    /// Nanoseconds in turns that did work, all cores.
    pub(crate) busy_ns: u64,
    /// Nanoseconds counted at all (busy and idle), all cores.
    pub(crate) all_ns: u64,
    /// Cores counted.
    pub(crate) cores: u64,
}

/// Where the servers run.
pub(crate) trait ServerSide {
    /// Starts `variant`'s server (the previous one stopped) and waits until it serves.
    fn start(&mut self, variant: Variant) -> Result<(), String>;
    /// Whether the server still runs; when not, the end of its log.
    fn alive(&mut self) -> Result<(), String>;
    /// CPU times of the server now; `None` when there is no server or no reading.
    fn sample(&mut self) -> Option<Sample>;
    /// Stops the server (SIGTERM, then SIGKILL).
    fn stop(&mut self);
    /// The server machine, for the report.
    fn host(&mut self) -> String;
}

/// Servers on this machine.
pub(crate) struct Local {
    echo: PathBuf,
    dir: PathBuf,
    net: Net,
    server: Option<Server>,
}

impl Local {
    pub(crate) fn new(echo: &Path, dir: &Path, net: &Net) -> Local {
        Local {
            echo: echo.to_path_buf(),
            dir: dir.to_path_buf(),
            net: net.clone(),
            server: None,
        }
    }
}

impl ServerSide for Local {
    fn start(&mut self, variant: Variant) -> Result<(), String> {
        self.stop();
        self.server = Some(Server::start(&self.echo, variant, &self.dir, &self.net)?);
        Ok(())
    }

    fn alive(&mut self) -> Result<(), String> {
        let Some(s) = &mut self.server else {
            return Err("no server was started".into());
        };
        if s.alive() {
            return Ok(());
        }
        let why = s.log_tail();
        self.server = None;
        Err(why)
    }

    fn sample(&mut self) -> Option<Sample> {
        let pid = self.server.as_ref()?.pid();
        procs::sample_server(pid, self.net.server_cpu)
    }

    fn stop(&mut self) {
        if let Some(mut s) = self.server.take() {
            let t0 = Instant::now();
            s.stop();
            // Let the kernel tear the server's sockets down before the next one binds.
            std::thread::sleep(Duration::from_millis(300).saturating_sub(t0.elapsed()));
        }
    }

    fn host(&mut self) -> String {
        crate::host_info()
    }
}

/// The server role on another machine, over the control connection.
pub(crate) struct Remote {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    to: SocketAddr,
}

impl Remote {
    /// Connects to the server role at `to`, retrying for `patience` (it may still be
    /// starting).
    pub(crate) fn connect(to: SocketAddr, patience: Duration) -> Result<Remote, String> {
        let end = Instant::now() + patience;
        let stream = loop {
            match TcpStream::connect_timeout(&to, Duration::from_secs(2)) {
                Ok(s) => break s,
                Err(e) if Instant::now() > end => {
                    return Err(format!(
                        "control connection to the server role at {to}: {e} (is `megatcp-bench \
                         --role server --control {to}` running there?)"
                    ));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(200)),
            }
        };
        let _ = stream.set_nodelay(true);
        // A server start takes up to 10 s; a stop up to 5 s more.
        stream
            .set_read_timeout(Some(Duration::from_secs(30)))
            .map_err(|e| e.to_string())?;
        let writer = stream.try_clone().map_err(|e| e.to_string())?;
        Ok(Remote {
            reader: BufReader::new(stream),
            writer,
            to,
        })
    }

    /// Sends `request`; its answer's `ok` value, or its error.
    fn call(&mut self, request: Value) -> Result<Value, String> {
        let lost = |e: std::io::Error| format!("control connection to {}: {e}", self.to);
        let mut line = request.to_string();
        line.push('\n');
        self.writer.write_all(line.as_bytes()).map_err(lost)?;
        let mut answer = String::new();
        let n = self.reader.read_line(&mut answer).map_err(lost)?;
        if n == 0 {
            return Err(format!(
                "the server role at {} closed the control connection",
                self.to
            ));
        }
        let v: Value = serde_json::from_str(&answer)
            .map_err(|e| format!("bad answer from the server role ({e}): {answer:?}"))?;
        match (v.get("ok"), v.get("error")) {
            (Some(ok), None) => Ok(ok.clone()),
            (_, Some(e)) => Err(e.as_str().unwrap_or("unknown error").to_string()),
            _ => Err(format!("bad answer from the server role: {answer:?}")),
        }
    }

    /// Tells the server role that the run is over (it stops its server and exits).
    pub(crate) fn bye(mut self) {
        let _ = self.call(json!({"op": "bye"}));
    }
}

impl ServerSide for Remote {
    fn start(&mut self, variant: Variant) -> Result<(), String> {
        self.call(json!({"op": "start", "variant": variant.name()}))
            .map(|_| ())
    }

    fn alive(&mut self) -> Result<(), String> {
        self.call(json!({"op": "alive"})).map(|_| ())
    }

    fn sample(&mut self) -> Option<Sample> {
        let v = self.call(json!({"op": "sample"})).ok()?;
        let engine = v.get("engine").and_then(|e| {
            Some(EngineTime {
                busy_ns: e["busy_ns"].as_u64()?,
                all_ns: e["all_ns"].as_u64()?,
                cores: e["cores"].as_u64()?,
            })
        });
        Some(Sample {
            ticks: v["ticks"].as_u64()?,
            core: (v["busy"].as_u64()?, v["total"].as_u64()?),
            softirq: v["softirq"].as_u64().unwrap_or(0),
            engine,
        })
    }

    fn stop(&mut self) {
        let _ = self.call(json!({"op": "stop"}));
    }

    fn host(&mut self) -> String {
        self.call(json!({"op": "host"}))
            .ok()
            .and_then(|v| v.as_str().map(str::to_string))
            .unwrap_or_else(|| "unknown".into())
    }
}

/// What the server role answers to one request line: the answer, and whether the session
/// is over.
pub(crate) fn answer(side: &mut dyn ServerSide, line: &str) -> (Value, bool) {
    let request: Value = match serde_json::from_str(line) {
        Ok(v) => v,
        Err(e) => {
            return (
                json!({"error": format!("bad request ({e}): {line:?}")}),
                false,
            );
        }
    };
    let reply = |r: Result<Value, String>| match r {
        Ok(v) => json!({"ok": v}),
        Err(e) => json!({"error": e}),
    };
    match request["op"].as_str() {
        Some("start") => {
            let variant = request["variant"]
                .as_str()
                .and_then(|n| <Variant as clap::ValueEnum>::from_str(n, false).ok());
            match variant {
                Some(v) => (reply(side.start(v).map(|()| Value::Null)), false),
                None => (
                    json!({"error": format!("unknown variant in {request}")}),
                    false,
                ),
            }
        }
        Some("alive") => (reply(side.alive().map(|()| Value::Null)), false),
        Some("sample") => (
            reply(
                side.sample()
                    .map(|s| {
                        let mut v = json!({"ticks": s.ticks, "busy": s.core.0,
                            "total": s.core.1, "softirq": s.softirq});
                        if let Some(e) = s.engine {
                            v["engine"] = json!({"busy_ns": e.busy_ns, "all_ns": e.all_ns,
                                "cores": e.cores});
                        }
                        v
                    })
                    .ok_or_else(|| "no server to sample".to_string()),
            ),
            false,
        ),
        Some("stop") => {
            side.stop();
            (json!({"ok": null}), false)
        }
        Some("host") => (json!({"ok": side.host()}), false),
        Some("bye") => {
            side.stop();
            (json!({"ok": null}), true)
        }
        _ => (
            json!({"error": format!("unknown request {request}")}),
            false,
        ),
    }
}

/// The server role: waits on `listen` for one client role and serves its requests with
/// servers on this machine until it says bye or goes away.
pub(crate) fn serve(echo: &Path, dir: &Path, net: &Net, listen: SocketAddr) -> Result<(), String> {
    let listener =
        TcpListener::bind(listen).map_err(|e| format!("control address {listen}: {e}"))?;
    println!("megatcp-bench: server role waiting for the client role on {listen}");
    let (stream, peer) = listener
        .accept()
        .map_err(|e| format!("control connection: {e}"))?;
    println!("megatcp-bench: client role connected from {peer}");
    let mut writer = stream.try_clone().map_err(|e| e.to_string())?;
    let mut side = Local::new(echo, dir, net);
    for line in BufReader::new(stream).lines() {
        let Ok(line) = line else { break };
        let (answer, last) = answer(&mut side, &line);
        let mut text = answer.to_string();
        text.push('\n');
        if writer.write_all(text.as_bytes()).is_err() || last {
            break;
        }
    }
    side.stop();
    println!("megatcp-bench: server role done");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A server side that records what it was asked.
    #[derive(Default)]
    struct Recorder(Vec<String>);

    impl ServerSide for Recorder {
        fn start(&mut self, variant: Variant) -> Result<(), String> {
            self.0.push(format!("start {}", variant.name()));
            if variant == Variant::Dpdk {
                return Err("no DPDK here".into());
            }
            Ok(())
        }
        fn alive(&mut self) -> Result<(), String> {
            Ok(())
        }
        fn sample(&mut self) -> Option<Sample> {
            Some(Sample {
                ticks: 7,
                core: (3, 10),
                softirq: 2,
                engine: Some(EngineTime {
                    busy_ns: 5,
                    all_ns: 9,
                    cores: 1,
                }),
            })
        }
        fn stop(&mut self) {
            self.0.push("stop".into());
        }
        fn host(&mut self) -> String {
            "h".into()
        }
    }

    #[test]
    fn requests_get_answers_and_bad_ones_errors() {
        let mut r = Recorder::default();
        let (a, end) = answer(&mut r, r#"{"op":"start","variant":"afxdp-rst"}"#);
        assert_eq!((a, end), (json!({"ok": null}), false));
        let (a, _) = answer(&mut r, r#"{"op":"start","variant":"dpdk"}"#);
        assert_eq!(a, json!({"error": "no DPDK here"}));
        let (a, _) = answer(&mut r, r#"{"op":"sample"}"#);
        assert_eq!(
            a,
            json!({"ok": {"ticks": 7, "busy": 3, "total": 10, "softirq": 2,
                "engine": {"busy_ns": 5, "all_ns": 9, "cores": 1}}})
        );
        for bad in [
            r#"{"op":"start","variant":"nope"}"#,
            r#"{"op":"x"}"#,
            "not json",
        ] {
            let (a, end) = answer(&mut r, bad);
            assert!(a.get("error").is_some() && !end, "{bad}: {a}");
        }
        let (a, end) = answer(&mut r, r#"{"op":"bye"}"#);
        assert_eq!((a, end), (json!({"ok": null}), true));
        assert_eq!(r.0, ["start afxdp-rst", "start dpdk", "stop"]);
    }
}
