//! DPDK backend (feature `dpdk`): one RX/TX queue pair of a DPDK port per core, on the
//! system DPDK (Debian's 22.11) through `megatcp-dpdk-sys`.
//!
//! # Driving it
//!
//! 1. [`init_eal`] once per process (later calls with the same [`EalConfig`] return the same
//!    [`Eal`]). megatcp adds `--no-pci` unless [`EalConfig::pci`] names a device, a
//!    per-process `--file-prefix`, `--no-telemetry`, one lcore that may run on every CPU,
//!    and `--no-huge --no-shconf` when no hugepages are free (`--in-memory` on hugepages
//!    when some are: no hugetlbfs mount needed, no files left behind).
//! 2. Find the port: [`Eal::ports`] (the `--vdev`s and PCI devices EAL probed),
//!    [`Eal::port_by_name`], or [`Eal::ring_pair`] (two ports joined back to back in this
//!    process, for tests).
//! 3. [`DpdkPort::open`] configures and starts the port with one queue pair per core, RSS
//!    with a symmetric key when the device offers it and there are several queues, and the
//!    receive checksum offloads the device offers.
//! 4. On each core's own thread, [`DpdkPort::queue`] registers the thread with EAL
//!    (`rte_thread_register`, for the mempool's per-lcore cache) and returns that core's
//!    [`DpdkQueue`], a [`NicQueue`].
//!
//! ```no_run
//! use megatcp_nic::NicQueue;
//! use megatcp_nic::dpdk::{DpdkPort, EalConfig, PortConfig, init_eal};
//!
//! let eal = init_eal(&EalConfig::new(&["--vdev", "net_memif0,role=server"]))?;
//! let port = *eal.ports().first().ok_or("no port")?;
//! let port = DpdkPort::open(eal, port, &PortConfig::new(1))?;
//! let mut q = port.queue(0)?;
//! q.rx_burst(32, &mut |frame| println!("{} bytes", frame.data.len()));
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! Frames are received straight out of the mbufs (freed in bulk once the burst was handed
//! over) and written straight into freshly allocated mbufs; nothing is copied in this layer.
//! Frames the device flags with a bad checksum, and chained (multi-segment) mbufs, are
//! dropped and counted. The stack computes transmit checksums itself, so transmit checksum
//! offloads are not turned on.

use std::ffi::{CStr, CString};
use std::sync::{Arc, OnceLock};

use megatcp_dpdk_sys as sys;

use crate::{Capabilities, ChecksumOffloads, NicQueue, QueueStats, RssInfo, RxFrame, TxError};

/// Frames per receive burst and per transmit allocation batch.
const BURST: usize = 64;

/// A symmetric Toeplitz key (0x6d5a repeated): both directions of a flow hash alike, so one
/// core sees both. Cut to the device's key size.
const SYMMETRIC_KEY: [u8; 52] = {
    let mut k = [0u8; 52];
    let mut i = 0;
    while i < 52 {
        k[i] = if i % 2 == 0 { 0x6d } else { 0x5a };
        i += 1;
    }
    k
};

/// Whether EAL may use hugepages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Hugepages {
    /// Hugepages when some are free, else `--no-huge --no-shconf` (normal pages).
    #[default]
    Auto,
    /// Hugepages or an error (a PCI device needs them for DMA).
    Require,
    /// Never (`--no-huge --no-shconf`).
    Never,
}

/// How to initialise EAL.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct EalConfig {
    /// The user's EAL arguments, e.g. `["--vdev", "net_memif0,role=server"]`.
    pub args: Vec<String>,
    /// A PCI device to hand to DPDK (`-a ADDR`); without it EAL runs with `--no-pci`.
    pub pci: Option<String>,
    /// Hugepage policy (a PCI device always requires them).
    pub hugepages: Hugepages,
}

impl EalConfig {
    /// The given EAL arguments, no PCI device, hugepages when there are some.
    pub fn new(args: &[&str]) -> Self {
        Self {
            args: args.iter().map(|s| s.to_string()).collect(),
            ..Self::default()
        }
    }

    /// Splits a `--dpdk-args` string on whitespace.
    pub fn from_arg_string(args: &str) -> Self {
        Self {
            args: args.split_whitespace().map(str::to_string).collect(),
            ..Self::default()
        }
    }
}

/// Why EAL could not be initialised.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EalError {
    /// An argument contains a NUL byte, or asks for something megatcp refuses.
    #[error("bad EAL argument {arg:?}: {reason}")]
    BadArg {
        /// The argument.
        arg: String,
        /// Why.
        reason: String,
    },
    /// Hugepages are needed and none are free.
    #[error(
        "no free hugepages ({reason}); reserve some, e.g. `echo 512 > \
         /proc/sys/vm/nr_hugepages` (`scripts/nic-setup bind ADDR` does it for a NIC)"
    )]
    NoHugepages {
        /// What needed them.
        reason: String,
    },
    /// `rte_eal_init` failed.
    #[error("rte_eal_init failed with {args:?}: {message} (rte_errno {errno})")]
    Init {
        /// The full argument list handed to EAL.
        args: Vec<String>,
        /// `rte_errno`.
        errno: i32,
        /// `rte_strerror(rte_errno)`.
        message: String,
    },
    /// EAL was already initialised in this process with other arguments (once per process).
    #[error("EAL is already initialised in this process with {previous:?}; it initialises once")]
    AlreadyInitialised {
        /// The configuration of the first initialisation.
        previous: Box<EalConfig>,
    },
}

