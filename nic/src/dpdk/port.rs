//! A DPDK port, configured and started with one queue pair per core ([`DpdkPort::open`]):
//! RSS with a symmetric key laid out as `rss::tcp4_queue` predicts, the receive checksum
//! offloads the device offers, transmit checksum offload (IPv4 + TCP) where offered and
//! asked for, one mempool; and its device counters.

use std::ffi::{CStr, CString};
use std::sync::Arc;

use megatcp_dpdk_sys as sys;

use super::queue::BURST;
use super::queue::{DpdkQueue, QueueError};
use super::{Eal, rte_errno, strerror};
use crate::rss::SYMMETRIC_KEY;
use crate::{Capabilities, ChecksumOffloads, RssInfo};

/// How to open a port.
#[derive(Debug, Clone)]
pub struct PortConfig {
    /// RX/TX queue pairs (one per core).
    pub queues: u16,
    /// Descriptors per receive ring.
    pub rx_ring: u16,
    /// Descriptors per transmit ring.
    pub tx_ring: u16,
    /// IP MTU: above 1500 (jumbo frames) the port is configured for it and its mbufs
    /// made large enough for a whole frame; refused ([`PortError::Mtu`]) above what the
    /// device takes.
    pub mtu: usize,
    /// Turn on transmit checksum offload (IPv4 header and TCP) when the device offers both;
    /// [`Capabilities::checksum`] says whether it is on. The stack must then leave them to
    /// the device (`TxChecksum::Offload` in `megatcp-stack`).
    pub tx_checksum: bool,
}

impl PortConfig {
    /// `queues` queue pairs, 1024-descriptor rings, MTU 1500, transmit checksum offload
    /// where offered.
    pub fn new(queues: u16) -> Self {
        Self {
            queues,
            rx_ring: 1024,
            tx_ring: 1024,
            mtu: 1500,
            tx_checksum: true,
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
    /// The device does not take frames for the MTU asked for.
    #[error("--mtu {asked}: port {port} (driver {driver}) takes an MTU of {max} at most: {why}")]
    Mtu {
        /// Port.
        port: u16,
        /// Its driver.
        driver: String,
        /// The MTU asked for.
        asked: usize,
        /// The largest it takes.
        max: usize,
        /// Why, and what to do.
        why: String,
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
    pub(super) id: u16,
    name: String,
    pub(super) pool: *mut sys::rte_mempool,
    pub(super) caps: Capabilities,
    mac: [u8; 6],
    driver: String,
    /// `rte_eth_dev_info.tx_offload_capa`: every transmit offload the device offers.
    tx_offload_capa: u64,
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

        tracing::debug!(
            "port {port}: max_rx_pktlen {} min_mtu {} max_mtu {} min_rx_bufsize {} rx offloads \
             {:#x} tx offloads {:#x}",
            info.max_rx_pktlen,
            info.min_mtu,
            info.max_mtu,
            info.min_rx_bufsize,
            info.rx_offload_capa,
            info.tx_offload_capa
        );
        let mtu = cfg.mtu.max(576);
        let (max_mtu, why) = mtu_limit(&info, &driver);
        if mtu > max_mtu {
            return Err(PortError::Mtu {
                port,
                driver,
                asked: mtu,
                max: max_mtu,
                why,
            });
        }
        let mut conf = sys::rte_eth_conf::default();
        conf.rxmode.mtu = mtu as u32;
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
        let tx_cksum =
            u64::from(sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
        let tx_offloads = if cfg.tx_checksum && info.tx_offload_capa & tx_cksum == tx_cksum {
            tx_cksum
        } else {
            0
        };
        conf.txmode.offloads = tx_offloads;
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
        let data_room = mbuf_data_room(mtu);
        // SAFETY: a valid C string name; sizes within DPDK's limits.
        let pool = unsafe {
            sys::rte_pktmbuf_pool_create(pool_name.as_ptr(), mbufs, 256, 0, data_room, socket)
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
                mtu,
                checksum: ChecksumOffloads::default(),
                queues,
                rss: None,
            },
            mac: [0; 6],
            driver,
            tx_offload_capa: 0,
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
        // A frame must fit in one mbuf's data room (received frames are never chained).
        let room = usize::from(data_room) - sys::RTE_PKTMBUF_HEADROOM as usize;
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
            tx_ipv4: tx_offloads != 0,
            tx_l4: tx_offloads != 0,
        };
        dev.tx_offload_capa = info.tx_offload_capa;
        if rss {
            dev.caps.rss = Some(RssInfo {
                key: Some(key),
                symmetric: true,
                table: Vec::new(),
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

    /// Whether the device offers transmit checksum offload for IPv4 headers and TCP
    /// (whether it is on: [`Capabilities::checksum`]).
    pub fn offers_tx_checksum(&self) -> bool {
        let both =
            u64::from(sys::RTE_ETH_TX_OFFLOAD_IPV4_CKSUM | sys::RTE_ETH_TX_OFFLOAD_TCP_CKSUM);
        self.tx_offload_capa & both == both
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
        DpdkQueue::open(self.clone(), queue)
    }
}

/// The largest IP MTU the device takes and why: `max_mtu`, and `max_rx_pktlen` less the
/// frame overhead, computed as `rte_eth_dev_configure` does when it checks `rxmode.mtu`.
fn mtu_limit(info: &sys::rte_eth_dev_info, driver: &str) -> (usize, String) {
    let (pktlen, max) = (info.max_rx_pktlen as usize, usize::from(info.max_mtu));
    let overhead = if max != usize::from(u16::MAX) && pktlen > max {
        pktlen - max
    } else {
        crate::ETHERNET_HEADER_LEN + 4
    };
    let limit = max.min(pktlen.saturating_sub(overhead));
    if driver == "net_af_xdp" && limit > 1500 {
        // Measured on a veth with Debian's 22.11: frames above about 2 KB never reach the
        // socket (the device counts them in imissed) although the port says 3542.
        return (
            1500,
            "DPDK 22.11's net_af_xdp loses frames above about 2 KB (counted in imissed); \
             megatcp's own --backend afxdp carries jumbo frames"
                .into(),
        );
    }
    let why = if pktlen <= 1522 {
        format!(
            "it takes frames of {pktlen} bytes at most (max_rx_pktlen; DPDK 22.11's memif, \
             tap and af_packet ports take standard frames only, a NIC's driver usually 9000 \
             bytes or more)"
        )
    } else {
        format!("it takes frames of {pktlen} bytes at most (max_rx_pktlen)")
    };
    (limit, why)
}

/// The data room of the pool's mbufs for `mtu`: DPDK's default (2 KiB + headroom), or room
/// for a whole jumbo frame in one mbuf.
fn mbuf_data_room(mtu: usize) -> u16 {
    let need = sys::RTE_PKTMBUF_HEADROOM as usize + mtu + crate::ETHERNET_HEADER_LEN + 4;
    let need = need.next_multiple_of(64);
    need.max(sys::RTE_MBUF_DEFAULT_BUF_SIZE as usize)
        .min(usize::from(u16::MAX)) as u16
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
        tracing::warn!(
            "port {port}: cannot program the RSS redirection table ({}); active opens \
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
