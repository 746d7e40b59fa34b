//! `megatcp-stat`: looks into running megatcp processes through the view each keeps in
//! shared memory (`/dev/shm/megatcp-PID.json`, see `megatcp_launch::ops::shm`), as F-Stack's
//! `ff_top` and `ff_netstat` do for theirs.
//!
//! ```text
//! megatcp-stat                       the running megatcp processes
//! megatcp-stat top [PID]             per-core rates, refreshed like top (q or Ctrl-C quits)
//! megatcp-stat conns [PID]           its connections, like ss
//! megatcp-stat pcap start|stop [PID] capture on demand (a server started with --pcap DIR)
//! megatcp-stat show [PID]            the raw view (JSON)
//! ```
//!
//! PID may be left out when one megatcp process runs.

#![forbid(unsafe_code)]

use std::io::{IsTerminal, Write};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::{Parser, Subcommand};
use megatcp_launch::Failure;
use megatcp_launch::ops::shm::{self, View};

#[derive(Parser)]
#[command(
    name = "megatcp-stat",
    about = "Per-core counters and connections of running megatcp processes (shared memory)"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

#[derive(Subcommand)]
enum Cmd {
    /// Per-core rates (frames, connections, drops, retransmits, busy), refreshed like top.
    Top {
        /// The process (default: the only one running).
        pid: Option<u32>,
        /// Refresh interval.
        #[arg(long, default_value = "1s", value_parser = megatcp_launch::duration::parse)]
        interval: Duration,
        /// Stop after this many screens (default: until interrupted).
        #[arg(long)]
        count: Option<u64>,
    },
    /// The connections of each core, like ss.
    Conns {
        /// The process (default: the only one running).
        pid: Option<u32>,
    },
    /// Start or stop a packet capture (the server runs with --pcap DIR).
    Pcap {
        /// `start` or `stop`.
        #[arg(value_parser = ["start", "stop"])]
        action: String,
        /// The process (default: the only one running).
        pid: Option<u32>,
    },
    /// The raw view, JSON.
    Show {
        /// The process (default: the only one running).
        pid: Option<u32>,
    },
}

