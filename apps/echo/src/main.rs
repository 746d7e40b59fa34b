//! `megatcp-echo`: echo server, load generator, and both in one process over the in-memory
//! wire (`pair`).

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand, ValueEnum};
use megatcp_channel::epoll::Epoll;
use megatcp_channel::{Channel, ChannelStats};
use megatcp_echo::pair::{PairOpts, run_pair};
use megatcp_echo::{LoadOpts, LoadReport, MsgSize, run_load, serve, serve_sockperf};
use megatcp_engine::{CoreCtx, EngineError, Runtime};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};

#[derive(Parser)]
#[command(
    name = "megatcp-echo",
    version,
    about = "Echo/RPC server and load generator on megatcp"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Serve echo.
    Serve {
        #[command(flatten)]
        backend: BackendArgs,
        /// Listening port.
        #[arg(long, default_value_t = 7)]
        port: u16,
        /// Backlog per core.
        #[arg(long, default_value_t = 4096)]
        backlog: u32,
        /// What to speak: plain echo, or sockperf's framing (for Debian's `sockperf` client).
        #[arg(long, value_enum, default_value_t = Protocol::Echo)]
        protocol: Protocol,
    },
    /// Generate load against an echo server.
    Load {
        #[command(flatten)]
        backend: BackendArgs,
        /// Server address.
        #[arg(long)]
        connect: SocketAddrV4,
        #[command(flatten)]
        load: LoadArgs,
    },
    /// Server and load generator in one process, joined by the in-memory wire (no root).
    Pair {
        #[command(flatten)]
        load: LoadArgs,
        /// CPUs of the server (one stack each).
        #[arg(long, default_value = "0")]
        server_cores: Cores,
        /// CPUs of the load generator.
        #[arg(long, default_value = "1")]
        client_cores: Cores,
        /// TCP buffer size per connection and direction, bytes.
        #[arg(long, default_value_t = 16 * 1024)]
        buffer: usize,
        /// Busy-poll instead of backing off when idle.
        #[arg(long)]
        busy_poll: bool,
    },
}

/// Backends a megatcp server can run on.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Backend {
    /// In-memory wire (only inside one process: see `pair`).
    Wire,
    /// AF_XDP (build with `--features afxdp`): kernel-bypass on `--iface` with `--ip`.
    Afxdp,
    /// DPDK (planned).
    Dpdk,
    /// Linux io_uring (planned).
    Uring,
    /// Linux epoll: the kernel's TCP, edge-triggered, SO_REUSEPORT listener per core.
    Epoll,
}

/// What the server speaks.
#[derive(Clone, Copy, Debug, ValueEnum)]
enum Protocol {
    /// Every byte read is written back.
    Echo,
    /// sockperf's messages: pong requests answered, throughput messages consumed.
    Sockperf,
}

/// Runs the chosen protocol's server on a channel.
fn serve_protocol<B: megatcp_channel::Backend>(
    protocol: Protocol,
    ch: &mut Channel<B>,
    port: u16,
    backlog: u32,
) -> Result<megatcp_echo::ServerStats, megatcp_channel::ChannelError> {
    match protocol {
        Protocol::Echo => serve(ch, port, backlog),
        Protocol::Sockperf => serve_sockperf(ch, port, backlog),
    }
}

/// Flags shared by every megatcp server binary.
#[derive(Args)]
struct BackendArgs {
    /// Which network path to run on.
    #[arg(long, value_enum, default_value_t = Backend::Wire)]
    backend: Backend,
    /// CPUs to run on, e.g. `0`, `0,1`, `0-3`.
    #[arg(long, default_value = "0")]
    cores: Cores,
    /// Interface (bypass backends).
    #[arg(long)]
    iface: Option<String>,
    /// Local address with prefix, e.g. 10.77.0.1/24 (bypass backends).
    #[arg(long)]
    ip: Option<String>,
    /// Gateway for off-subnet destinations (bypass backends).
    #[arg(long)]
    gateway: Option<Ipv4Addr>,
}

