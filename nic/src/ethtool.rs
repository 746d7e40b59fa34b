//! What the Linux kernel says about a network interface through the ethtool ioctl
//! (`SIOCETHTOOL`): the driver, the queue counts (channels), the RSS key and indirection
//! table (`ETHTOOL_GRSSH`), and setting the RSS key (`ETHTOOL_SRSSH`); plus the MTU and the
//! veth peer from sysfs. Used where the kernel keeps the NIC (AF_XDP) to line megatcp's
//! cores up with the NIC's queues and its hash.
//!
//! Every call names the interface in the calling thread's network namespace; errors carry
//! the kernel's error (`EOPNOTSUPP` from a driver without the operation, `EPERM` without
//! `CAP_NET_ADMIN` for the setters).

use std::io;

/// `SIOCETHTOOL` commands (include/uapi/linux/ethtool.h).
const ETHTOOL_GDRVINFO: u32 = 0x03;
const ETHTOOL_GCHANNELS: u32 = 0x3c;
const ETHTOOL_GRSSH: u32 = 0x46;
const ETHTOOL_SRSSH: u32 = 0x47;
/// `indir_size` of a `ETHTOOL_SRSSH` that leaves the indirection table alone.
const ETH_RXFH_INDIR_NO_CHANGE: u32 = 0xffff_ffff;

/// Why an ethtool request failed.
#[derive(Debug, thiserror::Error)]
pub enum EthtoolError {
    /// The interface name cannot be one (too long, NUL byte).
    #[error("bad interface name {0:?}")]
    BadName(String),
    /// The kernel refused or the driver lacks the operation.
    #[error("{iface}: {what}: {source}")]
    Kernel {
        /// Interface.
        iface: String,
        /// The request.
        what: &'static str,
        /// The kernel's error.
        source: io::Error,
    },
    /// The kernel answered with sizes that do not add up.
    #[error("{iface}: {what}: inconsistent answer ({detail})")]
    Inconsistent {
        /// Interface.
        iface: String,
        /// The request.
        what: &'static str,
        /// What did not add up.
        detail: String,
    },
}

impl EthtoolError {
    /// Whether the driver simply does not offer the operation (as opposed to a failure).
    pub fn unsupported(&self) -> bool {
        matches!(self, EthtoolError::Kernel { source, .. }
            if source.raw_os_error() == Some(libc::EOPNOTSUPP))
    }
}

/// The driver of an interface (`ethtool -i`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriverInfo {
    /// Driver name (`veth`, `ixgbe`, `i40e`, `ice`, `mlx5_core`, ...).
    pub driver: String,
    /// Bus address (a PCI address for PCI NICs, empty for virtual devices).
    pub bus_info: String,
}

impl DriverInfo {
    /// Whether the device is a virtual one that hands frames between two kernels' stacks
    /// (veth and the like): its peer may leave checksums to an offload that never happens.
    pub fn is_virtual_peer(&self) -> bool {
        matches!(
            self.driver.as_str(),
            "veth" | "tun" | "netkit" | "macvlan" | "ipvlan"
        )
    }
}

/// Queue counts of an interface (`ethtool -l`): combined queues (a receive and a transmit
/// ring each) on NICs, separate receive and transmit queues on veth.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Channels {
    /// Receive-only queues in use.
    pub rx: u32,
    /// Transmit-only queues in use.
    pub tx: u32,
    /// Combined queues in use.
    pub combined: u32,
    /// Most receive-only queues the device offers.
    pub max_rx: u32,
    /// Most combined queues the device offers.
    pub max_combined: u32,
}

impl Channels {
    /// Queues frames are received on.
    pub fn receive_queues(&self) -> u32 {
        self.combined + self.rx
    }

    /// The command that makes the device receive on `n` queues.
    pub fn set_command(&self, iface: &str, n: usize) -> String {
        if self.max_combined > 0 {
            format!("ethtool -L {iface} combined {n}")
        } else {
            format!("ethtool -L {iface} rx {n} tx {n}")
        }
    }
}