/// The process's initialised EAL. See the module docs.
#[derive(Debug)]
pub struct Eal {
    config: EalConfig,
    argv: Vec<String>,
    hugepages: bool,
}

static EAL: OnceLock<Result<Eal, EalError>> = OnceLock::new();

/// Initialises EAL once per process; see the module docs for the arguments megatcp adds.
pub fn init_eal(cfg: &EalConfig) -> Result<&'static Eal, EalError> {
    let got = EAL.get_or_init(|| Eal::init(cfg));
    match got {
        Ok(eal) if eal.config == *cfg => Ok(eal),
        Ok(eal) => Err(EalError::AlreadyInitialised {
            previous: Box::new(eal.config.clone()),
        }),
        Err(e) => Err(e.clone()),
    }
}

/// Free hugepages of the default size, from `/proc/meminfo`.
pub fn free_hugepages() -> u64 {
    std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find_map(|l| l.strip_prefix("HugePages_Free:"))
                .and_then(|v| v.trim().parse().ok())
        })
        .unwrap_or(0)
}

/// `rte_strerror(errno)`.
fn strerror(errno: i32) -> String {
    // SAFETY: rte_strerror returns a pointer to a static or thread-local NUL-terminated
    // string, valid until the next call on this thread; it is copied at once.
    unsafe {
        let p = sys::rte_strerror(errno);
        if p.is_null() {
            return format!("error {errno}");
        }
        CStr::from_ptr(p).to_string_lossy().into_owned()
    }
}

/// Removes EAL's runtime directory (`/var/run/dpdk/PREFIX`) if it is empty: without shared
/// configuration EAL leaves nothing in it but creates it all the same, one per process.
fn remove_runtime_dir() {
    // SAFETY: returns a pointer to EAL's static NUL-terminated path (set early in
    // rte_eal_init, empty before).
    let dir = unsafe { sys::rte_eal_get_runtime_dir() };
    if dir.is_null() {
        return;
    }
    // SAFETY: non-null, NUL-terminated, static.
    let dir = unsafe { CStr::from_ptr(dir) }
        .to_string_lossy()
        .into_owned();
    if dir.contains("/megatcp-") {
        let _ = std::fs::remove_dir(dir);
    }
}

/// `rte_errno` of this thread.
fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { sys::mtcp_errno() }
}

impl Eal {
    fn init(cfg: &EalConfig) -> Result<Eal, EalError> {
        let has = |flag: &str| {
            cfg.args
                .iter()
                .any(|a| a == flag || a.starts_with(&format!("{flag}=")))
        };
        for a in &cfg.args {
            if a.contains('\0') {
                return Err(EalError::BadArg {
                    arg: a.clone(),
                    reason: "contains a NUL byte".into(),
                });
            }
            let names_pci =
                matches!(a.as_str(), "-a" | "--allow" | "-w") || a.starts_with("--allow=");
            if names_pci && cfg.pci.is_none() {
                return Err(EalError::BadArg {
                    arg: a.clone(),
                    reason: "name a PCI device with --pci ADDR (megatcp passes --no-pci \
                             otherwise)"
                        .into(),
                });
            }
        }
        let mut argv: Vec<String> = vec!["megatcp".into()];
        if !has("--file-prefix") {
            argv.push(format!("--file-prefix=megatcp-{}", std::process::id()));
        }
        if !has("--no-telemetry") && !has("--telemetry") {
            argv.push("--no-telemetry".into());
        }
        if !has("-l") && !has("-c") && !has("--lcores") {
            // One lcore (the main thread) allowed on every online CPU: EAL pins the main
            // thread to it; the per-core threads register themselves later.
            let online = std::fs::read_to_string("/sys/devices/system/cpu/online")
                .map(|s| s.trim().to_string())
                .unwrap_or_default();
            if online.is_empty() || online.contains(',') {
                argv.push("-l".into());
                argv.push("0".into());
            } else {
                argv.push(format!("--lcores=0@({online})"));
            }
        }
        match &cfg.pci {
            Some(pci) => {
                argv.push("-a".into());
                argv.push(pci.clone());
            }
            None => argv.push("--no-pci".into()),
        }
        let free = free_hugepages();
        let user_no_huge = has("--no-huge");
        let require = if cfg.pci.is_some() {
            Some("a PCI device needs hugepages for DMA")
        } else if cfg.hugepages == Hugepages::Require {
            Some("hugepages were required")
        } else if has("--socket-mem") || has("--huge-dir") {
            Some("the EAL arguments ask for hugepage memory")
        } else {
            None
        };
        let hugepages = match (require, cfg.hugepages) {
            (Some(reason), _) if user_no_huge => {
                return Err(EalError::NoHugepages {
                    reason: format!("{reason}, but --no-huge was given"),
                });
            }
            (Some(reason), _) if free == 0 => {
                return Err(EalError::NoHugepages {
                    reason: reason.into(),
                });
            }
            (Some(_), _) => true,
            (None, Hugepages::Never) => false,
            (None, _) => free > 0 && !user_no_huge,
        };
        if hugepages {
            // In memory: no hugetlbfs mount needed (memfd), no files left behind.
            if !has("--in-memory") && !has("--huge-unlink") && !has("--huge-dir") {
                argv.push("--in-memory".into());
            }
        } else {
            if !user_no_huge {
                argv.push("--no-huge".into());
            }
            if !has("--no-shconf") && !has("--in-memory") {
                argv.push("--no-shconf".into());
            }
            if !has("-m") && !has("--socket-mem") {
                argv.push("-m".into());
                argv.push("512".into());
            }
        }
        argv.extend(cfg.args.iter().cloned());
        // EAL may keep pointers into argv: the strings live as long as the process (EAL
        // initialises once).
        let mut ptrs: Vec<*mut std::os::raw::c_char> = Vec::with_capacity(argv.len() + 1);
        for a in &argv {
            let c = CString::new(a.as_str()).map_err(|_| EalError::BadArg {
                arg: a.clone(),
                reason: "contains a NUL byte".into(),
            })?;
            ptrs.push(c.into_raw());
        }
        ptrs.push(std::ptr::null_mut());
        let ptrs = Box::leak(ptrs.into_boxed_slice());
        // SAFETY: `ptrs` holds argc valid NUL-terminated strings followed by a null pointer,
        // all leaked (they outlive EAL); rte_eal_init is called once per process (OnceLock).
        let rc = unsafe { sys::rte_eal_init((argv.len()) as i32, ptrs.as_mut_ptr()) };
        remove_runtime_dir();
        if rc < 0 {
            let errno = rte_errno();
            return Err(EalError::Init {
                args: argv,
                errno,
                message: strerror(errno),
            });
        }
        Ok(Eal {
            config: cfg.clone(),
            argv,
            hugepages,
        })
    }