#[derive(Args, Clone)]
struct LoadArgs {
    /// Concurrent connections (in all).
    #[arg(long, default_value_t = 64)]
    connections: usize,
    /// Message size in bytes, or a range `LO..HI` drawn per transaction.
    #[arg(long, default_value = "64")]
    msg_size: MsgSize,
    /// Transactions per connection: 1 = a new connection per transaction, 0 = persistent.
    #[arg(long, default_value_t = 0)]
    txns_per_conn: u64,
    /// Measured duration, e.g. `5s`, `500ms`.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    duration: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    warmup: Duration,
    /// Open loop: transactions per second in all (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many transactions (in all), even before `--duration`.
    #[arg(long)]
    max_txns: Option<u64>,
    /// Close connections with RST (no TIME-WAIT) instead of FIN: short-connection runs need
    /// it, or source ports run out while closed connections wait in TIME-WAIT.
    #[arg(long)]
    close_rst: bool,
    /// Print the report as JSON.
    #[arg(long)]
    json: bool,
}

impl LoadArgs {
    fn opts(&self, target: SocketAddrV4) -> LoadOpts {
        LoadOpts {
            target,
            connections: self.connections,
            msg: self.msg_size,
            txns_per_conn: self.txns_per_conn,
            duration: self.duration,
            warmup: self.warmup,
            rate: self.rate,
            max_txns: self.max_txns,
            seed: 0x5eed,
            close_rst: self.close_rst,
        }
    }
}

/// A list of CPUs: `0`, `0,1`, `0-3`.
#[derive(Clone, Debug)]
struct Cores(Vec<usize>);

impl std::str::FromStr for Cores {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        parse_cores(s).map(Cores)
    }
}

fn parse_cores(s: &str) -> Result<Vec<usize>, String> {
    let mut out = Vec::new();
    for part in s.split(',').filter(|p| !p.is_empty()) {
        let num = |t: &str| {
            t.trim()
                .parse::<usize>()
                .map_err(|e| format!("bad CPU {t:?}: {e}"))
        };
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (num(a)?, num(b)?);
                if a > b {
                    return Err(format!("bad CPU range {part:?}"));
                }
                out.extend(a..=b);
            }
            None => out.push(num(part)?),
        }
    }
    if out.is_empty() {
        return Err("no CPU given".into());
    }
    Ok(out)
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.len()));
    let v: f64 = num
        .parse()
        .map_err(|e| format!("bad duration {s:?}: {e}"))?;
    let secs = match unit {
        "" | "s" => v,
        "ms" => v / 1e3,
        "us" => v / 1e6,
        "m" => v * 60.0,
        _ => return Err(format!("bad duration unit in {s:?} (use s, ms, us, m)")),
    };
    if !secs.is_finite() || secs < 0.0 {
        return Err(format!("bad duration {s:?}"));
    }
    Ok(Duration::from_secs_f64(secs))
}

fn print_report(r: &LoadReport, json: bool) {
    if json {
        match serde_json::to_string_pretty(r) {
            Ok(s) => println!("{s}"),
            Err(e) => eprintln!("cannot encode the report: {e}"),
        }
    } else {
        println!("{r}");
    }
}

/// Runs `app` on every core of `args` over the epoll backend.
fn run_epoll<R: Send>(
    args: &BackendArgs,
    app: impl Fn(CoreCtx, &mut Channel<Epoll>) -> R + Sync,
) -> Result<Vec<(Option<R>, ChannelStats)>, String> {
    let results = std::sync::Mutex::new(Vec::new());
    let per_core = Runtime::new(&args.cores.0)
        .run_with(
            |core, stop| {
                Epoll::new(stop).map_err(|e| EngineError::Backend {
                    core,
                    reason: e.to_string(),
                })
            },
            |ctx, ch| {
                let r = app(ctx, ch);
                if let Ok(mut v) = results.lock() {
                    v.push((ctx.index, r));
                }
            },
            |index, ch| (index, ch.stats()),
        )
        .map_err(|e| e.to_string())?;
    let mut results = results
        .into_inner()
        .map_err(|_| "result lock poisoned".to_string())?;
    Ok(per_core
        .into_iter()
        .map(|(index, stats)| {
            let r = results
                .iter()
                .position(|(i, _)| *i == index)
                .map(|p| results.swap_remove(p).1);
            (r, stats)
        })
        .collect())
}

