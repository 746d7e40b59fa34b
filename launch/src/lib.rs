//! Runs one megatcp application on any backend, one channel per core: launch builds every
//! runtime of the project (the bypass engine on AF_XDP, DPDK or the in-memory wire; the
//! kernel backends epoll and io_uring), so that applications depend on the channel API and
//! this crate only.
//!
//! Every server and load binary of the project takes the same backend flags
//! ([`BackendArgs`]: `--backend wire|afxdp|dpdk|uring|epoll`, `--cores`, `--iface`, `--ip`,
//! `--gateway`, `--dpdk-args`, `--pci`, and for a real NIC [`NicArgs`]: `--queues`, `--mtu`,
//! `--zero-copy`, `--tx-csum-offload`, `--xdp`, `--xdp-ports`, `--rss-key`) and hands its per-core code to [`run`] as an [`App`]:
//! a value whose `run` method is generic over the channel's backend, so the very same
//! application code runs over the kernel-bypass engine and over the Linux kernel. [`pair`]
//! runs a server and a client application in one process over the in-memory wire.
//!
//! # Driving it
//!
//! ```no_run
//! use megatcp_channel::{Backend, Channel};
//! use megatcp_launch::{App, BackendArgs, CoreCtx};
//!
//! struct Hello;
//! impl App for Hello {
//!     type Output = usize;
//!     fn run<B: Backend>(&self, ctx: CoreCtx, _ch: &mut Channel<B>) -> usize {
//!         ctx.index
//!     }
//! }
//!
//! # fn main() -> Result<(), megatcp_launch::LaunchError> {
//! let args = BackendArgs::default();
//! for core in megatcp_launch::run(&args, &Hello)? {
//!     println!("core {}: {:?} ({})", core.index, core.output, core.report);
//! }
//! # Ok(()) }
//! ```
//!
//! [`run`] blocks until the application returned on every core (or SIGINT/SIGTERM asked it
//! to stop: the channel's `is_stopping` turns true), then returns one [`CoreOutcome`] per
//! core, in core order. [`Launch`] is the same with the runtime's settings in reach (no
//! pinning, no signal handlers, a stop flag of the caller's: what tests want).

#![forbid(unsafe_code)]

use std::net::Ipv4Addr;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use megatcp_channel::{Backend, Channel};
use megatcp_engine::{EngineError, Runtime};

#[cfg(feature = "afxdp")]
mod afxdp;
mod bypass;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod duration;
mod kernel;
pub mod latency;
pub mod load;
pub mod logging;
pub mod nic;
pub mod ops;
pub mod pair;
pub mod reflect;
pub mod report;
pub mod serve;

pub use bypass::{iface_mac, stack_config};
pub use megatcp_engine::{CoreCtx, CoreMonitor, CoreReport, IdlePolicy, monitor};
pub use megatcp_kernel::uring::UringConfig;
pub use nic::NicArgs;
pub use ops::OpsArgs;

/// The backends built into this binary, in `--backend` spelling.
pub fn backends_built() -> Vec<&'static str> {
    let mut b = vec!["epoll", "uring", "wire"];
    if cfg!(feature = "afxdp") {
        b.push("afxdp");
    }
    if dpdk_built() {
        b.push("dpdk");
    }
    b
}

#[cfg(feature = "dpdk")]
fn dpdk_built() -> bool {
    true
}

#[cfg(not(feature = "dpdk"))]
fn dpdk_built() -> bool {
    false
}

/// The `--version` text of every binary: the version and the backends built in.
pub fn version() -> &'static str {
    static TEXT: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    TEXT.get_or_init(|| {
        format!(
            "{} (backends: {})",
            env!("CARGO_PKG_VERSION"),
            backends_built().join(", ")
        )
    })
}

/// Parses a binary's command line as `C`, with [`version`] as its `--version`; exits as
/// clap does for `--help`, `--version` and usage errors (status 2). The matches come along
/// for questions such as which flags were given.
pub fn parse_args<C: clap::CommandFactory + clap::FromArgMatches>() -> (C, clap::ArgMatches) {
    parse_args_with::<C>(|c| c)
}