    /// The full argument list EAL was initialised with.
    pub fn args(&self) -> &[String] {
        &self.argv
    }

    /// Whether EAL runs on hugepages.
    pub fn hugepages(&self) -> bool {
        self.hugepages
    }

    /// The ports EAL probed (vdevs, PCI devices) or that were created since.
    pub fn ports(&self) -> Vec<u16> {
        let mut out = Vec::new();
        let mut p = 0u16;
        loop {
            // SAFETY: EAL is initialised; rte_eth_find_next only reads the port table.
            let next = unsafe { sys::rte_eth_find_next(p) };
            if u32::from(next) >= sys::RTE_MAX_ETHPORTS {
                return out;
            }
            out.push(next);
            p = next + 1;
        }
    }

    /// The port named `name` (a vdev name such as `net_memif0`, or a PCI address).
    pub fn port_by_name(&self, name: &str) -> Option<u16> {
        let c = CString::new(name).ok()?;
        let mut id = 0u16;
        // SAFETY: `c` is a valid C string and `id` a valid u16 for the call.
        let rc = unsafe { sys::rte_eth_dev_get_port_by_name(c.as_ptr(), &mut id) };
        (rc == 0).then_some(id)
    }

    /// Two ports joined back to back in this process (`rte_eth_from_rings`): what one sends
    /// with queue `i`, the other receives on queue `i`. `name` must be unique in the
    /// process (at most 20 characters). For tests and for measuring the stack alone.
    pub fn ring_pair(&self, name: &str, queues: u16) -> Result<(u16, u16), RingError> {
        if name.len() > 20 || name.contains('\0') || queues == 0 {
            return Err(RingError::BadName(name.into()));
        }
        let mut rings = Vec::new();
        for dir in ["ab", "ba"] {
            for q in 0..queues {
                let rn = CString::new(format!("{name}_{dir}{q}"))
                    .map_err(|_| RingError::BadName(name.into()))?;
                // SAFETY: `rn` is a valid C string; 4096 is a power of two; flags 0 gives a
                // multi-producer/multi-consumer ring.
                let r = unsafe { sys::rte_ring_create(rn.as_ptr(), 4096, sys::SOCKET_ID_ANY, 0) };
                if r.is_null() {
                    let errno = rte_errno();
                    return Err(RingError::Create {
                        name: name.into(),
                        message: strerror(errno),
                    });
                }
                rings.push(r);
            }
        }
        let q = usize::from(queues);
        let (ab, ba) = rings.split_at(q);
        let mut ports = [0u16; 2];
        for (i, (rx, tx)) in [(ba, ab), (ab, ba)].into_iter().enumerate() {
            let pn = CString::new(format!("{name}_{}", if i == 0 { "a" } else { "b" }))
                .map_err(|_| RingError::BadName(name.into()))?;
            // SAFETY: `pn` is a valid C string; `rx` and `tx` hold `queues` valid rings each,
            // which stay allocated for the life of the process.
            let id = unsafe {
                sys::rte_eth_from_rings(
                    pn.as_ptr(),
                    rx.as_ptr(),
                    u32::from(queues),
                    tx.as_ptr(),
                    u32::from(queues),
                    0,
                )
            };
            ports[i] = u16::try_from(id).map_err(|_| RingError::Create {
                name: name.into(),
                message: strerror(rte_errno()),
            })?;
        }
        Ok((ports[0], ports[1]))
    }
}

