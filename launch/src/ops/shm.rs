//! The view `megatcp-stat` reads: a running process's counters in shared memory.
//!
//! Every megatcp server (unless `--no-shm`) keeps `/dev/shm/megatcp-PID.json` (tmpfs:
//! memory, no disk) refreshed twice a second by a thread of its own, from the cores'
//! monitors: a [`View`]. The file is replaced whole (written aside, then renamed), so a
//! reader never sees half of one; it is removed when the process ends.
//!
//! The connection list is made only when asked: a reader creates
//! `/dev/shm/megatcp-PID.conns-request`; the process's thread removes it, asks every core
//! for its list (made at the core's next publication, off its per-packet path) and writes
//! `/dev/shm/megatcp-PID.conns.json` (a list of [`ConnView`]).

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use megatcp_engine::monitor::{Field, drop_reasons};
use serde::{Deserialize, Serialize};

use super::stats::sample;
use super::{Group, Identity};

/// How often the view is refreshed.
pub const REFRESH: Duration = Duration::from_millis(500);

/// Where the files live: `/dev/shm`, or the temporary directory where there is none.
pub fn dir() -> PathBuf {
    let shm = Path::new("/dev/shm");
    if shm.is_dir() {
        shm.to_path_buf()
    } else {
        std::env::temp_dir()
    }
}

/// The view of process `pid`.
pub fn view_path(pid: u32) -> PathBuf {
    dir().join(format!("megatcp-{pid}.json"))
}

/// The file a reader creates to ask process `pid` for its connections.
pub fn request_path(pid: u32) -> PathBuf {
    dir().join(format!("megatcp-{pid}.conns-request"))
}

/// The connection list of process `pid`.
pub fn conns_path(pid: u32) -> PathBuf {
    dir().join(format!("megatcp-{pid}.conns.json"))
}

/// A process's counters at one moment.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct View {
    /// Its process id.
    pub pid: u32,
    /// Program and command.
    pub program: String,
    /// Backend.
    pub backend: String,
    /// Seconds since it started.
    pub uptime: f64,
    /// When this view was written (seconds since the Unix epoch).
    pub time: f64,
    /// The names of `CoreView::values`, in order.
    pub fields: Vec<String>,
    /// The names of `CoreView::drops`, in order.
    pub drop_reasons: Vec<String>,
    /// Every core.
    pub cores: Vec<CoreView>,
}

/// One core in a [`View`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct CoreView {
    /// The runtime's label (`""`, `server`, `client`).
    pub group: String,
    /// Core index in its runtime.
    pub core: usize,
    /// Its CPU.
    pub cpu: usize,
    /// Whether it runs megatcp's stack (else: no counters).
    pub bypass: bool,
    /// Values, in `View::fields` order.
    pub values: Vec<u64>,
    /// Drops by reason, in `View::drop_reasons` order.
    pub drops: Vec<u64>,
}

impl View {
    /// The value of field `name` of core `i` (0 when unknown).
    pub fn value(&self, i: usize, name: &str) -> u64 {
        let Some(at) = self.fields.iter().position(|f| f == name) else {
            return 0;
        };
        self.cores
            .get(i)
            .and_then(|c| c.values.get(at))
            .copied()
            .unwrap_or(0)
    }
}

/// One connection in the list.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConnView {
    /// The runtime's label.
    pub group: String,
    /// Core index.
    pub core: usize,
    /// Local address.
    pub local: String,
    /// Peer address.
    pub remote: String,
    /// TCP state.
    pub state: String,
    /// Bytes received, unread.
    pub recv_queue: usize,
    /// Bytes sent, unacknowledged (or unsent).
    pub send_queue: usize,
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

fn view(groups: &[Group], who: &Identity, started: Instant) -> View {
    View {
        pid: std::process::id(),
        program: who.name.clone(),
        backend: who.backend.clone(),
        uptime: started.elapsed().as_secs_f64(),
        time: unix_now(),
        fields: Field::ALL.iter().map(|f| f.name().to_string()).collect(),
        drop_reasons: drop_reasons().iter().map(|r| r.to_string()).collect(),
        cores: sample(groups)
            .into_iter()
            .map(|c| CoreView {
                group: c.group,
                core: c.core,
                cpu: c.cpu,
                bypass: c.bypass,
                values: c.snap.values.to_vec(),
                drops: c.snap.drops.to_vec(),
            })
            .collect(),
    }
}

