//! megatcp's XDP program on an interface (`filter.bpf.c`), shared by every megatcp process
//! that uses the interface, each on its own queues.
//!
//! The program sends to a queue's AF_XDP socket only what the rule of that queue names (the
//! stack's address and ARP for it, or everything with [`Steering::All`]); the rest goes on
//! to the kernel, so the host keeps its own addresses on the NIC. Its maps hold one rule
//! and one socket per queue.
//!
//! Who attaches and who removes it: every process holds a shared lock on
//! `/run/megatcp/xdp-NETNS-IFINDEX.users` while it uses the interface, and changes who uses
//! it only under the exclusive `.setup` lock of the same name. A process that finds no other
//! user replaces whatever megatcp (or libxdp's default AF_XDP program) left there, a process
//! killed with `kill -9` included, and attaches a fresh program; one that finds users joins
//! the program they share (found by name on the interface, its maps by the program's map
//! ids); the last one to leave detaches it. Another application's program is never touched.
//! The locks go with the process, so a killed one leaves no lock behind.

use std::ffi::{CStr, CString};
use std::fs::File;
use std::net::Ipv4Addr;
use std::ops::RangeInclusive;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::sync::{Arc, Mutex, PoisonError, Weak};

use libxdp_sys as xdp;

use super::users::{lock_base, lock_file, open_lock};

/// The program, compiled from `filter.bpf.c` by the build script.
static OBJECT: &[u8] = include_bytes!(concat!(env!("OUT_DIR"), "/megatcp_xdp.o"));
/// The program's name (its function in `filter.bpf.c`).
const NAME: &str = "megatcp_xdp";
/// libxdp's default AF_XDP program (what older megatcp versions and DPDK's af_xdp PMD load).
const LIBXDP_DEFAULT: &str = "xsk_def_prog";
/// Queues the maps hold (`MAX_QUEUES` in `filter.bpf.c`).
pub const MAX_QUEUES: u32 = 256;

/// A queue's rule (`struct rule` in `filter.bpf.c`).
#[repr(C)]
#[derive(Debug, Clone, Copy, Default)]
struct Rule {
    /// IPv4 address in network order; 0: no rule (everything passes).
    addr: u32,
    flags: u32,
    eph_lo: u16,
    eph_hi: u16,
}

const RULE_PORTS: u32 = 1;
const RULE_ALL: u32 = 2;

/// A key of the ports map (`struct port_key` in `filter.bpf.c`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct PortKey {
    addr: u32,
    port: u16,
    pad: u16,
}

/// What a queue's socket receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Steering {
    /// Frames for this address: IPv4 to it, ARP asking for it or answering it. With
    /// `ports`, TCP only to those ports or to the `ephemeral` range (the replies of active
    /// opens). Everything else goes to the kernel.
    Address {
        /// The stack's address.
        addr: Ipv4Addr,
        /// Only these TCP ports (and `ephemeral`); empty: every TCP port.
        ports: Vec<u16>,
        /// The stack's ephemeral ports.
        ephemeral: RangeInclusive<u16>,
    },
    /// Every frame of the queue (an interface that is the stack's alone).
    All,
}

impl std::fmt::Display for Steering {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Steering::All => write!(f, "every frame of the queue"),
            Steering::Address { addr, ports, .. } if ports.is_empty() => {
                write!(
                    f,
                    "frames for {addr} and ARP for it, the rest to the kernel"
                )
            }
            Steering::Address {
                addr,
                ports,
                ephemeral,
            } => write!(
                f,
                "TCP to {addr} ports {} and {}-{}, ARP for it, the rest to the kernel",
                ports
                    .iter()
                    .map(u16::to_string)
                    .collect::<Vec<_>>()
                    .join(","),
                ephemeral.start(),
                ephemeral.end()
            ),
        }
    }
}

/// How the program runs on the interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// In the driver (native XDP).
    Native,
    /// On socket buffers (generic XDP): slower, every frame on queue 0 on veth.
    Generic,
}