/// Why a ring pair could not be made.
#[derive(Debug, thiserror::Error)]
pub enum RingError {
    /// The name is too long, contains NUL, or no queue was asked for.
    #[error("bad ring pair name {0:?} (at most 20 characters) or zero queues")]
    BadName(String),
    /// DPDK refused.
    #[error("cannot create ring pair {name}: {message}")]
    Create {
        /// The pair's name.
        name: String,
        /// `rte_strerror`.
        message: String,
    },
}

/// How to open a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX/TX queue pairs (one per core).
    pub queues: u16,
    /// Descriptors per receive ring.
    pub rx_ring: u16,
    /// Descriptors per transmit ring.
    pub tx_ring: u16,
    /// Largest IP MTU to report (the device's own MTU if smaller).
    pub mtu: usize,
}

impl PortConfig {
    /// `queues` queue pairs, 1024-descriptor rings, MTU 1500.
    pub fn new(queues: u16) -> Self {
        Self {
            queues,
            rx_ring: 1024,
            tx_ring: 1024,
            mtu: 1500,
        }
    }
}

/// Why a port could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum PortError {
    /// No such port (a `--vdev` that failed to probe does not fail EAL: its port is missing).
    #[error(
        "no DPDK port {port} ({available} available): check the --vdev spelling and arguments \
         in the EAL log above, or the --pci address"
    )]
    NoDevice {
        /// The port asked for.
        port: u16,
        /// Ports EAL has.
        available: u16,
    },
    /// The device has fewer queues than cores.
    #[error("port {port} has at most {max} queues, {asked} asked for (one per core)")]
    TooManyQueues {
        /// Port.
        port: u16,
        /// Queues asked for.
        asked: u16,
        /// Queues it has.
        max: u16,
    },
    /// A DPDK call failed.
    #[error("port {port}: {call} failed: {message} ({code})")]
    Dpdk {
        /// Port.
        port: u16,
        /// The call.
        call: &'static str,
        /// Its return value or rte_errno.
        code: i32,
        /// `rte_strerror`.
        message: String,
    },
}

/// Why a core's queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    /// The port has no such queue.
    #[error("port {port} has {queues} queues; no queue {queue}")]
    NoQueue {
        /// Port.
        port: u16,
        /// Queue asked for.
        queue: u16,
        /// Queues configured.
        queues: u16,
    },
    /// `rte_thread_register` failed (too many threads for `RTE_MAX_LCORE`).
    #[error("cannot register this thread with EAL: {0}")]
    Register(String),
}

/// Device-level counters (`rte_eth_stats_get`), for all queues of a port.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NicStats {
    /// Frames received.
    pub ipackets: u64,
    /// Frames sent.
    pub opackets: u64,
    /// Bytes received.
    pub ibytes: u64,
    /// Bytes sent.
    pub obytes: u64,
    /// Frames dropped by the device because the receive ring was full.
    pub imissed: u64,
    /// Erroneous received frames.
    pub ierrors: u64,
    /// Failed transmissions.
    pub oerrors: u64,
    /// Receive mbuf allocation failures.
    pub rx_nombuf: u64,
}

impl std::fmt::Display for NicStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "ipackets {} opackets {} ibytes {} obytes {} imissed {} ierrors {} oerrors {} \
             rx_nombuf {}",
            self.ipackets,
            self.opackets,
            self.ibytes,
            self.obytes,
            self.imissed,
            self.ierrors,
            self.oerrors,
            self.rx_nombuf
        )
    }
}

/// A configured, started DPDK port: its mempool and its queues. Stopped and closed when the
/// last [`DpdkQueue`] and handle are dropped. See the module docs.
#[derive(Debug)]
pub struct DpdkPort {
    id: u16,
    name: String,
    pool: *mut sys::rte_mempool,
    caps: Capabilities,
    mac: [u8; 6],
    driver: String,
}

// SAFETY: the mempool is thread-safe (its ring is multi-producer/multi-consumer); the port
// calls made through `&DpdkPort` (stats, info) are thread-safe in DPDK; the fast path runs
// through `DpdkQueue`, which is not `Send`.
unsafe impl Send for DpdkPort {}
// SAFETY: see `Send`.
unsafe impl Sync for DpdkPort {}