/// An interface's RSS configuration (`ethtool -x`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rss {
    /// The hash key (Toeplitz when `hfunc` is 1).
    pub key: Vec<u8>,
    /// The indirection table: entry `hash % len` names the receive queue.
    pub table: Vec<u32>,
    /// The hash function, as ethtool numbers it (bit 0: Toeplitz, bit 1: XOR, bit 2: CRC32;
    /// 0 when the driver does not say).
    pub hfunc: u8,
}

impl Rss {
    /// Whether megatcp can predict the queue of a flow: a Toeplitz hash (or an unnamed one,
    /// which drivers use for Toeplitz) with a key and a table.
    pub fn predictable(&self) -> bool {
        !self.key.is_empty() && !self.table.is_empty() && (self.hfunc == 0 || self.hfunc == 1)
    }
}

/// `struct ifreq` with the data pointer (the ethtool ioctl's argument).
#[repr(C)]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: *mut libc::c_void,
    _pad: [u8; 16],
}

/// An `AF_INET` datagram socket, the handle ethtool ioctls go through.
struct Ctl(libc::c_int);

impl Ctl {
    fn open(iface: &str, what: &'static str) -> Result<Self, EthtoolError> {
        // SAFETY: plain socket(2); the descriptor is owned by the returned value.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
        if fd < 0 {
            return Err(kernel(iface, what, io::Error::last_os_error()));
        }
        Ok(Ctl(fd))
    }
}

impl Drop for Ctl {
    fn drop(&mut self) {
        // SAFETY: the descriptor is ours and closed once.
        unsafe { libc::close(self.0) };
    }
}

fn kernel(iface: &str, what: &'static str, source: io::Error) -> EthtoolError {
    EthtoolError::Kernel {
        iface: iface.to_string(),
        what,
        source,
    }
}

/// Sends ethtool command buffer `cmd` (which starts with its `u32` command number) for
/// `iface`; the kernel reads and writes the buffer in place.
///
/// # Safety
///
/// `cmd` must point to a writable buffer laid out as the kernel's structure for the command
/// it holds, as large as the kernel will read or write for that command and the sizes the
/// buffer announces, valid for the whole call.
unsafe fn ioctl(
    iface: &str,
    what: &'static str,
    cmd: *mut libc::c_void,
) -> Result<(), EthtoolError> {
    let bytes = iface.as_bytes();
    if bytes.is_empty() || bytes.len() >= libc::IFNAMSIZ || bytes.contains(&0) {
        return Err(EthtoolError::BadName(iface.to_string()));
    }
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: cmd,
        _pad: [0; 16],
    };
    for (d, s) in req.name.iter_mut().zip(bytes) {
        *d = *s as libc::c_char;
    }
    let ctl = Ctl::open(iface, what)?;
    // SAFETY: `req` is a valid ifreq naming the interface (NUL-terminated, checked above)
    // whose data pointer is the caller's command buffer, valid as the caller promises.
    let rc = unsafe { libc::ioctl(ctl.0, libc::SIOCETHTOOL, &mut req as *mut IfReq) };
    if rc < 0 {
        return Err(kernel(iface, what, io::Error::last_os_error()));
    }
    Ok(())
}

/// `struct ethtool_drvinfo`.
#[repr(C)]
struct DrvInfo {
    cmd: u32,
    driver: [u8; 32],
    version: [u8; 32],
    fw_version: [u8; 32],
    bus_info: [u8; 32],
    erom_version: [u8; 32],
    reserved2: [u8; 12],
    n_priv_flags: u32,
    n_stats: u32,
    testinfo_len: u32,
    eedump_len: u32,
    regdump_len: u32,
}

fn c_text(b: &[u8]) -> String {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    String::from_utf8_lossy(&b[..end]).into_owned()
}

