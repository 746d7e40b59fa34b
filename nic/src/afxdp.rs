//! AF_XDP backend (feature `afxdp`): one XDP socket per queue on xsk-rs, owned by one core.
//!
//! The UMEM is split in two: frames for the fill ring (receive) and frames for transmit.
//! `rx_burst` refills the fill ring in batches, lends received frames to the caller straight
//! out of the UMEM, and gives them back to the fill ring; `tx_frame` writes into a free
//! transmit frame; `tx_flush` submits the batch and kicks the kernel when it asks for it
//! (`XDP_USE_NEED_WAKEUP`); completed transmit frames are reclaimed in batches.
//!
//! Copy mode on veth (zero-copy needs driver support: i40e, ice, mlx5, ixgbe). The XDP
//! program is libxdp's default, loaded when the socket is created and removed when the last
//! socket on the interface goes.

use std::io::Write;
use std::num::NonZeroU32;

use std::os::fd::{AsRawFd, RawFd};

use xsk_rs::config::{
    BindFlags, FrameSize, Interface, QueueSize, SocketConfig, UmemConfig, XdpFlags,
};
use xsk_rs::{CompQueue, FillQueue, FrameDesc, RxQueue, Socket, TxQueue, Umem};

use crate::{Capabilities, ChecksumOffloads, NicQueue, QueueStats, RxFrame, TxError};

/// How to open an AF_XDP queue.
#[derive(Debug, Clone)]
pub struct AfXdpConfig {
    /// Interface name.
    pub iface: String,
    /// Queue index on the interface.
    pub queue: u32,
    /// Frames in the UMEM (half receive, half transmit); a power of two.
    pub frames: u32,
    /// Try hugepages for the UMEM first (falls back to normal pages with a warning).
    pub hugepages: bool,
    /// IP MTU of the interface.
    pub mtu: usize,
    /// Queues the interface has (for the capabilities).
    pub queues: u16,
    /// Ask the kernel to busy-poll the socket (`SO_PREFER_BUSY_POLL`, `SO_BUSY_POLL`,
    /// `SO_BUSY_POLL_BUDGET`); drivers without NAPI busy polling ignore it.
    pub busy_poll: bool,
}

impl AfXdpConfig {
    /// Queue `queue` of `iface`, with defaults (8192 frames, hugepages tried, MTU 1500).
    pub fn new(iface: &str, queue: u32) -> Self {
        Self {
            iface: iface.to_string(),
            queue,
            frames: 8192,
            hugepages: true,
            mtu: 1500,
            queues: 1,
            busy_poll: true,
        }
    }
}

