//! The report: every trial (CSV and JSON), medians with min-max per point and variant, the
//! Markdown summary with ratios and the targets.

use std::fmt::Write as _;
use std::path::Path;

use serde::Serialize;

use crate::cpu::{Basis, CpuStats, CpuUse};
use crate::plan::{Close, Point, Sweep, Variant};

/// One trial of one point on one variant: measured, or failed with its error.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Trial {
    pub(crate) variant: Variant,
    #[serde(flatten)]
    pub(crate) point: Point,
    pub(crate) x: String,
    /// How the client closed the connections.
    pub(crate) close: Close,
    pub(crate) trial: usize,
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) txns_per_sec: f64,
    pub(crate) conns_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) p999_us: f64,
    /// Errors the load generator counted (verification, resets, ...).
    pub(crate) load_errors: u64,
    #[serde(flatten)]
    pub(crate) cpu: CpuUse,
    /// The server's CPU time per transaction, in microseconds (see [`crate::cpu::ServerWork`]).
    pub(crate) server_us_per_txn: f64,
    /// How the server's CPU time was measured.
    pub(crate) server_cost: Basis,
}

impl Trial {
    pub(crate) fn failed(variant: Variant, point: Point, trial: usize, error: String) -> Self {
        Self {
            variant,
            x: point.x_label(),
            close: variant.close(&point),
            point,
            trial,
            ok: false,
            error: Some(error),
            txns_per_sec: f64::NAN,
            conns_per_sec: f64::NAN,
            p50_us: f64::NAN,
            p99_us: f64::NAN,
            p999_us: f64::NAN,
            load_errors: 0,
            cpu: CpuUse::default(),
            server_us_per_txn: f64::NAN,
            server_cost: Basis::None,
        }
    }

    /// From the load generator's JSON report. A run with verification errors is a failure.
    pub(crate) fn measured(
        variant: Variant,
        point: Point,
        trial: usize,
        run: &crate::procs::LoadRun,
    ) -> Self {
        let r = &run.report;
        let num = |k: &str| {
            r.get(k)
                .and_then(serde_json::Value::as_f64)
                .unwrap_or(f64::NAN)
        };
        let load_errors = r
            .get("errors")
            .and_then(serde_json::Value::as_object)
            .map(|o| o.values().filter_map(serde_json::Value::as_u64).sum())
            .unwrap_or(0);
        let verify = r
            .get("errors")
            .and_then(|e| e.get("verify"))
            .and_then(serde_json::Value::as_u64)
            .unwrap_or(0);
        let mut t = Self {
            variant,
            x: point.x_label(),
            close: variant.close(&point),
            point,
            trial,
            ok: true,
            error: None,
            txns_per_sec: num("txns_per_sec"),
            conns_per_sec: num("conns_per_sec"),
            p50_us: num("p50_us"),
            p99_us: num("p99_us"),
            p999_us: num("p999_us"),
            load_errors,
            cpu: run.cpu,
            server_us_per_txn: run.work.us_per_txn(num("txns_per_sec")),
            server_cost: run.work.basis,
        };
        if verify > 0 {
            t.ok = false;
            t.error = Some(format!("{verify} echoed messages failed verification"));
        } else if t.txns_per_sec.is_nan() || t.txns_per_sec <= 0.0 {
            t.ok = false;
            t.error = Some("no transaction completed".into());
        }
        t
    }
}

/// Median, min and max of the successful trials of a cell.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct Stat {
    pub(crate) median: f64,
    pub(crate) min: f64,
    pub(crate) max: f64,
    pub(crate) n: usize,
}

pub(crate) fn stat(mut v: Vec<f64>) -> Option<Stat> {
    v.retain(|x| x.is_finite());
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let median = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        median,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// The trials of one point on one variant, summarised.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cell {
    pub(crate) variant: Variant,
    pub(crate) point: Point,
    pub(crate) x: String,
    /// How the client closed the connections.
    pub(crate) close: Close,
    pub(crate) txns_per_sec: Option<Stat>,
    pub(crate) p50_us: Option<Stat>,
    pub(crate) p99_us: Option<Stat>,
    pub(crate) p999_us: Option<Stat>,
    #[serde(flatten)]
    pub(crate) cpu: CpuStats,
    /// The server's CPU time per transaction (µs).
    pub(crate) server_us_per_txn: Option<Stat>,
    /// Errors of the failed trials.
    pub(crate) errors: Vec<String>,
}