/// Why the program could not be attached or used.
#[derive(Debug, thiserror::Error)]
pub enum ProgramError {
    /// No such interface here.
    #[error("no interface named {0} in this network namespace")]
    NoInterface(String),
    /// Another application's XDP program holds the interface.
    #[error(
        "{iface} runs another application's XDP program ({name}, id {id}); megatcp does not \
         replace it: stop that application, or detach it if it is stale (ip link set dev \
         {iface} xdp off)"
    )]
    Foreign {
        /// Interface.
        iface: String,
        /// The program's name.
        name: String,
        /// Its id.
        id: u32,
    },
    /// The locks under /run/megatcp could not be taken.
    #[error("{path}: {source}")]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// libbpf or libxdp refused.
    #[error("{iface}: {what}: {reason}")]
    Bpf {
        /// Interface.
        iface: String,
        /// The step.
        what: &'static str,
        /// The library's error.
        reason: String,
    },
}

/// The program on one interface, as this process uses it. Shared by the process's queues
/// on the interface ([`Program::on`]); the last one dropped leaves the interface (see the
/// module docs).
#[derive(Debug)]
pub struct Program {
    iface: String,
    ifindex: i32,
    mode: Mode,
    prog: OwnedFd,
    xsks: OwnedFd,
    rules: OwnedFd,
    ports: OwnedFd,
    setup_path: PathBuf,
    /// Held shared while this process uses the interface.
    users: File,
    /// What this process put into the maps, taken out when it leaves.
    bound: Mutex<Vec<(u32, Steering)>>,
}

/// The programs of this process, by interface.
static PROGRAMS: Mutex<Vec<(String, Weak<Program>)>> = Mutex::new(Vec::new());

impl Program {
    /// The program on `iface` for this process: the one its other queues use, the one other
    /// megatcp processes share, or a fresh one (see the module docs).
    pub fn on(iface: &str) -> Result<Arc<Program>, ProgramError> {
        let mut programs = PROGRAMS.lock().unwrap_or_else(PoisonError::into_inner);
        programs.retain(|(_, w)| w.strong_count() > 0);
        if let Some(p) = programs
            .iter()
            .find(|(name, _)| name == iface)
            .and_then(|(_, w)| w.upgrade())
        {
            return Ok(p);
        }
        let p = Arc::new(Self::join(iface)?);
        programs.push((iface.to_string(), Arc::downgrade(&p)));
        Ok(p)
    }