impl DpdkPort {
    /// Configures and starts `port` with `cfg.queues` queue pairs. See the module docs.
    pub fn open(_eal: &Eal, port: u16, cfg: &PortConfig) -> Result<Arc<Self>, PortError> {
        // SAFETY: EAL is initialised (`_eal` proves it); no other precondition.
        let available = unsafe { sys::rte_eth_dev_count_avail() };
        let dpdk = |call: &'static str, code: i32| PortError::Dpdk {
            port,
            call,
            code,
            message: strerror(code.abs()),
        };
        let mut info = sys::rte_eth_dev_info::default();
        // SAFETY: `info` is a valid, writable rte_eth_dev_info; an invalid port id gives an
        // error code, not undefined behaviour.
        let rc = unsafe { sys::rte_eth_dev_info_get(port, &mut info) };
        if rc == -libc::ENODEV {
            return Err(PortError::NoDevice { port, available });
        }
        if rc != 0 {
            return Err(dpdk("rte_eth_dev_info_get", rc));
        }
        let queues = cfg.queues.max(1);
        let max = info.max_rx_queues.min(info.max_tx_queues);
        if queues > max {
            return Err(PortError::TooManyQueues {
                port,
                asked: queues,
                max,
            });
        }
        let driver = if info.driver_name.is_null() {
            String::new()
        } else {
            // SAFETY: driver_name points to the driver's static NUL-terminated name.
            unsafe { CStr::from_ptr(info.driver_name) }
                .to_string_lossy()
                .into_owned()
        };
        let mut name_buf = [0 as std::os::raw::c_char; 64];
        // SAFETY: `name_buf` is writable and large enough (RTE_ETH_NAME_MAX_LEN is 64).
        let name = if unsafe { sys::rte_eth_dev_get_name_by_port(port, name_buf.as_mut_ptr()) } == 0
        {
            // SAFETY: on success the buffer holds a NUL-terminated name.
            unsafe { CStr::from_ptr(name_buf.as_ptr()) }
                .to_string_lossy()
                .into_owned()
        } else {
            format!("port{port}")
        };

