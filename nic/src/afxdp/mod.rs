//! AF_XDP backend (feature `afxdp`): one XDP socket per queue on xsk-rs, owned by one core.
//!
//! The UMEM is split in two: frames for the fill ring (receive) and frames for transmit.
//! `rx_burst` refills the fill ring in batches, lends received frames to the caller straight
//! out of the UMEM, and gives them back to the fill ring; `tx_frame` writes into a free
//! transmit frame; `tx_flush` submits the batch and kicks the kernel when it asks for it
//! (`XDP_USE_NEED_WAKEUP`); completed transmit frames are reclaimed in batches.
//!
//! The XDP program is megatcp's own ([`program`]): a queue's socket gets only the frames for
//! the stack's address (and ARP for it), the kernel keeps the rest, so the host's own
//! addresses on the NIC keep working; several megatcp processes share it, each on its own
//! queues. Zero-copy where the driver has it (i40e, ice, mlx5, ixgbe; not veth), copy mode
//! otherwise ([`ZeroCopy`]). UMEM frames are 4 KiB (the kernel takes no larger ones): an MTU
//! up to 3,826 bytes fits one; a larger one (jumbo frames, up to 9,000) binds the socket
//! with multi-buffer (`XDP_USE_SG`): a frame arrives in several buffers, gathered into one
//! before the stack sees it, and leaves in several.

use std::io::Write;
use std::num::NonZeroU32;

use std::os::fd::{AsRawFd, RawFd};
use std::sync::Arc;

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, LibxdpFlags, QueueSize, SocketConfig, UmemConfig,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::{Capabilities, ChecksumOffloads, NicQueue, QueueStats, RssInfo, RxFrame, TxError};

pub mod program;
mod users;

pub use program::{Mode, Program, ProgramError, Steering};

/// Whether the socket runs in zero-copy mode (the NIC writes into the UMEM).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ZeroCopy {
    /// Zero-copy when the driver offers it, else copy mode.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

impl std::str::FromStr for ZeroCopy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "auto" => Ok(ZeroCopy::Auto),
            "on" => Ok(ZeroCopy::On),
            "off" => Ok(ZeroCopy::Off),
            _ => Err(format!("{s:?}: want auto, on or off")),
        }
    }
}

/// How to open an AF_XDP queue.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// Interface name.
    pub iface: String,
    /// Queue index on the interface.
    pub queue: u32,
    /// Frames in the UMEM (half receive, half transmit); a power of two.
    pub frames: u32,
    /// Try hugepages for the UMEM first (falls back to normal pages with a warning, except
    /// for jumbo frames, which need them).
    pub hugepages: bool,
    /// IP MTU of the stack (at most the interface's).
    pub mtu: usize,
    /// Receive queues the interface has (for the capabilities).
    pub queues: u16,
    /// The interface's RSS key and table, when the kernel exposes them.
    pub rss: Option<RssInfo>,
    /// Ask the kernel to busy-poll the socket (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`), only where the interface defers its interrupts
    /// (`napi_defer_hard_irqs` and `gro_flush_timeout` both set, `scripts/nic-setup afxdp
    /// --busy-poll`). Off by default: the queue does not issue the system calls that drive
    /// a preferred busy poll when its rings are idle, so frames wait in the device until
    /// other traffic or a timer runs its NAPI (measured on the veth testbed: without the
    /// deferral, stalls of a retransmission timeout and runs with no transaction at all;
    /// with it, one gro_flush_timeout per frame on a lone connection).
    pub busy_poll: bool,
    /// What the XDP program hands this queue's socket.
    pub steering: Steering,
    /// Zero-copy or copy mode.
    pub zero_copy: ZeroCopy,
}

