//! Packet capture on demand: while asked, each core writes every frame it receives from its
//! NIC queue and every frame it sends to its own pcap file (tcpdump, tshark and Wireshark
//! read them; the format is `megatcp_nic::pcap`'s).
//!
//! [`CaptureControl`] is shared by the cores and whoever turns captures on and off (a signal
//! handler thread, a test): [`CaptureControl::start`] begins a new capture (new files),
//! [`CaptureControl::stop`] ends it (files flushed and closed). Each core looks at the
//! control when it publishes its counters (about every millisecond), so a capture starts
//! and stops within a few milliseconds. While no capture runs the data path pays one
//! `Option` test per burst; frames steered in from another core were recorded there.
//!
//! Files: `DIR/{prefix}core{N}-{K}.pcap`, `K` the capture's number (1, 2, ...) in this
//! process.

use std::fs::File;
use std::io::BufWriter;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use megatcp_nic::NicQueue;
use megatcp_nic::pcap::PcapWriter;
use megatcp_stack::Stack;

/// Turns the cores' captures on and off (see the module docs).
#[derive(Debug)]
pub struct CaptureControl {
    dir: PathBuf,
    /// Even: off; odd: on. Every start and stop adds one.
    generation: AtomicU64,
}

impl CaptureControl {
    /// Captures go to `dir` (created if missing); none runs yet.
    pub fn new(dir: impl AsRef<Path>) -> std::io::Result<Arc<Self>> {
        std::fs::create_dir_all(dir.as_ref())?;
        Ok(Arc::new(Self {
            dir: dir.as_ref().to_path_buf(),
            generation: AtomicU64::new(0),
        }))
    }

    /// The directory the files go to.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Starts a capture (new files) unless one runs; returns its number.
    pub fn start(&self) -> u64 {
        let g = self
            .generation
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(if g % 2 == 0 { g + 1 } else { g })
            })
            .unwrap_or_else(|g| g);
        g / 2 + 1
    }

    /// Stops the capture that runs, if any.
    pub fn stop(&self) {
        let _ = self
            .generation
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |g| {
                Some(if g % 2 == 1 { g + 1 } else { g })
            });
    }

    /// Whether a capture runs.
    pub fn capturing(&self) -> bool {
        self.generation.load(Ordering::Relaxed) % 2 == 1
    }

    /// The file of core `core`'s part of capture `number`.
    pub fn file(&self, prefix: &str, core: usize, number: u64) -> PathBuf {
        self.dir.join(format!("{prefix}core{core}-{number}.pcap"))
    }
}

/// One core's side: its current file, if a capture runs.
#[derive(Debug)]
pub(crate) struct Capture {
    ctrl: Arc<CaptureControl>,
    prefix: String,
    core: usize,
    seen: u64,
    writer: Option<PcapWriter<BufWriter<File>>>,
    /// Frames written, over all captures.
    pub(crate) frames: u64,
}

impl Capture {
    pub(crate) fn new(ctrl: Arc<CaptureControl>, prefix: String, core: usize) -> Self {
        Self {
            ctrl,
            prefix,
            core,
            seen: 0,
            writer: None,
            frames: 0,
        }
    }

    /// Follows the control: opens a file when a capture started, closes it when it stopped.
    pub(crate) fn follow(&mut self) {
        let g = self.ctrl.generation.load(Ordering::Relaxed);
        if g == self.seen {
            return;
        }
        self.seen = g;
        self.close();
        if g % 2 == 1 {
            let path = self.ctrl.file(&self.prefix, self.core, g / 2 + 1);
            match PcapWriter::create(&path) {
                Ok(w) => {
                    tracing::info!(core = self.core, path = %path.display(), "capture started");
                    self.writer = Some(w);
                }
                Err(e) => tracing::warn!(core = self.core, "capture not started: {e}"),
            }
        }
    }

    /// Whether frames are being recorded.
    pub(crate) fn on(&self) -> bool {
        self.writer.is_some()
    }

    /// Records one frame; a write error ends this core's capture (traffic goes on).
    pub(crate) fn record(&mut self, frame: &[u8]) {
        if let Some(w) = self.writer.as_mut() {
            if let Err(e) = w.write_frame(SystemTime::now(), frame) {
                tracing::warn!(core = self.core, "capture stopped: {e}");
                self.writer = None;
            } else {
                self.frames += 1;
            }
        }
    }

    /// Flushes and closes the current file.
    pub(crate) fn close(&mut self) {
        if let Some(mut w) = self.writer.take() {
            match w.flush() {
                Ok(()) => tracing::info!(core = self.core, frames = w.records(), "capture written"),
                Err(e) => tracing::warn!(core = self.core, "capture incomplete: {e}"),
            }
        }
    }
}

/// Sends the stack's queued frames straight into `nic`'s transmit buffers, recording each
/// one while `capture` is on. Returns the frames sent and the frames the NIC refused (they
/// stay queued in the stack).
pub(crate) fn transmit<Q: NicQueue>(
    stack: &mut Stack,
    nic: &mut Q,
    capture: Option<&mut Capture>,
) -> (usize, u64) {
    let mut refused = 0u64;
    let sent = match capture.filter(|c| c.on()) {
        None => stack.transmit_into(&mut |fill| {
            let ok = nic.tx_frame(fill).is_ok();
            refused += u64::from(!ok);
            ok
        }),
        Some(cap) => stack.transmit_into(&mut |fill| {
            let ok = nic
                .tx_frame(&mut |buf| {
                    let n = fill(buf);
                    cap.record(buf.get(..n).unwrap_or(&[]));
                    n
                })
                .is_ok();
            refused += u64::from(!ok);
            ok
        }),
    };
    (sent, refused)
}

/// Receives up to `budget` frames from `nic` into `deliver`, recording each one while
/// `capture` is on. Returns the frames received.
pub(crate) fn receive<Q: NicQueue>(
    nic: &mut Q,
    budget: usize,
    capture: Option<&mut Capture>,
    deliver: &mut impl FnMut(&[u8]),
) -> usize {
    match capture.filter(|c| c.on()) {
        None => nic.rx_burst(budget, &mut |f| deliver(f.data)),
        Some(cap) => nic.rx_burst(budget, &mut |f| {
            cap.record(f.data);
            deliver(f.data)
        }),
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.close();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_and_stop_number_the_captures() {
        let dir = std::env::temp_dir().join(format!("megatcp-capture-{}", std::process::id()));
        let c = CaptureControl::new(&dir).unwrap();
        assert!(!c.capturing());
        assert_eq!(c.start(), 1);
        assert_eq!(c.start(), 1);
        assert!(c.capturing());
        c.stop();
        c.stop();
        assert!(!c.capturing());
        assert_eq!(c.start(), 2);
        assert_eq!(c.file("x-", 3, 2), dir.join("x-core3-2.pcap"));
        let mut cap = Capture::new(c.clone(), String::new(), 0);
        cap.follow();
        assert!(cap.on());
        cap.record(&[0u8; 60]);
        c.stop();
        cap.follow();
        assert!(!cap.on());
        let bytes = std::fs::read(c.file("", 0, 2)).unwrap();
        assert_eq!(bytes.len(), 24 + 16 + 60);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
