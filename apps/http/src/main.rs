//! `megatcp-http`: serves a directory from memory (`megatcp-http --root DIR -p 8080`, plus
//! the shared backend flags), and generates verified HTTP load
//! (`megatcp-http load --connect 127.0.0.1:8080 ...`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use megatcp_channel::{Backend, Channel, ChannelError};
use megatcp_http::files::{Files, Limits as FileLimits};
use megatcp_http::load::{LoadArgs, run_cli};
use megatcp_http::server::{AccessLog, ServerConfig, ServerStats, serve};
use megatcp_http::session::Limits;
use megatcp_launch::{App, BackendArgs, CoreCtx};

#[derive(Parser)]
#[command(
    name = "megatcp-http",
    version,
    about = "Static HTTP/1.1 server (and load generator) on megatcp",
    args_conflicts_with_subcommands = true
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
    #[command(flatten)]
    serve: ServeArgs,
}

#[derive(Subcommand)]
enum Cmd {
    /// Generate HTTP load against any server, checking every response byte for byte.
    Load(LoadArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// Directory to serve (read into memory at start). Without it only `/hello` is served.
    #[arg(long)]
    root: Option<PathBuf>,
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 8080)]
    port: u16,
    /// Size of the built-in `/hello` body, bytes.
    #[arg(long, default_value_t = 64)]
    hello_size: usize,
    /// Do not serve the built-in `/hello`.
    #[arg(long)]
    no_hello: bool,
    /// Most bytes of files read from --root.
    #[arg(long, default_value_t = 1 << 30)]
    max_bytes: u64,
    /// Most files read from --root.
    #[arg(long, default_value_t = 100_000)]
    max_files: usize,
    /// Append an access log to this file (written by its own thread, off the data path).
    #[arg(long)]
    access_log: Option<PathBuf>,
    /// Print each core's counters every this many seconds.
    #[arg(long)]
    stats: Option<f64>,
    /// Most open connections (all cores together).
    #[arg(long, default_value_t = 100_000)]
    max_conns: usize,
    /// Listen backlog (per core).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Seconds for a request to arrive whole (slow clients are closed).
    #[arg(long, default_value_t = 10.0)]
    header_timeout: f64,
    /// Seconds an idle keep-alive connection stays open.
    #[arg(long, default_value_t = 60.0)]
    idle_timeout: f64,
    /// Largest request head (request line and headers), bytes.
    #[arg(long, default_value_t = 16 * 1024)]
    max_header_bytes: usize,
    /// Most request header fields (at most 128).
    #[arg(long, default_value_t = 64)]
    max_headers: usize,
    /// Longest request target, bytes.
    #[arg(long, default_value_t = 8 * 1024)]
    max_uri: usize,
    /// Largest request body (discarded), bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    max_body: u64,
    /// Requests per connection before `Connection: close` (0: no limit).
    #[arg(long, default_value_t = 0)]
    max_requests: u64,
    /// Verbose: the backend's per-core report and counters at exit.
    #[arg(short = 'v', action = clap::ArgAction::Count)]
    verbose: u8,
}

struct ServeApp<'a> {
    files: &'a Files,
    cfg: &'a ServerConfig,
    log: Option<&'a AccessLog>,
}

impl App for ServeApp<'_> {
    type Output = Result<ServerStats, ChannelError>;

    fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> Self::Output {
        serve(ch, self.files, self.cfg, self.log, ctx.index)
    }
}

fn millis(secs: f64, what: &str) -> Result<u64, String> {
    Duration::try_from_secs_f64(secs)
        .map(|d| d.as_millis() as u64)
        .map_err(|e| format!("bad --{what} {secs}: {e}"))
}

fn serve_cmd(a: ServeArgs) -> Result<(), String> {
    let mut files = match &a.root {
        Some(root) => Files::load(
            root,
            FileLimits {
                max_bytes: a.max_bytes,
                max_files: a.max_files,
            },
        )
        .map_err(|e| e.to_string())?,
        None => Files::empty(),
    };
    if !a.no_hello {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        files.add_hello(a.hello_size, now);
    }
    let cores = a.backend.cores.0.len().max(1);
    let cfg = ServerConfig {
        port: a.port,
        backlog: a.backlog,
        max_conns: a.max_conns.div_ceil(cores).max(1),
        limits: Limits {
            max_header_bytes: a.max_header_bytes.max(64),
            max_headers: a.max_headers.clamp(1, megatcp_http::session::MAX_HEADERS),
            max_uri: a.max_uri.max(1),
            max_body: a.max_body,
            header_timeout_ms: millis(a.header_timeout, "header-timeout")?,
            idle_timeout_ms: millis(a.idle_timeout, "idle-timeout")?,
            max_requests: a.max_requests,
            ..Limits::default()
        },
        stats_every: a
            .stats
            .map(Duration::try_from_secs_f64)
            .transpose()
            .map_err(|e| format!("bad --stats: {e}"))?,
    };
    let log = match &a.access_log {
        Some(p) => Some(AccessLog::open(p).map_err(|e| format!("{}: {e}", p.display()))?),
        None => None,
    };
    eprintln!(
        "megatcp-http: serving {} files ({} bytes) on port {} ({:?}, cores {:?})",
        files.len(),
        files.bytes(),
        a.port,
        a.backend.backend,
        a.backend.cores.0
    );
    let app = ServeApp {
        files: &files,
        cfg: &cfg,
        log: log.as_ref(),
    };
    let outcome = megatcp_launch::run(&a.backend, &app).map_err(|e| e.to_string());
    if let Some(log) = log {
        log.finish().map_err(|e| format!("access log: {e}"))?;
    }
    let mut failed = 0;
    for c in &outcome? {
        if a.verbose > 0 {
            eprintln!("{}", c.report);
        }
        match &c.output {
            Some(Ok(s)) if a.verbose > 0 => eprintln!("megatcp-http: core {}: {s}", c.index),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                failed += 1;
                eprintln!("megatcp-http: core {}: {e}", c.index);
            }
            None => failed += 1,
        }
    }
    if failed > 0 {
        Err(format!("{failed} cores failed"))
    } else {
        Ok(())
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Notices of the backends (AF_XDP mode, fallbacks, hints); RUST_LOG overrides.
    megatcp_launch::logging::init("info");
    let result = match cli.cmd {
        None => serve_cmd(cli.serve).map(|()| 0),
        Some(Cmd::Load(a)) => run_cli(&a).map(|r| {
            megatcp_launch::report::print(&r, a.json);
            r.errors.total()
        }),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("megatcp-http: {errors} errors");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("megatcp-http: {e}");
            ExitCode::from(2)
        }
    }
}
