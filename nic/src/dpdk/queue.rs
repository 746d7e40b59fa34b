//! One core's RX/TX queue pair of a [`DpdkPort`], the [`NicQueue`]: receive straight out
//! of the mbufs, transmit into fresh mbufs, one `rte_eth_tx_burst` per flush.

use std::sync::Arc;

use megatcp_dpdk_sys as sys;

use super::{DpdkPort, rte_errno, strerror};
use crate::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};

/// Frames per receive burst and per transmit allocation batch.
pub(super) const BURST: usize = 64;

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
    /// Queue pair `queue` of `port` (checked by the caller), for the calling thread
    /// (registered with EAL if it is not an lcore yet).
    pub(super) fn open(port: Arc<DpdkPort>, queue: u16) -> Result<Self, QueueError> {
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
        Ok(Self {
            port,
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

/// The IPv4 and TCP header lengths of a TCP/IPv4 Ethernet frame (no VLAN tag), which the
/// device needs to fill its checksums; `None` for any other frame (sent as written).
fn tcp4_headers(frame: &[u8]) -> Option<(u16, u16)> {
    let eth = crate::ETHERNET_HEADER_LEN;
    if frame.get(eth - 2..eth)? != [0x08, 0x00] || *frame.get(eth + 9)? != 6 {
        return None;
    }
    let l3 = u16::from(frame[eth] & 0x0f) * 4;
    let l4 = u16::from(*frame.get(eth + usize::from(l3) + 12)? >> 4) * 4;
    (l3 >= 20 && l4 >= 20 && frame.len() >= eth + usize::from(l3 + l4)).then_some((l3, l4))
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
        if self.port.caps.checksum.tx_l4
            && let Some((l3, l4)) = tcp4_headers(&buf[..len])
        {
            // SAFETY: `m` is ours and holds the frame; the header lengths are the frame's.
            unsafe { sys::mtcp_tx_offload_tcp4(m, crate::ETHERNET_HEADER_LEN as u8, l3, l4) };
        }
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
    use super::tcp4_headers;

    #[test]
    fn only_tcp_over_ipv4_is_flagged_with_its_header_lengths() {
        let mut f = vec![0u8; 14 + 24 + 32 + 5];
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        f[14] = 0x46; // IPv4, 24-byte header
        f[23] = 6;
        f[14 + 24 + 12] = 0x80; // 32-byte TCP header
        assert_eq!(tcp4_headers(&f), Some((24, 32)));
        f[23] = 1; // ICMP
        assert_eq!(tcp4_headers(&f), None);
        f[23] = 6;
        f[12..14].copy_from_slice(&[0x08, 0x06]); // ARP
        assert_eq!(tcp4_headers(&f), None);
        f[12..14].copy_from_slice(&[0x08, 0x00]);
        assert_eq!(
            tcp4_headers(&f[..14 + 24 + 20]),
            None,
            "truncated TCP header"
        );
        assert_eq!(tcp4_headers(&f[..20]), None);
    }
}
