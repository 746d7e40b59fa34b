//! Operating a running megatcp process, all off the data path: live per-core stats
//! (`--stats-interval`, `stats`), Prometheus metrics (`--metrics`, `metrics`), the
//! shared-memory view that `megatcp-stat` reads (`shm`), and packet capture on demand
//! (`--pcap`, `pcap`).
//!
//! Each core publishes its counters to its `CoreMonitor` (engine) about every millisecond;
//! the threads started here only read those atomics. [`OpsArgs`] are the flags; [`start`]
//! starts the threads for the monitors of one or more runtimes ([`Group`]s), and
//! [`Ops::finish`] stops them once the runtimes returned, printing the final stats line:
//! the counters of the exit report.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use megatcp_engine::{CaptureControl, CoreMonitor};

use crate::LaunchError;

pub mod metrics;
pub mod pcap;
pub mod shm;
pub mod stats;

/// How live stats are printed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum StatsFormat {
    /// A table per interval, one row per core.
    #[default]
    Table,
    /// One JSON object per line and interval.
    Json,
}

/// The operating flags of a server (`#[command(flatten)]` them next to `BackendArgs`).
#[derive(clap::Args, Clone, Debug, Default)]
pub struct OpsArgs {
    /// Print per-core rates to standard error at this interval (e.g. `1s`): frames,
    /// connections, drops by reason, retransmits, busy fraction.
    #[arg(long, value_name = "DURATION", value_parser = crate::duration::parse)]
    pub stats_interval: Option<Duration>,
    /// Format of `--stats-interval`: a table, or JSON lines.
    #[arg(long, value_enum, default_value_t = StatsFormat::Table)]
    pub stats_format: StatsFormat,
    /// Serve Prometheus metrics at `http://ADDR/metrics` (a kernel socket on its own port,
    /// answered by a thread off the data path), e.g. `127.0.0.1:9100`.
    #[arg(long, value_name = "ADDR")]
    pub metrics: Option<SocketAddr>,
    /// Packet capture on demand (bypass backends): SIGUSR1 starts a capture, SIGUSR2 stops
    /// it; each core writes `DIR/core{N}-{K}.pcap` (tcpdump, tshark). Off: no cost.
    #[arg(long, value_name = "DIR")]
    pub pcap: Option<PathBuf>,
    /// With `--pcap`: start capturing at once (SIGUSR2 still stops, SIGUSR1 restarts).
    #[arg(long, requires = "pcap")]
    pub pcap_now: bool,
    /// Do not publish counters for `megatcp-stat` (a file in /dev/shm, refreshed twice a
    /// second).
    #[arg(long)]
    pub no_shm: bool,
    /// Cores do not publish their counters at all (measures what publishing costs; stats,
    /// metrics and megatcp-stat then show zeros).
    #[arg(long, hide = true)]
    pub no_counters: bool,
}

impl OpsArgs {
    /// Whether any thread is needed at all.
    pub fn any(&self) -> bool {
        self.stats_interval.is_some()
            || self.metrics.is_some()
            || self.pcap.is_some()
            || !self.no_shm
    }
}

/// The monitors of one runtime, with a label told apart in the output (`""` when the
/// process runs one runtime; `server` and `client` in `pair`).
#[derive(Clone, Debug)]
pub struct Group {
    /// Label (`side` in the metrics).
    pub label: String,
    /// The runtime's monitors.
    pub monitors: Arc<Vec<CoreMonitor>>,
    /// The CPUs of its cores, in core order.
    pub cpus: Vec<usize>,
}

/// What the process is, for the shared-memory view and the metrics.
#[derive(Clone, Debug)]
pub struct Identity {
    /// The program and its command (`megatcp-echo serve`).
    pub name: String,
    /// The backend's name.
    pub backend: String,
}

/// The running operating threads; [`Ops::finish`] ends them.
pub struct Ops {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
    stats: Option<stats::Printer>,
    groups: Vec<Group>,
    capture: Option<Arc<CaptureControl>>,
    pcap_signals: Option<pcap::Signals>,
    shm: Option<shm::Publisher>,
}

/// Starts what `args` asks for over `groups`. The capture control (with `--pcap`) is in
/// [`Ops::capture`]: hand it to the runtimes before they start.
pub fn start(args: &OpsArgs, groups: Vec<Group>, who: Identity) -> Result<Ops, LaunchError> {
    let stop = Arc::new(AtomicBool::new(false));
    let mut threads = Vec::new();
    let started = Instant::now();
    let capture = match &args.pcap {
        Some(dir) => Some(CaptureControl::new(dir).map_err(|e| {
            LaunchError::Usage(format!(
                "--pcap {}: cannot create the directory: {e}",
                dir.display()
            ))
        })?),
        None => None,
    };
    let pcap_signals = match &capture {
        Some(c) => Some(pcap::Signals::install(c.clone(), args.pcap_now)?),
        None => None,
    };
    if let Some(addr) = args.metrics {
        let listener = std::net::TcpListener::bind(addr)
            .map_err(|e| LaunchError::Usage(format!("--metrics {addr}: {e}")))?;
        tracing::info!(%addr, "metrics at http://{addr}/metrics");
        threads.push(metrics::serve(
            listener,
            groups.clone(),
            who.clone(),
            stop.clone(),
        )?);
    }
    let shm = if args.no_shm {
        None
    } else {
        shm::Publisher::start(groups.clone(), who, started, stop.clone())
    };
    let stats = args.stats_interval.map(|every| {
        stats::Printer::start(
            every,
            args.stats_format,
            groups.clone(),
            started,
            stop.clone(),
        )
    });
    Ok(Ops {
        stop,
        threads,
        stats,
        groups,
        capture,
        pcap_signals,
        shm,
    })
}

impl Ops {
    /// The capture control, when `--pcap` was given.
    pub fn capture(&self) -> Option<Arc<CaptureControl>> {
        self.capture.clone()
    }

    /// Stops the threads; prints the final stats line (with `--stats-interval`): the
    /// counters as the cores last published them, i.e. those of the exit report when the
    /// runtimes have returned.
    pub fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(s) = self.pcap_signals {
            s.close();
        }
        if let Some(c) = &self.capture {
            c.stop();
        }
        if let Some(p) = self.stats {
            p.finish(&self.groups);
        }
        if let Some(s) = self.shm {
            s.finish();
        }
        for t in self.threads {
            let _ = t.join();
        }
    }
}
