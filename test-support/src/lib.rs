//! What megatcp's integration tests share (a dev-dependency only): free loopback ports that
//! no other test of the binary gets, the veth testbed (`scripts/testbed`) with its lock,
//! child processes that never outlive a failing test, log files, network namespaces of a
//! test's own and tcpdump captures in them ([`netns`]), finding completions in what a
//! channel returned, and for timing tests: whether a sample ran on an idle core
//! ([`IdleCheck`]) of a machine that woke its sleepers on time ([`machine_on_time`]), and a
//! timing test that runs without the other tests of its binary ([`alone`]).
//!
//! The testbed is shared with other people on the machine: a test that uses it calls
//! [`testbed::hold_lock`] first, which runs the test again under
//! `flock /run/megatcp-testbed.lock` unless an ancestor process already holds it.
#![forbid(unsafe_code)]
#![allow(clippy::unwrap_used)]

pub mod netns;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::process::{Child, Command, ExitStatus};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

/// The repository's root directory.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// The binary `name` built next to `bin` (a `CARGO_BIN_EXE_*` path): `cargo test
/// --workspace` builds every binary of the workspace there, as `scripts/test` does.
pub fn sibling_bin(bin: &str, name: &str) -> PathBuf {
    let p = std::path::Path::new(bin).with_file_name(name);
    assert!(
        p.is_file(),
        "{} missing: build the workspace (cargo test --workspace --release)",
        p.display()
    );
    p
}

/// `tshark -n -r FILE ARGS...`'s standard output; panics with tshark's error when it fails.
pub fn tshark(file: &std::path::Path, args: &[&str]) -> String {
    let out = Command::new("tshark")
        .args(["-n", "-r"])
        .arg(file)
        .args(args)
        .output()
        .expect("tshark (scripts/install-deps installs it)");
    assert!(
        out.status.success(),
        "tshark {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Runs `cmd` to its end and returns its output; panics with its standard error when it
/// failed.
pub fn output_ok(cmd: &mut Command) -> std::process::Output {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?}: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Whether the process runs as root.
pub fn is_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// How long this thread has waited so far, runnable, for a CPU that other threads held (the
/// kernel's run-queue delay, `/proc/thread-self/schedstat`); `None` where the kernel does
/// not report it. Timing tests take it before and after a measurement to tell the code's
/// delay from the machine's load: a sample during which the thread waited for a CPU was not
/// taken on an idle core.
pub fn runqueue_wait() -> Option<Duration> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    let ns = s.split_whitespace().nth(1)?.parse().ok()?;
    Some(Duration::from_nanos(ns))
}

/// One test binary's timing test against its other tests. The harness runs a binary's tests
/// in parallel, and their servers and spinning engines would load the very cores a timer
/// test measures on: a test that measures timing holds [`alone`], every other test of that
/// binary [`beside_others`]. (Each test binary is a process with its own lock; cargo runs
/// the binaries one after another.)
static TIMING: RwLock<()> = RwLock::new(());

/// Held by a test that measures timing: no other test of this binary runs meanwhile.
pub fn alone() -> RwLockWriteGuard<'static, ()> {
    TIMING.write().unwrap_or_else(PoisonError::into_inner)
}

/// Held by every other test of a binary that has a timing test ([`alone`]).
pub fn beside_others() -> RwLockReadGuard<'static, ()> {
    TIMING.read().unwrap_or_else(PoisonError::into_inner)
}

/// A mark of this thread's run-queue delay ([`runqueue_wait`]), to tell afterwards whether
/// a measurement ran on an idle core.
#[derive(Debug, Clone, Copy)]
pub struct IdleCheck(Option<Duration>);

impl IdleCheck {
    /// Marks now (and starts the stall witnesses of [`machine_on_time`], once per process).
    pub fn start() -> Self {
        witness::start();
        Self(runqueue_wait())
    }

    /// Whether this thread waited for a CPU (held by others) at most `slack` since
    /// [`start`](Self::start); true where the kernel does not tell.
    pub fn was_idle(&self, slack: Duration) -> bool {
        match (self.0, runqueue_wait()) {
            (Some(before), Some(after)) => after.saturating_sub(before) <= slack,
            _ => true,
        }
    }
}

/// Whether the machine woke its sleeping threads on time since `since`: every CPU's stall
/// witness woke at most `slack` late (true before [`IdleCheck::start`] started them).
///
/// A thread's own run-queue delay ([`IdleCheck`]) does not show the machine's stalls: on
/// this VM a plain 250 us sleep wakes 1.3-1.5 ms late at the 99th percentile and up to 8 ms
/// late at worst, with nothing else running (the host takes the idle virtual CPU away). A
/// timer test asks this for the stretch from its deadline to the moment the timer fired:
/// if other sleepers on every CPU woke on time meanwhile and the timer did not, the
/// lateness is the code's.
pub fn machine_on_time(since: Instant, slack: Duration) -> bool {
    witness::worst_since(since) <= slack
}

