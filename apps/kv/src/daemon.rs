//! memcached's process flags: `-d` (run in the background), `-P` (pid file), `-u` (run as
//! another user).
//!
//! `-d` without `fork` (which safe Rust does not offer): the command starts itself again
//! with the same arguments as a child marked by an environment variable, and waits until
//! the child says it is ready (every core listening) on a pipe, then exits 0; a child that
//! fails first passes its exit status on (its error went to the terminal). The child starts
//! its own session (`setsid`) and, once ready, points its standard output and error at
//! `/dev/null`, as memcached does.
//!
//! `-u` changes the user and group of the main thread before any other thread starts, so
//! every thread of the server runs as that user (Linux keeps credentials per thread; new
//! threads take their creator's). Unlike memcached, the kernel backends' listeners are
//! opened after it (on the cores' threads): a port below 1024 then needs the capability.

use std::io::{BufRead, BufReader, Write};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use megatcp_kv::Kv;
use megatcp_launch::Failure;

/// Marks the daemon's child process.
const CHILD: &str = "MEGATCP_KV_DAEMON_CHILD";

/// The daemon, in the child process: says when it is ready.
pub(crate) struct Child;

impl Child {
    /// In the parent (the command as typed): starts the child and waits for it; never
    /// returns. In the child: starts a new session and returns.
    pub(crate) fn detach() -> Result<Child, Failure> {
        if std::env::var_os(CHILD).is_some() {
            if let Err(e) = rustix::process::setsid() {
                tracing::warn!("setsid: {e}");
            }
            return Ok(Child);
        }
        let exe = std::env::current_exe()
            .map_err(|e| Failure::Runtime(format!("-d: cannot find this program: {e}")))?;
        let mut child = Command::new(exe)
            .args(std::env::args_os().skip(1))
            .env(CHILD, "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .spawn()
            .map_err(|e| Failure::Runtime(format!("-d: cannot start the daemon: {e}")))?;
        let mut line = String::new();
        if let Some(out) = child.stdout.take() {
            let _ = BufReader::new(out).read_line(&mut line);
        }
        if line.trim() == "ready" {
            std::process::exit(0);
        }
        let code = child.wait().ok().and_then(|s| s.code()).unwrap_or(1);
        std::process::exit(if code == 0 { 1 } else { code });
    }

    /// Tells the parent, then lets go of the terminal.
    fn ready(&self) {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "ready");
        let _ = out.flush();
        drop(out);
        match std::fs::OpenOptions::new().write(true).open("/dev/null") {
            Ok(null) => {
                let _ = rustix::stdio::dup2_stdout(&null);
                let _ = rustix::stdio::dup2_stderr(&null);
            }
            Err(e) => tracing::warn!("-d: /dev/null: {e}"),
        }
    }
}

/// Runs the rest of the process as `user` (from /etc/passwd), when root; memcached
/// ignores `-u` otherwise, and so do we.
pub(crate) fn become_user(user: &str) -> Result<(), Failure> {
    if !rustix::process::geteuid().is_root() {
        return Ok(());
    }
    let passwd = std::fs::read_to_string("/etc/passwd")
        .map_err(|e| Failure::Runtime(format!("can't find the user {user}: /etc/passwd: {e}")))?;
    let (uid, gid) = passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.first() == Some(&user))
        .and_then(|f| {
            Some((
                f.get(2)?.parse::<u32>().ok()?,
                f.get(3)?.parse::<u32>().ok()?,
            ))
        })
        .ok_or_else(|| Failure::Runtime(format!("can't find the user {user} to switch to")))?;
    let fail = |what: &str, e: rustix::io::Errno| {
        Failure::Runtime(format!(
            "failed to assume identity of user {user}: {what}: {e}"
        ))
    };
    // These change the calling thread only; no other thread runs yet.
    let gid = rustix::process::Gid::from_raw(gid);
    let uid = rustix::process::Uid::from_raw(uid);
    rustix::thread::set_thread_groups(&[gid]).map_err(|e| fail("setgroups", e))?;
    rustix::thread::set_thread_res_gid(gid, gid, gid).map_err(|e| fail("setgid", e))?;
    rustix::thread::set_thread_res_uid(uid, uid, uid).map_err(|e| fail("setuid", e))?;
    Ok(())
}

/// Waits (on a thread of its own) until every core listens, then writes the pid file and
/// tells the daemon's parent.
pub(crate) struct Ready {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<()>,
    pidfile: Option<PathBuf>,
}

/// Starts the watch: `cores` listeners make the server ready.
pub(crate) fn when_ready(
    kv: Arc<Kv>,
    cores: usize,
    pidfile: Option<PathBuf>,
    daemon: Option<Child>,
) -> Ready {
    let stop = Arc::new(AtomicBool::new(false));
    let (flag, file) = (stop.clone(), pidfile.clone());
    let thread = std::thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            if kv.listening.load(Ordering::Relaxed) >= cores {
                if let Some(p) = &file
                    && let Err(e) = std::fs::write(p, format!("{}\n", std::process::id()))
                {
                    tracing::error!("could not open the pid file {}: {e}", p.display());
                }
                if let Some(d) = &daemon {
                    d.ready();
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    Ready {
        stop,
        thread,
        pidfile,
    }
}

impl Ready {
    /// The server stopped: ends the watch, removes the pid file.
    pub(crate) fn finish(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.thread.join();
        if let Some(p) = self.pidfile {
            let _ = std::fs::remove_file(p);
        }
    }
}
