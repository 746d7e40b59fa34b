//! Live per-core stats on standard error (`--stats-interval`): every interval, each core's
//! rates since the last line (frames, connections, drops by reason, retransmits) and its
//! busy fraction, as a table or as one JSON object per line; and a final line when the
//! runtimes have returned, with `"final": true` and the totals of the exit report.

use std::io::Write;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use megatcp_engine::Snapshot;
use megatcp_engine::monitor::{Field, Kind, drop_reasons};
use serde_json::{Map, Value, json};

use super::{Group, StatsFormat};

/// One core's values at one moment, with where it belongs.
#[derive(Clone, Debug)]
pub struct CoreSample {
    /// The runtime's label.
    pub group: String,
    /// The core's index in its runtime.
    pub core: usize,
    /// Its CPU.
    pub cpu: usize,
    /// Whether it runs megatcp's stack (kernel backends publish no counters).
    pub bypass: bool,
    /// Its values.
    pub snap: Snapshot,
}

/// Every core of `groups` now.
pub fn sample(groups: &[Group]) -> Vec<CoreSample> {
    groups
        .iter()
        .flat_map(|g| {
            g.monitors.iter().enumerate().map(|(core, m)| CoreSample {
                group: g.label.clone(),
                core,
                cpu: g.cpus.get(core).copied().unwrap_or(core),
                bypass: m.is_bypass(),
                snap: m.snapshot(),
            })
        })
        .collect()
}

/// One JSON object: per core, the values, the per-second rates of the counters since
/// `before` (taken `secs` earlier), the drops by reason (non-zero ones), the busy fraction.
pub fn json_line(
    now: &[CoreSample],
    before: Option<&[CoreSample]>,
    secs: f64,
    t: f64,
    last: bool,
) -> Value {
    let reasons = drop_reasons();
    let cores: Vec<Value> = now
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let prev = before.and_then(|b| b.get(i)).map(|p| &p.snap);
            let mut values = Map::new();
            let mut rates = Map::new();
            for &f in Field::ALL {
                let v = c.snap.get(f);
                values.insert(f.name().into(), v.into());
                if f.kind() == Kind::Counter && secs > 0.0 {
                    let d = v.saturating_sub(prev.map_or(0, |p| p.get(f)));
                    rates.insert(f.name().into(), json!(d as f64 / secs));
                }
            }
            let mut drops = Map::new();
            let mut drop_rates = Map::new();
            for (r, name) in reasons.iter().enumerate() {
                let v = c.snap.drops[r];
                if v > 0 {
                    drops.insert((*name).into(), v.into());
                    let d = v.saturating_sub(prev.map_or(0, |p| p.drops[r]));
                    if secs > 0.0 {
                        drop_rates.insert((*name).into(), json!(d as f64 / secs));
                    }
                }
            }
            json!({
                "group": c.group,
                "core": c.core,
                "cpu": c.cpu,
                "bypass": c.bypass,
                "busy": c.snap.busy_fraction(prev),
                "values": values,
                "rates": rates,
                "drops": drops,
                "drop_rates": drop_rates,
            })
        })
        .collect();
    json!({ "t": t, "interval": secs, "final": last, "cores": cores })
}

/// A table: one row per core, rates per second since `before`.
pub fn table(now: &[CoreSample], before: Option<&[CoreSample]>, secs: f64, t: f64) -> String {
    let what = if before.is_none() {
        " (mean rates since the start)"
    } else {
        ""
    };
    let mut s = format!(
        "t={t:.1}s{what}\n{:<10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}  drops by reason\n",
        "core", "rx/s", "tx/s", "acc/s", "open/s", "close/s", "flows", "drop/s", "retx/s", "busy"
    );
    let reasons = drop_reasons();
    for (i, c) in now.iter().enumerate() {
        let name = if c.group.is_empty() {
            format!("{}", c.core)
        } else {
            format!("{}/{}", c.group, c.core)
        };
        if !c.bypass {
            s += &format!("{name:<10} (no stack counters: kernel backend or --no-counters)\n");
            continue;
        }
        let prev = before.and_then(|b| b.get(i)).map(|p| &p.snap);
        let rate = |f: Field| {
            let d = c.snap.get(f).saturating_sub(prev.map_or(0, |p| p.get(f)));
            if secs > 0.0 { d as f64 / secs } else { 0.0 }
        };
        let busy = c
            .snap
            .busy_fraction(prev)
            .map_or("-".to_string(), |b| format!("{:.1}%", b * 100.0));
        let mut why = Vec::new();
        for (r, reason) in reasons.iter().enumerate() {
            let d = c.snap.drops[r].saturating_sub(prev.map_or(0, |p| p.drops[r]));
            if d > 0 {
                why.push(format!("{reason}={d}"));
            }
        }
        s += &format!(
            "{name:<10} {:>10.0} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>8.0} {:>8.0} {:>6}  {}\n",
            rate(Field::rx_frames),
            rate(Field::tx_frames),
            rate(Field::conns_accepted),
            rate(Field::conns_opened),
            rate(Field::conns_closed) + rate(Field::conns_reset),
            c.snap.get(Field::flows),
            rate(Field::drops),
            rate(Field::retransmits),
            busy,
            why.join(" ")
        );
    }
    s
}

/// The printing thread.
pub(crate) struct Printer {
    thread: JoinHandle<()>,
    format: StatsFormat,
    started: Instant,
}

fn emit(text: &str) {
    let mut e = std::io::stderr().lock();
    let _ = e.write_all(text.as_bytes());
    let _ = e.flush();
}

fn render(
    format: StatsFormat,
    now: &[CoreSample],
    before: Option<&[CoreSample]>,
    secs: f64,
    t: f64,
    last: bool,
) -> String {
    match format {
        StatsFormat::Json => format!("{}\n", json_line(now, before, secs, t, last)),
        StatsFormat::Table => table(now, before, secs, t),
    }
}

impl Printer {
    pub(crate) fn start(
        every: Duration,
        format: StatsFormat,
        groups: Vec<Group>,
        started: Instant,
        stop: Arc<AtomicBool>,
    ) -> Self {
        let thread = std::thread::spawn(move || {
            let mut before: Option<(Instant, Vec<CoreSample>)> = None;
            let mut next = Instant::now() + every;
            while !stop.load(Ordering::Relaxed) {
                let left = next.saturating_duration_since(Instant::now());
                if !left.is_zero() {
                    std::thread::sleep(left.min(Duration::from_millis(50)));
                    continue;
                }
                next += every;
                let now = sample(&groups);
                let at = Instant::now();
                let secs = before
                    .as_ref()
                    .map_or(at - started, |(t, _)| at - *t)
                    .as_secs_f64();
                let prev = before.as_ref().map(|(_, s)| s.as_slice());
                let t = (at - started).as_secs_f64();
                emit(&render(format, &now, prev, secs, t, false));
                before = Some((at, now));
            }
        });
        Self {
            thread,
            format,
            started,
        }
    }

    /// Stops the thread and prints the totals since the start (the final line).
    pub(crate) fn finish(self, groups: &[Group]) {
        let _ = self.thread.join();
        let t = self.started.elapsed().as_secs_f64();
        emit(&render(self.format, &sample(groups), None, t, t, true));
    }
}
