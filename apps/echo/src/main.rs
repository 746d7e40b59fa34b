//! `megatcp-echo`: echo server, load generator, and both in one process over the in-memory
//! wire (`pair`).

#![forbid(unsafe_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use megatcp_echo::pair::{FaultConfig, PairConfig, PairOpts, run_pair};
use megatcp_echo::{LoadOpts, LoadReport, MsgSize, Protocol, ServeApp, ServeOpts};
use megatcp_launch::{BackendArgs, Cores, Failure, Launch, OpsArgs};

#[derive(Parser)]
#[command(
    name = "megatcp-echo",
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
        /// Echo: close each connection (FIN) once this many bytes were echoed, HTTP
        /// `Connection: close` style (the server closes first and holds TIME-WAIT); e.g. the
        /// message size times the client's `--txns-per-conn`.
        #[arg(long, value_name = "BYTES", value_parser = clap::value_parser!(u64).range(1..))]
        close_after: Option<u64>,
        #[command(flatten)]
        ops: OpsArgs,
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
    /// Raw-frame reflection over AF_XDP or DPDK, no TCP: the medium's ceiling (`reflect serve`,
    /// `reflect load`).
    #[command(subcommand)]
    Reflect(megatcp_launch::reflect::ReflectCmd),
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
        #[command(flatten)]
        ops: OpsArgs,
        #[command(flatten)]
        faults: FaultArgs,
    },
}

/// Faults the in-memory wire injects into what each side receives (seeded, reproducible).
#[derive(Args, Clone, Debug)]
struct FaultArgs {
    /// Probability that a frame is lost, e.g. 0.01.
    #[arg(long, default_value_t = 0.0)]
    loss: f64,
    /// Probability that a frame is delivered twice.
    #[arg(long, default_value_t = 0.0)]
    dup: f64,
    /// Probability that a frame is delivered after later ones (up to 8 later).
    #[arg(long, default_value_t = 0.0)]
    reorder: f64,
    /// Seed of the fault decisions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
}

impl FaultArgs {
    /// The faults, or none when every probability is zero.
    fn config(&self) -> Option<FaultConfig> {
        (self.loss > 0.0 || self.dup > 0.0 || self.reorder > 0.0).then(|| FaultConfig {
            seed: self.seed,
            loss: self.loss,
            duplicate: self.dup,
            reorder: self.reorder,
            ..FaultConfig::default()
        })
    }
}

fn serve_cmd(
    backend: BackendArgs,
    protocol: Protocol,
    opts: ServeOpts,
    ops: &OpsArgs,
) -> Result<u64, Failure> {
    if opts.close_after.is_some() && !matches!(protocol, Protocol::Echo) {
        return Err(Failure::Usage(
            "--close-after applies to --protocol echo only".into(),
        ));
    }
    eprintln!(
        "megatcp-echo: serving {protocol:?} on port {} ({:?}, cores {:?})",
        opts.port, backend.backend, backend.cores.0
    );
    let app = ServeApp { protocol, opts };
    let cores = Launch::new(&backend)
        .ops(ops, "megatcp-echo serve")
        .run(&app)?;
    for c in &cores {
        eprintln!("{}", c.report);
        if let Some(Ok(s)) = &c.output {
            eprintln!(
                "core {}: accepted {} echoed {} B resets {} errors {}",
                c.index, s.accepted, s.bytes, s.resets, s.errors
            );
        }
    }
    megatcp_launch::cores_failed("megatcp-echo", &cores).map(|()| 0)
}

fn load_cmd(
    backend: BackendArgs,
    connect: SocketAddrV4,
    load: &LoadArgs,
) -> Result<LoadReport, Failure> {
    let base = load.opts(connect);
    megatcp_launch::load::run_shares(Launch::new(&backend), &base, true)
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
    /// Measured duration, e.g. `5s`, `500ms`, `1.5s`, `2m`.
    #[arg(long, default_value = "5s", value_parser = megatcp_launch::duration::parse)]
    duration: Duration,
    /// Warm-up before measuring.
    #[arg(long, default_value = "500ms", value_parser = megatcp_launch::duration::parse)]
    warmup: Duration,
    /// Open loop: transactions per second in all (default: closed loop).
    #[arg(long)]
    rate: Option<f64>,
    /// Stop after this many transactions (in all), even before `--duration`.
    #[arg(long)]
    max_txns: Option<u64>,
    /// Close connections with RST (no TIME-WAIT) instead of FIN. FIN closes are the default
    /// and hold up at full rate (TIME-WAIT is a compact record, and its ports are reused
    /// safely); RST is for comparing the two.
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

fn main() -> ExitCode {
    let (cli, _) = megatcp_launch::parse_args::<Cli>();
    megatcp_launch::logging::init("info");
    let result = match cli.cmd {
        Cmd::Serve {
            backend,
            port,
            backlog,
            protocol,
            close_after,
            ops,
        } => serve_cmd(
            backend,
            protocol,
            ServeOpts {
                port,
                backlog,
                close_after,
            },
            &ops,
        ),
        Cmd::Load {
            backend,
            connect,
            load,
        } => load_cmd(backend, connect, &load).map(|r| {
            megatcp_launch::report::print(&r, load.json);
            r.errors.total()
        }),
        Cmd::Pair {
            load,
            server_cores,
            client_cores,
            buffer,
            busy_poll,
            ops,
            faults,
        } => {
            let json = load.json;
            let opts = PairOpts {
                load: load.opts(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0)),
                pair: PairConfig {
                    server_cores: server_cores.0,
                    client_cores: client_cores.0,
                    buffer,
                    busy_poll,
                    ops: Some(ops),
                    faults: faults.config(),
                },
            };
            run_pair(opts).map_err(Failure::from).map(|r| {
                for c in r.server.iter().chain(r.client.iter()) {
                    eprintln!("{c}");
                }
                megatcp_launch::report::print(&r.load, json);
                r.load.errors.total()
            })
        }
        Cmd::Reflect(cmd) => megatcp_launch::reflect::run(cmd)
            .map(|()| 0)
            .map_err(Failure::Runtime),
    };
    megatcp_launch::exit_status("megatcp-echo", result, true)
}