/// The driver of `iface` (`ethtool -i`).
pub fn driver(iface: &str) -> Result<DriverInfo, EthtoolError> {
    let mut info = DrvInfo {
        cmd: ETHTOOL_GDRVINFO,
        driver: [0; 32],
        version: [0; 32],
        fw_version: [0; 32],
        bus_info: [0; 32],
        erom_version: [0; 32],
        reserved2: [0; 12],
        n_priv_flags: 0,
        n_stats: 0,
        testinfo_len: 0,
        eedump_len: 0,
        regdump_len: 0,
    };
    // SAFETY: `info` is a writable struct ethtool_drvinfo holding ETHTOOL_GDRVINFO.
    unsafe { ioctl(iface, "driver info", (&mut info as *mut DrvInfo).cast())? };
    Ok(DriverInfo {
        driver: c_text(&info.driver),
        bus_info: c_text(&info.bus_info),
    })
}

/// The queue counts of `iface` (`ethtool -l`).
pub fn channels(iface: &str) -> Result<Channels, EthtoolError> {
    // struct ethtool_channels: cmd, max_rx, max_tx, max_other, max_combined, rx_count,
    // tx_count, other_count, combined_count.
    let mut c = [0u32; 9];
    c[0] = ETHTOOL_GCHANNELS;
    // SAFETY: `c` is a writable struct ethtool_channels (nine u32) holding the command.
    unsafe { ioctl(iface, "channels", c.as_mut_ptr().cast())? };
    Ok(Channels {
        max_rx: c[1],
        max_combined: c[4],
        rx: c[5],
        tx: c[6],
        combined: c[8],
    })
}

/// Length of `struct ethtool_rxfh` before its `rss_config` array.
const RXFH_HEADER: usize = 24;

/// An `ethtool_rxfh` buffer: the header followed by the table and the key, in `u32`s so
/// that it is aligned as the kernel's structure.
fn rxfh_buffer(cmd: u32, indir_size: u32, key_size: u32, table: usize, key: usize) -> Vec<u32> {
    let mut buf = vec![0u32; (RXFH_HEADER + table * 4 + key).div_ceil(4)];
    buf[0] = cmd;
    buf[2] = indir_size;
    buf[3] = key_size;
    buf
}

/// The RSS key and indirection table of `iface` (`ethtool -x`).
pub fn rss(iface: &str) -> Result<Rss, EthtoolError> {
    const WHAT: &str = "RSS key and indirection table (ETHTOOL_GRSSH)";
    // First the sizes, then the contents.
    let mut sizes = rxfh_buffer(ETHTOOL_GRSSH, 0, 0, 0, 0);
    // SAFETY: a writable ethtool_rxfh header asking for the sizes only (both zero), so the
    // kernel writes nothing past it.
    unsafe { ioctl(iface, WHAT, sizes.as_mut_ptr().cast())? };
    let (indir, key) = (sizes[2], sizes[3]);
    if indir > 1 << 16 || key > 1024 {
        return Err(EthtoolError::Inconsistent {
            iface: iface.to_string(),
            what: WHAT,
            detail: format!("table of {indir} entries, key of {key} bytes"),
        });
    }
    let (n, k) = (indir as usize, key as usize);
    let mut buf = rxfh_buffer(ETHTOOL_GRSSH, indir, key, n, k);
    // SAFETY: the buffer holds the header announcing `indir` table entries and `key` key
    // bytes, and has room for both after it.
    unsafe { ioctl(iface, WHAT, buf.as_mut_ptr().cast())? };
    if buf[2] != indir || buf[3] != key {
        return Err(EthtoolError::Inconsistent {
            iface: iface.to_string(),
            what: WHAT,
            detail: "the sizes changed between two calls".into(),
        });
    }
    let hfunc = buf[4].to_ne_bytes()[0];
    let table = buf[RXFH_HEADER / 4..RXFH_HEADER / 4 + n].to_vec();
    let bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    let key = bytes[RXFH_HEADER + 4 * n..RXFH_HEADER + 4 * n + k].to_vec();
    Ok(Rss { key, table, hfunc })
}

