//! `megatcp-bench http`: megatcp-http on every path (AF_XDP, DPDK, io_uring, epoll) against
//! nginx and lighttpd on the veth testbed, all pinned to the same CPU and serving the same
//! files, under our verifying load generator, wrk and ab; report and plots like the echo
//! head-to-head.
//!
//! ```text
//! megatcp-bench http --quick              # about 5 minutes
//! megatcp-bench http --servers afxdp,nginx --trials 5
//! ```

mod clients;
mod plan;
mod report;
mod servers;

use std::path::PathBuf;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use plan::{Point, Server};
use report::Trial;

/// The flags of `megatcp-bench http`.
#[derive(clap::Args, Debug)]
pub(crate) struct HttpArgs {
    #[command(flatten)]
    run: crate::RunArgs,
    /// Servers, in order.
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "afxdp,dpdk,uring,epoll,nginx,lighttpd"
    )]
    servers: Vec<Server>,
    /// The megatcp-http binary (built with `--features afxdp`; default: next to this one).
    #[arg(long)]
    http_bin: Option<PathBuf>,
    #[command(flatten)]
    repo: crate::RepoArg,
}

/// Runs the HTTP head-to-head and writes its report.
pub(crate) fn run(args: &HttpArgs) -> Result<(), String> {
    crate::need_root()?;
    let http_bin = match &args.http_bin {
        Some(p) => p.clone(),
        None => std::env::current_exe()
            .map_err(|e| format!("own path: {e}"))?
            .with_file_name("megatcp-http"),
    };
    if !http_bin.is_file() {
        return Err(format!(
            "{} not found: cargo build --release -p megatcp-http --features afxdp (or --http-bin)",
            http_bin.display()
        ));
    }
    let repo = args.repo.find()?;
    let crate::Run {
        out,
        started,
        trials,
        secs,
        warmup,
    } = args.run.settle(&repo, "http-")?;
    let www = out.join("www");
    std::fs::create_dir_all(&www).map_err(|e| format!("{}: {e}", www.display()))?;
    for size in plan::SIZES {
        std::fs::write(
            www.join(format!("{size}.bin")),
            megatcp_http::files::hello_body(size),
        )
        .map_err(|e| format!("{}: {e}", www.display()))?;
    }
    let mut servers = args.servers.clone();
    servers.dedup();
    let points = plan::points(args.run.quick);

    let was_up = crate::testbed_is_up();
    crate::testbed(&repo, "up")?;
    let done = run_all(
        &http_bin, &www, &out, &servers, &points, trials, secs, warmup,
    );
    if !was_up {
        crate::testbed(&repo, "down")?;
    }
    let cells = report::cells(&done, &servers, &points);
    let head = format!(
        "{started} · {} mode · {trials} trial(s) of {secs} s per point · {}",
        if args.run.quick { "quick" } else { "full" },
        crate::host_info()
    );
    let md = report::markdown(&head, &servers, &cells);
    let write = |name: &str, text: &str| {
        std::fs::write(out.join(name), text).map_err(|e| format!("{name}: {e}"))
    };
    write("http_summary.md", &md)?;
    write(
        "http_trials.json",
        &serde_json::to_string_pretty(&done).map_err(|e| e.to_string())?,
    )?;
    write(
        "http_summary.json",
        &serde_json::to_string_pretty(&cells).map_err(|e| e.to_string())?,
    )?;
    report::write_csv(&out.join("http_trials.csv"), &done).map_err(|e| e.to_string())?;
    report::plots(&out, &servers, &cells)?;
    println!("{md}");
    println!("report: {}", out.display());
    Ok(())
}

/// Every point on every server; what fails becomes a failed trial with its error.
#[allow(clippy::too_many_arguments)]
fn run_all(
    http_bin: &std::path::Path,
    www: &std::path::Path,
    out: &std::path::Path,
    servers: &[Server],
    points: &[Point],
    trials: usize,
    secs: f64,
    warmup: f64,
) -> Vec<Trial> {
    let total = (servers.len() * points.len() * trials) as u64;
    let bar = ProgressBar::new(total);
    if let Ok(style) = ProgressStyle::with_template(
        "{elapsed_precise} [{wide_bar}] {pos}/{len} runs, about {eta} left · {msg}",
    ) {
        bar.set_style(style);
    }
    let mut done = Vec::new();
    for &v in servers {
        bar.set_message(format!("starting {}", v.name()));
        let mut server = servers::start(v, http_bin, www, out);
        for p in points {
            for t in 0..trials {
                bar.set_message(format!("{} · {} {}", v.name(), p.sweep.name(), p.x_label()));
                if let Ok(s) = &mut server
                    && !s.alive()
                {
                    bar.println(format!(
                        "{}: server died ({}); restarting it",
                        v.name(),
                        s.log_tail()
                    ));
                    server = servers::start(v, http_bin, www, out);
                }
                let r = match &server {
                    Err(e) => Err(e.clone()),
                    Ok(s) => clients::run(http_bin, p, servers::address(v), secs, warmup, s.pid()),
                };
                if let Err(e) = &r {
                    bar.println(format!(
                        "{} {} {}: {e}",
                        v.name(),
                        p.sweep.name(),
                        p.x_label()
                    ));
                }
                done.push(Trial::new(v, *p, t, r));
                bar.inc(1);
            }
        }
        if let Ok(mut s) = server {
            s.stop();
        }
        // Let the kernel tear the previous server's sockets down before the next one binds.
        std::thread::sleep(Duration::from_millis(500));
    }
    bar.finish_with_message("done");
    done
}
