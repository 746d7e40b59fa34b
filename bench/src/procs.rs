//! The processes of a run: a server on the server side (the echo server here, the HTTP
//! servers through [`Server::spawn`]), a load generator or client on the client side, their
//! CPU time (from `/proc/PID/stat`), and stopping them; [`Net`]: where they run
//! (namespaces, interfaces, addresses, CPUs; the veth testbed's by default).

use std::io::Read;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use crate::cpu::{Basis, CpuUse, ServerWork};
use crate::plan::{Client, Close, Point, Variant};
use crate::roles::{EngineTime, Sample, ServerSide};

/// Server namespace and interface of the testbed (`scripts/testbed`).
pub(crate) const SRV_NS: &str = "megatcp-srv";
/// Client namespace.
pub(crate) const CLI_NS: &str = "megatcp-cli";
pub(crate) const SRV_IF: &str = "mtcp-srv";
pub(crate) const CLI_IF: &str = "mtcp-cli";
/// The kernel's address in the server namespace, and the bypass stacks' addresses.
pub(crate) const SRV_KERNEL_IP: &str = "10.77.0.1";
pub(crate) const SRV_BYPASS_IP: &str = "10.77.0.10";
pub(crate) const CLI_BYPASS_IP: &str = "10.77.0.20";
pub(crate) const PORT: u16 = 7;
/// The server's CPU and the client's.
pub(crate) const SERVER_CPU: &str = "0";
pub(crate) const CLIENT_CPU: &str = "1";

/// Where the server and the client run. The defaults are the veth testbed's
/// (`scripts/testbed`); between two machines, an empty namespace (`--server-ns ""`) runs the
/// processes in megatcp-bench's own.
#[derive(clap::Args, Debug, Clone, PartialEq, Eq)]
pub(crate) struct Net {
    /// Network namespace of the servers ("": megatcp-bench's own).
    #[arg(long, default_value = SRV_NS)]
    pub(crate) server_ns: String,
    /// Network namespace of the load generator ("": megatcp-bench's own).
    #[arg(long, default_value = CLI_NS)]
    pub(crate) client_ns: String,
    /// Interface of the bypass servers (afxdp, dpdk).
    #[arg(long, default_value = SRV_IF)]
    pub(crate) server_iface: String,
    /// Interface of the AF_XDP load generator.
    #[arg(long, default_value = CLI_IF)]
    pub(crate) client_iface: String,
    /// The kernel's address on the server side: what the kernel servers (uring, epoll)
    /// serve on.
    #[arg(long, default_value = SRV_KERNEL_IP)]
    pub(crate) server_kernel_ip: Ipv4Addr,
    /// The bypass servers' own address (not the kernel's).
    #[arg(long, default_value = SRV_BYPASS_IP)]
    pub(crate) server_ip: Ipv4Addr,
    /// The AF_XDP load generator's own address (not the kernel's).
    #[arg(long, default_value = CLI_BYPASS_IP)]
    pub(crate) client_ip: Ipv4Addr,
    /// Prefix length of the bypass addresses.
    #[arg(long, default_value_t = 24, value_parser = clap::value_parser!(u8).range(1..=32))]
    pub(crate) prefix: u8,
    /// The server's CPU.
    #[arg(long, default_value = SERVER_CPU)]
    pub(crate) server_cpu: usize,
    /// The load generator's CPU.
    #[arg(long, default_value = CLIENT_CPU)]
    pub(crate) client_cpu: usize,
}

impl Default for Net {
    /// The testbed's (the options' defaults).
    fn default() -> Self {
        #[derive(clap::Parser)]
        struct Defaults {
            #[command(flatten)]
            net: Net,
        }
        <Defaults as clap::Parser>::parse_from(["megatcp-bench"]).net
    }
}

impl Net {
    /// Whether both sides are the testbed's namespaces (which megatcp-bench brings up).
    pub(crate) fn uses_testbed(&self) -> bool {
        self.server_ns == SRV_NS || self.client_ns == CLI_NS
    }

    /// Where the server runs, for the report.
    pub(crate) fn server_place(&self) -> String {
        place(&self.server_ns, self.server_cpu)
    }

    /// Where the client runs, for the report.
    pub(crate) fn client_place(&self) -> String {
        place(&self.client_ns, self.client_cpu)
    }
}