impl Cell {
    /// Which side ran out of CPU (see [`CpuStats::saturated`]).
    pub(crate) fn saturated(&self) -> &'static str {
        self.cpu.saturated()
    }
}

/// Every point of `points` on every variant that runs there, summarised, in plan order.
pub(crate) fn cells(trials: &[Trial], variants: &[Variant], points: &[Point]) -> Vec<Cell> {
    let mut out = Vec::new();
    for p in points {
        for &v in variants.iter().filter(|v| v.runs(p)) {
            let these: Vec<&Trial> = trials
                .iter()
                .filter(|t| t.variant == v && t.point == *p)
                .collect();
            let ok: Vec<&&Trial> = these.iter().filter(|t| t.ok).collect();
            let get = |f: fn(&Trial) -> f64| stat(ok.iter().map(|t| f(t)).collect());
            let mut errors: Vec<String> = these.iter().filter_map(|t| t.error.clone()).collect();
            errors.dedup();
            out.push(Cell {
                variant: v,
                point: *p,
                x: p.x_label(),
                close: v.close(p),
                txns_per_sec: get(|t| t.txns_per_sec),
                p50_us: get(|t| t.p50_us),
                p99_us: get(|t| t.p99_us),
                p999_us: get(|t| t.p999_us),
                cpu: CpuStats::of(&ok.iter().map(|t| t.cpu).collect::<Vec<_>>()),
                server_us_per_txn: get(|t| t.server_us_per_txn),
                errors,
            });
        }
    }
    out
}

/// Writes `trials.csv`.
pub(crate) fn write_csv(path: &Path, trials: &[Trial]) -> std::io::Result<()> {
    let mut s = format!(
        "variant,client,sweep,x,txns_per_conn,msg_size,connections,rate,trial,ok,txns_per_sec,\
         conns_per_sec,p50_us,p99_us,p999_us,load_errors,{},server_us_per_txn,server_cost,close,\
         error\n",
        CpuUse::CSV_HEADER
    );
    for t in trials {
        let p = &t.point;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{},{:.1},{:.1},{:.2},{:.2},{:.2},{},{},{:.3},{},{},{}",
            t.variant.name(),
            p.client.name(),
            p.sweep.name(),
            csv_field(&t.x),
            p.txns_per_conn,
            p.msg_size,
            p.connections,
            p.rate.map(|r| r.to_string()).unwrap_or_default(),
            t.trial,
            t.ok,
            t.txns_per_sec,
            t.conns_per_sec,
            t.p50_us,
            t.p99_us,
            t.p999_us,
            t.load_errors,
            t.cpu.csv(),
            t.server_us_per_txn,
            t.server_cost.name(),
            t.close.name(),
            csv_field(t.error.as_deref().unwrap_or("")),
        );
    }
    std::fs::write(path, s)
}

pub(crate) fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\"").replace('\n', " "))
    } else {
        s.to_string()
    }
}

