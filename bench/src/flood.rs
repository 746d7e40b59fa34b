//! `megatcp-bench flood`: the SYN-flood benchmark on the testbed. The AF_XDP echo server
//! (CPU 0) serves established connections and new clients while `megatcp-bench synflood`
//! sends it spoofed SYNs at each of several rates, the no-flood baseline (rate 0) included,
//! in one run: per phase a fresh server, then for `--secs` seconds
//!
//! * established: `megatcp-echo load` over the kernel (epoll), 64 persistent connections,
//!   64 B, open loop at `--established-rate` (or closed loop): the established echo
//!   throughput;
//! * new clients: `megatcp-echo load` over the kernel, one transaction per connection at
//!   500 connections/s (open loop): each connection's connect time, from `connect` to its
//!   completion;
//! * the flood (`--sources`, at the rate, or as fast as the sender goes for `max`), started
//!   half a second before both so that the backlog is full of half-open entries.
//!
//! Everything on the client side shares CPU 1. Phases go through the rates in order, then
//! in reverse on the next trial (drift cancels); the report gives medians over trials and
//! checks the issue's targets at every rate: new clients' p99 connect time <= 10 ms, and
//! established throughput >= 80 % of the no-flood figure.
//!
//! ```text
//! megatcp-bench flood                              # rates 0,20000,50000,100000,max; 3 trials
//! megatcp-bench flood --rates 0,max --trials 5 --secs 5 --out flood/
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use clap::Args;
use serde::Serialize;

use crate::plan::Variant;
use crate::procs::{self, Job};

/// The flags of `megatcp-bench flood`.
#[derive(Args, Debug, Clone)]
pub(crate) struct FloodArgs {
    /// Flood rates in SYNs per second: numbers, 0 (no flood: the baseline) and `max` (as
    /// fast as the sender goes).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,20000,50000,100000,max"
    )]
    rates: Vec<FloodRate>,
    /// Trials per rate.
    #[arg(long, default_value_t = 3)]
    trials: usize,
    /// Measured time per phase (`4s`; a bare number is seconds).
    #[arg(long, default_value = "4s", value_parser = megatcp_launch::duration::parse_secs)]
    secs: f64,
    /// Offered load of the established connections, transactions per second (open loop);
    /// 0: closed loop, as fast as the client goes. On a machine where the client side
    /// shares one CPU with the flood, a closed loop measures that CPU, not the server: the
    /// default offers a load the client side sustains while the flood runs.
    #[arg(long, default_value_t = 30_000.0)]
    established_rate: f64,
    /// Spoofed source addresses of the flood (see `synflood --sources`).
    #[arg(long, default_value = "10.77.0.100-10.77.0.199")]
    sources: String,
    /// Report directory (default: a new timestamped directory under target/megatcp-bench/).
    #[arg(long)]
    pub(crate) out: Option<PathBuf>,
    #[command(flatten)]
    pub(crate) paths: crate::Paths,
}

/// A flood rate: SYNs per second, or as fast as the sender goes.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum FloodRate {
    /// This many SYNs per second (0: no flood).
    Rate(f64),
    /// As fast as the sender goes.
    Max,
}

/// As in `--rates`: a number, or `"max"`.
impl Serialize for FloodRate {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            FloodRate::Rate(r) => s.serialize_f64(*r),
            FloodRate::Max => s.serialize_str("max"),
        }
    }
}

impl std::str::FromStr for FloodRate {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        if s.trim() == "max" {
            return Ok(FloodRate::Max);
        }
        s.trim()
            .parse::<f64>()
            .ok()
            .filter(|r| r.is_finite() && *r >= 0.0)
            .map(FloodRate::Rate)
            .ok_or_else(|| format!("bad rate {s:?}: SYNs per second, or max"))
    }
}

impl std::fmt::Display for FloodRate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            FloodRate::Rate(r) if *r == 0.0 => write!(f, "none"),
            FloodRate::Rate(r) => write!(f, "{r:.0}/s"),
            FloodRate::Max => write!(f, "max"),
        }
    }
}

impl FloodRate {
    fn is_flood(self) -> bool {
        self != FloodRate::Rate(0.0)
    }
}

