//! A raw-frame transmitter on a Linux interface: an `AF_PACKET` socket that sends whole
//! Ethernet frames, exactly as given, in batches of one `sendmmsg` call each.
//!
//! It is the testbed's hostile peer (spoofed SYNs, forged segments): frames the Linux
//! kernel would never send for its own sockets. Transmit only: the socket is bound with
//! protocol 0, so the kernel queues nothing for it to receive, and it is not a
//! [`NicQueue`](crate::NicQueue). Frames skip the interface's queueing discipline
//! (`PACKET_QDISC_BYPASS`) and go straight to the driver, as a traffic generator's should.
//!
//! ```no_run
//! # fn main() -> Result<(), megatcp_nic::packet::PacketError> {
//! let mut tx = megatcp_nic::packet::PacketTx::open("mtcp-cli")?;
//! let frame = [0u8; 60]; // an Ethernet frame, from the destination MAC on
//! let sent = tx.send(&[&frame[..], &frame[..]])?;
//! assert_eq!(sent, 2);
//! # Ok(()) }
//! ```
//!
//! Needs `CAP_NET_RAW` (root); without it `open` fails with the operating system's error.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

use crate::ETHERNET_HEADER_LEN;

/// Frames handed to the kernel by one `sendmmsg` call at most.
pub const BATCH: usize = 64;

/// Largest frame accepted: an Ethernet header and a 9,000-byte jumbo payload. The kernel
/// refuses frames longer than the interface's MTU allows (`EMSGSIZE`).
pub const MAX_FRAME: usize = 9000 + ETHERNET_HEADER_LEN;

/// Why a raw socket could not be opened or could not send.
#[derive(Debug, thiserror::Error)]
pub enum PacketError {
    /// The interface name is empty, too long or holds a NUL byte.
    #[error("bad interface name {0:?}")]
    BadName(String),
    /// No interface of that name in this network namespace.
    #[error("no interface {0:?} in this network namespace")]
    NoInterface(String),
    /// A frame shorter than an Ethernet header or longer than [`MAX_FRAME`].
    #[error("frame of {0} bytes: a frame holds {ETHERNET_HEADER_LEN}..={MAX_FRAME} bytes")]
    BadFrame(usize),
    /// A system call failed (`socket` without `CAP_NET_RAW` fails with EPERM).
    #[error("{call}: {source}")]
    Os {
        /// The system call.
        call: &'static str,
        /// Its error.
        source: io::Error,
    },
}

fn os(call: &'static str) -> PacketError {
    PacketError::Os {
        call,
        source: io::Error::last_os_error(),
    }
}

/// What a [`PacketTx`] sent.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PacketTxStats {
    /// Frames the kernel took.
    pub frames: u64,
    /// Bytes in those frames.
    pub bytes: u64,
    /// `sendmmsg` calls.
    pub calls: u64,
    /// Calls that failed with a transient error (`ENOBUFS`, `EAGAIN`): frames not sent.
    pub busy: u64,
}

/// An `AF_PACKET` socket bound to one interface, for sending raw Ethernet frames.
#[derive(Debug)]
pub struct PacketTx {
    fd: OwnedFd,
    ifindex: i32,
    mac: [u8; 6],
    stats: PacketTxStats,
}