impl AfXdpConfig {
    /// Queue `queue` of `iface`, with defaults (8192 frames, hugepages tried, MTU 1500,
    /// every frame to the socket, zero-copy when offered).
    pub fn new(iface: &str, queue: u32) -> Self {
        Self {
            iface: iface.to_string(),
            queue,
            frames: 8192,
            hugepages: true,
            mtu: 1500,
            queues: 1,
            rss: None,
            busy_poll: false,
            steering: Steering::All,
            zero_copy: ZeroCopy::Auto,
        }
    }
}

/// UMEM frame size (the kernel's largest chunk: one page).
const FRAME: u32 = 4096;
/// Data one UMEM frame holds: the kernel keeps 256 bytes of headroom
/// (`XDP_PACKET_HEADROOM`) in each.
const SEGMENT: usize = FRAME as usize - 256;
/// Descriptor option: more buffers of this frame follow (`XDP_PKT_CONTD`, linux/if_xdp.h).
const XDP_PKT_CONTD: u32 = 1;

/// Largest IP MTU whose frames fit one UMEM frame; above it frames take several buffers
/// (multi-buffer AF_XDP, `XDP_USE_SG`).
pub const SINGLE_BUFFER_MTU: usize = SEGMENT - crate::ETHERNET_HEADER_LEN;

/// Why an AF_XDP queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// A bad configuration value.
    #[error("bad AF_XDP configuration: {0}")]
    Config(String),
    /// The UMEM could not be created.
    #[error("cannot create the UMEM: {0}")]
    Umem(String),
    /// The XDP program could not be attached or used.
    #[error(transparent)]
    Program(#[from] ProgramError),
    /// The socket could not be created or bound.
    #[error("cannot open AF_XDP socket on {iface} queue {queue}: {reason}")]
    Socket {
        /// Interface.
        iface: String,
        /// Queue.
        queue: u32,
        /// Why.
        reason: String,
    },
}

/// One AF_XDP queue. See the module docs.
pub struct AfXdpQueue {
    umem: Umem,
    tx: TxQueue,
    rx: RxQueue,
    fq: FillQueue,
    cq: CompQueue,
    /// Receive frames not in the fill ring.
    rx_free: Vec<FrameDesc>,
    /// Transmit frames free for writing.
    tx_free: Vec<FrameDesc>,
    /// Transmit frames written, waiting for `tx_flush`.
    tx_batch: Vec<FrameDesc>,
    /// All transmit frames (free, batched, or with the kernel).
    tx_total: usize,
    /// Scratch for ring consumption.
    scratch: Vec<FrameDesc>,
    caps: Capabilities,
    queue: u16,
    stats: QueueStats,
    /// Where `tx_frame`'s caller writes the frame before it is copied into the UMEM.
    tx_scratch: Vec<u8>,
    /// What to tell the user when received frames fail their checksum.
    checksum_hint: Option<String>,
    /// The buffers of a frame received in several (multi-buffer), gathered so far.
    rx_partial: Vec<u8>,
    /// The frame being gathered is too long: its buffers are dropped until its last.
    rx_skip: bool,
    /// The XDP program (dropped after the socket: the field order matters).
    program: Arc<Program>,
}