/// One phase: one rate, one trial.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Phase {
    pub(crate) rate: FloodRate,
    pub(crate) trial: usize,
    /// Why the phase failed, if it did.
    pub(crate) error: Option<String>,
    /// SYNs per second the sender achieved (0 without flood).
    pub(crate) flood_sent_per_sec: f64,
    /// SYN cookies the server sent (SYN-ACKs to SYNs beyond its full backlog) over the SYNs
    /// the sender sent: the share of the flood the server took in and answered (the rest
    /// was dropped on the way in, its receive ring full). NaN without flood.
    pub(crate) flood_answered: f64,
    /// Established connections: transactions per second and errors.
    pub(crate) established_txns_per_sec: f64,
    pub(crate) established_errors: u64,
    /// New clients: connections per second, connect-time percentiles (µs), errors.
    pub(crate) new_conns_per_sec: f64,
    pub(crate) connect_p50_us: f64,
    pub(crate) connect_p99_us: f64,
    pub(crate) connect_p999_us: f64,
    pub(crate) new_errors: u64,
    /// Busy share of the server's CPU and of the client side's CPU over the phase.
    pub(crate) server_core: f64,
    pub(crate) client_core: f64,
}

impl Phase {
    fn failed(rate: FloodRate, trial: usize, error: String) -> Self {
        Phase {
            rate,
            trial,
            error: Some(error),
            flood_sent_per_sec: f64::NAN,
            flood_answered: f64::NAN,
            established_txns_per_sec: f64::NAN,
            established_errors: 0,
            new_conns_per_sec: f64::NAN,
            connect_p50_us: f64::NAN,
            connect_p99_us: f64::NAN,
            connect_p999_us: f64::NAN,
            new_errors: 0,
            server_core: f64::NAN,
            client_core: f64::NAN,
        }
    }
}

const ESTABLISHED_CONNS: &str = "64";
const NEW_CONNS_PER_SEC: &str = "500";
const WARMUP: f64 = 0.5;
/// The new clients measure the server's connect time: they run ahead of the other
/// processes on CPU 1 (the established load spins between its scheduled requests), so that
/// waiting for that CPU stays out of the figure as much as it can.
const NEW_CLIENTS_NICE: i32 = -10;

fn errors(report: &serde_json::Value) -> u64 {
    report["errors"].as_object().map_or(0, |o| {
        o.values().filter_map(serde_json::Value::as_u64).sum()
    })
}

/// `megatcp-echo load` over epoll in the client namespace against the AF_XDP server, at
/// niceness `nice`.
fn load(echo: &Path, secs: f64, nice: i32, extra: &[&str]) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", procs::CLI_NS])
        .args(["nice", "-n", &nice.to_string()])
        .arg(echo)
        .args([
            "load",
            "--json",
            "--backend",
            "epoll",
            "--cores",
            procs::CLIENT_CPU,
        ])
        .args([
            "--connect",
            &format!("{}:{}", procs::SRV_BYPASS_IP, procs::PORT),
        ])
        .args(["--msg-size", "64", "--warmup", &format!("{WARMUP}s")])
        .args(["--duration", &format!("{secs}s")])
        .args(extra);
    cmd
}