/// [`parse_args`], with the command changed by `edit` first (its name and description).
pub fn parse_args_with<C: clap::CommandFactory + clap::FromArgMatches>(
    edit: impl FnOnce(clap::Command) -> clap::Command,
) -> (C, clap::ArgMatches) {
    let matches = edit(C::command().version(version())).get_matches();
    match C::from_arg_matches(&matches) {
        Ok(c) => (c, matches),
        Err(e) => e.exit(),
    }
}

/// The command line of a server binary that also generates load: its serving flags `S`, or
/// `load` with the load generator's flags `L` ([`ServerCli::parse`]).
#[derive(clap::Parser, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct ServerCli<S: clap::Args, L: clap::Args> {
    /// `load`; none: serve.
    #[command(subcommand)]
    pub load: Option<LoadCommand<L>>,
    /// The serving flags.
    #[command(flatten)]
    pub serve: S,
}

/// The `load` subcommand of a [`ServerCli`].
#[derive(clap::Subcommand, Debug)]
pub enum LoadCommand<L: clap::Args> {
    /// Generate load against a server, verifying every response.
    Load(L),
}

impl<S: clap::Args, L: clap::Args> ServerCli<S, L> {
    /// Parses the command line of the binary `name` (`about` says what it is, `load` what
    /// its load generator does), as [`parse_args`] does.
    pub fn parse(
        name: &'static str,
        about: &'static str,
        load: &'static str,
    ) -> (Self, clap::ArgMatches) {
        parse_args_with::<Self>(|c| {
            c.name(name)
                .bin_name(name)
                .about(about)
                .mut_subcommand("load", |s| s.about(load))
        })
    }
}

/// Why a command of a binary failed, and so its exit status: [`Failure::Usage`] exits 2
/// (as clap's own usage errors), [`Failure::Runtime`] exits 1.
#[derive(Debug)]
pub enum Failure {
    /// A flag missing, wrong or not supported here.
    Usage(String),
    /// Something failed while running.
    Runtime(String),
}

impl Failure {
    /// The exit status: 2 for usage, 1 for a failure at run time.
    pub fn code(&self) -> u8 {
        match self {
            Failure::Usage(_) => 2,
            Failure::Runtime(_) => 1,
        }
    }

    /// The message.
    pub fn message(&self) -> &str {
        match self {
            Failure::Usage(m) | Failure::Runtime(m) => m,
        }
    }
}

impl From<LaunchError> for Failure {
    fn from(e: LaunchError) -> Self {
        match exit_code(&e) {
            2 => Failure::Usage(e.to_string()),
            _ => Failure::Runtime(e.to_string()),
        }
    }
}

/// Fails when any core's application failed or did not finish, saying which (each line
/// after `name: `).
pub fn cores_failed<T, E: std::fmt::Display>(
    name: &str,
    cores: &[CoreOutcome<Result<T, E>>],
) -> Result<(), Failure> {
    let mut failed = 0;
    for c in cores {
        match &c.output {
            Some(Ok(_)) => {}
            Some(Err(e)) => {
                failed += 1;
                eprintln!("{name}: core {}: {e}", c.index);
            }
            None => {
                failed += 1;
                eprintln!("{name}: core {}: did not finish", c.index);
            }
        }
    }
    if failed > 0 {
        Err(Failure::Runtime(format!("{failed} cores failed")))
    } else {
        Ok(())
    }
}

/// The exit status at the end of a binary's `main`, for a command that returns the errors
/// it counted or fails: 0 without errors; 1 with counted errors (said as `name: N
/// errors`); a failure's [`Failure::code`] with its message, after `name: ` when
/// `prefix_failures` (memcached's own messages stand alone).
pub fn exit_status(
    name: &str,
    result: Result<u64, Failure>,
    prefix_failures: bool,
) -> std::process::ExitCode {
    match result {
        Ok(0) => std::process::ExitCode::SUCCESS,
        Ok(errors) => {
            eprintln!("{name}: {errors} errors");
            std::process::ExitCode::from(1)
        }
        Err(e) if prefix_failures => {
            eprintln!("{name}: {}", e.message());
            std::process::ExitCode::from(e.code())
        }
        Err(e) => {
            eprintln!("{}", e.message());
            std::process::ExitCode::from(e.code())
        }
    }
}

