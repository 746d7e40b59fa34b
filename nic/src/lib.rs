//! NIC queues for megatcp.
//!
//! A [`NicQueue`] is one receive/transmit queue pair of a network device, owned by one core.
//! It moves whole Ethernet frames (no FCS) in bursts:
//!
//! * [`NicQueue::rx_burst`] lends up to `budget` received frames, one at a time, to a closure;
//!   each frame stays owned by the backend (a ring slot, a UMEM chunk, an mbuf) and is given
//!   back as soon as the closure returns. Nothing is allocated per packet.
//! * [`NicQueue::tx_frame`] hands the caller a backend-owned buffer to write one frame into;
//!   the frame is queued when the closure returns a length, and sent at the latest at the next
//!   [`NicQueue::tx_flush`], which publishes the whole batch (one doorbell / kick per batch).
//!
//! Backends:
//! * `afxdp` (feature `afxdp`): AF_XDP sockets, one per queue.
//! * `dpdk` (feature `dpdk`): DPDK ports (vdevs or a PCI NIC) through the system DPDK.
//! * [`wire`]: endpoints joined by bounded lock-free rings; the in-memory NIC for tests and for
//!   measuring the stack alone. Usable from two threads.
//!
//! Wrappers over any backend:
//! * [`fault`]: seeded, reproducible loss, duplication, reordering, bit corruption and delay.
//! * [`pcap`]: writes every frame received or sent to a pcap file (tcpdump, tshark).
//!
//! Not a queue: [`packet`], raw Ethernet frames sent through an `AF_PACKET` socket in
//! batches (the testbed's hostile peer: spoofed SYNs and other forged traffic).
//!
//! [`rss`] holds how a frame's flow picks a queue: the Toeplitz hash of real NICs and the
//! symmetric software flow hash. [`ethtool`] asks the kernel about an interface it keeps
//! (driver, queue counts, RSS key and table, MTU).
//!
//! The `unsafe` code of megatcp lives in this crate (kernel-bypass backends), in
//! `megatcp-dpdk-sys`, and in the io_uring ring of `megatcp-kernel`; every `unsafe fn` has a
//! `# Safety` section and every `unsafe` block a `// SAFETY:` comment.

#[cfg(feature = "afxdp")]
pub mod afxdp;
#[cfg(test)]
mod alloc_count;
#[cfg(feature = "dpdk")]
pub mod dpdk;
pub mod ethtool;
pub mod fault;
pub mod packet;
pub mod pcap;
pub mod rss;
pub mod tsc;
pub mod wire;

/// Checksum offloads a device offers, per protocol.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ChecksumOffloads {
    /// The device verifies IPv4 header checksums on receive (bad ones are dropped or flagged).
    pub rx_ipv4: bool,
    /// The device verifies TCP/UDP checksums on receive.
    pub rx_l4: bool,
    /// The device fills in IPv4 header checksums on transmit.
    pub tx_ipv4: bool,
    /// The device fills in TCP/UDP checksums on transmit.
    pub tx_l4: bool,
}

/// Receive-side scaling: how the device spreads flows over its queues.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RssInfo {
    /// The Toeplitz key, when the device exposes it (real NICs); `None` for a software hash.
    pub key: Option<Vec<u8>>,
    /// Whether both directions of a flow hash to the same queue (symmetric key or hash).
    pub symmetric: bool,
    /// The indirection table, when known: entry `hash % len` is the queue a flow lands on.
    /// Empty: the common default, 128 entries filled round robin over the queues.
    pub table: Vec<u16>,
}

impl RssInfo {
    /// The queue a device with `queues` queues delivers a TCP/IPv4 segment from `src` to
    /// `dst` to; `None` without a key.
    pub fn tcp4_queue(
        &self,
        src: std::net::SocketAddrV4,
        dst: std::net::SocketAddrV4,
        queues: u16,
    ) -> Option<u16> {
        let key = self.key.as_deref()?;
        if self.table.is_empty() {
            return Some(rss::tcp4_queue(key, src, dst, queues));
        }
        let h = rss::tcp4_hash(key, src, dst) as usize;
        self.table.get(h % self.table.len()).copied()
    }
}