fn place(ns: &str, cpu: usize) -> String {
    if ns.is_empty() {
        format!("CPU {cpu}")
    } else {
        format!("CPU {cpu} in namespace {ns}")
    }
}

/// `program` in network namespace `ns` (`ip netns exec`), or here when `ns` is empty.
pub(crate) fn in_ns(ns: &str, program: &Path) -> Command {
    if ns.is_empty() {
        Command::new(program)
    } else {
        let mut cmd = Command::new("ip");
        cmd.args(["netns", "exec", ns]).arg(program);
        cmd
    }
}

/// Clock ticks per second of `/proc/PID/stat` times (USER_HZ, 100 on Linux).
const TICKS: f64 = 100.0;

/// A running echo server.
pub(crate) struct Server {
    child: Child,
    log: PathBuf,
}

impl Server {
    /// Starts `variant`'s server where `net` says and waits until it serves (10 s at most).
    pub(crate) fn start(
        echo: &Path,
        variant: Variant,
        dir: &Path,
        net: &Net,
    ) -> Result<Self, String> {
        let log = dir.join(format!("server-{}.log", variant.name()));
        let file = std::fs::File::create(&log).map_err(|e| format!("{}: {e}", log.display()))?;
        let mut cmd = in_ns(&net.server_ns, echo);
        let ip = format!("{}/{}", net.server_ip, net.prefix);
        if variant == Variant::Reflect {
            cmd.args([
                "reflect",
                "serve",
                "--iface",
                &net.server_iface,
                "--ip",
                &ip,
            ])
            .args(["--cores", &net.server_cpu.to_string()]);
        } else {
            cmd.args(["serve", "--port", &PORT.to_string()])
                .args(["--cores", &net.server_cpu.to_string()])
                .args(["--backend", variant.backend()]);
        }
        match variant {
            Variant::Afxdp | Variant::AfxdpRst => {
                cmd.args(["--iface", &net.server_iface, "--ip", &ip]);
            }
            Variant::Dpdk => {
                cmd.args(["--ip", &ip]);
                cmd.arg(format!(
                    "--dpdk-args=--vdev net_af_xdp0,iface={}",
                    net.server_iface
                ));
            }
            Variant::Uring | Variant::Epoll | Variant::Reflect => {}
        }
        let mut s = Self::spawn(cmd, file, log)?;
        let ready = if variant.is_bypass() {
            // The NIC queue is open once the backend said so.
            ["AF_XDP on", "DPDK port"].as_slice()
        } else {
            ["serving"].as_slice()
        };
        let end = Instant::now() + Duration::from_secs(10);
        loop {
            if let Ok(Some(status)) = s.child.try_wait() {
                return Err(format!("server exited ({status}): {}", s.log_tail()));
            }
            let text = std::fs::read_to_string(&s.log).unwrap_or_default();
            if ready.iter().any(|r| text.contains(r)) {
                // Listening follows at once; leave the XDP program a moment to attach.
                std::thread::sleep(Duration::from_millis(500));
                return Ok(s);
            }
            if Instant::now() > end {
                s.stop();
                return Err(format!("server not ready after 10 s: {}", s.log_tail()));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Starts `cmd` with its standard error going to `file` (at `log`).
    pub(crate) fn spawn(
        mut cmd: Command,
        file: std::fs::File,
        log: PathBuf,
    ) -> Result<Self, String> {
        let child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(file)
            .spawn()
            .map_err(|e| format!("cannot start the server: {e}"))?;
        Ok(Server { child, log })
    }

    pub(crate) fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Whether it still runs.
    pub(crate) fn alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// Everything the server wrote.
    pub(crate) fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// The last lines the server wrote.
    pub(crate) fn log_tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 6)
    }

    /// SIGTERM (a clean stop: the XDP program is detached), SIGKILL after 5 s.
    pub(crate) fn stop(&mut self) {
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let end = Instant::now() + Duration::from_secs(5);
        while Instant::now() < end {
            if !self.alive() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.alive() {
            self.stop();
        }
    }
}

/// What one run of the load generator gave.
pub(crate) struct LoadRun {
    /// The load generator's JSON report.
    pub(crate) report: serde_json::Value,
    /// CPU use of both sides over the run. The CPUs' busy shares come from `/proc/stat`:
    /// everything but idle and iowait, so softirq work is counted (on a veth, the kernel's
    /// TCP receive path for one side often runs on the other side's CPU).
    pub(crate) cpu: CpuUse,
    /// The server's CPU use for its work.
    pub(crate) work: ServerWork,
}

/// The timing of one run: the measured seconds and the warm-up before them.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Window {
    pub(crate) secs: f64,
    pub(crate) warmup: f64,
}

/// Runs the load generator for `point` against `variant`'s server (on `server`'s side) for
/// the window's seconds, where `net` says.
pub(crate) fn run_load(
    echo: &Path,
    variant: Variant,
    point: &Point,
    window: &Window,
    server: &mut dyn ServerSide,
    net: &Net,
) -> Result<LoadRun, String> {
    let Window { secs, warmup } = *window;
    let target = if variant.is_bypass() {
        net.server_ip
    } else {
        net.server_kernel_ip
    };
    let mut cmd = in_ns(&net.client_ns, echo);
    if variant == Variant::Reflect {
        cmd.args([
            "reflect",
            "load",
            "--json",
            "--cores",
            &net.client_cpu.to_string(),
        ])
        .args(["--iface", &net.client_iface])
        .args(["--ip", &format!("{}/{}", net.client_ip, net.prefix)])
        .args(["--connect", &format!("{target}:{PORT}")])
        .args(["--window", &point.connections.to_string()])
        .args(["--msg-size", &point.msg_size.to_string()])
        .args(["--duration", &format!("{secs}s")])
        .args(["--warmup", &format!("{warmup}s")]);
    } else {
        load_args(&mut cmd, variant, point, window, net, target);
    }
    let run = run_client(
        &mut cmd,
        "the load generator",
        &mut || server.sample(),
        net.client_cpu,
        secs,
        warmup,
    )?;
    Ok(LoadRun {
        report: report_json(run.what, run.status, &run.stdout, &run.stderr)?,
        cpu: run.cpu,
        // The reflector spins and keeps no busy time: it is the medium, not a server.
        work: if variant == Variant::Reflect {
            ServerWork::NONE
        } else {
            run.work
        },
    })
}

/// The load generator's arguments for `point` against `variant`'s server at `target`.
fn load_args(
    cmd: &mut Command,
    variant: Variant,
    point: &Point,
    window: &Window,
    net: &Net,
    target: Ipv4Addr,
) {
    let Window { secs, warmup } = *window;
    cmd.args(["load", "--json", "--cores", &net.client_cpu.to_string()])
        .args(["--backend", point.client.name()])
        .args(["--connect", &format!("{target}:{PORT}")])
        .args(["--connections", &point.connections.to_string()])
        .args(["--msg-size", &point.msg_size.to_string()])
        .args(["--txns-per-conn", &point.txns_per_conn.to_string()])
        .args(["--duration", &format!("{secs}s")])
        .args(["--warmup", &format!("{warmup}s")]);
    if point.client == Client::Afxdp {
        cmd.args(["--iface", &net.client_iface])
            .args(["--ip", &format!("{}/{}", net.client_ip, net.prefix)]);
    }
    if variant.close(point) == Close::Rst {
        cmd.arg("--close-rst");
    }
    if let Some(rate) = point.rate {
        cmd.args(["--rate", &format!("{rate}")]);
    }
}

/// What a client process printed, and the CPU use of both sides while it measured.
pub(crate) struct ClientRun {
    /// What the client is, for errors.
    pub(crate) what: &'static str,
    pub(crate) status: ExitStatus,
    pub(crate) stdout: String,
    pub(crate) stderr: String,
    pub(crate) cpu: CpuUse,
    /// The server's CPU use for its work (see [`server_work`]).
    pub(crate) work: ServerWork,
}

/// A server process on this machine (`pid`, pinned to `cpu`), sampled now: its CPU time,
/// its CPU's, and its engine's busy time when it publishes one (a bypass server).
pub(crate) fn sample_server(pid: u32, cpu: usize) -> Option<Sample> {
    let fields = cpu_fields(cpu)?;
    Some(Sample {
        ticks: cpu_ticks(pid)?,
        core: busy_total(&fields)?,
        softirq: *fields.get(6)?,
        engine: engine_time(pid),
    })
}

/// A server process on this machine, for [`run_client`]'s sampling: its pid and CPU.
pub(crate) fn local_sampler(pid: u32, cpu: usize) -> impl FnMut() -> Option<Sample> {
    move || sample_server(pid, cpu)
}

/// The engine busy time process `pid` published last (`/dev/shm/megatcp-PID.json`), summed
/// over its bypass cores; `None` for a process with no view or no bypass core.
pub(crate) fn engine_time(pid: u32) -> Option<EngineTime> {
    let view = megatcp_launch::ops::shm::read(pid).ok()?;
    let mut t = EngineTime {
        busy_ns: 0,
        all_ns: 0,
        cores: 0,
    };
    for (i, _) in view.cores.iter().enumerate().filter(|(_, c)| c.bypass) {
        let busy = view.value(i, "busy_ns");
        t.busy_ns += busy;
        t.all_ns += busy + view.value(i, "idle_ns");
        t.cores += 1;
    }
    (t.cores > 0).then_some(t)
}

/// The server's CPU use for its work between samples `a` and `b`, `wall` seconds apart
/// (1.0 = one core). A bypass server: its engine's busy share between its two publications
/// times its cores (NaN when it published nothing new in between), but not more than its
/// process time: busy time is wall-clock time, and a core shared with softirq work or other
/// processes loses some of a busy turn's interval to them (both are upper bounds of the
/// CPU time of its busy turns). A kernel server: its process time plus its CPU's softirq
/// time, but not more than its CPU's busy share: without `CONFIG_IRQ_TIME_ACCOUNTING` a
/// softirq that runs in the server's context (its own system calls) is charged both to the
/// server's system time and to the CPU's softirq time (both are again upper bounds; the
/// process time alone is a lower bound).
pub(crate) fn server_work(a: &Sample, b: &Sample, wall: f64) -> ServerWork {
    if wall <= 0.0 {
        return ServerWork::NONE;
    }
    let ticks = |x: u64, y: u64| y.saturating_sub(x) as f64 / TICKS / wall;
    let process = ticks(a.ticks, b.ticks);
    match (a.engine, b.engine) {
        (Some(x), Some(y)) => {
            let all = y.all_ns.saturating_sub(x.all_ns);
            let busy = y.busy_ns.saturating_sub(x.busy_ns);
            ServerWork {
                cores: if all > 0 && y.cores > 0 {
                    (busy as f64 / (all as f64 / y.cores as f64)).min(process)
                } else {
                    f64::NAN
                },
                basis: Basis::Busy,
            }
        }
        _ => {
            let cpu_busy = match b.core.1.saturating_sub(a.core.1) {
                0 => f64::INFINITY,
                n => b.core.0.saturating_sub(a.core.0) as f64 / n as f64,
            };
            ServerWork {
                cores: (process + ticks(a.softirq, b.softirq)).min(cpu_busy),
                basis: Basis::CpuSoftirq,
            }
        }
    }
}

/// Runs a client `cmd` (`what` names it in errors) that measures for `secs` after `warmup`
/// seconds, sampling the server's CPU time (`server`) and the client's (its process, and
/// `own_cpu`) over that window; kills it when it overruns by 20 s.
pub(crate) fn run_client(
    cmd: &mut Command,
    what: &'static str,
    server: &mut dyn FnMut() -> Option<Sample>,
    own_cpu: usize,
    secs: f64,
    warmup: f64,
) -> Result<ClientRun, String> {
    let mut job = Job::spawn(cmd, what)?;
    // Sample both processes' CPU time from the end of the warm-up to the end of the window.
    let client_pid = job.child.id();
    let start = Instant::now();
    let limit = Duration::from_secs_f64(secs + warmup + 20.0);
    let measure_from = Duration::from_secs_f64(warmup + 0.1);
    let mut first: Option<(Instant, Sample, u64, (u64, u64))> = None;
    let mut last: Option<(Instant, Sample, u64, (u64, u64))> = None;
    loop {
        if job.done() {
            break;
        }
        if start.elapsed() > limit {
            job.kill();
            return Err(format!("{what} did not finish within {limit:?}"));
        }
        if start.elapsed() >= measure_from
            && start.elapsed() <= measure_from + Duration::from_secs_f64(secs)
            && let (Some(s), Some(c), Some(k)) =
                (server(), cpu_ticks(client_pid), core_time(own_cpu))
        {
            let sample = (Instant::now(), s, c, k);
            first.get_or_insert(sample);
            last = Some(sample);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let (status, stdout, stderr) = job.output()?;
    let (cpu, work) = match (first, last) {
        (Some((t0, s0, c0, k0)), Some((t1, s1, c1, k1))) if t1 > t0 => {
            let wall = (t1 - t0).as_secs_f64();
            let [server_core, client_core] = busy_shares(&[s0.core, k0], &[s1.core, k1]);
            let cpu = CpuUse {
                server_cpu: (s1.ticks.saturating_sub(s0.ticks)) as f64 / TICKS / wall,
                client_cpu: (c1.saturating_sub(c0)) as f64 / TICKS / wall,
                server_core,
                client_core,
            };
            (cpu, server_work(&s0, &s1, wall))
        }
        _ => (CpuUse::default(), ServerWork::NONE),
    };
    Ok(ClientRun {
        what,
        status,
        stdout,
        stderr,
        cpu,
        work,
    })
}

/// A child process whose stdout (a JSON report) and stderr are read on threads, so that a
/// chatty child never blocks.
pub(crate) struct Job {
    child: Child,
    what: &'static str,
    out: Option<std::thread::JoinHandle<String>>,
    err: Option<std::thread::JoinHandle<String>>,
}

impl Job {
    /// Starts `cmd` (`what` names it in errors).
    pub(crate) fn spawn(cmd: &mut Command, what: &'static str) -> Result<Job, String> {
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|e| format!("cannot start {what}: {e}"))?;
        let reader = |pipe: Option<Box<dyn Read + Send>>| {
            std::thread::spawn(move || {
                let mut s = String::new();
                if let Some(mut p) = pipe {
                    let _ = p.read_to_string(&mut s);
                }
                s
            })
        };
        let out = reader(
            child
                .stdout
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        let err = reader(
            child
                .stderr
                .take()
                .map(|p| Box::new(p) as Box<dyn Read + Send>),
        );
        Ok(Job {
            child,
            what,
            out: Some(out),
            err: Some(err),
        })
    }

    /// Whether it has exited.
    pub(crate) fn done(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// Kills it.
    pub(crate) fn kill(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for it (killed after `limit`) and parses its output as JSON.
    pub(crate) fn finish(mut self, limit: Duration) -> Result<serde_json::Value, String> {
        let end = Instant::now() + limit;
        while !self.done() {
            if Instant::now() > end {
                self.kill();
                return Err(format!("{} did not finish within {limit:?}", self.what));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        self.json()
    }

    /// Its report, once it has exited: the JSON on its stdout.
    fn json(&mut self) -> Result<serde_json::Value, String> {
        let (status, stdout, stderr) = self.output()?;
        report_json(self.what, status, &stdout, &stderr)
    }

    /// Its exit status, standard output and standard error, once it has exited.
    fn output(&mut self) -> Result<(ExitStatus, String, String), String> {
        let status = self.child.wait().map_err(|e| e.to_string())?;
        let text = |h: Option<std::thread::JoinHandle<String>>| {
            h.and_then(|h| h.join().ok()).unwrap_or_default()
        };
        Ok((status, text(self.out.take()), text(self.err.take())))
    }
}

/// The JSON report `what` (which exited with `status`) printed on `stdout`, or why there
/// is none.
fn report_json(
    what: &str,
    status: ExitStatus,
    stdout: &str,
    stderr: &str,
) -> Result<serde_json::Value, String> {
    if !status.success() && stdout.trim().is_empty() {
        return Err(format!("{what} failed ({status}): {}", tail(stderr, 4)));
    }
    serde_json::from_str(stdout)
        .map_err(|e| format!("bad report from {what} ({e}): {}", tail(stderr, 4)))
}

/// (busy, total) clock ticks of the server's CPU and of the client's CPU.
pub(crate) type CoreTimes = [(u64, u64); 2];

/// How busy the server's and the client's CPU were between two samples (0..1; NaN when
/// no time passed).
pub(crate) fn busy_shares(k0: &CoreTimes, k1: &CoreTimes) -> [f64; 2] {
    let busy = |i: usize| {
        let ((b0, n0), (b1, n1)) = (k0[i], k1[i]);
        match n1.saturating_sub(n0) {
            0 => f64::NAN,
            n => b1.saturating_sub(b0) as f64 / n as f64,
        }
    };
    [busy(0), busy(1)]
}

/// The testbed's server and client CPU times from `/proc/stat`.
pub(crate) fn core_times() -> Option<CoreTimes> {
    let cpu = |c: &str| c.parse().ok();
    Some([core_time(cpu(SERVER_CPU)?)?, core_time(cpu(CLIENT_CPU)?)?])
}

/// (busy, total) clock ticks of CPU `cpu` from `/proc/stat` (busy = all but idle and
/// iowait).
pub(crate) fn core_time(cpu: usize) -> Option<(u64, u64)> {
    busy_total(&cpu_fields(cpu)?)
}

/// CPU `cpu`'s line of `/proc/stat`: user nice system idle iowait irq softirq steal ...
/// (clock ticks).
fn cpu_fields(cpu: usize) -> Option<Vec<u64>> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let name = format!("cpu{cpu}");
    let line = stat
        .lines()
        .find(|l| l.split_whitespace().next() == Some(name.as_str()))?;
    line.split_whitespace()
        .skip(1)
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()
}

/// (busy, total) of a `/proc/stat` CPU line's fields (busy = all but idle and iowait).
fn busy_total(v: &[u64]) -> Option<(u64, u64)> {
    let total: u64 = v.iter().take(8).sum();
    let idle = v.get(3)? + v.get(4)?;
    Some((total.saturating_sub(idle), total))
}

/// utime + stime of a process, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its ')' are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut f = rest.split(' ');
    // Fields 3.. : state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt
    // utime stime: the 12th and 13th after ')'.
    let utime: u64 = f.nth(11)?.parse().ok()?;
    let stime: u64 = f.next()?.parse().ok()?;
    Some(utime + stime)
}

/// The last `n` non-empty lines of `text`, joined.
pub(crate) fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with("libbpf:") && !l.starts_with("libxdp:"))
        .collect();
    lines[lines.len().saturating_sub(n)..].join(" | ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_of_this_process_parse() {
        assert!(cpu_ticks(std::process::id()).is_some());
        let [(b, n), _] = core_times().expect("/proc/stat has cpu0 and cpu1");
        assert!(n > 0 && b <= n);
    }

    #[test]
    fn server_work_is_busy_time_for_bypass_and_cpu_plus_softirq_for_kernel_servers() {
        let at = |ticks, softirq, engine| Sample {
            ticks,
            core: (ticks + softirq, 1000 + ticks),
            softirq,
            engine,
        };
        let e = |busy_ns, all_ns| {
            Some(EngineTime {
                busy_ns,
                all_ns,
                cores: 1,
            })
        };
        // Kernel: 30 ticks of process time + 20 of softirq in 2 s = 0.25 of a core.
        let w = server_work(&at(100, 50, None), &at(130, 70, None), 2.0);
        assert_eq!((w.cores, w.basis), (0.25, Basis::CpuSoftirq));
        assert_eq!(w.us_per_txn(100_000.0), 2.5);
        // ... but not more than its CPU's busy share (its softirq time counted twice): 60
        // ticks of its CPU's 100 were busy, 50 process + 40 softirq ticks were counted.
        let (a, mut b) = (at(100, 50, None), at(150, 90, None));
        b.core = (a.core.0 + 60, a.core.1 + 100);
        let w = server_work(&a, &b, 1.0);
        assert!((w.cores - 0.6).abs() < 1e-9, "{w:?}");
        // Bypass: 0.4 s busy of 1 s counted (its process ran all the time).
        let w = server_work(
            &at(0, 0, e(1, 1)),
            &at(200, 0, e(400_000_001, 1_000_000_001)),
            2.0,
        );
        assert_eq!((w.cores, w.basis), (0.4, Basis::Busy));
        // ... but never more than its process time (0.3 of a core here).
        let w = server_work(
            &at(0, 0, e(1, 1)),
            &at(60, 0, e(400_000_001, 1_000_000_001)),
            2.0,
        );
        assert_eq!((w.cores, w.basis), (0.3, Basis::Busy));
        // No new publication in the window: not measured (not its CPU time).
        let w = server_work(&at(0, 0, e(5, 9)), &at(200, 0, e(5, 9)), 2.0);
        assert!(w.cores.is_nan() && w.basis == Basis::Busy);
        assert!(ServerWork::NONE.us_per_txn(0.0).is_nan());
    }

    #[test]
    fn this_process_has_no_engine_view() {
        assert_eq!(engine_time(std::process::id()), None);
        let s = sample_server(std::process::id(), 0).expect("a sample of this process");
        assert!(s.core.1 > 0 && s.engine.is_none());
    }

    #[test]
    fn tail_skips_library_noise() {
        let t = "a\nlibbpf: x\n\nb\nc\n";
        assert_eq!(tail(t, 2), "b | c");
    }
}
