//! Packet capture over any NIC queue: every frame received or sent is written to a classic
//! pcap file (microsecond timestamps, link type Ethernet) that tcpdump and tshark read.
//!
//! # Driving a `PcapQueue`
//!
//! Use it as the queue it wraps. Received frames are written as they are handed to the
//! caller; sent frames when `tx_frame` queues them. The file is buffered: call
//! [`PcapQueue::flush`] (or drop the queue) to make it complete on disk. A write error stops
//! the capture (counted, reported by [`PcapQueue::error`]) but never the traffic.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};

/// Classic pcap magic (microsecond timestamps), written in native byte order.
const MAGIC: u32 = 0xa1b2_c3d4;
/// Link type Ethernet.
const LINKTYPE_ETHERNET: u32 = 1;
/// Longest frame recorded whole.
pub const SNAPLEN: u32 = 65535;

/// Why a capture could not start or continue.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Creating or writing the file failed.
    #[error("pcap file {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The cause.
        source: io::Error,
    },
}

/// Writes frames to a pcap stream.
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = Vec::with_capacity(24);
        h.extend_from_slice(&MAGIC.to_ne_bytes());
        h.extend_from_slice(&2u16.to_ne_bytes());
        h.extend_from_slice(&4u16.to_ne_bytes());
        h.extend_from_slice(&0i32.to_ne_bytes());
        h.extend_from_slice(&0u32.to_ne_bytes());
        h.extend_from_slice(&SNAPLEN.to_ne_bytes());
        h.extend_from_slice(&LINKTYPE_ETHERNET.to_ne_bytes());
        out.write_all(&h)?;
        Ok(Self { out, records: 0 })
    }

    /// Writes one frame captured at `time`.
    pub fn write_frame(&mut self, time: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let caplen = frame.len().min(SNAPLEN as usize);
        let mut h = [0u8; 16];
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_ne_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_ne_bytes());
        h[8..12].copy_from_slice(&(caplen as u32).to_ne_bytes());
        h[12..16].copy_from_slice(&(frame.len() as u32).to_ne_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(&frame[..caplen])?;
        self.records += 1;
        Ok(())
    }

    /// Frames written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the underlying stream.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }
}

/// A queue whose traffic is captured to a pcap file. See the module docs.
pub struct PcapQueue<Q: NicQueue> {
    inner: Q,
    writer: Option<PcapWriter<BufWriter<File>>>,
    path: String,
    error: Option<io::Error>,
}

impl<Q: NicQueue> PcapQueue<Q> {
    /// Wraps `inner`, capturing to a new file at `path` (truncated if it exists).
    pub fn create(inner: Q, path: impl AsRef<Path>) -> Result<Self, PcapError> {
        let p = path.as_ref().display().to_string();
        let io = |source| PcapError::Io {
            path: p.clone(),
            source,
        };
        let file = File::create(path.as_ref()).map_err(io)?;
        let writer = PcapWriter::new(BufWriter::with_capacity(1 << 20, file)).map_err(io)?;
        Ok(Self {
            inner,
            writer: Some(writer),
            path: p,
            error: None,
        })
    }

    /// Frames captured so far.
    pub fn records(&self) -> u64 {
        self.writer.as_ref().map_or(0, PcapWriter::records)
    }

    /// The write error that stopped the capture, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// The capture file's path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Writes buffered records to the file.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        match self.writer.as_mut().map(PcapWriter::flush) {
            Some(Err(source)) => Err(PcapError::Io {
                path: self.path.clone(),
                source,
            }),
            _ => Ok(()),
        }
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }
}

fn record(
    writer: &mut Option<PcapWriter<BufWriter<File>>>,
    error: &mut Option<io::Error>,
    frame: &[u8],
) {
    if let Some(w) = writer.as_mut()
        && let Err(e) = w.write_frame(SystemTime::now(), frame)
    {
        *error = Some(e);
        *writer = None;
    }
}

impl<Q: NicQueue> NicQueue for PcapQueue<Q> {
    fn capabilities(&self) -> &Capabilities {
        self.inner.capabilities()
    }

    fn queue_id(&self) -> u16 {
        self.inner.queue_id()
    }

