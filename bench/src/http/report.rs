//! The HTTP report: every trial (CSV, JSON), medians with min-max per point and server, the
//! Markdown tables with ratios against nginx and lighttpd, the targets, and one plot per
//! sweep.

use std::fmt::Write as _;
use std::path::Path;

use plotters::style::RGBColor;
use serde::Serialize;

use super::clients::Measure;
use super::plan::{Client, Point, Server, Sweep};
use crate::cpu::{CpuStats, CpuUse};
use crate::report::{Stat, csv_field, kilo, pct, stat};

/// One trial of one point on one server.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Trial {
    pub(crate) server: Server,
    #[serde(flatten)]
    pub(crate) point: Point,
    pub(crate) x: String,
    pub(crate) trial: usize,
    pub(crate) ok: bool,
    pub(crate) error: Option<String>,
    pub(crate) requests_per_sec: f64,
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    pub(crate) client_errors: u64,
    #[serde(flatten)]
    pub(crate) cpu: CpuUse,
}

impl Trial {
    pub(crate) fn new(
        server: Server,
        point: Point,
        trial: usize,
        r: Result<Measure, String>,
    ) -> Self {
        let (m, error) = match r {
            Ok(m) => (m, None),
            Err(e) => (
                Measure {
                    requests_per_sec: f64::NAN,
                    p50_us: f64::NAN,
                    p99_us: f64::NAN,
                    ..Measure::default()
                },
                Some(e),
            ),
        };
        Self {
            server,
            x: point.x_label(),
            point,
            trial,
            ok: error.is_none(),
            error,
            requests_per_sec: m.requests_per_sec,
            p50_us: m.p50_us,
            p99_us: m.p99_us,
            client_errors: m.errors,
            cpu: m.cpu,
        }
    }
}

/// The trials of one point on one server, summarised.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct Cell {
    pub(crate) server: Server,
    pub(crate) point: Point,
    pub(crate) x: String,
    pub(crate) requests_per_sec: Option<Stat>,
    pub(crate) p50_us: Option<Stat>,
    pub(crate) p99_us: Option<Stat>,
    #[serde(flatten)]
    pub(crate) cpu: CpuStats,
    pub(crate) client_errors: u64,
    pub(crate) errors: Vec<String>,
}

impl Cell {
    /// Which side ran out of CPU (see [`CpuStats::saturated`]).
    pub(crate) fn saturated(&self) -> &'static str {
        self.cpu.saturated()
    }
}

pub(crate) fn cells(trials: &[Trial], servers: &[Server], points: &[Point]) -> Vec<Cell> {
    let mut out = Vec::new();
    for p in points {
        for &s in servers {
            let these: Vec<&Trial> = trials
                .iter()
                .filter(|t| t.server == s && t.point == *p)
                .collect();
            let ok: Vec<&&Trial> = these.iter().filter(|t| t.ok).collect();
            let get = |f: fn(&Trial) -> f64| stat(ok.iter().map(|t| f(t)).collect());
            let mut errors: Vec<String> = these.iter().filter_map(|t| t.error.clone()).collect();
            errors.dedup();
            out.push(Cell {
                server: s,
                point: *p,
                x: p.x_label(),
                requests_per_sec: get(|t| t.requests_per_sec),
                p50_us: get(|t| t.p50_us),
                p99_us: get(|t| t.p99_us),
                cpu: CpuStats::of(&ok.iter().map(|t| t.cpu).collect::<Vec<_>>()),
                client_errors: ok.iter().map(|t| t.client_errors).sum(),
                errors,
            });
        }
    }
    out
}

fn find<'a>(cells: &'a [Cell], s: Server, p: &Point) -> Option<&'a Cell> {
    cells.iter().find(|c| c.server == s && c.point == *p)
}

fn ratio(cells: &[Cell], a: Server, b: Server, p: &Point) -> Option<f64> {
    let x = find(cells, a, p)?.requests_per_sec?.median;
    let y = find(cells, b, p)?.requests_per_sec?.median;
    (y > 0.0).then_some(x / y)
}