impl PacketTx {
    /// Opens a transmit-only raw socket on `iface` (in the caller's network namespace).
    pub fn open(iface: &str) -> Result<Self, PacketError> {
        let name = CString::new(iface)
            .ok()
            .filter(|n| !n.as_bytes().is_empty() && n.as_bytes().len() < libc::IFNAMSIZ)
            .ok_or_else(|| PacketError::BadName(iface.to_string()))?;
        // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(PacketError::NoInterface(iface.to_string()));
        }
        let ifindex = i32::try_from(ifindex).map_err(|_| PacketError::NoInterface(iface.into()))?;
        // Protocol 0: the socket receives nothing.
        // SAFETY: plain system call with constant arguments; no memory is passed.
        let raw = unsafe { libc::socket(libc::AF_PACKET, libc::SOCK_RAW | libc::SOCK_CLOEXEC, 0) };
        if raw < 0 {
            return Err(os("socket(AF_PACKET)"));
        }
        // SAFETY: `raw` is a descriptor just returned by `socket` and owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let mut addr = sockaddr_ll(ifindex);
        // SAFETY: `addr` is a valid `sockaddr_ll` and the length passed is its size.
        let rc = unsafe {
            libc::bind(
                fd.as_raw_fd(),
                (&raw const addr).cast::<libc::sockaddr>(),
                size_of::<libc::sockaddr_ll>() as libc::socklen_t,
            )
        };
        if rc < 0 {
            return Err(os("bind(AF_PACKET)"));
        }
        let one: libc::c_int = 1;
        // SAFETY: the option value is a live `c_int` and its size is passed. A kernel that
        // lacks the option (before 3.14) refuses it: frames then go through the qdisc, which
        // is only slower, so the result is not checked.
        let _ = unsafe {
            libc::setsockopt(
                fd.as_raw_fd(),
                libc::SOL_PACKET,
                libc::PACKET_QDISC_BYPASS,
                (&raw const one).cast::<libc::c_void>(),
                size_of::<libc::c_int>() as libc::socklen_t,
            )
        };
        // The bound address names the interface's hardware address.
        let mut len = size_of::<libc::sockaddr_ll>() as libc::socklen_t;
        // SAFETY: `addr` is writable storage of `len` bytes for the kernel to fill.
        let rc = unsafe {
            libc::getsockname(
                fd.as_raw_fd(),
                (&raw mut addr).cast::<libc::sockaddr>(),
                &raw mut len,
            )
        };
        if rc < 0 {
            return Err(os("getsockname(AF_PACKET)"));
        }
        let mut mac = [0u8; 6];
        if addr.sll_halen == 6 {
            mac.copy_from_slice(&addr.sll_addr[..6]);
        }
        Ok(Self {
            fd,
            ifindex,
            mac,
            stats: PacketTxStats::default(),
        })
    }

    /// The interface's hardware address (all zero if it has none of 6 bytes).
    pub fn mac(&self) -> [u8; 6] {
        self.mac
    }

    /// The interface's index.
    pub fn ifindex(&self) -> i32 {
        self.ifindex
    }

    /// Sends `frames`, [`BATCH`] per `sendmmsg` call, and returns how many the kernel took:
    /// all of them, unless its buffers were full (`ENOBUFS`, `EAGAIN`: counted as busy; the
    /// caller may send the rest again). Every frame is checked first; a bad one fails the
    /// call before anything is sent.
    pub fn send(&mut self, frames: &[&[u8]]) -> Result<usize, PacketError> {
        if let Some(f) = frames
            .iter()
            .find(|f| f.len() < ETHERNET_HEADER_LEN || f.len() > MAX_FRAME)
        {
            return Err(PacketError::BadFrame(f.len()));
        }
        let mut sent = 0;
        while sent < frames.len() {
            let chunk = &frames[sent..frames.len().min(sent + BATCH)];
            let n = self.send_chunk(chunk)?;
            if n == 0 {
                break;
            }
            sent += n;
        }
        Ok(sent)
    }

    /// One `sendmmsg` of at most [`BATCH`] checked frames; 0 when the kernel was busy.
    fn send_chunk(&mut self, chunk: &[&[u8]]) -> Result<usize, PacketError> {
        debug_assert!(chunk.len() <= BATCH);
        let mut iov = [libc::iovec {
            iov_base: core::ptr::null_mut(),
            iov_len: 0,
        }; BATCH];
        // SAFETY: `mmsghdr` is plain old data; all zeroes (null pointers, zero lengths) is
        // a valid value.
        let mut msgs: [libc::mmsghdr; BATCH] = unsafe { core::mem::zeroed() };
        for (i, f) in chunk.iter().enumerate() {
            // The kernel only reads through this pointer (a send), never writes.
            iov[i].iov_base = f.as_ptr().cast_mut().cast::<libc::c_void>();
            iov[i].iov_len = f.len();
            msgs[i].msg_hdr.msg_iov = &raw mut iov[i];
            msgs[i].msg_hdr.msg_iovlen = 1;
        }
        self.stats.calls += 1;
        // SAFETY: `msgs[..chunk.len()]` are valid headers without address or control data,
        // each pointing at one `iovec` of `iov`, which points at a frame of `chunk`; all of
        // them live until the call returns, and the kernel only reads the frames.
        let rc = unsafe {
            libc::sendmmsg(
                self.fd.as_raw_fd(),
                msgs.as_mut_ptr(),
                chunk.len() as libc::c_uint,
                0,
            )
        };
        if rc < 0 {
            let err = io::Error::last_os_error();
            return match err.raw_os_error() {
                Some(libc::ENOBUFS | libc::EAGAIN | libc::EINTR) => {
                    self.stats.busy += 1;
                    Ok(0)
                }
                _ => Err(PacketError::Os {
                    call: "sendmmsg",
                    source: err,
                }),
            };
        }
        let n = usize::try_from(rc).unwrap_or(0).min(chunk.len());
        self.stats.frames += n as u64;
        self.stats.bytes += chunk[..n].iter().map(|f| f.len() as u64).sum::<u64>();
        Ok(n)
    }

    /// What was sent so far.
    pub fn stats(&self) -> PacketTxStats {
        self.stats
    }
}

/// The link-layer address of interface `ifindex`, protocol 0 (send only).
fn sockaddr_ll(ifindex: i32) -> libc::sockaddr_ll {
    libc::sockaddr_ll {
        sll_family: libc::AF_PACKET as u16,
        sll_protocol: 0,
        sll_ifindex: ifindex,
        sll_hatype: 0,
        sll_pkttype: 0,
        sll_halen: 0,
        sll_addr: [0; 8],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bad_names_are_refused_before_any_system_call() {
        for name in ["", "a\0b", "an-interface-name-far-too-long"] {
            assert!(
                matches!(PacketTx::open(name), Err(PacketError::BadName(_))),
                "{name:?}"
            );
        }
    }

    #[test]
    fn an_unknown_interface_is_named_in_the_error() {
        let e = PacketTx::open("megatcp-none0").unwrap_err();
        assert!(matches!(e, PacketError::NoInterface(_)), "{e}");
        assert!(e.to_string().contains("megatcp-none0"));
    }
}