/// Runs one phase against a fresh server.
fn phase(
    echo: &Path,
    me: &Path,
    out: &Path,
    args: &FloodArgs,
    rate: FloodRate,
    trial: usize,
) -> Result<Phase, String> {
    let mut server = procs::Server::start(echo, Variant::Afxdp, out, &procs::Net::default())?;
    let flood = if rate.is_flood() {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", procs::CLI_NS])
            .arg(me)
            .args(["synflood", "--json", "--iface", procs::CLI_IF])
            .args([
                "--target",
                &format!("{}:{}", procs::SRV_BYPASS_IP, procs::PORT),
            ])
            .args(["--sources", &args.sources, "--cpu", procs::CLIENT_CPU])
            .args(["--duration", &format!("{}s", args.secs + WARMUP + 1.5)]);
        if let FloodRate::Rate(r) = rate {
            cmd.args(["--rate", &r.to_string()]);
        }
        let job = Job::spawn(&mut cmd, "the SYN flood")?;
        std::thread::sleep(Duration::from_millis(500));
        Some(job)
    } else {
        None
    };
    let offered = args.established_rate.to_string();
    let mut est_args = vec!["--connections", ESTABLISHED_CONNS];
    if args.established_rate > 0.0 {
        est_args.extend(["--rate", &offered]);
    }
    let established = Job::spawn(
        &mut load(echo, args.secs, 0, &est_args),
        "the established load",
    )?;
    let new = Job::spawn(
        &mut load(
            echo,
            args.secs,
            NEW_CLIENTS_NICE,
            &[
                "--connections",
                "8",
                "--txns-per-conn",
                "1",
                "--rate",
                NEW_CONNS_PER_SEC,
            ],
        ),
        "the new clients",
    )?;
    // The CPUs' busy time over the measured window.
    std::thread::sleep(Duration::from_secs_f64(WARMUP));
    let k0 = procs::core_times();
    let t0 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(args.secs));
    let k1 = procs::core_times();
    let limit = Duration::from_secs_f64(args.secs + 20.0);
    let est = established.finish(limit);
    let new = new.finish(limit);
    let flood = flood.map(|f| f.finish(limit));
    server.stop();
    let (est, new) = (est?, new?);
    let (sent, sent_total) = match flood {
        Some(f) => {
            let f = f?;
            (
                f["rate"].as_f64().unwrap_or(f64::NAN),
                f["sent"].as_f64().unwrap_or(f64::NAN),
            )
        }
        None => (0.0, f64::NAN),
    };
    let cookies = syn_cookies_sent(&server.log()).map_or(f64::NAN, |c| c as f64);
    let [server_core, client_core] = match (k0, k1) {
        (Some(a), Some(b)) if t0.elapsed() > Duration::ZERO => procs::busy_shares(&a, &b),
        _ => [f64::NAN; 2],
    };
    let num = |v: &serde_json::Value| v.as_f64().unwrap_or(f64::NAN);
    Ok(Phase {
        rate,
        trial,
        error: None,
        flood_sent_per_sec: sent,
        flood_answered: cookies / sent_total,
        established_txns_per_sec: num(&est["txns_per_sec"]),
        established_errors: errors(&est),
        new_conns_per_sec: num(&new["conns_per_sec"]),
        connect_p50_us: num(&new["connect"]["p50_us"]),
        connect_p99_us: num(&new["connect"]["p99_us"]),
        connect_p999_us: num(&new["connect"]["p999_us"]),
        new_errors: errors(&new),
        server_core,
        client_core,
    })
}

/// The SYN cookies a server sent, from its per-core lines ("... syn cookies ACCEPTED/SENT").
fn syn_cookies_sent(log: &str) -> Option<u64> {
    const KEY: &str = "syn cookies ";
    let mut total = None;
    for line in log.lines().filter(|l| l.starts_with("core ")) {
        if let Some(at) = line.find(KEY) {
            let n: u64 = line[at + KEY.len()..]
                .split(['/', ',', ' '])
                .nth(1)
                .and_then(|t| t.parse().ok())?;
            total = Some(total.unwrap_or(0) + n);
        }
    }
    total
}

/// The medians of one rate's phases.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct RateSummary {
    pub(crate) rate: FloodRate,
    pub(crate) trials_ok: usize,
    pub(crate) flood_sent_per_sec: f64,
    pub(crate) flood_answered: f64,
    pub(crate) established_txns_per_sec: f64,
    /// Established throughput over the no-flood figure's.
    pub(crate) throughput_ratio: f64,
    pub(crate) connect_p50_us: f64,
    pub(crate) connect_p99_us: f64,
    pub(crate) new_conns_per_sec: f64,
    pub(crate) errors: u64,
    pub(crate) server_core: f64,
    pub(crate) client_core: f64,
    /// Whether both targets hold (p99 connect <= 10 ms, ratio >= 0.8).
    pub(crate) pass: bool,
}

fn median(v: Vec<f64>) -> f64 {
    crate::report::stat(v).map_or(f64::NAN, |s| s.median)
}

/// Connect time target, µs.
const P99_TARGET_US: f64 = 10_000.0;
/// Established throughput target, share of the no-flood figure.
const RATIO_TARGET: f64 = 0.8;

