//! `megatcp-bench`: the head-to-head of megatcp's kernel-bypass paths against the Linux
//! kernel, on the veth testbed, with a report (CSV, JSON, Markdown, SVG plots); and
//! `megatcp-bench kv`, a memcached load generator on the channel API.
//!
//! ```text
//! megatcp-bench --quick                 # about 2-3 minutes
//! megatcp-bench --out report/           # the full sweeps, 3 trials per point
//! megatcp-bench kv --connect 10.77.0.10:11211 --backend afxdp --iface mtcp-cli --ip 10.77.0.20/24
//! megatcp-bench http --quick            # megatcp-http vs nginx and lighttpd
//! ```
//!
//! The echo head-to-head needs root (network namespaces, AF_XDP) and `megatcp-echo` built
//! with the `afxdp` feature next to this binary (or `--echo-bin`). Namespaces, interfaces,
//! addresses and CPUs are options (the testbed's by default); between two machines joined
//! by a real link, run `--role server --control ADDR:PORT` on one and `--role client
//! --control ADDR:PORT` on the other (both with `--server-ns "" --client-ns ""`): the client
//! role writes the report.

#![forbid(unsafe_code)]

mod cpu;
mod flood;
mod http;
mod kv;
mod plan;
mod plot;
mod procs;
mod report;
mod roles;
mod synflood;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};

use crate::plan::{Point, Sweep, Variant};
use crate::procs::{Net, Window};
use crate::report::{RunInfo, Trial};
use crate::roles::ServerSide;

#[derive(Parser)]
#[command(
    name = "megatcp-bench",
    about = "Head-to-head benchmark: megatcp (AF_XDP, DPDK) vs the Linux kernel (io_uring, epoll)",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    echo: EchoArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// memcached load generator on the channel API (any memcached-compatible server).
    Kv(kv::KvArgs),
    /// Spoofed TCP SYNs at a server from raw frames (AF_PACKET; root).
    Synflood(synflood::SynfloodArgs),
    /// The SYN-flood benchmark on the testbed: new clients and established connections of
    /// the AF_XDP server at several flood rates (root).
    Flood(flood::FloodArgs),
    /// HTTP head-to-head: megatcp-http (AF_XDP, DPDK, io_uring, epoll) vs nginx and lighttpd.
    Http(http::HttpArgs),
}

#[derive(Args)]
struct EchoArgs {
    #[command(flatten)]
    run: RunArgs,
    /// Server variants, in order (`afxdp-rst`: the afxdp server with short connections
    /// closed by RST instead of FIN, at those points only; `reflect`: no server, raw frames
    /// reflected on the same AF_XDP queue, the medium's ceiling at the persistent points).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "afxdp,afxdp-rst,dpdk,uring,epoll,reflect"
    )]
    variants: Vec<Variant>,
    /// One machine (`one`), or one of two: `server` runs the servers at the client role's
    /// request, `client` runs the load generator and writes the report.
    #[arg(long, value_enum, default_value = "one")]
    role: Role,
    /// The server role's control address: where it listens, where the client role connects
    /// (e.g. 192.0.2.1:7700). Needed with --role server or client.
    #[arg(long, required_if_eq_any([("role", "server"), ("role", "client")]))]
    control: Option<SocketAddr>,
    #[command(flatten)]
    net: Net,
    #[command(flatten)]
    paths: Paths,
}

/// Which part of the head-to-head this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    /// Servers and load generator on this machine.
    One,
    /// The servers, at the request of the client role (`--control` to listen on).
    Server,
    /// The load generator and the report; the servers run in the server role.
    Client,
}

/// The flags of a head-to-head run (echo and http alike).
#[derive(Args, Debug)]
struct RunArgs {
    /// Reduced sweeps, 2 trials of 1 s per point: about 2-3 minutes (echo).
    #[arg(long)]
    quick: bool,
    /// Report directory (default: a new timestamped directory under target/megatcp-bench/).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Trials per point (default 3; 2 with --quick).
    #[arg(long)]
    trials: Option<usize>,
    /// Measured time per trial (default 3s; 1s with --quick; a bare number is seconds).
    #[arg(long, value_parser = megatcp_launch::duration::parse_secs)]
    secs: Option<f64>,
}

/// Where the repository is (for `scripts/testbed`).
#[derive(Args, Debug, Clone)]
struct RepoArg {
    /// The repository (for scripts/testbed; default: found from this binary's location).
    #[arg(long)]
    repo: Option<PathBuf>,
}

impl RepoArg {
    /// The repository given, else the one holding this binary or the current directory.
    fn find(&self) -> Result<PathBuf, String> {
        if let Some(r) = &self.repo {
            return Ok(r.clone());
        }
        let exe = std::env::current_exe().map_err(|e| format!("own path: {e}"))?;
        find_repo(&exe)
            .or_else(|| std::env::current_dir().ok().and_then(|d| find_repo(&d)))
            .ok_or_else(|| "cannot find the repository (scripts/testbed): pass --repo".into())
    }
}