/// The targets: (text, ratio, factor).
pub(crate) fn targets(cells: &[Cell]) -> Vec<(String, Option<f64>, f64)> {
    let p = |keep_alive| Point {
        sweep: Sweep::Mode,
        client: Client::Ours,
        keep_alive,
        size: 64,
        connections: 64,
    };
    vec![
        (
            "keep-alive, 64 B: afxdp >= 2 x nginx".into(),
            ratio(cells, Server::Afxdp, Server::Nginx, &p(true)),
            2.0,
        ),
        (
            "keep-alive, 64 B: epoll >= 0.9 x nginx".into(),
            ratio(cells, Server::Epoll, Server::Nginx, &p(true)),
            0.9,
        ),
        (
            "Connection: close, 64 B: afxdp >= 3 x nginx".into(),
            ratio(cells, Server::Afxdp, Server::Nginx, &p(false)),
            3.0,
        ),
    ]
}

fn verdict(r: Option<f64>, factor: f64) -> String {
    match r {
        Some(r) if r >= factor => format!("PASS ({r:.2}x)"),
        Some(r) => format!("MISS ({r:.2}x, {:.0}% short)", (1.0 - r / factor) * 100.0),
        None => "n/a (a server failed or was not run)".into(),
    }
}

fn cell_text(c: &Cell) -> String {
    match c.requests_per_sec {
        Some(s) => format!(
            "{} [{}–{}] cpu {}/{}{}",
            kilo(s.median),
            kilo(s.min),
            kilo(s.max),
            pct(c.cpu.server_core.or(c.cpu.server_cpu)),
            pct(c.cpu.client_core.or(c.cpu.client_cpu)),
            if c.client_errors > 0 {
                format!(" err {}", c.client_errors)
            } else {
                String::new()
            }
        ),
        None => "FAILED".into(),
    }
}

/// The Markdown summary.
pub(crate) fn markdown(head: &str, servers: &[Server], cells: &[Cell]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "# megatcp-bench http: megatcp-http vs nginx and lighttpd\n\n{head}\n"
    );
    let _ = writeln!(
        s,
        "Every server pinned to CPU 0 in namespace megatcp-srv, one at a time, serving the same \
         files from port 8080 (nginx and lighttpd: one worker, access log off, keep-alive limits \
         raised). Clients pinned to CPU 1 in megatcp-cli: `ours` = `megatcp-http load` over \
         AF_XDP (every response checked byte for byte), `wrk` and `ab` over the kernel. \
         `Connection: close` points: the server closes after its response, every client closes \
         with FIN. Cells: median requests/s [min–max over trials], then \
         how busy CPU 0 / CPU 1 were (softirq included). Saturated: the side at 90% or more.\n"
    );
    let _ = writeln!(
        s,
        "## Targets (server on one core, same client)\n\n| target | result |\n|---|---|"
    );
    for (text, r, f) in targets(cells) {
        let _ = writeln!(s, "| {text} | {} |", verdict(r, f));
    }
    let _ = writeln!(s);
    for sweep in Sweep::ALL {
        let mut xs: Vec<Point> = Vec::new();
        for c in cells.iter().filter(|c| c.point.sweep == sweep) {
            if !xs.contains(&c.point) {
                xs.push(c.point);
            }
        }
        if xs.is_empty() {
            continue;
        }
        let _ = writeln!(s, "## {}\n", sweep.title());
        let _ = write!(s, "| {} |", sweep.x_name());
        for v in servers {
            let _ = write!(s, " {} |", v.name());
        }
        let _ = writeln!(
            s,
            " afxdp/nginx | epoll/nginx | afxdp/lighttpd | saturated (afxdp, nginx) |"
        );
        let _ = writeln!(s, "|{}", "---|".repeat(servers.len() + 5));
        for p in &xs {
            let _ = write!(s, "| {} |", p.x_label());
            for &v in servers {
                let _ = write!(s, " {} |", find(cells, v, p).map_or("-".into(), cell_text));
            }
            let r = |a, b| ratio(cells, a, b, p).map_or("-".into(), |r| format!("{r:.2}x"));
            let sat = |v| find(cells, v, p).map_or("-", Cell::saturated);
            let _ = writeln!(
                s,
                " {} | {} | {} | {}, {} |",
                r(Server::Afxdp, Server::Nginx),
                r(Server::Epoll, Server::Nginx),
                r(Server::Afxdp, Server::Lighttpd),
                sat(Server::Afxdp),
                sat(Server::Nginx)
            );
        }
        let _ = writeln!(s);
    }
    let failed: Vec<&Cell> = cells.iter().filter(|c| !c.errors.is_empty()).collect();
    if !failed.is_empty() {
        let _ = writeln!(s, "## Failures\n");
        for c in failed {
            let _ = writeln!(
                s,
                "- {} / {} {}: {}",
                c.server.name(),
                c.point.sweep.name(),
                c.x,
                c.errors.join("; ")
            );
        }
        let _ = writeln!(s);
    }
    s
}

