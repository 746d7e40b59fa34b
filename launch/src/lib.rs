//! Runs one megatcp application on any backend, one channel per core.
//!
//! Every server and load binary of the project takes the same backend flags
//! ([`BackendArgs`]: `--backend wire|afxdp|dpdk|uring|epoll`, `--cores`, `--iface`, `--ip`,
//! `--gateway`, `--dpdk-args`, `--pci`) and hands its per-core code to [`run`] as an [`App`]:
//! a value whose `run` method is generic over the channel's backend, so the very same
//! application code runs over the kernel-bypass engine and over the Linux kernel.
//!
//! # Driving it
//!
//! ```no_run
//! use megatcp_channel::{Backend, Channel};
//! use megatcp_engine::CoreCtx;
//! use megatcp_launch::{App, BackendArgs};
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
//! core, in core order.

use std::net::Ipv4Addr;
use std::sync::Mutex;

use megatcp_channel::{Backend, Channel};
use megatcp_engine::{EngineError, Runtime};
use megatcp_stack::{LocalAddr, MacAddr, StackConfig};

pub mod latency;

#[cfg(feature = "dpdk")]
mod dpdk;

pub use megatcp_engine::CoreCtx;

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

/// Runs `app` on every core of `args` over the chosen backend.
pub fn run<A: App>(
    args: &BackendArgs,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    match args.backend {
        BackendKind::Epoll => run_kernel(args, app, |_, stop| {
            megatcp_channel::epoll::Epoll::new(stop).map_err(|e| e.to_string())
        }),
        BackendKind::Uring => run_uring(args, app),
        BackendKind::Afxdp => run_afxdp(args, app),
        BackendKind::Dpdk => run_dpdk(args, app),
        BackendKind::Wire => Err(LaunchError::Usage(
            "the wire backend joins two endpoints inside one process (e.g. `megatcp-echo pair`)"
                .into(),
        )),
    }
}

fn run_uring<A: App>(
    args: &BackendArgs,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    run_kernel(args, app, |_, stop| {
        let config = megatcp_channel::uring::UringConfig::default();
        megatcp_channel::uring::Uring::new(stop, &config).map_err(|e| e.to_string())
    })
}