/// Where the programs and scripts of an echo testbed run are.
#[derive(Args, Debug, Clone)]
struct Paths {
    /// The megatcp-echo binary (built with `--features afxdp`; default: next to this one).
    #[arg(long)]
    echo_bin: Option<PathBuf>,
    #[command(flatten)]
    repo: RepoArg,
}

/// The echo binary of `paths`, checked.
fn echo_bin(paths: &Paths) -> Result<PathBuf, String> {
    let echo = match &paths.echo_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .with_file_name("megatcp-echo"),
    };
    if !echo.is_file() {
        return Err(format!(
            "{} not found: cargo build --release -p megatcp-echo --features afxdp (or --echo-bin)",
            echo.display()
        ));
    }
    Ok(echo)
}

/// What a run's flags come to.
struct Run {
    out: PathBuf,
    started: String,
    trials: usize,
    secs: f64,
    warmup: f64,
}

impl RunArgs {
    /// Checks the flags and creates the report directory (default
    /// `REPO/target/megatcp-bench/{prefix}{time}`).
    fn settle(&self, repo: &Path, prefix: &str) -> Result<Run, String> {
        let trials = self.trials.unwrap_or(if self.quick { 2 } else { 3 }).max(1);
        let secs = self.secs.unwrap_or(if self.quick { 1.0 } else { 3.0 });
        if !(secs > 0.0 && secs <= 600.0) {
            return Err(format!("--secs {secs}: must be within (0, 600]"));
        }
        let started = timestamp();
        let out = self.out.clone().unwrap_or_else(|| {
            repo.join("target/megatcp-bench")
                .join(format!("{prefix}{started}"))
        });
        std::fs::create_dir_all(&out).map_err(|e| format!("{}: {e}", out.display()))?;
        Ok(Run {
            out,
            started,
            trials,
            secs,
            warmup: if self.quick { 0.3 } else { 1.0 },
        })
    }
}

fn main() -> ExitCode {
    let (cli, _) = megatcp_launch::parse_args::<Cli>();
    megatcp_launch::logging::init("info");
    let result = match &cli.cmd {
        Some(Cmd::Kv(args)) => kv::run(args),
        Some(Cmd::Synflood(args)) => synflood::run(args),
        Some(Cmd::Flood(args)) => flood::run(args),
        Some(Cmd::Http(args)) => http::run(args),
        None => head_to_head(&cli.echo),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("megatcp-bench: {e}");
            ExitCode::from(1)
        }
    }
}

/// The directory holding `scripts/testbed`, searched upwards from `start`.
fn find_repo(start: &Path) -> Option<PathBuf> {
    start
        .ancestors()
        .find(|d| d.join("scripts/testbed").is_file())
        .map(Path::to_path_buf)
}

fn testbed(repo: &Path, arg: &str) -> Result<(), String> {
    let out = Command::new(repo.join("scripts/testbed"))
        .arg(arg)
        .output()
        .map_err(|e| format!("scripts/testbed {arg}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "scripts/testbed {arg}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        ))
    }
}

fn testbed_is_up() -> bool {
    Command::new("ip")
        .args(["netns", "list"])
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(procs::SRV_NS))
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .and_then(|l| l.split_whitespace().nth(2))
            == Some("0")
    })
}

/// UTC time as `YYYYMMDD-HHMMSS` (no time-zone database needed).
fn timestamp() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60
    )
}

pub(crate) fn host_info() -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    format!("Linux {}, {cpus} CPUs", kernel.trim())
}

/// An error unless the process runs as root, as the head-to-heads need.
fn need_root() -> Result<(), String> {
    if is_root() {
        Ok(())
    } else {
        Err("the head-to-head needs root (network namespaces, AF_XDP): run as root".into())
    }
}