impl AfXdpQueue {
    /// Opens queue `cfg.queue` of `cfg.iface`.
    pub fn open(cfg: &AfXdpConfig) -> Result<Self, AfXdpError> {
        let frames = NonZeroU32::new(cfg.frames)
            .filter(|n| n.get().is_power_of_two() && n.get() >= 64)
            .ok_or_else(|| {
                AfXdpError::Config(format!(
                    "frames must be a power of two >= 64, got {}",
                    cfg.frames
                ))
            })?;
        if !(576..=9000).contains(&cfg.mtu) {
            return Err(AfXdpError::Config(format!(
                "MTU {} out of range (576..=9000)",
                cfg.mtu
            )));
        }
        let jumbo = cfg.mtu > SINGLE_BUFFER_MTU;
        let config = |e: &dyn std::fmt::Display| AfXdpError::Config(e.to_string());
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(FRAME).map_err(|e| config(&e))?)
            .fill_queue_size(QueueSize::new(cfg.frames / 2).map_err(|e| config(&e))?)
            .comp_queue_size(QueueSize::new(cfg.frames / 2).map_err(|e| config(&e))?)
            .build()
            .map_err(|e| config(&e))?;
        let (umem, mut descs) = match Umem::new(umem_cfg, frames, cfg.hugepages) {
            Ok(x) => x,
            Err(e) if cfg.hugepages => {
                tracing::warn!("AF_XDP UMEM on hugepages failed ({e}); using normal pages");
                Umem::new(umem_cfg, frames, false).map_err(|e| AfXdpError::Umem(e.to_string()))?
            }
            Err(e) => return Err(AfXdpError::Umem(e.to_string())),
        };
        let ring = QueueSize::new(cfg.frames / 2).map_err(|e| config(&e))?;
        let iface: Interface = cfg
            .iface
            .parse()
            .map_err(|e| AfXdpError::Config(format!("interface name {:?}: {e}", cfg.iface)))?;
        let sock_err = |reason: String| AfXdpError::Socket {
            iface: cfg.iface.clone(),
            queue: cfg.queue,
            reason,
        };
        let program = Program::on(&cfg.iface)?;
        let multi_buffer = if jumbo {
            BindFlags::XDP_USE_SG
        } else {
            BindFlags::empty()
        };
        let bind_flags = BindFlags::XDP_USE_NEED_WAKEUP
            | multi_buffer
            | match cfg.zero_copy {
                ZeroCopy::Auto => BindFlags::empty(),
                ZeroCopy::On => BindFlags::XDP_ZEROCOPY,
                ZeroCopy::Off => BindFlags::XDP_COPY,
            };
        let sock_cfg = SocketConfig::builder()
            .rx_queue_size(ring)
            .tx_queue_size(ring)
            .libxdp_flags(LibxdpFlags::XSK_LIBXDP_FLAGS_INHIBIT_PROG_LOAD)
            .bind_flags(bind_flags)
            .build();
        // A queue that a process just released may still be bound while the kernel tears its
        // socket down (EBUSY): retry for a bounded time.
        let mut warned = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let (tx, rx, fq_cq) = loop {
            // SAFETY: this UMEM is not shared: the socket is the only one created on it,
            // so the double-free hazard of shared UMEMs (xsk-rs `Socket::new` docs) does
            // not apply.
            let last = match unsafe { Socket::new(sock_cfg, &umem, &iface, cfg.queue) } {
                Ok(s) => break s,
                Err(e) => e.to_string(),
            };
            if jumbo && std::time::Instant::now() >= deadline {
                return Err(sock_err(format!(
                    "{last}: MTU {} takes several buffers per frame (multi-buffer AF_XDP, \
                     Linux 6.6 and a driver that has it); use --mtu {SINGLE_BUFFER_MTU} or less",
                    cfg.mtu
                )));
            }
            if cfg.zero_copy == ZeroCopy::On {
                return Err(sock_err(format!(
                    "{last}: the driver refuses zero-copy (veth and generic XDP have none): \
                     use --zero-copy auto or off"
                )));
            }
            if std::time::Instant::now() >= deadline {
                return Err(sock_err(format!(
                    "{last} (is another process using queue {} of {}? each megatcp \
                     process needs queues of its own: --queues)",
                    cfg.queue, cfg.iface
                )));
            }
            if !warned {
                warned = true;
                tracing::warn!(
                    "cannot bind {} queue {} yet ({last}); retrying for up to 3 s",
                    cfg.iface,
                    cfg.queue
                );
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        };
        program.bind(cfg.queue, rx.fd().as_raw_fd(), &cfg.steering)?;
        let zero_copy = zero_copy(rx.fd().as_raw_fd());
        let deferral = interrupt_deferral(&cfg.iface);
        let busy = cfg.busy_poll && deferral && set_busy_poll(rx.fd().as_raw_fd());
        let generic = program.mode() == Mode::Generic;
        tracing::info!(
            "AF_XDP on {} queue {}: {} XDP ({}), {} mode{}{}",
            cfg.iface,
            cfg.queue,
            if generic { "generic" } else { "native" },
            cfg.steering,
            if zero_copy { "zero-copy" } else { "copy" },
            match (busy, cfg.busy_poll && !deferral) {
                (true, _) => ", busy polling".to_string(),
                (false, true) => format!(
                    ", no busy polling ({} does not defer its interrupts: \
                     scripts/nic-setup afxdp {} --busy-poll sets napi_defer_hard_irqs and \
                     gro_flush_timeout)",
                    cfg.iface, cfg.iface
                ),
                (false, false) => String::new(),
            },
            if jumbo {
                format!(", multi-buffer frames for MTU {}", cfg.mtu)
            } else {
                String::new()
            }
        );
        if generic && cfg.queue == 0 {
            tracing::warn!(
                "native XDP unavailable on {}; generic mode puts every packet on \
                 queue 0",
                cfg.iface
            );
        }
        let (fq, cq) = fq_cq.ok_or_else(|| sock_err("no fill/completion queue".into()))?;
        let tx_free = descs.split_off(descs.len() / 2);
        let n = descs.len();
        let mut q = Self {
            umem,
            tx,
            rx,
            fq,
            cq,
            rx_free: descs,
            tx_total: tx_free.len(),
            tx_free,
            tx_batch: Vec::with_capacity(n),
            scratch: vec![FrameDesc::default(); n.max(256)],
            caps: Capabilities {
                mtu: cfg.mtu,
                checksum: ChecksumOffloads::default(),
                queues: cfg.queues,
                rss: cfg.rss.clone(),
            },
            queue: cfg.queue as u16,
            stats: QueueStats::default(),
            tx_scratch: vec![0; cfg.mtu + crate::ETHERNET_HEADER_LEN],
            checksum_hint: checksum_hint(&cfg.iface),
            rx_partial: Vec::new(),
            rx_skip: false,
            program,
        };
        q.refill();
        Ok(q)
    }