/// Runs `app` over a kernel backend built by `make(core, stop)` on each core's thread.
fn run_kernel<A, B, M>(
    args: &BackendArgs,
    app: &A,
    make: M,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError>
where
    A: App,
    B: Backend,
    M: Fn(usize, std::sync::Arc<std::sync::atomic::AtomicBool>) -> Result<B, String> + Sync,
{
    // Thousands of kernel sockets need more descriptors than the usual soft limit.
    megatcp_nic::uring::raise_nofile();
    let outputs = Outputs::new();
    let reports = Runtime::new(&args.cores.0).run_with(
        |core, stop| make(core, stop).map_err(|reason| EngineError::Backend { core, reason }),
        |ctx, ch| outputs.put(ctx.index, app.run(ctx, ch)),
        |index, ch| {
            let s = ch.stats();
            format!(
                "core {index}: {:?} channel: commands {} flushes {} dispatches {} completions {}",
                args.backend, s.commands, s.flushes, s.dispatches, s.completions
            )
        },
    )?;
    Ok(outputs.collect(reports))
}

/// Per-core outputs, gathered once each core's application returns (not on the data path).
struct Outputs<T>(Mutex<Vec<(usize, T)>>);

impl<T> Outputs<T> {
    fn new() -> Self {
        Self(Mutex::new(Vec::new()))
    }

    fn put(&self, index: usize, value: T) {
        if let Ok(mut v) = self.0.lock() {
            v.push((index, value));
        }
    }

    fn collect(self, reports: Vec<String>) -> Vec<CoreOutcome<T>> {
        let mut outputs = self.0.into_inner().unwrap_or_else(|p| p.into_inner());
        reports
            .into_iter()
            .enumerate()
            .map(|(index, report)| CoreOutcome {
                index,
                output: outputs
                    .iter()
                    .position(|(i, _)| *i == index)
                    .map(|p| outputs.swap_remove(p).1),
                report,
            })
            .collect()
    }
}

/// Runs `app` over megatcp's own stack on NIC queues opened by `open(queue, queues)`, one
/// per core; `mac` is the interface's hardware address.
#[cfg_attr(not(any(feature = "afxdp", feature = "dpdk")), allow(dead_code))]
fn run_bypass<A, Q, O>(
    args: &BackendArgs,
    app: &A,
    mac: MacAddr,
    open: O,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError>
where
    A: App,
    Q: megatcp_nic::NicQueue,
    O: Fn(usize, usize) -> Result<Q, String> + Sync,
{
    let stack = stack_config(args, mac)?;
    let n = args.cores.0.len();
    let outputs = Outputs::new();
    let reports = Runtime::new(&args.cores.0).run(
        |q| open(q, n),
        |core| {
            let mut c = stack.clone();
            // Distinct initial sequence numbers and ephemeral ports per core.
            c.seed ^= 0x1000 * core as u64;
            c
        },
        |ctx, ch| outputs.put(ctx.index, app.run(ctx, ch)),
    )?;
    Ok(outputs.collect(reports.iter().map(ToString::to_string).collect()))
}

/// The stack configuration for `--ip`/`--gateway` on an interface with address `mac`.
pub fn stack_config(args: &BackendArgs, mac: MacAddr) -> Result<StackConfig, LaunchError> {
    let usage = |m: String| LaunchError::Usage(m);
    let ip = args.ip.as_deref().ok_or_else(|| {
        usage(
            format!(
                "--ip ADDR/PREFIX is required with --backend {:?}",
                args.backend
            )
            .to_lowercase(),
        )
    })?;
    let (addr, prefix) = ip
        .split_once('/')
        .ok_or_else(|| usage("--ip needs a prefix length: ADDR/PREFIX".into()))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| usage(format!("--ip {ip}: {e}")))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| usage(format!("--ip {ip}: the prefix length must be 0..=32")))?;
    let mut c = StackConfig::new(mac, LocalAddr::new(addr, prefix));
    c.gateway = args.gateway;
    c.seed = u64::from(std::process::id()) ^ (u64::from(u32::from(addr)) << 16);
    Ok(c)
}

/// The hardware address of a Linux interface, from sysfs.
pub fn iface_mac(iface: &str) -> Result<MacAddr, LaunchError> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| LaunchError::Usage(format!("interface {iface}: {e}")))?;
    let bad = || {
        LaunchError::Usage(format!(
            "interface {iface}: bad MAC address {:?}",
            text.trim()
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(MacAddr(mac))
}

#[cfg(feature = "afxdp")]
fn run_afxdp<A: App>(
    args: &BackendArgs,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    let iface = args
        .iface
        .clone()
        .ok_or_else(|| LaunchError::Usage("--iface is required with --backend afxdp".into()))?;
    let mac = iface_mac(&iface)?;
    run_bypass(args, app, mac, |q, queues| {
        let mut cfg = megatcp_nic::afxdp::AfXdpConfig::new(&iface, q as u32);
        cfg.queues = queues as u16;
        megatcp_nic::afxdp::AfXdpQueue::open(&cfg).map_err(|e| e.to_string())
    })
}

#[cfg(not(feature = "afxdp"))]
fn run_afxdp<A: App>(_: &BackendArgs, _: &A) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    Err(LaunchError::NotBuilt {
        backend: BackendKind::Afxdp,
        hint: "build with `--features afxdp` (e.g. cargo build --release -p megatcp-echo --features afxdp)",
    })
}

#[cfg(feature = "dpdk")]
fn run_dpdk<A: App>(
    args: &BackendArgs,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    dpdk::run(args, app)
}

#[cfg(not(feature = "dpdk"))]
fn run_dpdk<A: App>(_: &BackendArgs, _: &A) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    Err(LaunchError::NotBuilt {
        backend: BackendKind::Dpdk,
        hint: "build with `--features dpdk` (e.g. cargo build --release -p megatcp-echo --features dpdk)",
    })
}

#[cfg(test)]
mod tests {
    use super::*;

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
