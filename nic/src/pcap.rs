//! Packet capture: every frame received or sent by a NIC queue written to a classic pcap
//! file (magic `0xa1b2c3d4`, microsecond timestamps, version 2.4, snap length 65535, link
//! type 1 = Ethernet), which tcpdump, tshark and Wireshark read.
//!
//! * [`PcapWriter`] writes the format to any [`Write`] stream, on its own.
//! * [`PcapQueue`] wraps any [`NicQueue`] and records its traffic through a `PcapWriter`.
//!
//! Files are written little-endian whatever the host (readers accept either byte order;
//! the same frames and times give the same bytes everywhere). Timestamps are whole seconds
//! since the Unix epoch in 32 bits, as the format has them (times before 1970 are written as
//! 0; they wrap in 2106).
//!
//! # Driving a `PcapQueue`
//!
//! Make it with [`PcapQueue::create`] (a file) or [`PcapQueue::new`] (any writer) and use it
//! as the queue it wraps. A received frame is recorded just before it is handed to the
//! caller's closure; a sent frame once the wrapped queue has accepted it in `tx_frame`
//! (frames it refuses, and abandoned ones, are not recorded), stamped with that time rather
//! than the flush's. The output is buffered: call [`PcapQueue::flush`] (or drop the queue) to
//! make the file complete on disk. A write error stops the capture (see
//! [`PcapQueue::error`]) but never the traffic.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::{Capabilities, NicQueue, QueueStats, RxFrame, TxError};

/// Classic pcap magic number: microsecond timestamps.
pub const MAGIC: u32 = 0xa1b2_c3d4;
/// Format version written: 2.4.
pub const VERSION: (u16, u16) = (2, 4);
/// Link type of the frames: Ethernet.
pub const LINKTYPE_ETHERNET: u32 = 1;
/// Longest frame recorded whole; longer ones are cut (their original length is kept).
pub const SNAPLEN: u32 = 65535;
/// Length of the file header.
pub const FILE_HEADER_LEN: usize = 24;
/// Length of each record's header.
pub const RECORD_HEADER_LEN: usize = 16;

/// Size of the buffer between a [`PcapQueue`] and its file.
const FILE_BUFFER: usize = 1 << 20;