pub(crate) fn summarize(rates: &[FloodRate], phases: &[Phase]) -> Vec<RateSummary> {
    let ok = |r: FloodRate| {
        phases
            .iter()
            .filter(move |p| p.rate == r && p.error.is_none())
    };
    let med = |r: FloodRate, f: fn(&Phase) -> f64| median(ok(r).map(f).collect());
    let base = med(FloodRate::Rate(0.0), |p| p.established_txns_per_sec);
    rates
        .iter()
        .map(|&r| {
            let est = med(r, |p| p.established_txns_per_sec);
            let ratio = est / base;
            let p99 = med(r, |p| p.connect_p99_us);
            let errors = ok(r).map(|p| p.established_errors + p.new_errors).sum();
            RateSummary {
                rate: r,
                trials_ok: ok(r).count(),
                flood_sent_per_sec: med(r, |p| p.flood_sent_per_sec),
                flood_answered: med(r, |p| p.flood_answered),
                established_txns_per_sec: est,
                throughput_ratio: ratio,
                connect_p50_us: med(r, |p| p.connect_p50_us),
                connect_p99_us: p99,
                new_conns_per_sec: med(r, |p| p.new_conns_per_sec),
                errors,
                server_core: med(r, |p| p.server_core),
                client_core: med(r, |p| p.client_core),
                pass: p99 <= P99_TARGET_US && ratio >= RATIO_TARGET,
            }
        })
        .collect()
}

/// The Markdown summary.
pub(crate) fn markdown(args: &FloodArgs, started: &str, rows: &[RateSummary]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# megatcp-bench flood: SYN flood against the AF_XDP server\n"
    );
    let _ = writeln!(
        s,
        "{started} · {} trial(s) of {} s per rate · {}\n",
        args.trials,
        args.secs,
        crate::host_info()
    );
    let _ = writeln!(
        s,
        "Server: `megatcp-echo serve --backend afxdp` on CPU 0 (fresh per phase). On CPU 1, \
         in namespace megatcp-cli: the established load (epoll, {ESTABLISHED_CONNS} persistent \
         connections, 64 B, {}), new clients (epoll, one 64 B transaction per \
         connection, {NEW_CONNS_PER_SEC} connections/s) and `megatcp-bench synflood` \
         (spoofed SYNs from {}). Medians over trials. Answered: the server's SYN cookies \
         over the SYNs sent (the rest was dropped before the server, its receive ring full). \
         Targets: new clients' p99 connect time <= 10 ms; established throughput >= 80 % of \
         the no-flood figure.\n",
        if args.established_rate > 0.0 {
            format!("open loop at {:.0} transactions/s", args.established_rate)
        } else {
            "closed loop".to_string()
        },
        args.sources
    );
    let _ = writeln!(
        s,
        "| flood (offered) | SYNs sent/s | answered | established txn/s | vs no flood | \
         connect p50 ms | connect p99 ms | new conn/s | errors | CPU 0 / CPU 1 busy | targets |"
    );
    let _ = writeln!(s, "|{}", "---|".repeat(11));
    for r in rows {
        let verdict = if r.trials_ok == 0 {
            "FAILED".to_string()
        } else if r.pass {
            "PASS".to_string()
        } else {
            let mut why = Vec::new();
            if r.connect_p99_us.is_nan() || r.connect_p99_us > P99_TARGET_US {
                why.push("p99 connect");
            }
            if r.throughput_ratio.is_nan() || r.throughput_ratio < RATIO_TARGET {
                why.push("throughput");
            }
            format!("MISS ({})", why.join(", "))
        };
        let _ = writeln!(
            s,
            "| {} | {:.0} | {} | {:.0} | {:.0} % | {:.2} | {:.2} | {:.0} | {} | {:.0} % / {:.0} % | {} |",
            r.rate,
            r.flood_sent_per_sec,
            if r.flood_answered.is_finite() {
                format!("{:.0} %", r.flood_answered * 100.0)
            } else {
                "-".into()
            },
            r.established_txns_per_sec,
            r.throughput_ratio * 100.0,
            r.connect_p50_us / 1e3,
            r.connect_p99_us / 1e3,
            r.new_conns_per_sec,
            r.errors,
            r.server_core * 100.0,
            r.client_core * 100.0,
            verdict
        );
    }
    let passing = rows
        .iter()
        .filter(|r| r.rate.is_flood() && r.pass)
        .map(|r| r.flood_sent_per_sec)
        .fold(f64::NAN, f64::max);
    let top = rows
        .iter()
        .map(|r| r.flood_sent_per_sec)
        .fold(f64::NAN, f64::max);
    let _ = writeln!(
        s,
        "\nHighest flood rate sent: {top:.0} SYN/s; highest with both targets met: {}.",
        if passing.is_nan() {
            "none".to_string()
        } else {
            format!("{passing:.0} SYN/s")
        }
    );
    s
}