/// The stack configuration of a bypass backend on `iface` with `--ip`/`--gateway`.
#[cfg_attr(not(feature = "afxdp"), allow(dead_code))]
fn bypass_stack_config(args: &BackendArgs, iface: &str) -> Result<StackConfig, String> {
    let ip = args
        .ip
        .as_deref()
        .ok_or("--ip ADDR/PREFIX is required with this backend")?;
    let (addr, prefix) = ip
        .split_once('/')
        .ok_or("--ip needs a prefix length: ADDR/PREFIX")?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| format!("--ip {ip}: {e}"))?;
    let prefix: u8 = prefix.parse().map_err(|e| format!("--ip {ip}: {e}"))?;
    let mac_text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| format!("interface {iface}: {e}"))?;
    let mut mac = [0u8; 6];
    for (i, part) in mac_text.trim().split(':').enumerate() {
        let b = u8::from_str_radix(part, 16).map_err(|_| format!("bad MAC {mac_text:?}"))?;
        *mac.get_mut(i).ok_or(format!("bad MAC {mac_text:?}"))? = b;
    }
    let mut c = StackConfig::new(MacAddr(mac), LocalAddr::new(addr, prefix));
    c.gateway = args.gateway;
    c.seed = std::process::id() as u64 ^ (u64::from(u32::from(addr)) << 16);
    Ok(c)
}

/// Opens queue `q` of `iface`, one of `queues`.
#[cfg(feature = "afxdp")]
fn open_afxdp(
    iface: &str,
    q: usize,
    queues: u16,
) -> Result<megatcp_nic::afxdp::AfXdpQueue, String> {
    let mut cfg = megatcp_nic::afxdp::AfXdpConfig::new(iface, q as u32);
    cfg.queues = queues;
    megatcp_nic::afxdp::AfXdpQueue::open(&cfg).map_err(|e| e.to_string())
}

#[cfg(feature = "afxdp")]
fn serve_afxdp(
    backend: &BackendArgs,
    port: u16,
    backlog: u32,
    protocol: Protocol,
) -> Result<u64, String> {
    let iface = backend
        .iface
        .clone()
        .ok_or("--iface is required with --backend afxdp")?;
    let stack = bypass_stack_config(backend, &iface)?;
    let cores = backend.cores.0.len() as u16;
    eprintln!(
        "megatcp-echo: serving echo on {iface} port {port} (afxdp, cores {:?})",
        backend.cores.0
    );
    let reports = Runtime::new(&backend.cores.0)
        .run(
            |q| open_afxdp(&iface, q, cores),
            |_| stack.clone(),
            |_, ch| {
                if let Err(e) = serve_protocol(protocol, ch, port, backlog) {
                    eprintln!("megatcp-echo: {e}");
                }
            },
        )
        .map_err(|e| e.to_string())?;
    for r in &reports {
        eprintln!("{r}");
    }
    Ok(0)
}

#[cfg(feature = "afxdp")]
fn load_afxdp(
    backend: &BackendArgs,
    connect: SocketAddrV4,
    load: &LoadArgs,
) -> Result<LoadReport, String> {
    let iface = backend
        .iface
        .clone()
        .ok_or("--iface is required with --backend afxdp")?;
    let stack = bypass_stack_config(backend, &iface)?;
    let n = backend.cores.0.len();
    let base = load.opts(connect);
    let reports = std::sync::Mutex::new(Vec::new());
    let cores = Runtime::new(&backend.cores.0)
        .run(
            |q| open_afxdp(&iface, q, n as u16),
            |core| {
                let mut c = stack.clone();
                c.seed ^= 0x1000 * core as u64;
                c
            },
            |ctx, ch| {
                let opts = base.share(n, ctx.index);
                let r = run_load(ch, opts);
                if let Ok(mut v) = reports.lock() {
                    v.push(r);
                }
            },
        )
        .map_err(|e| e.to_string())?;
    for c in &cores {
        eprintln!("{c}");
    }
    let reports = reports
        .into_inner()
        .map_err(|_| "report lock poisoned".to_string())?;
    LoadReport::merge(&reports).ok_or_else(|| "no core produced a report".to_string())
}