    /// Hands free receive frames to the kernel.
    fn refill(&mut self) {
        if self.rx_free.is_empty() {
            return;
        }
        // SAFETY: the frames in `rx_free` belong to this UMEM and are owned by us: they are
        // neither in the fill ring, nor in the RX ring, nor lent out (rx_burst puts a frame
        // back only after the caller's closure returned).
        let n = unsafe { self.fq.produce(&self.rx_free) };
        self.rx_free.drain(..n);
        if self.fq.needs_wakeup() {
            let _ = self.fq.wakeup(self.rx.fd_mut(), 0);
        }
    }

    /// Frames handed to the kernel and not yet completed.
    fn tx_in_flight(&self) -> usize {
        self.tx_total - self.tx_free.len() - self.tx_batch.len()
    }

    /// Wakes the kernel up until it has sent what the TX ring holds. In copy mode one
    /// `sendto` sends at most 32 frames (the kernel's per-call budget), so a larger batch
    /// needs several; without them the rest would wait for the next batch (or, at exit,
    /// never leave).
    fn kick(&mut self) {
        for _ in 0..64 {
            if self.tx.needs_wakeup() {
                let _ = self.tx.wakeup();
            }
            let before = self.tx_free.len();
            self.reclaim();
            if self.tx_in_flight() == 0 || self.tx_free.len() == before {
                return;
            }
        }
    }

    /// Takes back transmit frames the kernel has finished with.
    fn reclaim(&mut self) {
        // Only frames in flight can complete; the scratch keeps its length (no clearing).
        let want = self.tx_in_flight().min(self.scratch.len());
        if want == 0 {
            return;
        }
        // SAFETY: the descriptors are only overwritten with frames of this UMEM that the
        // kernel has completed; we own them again afterwards.
        let n = unsafe { self.cq.consume(&mut self.scratch[..want]) };
        self.tx_free.extend_from_slice(&self.scratch[..n]);
    }
}