/// Writes `value` as JSON to `path` at once (aside, then renamed).
fn replace<T: Serialize>(path: &Path, value: &T) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(
        &tmp,
        serde_json::to_vec(value).map_err(std::io::Error::other)?,
    )?;
    std::fs::rename(&tmp, path)
}

/// Gathers every core's connections (each core makes its list at its next publication;
/// a core that does not answer within a second is left out).
fn connections(groups: &[Group]) -> Vec<ConnView> {
    for g in groups {
        for m in g.monitors.iter().filter(|m| m.is_bypass()) {
            m.request_connections();
        }
    }
    let mut out = Vec::new();
    for g in groups {
        for (core, m) in g.monitors.iter().enumerate() {
            if !m.is_bypass() {
                continue;
            }
            let end = Instant::now() + Duration::from_secs(1);
            let list = loop {
                if let Some(l) = m.take_connections() {
                    break l;
                }
                if Instant::now() > end {
                    break Vec::new();
                }
                std::thread::sleep(Duration::from_millis(2));
            };
            out.extend(list.into_iter().map(|c| ConnView {
                group: g.label.clone(),
                core,
                local: c.local.to_string(),
                remote: c.remote.to_string(),
                state: c.state,
                recv_queue: c.recv_queue,
                send_queue: c.send_queue,
            }));
        }
    }
    out
}

/// The publishing thread.
pub(crate) struct Publisher {
    thread: JoinHandle<()>,
    pid: u32,
}

impl Publisher {
    /// Starts it; `None` (with a warning) when the view cannot be written.
    pub(crate) fn start(
        groups: Vec<Group>,
        who: Identity,
        started: Instant,
        stop: Arc<AtomicBool>,
    ) -> Option<Self> {
        let pid = std::process::id();
        let path = view_path(pid);
        if let Err(e) = replace(&path, &view(&groups, &who, started)) {
            tracing::warn!("no view for megatcp-stat: {}: {e}", path.display());
            return None;
        }
        let thread = std::thread::spawn(move || {
            let mut next = Instant::now() + REFRESH;
            while !stop.load(Ordering::Relaxed) {
                std::thread::sleep(Duration::from_millis(50));
                if request_path(pid).exists() {
                    let _ = std::fs::remove_file(request_path(pid));
                    if let Err(e) = replace(&conns_path(pid), &connections(&groups)) {
                        tracing::warn!("connection list not written: {e}");
                    }
                }
                if Instant::now() >= next {
                    next += REFRESH;
                    if let Err(e) = replace(&path, &view(&groups, &who, started)) {
                        tracing::warn!("view for megatcp-stat not written: {e}");
                    }
                }
            }
        });
        Some(Self { thread, pid })
    }

    /// Stops the thread and removes the files.
    pub(crate) fn finish(self) {
        let _ = self.thread.join();
        for p in [
            view_path(self.pid),
            conns_path(self.pid),
            request_path(self.pid),
        ] {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// Reads process `pid`'s view.
pub fn read(pid: u32) -> std::io::Result<View> {
    let bytes = std::fs::read(view_path(pid))?;
    serde_json::from_slice(&bytes).map_err(std::io::Error::other)
}

/// The processes with a view whose process still runs.
pub fn running() -> Vec<u32> {
    let mut pids: Vec<u32> = std::fs::read_dir(dir())
        .map(|d| {
            d.filter_map(|e| {
                let name = e.ok()?.file_name().into_string().ok()?;
                name.strip_prefix("megatcp-")?
                    .strip_suffix(".json")?
                    .parse()
                    .ok()
            })
            .filter(|pid| Path::new(&format!("/proc/{pid}")).exists())
            .collect()
        })
        .unwrap_or_default();
    pids.sort_unstable();
    pids
}

/// Asks process `pid` for its connections and waits for them (at most `timeout`).
pub fn request_connections(pid: u32, timeout: Duration) -> std::io::Result<Vec<ConnView>> {
    let out = conns_path(pid);
    let _ = std::fs::remove_file(&out);
    std::fs::write(request_path(pid), b"")?;
    let end = Instant::now() + timeout;
    loop {
        if let Ok(bytes) = std::fs::read(&out) {
            return serde_json::from_slice(&bytes).map_err(std::io::Error::other);
        }
        if Instant::now() > end {
            let _ = std::fs::remove_file(request_path(pid));
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("process {pid} did not list its connections"),
            ));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