    fn join(iface: &str) -> Result<Program, ProgramError> {
        let ifindex = ifindex(iface)?;
        let base = lock_base(ifindex)?;
        let setup_path = base.with_extension("setup");
        let setup = lock_file(&setup_path, libc::LOCK_EX)?;
        let users_path = base.with_extension("users");
        let users = open_lock(&users_path)?;
        let bpf = |what: &'static str, reason: String| ProgramError::Bpf {
            iface: iface.to_string(),
            what,
            reason,
        };
        // SAFETY: `users` is an open file.
        let alone = unsafe { libc::flock(users.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        let found = if alone {
            remove_stale(iface, ifindex)?;
            attach(iface, ifindex)?;
            find(iface, ifindex)?
        } else {
            match find(iface, ifindex)? {
                Some(f) => Some(f),
                None => {
                    // Users, but no program (detached by hand): attach it again.
                    attach(iface, ifindex)?;
                    find(iface, ifindex)?
                }
            }
        };
        let Some(found) = found else {
            return Err(bpf("finding the program just attached", "not there".into()));
        };
        // Shared from now on (converting is not atomic, but every change of users happens
        // under the setup lock, which this process holds).
        // SAFETY: `users` is an open file.
        if unsafe { libc::flock(users.as_raw_fd(), libc::LOCK_SH) } != 0 {
            return Err(ProgramError::Lock {
                path: users_path,
                source: std::io::Error::last_os_error(),
            });
        }
        drop(setup);
        Ok(Program {
            iface: iface.to_string(),
            ifindex,
            mode: found.mode,
            prog: found.prog,
            xsks: found.xsks,
            rules: found.rules,
            ports: found.ports,
            setup_path,
            users,
            bound: Mutex::new(Vec::new()),
        })
    }

    /// Whether the program runs in the driver or on socket buffers.
    pub fn mode(&self) -> Mode {
        self.mode
    }

    /// Hands queue `queue`'s frames, as `steering` says, to the AF_XDP socket `xsk`.
    pub fn bind(&self, queue: u32, xsk: RawFd, steering: &Steering) -> Result<(), ProgramError> {
        let bpf = |what: &'static str, rc: i32| ProgramError::Bpf {
            iface: self.iface.clone(),
            what,
            reason: std::io::Error::from_raw_os_error(rc.abs()).to_string(),
        };
        if queue >= MAX_QUEUES {
            return Err(ProgramError::Bpf {
                iface: self.iface.clone(),
                what: "binding a queue",
                reason: format!("queue {queue} is beyond the program's {MAX_QUEUES}"),
            });
        }
        let mut rule = Rule::default();
        match steering {
            Steering::All => {
                rule.flags = RULE_ALL;
                rule.addr = u32::MAX;
            }
            Steering::Address {
                addr,
                ports,
                ephemeral,
            } => {
                rule.addr = u32::from_ne_bytes(addr.octets());
                if !ports.is_empty() {
                    rule.flags = RULE_PORTS;
                    (rule.eph_lo, rule.eph_hi) = (*ephemeral.start(), *ephemeral.end());
                    for &port in ports {
                        let key = PortKey {
                            addr: rule.addr,
                            port,
                            pad: 0,
                        };
                        let one = 1u8;
                        // SAFETY: key and value are the map's key and value types, valid
                        // for the call.
                        let rc = unsafe {
                            xdp::bpf_map_update_elem(
                                self.ports.as_raw_fd(),
                                (&key as *const PortKey).cast(),
                                (&one as *const u8).cast(),
                                0,
                            )
                        };
                        if rc != 0 {
                            return Err(bpf("adding a port", rc));
                        }
                    }
                }
            }
        }
        // The socket first, then the rule: a frame never meets a rule without its socket.
        let fd = xsk as u32;
        // SAFETY: key (u32 queue) and value (u32 socket descriptor) are the XSKMAP's types.
        let rc = unsafe {
            xdp::bpf_map_update_elem(
                self.xsks.as_raw_fd(),
                (&queue as *const u32).cast(),
                (&fd as *const u32).cast(),
                0,
            )
        };
        if rc != 0 {
            return Err(bpf("adding the socket to the program's map", rc));
        }
        self.set_rule(queue, &rule)
            .map_err(|rc| bpf("setting the queue's rule", rc))?;
        self.bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((queue, steering.clone()));
        Ok(())
    }

    /// Gives queue `queue`'s frames back to the kernel (the socket is about to close).
    pub fn unbind(&self, queue: u32) {
        let mut bound = self.bound.lock().unwrap_or_else(PoisonError::into_inner);
        let Some(at) = bound.iter().position(|(q, _)| *q == queue) else {
            return;
        };
        let (_, steering) = bound.swap_remove(at);
        let _ = self.set_rule(queue, &Rule::default());
        // SAFETY: the key is the XSKMAP's u32 key.
        unsafe { xdp::bpf_map_delete_elem(self.xsks.as_raw_fd(), (&queue as *const u32).cast()) };
        if let Steering::Address { addr, ports, .. } = steering
            && !bound
                .iter()
                .any(|(_, s)| matches!(s, Steering::Address { addr: a, .. } if *a == addr))
        {
            for port in ports {
                let key = PortKey {
                    addr: u32::from_ne_bytes(addr.octets()),
                    port,
                    pad: 0,
                };
                // SAFETY: the key is the ports map's key type.
                unsafe {
                    xdp::bpf_map_delete_elem(
                        self.ports.as_raw_fd(),
                        (&key as *const PortKey).cast(),
                    )
                };
            }
        }
    }