impl Drop for AfXdpQueue {
    /// Lets the kernel send what was queued (the last RSTs and FINs of a process that
    /// exits), for at most 100 ms.
    fn drop(&mut self) {
        // Frames for this queue go to the kernel from now on.
        self.program.unbind(u32::from(self.queue));
        if !self.tx_batch.is_empty() {
            self.tx_flush();
        }
        let end = std::time::Instant::now() + std::time::Duration::from_millis(100);
        while self.tx_in_flight() > 0 && std::time::Instant::now() < end {
            self.kick();
            std::thread::sleep(std::time::Duration::from_micros(200));
        }
    }
}

impl NicQueue for AfXdpQueue {
    fn capabilities(&self) -> &Capabilities {
        &self.caps
    }

    fn queue_id(&self) -> u16 {
        self.queue
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        self.refill();
        let want = budget.min(256).min(self.scratch.len());
        // SAFETY: the RX ring only hands out frames of this UMEM that the kernel filled; we
        // own them until we give them back to the fill ring.
        let n = unsafe { self.rx.consume(&mut self.scratch[..want]) };
        let mut frames = 0;
        for i in 0..n {
            let desc = self.scratch[i];
            // SAFETY: `desc` came from the RX ring just now: the kernel is done writing it
            // and nothing else reads or writes it until it is refilled below.
            let data = unsafe { self.umem.data(&desc) };
            let bytes = data.contents();
            let more = desc.options() & XDP_PKT_CONTD != 0;
            if !more && self.rx_partial.is_empty() && !self.rx_skip {
                // One buffer, one frame: lent straight out of the UMEM.
                self.stats.rx_frames += 1;
                self.stats.rx_bytes += bytes.len() as u64;
                frames += 1;
                sink(RxFrame {
                    data: bytes,
                    rss_hash: None,
                });
            } else {
                // A frame in several buffers (multi-buffer, jumbo frames): gathered.
                if self.rx_partial.len() + bytes.len() > self.caps.max_frame_len() {
                    self.rx_skip = true;
                }
                if !self.rx_skip {
                    self.rx_partial.extend_from_slice(bytes);
                }
                if !more {
                    if self.rx_skip {
                        self.stats.dropped += 1;
                    } else {
                        self.stats.rx_frames += 1;
                        self.stats.rx_bytes += self.rx_partial.len() as u64;
                        frames += 1;
                        sink(RxFrame {
                            data: &self.rx_partial,
                            rss_hash: None,
                        });
                    }
                    self.rx_partial.clear();
                    self.rx_skip = false;
                }
            }
            self.rx_free.push(desc);
        }
        if n > 0 {
            self.refill();
        }
        frames
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        // A frame takes one UMEM frame, or several with multi-buffer (jumbo frames).
        let need = self.tx_scratch.len().div_ceil(SEGMENT);
        if self.tx_free.len() < need {
            self.reclaim();
        }
        if self.tx_free.len() < need {
            self.stats.tx_full += 1;
            return Err(TxError::Full);
        }
        let max = self.tx_scratch.len();
        let len = fill(&mut self.tx_scratch);
        if len == 0 {
            return Ok(());
        }
        if len > max {
            return Err(TxError::TooLong { len, max });
        }
        let segments = len.div_ceil(SEGMENT);
        for (i, chunk) in self.tx_scratch[..len].chunks(SEGMENT).enumerate() {
            let Some(mut desc) = self.tx_free.pop() else {
                // Counted above: cannot happen.
                return Err(TxError::Full);
            };
            desc.set_options(if i + 1 < segments { XDP_PKT_CONTD } else { 0 });
            // SAFETY: `desc` is a free transmit frame of this UMEM: not in any ring, owned
            // by us.
            let mut data = unsafe { self.umem.data_mut(&mut desc) };
            let mut cur = data.cursor();
            // Frames are reused: restart at the beginning (the length is what we write).
            cur.set_pos(0);
            if cur.write_all(chunk).is_err() {
                self.tx_free.push(desc);
                return Err(TxError::TooLong { len, max });
            }
            self.tx_batch.push(desc);
        }
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        Ok(())
    }

