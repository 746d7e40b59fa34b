//! Network namespaces of a test's own (not the shared testbed), and tcpdump captures in a
//! namespace.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// A network namespace created for one test (`mtcp-TAG-PID`), deleted when dropped (with
/// the interfaces in it, e.g. a DPDK tap device).
#[derive(Debug)]
pub struct Netns(String);

impl Netns {
    /// Creates namespace `mtcp-TAG-PID` afresh (one a killed run left is deleted first),
    /// with its loopback up.
    pub fn new(tag: &str) -> Netns {
        let name = format!("mtcp-{tag}-{}", std::process::id());
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        let ns = Netns(name);
        ns.run(&["ip", "netns", "add", &ns.0]);
        ns.exec(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    /// The namespace's name.
    pub fn name(&self) -> &str {
        &self.0
    }

    /// `program` to be run in the namespace (`ip netns exec NAME program`).
    pub fn command(&self, program: &str) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0, program]);
        c
    }

    /// Runs `args` in the namespace; panics with its error output when it fails.
    pub fn exec(&self, args: &[&str]) -> Output {
        let mut c = self.command(args[0]);
        c.args(&args[1..]);
        checked(c, args)
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut c = Command::new(args[0]);
        c.args(&args[1..]);
        checked(c, args)
    }
}

fn checked(mut c: Command, args: &[&str]) -> Output {
    let out = c.output().unwrap();
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// tcpdump writing `filter`'s packets on `iface` in namespace `ns` to `file`, until dropped
/// (then the file is complete).
#[derive(Debug)]
pub struct Capture(Child);

impl Capture {
    /// Starts the capture of each frame's first 200 bytes; returns once tcpdump listens.
    pub fn start(ns: &str, iface: &str, file: &Path, filter: &str) -> Capture {
        Self::start_snap(ns, iface, file, filter, 200)
    }

    /// [`Capture::start`] keeping `snaplen` bytes of each frame (whole frames for checking
    /// checksums).
    pub fn start_snap(ns: &str, iface: &str, file: &Path, filter: &str, snaplen: u32) -> Capture {
        let mut child = Command::new("ip")
            .args([
                "netns",
                "exec",
                ns,
                "tcpdump",
                "-i",
                iface,
                "-U",
                "--immediate-mode",
            ])
            .args(["-s", &snaplen.to_string(), "-B", "8192", "-w"])
            .arg(file)
            .args(filter.split(' ').filter(|w| !w.is_empty()))
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("tcpdump (scripts/install-deps installs it)");
        // tcpdump says "listening on" once the capture is open.
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let mut line = String::new();
        while !line.contains("listening on") {
            line.clear();
            assert!(err.read_line(&mut line).unwrap() > 0, "tcpdump ended");
        }
        Capture(child)
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        std::thread::sleep(Duration::from_millis(300));
        let _ = Command::new("kill")
            .args(["-INT", &self.0.id().to_string()])
            .output();
        let _ = self.0.wait();
    }
}
