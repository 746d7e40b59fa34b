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
//!    with a symmetric key when the device offers it and there are several queues, the
//!    receive checksum offloads the device offers, and transmit checksum offload (IPv4
//!    header + TCP) when it offers both and [`PortConfig::tx_checksum`] asks for it.
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
//! dropped and counted. With transmit checksum offload on, every TCP/IPv4 frame written is
//! flagged for the device to fill its IPv4 header and TCP checksums (the stack, told so,
//! leaves the IPv4 checksum 0 and writes the pseudo-header sum); other frames go as written.
//!
//! **memif's known race (DPDK 22.11):** when the peer leaves, the driver clears its
//! "connected" flag and unmaps the shared regions from EAL's interrupt thread, without
//! waiting for a core that is inside a receive or transmit burst on them; such a core then
//! faults. A core that is not preempted is inside a burst for nanoseconds when the link is
//! quiet, so the danger is a polling core that shares its CPU. The race cannot be closed
//! from outside the driver (README, "Known limit of memif").
//!
//! Modules: `eal` (EAL's start, once per process, and its ports), `port` (a configured and
//! started port: queues, RSS, offloads, device counters), `queue` (one core's queue pair,
//! the [`NicQueue`]).

use std::ffi::CStr;

use megatcp_dpdk_sys as sys;

mod eal;
mod port;
mod queue;

pub use eal::{Eal, EalConfig, EalError, Hugepages, RingError, free_hugepages, init_eal};
pub use port::{DpdkPort, NicStats, PortConfig, PortError};
pub use queue::{DpdkQueue, QueueError};

#[cfg(doc)]
use crate::NicQueue;

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

/// `rte_errno` of this thread.
fn rte_errno() -> i32 {
    // SAFETY: reads a thread-local integer; no preconditions.
    unsafe { sys::mtcp_errno() }
}