/// Why a capture could not start or go on.
#[derive(Debug, thiserror::Error)]
pub enum PcapError {
    /// Creating, writing or flushing a capture file failed.
    #[error("pcap file {}: {source}", path.display())]
    File {
        /// The file.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Writing or flushing a capture stream that is not a named file failed.
    #[error("pcap stream: {0}")]
    Stream(#[source] io::Error),
}

/// Writes frames to a pcap stream: the file header when made, then one record per
/// [`PcapWriter::write_frame`]. Usable on its own (e.g. over a `Vec<u8>` or a file).
///
/// Nothing is buffered here: give it a `BufWriter` for files, and call
/// [`PcapWriter::flush`] (dropping a `BufWriter` also flushes it, ignoring errors).
#[derive(Debug)]
pub struct PcapWriter<W: Write> {
    out: W,
    records: u64,
}

impl PcapWriter<BufWriter<File>> {
    /// Creates (or truncates) the file at `path`, buffered, and writes the file header.
    pub fn create(path: impl AsRef<Path>) -> Result<Self, PcapError> {
        let path = path.as_ref();
        let err = |source| PcapError::File {
            path: path.to_path_buf(),
            source,
        };
        let file = File::create(path).map_err(err)?;
        Self::new(BufWriter::with_capacity(FILE_BUFFER, file)).map_err(err)
    }
}

impl<W: Write> PcapWriter<W> {
    /// Writes the file header to `out`.
    pub fn new(mut out: W) -> io::Result<Self> {
        let mut h = [0u8; FILE_HEADER_LEN];
        h[0..4].copy_from_slice(&MAGIC.to_le_bytes());
        h[4..6].copy_from_slice(&VERSION.0.to_le_bytes());
        h[6..8].copy_from_slice(&VERSION.1.to_le_bytes());
        // 8..12: time zone offset, 12..16: timestamp accuracy; both 0.
        h[16..20].copy_from_slice(&SNAPLEN.to_le_bytes());
        h[20..24].copy_from_slice(&LINKTYPE_ETHERNET.to_le_bytes());
        out.write_all(&h)?;
        Ok(Self { out, records: 0 })
    }

    /// Writes one frame captured at `time` (its first [`SNAPLEN`] bytes if longer).
    pub fn write_frame(&mut self, time: SystemTime, frame: &[u8]) -> io::Result<()> {
        let since = time.duration_since(UNIX_EPOCH).unwrap_or_default();
        let caplen = frame.len().min(SNAPLEN as usize);
        let orig_len = u32::try_from(frame.len()).unwrap_or(u32::MAX);
        let mut h = [0u8; RECORD_HEADER_LEN];
        // The format's seconds are 32 bits: wraps in 2106.
        h[0..4].copy_from_slice(&(since.as_secs() as u32).to_le_bytes());
        h[4..8].copy_from_slice(&since.subsec_micros().to_le_bytes());
        // caplen <= SNAPLEN, so it fits.
        h[8..12].copy_from_slice(&(caplen as u32).to_le_bytes());
        h[12..16].copy_from_slice(&orig_len.to_le_bytes());
        self.out.write_all(&h)?;
        self.out.write_all(frame.get(..caplen).unwrap_or(frame))?;
        self.records += 1;
        Ok(())
    }

    /// Records written.
    pub fn records(&self) -> u64 {
        self.records
    }

    /// Flushes the underlying stream.
    pub fn flush(&mut self) -> io::Result<()> {
        self.out.flush()
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &W {
        &self.out
    }

    /// Gives back the underlying stream (not flushed).
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// A queue whose traffic, both ways, is captured to a pcap file; made by
/// [`PcapQueue::create`] or [`PcapQueue::new`]. See the module docs for how to drive it.
pub struct PcapQueue<Q: NicQueue, W: Write = BufWriter<File>> {
    inner: Q,
    /// `None` once a write error stopped the capture.
    writer: Option<PcapWriter<W>>,
    /// The file, for error messages (`None` for a stream given to `new`).
    path: Option<PathBuf>,
    error: Option<io::Error>,
    /// Records written before the capture stopped, if it did.
    records: u64,
    /// A transmitted frame, kept until the wrapped queue has accepted it.
    scratch: Vec<u8>,
}

impl<Q: NicQueue> PcapQueue<Q> {
    /// Wraps `inner`, capturing to a new file at `path` (truncated if it exists).
    pub fn create(inner: Q, path: impl AsRef<Path>) -> Result<Self, PcapError> {
        let writer = PcapWriter::create(path.as_ref())?;
        let mut q = Self::new(inner, writer);
        q.path = Some(path.as_ref().to_path_buf());
        Ok(q)
    }
}

impl<Q: NicQueue, W: Write> PcapQueue<Q, W> {
    /// Wraps `inner`, capturing through `writer` (whose header is already written).
    pub fn new(inner: Q, writer: PcapWriter<W>) -> Self {
        let frame = inner.capabilities().max_frame_len();
        Self {
            inner,
            records: writer.records(),
            writer: Some(writer),
            path: None,
            error: None,
            scratch: Vec::with_capacity(frame),
        }
    }

    /// Frames captured so far.
    pub fn records(&self) -> u64 {
        self.writer
            .as_ref()
            .map_or(self.records, PcapWriter::records)
    }

    /// Whether frames are still being captured (no write error so far).
    pub fn capturing(&self) -> bool {
        self.writer.is_some()
    }

    /// The write error that stopped the capture, if any.
    pub fn error(&self) -> Option<&io::Error> {
        self.error.as_ref()
    }

    /// The capture file's path (`None` when capturing to a stream given to `new`).
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// The capture writer (`None` once a write error stopped the capture).
    pub fn writer(&self) -> Option<&PcapWriter<W>> {
        self.writer.as_ref()
    }

    /// Writes buffered records out. An error stops the capture, like a failed write.
    pub fn flush(&mut self) -> Result<(), PcapError> {
        let Some(w) = self.writer.as_mut() else {
            return Ok(());
        };
        let Err(source) = w.flush() else {
            return Ok(());
        };
        // Keep a description for `error()`; hand the original to the caller.
        self.stop(io::Error::new(source.kind(), source.to_string()));
        Err(match &self.path {
            Some(path) => PcapError::File {
                path: path.clone(),
                source,
            },
            None => PcapError::Stream(source),
        })
    }

    /// The wrapped queue.
    pub fn inner(&self) -> &Q {
        &self.inner
    }

    /// The wrapped queue, mutably (traffic through it directly is not captured).
    pub fn inner_mut(&mut self) -> &mut Q {
        &mut self.inner
    }

    fn stop(&mut self, e: io::Error) {
        if let Some(w) = self.writer.take() {
            self.records = w.records();
        }
        self.error = Some(e);
    }
}

/// Records `frame` now; a write error stops the capture.
fn record<W: Write>(
    writer: &mut Option<PcapWriter<W>>,
    records: &mut u64,
    error: &mut Option<io::Error>,
    frame: &[u8],
) {
    if let Some(w) = writer.as_mut()
        && let Err(e) = w.write_frame(SystemTime::now(), frame)
    {
        *records = w.records();
        *error = Some(e);
        *writer = None;
    }
}

impl<Q: NicQueue, W: Write> std::fmt::Debug for PcapQueue<Q, W> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PcapQueue")
            .field("queue_id", &self.inner.queue_id())
            .field("path", &self.path)
            .field("records", &self.records())
            .field("error", &self.error)
            .finish_non_exhaustive()
    }
}

impl<Q: NicQueue, W: Write> NicQueue for PcapQueue<Q, W> {
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
            records,
            error,
            ..
        } = self;
        inner.rx_burst(budget, &mut |f| {
            record(writer, records, error, f.data);
            sink(f);
        })
    }