    fn set_rule(&self, queue: u32, rule: &Rule) -> Result<(), i32> {
        // SAFETY: key (u32) and value (struct rule) are the rules map's types.
        let rc = unsafe {
            xdp::bpf_map_update_elem(
                self.rules.as_raw_fd(),
                (&queue as *const u32).cast(),
                (rule as *const Rule).cast(),
                0,
            )
        };
        if rc == 0 { Ok(()) } else { Err(rc) }
    }
}

impl Program {
    /// How often the program ran and for how long in all (ns), counted by the kernel while
    /// `kernel.bpf_stats_enabled` is 1; `None` when the kernel does not say.
    pub fn run_stats(&self) -> Option<(u64, u64)> {
        // SAFETY: zeroes are a valid `bpf_prog_info` (plain integers and pointers the
        // kernel fills only when asked for with a length).
        let mut info: xdp::bpf_prog_info = unsafe { std::mem::zeroed() };
        let mut len = u32::try_from(std::mem::size_of::<xdp::bpf_prog_info>()).ok()?;
        // SAFETY: `prog` is an open program fd; `info` and `len` are valid for writes and
        // `len` says how large `info` is.
        let rc =
            unsafe { xdp::bpf_prog_get_info_by_fd(self.prog.as_raw_fd(), &mut info, &mut len) };
        (rc == 0).then_some((info.run_cnt, info.run_time_ns))
    }
}

/// Whether the kernel counts BPF programs' runs and run time (`kernel.bpf_stats_enabled`).
fn bpf_stats_enabled() -> bool {
    std::fs::read_to_string("/proc/sys/kernel/bpf_stats_enabled").is_ok_and(|s| s.trim() == "1")
}

impl Drop for Program {
    /// Leaves the interface; the last megatcp process on it detaches the program.
    fn drop(&mut self) {
        if bpf_stats_enabled()
            && let Some((runs, ns)) = self.run_stats().filter(|&(runs, _)| runs > 0)
        {
            tracing::info!(
                "XDP program on {}: {runs} runs, {:.1} ns per run (all users, since \
                 kernel.bpf_stats_enabled=1)",
                self.iface,
                ns as f64 / runs as f64
            );
        }
        let queues: Vec<u32> = self
            .bound
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .iter()
            .map(|(q, _)| *q)
            .collect();
        for q in queues {
            self.unbind(q);
        }
        let Ok(setup) = lock_file(&self.setup_path, libc::LOCK_EX) else {
            return;
        };
        // SAFETY: `users` is an open file; dropping our shared lock, then asking whether
        // anyone else holds one.
        let last = unsafe {
            libc::flock(self.users.as_raw_fd(), libc::LOCK_UN);
            libc::flock(self.users.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) == 0
        };
        if last {
            if let Err(e) = detach(&self.prog, self.ifindex, self.mode) {
                tracing::warn!("cannot detach the XDP program from {}: {e}", self.iface);
            }
            // Nobody uses the interface: its lock files go (see `lock_file`).
            let _ = std::fs::remove_file(self.setup_path.with_extension("users"));
            let _ = std::fs::remove_file(&self.setup_path);
        }
        drop(setup);
    }
}

fn ifindex(iface: &str) -> Result<i32, ProgramError> {
    let name = CString::new(iface).map_err(|_| ProgramError::NoInterface(iface.to_string()))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let index = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if index == 0 {
        return Err(ProgramError::NoInterface(iface.to_string()));
    }
    i32::try_from(index).map_err(|_| ProgramError::NoInterface(iface.to_string()))
}

fn libxdp_error(ptr: *const libc::c_void) -> Option<String> {
    // SAFETY: libxdp_get_error only inspects the pointer value.
    let rc = unsafe { xdp::libxdp_get_error(ptr) };
    if rc != 0 {
        return Some(std::io::Error::from_raw_os_error((-rc) as i32).to_string());
    }
    ptr.is_null().then(|| "no result".into())
}

