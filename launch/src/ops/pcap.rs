//! Capture on demand (`--pcap DIR`): SIGUSR1 starts a capture, SIGUSR2 stops it (`kill
//! -USR1 PID`, or `megatcp-stat pcap PID start`). A thread of its own waits for the signals
//! and flips the [`CaptureControl`]; the cores follow within a few milliseconds.

use std::sync::Arc;
use std::thread::JoinHandle;

use megatcp_engine::CaptureControl;
use signal_hook::consts::{SIGUSR1, SIGUSR2};
use signal_hook::iterator::Handle;

use crate::LaunchError;

/// The signal thread.
pub(crate) struct Signals {
    handle: Handle,
    thread: JoinHandle<()>,
}

impl Signals {
    /// Installs the handlers; with `now`, a capture starts at once.
    pub(crate) fn install(ctrl: Arc<CaptureControl>, now: bool) -> Result<Self, LaunchError> {
        let mut signals = signal_hook::iterator::Signals::new([SIGUSR1, SIGUSR2]).map_err(|e| {
            LaunchError::Usage(format!("--pcap: cannot install the signal handlers: {e}"))
        })?;
        let handle = signals.handle();
        if now {
            start(&ctrl);
        }
        tracing::info!(
            dir = %ctrl.dir().display(),
            "packet capture ready: SIGUSR1 starts, SIGUSR2 stops (pid {})",
            std::process::id()
        );
        let thread = std::thread::spawn(move || {
            for sig in signals.forever() {
                match sig {
                    SIGUSR1 => start(&ctrl),
                    SIGUSR2 => {
                        if ctrl.capturing() {
                            tracing::info!("capture stopped");
                        }
                        ctrl.stop();
                    }
                    _ => {}
                }
            }
        });
        Ok(Self { handle, thread })
    }

    /// Ends the thread.
    pub(crate) fn close(self) {
        self.handle.close();
        let _ = self.thread.join();
    }
}

fn start(ctrl: &CaptureControl) {
    let n = ctrl.start();
    tracing::info!(
        "capture {n} started: {}",
        ctrl.file("", 0, n)
            .with_file_name(format!("*core*-{n}.pcap"))
            .display()
    );
}