    fn rx_burst(&mut self, budget: usize, sink: &mut dyn FnMut(RxFrame<'_>)) -> usize {
        let Self {
            inner,
            writer,
            error,
            ..
        } = self;
        inner.rx_burst(budget, &mut |f| {
            record(writer, error, f.data);
            sink(f);
        })
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        let Self {
            inner,
            writer,
            error,
            ..
        } = self;
        inner.tx_frame(&mut |buf| {
            let n = fill(buf);
            if n > 0 && n <= buf.len() {
                record(writer, error, &buf[..n]);
            }
            n
        })
    }

    fn tx_flush(&mut self) -> usize {
        self.inner.tx_flush()
    }

    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }
}

impl<Q: NicQueue> Drop for PcapQueue<Q> {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx_copy;
    use crate::wire::{self, WireConfig};

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_ne_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// A minimal valid Ethernet/IPv4/UDP frame, so that readers decode it.
    fn udp_frame(i: u8) -> Vec<u8> {
        let mut f = vec![0u8; 14 + 20 + 8 + 4];
        f[0..6].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[12] = 0x08;
        f[14] = 0x45;
        f[16..18].copy_from_slice(&32u16.to_be_bytes());
        f[22] = 64;
        f[23] = 17;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        let mut sum = 0u32;
        for c in f[14..34].chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], c[1]]));
        }
        while sum > 0xffff {
            sum = (sum & 0xffff) + (sum >> 16);
        }
        f[24..26].copy_from_slice(&(!(sum as u16)).to_be_bytes());
        f[34..36].copy_from_slice(&1000u16.to_be_bytes());
        f[36..38].copy_from_slice(&2000u16.to_be_bytes());
        f[38..40].copy_from_slice(&12u16.to_be_bytes());
        f[42..46].copy_from_slice(&[i; 4]);
        f
    }

    #[test]
    fn captures_both_directions_in_a_file_readers_understand() {
        let dir = std::env::temp_dir().join(format!("megatcp-pcap-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("capture.pcap");
        let (mut a, mut b) = wire::pair(WireConfig::default());
        let mut cap = PcapQueue::create(a.remove(0), &path).unwrap();
        for i in 0..5 {
            tx_copy(&mut cap, &udp_frame(i)).unwrap();
        }
        cap.tx_flush();
        let mut peer = b.remove(0);
        let mut n = 0;
        peer.rx_burst(64, &mut |_| n += 1);
        assert_eq!(n, 5);
        for i in 10..13 {
            tx_copy(&mut peer, &udp_frame(i)).unwrap();
        }
        peer.tx_flush();
        assert_eq!(cap.rx_burst(64, &mut |_| {}), 3);
        assert_eq!(cap.records(), 8);
        cap.flush().unwrap();

        let bytes = std::fs::read(&path).unwrap();
        assert_eq!(u32_at(&bytes, 0), MAGIC);
        assert_eq!(u32_at(&bytes, 20), LINKTYPE_ETHERNET);
        let mut at = 24;
        let mut frames = Vec::new();
        while at < bytes.len() {
            let caplen = u32_at(&bytes, at + 8) as usize;
            assert_eq!(caplen, u32_at(&bytes, at + 12) as usize);
            frames.push(bytes[at + 16..at + 16 + caplen].to_vec());
            at += 16 + caplen;
        }
        assert_eq!(at, bytes.len());
        let want: Vec<_> = (0..5).chain(10..13).map(udp_frame).collect();
        assert_eq!(frames, want);

        for tool in [&["tcpdump", "-nn", "-r"][..], &["tshark", "-n", "-r"][..]] {
            let out = std::process::Command::new(tool[0])
                .args(&tool[1..])
                .arg(&path)
                .output();
            match out {
                Ok(o) if o.status.success() => {
                    let text = String::from_utf8_lossy(&o.stdout);
                    assert_eq!(text.lines().count(), 8, "{} output:\\n{text}", tool[0]);
                    assert!(text.contains("10.0.0.1"), "{text}");
                }
                Ok(o) => panic!("{} failed: {}", tool[0], String::from_utf8_lossy(&o.stderr)),
                Err(_) => eprintln!(
                    "note: {} is not installed; file checked by parsing only",
                    tool[0]
                ),
            }
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_bad_path_is_a_clear_error() {
        let (mut a, _b) = wire::pair(WireConfig::default());
        let err = PcapQueue::create(a.remove(0), "/nonexistent-dir/x.pcap")
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent-dir/x.pcap"), "{err}");
    }
}