/// The name of a libxdp program handle.
///
/// # Safety
///
/// `prog` must be a valid program handle of libxdp.
unsafe fn prog_name(prog: *const xdp::xdp_program) -> String {
    // SAFETY: a valid handle, as the caller promises; the name is a NUL-terminated string
    // owned by the handle, copied at once.
    let name = unsafe { xdp::xdp_program__name(prog) };
    if name.is_null() {
        return String::new();
    }
    // SAFETY: non-null NUL-terminated string of the handle.
    unsafe { CStr::from_ptr(name) }
        .to_string_lossy()
        .into_owned()
}

/// Detaches what megatcp (or libxdp's default AF_XDP program) left on the interface, saying
/// so; refuses when another application's program is there. Called only when no other
/// megatcp process uses the interface.
fn remove_stale(iface: &str, ifindex: i32) -> Result<(), ProgramError> {
    // SAFETY: a plain query; the handle is closed below.
    let mp = unsafe { xdp::xdp_multiprog__get_from_ifindex(ifindex) };
    if libxdp_error(mp.cast()).is_some() {
        return Ok(()); // nothing attached
    }
    let ours = |name: &str| name == NAME || name == LIBXDP_DEFAULT;
    let mut result = Ok(());
    // SAFETY: `mp` is a valid handle (checked above) until closed at the end; the program
    // handles it gives are valid while it is.
    unsafe {
        let mode = xdp::xdp_multiprog__attach_mode(mp);
        if xdp::xdp_multiprog__is_legacy(mp) {
            let main = xdp::xdp_multiprog__main_prog(mp);
            if !main.is_null() {
                let (name, id) = (prog_name(main), xdp::xdp_program__id(main));
                if ours(&name) {
                    tracing::warn!(
                        "XDP program {name} (id {id}) is still attached to {iface} \
                         (left by a process that was killed?); replacing it"
                    );
                    let rc = xdp::xdp_multiprog__detach(mp);
                    if rc != 0 {
                        result = Err(ProgramError::Bpf {
                            iface: iface.to_string(),
                            what: "detaching a stale program",
                            reason: std::io::Error::from_raw_os_error(rc.abs()).to_string(),
                        });
                    }
                } else {
                    result = Err(ProgramError::Foreign {
                        iface: iface.to_string(),
                        name,
                        id,
                    });
                }
            }
        } else {
            let mut p = xdp::xdp_multiprog__next_prog(std::ptr::null(), mp);
            while !p.is_null() {
                let next = xdp::xdp_multiprog__next_prog(p, mp);
                let name = prog_name(p);
                if ours(&name) {
                    tracing::warn!(
                        "XDP program {name} (id {}) is still in {iface}'s dispatcher; \
                         removing it",
                        xdp::xdp_program__id(p)
                    );
                    xdp::xdp_program__detach(p, ifindex, mode, 0);
                }
                p = next;
            }
        }
        xdp::xdp_multiprog__close(mp);
    }
    result
}