        let mut conf = sys::rte_eth_conf::default();
        let rss_types = u64::from(sys::RTE_ETH_RSS_IP | sys::RTE_ETH_RSS_TCP);
        let rss_offered = info.flow_type_rss_offloads & rss_types;
        let mut key = SYMMETRIC_KEY.to_vec();
        let rss = queues > 1 && rss_offered != 0;
        if rss {
            let key_len = match info.hash_key_size {
                0 => 40,
                n => usize::from(n).min(SYMMETRIC_KEY.len()),
            };
            key.truncate(key_len);
            conf.rxmode.mq_mode = sys::rte_eth_rx_mq_mode_RTE_ETH_MQ_RX_RSS;
            conf.rx_adv_conf.rss_conf.rss_key = key.as_mut_ptr();
            conf.rx_adv_conf.rss_conf.rss_key_len = key_len as u8;
            conf.rx_adv_conf.rss_conf.rss_hf = rss_offered;
        }
        let rx_cksum =
            u64::from(sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM);
        let mut rx_offloads = info.rx_offload_capa & rx_cksum;
        if rss {
            rx_offloads |= info.rx_offload_capa & u64::from(sys::RTE_ETH_RX_OFFLOAD_RSS_HASH);
        }
        conf.rxmode.offloads = rx_offloads;
        // SAFETY: `conf` is a valid configuration; `key` outlives the call (DPDK copies it).
        let rc = unsafe { sys::rte_eth_dev_configure(port, queues, queues, &conf) };
        if rc != 0 {
            return Err(dpdk("rte_eth_dev_configure", rc));
        }
        let (mut nrx, mut ntx) = (cfg.rx_ring, cfg.tx_ring);
        // SAFETY: valid writable u16s.
        let rc = unsafe { sys::rte_eth_dev_adjust_nb_rx_tx_desc(port, &mut nrx, &mut ntx) };
        if rc != 0 {
            return Err(dpdk("rte_eth_dev_adjust_nb_rx_tx_desc", rc));
        }
        // SAFETY: a valid port id (info_get succeeded).
        let socket = unsafe { sys::rte_eth_dev_socket_id(port) };
        let socket = if socket < 0 {
            sys::SOCKET_ID_ANY
        } else {
            socket
        };
        // Receive rings full, transmit rings full, one allocation batch per queue, the
        // per-lcore caches; at least 8191.
        let need =
            u32::from(queues) * (u32::from(nrx) + u32::from(ntx) + 2 * BURST as u32 + 512) + 1024;
        let mbufs = need.max(8191).next_power_of_two() - 1;
        static POOLS: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let pool_name = CString::new(format!(
            "mtcp{}_{}",
            port,
            POOLS.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        ))
        .map_err(|_| dpdk("pool name", 0))?;
        // SAFETY: a valid C string name; sizes within DPDK's limits.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(
                pool_name.as_ptr(),
                mbufs,
                256,
                0,
                sys::RTE_MBUF_DEFAULT_BUF_SIZE as u16,
                socket,
            )
        };
        if pool.is_null() {
            return Err(dpdk("rte_pktmbuf_pool_create", rte_errno()));
        }
        // From here on, a failure stops and closes the port and frees the pool.
        let mut mac = sys::rte_ether_addr::default();
        let mut dev = DpdkPort {
            id: port,
            name,
            pool,
            caps: Capabilities {
                mtu: cfg.mtu,
                checksum: ChecksumOffloads::default(),
                queues,
                rss: None,
            },
            mac: [0; 6],
            driver,
        };
        for q in 0..queues {
            // SAFETY: a configured port; null rxconf/txconf mean the driver's defaults;
            // `pool` is a valid mempool that outlives the port (freed in Drop after close).
            let rc = unsafe {
                sys::rte_eth_rx_queue_setup(port, q, nrx, socket as u32, std::ptr::null(), pool)
            };
            if rc != 0 {
                return Err(dpdk("rte_eth_rx_queue_setup", rc));
            }
            // SAFETY: as above.
            let rc = unsafe {
                sys::rte_eth_tx_queue_setup(port, q, ntx, socket as u32, std::ptr::null())
            };
            if rc != 0 {
                return Err(dpdk("rte_eth_tx_queue_setup", rc));
            }
        }
        // SAFETY: every queue is set up.
        let rc = unsafe { sys::rte_eth_dev_start(port) };
        if rc != 0 {
            return Err(dpdk("rte_eth_dev_start", rc));
        }
        if rss && info.reta_size >= 128 && info.reta_size % 128 == 0 {
            program_reta(port, info.reta_size, queues);
        }
        // SAFETY: `mac` is a valid, writable rte_ether_addr.
        let rc = unsafe { sys::rte_eth_macaddr_get(port, &mut mac) };
        if rc != 0 {
            return Err(dpdk("rte_eth_macaddr_get", rc));
        }
        let mut mtu = 0u16;
        // SAFETY: valid writable u16.
        if unsafe { sys::rte_eth_dev_get_mtu(port, &mut mtu) } == 0 && mtu > 0 {
            dev.caps.mtu = dev.caps.mtu.min(usize::from(mtu));
        }
        // A frame must fit in one mbuf's data room.
        let room = sys::RTE_MBUF_DEFAULT_BUF_SIZE as usize - sys::RTE_PKTMBUF_HEADROOM as usize;
        dev.caps.mtu = dev.caps.mtu.min(room - crate::ETHERNET_HEADER_LEN);
        dev.mac = mac.addr_bytes;
        if dev.mac == [0; 6] {
            // Ring ports have no address: a locally administered one, unique per port and
            // process.
            let pid = std::process::id().to_be_bytes();
            dev.mac = [0x02, 0x6d, pid[2], pid[3], (port >> 8) as u8, port as u8];
        }
        dev.caps.checksum = ChecksumOffloads {
            rx_ipv4: rx_offloads & u64::from(sys::RTE_ETH_RX_OFFLOAD_IPV4_CKSUM) != 0,
            rx_l4: rx_offloads & u64::from(sys::RTE_ETH_RX_OFFLOAD_TCP_CKSUM) != 0,
            tx_ipv4: false,
            tx_l4: false,
        };
        if rss {
            dev.caps.rss = Some(RssInfo {
                key: Some(key),
                symmetric: true,
            });
        }
        Ok(Arc::new(dev))
    }

    /// The port id.
    pub fn id(&self) -> u16 {
        self.id
    }

    /// The device's name (`net_memif0`, a PCI address, ...).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The driver's name (`net_memif`, `net_ring`, `net_ixgbe`, ...).
    pub fn driver(&self) -> &str {
        &self.driver
    }

    /// The device's Ethernet address.
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// What the device (as configured) can do.
    pub fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    /// Device counters (all queues).
    pub fn stats(&self) -> NicStats {
        let mut s = sys::rte_eth_stats::default();
        // SAFETY: `s` is a valid, writable rte_eth_stats; the port is started.
        if unsafe { sys::rte_eth_stats_get(self.id, &mut s) } != 0 {
            return NicStats::default();
        }
        NicStats {
            ipackets: s.ipackets,
            opackets: s.opackets,
            ibytes: s.ibytes,
            obytes: s.obytes,
            imissed: s.imissed,
            ierrors: s.ierrors,
            oerrors: s.oerrors,
            rx_nombuf: s.rx_nombuf,
        }
    }

    /// Queue pair `queue`, for the calling thread (registered with EAL if it is not an
    /// lcore yet). Each queue must have one owner thread: the returned value is not `Send`.
    pub fn queue(self: &Arc<Self>, queue: u16) -> Result<DpdkQueue, QueueError> {
        if queue >= self.caps.queues {
            return Err(QueueError::NoQueue {
                port: self.id,
                queue,
                queues: self.caps.queues,
            });
        }
        // SAFETY: reads this thread's lcore id; no preconditions.
        let registered = if unsafe { sys::mtcp_lcore_id() == sys::mtcp_lcore_id_any() } {
            // SAFETY: EAL is initialised (a port exists); registers the calling thread.
            if unsafe { sys::rte_thread_register() } != 0 {
                return Err(QueueError::Register(strerror(rte_errno())));
            }
            true
        } else {
            false
        };
        Ok(DpdkQueue {
            port: self.clone(),
            queue,
            rx: [std::ptr::null_mut(); BURST],
            tx: Vec::with_capacity(BURST * 4),
            tx_limit: BURST * 16,
            spare: Vec::with_capacity(BURST),
            stats: QueueStats::default(),
            registered,
            _not_send: std::marker::PhantomData,
        })
    }
}