/// What a device (and this queue of it) can do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Capabilities {
    /// IP MTU in bytes (1500 on Ethernet); the largest frame is `mtu + 14`.
    pub mtu: usize,
    /// Checksum offloads.
    pub checksum: ChecksumOffloads,
    /// Number of RX/TX queue pairs of the device.
    pub queues: u16,
    /// RSS, when the device spreads flows over several queues.
    pub rss: Option<RssInfo>,
}

impl Capabilities {
    /// Largest Ethernet frame (header + payload, no FCS) this queue carries.
    pub fn max_frame_len(&self) -> usize {
        self.mtu + ETHERNET_HEADER_LEN
    }
}

/// Length of an Ethernet II header (no VLAN tag).
pub const ETHERNET_HEADER_LEN: usize = 14;

/// One received frame, lent by the backend for the duration of a closure call.
#[derive(Debug, Clone, Copy)]
pub struct RxFrame<'a> {
    /// The Ethernet frame, from the destination MAC address on, without FCS.
    pub data: &'a [u8],
    /// The RSS hash the device computed, if it gives one.
    pub rss_hash: Option<u32>,
}

/// Counters every queue keeps.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct QueueStats {
    /// Frames handed to the caller by `rx_burst`.
    pub rx_frames: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames accepted by `tx_frame`.
    pub tx_frames: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// `tx_frame` calls refused because the transmit ring was full.
    pub tx_full: u64,
    /// Frames dropped by the backend (e.g. peer ring full, oversized frame).
    pub dropped: u64,
}

/// Why a frame could not be queued for transmission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TxError {
    /// No transmit buffer is free right now; try again after the next flush / receive.
    #[error("transmit ring full")]
    Full,
    /// The closure returned a length larger than the buffer or the device's largest frame.
    #[error("frame of {len} bytes exceeds the largest frame ({max} bytes)")]
    TooLong {
        /// Length asked for.
        len: usize,
        /// Largest frame the queue carries.
        max: usize,
    },
}

/// One receive/transmit queue pair of a NIC, owned by one core. See the crate docs.
pub trait NicQueue {
    /// The device's capabilities.
    fn capabilities(&self) -> &Capabilities;

    /// This queue's index on its device (0-based).
    fn queue_id(&self) -> u16;

    /// Receives up to `budget` frames, calling `sink` once per frame in arrival order.
    ///
    /// Each frame is valid only during its `sink` call. Returns the number of frames delivered.
    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize;

    /// Queues one frame for transmission.
    ///
    /// `fill` is handed a backend buffer of at least [`Capabilities::max_frame_len`] bytes and
    /// returns the frame length written (0 abandons the frame and queues nothing). The frame
    /// leaves at the latest on the next [`NicQueue::tx_flush`].
    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError>;

    /// Publishes every frame queued since the last flush (and kicks the device if it needs it).
    /// Returns the number of frames published.
    fn tx_flush(&mut self) -> usize;

    /// Counters of this queue.
    fn stats(&self) -> QueueStats;

    /// What to tell the user when frames received on this queue fail their checksum, when
    /// the device is known for it (a veth whose peer leaves checksums to offload).
    fn checksum_hint(&self) -> Option<&str> {
        None
    }
}

/// Copies `frame` into a transmit buffer of `queue`: a convenience for callers that already
/// hold the bytes.
pub fn tx_copy<Q: NicQueue + ?Sized>(queue: &mut Q, frame: &[u8]) -> Result<(), TxError> {
    let max = queue.capabilities().max_frame_len();
    if frame.len() > max {
        return Err(TxError::TooLong {
            len: frame.len(),
            max,
        });
    }
    queue.tx_frame(&mut |buf: &mut [u8]| {
        buf[..frame.len()].copy_from_slice(frame);
        frame.len()
    })
}