/// Loads the program and attaches it to the interface: in the driver when it can, else
/// in generic mode.
fn attach(iface: &str, ifindex: i32) -> Result<(), ProgramError> {
    let bpf = |what: &'static str, reason: String| ProgramError::Bpf {
        iface: iface.to_string(),
        what,
        reason,
    };
    // SAFETY: OBJECT is a valid ELF image for the duration of the call (static); libbpf
    // copies what it keeps.
    let obj = unsafe {
        xdp::bpf_object__open_mem(OBJECT.as_ptr().cast(), OBJECT.len(), std::ptr::null())
    };
    if let Some(e) = libxdp_error(obj.cast()) {
        return Err(bpf("opening the program", e));
    }
    let section = c"xdp.frags";
    // SAFETY: `obj` is a valid object; the section name a valid C string.
    let prog = unsafe { xdp::xdp_program__from_bpf_obj(obj, section.as_ptr()) };
    if let Some(e) = libxdp_error(prog.cast()) {
        // SAFETY: `obj` is valid and not used afterwards.
        unsafe { xdp::bpf_object__close(obj) };
        return Err(bpf("reading the program", e));
    }
    let mut errors = Vec::new();
    for (mode, name) in [
        (xdp::xdp_attach_mode_XDP_MODE_NATIVE, "native"),
        (xdp::xdp_attach_mode_XDP_MODE_SKB, "generic"),
    ] {
        // SAFETY: `prog` is a valid program handle.
        let rc = unsafe { xdp::xdp_program__attach(prog, ifindex, mode, 0) };
        if rc == 0 {
            errors.clear();
            break;
        }
        errors.push(format!(
            "{name}: {}",
            std::io::Error::from_raw_os_error(rc.abs())
        ));
    }
    // SAFETY: both handles are valid and not used afterwards; the attached program stays
    // in the kernel (the interface holds it).
    unsafe {
        xdp::xdp_program__close(prog);
        xdp::bpf_object__close(obj);
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(bpf("attaching the XDP program", errors.join("; ")))
    }
}

/// The program and its maps, found on the interface.
struct Found {
    mode: Mode,
    prog: OwnedFd,
    xsks: OwnedFd,
    rules: OwnedFd,
    ports: OwnedFd,
}

/// An owned duplicate of `fd` (libxdp and libbpf keep their own).
fn dup(fd: RawFd) -> Option<OwnedFd> {
    if fd < 0 {
        return None;
    }
    // SAFETY: fcntl(F_DUPFD_CLOEXEC) on a descriptor the caller holds open.
    let new = unsafe { libc::fcntl(fd, libc::F_DUPFD_CLOEXEC, 3) };
    // SAFETY: `new` is a fresh descriptor that nothing else owns.
    (new >= 0).then(|| unsafe { OwnedFd::from_raw_fd(new) })
}

