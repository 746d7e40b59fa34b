//! `megatcp-http`: serves a directory from memory (`megatcp-http --root DIR -p 8080`, plus
//! the shared backend flags), and generates verified HTTP load
//! (`megatcp-http load --connect 127.0.0.1:8080 ...`).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use megatcp_channel::{Backend, Channel, ChannelError};
use megatcp_http::files::{Files, Limits as FileLimits, LoadError};
use megatcp_http::load::{LoadArgs, run_cli};
use megatcp_http::server::{AccessLog, ServerConfig, ServerStats, serve};
use megatcp_http::session::Limits;
use megatcp_launch::duration::parse as duration;
use megatcp_launch::{App, BackendArgs, CoreCtx, Failure, Launch, LoadCommand, OpsArgs, ServerCli};

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    #[command(flatten)]
    ops: OpsArgs,
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
    /// Print each core's HTTP counters at this interval (e.g. `1s`).
    #[arg(long, value_name = "DURATION", value_parser = duration)]
    stats: Option<Duration>,
    /// Most open connections (all cores together).
    #[arg(long, default_value_t = 100_000)]
    max_conns: usize,
    /// Listen backlog (per core).
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
    /// Time for a request to arrive whole (slow clients are closed).
    #[arg(long, default_value = "10s", value_parser = duration)]
    header_timeout: Duration,
    /// How long an idle keep-alive connection stays open.
    #[arg(long, default_value = "60s", value_parser = duration)]
    idle_timeout: Duration,
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

fn serve_cmd(a: ServeArgs) -> Result<u64, Failure> {
    let mut files = match &a.root {
        Some(root) => Files::load(
            root,
            FileLimits {
                max_bytes: a.max_bytes,
                max_files: a.max_files,
            },
        )
        .map_err(|e| match e {
            // The tree does not fit the bounds the flags set: a usage error.
            LoadError::Io { .. } => Failure::Runtime(e.to_string()),
            _ => Failure::Usage(e.to_string()),
        })?,
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
            header_timeout_ms: a.header_timeout.as_millis() as u64,
            idle_timeout_ms: a.idle_timeout.as_millis() as u64,
            max_requests: a.max_requests,
            ..Limits::default()
        },
        stats_every: a.stats,
    };
    let log = match &a.access_log {
        Some(p) => Some(
            AccessLog::open(p).map_err(|e| Failure::Runtime(format!("{}: {e}", p.display())))?,
        ),
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
    let outcome = Launch::new(&a.backend)
        .ops(&a.ops, "megatcp-http")
        .run(&app);
    if let Some(log) = log {
        log.finish()
            .map_err(|e| Failure::Runtime(format!("access log: {e}")))?;
    }
    let cores = outcome?;
    if a.verbose > 0 {
        for c in &cores {
            eprintln!("{}", c.report);
            if let Some(Ok(s)) = &c.output {
                eprintln!("megatcp-http: core {}: {s}", c.index);
            }
        }
    }
    megatcp_launch::cores_failed("megatcp-http", &cores).map(|()| 0)
}

fn main() -> ExitCode {
    let (cli, _) = ServerCli::<ServeArgs, LoadArgs>::parse(
        "megatcp-http",
        "Static HTTP/1.1 server (and load generator) on megatcp",
        "Generate HTTP load against any server, checking every response byte for byte",
    );
    // Notices of the backends (AF_XDP mode, fallbacks, hints); RUST_LOG overrides.
    megatcp_launch::logging::init("info");
    let result = match cli.load {
        None => serve_cmd(cli.serve),
        Some(LoadCommand::Load(a)) => run_cli(&a).map(|r| {
            megatcp_launch::report::print(&r, a.json);
            r.errors.total()
        }),
    };
    megatcp_launch::exit_status("megatcp-http", result, true)
}
