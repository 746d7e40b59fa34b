//! `megatcp-kv`: serves memcached's protocols when started like memcached
//! (`megatcp-kv -p 11211 -m 64 --backend uring --cores 0,1`), and generates load against
//! any memcached (`megatcp-kv load --connect 127.0.0.1:11211 ...`).

#![forbid(unsafe_code)]

use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use megatcp_channel::{Backend, Channel, ChannelError};
use megatcp_kv::load::{LoadArgs, print_report, run_cli};
use megatcp_kv::{Kv, ServerStats, Settings, serve};
use megatcp_launch::{App, BackendArgs, CoreCtx};

#[derive(Parser)]
#[command(
    name = "megatcp-kv",
    version,
    about = "memcached-compatible key-value server (and load generator) on megatcp",
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
    /// Generate load against a memcached server (text protocol), verifying responses.
    Load(LoadArgs),
}

#[derive(Args)]
struct ServeArgs {
    #[command(flatten)]
    backend: BackendArgs,
    /// TCP port to listen on.
    #[arg(short = 'p', long = "port", default_value_t = 11211)]
    port: u16,
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
    /// Verbose (repeat for more).
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

fn serve_cmd(a: ServeArgs) -> Result<(), String> {
    if a.udp_port != 0 {
        return Err("UDP is not supported: use -U 0".into());
    }
    if a.item_max < 1024 {
        return Err("Item max size cannot be less than 1024 bytes.".into());
    }
    if a.item_max > 1024 * 1024 * 1024 {
        return Err("Cannot set item size limit higher than 1 gigabyte.".into());
    }
    if a.factor <= 1.0 {
        return Err("Factor must be greater than 1".into());
    }
    if a.min_chunk == 0 {
        return Err("Chunk size must be greater than 0".into());
    }
    let max_bytes = a.memory_mb.saturating_mul(1024 * 1024);
    if a.item_max > max_bytes / 2 {
        return Err("Cannot set item size limit higher than 1/2 of memory max.".into());
    }
    let settings = Settings {
        port: a.port,
        max_bytes,
        item_max: a.item_max,
        max_conns: a.max_conns.max(1),
        threads: a.backend.cores.0.len(),
        backlog: a.backlog,
        verbose: u32::from(a.verbose),
        factor: a.factor,
        min_chunk: a.min_chunk,
    };
    let kv = Kv::new(settings);
    if a.verbose > 0 {
        eprintln!(
            "megatcp-kv: port {} ({:?}, cores {:?}), {} MiB in {} stripes, items up to {} B, {} connections",
            a.port,
            a.backend.backend,
            a.backend.cores.0,
            a.memory_mb,
            kv.store.stripes(),
            a.item_max,
            a.max_conns
        );
    }
    let cores =
        megatcp_launch::run(&a.backend, &ServeApp { kv: &kv }).map_err(|e| e.to_string())?;
    let mut failed = 0;
    for c in &cores {
        if a.verbose > 0 {
            eprintln!("{}", c.report);
        }
        match &c.output {
            Some(Ok(s)) if a.verbose > 0 => eprintln!("core {}: {s:?}", c.index),
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                failed += 1;
                eprintln!("megatcp-kv: core {}: {e}", c.index);
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
    let result = match cli.cmd {
        None => serve_cmd(cli.serve).map(|()| 0),
        Some(Cmd::Load(a)) => run_cli(&a).map(|r| {
            print_report(&r, a.json);
            r.errors.total()
        }),
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("megatcp-kv: {errors} errors");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("megatcp-kv: {e}");
            ExitCode::from(2)
        }
    }
}
