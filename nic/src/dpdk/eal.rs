//! EAL, DPDK's environment: started once per process ([`init_eal`]) with megatcp's
//! arguments (`--no-pci` unless a device is named, a per-process file prefix, hugepages or
//! not), and the ports it found or made ([`Eal::ports`], [`Eal::ring_pair`]).

use std::ffi::{CStr, CString};
use std::sync::OnceLock;

use megatcp_dpdk_sys as sys;

use super::{rte_errno, strerror};

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
