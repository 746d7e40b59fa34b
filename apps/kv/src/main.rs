//! `megatcp-kv`: serves memcached's protocols when started like memcached
//! (`megatcp-kv -p 11211 -m 64 -l 127.0.0.1 -t 2 --backend uring`), and generates load
//! against any memcached (`megatcp-kv load --connect 127.0.0.1:11211 ...`).

#![forbid(unsafe_code)]

mod daemon;

use std::net::Ipv4Addr;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Args;
use clap::parser::ValueSource;
use megatcp_channel::{Backend, Channel, ChannelError};
use megatcp_kv::load::{LoadArgs, print_report, run_cli};
use megatcp_kv::state::Node;
use megatcp_kv::{Kv, ServerStats, Settings, serve};
use megatcp_launch::{
    App, BackendArgs, CoreCtx, Cores, Failure, Launch, LoadCommand, OpsArgs, ServerCli,
};

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    ops: OpsArgs,
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
    /// Interface address to listen on (default: every address).
    #[arg(short = 'l', long = "listen", default_value_t = Ipv4Addr::UNSPECIFIED)]
    listen: Ipv4Addr,
    /// Number of threads: the cores 0..N (wrapping over the CPUs) when `--cores` is not
    /// given.
    #[arg(short = 't', long = "threads", value_parser = clap::value_parser!(u16).range(1..))]
    threads: Option<u16>,
    /// Run as a daemon (in the background, detached from the terminal).
    #[arg(short = 'd', long = "daemon")]
    daemon: bool,
    /// Write the process id to this file (removed at exit).
    #[arg(short = 'P', long = "pidfile")]
    pidfile: Option<std::path::PathBuf>,
    /// Run as this user once the listeners are open (root only; kernel backends).
    #[arg(short = 'u', long = "user")]
    user: Option<String>,
    /// Memory for items, in megabytes.
    #[arg(short = 'm', long = "memory-limit", default_value_t = 64)]
    memory_mb: usize,
    /// Largest item: bytes, or with a k/m suffix (`1m`, `512k`).
    #[arg(short = 'I', long = "max-item-size", default_value = "1m", value_parser = parse_size)]
    item_max: usize,
    /// Most simultaneous connections (all cores together).
    #[arg(short = 'c', long = "conn-limit", default_value_t = 1024)]
    max_conns: usize,
    /// Listen backlog (per core).
    #[arg(short = 'b', long = "listen-backlog", default_value_t = 1024)]
    backlog: u32,
    /// UDP port: only 0 (off) is supported; accepted for memcached compatibility.
    #[arg(short = 'U', long = "udp-port", default_value_t = 0)]
    udp_port: u16,
    /// Verbose: `-v` errors and warnings, `-vv` also each connection and command, as
    /// memcached prints them.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
    /// Chunk size growth factor between slab classes.
    #[arg(short = 'f', long = "slab-growth-factor", default_value_t = 1.25)]
    factor: f64,
    /// Minimum space for key, value and flags in the smallest chunk.
    #[arg(short = 'n', long = "slab-min-size", default_value_t = 48)]
    min_chunk: usize,
}

fn parse_size(s: &str) -> Result<usize, String> {
    let t = s.trim().to_ascii_lowercase();
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1024),
        Some('m') => (&t[..t.len() - 1], 1024 * 1024),
        Some('g') => (&t[..t.len() - 1], 1024 * 1024 * 1024),
        _ => (&t[..], 1),
    };
    let n: usize = num.parse().map_err(|e| format!("bad size {s:?}: {e}"))?;
    n.checked_mul(mult)
        .ok_or_else(|| format!("size {s:?} too large"))
}

struct ServeApp<'a> {
    kv: &'a Kv,
}

impl App for ServeApp<'_> {
    type Output = Result<ServerStats, ChannelError>;

    fn run<B: Backend>(&self, _: CoreCtx, ch: &mut Channel<B>) -> Self::Output {
        serve(ch, self.kv)
    }
}