pub(crate) fn kilo(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e3 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

pub(crate) fn pct(s: Option<Stat>) -> String {
    s.map_or("-".into(), |s| format!("{:.0}%", s.median * 100.0))
}

fn cell_text(c: &Cell) -> String {
    match c.txns_per_sec {
        Some(s) => format!(
            "{} [{}–{}] {}",
            kilo(s.median),
            kilo(s.min),
            kilo(s.max),
            c.cpu.text()
        ),
        None => "FAILED".into(),
    }
}

fn find(cells: &[Cell], v: Variant, pred: impl Fn(&Point) -> bool) -> Option<&Cell> {
    cells.iter().find(|c| c.variant == v && pred(&c.point))
}

/// `a`'s median of `what` over `b`'s, at the point `pred` selects.
fn median_ratio(
    cells: &[Cell],
    a: Variant,
    b: Variant,
    pred: impl Fn(&Point) -> bool + Copy,
    what: fn(&Cell) -> Option<Stat>,
) -> Option<f64> {
    let x = what(find(cells, a, pred)?)?.median;
    let y = what(find(cells, b, pred)?)?.median;
    (y > 0.0).then_some(x / y)
}

/// `a`'s transactions/s over `b`'s.
fn ratio(
    cells: &[Cell],
    a: Variant,
    b: Variant,
    pred: impl Fn(&Point) -> bool + Copy,
) -> Option<f64> {
    median_ratio(cells, a, b, pred, |c| c.txns_per_sec)
}

/// How many times `a`'s server CPU per transaction `b`'s is (`b`'s cost over `a`'s).
fn cost_ratio(
    cells: &[Cell],
    a: Variant,
    b: Variant,
    pred: impl Fn(&Point) -> bool + Copy,
) -> Option<f64> {
    median_ratio(cells, b, a, pred, |c| c.server_us_per_txn)
}

fn us_text(c: &Cell) -> String {
    match c.server_us_per_txn {
        Some(s) if s.median >= 10.0 => format!("{:.0} [{:.0}–{:.0}]", s.median, s.min, s.max),
        Some(s) => format!("{:.2} [{:.2}–{:.2}]", s.median, s.min, s.max),
        None => "-".into(),
    }
}

/// A target: `afxdp >= factor x other` at the points `pred` selects.
pub(crate) struct Target {
    pub(crate) text: String,
    pub(crate) ratio: Option<f64>,
    pub(crate) factor: f64,
}

impl Target {
    pub(crate) fn verdict(&self) -> String {
        match self.ratio {
            Some(r) if r >= self.factor => format!("PASS ({r:.2}x)"),
            Some(r) => format!(
                "MISS ({r:.2}x, {:.0}% short)",
                (1.0 - r / self.factor) * 100.0
            ),
            None => "n/a (a variant failed or was not run)".into(),
        }
    }
}

/// The targets, evaluated from the cells.
pub(crate) fn targets(cells: &[Cell]) -> Vec<Target> {
    let short = |p: &Point| p.is_short_headline();
    let pers = |p: &Point| p.is_persistent_headline();
    vec![
        Target {
            text: "one transaction per connection: afxdp >= 3 x epoll".into(),
            ratio: ratio(cells, Variant::Afxdp, Variant::Epoll, short),
            factor: 3.0,
        },
        Target {
            text:
                "one transaction per connection: afxdp (FIN close) >= 0.9 x afxdp-rst (RST close)"
                    .into(),
            ratio: ratio(cells, Variant::Afxdp, Variant::AfxdpRst, short),
            factor: 0.9,
        },
        Target {
            text: "persistent connections: afxdp >= 1.5 x epoll".into(),
            ratio: ratio(cells, Variant::Afxdp, Variant::Epoll, pers),
            factor: 1.5,
        },
        Target {
            text:
                "server µs per transaction, one transaction per connection: afxdp <= 1/5 of epoll"
                    .into(),
            ratio: cost_ratio(cells, Variant::Afxdp, Variant::Epoll, short),
            factor: 5.0,
        },
        Target {
            text: "server µs per transaction, persistent connections: afxdp <= 1/3 of epoll".into(),
            ratio: cost_ratio(cells, Variant::Afxdp, Variant::Epoll, pers),
            factor: 3.0,
        },
        Target {
            text: "one transaction per connection: afxdp >= uring".into(),
            ratio: ratio(cells, Variant::Afxdp, Variant::Uring, short),
            factor: 1.0,
        },
        Target {
            text: "persistent connections: afxdp >= uring".into(),
            ratio: ratio(cells, Variant::Afxdp, Variant::Uring, pers),
            factor: 1.0,
        },
    ]
}

/// Facts of the run printed at the top of the summary.
pub(crate) struct RunInfo {
    pub(crate) started: String,
    pub(crate) mode: &'static str,
    pub(crate) trials: usize,
    pub(crate) secs: f64,
    pub(crate) host: String,
    /// Where the server and the client ran (CPU, namespace).
    pub(crate) server: String,
    pub(crate) client: String,
}

/// The Markdown summary.
pub(crate) fn markdown(info: &RunInfo, variants: &[Variant], cells: &[Cell]) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "# megatcp-bench: bypass vs kernel, head to head\n");
    let _ = writeln!(
        s,
        "{} · {} mode · {} trial(s) of {} s per point · {}\n",
        info.started, info.mode, info.trials, info.secs, info.host
    );
    let _ = writeln!(
        s,
        "Server: `megatcp-echo serve` pinned to {}, one variant at a \
         time. Client: `megatcp-echo load` over AF_XDP pinned to {}, \
         the same for every variant (and over epoll in the kernel-client table). Cells: median \
         transactions/s [min–max over trials], then the CPU use of server/client over the \
         measured window (100% = one core; the bypass side polls and only sleeps after 2,000 \
         empty turns, so it shows near 100% whenever traffic flows), then how busy the \
         server's / the client's CPU were as a whole (softirq included: on a veth the kernel's receive path for one \
         side often runs on the other side's CPU, so a kernel server's work is partly \
         charged to the client's CPU). Saturated: the side at 90% or more.\n",
        info.server, info.client
    );
    let _ = writeln!(
        s,
        "Server µs per transaction: the server's CPU time for its work over the measured \
         window, divided by the transactions completed in it, so that a run the client limits \
         still says what each transaction cost the server. Bypass servers (afxdp, dpdk) spin, \
         so their CPU time says nothing: their cost is their engine's busy time (turns that \
         received or sent frames or completed operations, and the application's handling of \
         them; idle polling and sleeps not counted), read from the counters the server \
         publishes (`/dev/shm/megatcp-PID.json`, refreshed every 0.5 s: the busy share is \
         taken between the first and the last refresh inside the window), but no more than \
         its process time: busy time is wall-clock time, and on a CPU shared with softirq \
         work or other processes part of a busy turn's interval goes to them. Kernel servers \
         (uring, epoll): their process time (user + system, `/proc/PID/stat`) plus all the \
         softirq time of their CPU (`/proc/stat`), in 10 ms ticks, but no more than their \
         CPU's busy share (without `CONFIG_IRQ_TIME_ACCOUNTING` a softirq run in the \
         server's own system calls is charged to both; the process time alone, the `cpu` \
         figure, is a lower bound). Limits: on a veth the \
         kernel's receive path runs on the sending side's CPU, so the kernel server's \
         receive processing is partly charged to the client's CPU (missed here) while its \
         CPU's softirq time holds part of the client's receive path (counted here); the two \
         errors go opposite ways and neither is measured apart. The bypass servers' kernel \
         work outside their turns (the XDP program and the veth's receive path) is not \
         counted either. `cost` ratios: how many times the other server's µs per \
         transaction afxdp's is (higher: afxdp cheaper).\n"
    );
    let _ = writeln!(
        s,
        "Raw ceiling: the `reflect` variant runs no server: `megatcp-echo reflect serve` sends \
         every frame it receives on the bypass servers' AF_XDP queue straight back (MAC, IPv4 \
         addresses and UDP ports swapped; checksums stay valid), and `megatcp-echo reflect \
         load` keeps as many UDP frames of the message size in flight as the point has \
         connections, counting reflections per second (one frame each way per transaction). \
         It is what the medium and the AF_XDP queues carry on these CPUs in the same run; \
         `of raw ceiling` is a server's transactions/s over it, at the persistent points (a \
         TCP transaction is at least a request and a reply segment, ACKs riding on them).\n"
    );
    let _ = writeln!(
        s,
        "Closes: short connections (a number of transactions per connection) are closed by the \
         client with FIN, an orderly close that leaves the client in TIME-WAIT, on every \
         variant but `afxdp-rst`: the afxdp server again, with the client closing by RST (no \
         TIME-WAIT), run at those points only. The `close` column says which close a row used \
         (also in trials.csv and the JSON files).\n"
    );
    let _ = writeln!(
        s,
        "## Targets (64 B messages, server on one core, same client)\n"
    );
    let _ = writeln!(s, "| target | result |\n|---|---|");
    for t in targets(cells) {
        let _ = writeln!(s, "| {} | {} |", t.text, t.verdict());
    }
    let _ = writeln!(s);
    for sweep in Sweep::ALL {
        let rows: Vec<&Cell> = cells.iter().filter(|c| c.point.sweep == sweep).collect();
        if rows.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}\n", sweep.title());
        if sweep == Sweep::Latency {
            let _ = writeln!(
                s,
                "| variant | offered | achieved | p50 µs | p99 µs | p99.9 µs |"
            );
            let _ = writeln!(s, "|---|---|---|---|---|---|");
            for c in &rows {
                let m = |x: Option<Stat>| x.map_or("-".into(), |x| format!("{:.1}", x.median));
                let _ = writeln!(
                    s,
                    "| {} | {} | {} | {} | {} | {} |",
                    c.variant.name(),
                    c.x,
                    c.txns_per_sec.map_or("FAILED".into(), |t| kilo(t.median)),
                    m(c.p50_us),
                    m(c.p99_us),
                    m(c.p999_us)
                );
            }
            let _ = writeln!(s);
            continue;
        }
        let _ = write!(s, "| {} | close |", sweep_x_name(sweep));
        for v in variants {
            let _ = write!(s, " {} |", v.name());
        }
        let _ = writeln!(
            s,
            " afxdp/epoll | afxdp/uring | of raw ceiling (afxdp, epoll) | saturated (afxdp run) |"
        );
        let _ = writeln!(s, "|{}", "---|".repeat(variants.len() + 6));
        let mut xs: Vec<&Point> = Vec::new();
        for c in &rows {
            if !xs.contains(&&c.point) {
                xs.push(&c.point);
            }
        }
        for p in &xs {
            let p = *p;
            let _ = write!(s, "| {} | {} |", p.x_label(), close_text(variants, p));
            for &v in variants {
                let text = find(cells, v, |q| q == p).map_or("-".into(), cell_text);
                let _ = write!(s, " {text} |");
            }
            let r = |b| {
                ratio(cells, Variant::Afxdp, b, |q| q == p)
                    .map_or("-".into(), |r| format!("{r:.2}x"))
            };
            let sat = find(cells, Variant::Afxdp, |q| q == p).map_or("-", Cell::saturated);
            let of_ceiling = |a| {
                ratio(cells, a, Variant::Reflect, |q| q == p)
                    .map_or("-".into(), |r| format!("{:.0}%", r * 100.0))
            };
            let _ = writeln!(
                s,
                " {} | {} | {}, {} | {} |",
                r(Variant::Epoll),
                r(Variant::Uring),
                of_ceiling(Variant::Afxdp),
                of_ceiling(Variant::Epoll),
                sat
            );
        }
        let _ = writeln!(s);
        let _ = writeln!(
            s,
            "Server µs per transaction (median [min–max]; `cost`: the other's over afxdp's):\n"
        );
        let _ = write!(s, "| {} | close |", sweep_x_name(sweep));
        for v in variants {
            let _ = write!(s, " {} |", v.name());
        }
        let _ = writeln!(s, " cost epoll/afxdp | cost uring/afxdp |");
        let _ = writeln!(s, "|{}", "---|".repeat(variants.len() + 4));
        for p in &xs {
            let _ = write!(s, "| {} | {} |", p.x_label(), close_text(variants, p));
            for &v in variants {
                let text = find(cells, v, |q| q == *p).map_or("-".into(), us_text);
                let _ = write!(s, " {text} |");
            }
            let r = |b| {
                cost_ratio(cells, Variant::Afxdp, b, |q| q == *p)
                    .map_or("-".into(), |r| format!("{r:.2}x"))
            };
            let _ = writeln!(s, " {} | {} |", r(Variant::Epoll), r(Variant::Uring));
        }
        let _ = writeln!(s);
    }
    let failed: Vec<&Cell> = cells.iter().filter(|c| !c.errors.is_empty()).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        // A variant that failed everywhere with one error gets one line.
        let mut whole = Vec::new();
        for &v in variants {
            let mine: Vec<&Cell> = cells.iter().filter(|c| c.variant == v).collect();
            let first = mine.first().and_then(|c| c.errors.first());
            if let Some(e) = first
                && mine
                    .iter()
                    .all(|c| c.txns_per_sec.is_none() && c.errors.iter().all(|x| x == e))
            {
                let _ = writeln!(s, "- {}: FAILED at every point: {e}", v.name());
                whole.push(v);
            }
        }
        for c in failed.into_iter().filter(|c| !whole.contains(&c.variant)) {
            let _ = writeln!(
                s,
                "- {} / {} {}: {}",
                c.variant.name(),
                c.point.sweep.name(),
                c.x,
                c.errors.join("; ")
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// The closes used at `p`: every variant's, the RST variant named apart.
fn close_text(variants: &[Variant], p: &Point) -> String {
    let mut seen: Vec<(Close, Vec<&str>)> = Vec::new();
    for v in variants.iter().filter(|v| v.runs(p)) {
        match seen.iter_mut().find(|(c, _)| *c == v.close(p)) {
            Some((_, names)) => names.push(v.name()),
            None => seen.push((v.close(p), vec![v.name()])),
        }
    }
    match seen.as_slice() {
        [(c, _)] => c.label().into(),
        _ => seen
            .iter()
            .map(|(c, names)| format!("{} ({})", c.label(), names.join(", ")))
            .collect::<Vec<_>>()
            .join("; "),
    }
}

pub(crate) fn sweep_x_name(sweep: Sweep) -> &'static str {
    match sweep {
        Sweep::TxnsPerConn | Sweep::KernelClient => "txns/conn",
        Sweep::MsgSize => "message bytes",
        Sweep::Connections => "connections",
        Sweep::Latency => "offered load",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_take_medians_and_skip_failures() {
        let s = stat(vec![3.0, 1.0, f64::NAN, 2.0]).expect("values");
        assert_eq!((s.median, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        let s = stat(vec![4.0, 1.0]).expect("values");
        assert_eq!(s.median, 2.5);
        assert!(stat(vec![f64::NAN]).is_none());
    }

    #[test]
    fn csv_fields_with_commas_are_quoted() {
        assert_eq!(csv_field("a,b \"c\""), "\"a,b \"\"c\"\"\"");
        assert_eq!(csv_field("plain"), "plain");
    }

    #[test]
    fn a_failed_variant_shows_as_failed_and_its_targets_as_not_available() {
        let points = crate::plan::points(true);
        let p = points[0];
        let trials = vec![Trial::failed(
            Variant::Uring,
            p,
            0,
            "server exited: not built".into(),
        )];
        let cells = cells(&trials, &[Variant::Afxdp, Variant::Uring], &points);
        let md = markdown(
            &RunInfo {
                started: "t".into(),
                mode: "quick",
                trials: 1,
                secs: 1.0,
                host: "h".into(),
                server: "CPU 0".into(),
                client: "CPU 1".into(),
            },
            &[Variant::Afxdp, Variant::Uring],
            &cells,
        );
        assert!(md.contains("FAILED"));
        assert!(md.contains("server exited: not built"));
        assert!(md.contains("n/a"));
    }

    #[test]
    fn every_row_says_how_its_connections_closed() {
        let points = crate::plan::points(true);
        let short = *points.iter().find(|p| p.is_short_headline()).unwrap();
        let pers = *points.iter().find(|p| p.is_persistent_headline()).unwrap();
        let variants = [Variant::Afxdp, Variant::AfxdpRst, Variant::Epoll];
        assert_eq!(
            close_text(&variants, &short),
            "FIN (afxdp, epoll); RST (afxdp-rst)"
        );
        assert_eq!(close_text(&variants[..1], &short), "FIN");
        assert_eq!(close_text(&variants, &pers), "-");
        // The RST variant has no cell where nothing closes.
        let cells = cells(&[], &variants, &[short, pers]);
        assert_eq!(cells.len(), 5);
        assert!(cells.iter().all(|c| c.close == c.variant.close(&c.point)));
        let trials = [
            Trial::failed(Variant::AfxdpRst, short, 0, "x".into()),
            Trial::failed(Variant::Afxdp, short, 0, "y".into()),
        ];
        let path = std::env::temp_dir().join(format!("megatcp-close-{}.csv", std::process::id()));
        write_csv(&path, &trials).unwrap();
        let csv = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = csv.lines().collect();
        assert!(lines[0].ends_with(",close,error"), "{}", lines[0]);
        assert!(
            lines[1].ends_with(",rst,x") && lines[2].ends_with(",fin,y"),
            "{csv}"
        );
    }
}