/// Sets the RSS key of `iface` (`ethtool -X IFACE hkey ...`), leaving the indirection table
/// and the hash function alone. The key must have the length the device uses.
pub fn set_rss_key(iface: &str, key: &[u8]) -> Result<(), EthtoolError> {
    const WHAT: &str = "setting the RSS key (ETHTOOL_SRSSH)";
    let len = u32::try_from(key.len()).unwrap_or(u32::MAX);
    let mut buf = rxfh_buffer(ETHTOOL_SRSSH, ETH_RXFH_INDIR_NO_CHANGE, len, 0, key.len());
    let mut bytes: Vec<u8> = buf.iter().flat_map(|w| w.to_ne_bytes()).collect();
    bytes[RXFH_HEADER..RXFH_HEADER + key.len()].copy_from_slice(key);
    for (w, c) in buf.iter_mut().zip(bytes.chunks_exact(4)) {
        *w = u32::from_ne_bytes([c[0], c[1], c[2], c[3]]);
    }
    // SAFETY: the buffer holds an ethtool_rxfh header (table unchanged, `len` key bytes)
    // followed by the key.
    unsafe { ioctl(iface, WHAT, buf.as_mut_ptr().cast()) }
}

/// The MTU of `iface`, from sysfs.
pub fn mtu(iface: &str) -> io::Result<usize> {
    std::fs::read_to_string(format!("/sys/class/net/{iface}/mtu"))?
        .trim()
        .parse()
        .map_err(io::Error::other)
}

/// The other end of a veth pair.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Peer {
    /// In this network namespace, by name.
    Here(String),
    /// In another network namespace, by interface index there.
    Elsewhere(u32),
}

/// The peer of a veth `iface` (sysfs `iflink`); `None` for devices without one.
pub fn peer(iface: &str) -> Option<Peer> {
    let read = |name: &str, what: &str| -> Option<u32> {
        std::fs::read_to_string(format!("/sys/class/net/{name}/{what}"))
            .ok()?
            .trim()
            .parse()
            .ok()
    };
    let own = read(iface, "ifindex")?;
    let link = read(iface, "iflink")?;
    if link == own || link == 0 {
        return None;
    }
    let mut name = [0 as libc::c_char; libc::IFNAMSIZ];
    // SAFETY: `name` has room for IFNAMSIZ bytes, as if_indextoname writes at most.
    let found = unsafe { libc::if_indextoname(link, name.as_mut_ptr()) };
    // The index may name another interface here when the peer is in another namespace:
    // trust it only when that interface points back at us.
    if !found.is_null() {
        let bytes: Vec<u8> = name.iter().map(|&c| c as u8).collect();
        let candidate = c_text(&bytes);
        if read(&candidate, "iflink") == Some(own) {
            return Some(Peer::Here(candidate));
        }
    }
    Some(Peer::Elsewhere(link))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_answers_or_says_why() {
        // Loopback has a driver name of its own on some kernels and none on others: either
        // an answer or a kernel error, never a panic.
        match driver("lo") {
            Ok(d) => assert!(!d.is_virtual_peer()),
            Err(e) => assert!(matches!(e, EthtoolError::Kernel { .. }), "{e}"),
        }
        let e = rss("lo").err();
        assert!(e.is_none_or(|e| matches!(e, EthtoolError::Kernel { .. })));
        assert!(mtu("lo").is_ok_and(|m| m >= 1500));
        assert_eq!(peer("lo"), None);
    }

    #[test]
    fn bad_names_are_refused() {
        for name in ["", "a-name-that-is-far-too-long", "a\0b"] {
            assert!(
                matches!(driver(name), Err(EthtoolError::BadName(_))),
                "{name:?}"
            );
        }
        assert!(matches!(
            driver("no-such-if0"),
            Err(EthtoolError::Kernel { .. })
        ));
    }

    #[test]
    fn the_command_follows_the_kind_of_queues() {
        let nic = Channels {
            combined: 8,
            max_combined: 64,
            ..Channels::default()
        };
        assert_eq!(nic.receive_queues(), 8);
        assert_eq!(nic.set_command("eth1", 2), "ethtool -L eth1 combined 2");
        let veth = Channels {
            rx: 4,
            tx: 4,
            max_rx: 4,
            ..Channels::default()
        };
        assert_eq!(veth.receive_queues(), 4);
        assert_eq!(veth.set_command("v0", 1), "ethtool -L v0 rx 1 tx 1");
    }
}