/// One thread per CPU, pinned to it, that only sleeps ([`PERIOD`] at a time) and notes when
/// it wakes late (see [`machine_on_time`]).
mod witness {
    use std::collections::VecDeque;
    use std::sync::{Mutex, Once, PoisonError};
    use std::time::{Duration, Instant};

    /// How long a witness sleeps at a time.
    const PERIOD: Duration = Duration::from_micros(250);
    /// Lateness below this is not noted.
    const NOTED: Duration = Duration::from_micros(200);
    /// Late wake-ups kept (when, how late), newest last.
    const KEPT: usize = 4096;

    static STARTED: Once = Once::new();
    static LATE: Mutex<VecDeque<(Instant, Duration)>> = Mutex::new(VecDeque::new());

    /// Starts the witnesses (once per process; they run until the process ends). A witness
    /// that cannot start or be pinned is left out.
    pub(crate) fn start() {
        STARTED.call_once(|| {
            let cpus = std::thread::available_parallelism().map_or(1, usize::from);
            for cpu in 0..cpus {
                let _ = std::thread::Builder::new()
                    .name(format!("stall-witness-{cpu}"))
                    .spawn(move || {
                        let mut set = rustix::thread::CpuSet::new();
                        set.set(cpu);
                        if rustix::thread::sched_setaffinity(None, &set).is_ok() {
                            watch();
                        }
                    });
            }
        });
    }

    fn watch() -> ! {
        loop {
            let t0 = Instant::now();
            std::thread::sleep(PERIOD);
            let woke = Instant::now();
            let late = woke.saturating_duration_since(t0).saturating_sub(PERIOD);
            if late > NOTED {
                let mut q = LATE.lock().unwrap_or_else(PoisonError::into_inner);
                if q.len() == KEPT {
                    q.pop_front();
                }
                q.push_back((woke, late));
            }
        }
    }

    /// The worst lateness of the witnesses' wake-ups since `at` (zero if none was late).
    /// Every kept one is looked at: two witnesses push in nearly, not strictly, time order.
    pub(crate) fn worst_since(at: Instant) -> Duration {
        let q = LATE.lock().unwrap_or_else(PoisonError::into_inner);
        q.iter()
            .filter(|(woke, _)| *woke >= at)
            .map(|(_, late)| *late)
            .max()
            .unwrap_or_default()
    }
}

/// A free port below the kernel's ephemeral range (32768..), never the same twice in one
/// test binary: servers listen with `SO_REUSEPORT`, so two servers given the same port
/// would silently share it, and a port from the ephemeral range can be taken by any
/// client socket on the machine meanwhile. Binaries start at different ports (by pid).
///
/// The probe binds without listening, with `SO_REUSEADDR` and `SO_REUSEPORT`: a child that
/// another test thread forks at that moment inherits the probe until its `exec`, and a
/// listening probe would answer (then reset) connections meant for the server.
pub fn free_port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let _ = NEXT.compare_exchange(
        0,
        20_000 + (std::process::id() % 500) as u16 * 20,
        Ordering::Relaxed,
        Ordering::Relaxed,
    );
    loop {
        let p = NEXT.fetch_add(1, Ordering::Relaxed);
        assert!(p < 32_000, "no free port left");
        let probe = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)
            .and_then(|s| {
                s.set_reuse_address(true)?;
                s.set_reuse_port(true)?;
                s.bind(&SocketAddr::from((Ipv4Addr::UNSPECIFIED, p)).into())
            });
        if probe.is_ok() {
            return p;
        }
    }
}

/// A child process, killed and reaped when dropped (a test that fails half-way leaves
/// nothing running).
#[derive(Debug)]
pub struct Proc(Option<Child>);

impl Proc {
    /// Takes charge of `child`.
    pub fn new(child: Child) -> Self {
        Self(Some(child))
    }