    fn tx_frame(&mut self, fill: &mut dyn FnMut(&mut [u8]) -> usize) -> Result<(), TxError> {
        if self.writer.is_none() {
            return self.inner.tx_frame(fill);
        }
        let Self { inner, scratch, .. } = self;
        scratch.clear();
        let result = inner.tx_frame(&mut |buf| {
            let n = fill(buf);
            if let Some(frame) = buf.get(..n) {
                scratch.extend_from_slice(frame);
            }
            n
        });
        if result.is_ok() && !self.scratch.is_empty() {
            record(
                &mut self.writer,
                &mut self.records,
                &mut self.error,
                &self.scratch,
            );
        }
        result
    }

    fn tx_flush(&mut self) -> usize {
        self.inner.tx_flush()
    }

    fn stats(&self) -> QueueStats {
        self.inner.stats()
    }

    fn checksum_hint(&self) -> Option<&str> {
        self.inner.checksum_hint()
    }
}

impl<Q: NicQueue, W: Write> Drop for PcapQueue<Q, W> {
    /// Flushes the capture (an error is ignored: check [`PcapQueue::flush`] to see it).
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tx_copy;
    use crate::wire::{self, WireConfig};
    use std::time::Duration;

    fn u16_at(b: &[u8], at: usize) -> u16 {
        u16::from_le_bytes(b[at..at + 2].try_into().unwrap())
    }

    fn u32_at(b: &[u8], at: usize) -> u32 {
        u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
    }

    /// One parsed record.
    #[derive(Debug, PartialEq)]
    struct Rec {
        sec: u32,
        usec: u32,
        orig_len: u32,
        data: Vec<u8>,
    }