/// Spreads the redirection table so that hash `h` lands on queue `(h % 128) % queues`,
/// what [`crate::rss::tcp4_queue`] predicts (for any table size that is a multiple of 128).
fn program_reta(port: u16, size: u16, queues: u16) {
    let group = sys::RTE_ETH_RETA_GROUP_SIZE as usize;
    let mut entries: Vec<sys::rte_eth_rss_reta_entry64> = (0..usize::from(size).div_ceil(group))
        .map(|_| sys::rte_eth_rss_reta_entry64 {
            mask: u64::MAX,
            ..Default::default()
        })
        .collect();
    for i in 0..usize::from(size) {
        if let Some(e) = entries.get_mut(i / group)
            && let Some(slot) = e.reta.get_mut(i % group)
        {
            *slot = reta_queue(i, queues);
        }
    }
    // SAFETY: `entries` holds size / 64 valid entries, as rte_eth_dev_rss_reta_update reads.
    let rc = unsafe { sys::rte_eth_dev_rss_reta_update(port, entries.as_mut_ptr(), size) };
    if rc != 0 {
        eprintln!(
            "megatcp: port {port}: cannot program the RSS redirection table ({}); active opens \
             may pick ports whose replies land on another core",
            strerror(rc.abs())
        );
    }
}

/// The queue of redirection table entry `i` (see [`program_reta`]).
fn reta_queue(i: usize, queues: u16) -> u16 {
    ((i % 128) % usize::from(queues.max(1))) as u16
}

impl Drop for DpdkPort {
    fn drop(&mut self) {
        // SAFETY: the last queue handle is gone (they hold an Arc to the port): nothing uses
        // the port any more.
        unsafe {
            sys::rte_eth_dev_stop(self.id);
            sys::rte_eth_dev_close(self.id);
        }
        // Mbufs of this pool may still sit in another port's rings (a ring pair); the pool
        // is freed only when all are back, else left to the process's end.
        // SAFETY: `pool` is the valid mempool created in `open`.
        if unsafe { sys::rte_mempool_in_use_count(self.pool) } == 0 {
            // SAFETY: no mbuf of the pool is in use and the port using it is closed.
            unsafe { sys::rte_mempool_free(self.pool) };
        }
    }
}

/// One RX/TX queue pair of a [`DpdkPort`], owned by one thread. See the module docs.
pub struct DpdkQueue {
    port: Arc<DpdkPort>,
    queue: u16,
    /// Receive burst scratch.
    rx: [*mut sys::rte_mbuf; BURST],
    /// Frames written, waiting for `tx_flush` (owned by us until the device takes them).
    tx: Vec<*mut sys::rte_mbuf>,
    /// Frames `tx` holds at most before `tx_frame` refuses (the device is not taking them).
    tx_limit: usize,
    /// Allocated, unwritten mbufs.
    spare: Vec<*mut sys::rte_mbuf>,
    stats: QueueStats,
    /// Whether this queue registered its thread with EAL (unregistered on drop).
    registered: bool,
    /// The queue belongs to the thread that opened it (lcore cache, registration).
    _not_send: std::marker::PhantomData<*mut ()>,
}

impl std::fmt::Debug for DpdkQueue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DpdkQueue")
            .field("port", &self.port.id)
            .field("queue", &self.queue)
            .field("stats", &self.stats)
            .finish()
    }
}

impl DpdkQueue {
    /// The port this queue belongs to.
    pub fn port(&self) -> &Arc<DpdkPort> {
        &self.port
    }

    /// Frees mbufs we own.
    fn free(mbufs: &mut Vec<*mut sys::rte_mbuf>) {
        if mbufs.is_empty() {
            return;
        }
        // SAFETY: every pointer is a valid mbuf owned by this queue (allocated and not
        // handed to the device); they are forgotten right after.
        unsafe { sys::rte_pktmbuf_free_bulk(mbufs.as_mut_ptr(), mbufs.len() as u32) };
        mbufs.clear();
    }
}

impl Drop for DpdkQueue {
    /// Sends what was queued (the last FINs and RSTs) for at most 100 ms, frees the rest.
    fn drop(&mut self) {
        let end = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while !self.tx.is_empty() && std::time::Instant::now() < end {
            if self.tx_flush() == 0 {
                std::thread::sleep(std::time::Duration::from_micros(200));
            }
        }
        Self::free(&mut self.tx);
        Self::free(&mut self.spare);
        if self.registered {
            // SAFETY: this thread registered itself in `DpdkPort::queue`; nothing of this
            // queue uses its lcore id any more.
            unsafe { sys::rte_thread_unregister() };
        }
    }
}