fn pick(pid: Option<u32>) -> Result<u32, Failure> {
    if let Some(p) = pid {
        return Ok(p);
    }
    match shm::running().as_slice() {
        [one] => Ok(*one),
        [] => Err(Failure::Runtime("no megatcp process is running".into())),
        many => Err(Failure::Usage(format!(
            "several megatcp processes run ({}): give a PID",
            many.iter()
                .map(u32::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ))),
    }
}

fn read(pid: u32) -> Result<View, Failure> {
    shm::read(pid).map_err(|e| {
        Failure::Runtime(format!(
            "process {pid}: no megatcp view ({}): {e}",
            shm::view_path(pid).display()
        ))
    })
}

fn list() -> Result<(), Failure> {
    println!(
        "{:>8}  {:<24} {:<8} {:>5} {:>10}",
        "PID", "PROGRAM", "BACKEND", "CORES", "UPTIME"
    );
    for pid in shm::running() {
        if let Ok(v) = shm::read(pid) {
            println!(
                "{:>8}  {:<24} {:<8} {:>5} {:>9.0}s",
                v.pid,
                v.program,
                v.backend,
                v.cores.len(),
                v.uptime
            );
        }
    }
    Ok(())
}

/// One screen: per-core rates between two views.
fn screen(before: &View, now: &View) -> String {
    let secs = (now.time - before.time).max(1e-9);
    let mut s = format!(
        "megatcp-stat: pid {} {} ({}), up {:.0}s\n{:<10} {:>10} {:>10} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>6}\n",
        now.pid,
        now.program,
        now.backend,
        now.uptime,
        "core",
        "rx/s",
        "tx/s",
        "acc/s",
        "open/s",
        "close/s",
        "flows",
        "drop/s",
        "retx/s",
        "busy"
    );
    let mut total = [0f64; 7];
    for (i, c) in now.cores.iter().enumerate() {
        let name = if c.group.is_empty() {
            c.core.to_string()
        } else {
            format!("{}/{}", c.group, c.core)
        };
        if !c.bypass {
            s += &format!("{name:<10} (no stack counters: kernel backend or --no-counters)\n");
            continue;
        }
        let d = |f: &str| now.value(i, f).saturating_sub(before.value(i, f)) as f64;
        let busy_all = d("busy_ns") + d("idle_ns");
        let busy = if busy_all > 0.0 {
            format!("{:.1}%", 100.0 * d("busy_ns") / busy_all)
        } else {
            "-".into()
        };
        let row = [
            d("rx_frames") / secs,
            d("tx_frames") / secs,
            d("conns_accepted") / secs,
            d("conns_opened") / secs,
            (d("conns_closed") + d("conns_reset")) / secs,
            d("drops") / secs,
            d("retransmits") / secs,
        ];
        for (t, r) in total.iter_mut().zip(row) {
            *t += r;
        }
        s += &format!(
            "{name:<10} {:>10.0} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>8.0} {:>8.0} {:>6}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            now.value(i, "flows"),
            row[5],
            row[6],
            busy
        );
    }
    s += &format!(
        "{:<10} {:>10.0} {:>10.0} {:>8.0} {:>8.0} {:>8.0} {:>8} {:>8.0} {:>8.0}\n",
        "all",
        total[0],
        total[1],
        total[2],
        total[3],
        total[4],
        (0..now.cores.len())
            .map(|i| now.value(i, "flows"))
            .sum::<u64>(),
        total[5],
        total[6]
    );
    s
}

fn top(pid: u32, every: Duration, count: Option<u64>) -> Result<(), Failure> {
    let tty = std::io::stdout().is_terminal();
    let mut before = read(pid)?;
    let mut shown = 0;
    while count.is_none_or(|c| shown < c) {
        let wake = Instant::now() + every;
        std::thread::sleep(wake.saturating_duration_since(Instant::now()));
        let now = match shm::read(pid) {
            Ok(v) => v,
            Err(_) => {
                println!("process {pid} ended");
                return Ok(());
            }
        };
        if now.time <= before.time {
            continue;
        }
        let mut out = std::io::stdout().lock();
        if tty {
            let _ = write!(out, "\x1b[H\x1b[2J");
        }
        let _ = writeln!(out, "{}", screen(&before, &now));
        let _ = out.flush();
        before = now;
        shown += 1;
    }
    Ok(())
}

fn conns(pid: u32) -> Result<(), Failure> {
    let list = shm::request_connections(pid, Duration::from_secs(5))
        .map_err(|e| Failure::Runtime(format!("process {pid}: {e}")))?;
    println!(
        "{:<12} {:>8} {:>8} {:<22} {:<22} CORE",
        "State", "Recv-Q", "Send-Q", "Local Address:Port", "Peer Address:Port"
    );
    for c in &list {
        let core = if c.group.is_empty() {
            c.core.to_string()
        } else {
            format!("{}/{}", c.group, c.core)
        };
        println!(
            "{:<12} {:>8} {:>8} {:<22} {:<22} {core}",
            c.state, c.recv_queue, c.send_queue, c.local, c.remote
        );
    }
    eprintln!("{} connections", list.len());
    Ok(())
}

fn pcap(pid: u32, action: &str) -> Result<(), Failure> {
    read(pid)?;
    let sig = if action == "start" {
        rustix::process::Signal::USR1
    } else {
        rustix::process::Signal::USR2
    };
    let p = rustix::process::Pid::from_raw(pid as i32)
        .ok_or_else(|| Failure::Usage(format!("bad pid {pid}")))?;
    rustix::process::kill_process(p, sig)
        .map_err(|e| Failure::Runtime(format!("process {pid}: {e}")))?;
    println!("asked process {pid} to {action} capturing (its --pcap directory)");
    Ok(())
}

fn main() -> ExitCode {
    let (cli, _) = megatcp_launch::parse_args::<Cli>();
    megatcp_launch::logging::init("warn");
    let result = match cli.cmd {
        None => list(),
        Some(Cmd::Top {
            pid,
            interval,
            count,
        }) => pick(pid).and_then(|p| top(p, interval, count)),
        Some(Cmd::Conns { pid }) => pick(pid).and_then(conns),
        Some(Cmd::Pcap { action, pid }) => pick(pid).and_then(|p| pcap(p, &action)),
        Some(Cmd::Show { pid }) => pick(pid).and_then(read).map(|v| {
            println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default());
        }),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("megatcp-stat: {}", e.message());
            ExitCode::from(e.code())
        }
    }
}