fn head_to_head(args: &EchoArgs) -> Result<(), String> {
    need_root()?;
    let echo = echo_bin(&args.paths)?;
    // The repository holds scripts/testbed; a server role on another machine may have none
    // (its reports then go under ./target/megatcp-bench).
    let repo = args.paths.repo.find();
    let Run {
        out,
        started,
        trials,
        secs,
        warmup,
    } = args
        .run
        .settle(repo.as_deref().unwrap_or(Path::new(".")), "")?;
    if let (Role::Server, Some(control)) = (args.role, args.control) {
        return roles::serve(&echo, &out, &args.net, control);
    }
    let window = Window { secs, warmup };
    let mut variants = args.variants.clone();
    variants.dedup();
    let points = plan::points(args.run.quick);

    let (trials_done, host) = match (args.role, args.control) {
        (Role::Client, Some(control)) => {
            let mut remote = roles::Remote::connect(control, Duration::from_secs(30))?;
            let host = format!("client: {}; server: {}", host_info(), remote.host());
            let done = run_all(
                &echo,
                &mut remote,
                &args.net,
                &variants,
                &points,
                trials,
                window,
            );
            remote.bye();
            (done?, host)
        }
        _ => {
            // The testbed's namespaces are brought up (and down again) here; others are
            // the user's.
            let testbed_repo = if args.net.uses_testbed() {
                Some(repo.clone()?)
            } else {
                None
            };
            let was_up = testbed_is_up();
            if let Some(r) = &testbed_repo {
                testbed(r, "up")?;
            }
            let mut local = roles::Local::new(&echo, &out, &args.net);
            let result = run_all(
                &echo, &mut local, &args.net, &variants, &points, trials, window,
            );
            if let Some(r) = testbed_repo.filter(|_| !was_up) {
                testbed(&r, "down")?;
            }
            (result?, host_info())
        }
    };

    let cells = report::cells(&trials_done, &variants, &points);
    let info = RunInfo {
        started,
        mode: if args.run.quick { "quick" } else { "full" },
        trials,
        secs,
        host,
        server: args.net.server_place(),
        client: args.net.client_place(),
    };
    let md = report::markdown(&info, &variants, &cells);
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("summary.md", &md)?;
    write(
        "trials.json",
        &serde_json::to_string_pretty(&trials_done).map_err(|e| e.to_string())?,
    )?;
    write(
        "summary.json",
        &serde_json::to_string_pretty(&cells).map_err(|e| e.to_string())?,
    )?;
    report::write_csv(&out.join("trials.csv"), &trials_done).map_err(|e| e.to_string())?;
    for sweep in Sweep::ALL {
        plot::draw(
            &out.join(format!("{}.svg", sweep.name())),
            sweep,
            &variants,
            &cells,
        )?;
    }
    println!("{md}");
    println!("report: {}", out.display());
    Ok(())
}

/// Runs every point of every variant against the servers of `side`; a variant or point
/// that fails is recorded as failed.
fn run_all(
    echo: &Path,
    side: &mut dyn ServerSide,
    net: &Net,
    variants: &[Variant],
    points: &[Point],
    trials: usize,
    window: Window,
) -> Result<Vec<Trial>, String> {
    let runs = variants
        .iter()
        .map(|v| points.iter().filter(|p| v.runs(p)).count())
        .sum::<usize>();
    let total = (runs * trials) as u64;
    let bar = ProgressBar::new(total);
    bar.set_style(
        ProgressStyle::with_template(
            "{elapsed_precise} [{wide_bar}] {pos}/{len} runs, about {eta} left · {msg}",
        )
        .map_err(|e| e.to_string())?,
    );
    // A first estimate of the remaining time before any run finished: per run, the window,
    // the warm-up and about a second of process start and stop.
    let per_run = Duration::from_secs_f64(window.secs + window.warmup + 1.0);
    bar.set_message(format!(
        "estimated {} s in all",
        (per_run * total as u32).as_secs() + 3 * variants.len() as u64
    ));
    let mut done = Vec::new();
    for &v in variants {
        bar.set_message(format!("starting the {} server", v.name()));
        let mut running = match side.start(v) {
            Ok(()) => true,
            Err(e) => {
                for p in points.iter().filter(|p| v.runs(p)) {
                    for t in 0..trials {
                        done.push(Trial::failed(v, *p, t, e.clone()));
                        bar.inc(1);
                    }
                }
                continue;
            }
        };
        for p in points.iter().filter(|p| v.runs(p)) {
            for t in 0..trials {
                bar.set_message(format!(
                    "{} server, {} client, {} {}",
                    v.name(),
                    p.client.name(),
                    p.sweep.name(),
                    p.x_label()
                ));
                // A server that died (or failed to restart) fails the rest of its runs.
                if running && let Err(why) = side.alive() {
                    bar.println(format!("{}: server died ({why}); restarting it", v.name()));
                    running = side.start(v).is_ok();
                }
                let trial = if running {
                    match procs::run_load(echo, v, p, &window, side, net) {
                        Ok(run) => Trial::measured(v, *p, t, &run),
                        Err(e) => Trial::failed(v, *p, t, e),
                    }
                } else {
                    Trial::failed(v, *p, t, "the server is not running".into())
                };
                if let Some(e) = &trial.error {
                    bar.println(format!(
                        "{} {} {}: {e}",
                        v.name(),
                        p.sweep.name(),
                        p.x_label()
                    ));
                }
                done.push(trial);
                bar.inc(1);
            }
        }
        side.stop();
    }
    bar.finish_with_message("done");
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_look_like_dates() {
        let t = timestamp();
        assert_eq!(t.len(), 15, "{t}");
        assert!(t.starts_with("20"), "{t}");
        assert_eq!(&t[8..9], "-");
    }

    #[test]
    fn the_repository_is_found_from_inside_it() {
        let here = Path::new(env!("CARGO_MANIFEST_DIR"));
        let repo = find_repo(here).expect("repo");
        assert!(repo.join("scripts/testbed").is_file());
    }
}