/// megatcp's program on the interface, with its maps; `None` when it is not there.
fn find(iface: &str, ifindex: i32) -> Result<Option<Found>, ProgramError> {
    // SAFETY: a plain query; the handle is closed below.
    let mp = unsafe { xdp::xdp_multiprog__get_from_ifindex(ifindex) };
    if libxdp_error(mp.cast()).is_some() {
        return Ok(None);
    }
    // SAFETY: `mp` is valid until closed at the end of this block; the program handles it
    // gives are valid while it is; the descriptor is duplicated before it is closed.
    let (prog, mode) = unsafe {
        let mode = if xdp::xdp_multiprog__attach_mode(mp) == xdp::xdp_attach_mode_XDP_MODE_SKB {
            Mode::Generic
        } else {
            Mode::Native
        };
        let mut found = None;
        if xdp::xdp_multiprog__is_legacy(mp) {
            let main = xdp::xdp_multiprog__main_prog(mp);
            if !main.is_null() && prog_name(main) == NAME {
                found = dup(xdp::xdp_program__fd(main));
            }
        } else {
            let mut p = xdp::xdp_multiprog__next_prog(std::ptr::null(), mp);
            while !p.is_null() && found.is_none() {
                if prog_name(p) == NAME {
                    found = dup(xdp::xdp_program__fd(p));
                }
                p = xdp::xdp_multiprog__next_prog(p, mp);
            }
        }
        xdp::xdp_multiprog__close(mp);
        (found, mode)
    };
    let Some(prog) = prog else {
        return Ok(None);
    };
    let mut ids = [0u32; 8];
    // SAFETY: bpf_prog_info is a C struct of integers and arrays: all zero is valid.
    let mut info: xdp::bpf_prog_info = unsafe { std::mem::zeroed() };
    info.nr_map_ids = ids.len() as u32;
    info.map_ids = ids.as_mut_ptr() as u64;
    let mut len = std::mem::size_of::<xdp::bpf_prog_info>() as u32;
    // SAFETY: `info` is writable and `len` its size; `map_ids` points to `nr_map_ids` u32s.
    let rc = unsafe { xdp::bpf_prog_get_info_by_fd(prog.as_raw_fd(), &mut info, &mut len) };
    if rc != 0 {
        return Err(ProgramError::Bpf {
            iface: iface.to_string(),
            what: "reading the program's maps",
            reason: std::io::Error::from_raw_os_error(rc.abs()).to_string(),
        });
    }
    let (mut xsks, mut rules, mut ports) = (None, None, None);
    for &id in ids.iter().take((info.nr_map_ids as usize).min(ids.len())) {
        // SAFETY: a plain syscall wrapper; the descriptor returned is ours.
        let fd = unsafe { xdp::bpf_map_get_fd_by_id(id) };
        if fd < 0 {
            continue;
        }
        // SAFETY: `fd` is a fresh descriptor nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        // SAFETY: bpf_map_info is a C struct of integers and arrays: all zero is valid.
        let mut minfo: xdp::bpf_map_info = unsafe { std::mem::zeroed() };
        let mut mlen = std::mem::size_of::<xdp::bpf_map_info>() as u32;
        // SAFETY: `minfo` is writable and `mlen` its size.
        if unsafe { xdp::bpf_map_get_info_by_fd(fd.as_raw_fd(), &mut minfo, &mut mlen) } != 0 {
            continue;
        }
        let bytes: Vec<u8> = minfo.name.iter().map(|&c| c as u8).collect();
        let end = bytes.iter().position(|&b| b == 0).unwrap_or(bytes.len());
        match &bytes[..end] {
            b"megatcp_xsks" => xsks = Some(fd),
            b"megatcp_rules" => rules = Some(fd),
            b"megatcp_ports" => ports = Some(fd),
            _ => {}
        }
    }
    match (xsks, rules, ports) {
        (Some(xsks), Some(rules), Some(ports)) => Ok(Some(Found {
            mode,
            prog,
            xsks,
            rules,
            ports,
        })),
        _ => Err(ProgramError::Bpf {
            iface: iface.to_string(),
            what: "finding the program's maps",
            reason: "a program of that name without megatcp's maps".into(),
        }),
    }
}

/// Detaches the program `prog` from the interface (only that program: a newer one that
/// replaced it stays).
fn detach(prog: &OwnedFd, ifindex: i32, mode: Mode) -> Result<(), String> {
    let fd = dup(prog.as_raw_fd()).ok_or("cannot duplicate the program's descriptor")?;
    let raw = std::os::fd::IntoRawFd::into_raw_fd(fd);
    // SAFETY: libxdp takes ownership of `raw` (closed with the handle).
    let handle = unsafe { xdp::xdp_program__from_fd(raw) };
    if let Some(e) = libxdp_error(handle.cast()) {
        return Err(e);
    }
    let mode = match mode {
        Mode::Native => xdp::xdp_attach_mode_XDP_MODE_NATIVE,
        Mode::Generic => xdp::xdp_attach_mode_XDP_MODE_SKB,
    };
    // SAFETY: `handle` is a valid program handle, closed once after use.
    let rc = unsafe {
        let rc = xdp::xdp_program__detach(handle, ifindex, mode, 0);
        xdp::xdp_program__close(handle);
        rc
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::from_raw_os_error(rc.abs()).to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rule_layouts_match_the_program() {
        // struct rule and struct port_key in filter.bpf.c.
        assert_eq!(std::mem::size_of::<Rule>(), 12);
        assert_eq!(std::mem::size_of::<PortKey>(), 8);
        assert!(OBJECT.starts_with(b"\x7fELF"));
    }

    #[test]
    fn steering_says_what_it_sends() {
        let s = Steering::Address {
            addr: Ipv4Addr::new(10, 0, 0, 1),
            ports: vec![80, 443],
            ephemeral: 49152..=65535,
        };
        assert_eq!(
            s.to_string(),
            "TCP to 10.0.0.1 ports 80,443 and 49152-65535, ARP for it, the rest to the kernel"
        );
    }
}