#[cfg(not(feature = "afxdp"))]
fn load_afxdp(_: &BackendArgs, _: SocketAddrV4, _: &LoadArgs) -> Result<LoadReport, String> {
    Err("this binary was built without AF_XDP: cargo build --release -p megatcp-echo --features afxdp".into())
}

#[cfg(not(feature = "afxdp"))]
fn serve_afxdp(_: &BackendArgs, _: u16, _: u32, _: Protocol) -> Result<u64, String> {
    Err("this binary was built without AF_XDP: cargo build --release -p megatcp-echo --features afxdp".into())
}

fn serve_cmd(
    backend: BackendArgs,
    port: u16,
    backlog: u32,
    protocol: Protocol,
) -> Result<u64, String> {
    match backend.backend {
        Backend::Afxdp => serve_afxdp(&backend, port, backlog, protocol),
        Backend::Epoll => {
            eprintln!(
                "megatcp-echo: serving echo on port {port} (epoll, cores {:?})",
                backend.cores.0
            );
            let out = run_epoll(&backend, |_, ch| {
                serve_protocol(protocol, ch, port, backlog)
            })?;
            let mut failed = 0;
            for (i, (r, stats)) in out.iter().enumerate() {
                match r {
                    Some(Ok(s)) => eprintln!(
                        "core {i}: accepted {} echoed {} B resets {} errors {}; dispatches {} flushes {}",
                        s.accepted, s.bytes, s.resets, s.errors, stats.dispatches, stats.flushes
                    ),
                    Some(Err(e)) => {
                        failed += 1;
                        eprintln!("core {i}: {e}");
                    }
                    None => failed += 1,
                }
            }
            if failed > 0 {
                Err(format!("{failed} cores failed"))
            } else {
                Ok(0)
            }
        }
        other => Err(unavailable(other)),
    }
}

fn load_cmd(
    backend: BackendArgs,
    connect: SocketAddrV4,
    load: &LoadArgs,
) -> Result<LoadReport, String> {
    match backend.backend {
        Backend::Afxdp => load_afxdp(&backend, connect, load),
        Backend::Epoll => {
            let n = backend.cores.0.len();
            let base = load.opts(connect);
            let out = run_epoll(&backend, |ctx, ch| {
                let opts = base.share(n, ctx.index);
                run_load(ch, opts)
            })?;
            let reports: Vec<LoadReport> = out.into_iter().filter_map(|(r, _)| r).collect();
            LoadReport::merge(&reports).ok_or_else(|| "no core produced a report".to_string())
        }
        other => Err(unavailable(other)),
    }
}

fn unavailable(backend: Backend) -> String {
    match backend {
        Backend::Wire => "the wire backend joins two endpoints inside one process: use \
                          `megatcp-echo pair`"
            .into(),
        other => format!("backend {other:?} is not built yet"),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.cmd {
        Cmd::Serve {
            backend,
            port,
            backlog,
            protocol,
        } => serve_cmd(backend, port, backlog, protocol),
        Cmd::Load {
            backend,
            connect,
            load,
        } => load_cmd(backend, connect, &load).map(|r| {
            print_report(&r, load.json);
            r.errors.total()
        }),
        Cmd::Pair {
            load,
            server_cores,
            client_cores,
            buffer,
            busy_poll,
        } => {
            let json = load.json;
            let opts = PairOpts {
                load: load.opts(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
                server_cores: server_cores.0,
                client_cores: client_cores.0,
                buffer,
                busy_poll,
            };
            run_pair(opts).map(|r| {
                for c in r.server.iter().chain(r.client.iter()) {
                    eprintln!("{c}");
                }
                print_report(&r.load, json);
                r.load.errors.total()
            })
        }
    };
    match result {
        Ok(0) => ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("megatcp-echo: {errors} errors");
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("megatcp-echo: {e}");
            ExitCode::from(2)
        }
    }
}