    /// Its process id.
    pub fn id(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Whether it still runs.
    pub fn alive(&mut self) -> bool {
        self.0
            .as_mut()
            .is_some_and(|c| c.try_wait().ok().flatten().is_none())
    }

    /// Sends `signal` (`-TERM`, `-KILL`, ...) and waits for the exit, at most 10 s (then
    /// panics after killing it).
    pub fn signal(mut self, signal: &str) -> ExitStatus {
        let mut c = self.0.take().unwrap();
        Command::new("kill")
            .args([signal, &c.id().to_string()])
            .status()
            .unwrap();
        reap(&mut c, signal)
    }

    /// SIGTERM, then the exit status (at most 10 s).
    pub fn terminate(self) -> ExitStatus {
        self.signal("-TERM")
    }

    /// Sends `signal` to its children rather than to it (for a wrapper such as
    /// `unshare --fork`, which does not pass signals on) and waits for its exit, at most
    /// 10 s (then panics after killing it).
    pub fn signal_children(mut self, signal: &str) -> ExitStatus {
        let mut c = self.0.take().unwrap();
        let pid = c.id();
        let kids =
            std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children")).unwrap_or_default();
        for k in kids.split_whitespace() {
            Command::new("kill").args([signal, k]).status().unwrap();
        }
        reap(&mut c, signal)
    }
}

/// Waits for `c` to exit after `signal`, at most 10 s (then kills it and panics).
fn reap(c: &mut Child, signal: &str) -> ExitStatus {
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(s) = c.try_wait().unwrap() {
            return s;
        }
        if Instant::now() > end {
            let _ = c.kill();
            let _ = c.wait();
            panic!("process {} did not stop within 10 s of {signal}", c.id());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        if let Some(mut c) = self.0.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A log file in the temporary directory (a child's stderr), removed when dropped.
#[derive(Debug)]
pub struct Log(PathBuf);

impl Log {
    /// `megatcp-NAME-PID.log`.
    pub fn new(name: &str) -> Log {
        Log(std::env::temp_dir().join(format!("megatcp-{name}-{}.log", std::process::id())))
    }

    /// A fresh (truncated) file to hand a child as its stdout or stderr.
    pub fn stdio(&self) -> std::process::Stdio {
        std::process::Stdio::from(std::fs::File::create(&self.0).unwrap())
    }

    /// What was written so far.
    pub fn text(&self) -> String {
        std::fs::read_to_string(&self.0).unwrap_or_default()
    }

    /// Waits until the log holds `needle`; panics with the log after `limit`.
    pub fn wait_for(&self, needle: &str, limit: Duration) {
        let end = Instant::now() + limit;
        while !self.text().contains(needle) {
            assert!(
                Instant::now() < end,
                "no {needle:?} within {limit:?}: {}",
                self.text()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// The veth testbed between the namespaces `megatcp-srv` and `megatcp-cli`.
pub mod testbed {
    use std::process::Command;
    use std::time::{Duration, Instant};

    /// The flags that put a megatcp program on the client side of the testbed over AF_XDP
    /// (its own address on `mtcp-cli`, beside the kernel's).
    pub const CLIENT_AFXDP: [&str; 6] = [
        "--backend",
        "afxdp",
        "--iface",
        "mtcp-cli",
        "--ip",
        "10.77.0.20/24",
    ];

    /// The lock every user of the testbed holds.
    pub const LOCK: &str = "/run/megatcp-testbed.lock";

    /// Runs `scripts/testbed ARGS`; panics with its error output when it fails.
    pub fn script(args: &[&str]) {
        let out = Command::new(super::repo().join("scripts/testbed"))
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "testbed {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// The testbed, brought up fresh; taken down when dropped, however the test ends.
    #[derive(Debug)]
    pub struct Testbed(());

    impl Testbed {
        /// Takes the testbed down (whatever a killed run left) and brings it up.
        pub fn up() -> Self {
            Self::up_with(&[])
        }

        /// The same, with options of `scripts/testbed up` (e.g. `--queues 2`).
        pub fn up_with(options: &[&str]) -> Self {
            script(&["down"]);
            let mut args = vec!["up"];
            args.extend_from_slice(options);
            script(&args);
            Self(())
        }
    }

    /// For a test named `test` that needs the testbed: the testbed, fresh, for as long as the
    /// value lives, under the lock ([`hold_lock`]); `None` (the test returns) when not root
    /// (said on stderr: skipped) or when the test ran under the lock in a child process.
    pub fn fresh(test: &str) -> Option<Testbed> {
        fresh_with(test, &[])
    }

    /// [`fresh`], brought up with options of `scripts/testbed up` (e.g. `--queues 2`).
    pub fn fresh_with(test: &str, options: &[&str]) -> Option<Testbed> {
        if !super::is_root() {
            eprintln!("note: not root: {test} needs network namespaces; skipped");
            return None;
        }
        if !hold_lock(test) {
            return None;
        }
        Some(Testbed::up_with(options))
    }

    impl Drop for Testbed {
        fn drop(&mut self) {
            script(&["down"]);
        }
    }

    /// Runs `args` (a program and its arguments) in the client namespace, `megatcp-cli`.
    pub fn in_client(args: &[&str]) -> std::process::Output {
        Command::new("ip")
            .args(["netns", "exec", "megatcp-cli"])
            .args(args)
            .output()
            .unwrap()
    }

    /// Runs `args` (a load generator with `--json`) in the client namespace: its JSON
    /// report, or why there is none (it failed: with its report).
    pub fn report_in_client(args: &[&str]) -> Result<serde_json::Value, String> {
        let out = in_client(args);
        let report: serde_json::Value = serde_json::from_slice(&out.stdout)
            .map_err(|e| format!("{e}: {}", String::from_utf8_lossy(&out.stderr)))?;
        if !out.status.success() {
            return Err(format!("load failed: {report}"));
        }
        Ok(report)
    }

    /// `megatcp-echo load` (`echo`, the binary) over the kernel path (epoll, one core) in the
    /// client namespace against `target` (`ADDR:PORT`), with `extra` flags: its JSON report.
    pub fn kernel_echo_load(
        echo: &str,
        target: &str,
        extra: &[&str],
    ) -> Result<serde_json::Value, String> {
        let mut args = vec![echo, "load", "--json", "--backend", "epoll", "--cores", "1"];
        args.extend_from_slice(&["--connect", target]);
        args.extend_from_slice(extra);
        report_in_client(&args)
    }

    /// Waits up to 20 s until the echo server at `target` serves a kernel client in the
    /// client namespace (one connection of one transaction: also fine with a server that
    /// closes first); panics saying that `what` did not come up.
    pub fn wait_until_echo_serves(echo: &str, target: &str, what: &str) {
        let probe = [
            "--connections",
            "1",
            "--txns-per-conn",
            "1",
            "--duration",
            "200ms",
            "--warmup",
            "0s",
        ];
        let deadline = Instant::now() + Duration::from_secs(20);
        while kernel_echo_load(echo, target, &probe).is_err() {
            assert!(Instant::now() < deadline, "{what} did not come up");
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Echo load flags: 1,000 connections of one transaction each, sizes 1 B to 64 KiB, for
    /// `duration`, no warm-up.
    pub fn short_random_sizes(duration: &str) -> [&str; 10] {
        [
            "--connections",
            "1000",
            "--msg-size",
            "1..65536",
            "--txns-per-conn",
            "1",
            "--duration",
            duration,
            "--warmup",
            "0s",
        ]
    }

    /// Checks the report of a [`short_random_sizes`] run: every byte verified, and at
    /// least 1,000 transactions.
    pub fn assert_short_random_sizes(r: &serde_json::Value) {
        assert_eq!(r["errors"]["verify"], 0, "{r}");
        assert!(r["transactions"].as_u64().unwrap_or(0) >= 1000, "{r}");
    }

    /// Whether an ancestor of this process is `flock` on [`LOCK`].
    fn under_lock() -> bool {
        let mut pid = std::process::id();
        for _ in 0..64 {
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some(ppid) = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1))
                .and_then(|p| p.parse::<u32>().ok())
            else {
                return false;
            };
            if ppid <= 1 {
                return false;
            }
            let cmd = std::fs::read(format!("/proc/{ppid}/cmdline")).unwrap_or_default();
            let cmd = String::from_utf8_lossy(&cmd);
            if cmd.contains("flock") && cmd.contains(LOCK) {
                return true;
            }
            pid = ppid;
        }
        false
    }

    /// Makes the calling test (named `test`, run by the test binary) hold the testbed's
    /// lock: `true` when it does (go on), `false` when this call ran the test again under
    /// `flock` (and asserted it passed): then the caller returns.
    pub fn hold_lock(test: &str) -> bool {
        if under_lock() {
            return true;
        }
        let exe = std::env::current_exe().unwrap();
        let status = Command::new("flock")
            .args(["-w", "3600", LOCK])
            .arg(exe)
            .args(["--exact", test, "--nocapture", "--test-threads", "1"])
            .status()
            .unwrap();
        assert!(status.success(), "{test} under {LOCK} failed");
        false
    }
}

/// Finding completions among those a channel returned.
pub mod completions {
    use megatcp_channel::{ChannelError, Completion, Cookie, Handle};

    /// The error of the command with `cookie`, if it failed.
    pub fn error_of(v: &[Completion], cookie: Cookie) -> Option<ChannelError> {
        v.iter().find_map(|x| match x {
            Completion::Error { cookie: k, error } if *k == cookie => Some(error.clone()),
            _ => None,
        })
    }

    /// The first listener that started listening.
    pub fn listening(v: &[Completion]) -> Option<Handle> {
        v.iter().find_map(|x| match x {
            Completion::Listening { handle, .. } => Some(*handle),
            _ => None,
        })
    }

    /// The first connection accepted.
    pub fn accepted(v: &[Completion]) -> Option<Handle> {
        v.iter().find_map(|x| match x {
            Completion::Accepted { handle, .. } => Some(*handle),
            _ => None,
        })
    }

    /// The first connection opened.
    pub fn connected(v: &[Completion]) -> Option<Handle> {
        v.iter().find_map(|x| match x {
            Completion::Connected { handle, .. } => Some(*handle),
            _ => None,
        })
    }
}