/// The settings from the flags, or memcached's complaint.
fn settings(a: &ServeArgs) -> Result<Settings, Failure> {
    let usage = |m: &str| Err(Failure::Usage(m.into()));
    if a.udp_port != 0 {
        return usage("UDP is not supported: use -U 0");
    }
    if a.item_max < 1024 {
        return usage("Item max size cannot be less than 1024 bytes.");
    }
    if a.item_max > 1024 * 1024 * 1024 {
        return usage("Cannot set item size limit higher than 1 gigabyte.");
    }
    if a.factor <= 1.0 {
        return usage("Factor must be greater than 1");
    }
    if a.min_chunk == 0 {
        return usage("Chunk size must be greater than 0");
    }
    let max_bytes = a.memory_mb.saturating_mul(1024 * 1024);
    if a.item_max > max_bytes / 2 {
        return usage("Cannot set item size limit higher than 1/2 of memory max.");
    }
    Ok(Settings {
        port: a.port,
        listen: a.listen,
        max_bytes,
        item_max: a.item_max,
        max_conns: a.max_conns.max(1),
        threads: a.backend.cores.0.len(),
        backlog: a.backlog,
        verbose: u32::from(a.verbose),
        factor: a.factor,
        min_chunk: a.min_chunk,
    })
}

/// memcached refuses a port another process serves; the kernel backends listen with
/// `SO_REUSEPORT` (one listener per core), which would otherwise share it silently. A
/// plain bind tells: it fails while anyone listens there.
fn port_free(a: &ServeArgs) -> Result<(), Failure> {
    if a.backend.backend.is_bypass() {
        return Ok(());
    }
    std::net::TcpListener::bind((a.listen, a.port))
        .map(drop)
        .map_err(|e| {
            let why = match e.kind() {
                std::io::ErrorKind::AddrInUse => "Address already in use".to_string(),
                std::io::ErrorKind::PermissionDenied => "Permission denied".to_string(),
                _ => e.to_string(),
            };
            Failure::Runtime(format!("failed to listen on TCP port {}: {why}", a.port))
        })
}

fn serve_cmd(mut a: ServeArgs, threads_given: bool, cores_given: bool) -> Result<(), Failure> {
    if let (Some(t), false) = (a.threads, cores_given) {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        a.backend.cores = Cores((0..usize::from(t)).map(|i| i % cpus).collect());
    } else if threads_given && cores_given {
        tracing::warn!("-t is ignored: --cores gives the cores");
    }
    let settings = settings(&a)?;
    if a.user.is_some() && a.backend.backend.is_bypass() {
        return Err(Failure::Usage(
            "-u: the bypass backends keep root for their NIC queues; use -u with --backend epoll or uring"
                .into(),
        ));
    }
    port_free(&a)?;
    let daemon = if a.daemon {
        Some(daemon::Child::detach()?)
    } else {
        None
    };
    let kv = Arc::new(Kv::new(settings));
    if a.verbose >= 2 {
        megatcp_kv::verbose::slab_classes(&kv);
    }
    if let Some(user) = &a.user {
        daemon::become_user(user)?;
    }
    let launch = Launch::new(&a.backend).ops(&a.ops, "megatcp-kv");
    let _ = kv.node.set(Node {
        backend: format!("{:?}", a.backend.backend).to_lowercase(),
        monitors: launch.monitors(),
    });
    let ready = daemon::when_ready(
        kv.clone(),
        a.backend.cores.0.len(),
        a.pidfile.clone(),
        daemon,
    );
    let cores = launch.run(&ServeApp { kv: &kv });
    ready.finish();
    let cores = cores?;
    if a.verbose >= 2 {
        for c in &cores {
            eprintln!("{}", c.report);
        }
    }
    megatcp_launch::cores_failed("megatcp-kv", &cores)
}

fn main() -> ExitCode {
    let (cli, matches) = ServerCli::<ServeArgs, LoadArgs>::parse(
        "megatcp-kv",
        "memcached-compatible key-value server (and load generator) on megatcp",
        "Generate load against a memcached server (text protocol), verifying responses",
    );
    let given = |id: &str| matches.value_source(id) == Some(ValueSource::CommandLine);
    let level = match cli.serve.verbose {
        0 => "error",
        1 => "warn",
        _ => "info",
    };
    megatcp_launch::logging::init(level);
    let result = match cli.load {
        None => {
            let (t, c) = (given("threads"), given("cores"));
            serve_cmd(cli.serve, t, c).map(|()| 0)
        }
        Some(LoadCommand::Load(a)) => run_cli(&a).map(|r| {
            print_report(&r, a.json);
            r.errors.total()
        }),
    };
    megatcp_launch::exit_status("megatcp-kv", result, false)
}
