//! The runtime: one pinned thread per core, each owning one NIC queue, one stack and one
//! channel, running the application's closure to completion; graceful stop on SIGINT or
//! SIGTERM; per-core counters readable while it runs and printed on exit.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use megatcp_channel::{Backend, Channel};
use megatcp_nic::NicQueue;
use megatcp_stack::{Counters, StackConfig};

use crate::capture::CaptureControl;
use crate::monitor::CoreMonitor;

use crate::bypass::Bypass;
use crate::idle::{IdlePolicy, LoopStats};

/// Why the runtime could not run.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// No core given.
    #[error("no cores given")]
    NoCores,
    /// A core's NIC queue could not be opened.
    #[error("core {core}: cannot open NIC queue: {reason}")]
    Nic {
        /// Core number.
        core: usize,
        /// Why.
        reason: String,
    },
    /// A core's backend could not be created.
    #[error("core {core}: cannot create the backend: {reason}")]
    Backend {
        /// Core number.
        core: usize,
        /// Why.
        reason: String,
    },
    /// A core's stack could not be made (configuration refused, no secret).
    #[error("core {core}: cannot make the stack: {source}")]
    Stack {
        /// Core number.
        core: usize,
        /// Why.
        source: crate::bypass::BypassError,
    },
    /// Installing the signal handlers failed.
    #[error("cannot install signal handlers: {0}")]
    Signal(std::io::Error),
    /// A core's thread could not be pinned to its CPU (no such CPU, or not allowed).
    #[error(
        "core {core}: cannot pin the thread to CPU {cpu} (no such CPU, or not in this process's affinity set)"
    )]
    Pin {
        /// Core number.
        core: usize,
        /// The CPU asked for.
        cpu: usize,
    },
    /// A core's thread panicked.
    #[error("core {0}: the application panicked")]
    Panicked(usize),
}

/// What one core did, returned when the runtime ends.
#[derive(Debug, Clone)]
pub struct CoreReport {
    /// Core number.
    pub core: usize,
    /// The stack's counters.
    pub stack: Counters,
    /// The engine loop's counters.
    pub engine: LoopStats,
    /// The NIC queue's counters.
    pub nic: megatcp_nic::QueueStats,
    /// The channel's counters.
    pub channel: megatcp_channel::ChannelStats,
    /// Software flow steering between cores.
    pub steer: crate::SteerStats,
}

impl std::fmt::Display for CoreReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let s = &self.stack;
        write!(
            f,
            "core {}: rx {} frames / {} B, tx {} frames / {} B, drops {}, conns accepted {} opened {} \
             closed {} reset {} failed {}, retransmits {} (tail probes {}), time-wait {}, \
             syn cookies {}/{}, challenge acks {}, tx batches {}, nic tx-full {}, \
             dispatches {}, flushes {}, {}, steered out {} in {} dropped {}",
            self.core,
            s.rx_frames,
            s.rx_bytes,
            s.tx_frames,
            s.tx_bytes,
            s.drops.total(),
            s.conns_accepted,
            s.conns_opened,
            s.conns_closed,
            s.conns_reset,
            s.conns_connect_failed,
            s.tcp_retransmits,
            s.tail_probes,
            s.tcp_time_wait_entered,
            s.syn_cookies_accepted,
            s.syn_cookies_sent,
            s.challenge_acks_sent,
            self.engine.tx_batches,
            self.engine.tx_ring_full,
            self.channel.dispatches,
            self.channel.flushes,
            crate::busy::describe(&self.engine),
            self.steer.steered_out,
            self.steer.steered_in,
            self.steer.dropped,
        )
    }
}

/// What the application closure is told about its core.
#[derive(Debug, Clone, Copy)]
pub struct CoreCtx {
    /// Position of this core in the runtime's core list (0-based).
    pub index: usize,
    /// The CPU the thread is pinned to.
    pub cpu: usize,
    /// Number of cores in the runtime.
    pub cores: usize,
}

/// Builds and runs a runtime. See the module docs.
pub struct Runtime {
    cpus: Vec<usize>,
    idle: IdlePolicy,
    grace: Duration,
    stop: Arc<AtomicBool>,
    monitors: Arc<Vec<CoreMonitor>>,
    pin: bool,
    signals: bool,
    capture: Option<(Arc<CaptureControl>, String)>,
    publish: bool,
}

impl Runtime {
    /// A runtime on these CPUs (one thread each).
    pub fn new(cpus: &[usize]) -> Self {
        Self {
            cpus: cpus.to_vec(),
            idle: IdlePolicy::default(),
            grace: Duration::from_secs(1),
            stop: Arc::new(AtomicBool::new(false)),
            monitors: Arc::new(cpus.iter().map(|_| CoreMonitor::default()).collect()),
            pin: true,
            signals: true,
            capture: None,
            publish: true,
        }
    }

    /// Idle policy of every core.
    pub fn idle(mut self, idle: IdlePolicy) -> Self {
        self.idle = idle;
        self
    }