/// Why an AF_XDP queue could not be opened.
#[derive(Debug, thiserror::Error)]
pub enum AfXdpError {
    /// A bad configuration value.
    #[error("bad AF_XDP configuration: {0}")]
    Config(String),
    /// The UMEM could not be created.
    #[error("cannot create the UMEM: {0}")]
    Umem(String),
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
        let umem_cfg = UmemConfig::builder()
            .frame_size(FrameSize::new(4096).map_err(|e| AfXdpError::Config(e.to_string()))?)
            .fill_queue_size(
                QueueSize::new(cfg.frames / 2).map_err(|e| AfXdpError::Config(e.to_string()))?,
            )
            .comp_queue_size(
                QueueSize::new(cfg.frames / 2).map_err(|e| AfXdpError::Config(e.to_string()))?,
            )
            .build()
            .map_err(|e| AfXdpError::Config(e.to_string()))?;
        let (umem, mut descs) = match Umem::new(umem_cfg, frames, cfg.hugepages) {
            Ok(x) => x,
            Err(e) if cfg.hugepages => {
                tracing::warn!("AF_XDP UMEM on hugepages failed ({e}); using normal pages");
                Umem::new(umem_cfg, frames, false).map_err(|e| AfXdpError::Umem(e.to_string()))?
            }
            Err(e) => return Err(AfXdpError::Umem(e.to_string())),
        };
        let ring = QueueSize::new(cfg.frames / 2).map_err(|e| AfXdpError::Config(e.to_string()))?;
        let iface: Interface = cfg
            .iface
            .parse()
            .map_err(|e| AfXdpError::Config(format!("interface name {:?}: {e}", cfg.iface)))?;
        let sock_err = |reason: String| AfXdpError::Socket {
            iface: cfg.iface.clone(),
            queue: cfg.queue,
            reason,
        };
        // Sockets of one process are created one at a time: the first loads the XDP program,
        // the next ones find it and join its socket map (racing, both would try to attach).
        static OPEN: std::sync::Mutex<Vec<String>> = std::sync::Mutex::new(Vec::new());
        let mut opened = OPEN
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let first_on_iface = !opened.contains(&cfg.iface);
        if first_on_iface {
            replace_stale_program(&cfg.iface).map_err(sock_err)?;
        }
        // Native (driver) XDP first; generic (skb) mode if the driver has none. A queue that
        // a process just released may still be bound while the kernel tears its socket down
        // (EBUSY): retry for a bounded time.
        let mut native_error = String::new();
        let mut warned = false;
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(3);
        let (generic, created) = 'attempts: loop {
            let mut last = String::new();
            for (skb, xdp) in [
                (false, XdpFlags::XDP_FLAGS_DRV_MODE),
                (true, XdpFlags::XDP_FLAGS_SKB_MODE),
            ] {
                let sock_cfg = SocketConfig::builder()
                    .rx_queue_size(ring)
                    .tx_queue_size(ring)
                    .xdp_flags(xdp)
                    .bind_flags(BindFlags::XDP_USE_NEED_WAKEUP)
                    .build();
                // SAFETY: this UMEM is not shared: the socket is the only one created on it,
                // so the double-free hazard of shared UMEMs (xsk-rs `Socket::new` docs) does
                // not apply.
                match unsafe { Socket::new(sock_cfg, &umem, &iface, cfg.queue) } {
                    Ok(s) => break 'attempts (skb, s),
                    Err(e) if !skb => native_error = e.to_string(),
                    Err(e) => last = e.to_string(),
                }
            }
            if std::time::Instant::now() >= deadline {
                return Err(sock_err(format!("{last} (native XDP: {native_error})")));
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
        if generic {
            tracing::warn!(
                "native XDP unavailable on {} ({native_error}); using generic mode, \
                 which puts every packet on queue 0",
                cfg.iface
            );
        }
        let (tx, rx, fq_cq) = created;
        opened.push(cfg.iface.clone());
        drop(opened);
        let zero_copy = zero_copy(rx.fd().as_raw_fd());
        let busy = cfg.busy_poll && set_busy_poll(rx.fd().as_raw_fd());
        tracing::info!(
            "AF_XDP on {} queue {}: {} XDP, {} mode{}",
            cfg.iface,
            cfg.queue,
            if generic { "generic" } else { "native" },
            if zero_copy { "zero-copy" } else { "copy" },
            if busy { ", busy polling" } else { "" }
        );
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
                rss: None,
            },
            queue: cfg.queue as u16,
            stats: QueueStats::default(),
            tx_scratch: vec![0; cfg.mtu + crate::ETHERNET_HEADER_LEN],
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
        for i in 0..n {
            let desc = self.scratch[i];
            // SAFETY: `desc` came from the RX ring just now: the kernel is done writing it
            // and nothing else reads or writes it until it is refilled below.
            let data = unsafe { self.umem.data(&desc) };
            let bytes = data.contents();
            self.stats.rx_frames += 1;
            self.stats.rx_bytes += bytes.len() as u64;
            sink(RxFrame {
                data: bytes,
                rss_hash: None,
            });
            self.rx_free.push(desc);
        }
        if n > 0 {
            self.refill();
        }
        n
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        if self.tx_free.is_empty() {
            self.reclaim();
        }
        let Some(mut desc) = self.tx_free.pop() else {
            self.stats.tx_full += 1;
            return Err(TxError::Full);
        };
        let max = self.tx_scratch.len();
        let len = fill(&mut self.tx_scratch);
        if len == 0 || len > max {
            self.tx_free.push(desc);
            return if len == 0 {
                Ok(())
            } else {
                Err(TxError::TooLong { len, max })
            };
        }
        // SAFETY: `desc` is a free transmit frame of this UMEM: not in any ring, owned by us.
        let mut data = unsafe { self.umem.data_mut(&mut desc) };
        let mut cur = data.cursor();
        // Frames are reused: restart at the beginning (the length is what we write).
        cur.set_pos(0);
        if cur.write_all(&self.tx_scratch[..len]).is_err() {
            self.tx_free.push(desc);
            return Err(TxError::TooLong { len, max });
        }
        self.stats.tx_frames += 1;
        self.stats.tx_bytes += len as u64;
        self.tx_batch.push(desc);
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
}

/// Detaches an XDP program left on `iface` by a process that did not exit cleanly (killed),
/// saying so. Called before this process opens its first socket on the interface.
fn replace_stale_program(iface: &str) -> Result<(), String> {
    let name =
        std::ffi::CString::new(iface).map_err(|_| format!("bad interface name {iface:?}"))?;
    // SAFETY: `name` is a valid NUL-terminated string that outlives the call.
    let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
    if ifindex == 0 {
        return Err(format!(
            "no interface named {iface} in this network namespace"
        ));
    }
    let mut prog_id: u32 = 0;
    // SAFETY: `prog_id` is a valid, writable u32 for the call's duration.
    let rc = unsafe { libxdp_sys::bpf_xdp_query_id(ifindex as i32, 0, &mut prog_id) };
    if rc != 0 || prog_id == 0 {
        return Ok(());
    }
    tracing::warn!(
        "XDP program {prog_id} is still attached to {iface} (left by a process that \
         was killed?); replacing it"
    );
    // Modes: any, driver (XDP_FLAGS_DRV_MODE = 4), generic (XDP_FLAGS_SKB_MODE = 2).
    for mode in [0, 4, 2] {
        // SAFETY: a null `opts` is allowed by libbpf (no expected program checked).
        let rc = unsafe { libxdp_sys::bpf_xdp_detach(ifindex as i32, mode, std::ptr::null()) };
        if rc == 0 {
            return Ok(());
        }
    }
    Err(format!(
        "cannot detach the stale XDP program {prog_id} from {iface}"
    ))
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