/// The exit status for an error: 2 for usage errors (a flag missing or wrong, a backend
/// not built in), 1 for failures at run time.
pub fn exit_code(e: &LaunchError) -> u8 {
    match e {
        LaunchError::Usage(_) | LaunchError::NotBuilt { .. } => 2,
        LaunchError::Engine(_) => 1,
    }
}

/// The network paths an application can run on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendKind {
    /// In-memory wire: only inside one process (see `megatcp-echo pair`).
    Wire,
    /// AF_XDP kernel bypass on `--iface` with the stack address `--ip` (feature `afxdp`).
    Afxdp,
    /// DPDK kernel bypass on `--dpdk-args` vdevs or `--pci` (feature `dpdk`).
    Dpdk,
    /// The Linux kernel's TCP through io_uring (one ring per core).
    Uring,
    /// The Linux kernel's TCP through edge-triggered epoll (one instance per core).
    Epoll,
}

impl BackendKind {
    /// Whether the backend runs megatcp's own stack (as opposed to the kernel's TCP).
    pub fn is_bypass(self) -> bool {
        matches!(
            self,
            BackendKind::Wire | BackendKind::Afxdp | BackendKind::Dpdk
        )
    }
}

/// A list of CPUs: `0`, `0,1`, `0-3`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Cores(pub Vec<usize>);

impl std::str::FromStr for Cores {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
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
        Ok(Cores(out))
    }
}

/// The backend flags shared by every megatcp binary (`#[command(flatten)]` them).
#[derive(clap::Args, Clone, Debug)]
pub struct BackendArgs {
    /// Which network path to run on.
    #[arg(long, value_enum, default_value_t = BackendKind::Epoll)]
    pub backend: BackendKind,
    /// CPUs to run on, one channel each: `0`, `0,1`, `0-3`.
    #[arg(long, default_value = "0")]
    pub cores: Cores,
    /// Interface (afxdp).
    #[arg(long)]
    pub iface: Option<String>,
    /// The stack's own address with prefix, e.g. 10.77.0.10/24 (bypass backends).
    #[arg(long)]
    pub ip: Option<String>,
    /// Gateway for off-subnet destinations (bypass backends).
    #[arg(long)]
    pub gateway: Option<Ipv4Addr>,
    /// EAL arguments for DPDK, e.g. "--vdev net_memif0,role=server" (dpdk).
    #[arg(long, allow_hyphen_values = true)]
    pub dpdk_args: Option<String>,
    /// PCI address of a real NIC to hand to DPDK (otherwise DPDK runs with --no-pci).
    #[arg(long)]
    pub pci: Option<String>,
    /// Real-NIC flags: queues, MTU, zero-copy, XDP steering, RSS key.
    #[command(flatten)]
    pub nic: NicArgs,
}

impl Default for BackendArgs {
    fn default() -> Self {
        Self {
            backend: BackendKind::Epoll,
            cores: Cores(vec![0]),
            iface: None,
            ip: None,
            gateway: None,
            dpdk_args: None,
            pci: None,
            nic: NicArgs::default(),
        }
    }
}

/// An application's per-core code, generic over the channel's backend.
pub trait App: Sync {
    /// What one core returns.
    type Output: Send;

    /// Runs on core `ctx` until done or until `ch.is_stopping()`.
    fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> Self::Output;
}

/// What one core did.
#[derive(Debug)]
pub struct CoreOutcome<T> {
    /// Position in the core list.
    pub index: usize,
    /// What the application returned (`None` if its thread did not get to return).
    pub output: Option<T>,
    /// The core's counters, one line of text (stack, NIC and channel for bypass backends;
    /// the channel's for kernel backends).
    pub report: String,
    /// The bypass engine's counters of the core (bypass backends only).
    pub engine: Option<CoreReport>,
}