    fn tx_flush(&mut self) -> usize {
        if self.tx_batch.is_empty() {
            self.reclaim();
            return 0;
        }
        // SAFETY: every frame in `tx_batch` is of this UMEM, written by `tx_frame`, and owned
        // by us; the TX ring takes them over until they come back on the completion ring.
        let n = unsafe { self.tx.produce(&self.tx_batch) };
        self.tx_batch.drain(..n);
        self.kick();
        n
    }

    fn stats(&self) -> QueueStats {
        self.stats
    }

    fn checksum_hint(&self) -> Option<&str> {
        self.checksum_hint.as_deref()
    }
}

/// What to say when frames received on `iface` fail their checksum: on veth and the like,
/// the peer most likely leaves its checksums to an offload that never happens.
fn checksum_hint(iface: &str) -> Option<String> {
    let driver = crate::ethtool::driver(iface).ok()?;
    if !driver.is_virtual_peer() {
        return None;
    }
    let what = format!("{iface} is a {} device", driver.driver);
    Some(match crate::ethtool::peer(iface) {
        Some(crate::ethtool::Peer::Here(peer)) => {
            format!("{what}: the peer leaves checksums to offload: ethtool -K {peer} tx off")
        }
        Some(crate::ethtool::Peer::Elsewhere(index)) => format!(
            "{what}: the peer leaves checksums to offload: ethtool -K PEER tx off, where PEER \
             is its other end (interface {index} in the peer's network namespace)"
        ),
        None => format!(
            "{what}: the sender leaves checksums to offload: turn its transmit checksum \
             offload off (ethtool -K DEVICE tx off)"
        ),
    })
}

/// Whether the socket runs in zero-copy mode (`XDP_OPTIONS`).
fn zero_copy(fd: RawFd) -> bool {
    let mut opts: u32 = 0;
    let mut len = std::mem::size_of::<u32>() as libc::socklen_t;
    // SAFETY: `opts` and `len` are valid and writable for the call; `len` holds the size of
    // `opts` (struct xdp_options is a single u32).
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_XDP,
            libxdp_sys::XDP_OPTIONS as i32,
            (&mut opts as *mut u32).cast(),
            &mut len,
        )
    };
    rc == 0 && opts & libxdp_sys::XDP_OPTIONS_ZEROCOPY != 0
}

/// Whether `iface` defers its interrupts (`napi_defer_hard_irqs` and `gro_flush_timeout`
/// both above 0 in sysfs): then the kernel's timer runs the device's NAPI when a busy poller
/// is late.
fn interrupt_deferral(iface: &str) -> bool {
    let above_zero = |what: &str| {
        std::fs::read_to_string(format!("/sys/class/net/{iface}/{what}"))
            .ok()
            .and_then(|t| t.trim().parse::<u64>().ok())
            .is_some_and(|v| v > 0)
    };
    above_zero("napi_defer_hard_irqs") && above_zero("gro_flush_timeout")
}

/// Asks for busy polling on the socket; whether the kernel took all three options.
fn set_busy_poll(fd: RawFd) -> bool {
    let set = |opt: i32, value: i32| {
        // SAFETY: `value` is a valid int for the call; its size is passed along.
        unsafe {
            libc::setsockopt(
                fd,
                libc::SOL_SOCKET,
                opt,
                (&value as *const i32).cast(),
                std::mem::size_of::<i32>() as libc::socklen_t,
            ) == 0
        }
    };
    set(libc::SO_PREFER_BUSY_POLL, 1)
        && set(libc::SO_BUSY_POLL, 20)
        && set(libc::SO_BUSY_POLL_BUDGET, 64)
}