/// Runs the benchmark and writes the report.
pub(crate) fn run(args: &FloodArgs) -> Result<(), String> {
    if !crate::is_root() {
        return Err("the flood benchmark needs root (namespaces, AF_XDP, raw sockets)".into());
    }
    if !(args.secs > 0.0 && args.secs <= 600.0) {
        return Err(format!("--secs {}: must be within (0, 600]", args.secs));
    }
    if !args.rates.contains(&FloodRate::Rate(0.0)) {
        return Err("--rates must include 0, the no-flood baseline".into());
    }
    let (echo, repo) = (crate::echo_bin(&args.paths)?, args.paths.repo.find()?);
    let me = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
    let started = crate::timestamp();
    let out = args.out.clone().unwrap_or_else(|| {
        repo.join("target/megatcp-bench")
            .join(format!("flood-{started}"))
    });
    std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
    let was_up = crate::testbed_is_up();
    crate::testbed(&repo, "up")?;
    let mut phases = Vec::new();
    for trial in 0..args.trials.max(1) {
        let mut order = args.rates.clone();
        if trial % 2 == 1 {
            order.reverse();
        }
        for rate in order {
            eprintln!("flood {rate}, trial {}", trial + 1);
            let p = phase(&echo, &me, &out, args, rate, trial)
                .unwrap_or_else(|e| Phase::failed(rate, trial, e));
            if let Some(e) = &p.error {
                eprintln!("  failed: {e}");
            }
            phases.push(p);
            // Let the kernel tear the phase's sockets down.
            std::thread::sleep(Duration::from_millis(300));
        }
    }
    if !was_up {
        crate::testbed(&repo, "down")?;
    }
    let rows = summarize(&args.rates, &phases);
    let md = markdown(args, &started, &rows);
    let write = |name: &str, text: String| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("flood.md", md.clone())?;
    write(
        "flood-phases.json",
        serde_json::to_string_pretty(&phases).map_err(|e| e.to_string())?,
    )?;
    write(
        "flood-summary.json",
        serde_json::to_string_pretty(&rows).map_err(|e| e.to_string())?,
    )?;
    println!("{md}");
    println!("report: {}", out.display());
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phase(rate: FloodRate, est: f64, p99: f64) -> Phase {
        Phase {
            established_txns_per_sec: est,
            connect_p99_us: p99,
            error: None,
            ..Phase::failed(rate, 0, String::new())
        }
    }

    #[test]
    fn syn_cookies_are_read_off_the_server_lines() {
        let log = "libxdp: x\ncore 0: rx 5 frames, syn cookies 4/123, challenge acks 0, x\n\
                   core 0: accepted 4 echoed 256 B\ncore 1: syn cookies 0/7, challenge acks 1\n";
        assert_eq!(syn_cookies_sent(log), Some(130));
        assert_eq!(syn_cookies_sent("core 0: Epoll channel: commands 5"), None);
    }

    #[test]
    fn rates_parse() {
        assert_eq!("max".parse::<FloodRate>(), Ok(FloodRate::Max));
        assert_eq!("20000".parse::<FloodRate>(), Ok(FloodRate::Rate(20000.0)));
        assert!("-1".parse::<FloodRate>().is_err());
        assert!("fast".parse::<FloodRate>().is_err());
    }

    #[test]
    fn targets_compare_each_rate_with_the_no_flood_baseline() {
        let (none, r, max) = (FloodRate::Rate(0.0), FloodRate::Rate(1e4), FloodRate::Max);
        let phases = vec![
            phase(none, 100.0, 500.0),
            phase(none, 120.0, 600.0),
            phase(r, 90.0, 2_000.0),
            phase(r, 100.0, 3_000.0),
            phase(max, 50.0, 2_000.0),
            phase(max, 120.0, 1e6),
            Phase::failed(max, 2, "x".into()),
        ];
        let rows = summarize(&[none, r, max], &phases);
        assert_eq!(rows[0].throughput_ratio, 1.0);
        assert!(rows[0].pass);
        assert!((rows[1].throughput_ratio - 95.0 / 110.0).abs() < 1e-9);
        assert!(rows[1].pass);
        assert_eq!(rows[2].trials_ok, 2);
        assert!(!rows[2].pass, "p99 {}", rows[2].connect_p99_us);
    }
}