/// Why an application could not run.
#[derive(Debug, thiserror::Error)]
pub enum LaunchError {
    /// A flag is missing or wrong for the chosen backend.
    #[error("{0}")]
    Usage(String),
    /// The backend is not compiled into this binary.
    #[error("backend {backend:?} is not built into this binary: {hint}")]
    NotBuilt {
        /// The backend.
        backend: BackendKind,
        /// How to get it.
        hint: &'static str,
    },
    /// The runtime failed (a queue could not open, a core panicked, ...).
    #[error(transparent)]
    Engine(#[from] EngineError),
}

/// One run of an application: the backend flags, and the runtime's settings that a test or
/// an embedding program may change. [`run`] is `Launch::new(args).run(app)`.
pub struct Launch<'a> {
    args: &'a BackendArgs,
    runtime: Runtime,
    uring: UringConfig,
    ops: Option<(OpsArgs, String)>,
}

impl<'a> Launch<'a> {
    /// A run on `args`' backend and cores, pinned, stopped by SIGINT/SIGTERM.
    pub fn new(args: &'a BackendArgs) -> Self {
        Self {
            args,
            runtime: Runtime::new(&args.cores.0),
            uring: UringConfig::default(),
            ops: None,
        }
    }

    /// How many cores the run has.
    pub fn cores(&self) -> usize {
        self.args.cores.0.len()
    }

    /// Whether to pin each core's thread to its CPU (default true).
    pub fn pin(mut self, on: bool) -> Self {
        self.runtime = self.runtime.pin(on);
        self
    }

    /// Whether SIGINT/SIGTERM stop the run (default true; a process running several turns
    /// it off and uses [`Launch::stop_flag`]).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.runtime = self.runtime.handle_signals(on);
        self
    }

    /// What a bypass core does when idle.
    pub fn idle(mut self, idle: IdlePolicy) -> Self {
        self.runtime = self.runtime.idle(idle);
        self
    }

    /// The sizes of each core's io_uring (`--backend uring`).
    pub fn uring_config(mut self, config: UringConfig) -> Self {
        self.uring = config;
        self
    }

    /// The flag that asks every core to stop.
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.runtime.stop_flag()
    }

    /// Operates the run as `ops` says (live stats, metrics, capture on demand, the view of
    /// `megatcp-stat`); `name` is the program and command (`megatcp-echo serve`).
    pub fn ops(mut self, ops: &OpsArgs, name: &str) -> Self {
        self.ops = Some((ops.clone(), name.to_string()));
        self
    }

    /// The per-core live counters (engine's `CoreMonitor`s).
    pub fn monitors(&self) -> Arc<Vec<megatcp_engine::CoreMonitor>> {
        self.runtime.monitors()
    }

    /// Runs `app` on every core over the chosen backend until it returns on all of them.
    pub fn run<A: App>(mut self, app: &A) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
        if self.ops.as_ref().is_some_and(|(o, _)| o.no_counters) {
            self.runtime = self.runtime.publish(false);
        }
        let ops = match self.ops.take() {
            Some((args, name)) if args.any() => {
                let group = ops::Group {
                    label: String::new(),
                    monitors: self.runtime.monitors(),
                    cpus: self.args.cores.0.clone(),
                };
                let who = ops::Identity {
                    name,
                    backend: format!("{:?}", self.args.backend).to_lowercase(),
                };
                let o = ops::start(&args, vec![group], who)?;
                if let Some(c) = o.capture() {
                    self.runtime = self.runtime.capture(c, "");
                }
                Some(o)
            }
            _ => None,
        };
        let result = self.run_backend(app);
        if let Some(o) = ops {
            o.finish();
        }
        result
    }

    fn run_backend<A: App>(self, app: &A) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
        match self.args.backend {
            BackendKind::Epoll => kernel::run(self.args, self.runtime, app, |_, stop| {
                megatcp_kernel::epoll::Epoll::new(stop).map_err(|e| e.to_string())
            }),
            BackendKind::Uring => {
                let config = self.uring;
                kernel::run(self.args, self.runtime, app, move |_, stop| {
                    megatcp_kernel::uring::Uring::new(stop, &config).map_err(|e| e.to_string())
                })
            }
            BackendKind::Afxdp => run_afxdp(self.args, self.runtime, app),
            BackendKind::Dpdk => run_dpdk(self.args, self.runtime, app),
            BackendKind::Wire => Err(LaunchError::Usage(
                "the wire backend joins two endpoints inside one process (e.g. `megatcp-echo pair`)"
                    .into(),
            )),
        }
    }
}