    /// Parses a whole capture, checking the file header; panics on anything malformed.
    fn parse(bytes: &[u8]) -> Vec<Rec> {
        assert!(bytes.len() >= FILE_HEADER_LEN, "no file header");
        assert_eq!(u32_at(bytes, 0), 0xa1b2_c3d4, "magic");
        assert_eq!(&bytes[0..4], &[0xd4, 0xc3, 0xb2, 0xa1], "little-endian");
        assert_eq!((u16_at(bytes, 4), u16_at(bytes, 6)), (2, 4), "version");
        assert_eq!(u32_at(bytes, 8), 0, "thiszone");
        assert_eq!(u32_at(bytes, 12), 0, "sigfigs");
        assert_eq!(u32_at(bytes, 16), 65535, "snaplen");
        assert_eq!(u32_at(bytes, 20), 1, "linktype");
        let mut at = FILE_HEADER_LEN;
        let mut recs = Vec::new();
        while at < bytes.len() {
            assert!(
                at + RECORD_HEADER_LEN <= bytes.len(),
                "truncated record header"
            );
            let caplen = u32_at(bytes, at + 8) as usize;
            let orig_len = u32_at(bytes, at + 12);
            assert!(caplen <= 65535 && caplen as u32 <= orig_len);
            let usec = u32_at(bytes, at + 4);
            assert!(usec < 1_000_000);
            let start = at + RECORD_HEADER_LEN;
            assert!(start + caplen <= bytes.len(), "truncated record");
            recs.push(Rec {
                sec: u32_at(bytes, at),
                usec,
                orig_len,
                data: bytes[start..start + caplen].to_vec(),
            });
            at = start + caplen;
        }
        recs
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

    /// A fresh directory for one test's files, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            let dir =
                std::env::temp_dir().join(format!("megatcp-pcap-{}-{name}", std::process::id()));
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&dir).unwrap();
            Self(dir)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    #[test]
    fn writer_header_and_records_are_exact() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        assert_eq!(
            w.get_ref(),
            &[
                0xd4, 0xc3, 0xb2, 0xa1, 2, 0, 4, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0, 1, 0,
                0, 0
            ]
        );
        let t = UNIX_EPOCH + Duration::new(1_700_000_000, 123_456_789);
        w.write_frame(t, b"abc").unwrap();
        w.write_frame(t + Duration::from_micros(1), &[]).unwrap();
        assert_eq!(w.records(), 2);
        let bytes = w.into_inner();
        assert_eq!(
            parse(&bytes),
            vec![
                Rec {
                    sec: 1_700_000_000,
                    usec: 123_456,
                    orig_len: 3,
                    data: b"abc".to_vec()
                },
                Rec {
                    sec: 1_700_000_000,
                    usec: 123_457,
                    orig_len: 0,
                    data: Vec::new()
                },
            ]
        );
        assert_eq!(bytes.len(), 24 + 16 + 3 + 16);
    }

    #[test]
    fn long_frames_are_cut_at_the_snap_length_and_old_times_are_zero() {
        let mut w = PcapWriter::new(Vec::new()).unwrap();
        let big: Vec<u8> = (0..70_000u32).map(|i| i as u8).collect();
        w.write_frame(UNIX_EPOCH - Duration::from_secs(5), &big)
            .unwrap();
        let recs = parse(&w.into_inner());
        assert_eq!(recs.len(), 1);
        assert_eq!((recs[0].sec, recs[0].usec), (0, 0));
        assert_eq!(recs[0].orig_len, 70_000);
        assert_eq!(recs[0].data, &big[..65535]);
    }

    #[test]
    fn a_writer_on_a_file_by_itself() {
        let dir = TempDir::new("writer");
        let path = dir.0.join("w.pcap");
        let mut w = PcapWriter::create(&path).unwrap();
        for i in 0..3 {
            w.write_frame(SystemTime::now(), &udp_frame(i)).unwrap();
        }
        w.flush().unwrap();
        let recs = parse(&std::fs::read(&path).unwrap());
        let data: Vec<_> = recs.into_iter().map(|r| r.data).collect();
        assert_eq!(data, (0..3).map(udp_frame).collect::<Vec<_>>());
    }

    #[test]
    fn captures_both_directions_in_a_file_readers_understand() {
        let dir = TempDir::new("queue");
        let path = dir.0.join("capture.pcap");
        let (mut a, mut b) = wire::pair(WireConfig::default());
        let before = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs();
        let mut cap = PcapQueue::create(a.remove(0), &path).unwrap();
        assert_eq!(cap.path(), Some(path.as_path()));
        for i in 0..5 {
            tx_copy(&mut cap, &udp_frame(i)).unwrap();
        }
        assert_eq!(cap.tx_flush(), 5);
        let mut peer = b.remove(0);
        let mut got = Vec::new();
        peer.rx_burst(64, &mut |f| got.push(f.data.to_vec()));
        assert_eq!(got, (0..5).map(udp_frame).collect::<Vec<_>>());
        for i in 10..13 {
            tx_copy(&mut peer, &udp_frame(i)).unwrap();
        }
        peer.tx_flush();
        let mut got = Vec::new();
        assert_eq!(cap.rx_burst(64, &mut |f| got.push(f.data.to_vec())), 3);
        assert_eq!(got, (10..13).map(udp_frame).collect::<Vec<_>>());
        assert_eq!(cap.records(), 8);
        assert_eq!(cap.stats().tx_frames, 5);
        cap.flush().unwrap();
        assert!(cap.capturing() && cap.error().is_none());

        let recs = parse(&std::fs::read(&path).unwrap());
        let want: Vec<_> = (0..5).chain(10..13).map(udp_frame).collect();
        assert_eq!(
            recs.iter().map(|r| r.data.clone()).collect::<Vec<_>>(),
            want
        );
        for r in &recs {
            assert_eq!(r.orig_len as usize, r.data.len());
            assert!(u64::from(r.sec) >= before && u64::from(r.sec) < before + 600);
        }
        let times: Vec<_> = recs.iter().map(|r| (r.sec, r.usec)).collect();
        assert!(times.windows(2).all(|w| w[0] <= w[1]), "{times:?}");

        read_with_a_tool(&path, 8);
    }

    /// Reads the capture with tcpdump (or else tshark) when one is installed.
    fn read_with_a_tool(path: &Path, packets: usize) {
        for tool in [&["tcpdump", "-nn", "-r"][..], &["tshark", "-n", "-r"][..]] {
            let out = std::process::Command::new(tool[0])
                .args(&tool[1..])
                .arg(path)
                .output();
            match out {
                Ok(o) => {
                    let text = String::from_utf8_lossy(&o.stdout);
                    assert!(
                        o.status.success(),
                        "{} failed: {}",
                        tool[0],
                        String::from_utf8_lossy(&o.stderr)
                    );
                    assert_eq!(text.lines().count(), packets, "{} output:\n{text}", tool[0]);
                    assert!(text.contains("10.0.0.1"), "{text}");
                    return;
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => panic!("running {}: {e}", tool[0]),
            }
        }
        eprintln!("note: neither tcpdump nor tshark is installed; the capture was only parsed");
    }

    #[test]
    fn refused_and_abandoned_frames_are_not_recorded() {
        let (mut a, _b) = wire::pair(WireConfig {
            ring_size: 2,
            ..WireConfig::default()
        });
        let mut cap = PcapQueue::new(a.remove(0), PcapWriter::new(Vec::new()).unwrap());
        assert!(cap.path().is_none());
        assert!(matches!(
            tx_copy(&mut cap, &[0; 2000]),
            Err(TxError::TooLong { .. })
        ));
        assert_eq!(
            cap.tx_frame(&mut |_| 1515),
            Err(TxError::TooLong {
                len: 1515,
                max: 1514
            })
        );
        cap.tx_frame(&mut |_| 0).unwrap();
        tx_copy(&mut cap, b"one").unwrap();
        tx_copy(&mut cap, b"two").unwrap();
        assert_eq!(tx_copy(&mut cap, b"three"), Err(TxError::Full));
        assert_eq!(cap.records(), 2);
        let recs = parse(cap.writer().unwrap().get_ref());
        let data: Vec<_> = recs.into_iter().map(|r| r.data).collect();
        assert_eq!(data, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn dropping_the_queue_flushes_the_file() {
        let dir = TempDir::new("drop");
        let path = dir.0.join("d.pcap");
        let (mut a, mut b) = wire::pair(WireConfig::default());
        {
            let mut cap = PcapQueue::create(b.remove(0), &path).unwrap();
            for i in 0..4 {
                tx_copy(&mut a[0], &udp_frame(i)).unwrap();
            }
            a[0].tx_flush();
            assert_eq!(cap.rx_burst(64, &mut |_| {}), 4);
            // Buffered: not on disk yet.
            assert_eq!(std::fs::read(&path).unwrap().len(), 0);
        }
        assert_eq!(parse(&std::fs::read(&path).unwrap()).len(), 4);
    }

    /// A stream that fails after `room` bytes.
    struct Failing {
        room: usize,
    }

    impl Write for Failing {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if self.room == 0 {
                return Err(io::Error::other("disk full"));
            }
            let n = buf.len().min(self.room);
            self.room -= n;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_write_error_stops_the_capture_not_the_traffic() {
        let (mut a, mut b) = wire::pair(WireConfig::default());
        let w = PcapWriter::new(Failing {
            room: 24 + 2 * (16 + 10),
        })
        .unwrap();
        let mut cap = PcapQueue::new(a.remove(0), w);
        for i in 0..5u8 {
            tx_copy(&mut cap, &[i; 10]).unwrap();
        }
        cap.tx_flush();
        assert!(!cap.capturing());
        assert_eq!(cap.records(), 2);
        assert_eq!(cap.error().map(|e| e.to_string()), Some("disk full".into()));
        let mut n = 0;
        b[0].rx_burst(64, &mut |_| n += 1);
        assert_eq!(n, 5, "every frame still went out");
        tx_copy(&mut b[0], b"back").unwrap();
        b[0].tx_flush();
        assert_eq!(cap.rx_burst(64, &mut |_| {}), 1);
        assert_eq!(cap.records(), 2);
        assert!(cap.flush().is_ok(), "nothing left to flush");
    }

    #[test]
    fn a_failed_flush_is_reported_with_the_path() {
        let full = Path::new("/dev/full");
        if !full.exists() {
            eprintln!("note: no /dev/full; flush errors not checked on a file");
            return;
        }
        let (mut a, _b) = wire::pair(WireConfig::default());
        let mut cap = PcapQueue::create(a.remove(0), full).unwrap();
        tx_copy(&mut cap, b"frame").unwrap();
        let err = cap.flush().unwrap_err();
        assert!(matches!(err, PcapError::File { .. }));
        assert!(
            err.to_string().starts_with("pcap file /dev/full: "),
            "{err}"
        );
        assert!(!cap.capturing());
        assert!(cap.error().is_some());
        assert_eq!(cap.records(), 1);
        tx_copy(&mut cap, b"still sent").unwrap();
        assert_eq!(cap.tx_flush(), 2, "both frames go out");
    }

    #[test]
    fn a_bad_path_is_a_clear_error() {
        let (mut a, _b) = wire::pair(WireConfig::default());
        let err = PcapQueue::create(a.remove(0), "/nonexistent-dir/x.pcap")
            .err()
            .unwrap();
        assert!(
            err.to_string()
                .starts_with("pcap file /nonexistent-dir/x.pcap: "),
            "{err}"
        );
        assert!(std::error::Error::source(&err).is_some());
    }
}