/// Writes `http_trials.csv`.
pub(crate) fn write_csv(path: &Path, trials: &[Trial]) -> std::io::Result<()> {
    let mut s = format!(
        "server,client,sweep,x,keep_alive,size,connections,trial,ok,requests_per_sec,p50_us,\
         p99_us,client_errors,{},error\n",
        CpuUse::CSV_HEADER
    );
    for t in trials {
        let p = &t.point;
        let _ = writeln!(
            s,
            "{},{},{},{},{},{},{},{},{},{:.1},{:.2},{:.2},{},{},{}",
            t.server.name(),
            p.client.name(),
            p.sweep.name(),
            csv_field(&t.x),
            p.keep_alive,
            p.size,
            p.connections,
            t.trial,
            t.ok,
            t.requests_per_sec,
            t.p50_us,
            t.p99_us,
            t.client_errors,
            t.cpu.csv(),
            csv_field(t.error.as_deref().unwrap_or("")),
        );
    }
    std::fs::write(path, s)
}

fn color(s: Server) -> RGBColor {
    match s {
        Server::Afxdp => RGBColor(200, 30, 30),
        Server::Dpdk => RGBColor(140, 60, 170),
        Server::Uring => RGBColor(30, 90, 200),
        Server::Epoll => RGBColor(40, 140, 60),
        Server::Nginx => RGBColor(0, 0, 0),
        Server::Lighttpd => RGBColor(230, 140, 0),
    }
}

/// One SVG per sweep.
pub(crate) fn plots(dir: &Path, servers: &[Server], cells: &[Cell]) -> Result<(), String> {
    for sweep in Sweep::ALL {
        let mut xs: Vec<String> = Vec::new();
        for c in cells.iter().filter(|c| c.point.sweep == sweep) {
            if !xs.contains(&c.x) {
                xs.push(c.x.clone());
            }
        }
        let series: Vec<(&str, RGBColor, crate::plot::Points)> = servers
            .iter()
            .map(|&v| {
                let pts = cells
                    .iter()
                    .filter(|c| c.server == v && c.point.sweep == sweep)
                    .filter_map(|c| {
                        let i = xs.iter().position(|x| *x == c.x)?;
                        let s = c.requests_per_sec?;
                        Some((i, s.median / 1e3, s.min / 1e3, s.max / 1e3))
                    })
                    .collect();
                (v.name(), color(v), pts)
            })
            .collect();
        crate::plot::draw_lines(
            &dir.join(format!("{}.svg", sweep.name())),
            sweep.title(),
            sweep.x_name(),
            "throughput (k requests/s)",
            &xs,
            &series,
            false,
        )?;
    }
    Ok(())
}