    /// How long the graceful shutdown may take.
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }

    /// Whether to pin threads to their CPUs (default true).
    pub fn pin(mut self, pin: bool) -> Self {
        self.pin = pin;
        self
    }

    /// Whether SIGINT/SIGTERM stop the runtime (default true; tests running several
    /// runtimes in one process turn it off and use [`Runtime::stop_flag`]).
    pub fn handle_signals(mut self, on: bool) -> Self {
        self.signals = on;
        self
    }

    /// Packet capture on demand for bypass backends: each core records its traffic while
    /// `ctrl` says so, in files whose names start with `prefix` (see [`CaptureControl`]).
    pub fn capture(mut self, ctrl: Arc<CaptureControl>, prefix: &str) -> Self {
        self.capture = Some((ctrl, prefix.to_string()));
        self
    }

    /// Whether bypass cores publish their counters to the monitors (default true; off only
    /// to measure what publishing costs: the monitors then stay at zero).
    pub fn publish(mut self, on: bool) -> Self {
        self.publish = on;
        self
    }

    /// The flag that asks every core to stop (set by SIGINT/SIGTERM, or by hand).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        self.stop.clone()
    }

    /// Per-core live counters.
    pub fn monitors(&self) -> Arc<Vec<CoreMonitor>> {
        self.monitors.clone()
    }

    /// Runs `app` on every core over the bypass backend until it returns, then closes what is
    /// left open and returns each core's report. `nic(i)` opens core `i`'s NIC queue and
    /// `stack(i)` gives its stack configuration; both run on the core's own thread.
    pub fn run<Q, N, S, A>(self, nic: N, stack: S, app: A) -> Result<Vec<CoreReport>, EngineError>
    where
        Q: NicQueue,
        N: Fn(usize) -> Result<Q, String> + Sync,
        S: Fn(usize) -> StackConfig + Sync,
        A: Fn(CoreCtx, &mut Channel<Bypass<Q>>) + Sync,
    {
        let (idle, grace) = (self.idle, self.grace);
        let monitors = self.monitors.clone();
        let links = (self.cpus.len() > 1).then(|| crate::steer::links(self.cpus.len()));
        let capture = self.capture.clone();
        let publish = self.publish;
        self.run_with(
            |index, stop| {
                let q = nic(index).map_err(|reason| EngineError::Nic {
                    core: index,
                    reason,
                })?;
                let mut b = Bypass::new(q, stack(index), stop, idle).map_err(|source| {
                    EngineError::Stack {
                        core: index,
                        source,
                    }
                })?;
                if publish {
                    b.set_monitor(monitors.clone(), index);
                }
                if let Some((ctrl, prefix)) = &capture {
                    b.set_capture(ctrl.clone(), prefix, index);
                }
                if let Some(links) = &links {
                    b.set_steering(links, index);
                }
                Ok(b)
            },
            app,
            |index, mut ch| {
                ch.flush();
                let channel = ch.stats();
                let mut b = ch.into_backend();
                b.shutdown_all(grace);
                b.publish();
                CoreReport {
                    core: index,
                    stack: b.stack().counters(),
                    engine: b.loop_stats(),
                    nic: b.nic().stats(),
                    channel,
                    steer: b.steer_stats(),
                }
            },
        )
    }

    /// Runs `app` on every core over any backend: `make(i, stop)` builds core `i`'s backend
    /// on the core's own thread (`stop` is the runtime's stop flag), and `finish(i, channel)`
    /// turns the channel into the core's result once `app` has returned.
    pub fn run_with<B, M, A, F, R>(self, make: M, app: A, finish: F) -> Result<Vec<R>, EngineError>
    where
        B: Backend,
        M: Fn(usize, Arc<AtomicBool>) -> Result<B, EngineError> + Sync,
        A: Fn(CoreCtx, &mut Channel<B>) + Sync,
        F: Fn(usize, Channel<B>) -> R + Sync,
        R: Send,
    {
        if self.cpus.is_empty() {
            return Err(EngineError::NoCores);
        }
        if self.signals {
            for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
                signal_hook::flag::register(sig, self.stop.clone()).map_err(EngineError::Signal)?;
            }
        }
        let cores = self.cpus.len();
        let pin = self.pin;
        std::thread::scope(|scope| {
            let handles: Vec<_> = self
                .cpus
                .iter()
                .enumerate()
                .map(|(index, &cpu)| {
                    let (make, app, finish) = (&make, &app, &finish);
                    let stop = self.stop.clone();
                    std::thread::Builder::new()
                        .name(format!("megatcp-core{index}"))
                        .spawn_scoped(scope, move || {
                            if pin
                                && !core_affinity::set_for_current(core_affinity::CoreId {
                                    id: cpu,
                                })
                            {
                                return Err(EngineError::Pin { core: index, cpu });
                            }
                            tracing::debug!(core = index, cpu, pinned = pin, "core started");
                            let mut ch = Channel::new(make(index, stop)?);
                            app(CoreCtx { index, cpu, cores }, &mut ch);
                            Ok(finish(index, ch))
                        })
                        .map_err(|_| EngineError::Panicked(index))
                })
                .collect();
            handles
                .into_iter()
                .enumerate()
                .map(|(i, h)| h?.join().unwrap_or(Err(EngineError::Panicked(i))))
                .collect()
        })
    }
}