impl NicQueue for DpdkQueue {
    fn capabilities(&self) -> &Capabilities {
        &self.port.caps
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let mut delivered = 0;
        let mut left = budget;
        while left > 0 {
            let want = left.min(BURST) as u16;
            // SAFETY: `rx` has room for `want` <= BURST pointers; this thread owns the queue.
            let n = usize::from(unsafe {
                sys::mtcp_rx_burst(self.port.id, self.queue, self.rx.as_mut_ptr(), want)
            });
            for &m in self.rx.iter().take(n) {
                let mut v = sys::mtcp_rx_view::default();
                // SAFETY: `m` is a valid mbuf the device just handed us.
                unsafe { sys::mtcp_rx_view(m, &mut v) };
                if v.flags & (sys::MTCP_RX_CKSUM_BAD | sys::MTCP_RX_MULTISEG) != 0
                    || v.data.is_null()
                {
                    self.stats.dropped += 1;
                    continue;
                }
                // SAFETY: `data` points to `len` initialised bytes of the mbuf's first (only)
                // segment, which we own until it is freed below, after `sink` returned.
                let data = unsafe { std::slice::from_raw_parts(v.data, v.len as usize) };
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += data.len() as u64;
                delivered += 1;
                sink(RxFrame {
                    data,
                    rss_hash: (v.flags & sys::MTCP_RX_RSS != 0).then_some(v.rss),
                });
            }
            if n > 0 {
                // SAFETY: the first `n` entries are mbufs we own; no slice into them
                // survives (each lived only during its `sink` call).
                unsafe { sys::rte_pktmbuf_free_bulk(self.rx.as_mut_ptr(), n as u32) };
            }
            left -= n;
            if n < usize::from(want) {
                break;
            }
        }
        delivered
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        if self.tx.len() >= self.tx_limit {
            self.tx_flush();
            if self.tx.len() >= self.tx_limit {
                self.stats.tx_full += 1;
                return Err(TxError::Full);
            }
        }
        if self.spare.is_empty() {
            self.spare.resize(BURST, std::ptr::null_mut());
            // SAFETY: `spare` has room for BURST pointers; the pool is valid.
            let rc = unsafe {
                sys::mtcp_pktmbuf_alloc_bulk(self.port.pool, self.spare.as_mut_ptr(), BURST as u32)
            };
            if rc != 0 {
                self.spare.clear();
                self.stats.tx_full += 1;
                return Err(TxError::Full);
            }
        }
        let Some(m) = self.spare.pop() else {
            self.stats.tx_full += 1;
            return Err(TxError::Full);
        };
        let mut room = 0u32;
        // SAFETY: `m` is a fresh mbuf we own.
        let ptr = unsafe { sys::mtcp_tx_room(m, &mut room) };
        let max = self.port.caps.max_frame_len().min(room as usize);
        // SAFETY: `ptr` points to the mbuf's data room, `room` >= `max` writable bytes that
        // nothing else references while `fill` runs.
        let buf = unsafe { std::slice::from_raw_parts_mut(ptr, max) };
        let len = fill(buf);
        if len == 0 {
            self.spare.push(m);
            return Ok(());
        }
        if len > max {
            self.spare.push(m);
            return Err(TxError::TooLong { len, max });
        }
        // SAFETY: `m` is ours; `len` <= its tailroom.
        unsafe { sys::mtcp_tx_set_len(m, len as u16) };
        self.tx.push(m);
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        Ok(())
    }

    fn tx_flush(&mut self) -> usize {
        let mut sent = 0;
        for _ in 0..4 {
            if self.tx.is_empty() {
                break;
            }
            let n = self.tx.len().min(usize::from(u16::MAX)) as u16;
            // SAFETY: the first `n` entries are mbufs we own; the device takes over the ones
            // it accepts (the first `k`), which are removed from `tx` below.
            let k = usize::from(unsafe {
                sys::mtcp_tx_burst(self.port.id, self.queue, self.tx.as_mut_ptr(), n)
            });
            self.tx.drain(..k);
            sent += k;
            if k == 0 {
                break;
            }
        }
        sent
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::SocketAddrV4;

    #[test]
    fn the_key_is_symmetric_and_the_table_matches_the_port_choice() {
        let a: SocketAddrV4 = "10.0.0.1:40000".parse().unwrap_or_else(|_| unreachable!());
        let b: SocketAddrV4 = "10.0.0.2:80".parse().unwrap_or_else(|_| unreachable!());
        for len in [40, 52] {
            let key = &SYMMETRIC_KEY[..len];
            for port in 40000..40100u16 {
                let c = SocketAddrV4::new(*a.ip(), port);
                assert_eq!(
                    crate::rss::tcp4_hash(key, c, b),
                    crate::rss::tcp4_hash(key, b, c)
                );
            }
        }
        // Whatever the table size (a multiple of 128), entry `hash % size` holds the queue
        // `tcp4_queue` predicts.
        for size in [128usize, 512] {
            for queues in [1u16, 2, 3, 4] {
                for port in 40000..40200u16 {
                    let c = SocketAddrV4::new(*a.ip(), port);
                    let h = crate::rss::tcp4_hash(&SYMMETRIC_KEY[..40], b, c) as usize;
                    assert_eq!(
                        reta_queue(h % size, queues),
                        crate::rss::tcp4_queue(&SYMMETRIC_KEY[..40], b, c, queues)
                    );
                }
            }
        }
    }
}