/// Runs `app` on every core of `args` over the chosen backend.
pub fn run<A: App>(
    args: &BackendArgs,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    Launch::new(args).run(app)
}

#[cfg(feature = "afxdp")]
fn run_afxdp<A: App>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    afxdp::run(args, runtime, app)
}

#[cfg(not(feature = "afxdp"))]
fn run_afxdp<A: App>(
    _: &BackendArgs,
    _: Runtime,
    _: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    Err(LaunchError::NotBuilt {
        backend: BackendKind::Afxdp,
        hint: "it is a default feature: install its build dependencies (scripts/install-deps: clang, libelf, zlib) and rebuild with them (cargo build --release), or add `--features afxdp`",
    })
}

#[cfg(feature = "dpdk")]
fn run_dpdk<A: App>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    dpdk::run(args, runtime, app)
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk<A: App>(
    _: &BackendArgs,
    _: Runtime,
    _: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    Err(LaunchError::NotBuilt {
        backend: BackendKind::Dpdk,
        hint: "it is a default feature: install libdpdk-dev (scripts/install-deps) and rebuild with it (cargo build --release), or add `--features dpdk`",
    })
}

/// Per-core outputs, gathered once each core's application returns (not on the data path).
pub(crate) struct Outputs<T>(Mutex<Vec<(usize, T)>>);

impl<T> Outputs<T> {
    pub(crate) fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    pub(crate) fn put(&self, index: usize, value: T) {
        if let Ok(mut v) = self.0.lock() {
            v.push((index, value));
        }
    }

    pub(crate) fn collect(self, reports: Vec<(String, Option<CoreReport>)>) -> Vec<CoreOutcome<T>> {
        let mut outputs = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        reports
            .into_iter()
            .enumerate()
            .map(|(index, (report, engine))| CoreOutcome {
                index,
                output: outputs
                    .iter()
                    .position(|(i, _)| *i == index)
                    .map(|p| outputs.swap_remove(p).1),
                report,
                engine,
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use megatcp_stack::MacAddr;

    #[test]
    fn cores_parse_lists_and_ranges() {
        assert_eq!("0".parse::<Cores>(), Ok(Cores(vec![0])));
        assert_eq!("0,2-4".parse::<Cores>(), Ok(Cores(vec![0, 2, 3, 4])));
        assert!("3-1".parse::<Cores>().is_err());
        assert!("".parse::<Cores>().is_err());
        assert!("x".parse::<Cores>().is_err());
    }

    #[test]
    fn stack_config_needs_a_valid_ip_with_prefix() {
        let mut args = BackendArgs {
            backend: BackendKind::Afxdp,
            ..BackendArgs::default()
        };
        let mac = MacAddr([2, 0, 0, 0, 0, 1]);
        assert!(matches!(
            stack_config(&args, mac),
            Err(LaunchError::Usage(_))
        ));
        args.ip = Some("10.77.0.10".into());
        assert!(matches!(
            stack_config(&args, mac),
            Err(LaunchError::Usage(_))
        ));
        args.ip = Some("10.77.0.10/33".into());
        assert!(matches!(
            stack_config(&args, mac),
            Err(LaunchError::Usage(_))
        ));
        args.ip = Some("10.77.0.10/24".into());
        assert!(stack_config(&args, mac).is_ok());
    }

    #[test]
    fn the_wire_backend_is_refused_with_a_hint() {
        struct Nothing;
        impl App for Nothing {
            type Output = ();
            fn run<B: Backend>(&self, _: CoreCtx, _: &mut Channel<B>) {}
        }
        let args = BackendArgs {
            backend: BackendKind::Wire,
            ..BackendArgs::default()
        };
        let e = run(&args, &Nothing).err().map(|e| e.to_string());
        assert!(e.is_some_and(|e| e.contains("pair")));
    }
}
