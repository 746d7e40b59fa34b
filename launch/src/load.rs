//! What the apps' load generators share: slot cookies, the per-core split of a load, and
//! the closed-loop driver of a generator's connections with its warm-up and measured
//! window.
//!
//! How to drive it: a generator keeps one slot per connection and implements [`Conns`]
//! (what to do when a slot connects, reads, ends, or fails to connect); [`drive`] opens the
//! connections, feeds the completions to it, and returns the measured window. A load that
//! runs one share per core implements [`Load`], and [`run_shares`] runs it on every core of
//! a [`Launch`] and returns the cores' reports.

use core::net::SocketAddrV4;
use std::time::{Duration, Instant};

use megatcp_channel::{Backend, Channel, Completion, Handle};

use crate::{App, CoreCtx, Failure, Launch};

/// The command of a slot's cookie: connect.
pub const CONNECT: u64 = 0;
/// The command of a slot's cookie: write.
pub const WRITE: u64 = 1;
/// The command of a slot's cookie: read.
pub const READ: u64 = 2;
/// The command of a slot's cookie: close or abort.
pub const CLOSE: u64 = 3;

/// The cookie of command `kind` (one of [`CONNECT`], [`WRITE`], [`READ`], [`CLOSE`]) for
/// `slot`'s connection.
pub fn cookie(slot: usize, kind: u64) -> u64 {
    ((slot as u64) << 4) | kind
}

/// The slot and command of a [`cookie`].
pub fn split(cookie: u64) -> (usize, u64) {
    ((cookie >> 4) as usize, cookie & 0xf)
}

/// Where a generator is: counting (after the warm-up) and stopping (no new requests).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Phase {
    /// Inside the measured window: answers count.
    pub measuring: bool,
    /// The run is over or failing: issue no new requests or connections.
    pub stopping: bool,
}

/// A closed-loop generator's connections, one per slot, driven by [`drive`].
pub trait Conns {
    /// The phase, which [`drive`] moves on.
    fn phase(&mut self) -> &mut Phase;

    /// Whether the warm-up may begin (e.g. every connection open and the keys stored).
    fn ready(&self) -> bool {
        true
    }

    /// `slot`'s connection is open as `handle` (a read is already queued on it).
    fn connected<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, handle: Handle);

    /// Bytes arrived on `slot`'s connection.
    fn read<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize, data: &[u8]);

    /// The slot holding `handle`, if any.
    fn slot_of(&self, handle: Handle) -> Option<usize>;

    /// `slot`'s connection ended under it (the server closed it, `eof`, or it was reset;
    /// an end of stream was already answered with a close).
    fn ended<B: Backend>(&mut self, ch: &mut Channel<B>, slot: usize);

    /// A connection of `slot` failed to open (it is opened again unless too many failed).
    fn connect_failed(&mut self, slot: usize);

    /// Closes (or aborts) every connection still open, at the end of the run.
    fn close_all<B: Backend>(&mut self, ch: &mut Channel<B>);
}

/// Failed connects after which a generator gives up: ten per connection, plus some.
fn connect_errors_allowed(connections: usize) -> u64 {
    10 * connections as u64 + 1000
}

/// Runs `conns` (`connections` slots) against `target`: opens every connection, lets the
/// warm-up pass once the generator is [`Conns::ready`], then measures for `duration`.
/// Returns the seconds measured (0 when the run stopped before measuring). Stops early when
/// the backend is asked to stop, and gives up a minute after the run should have ended.
pub fn drive<B: Backend, C: Conns>(
    ch: &mut Channel<B>,
    conns: &mut C,
    target: SocketAddrV4,
    connections: usize,
    warmup: Duration,
    duration: Duration,
) -> f64 {
    for s in 0..connections {
        ch.connect(target, cookie(s, CONNECT));
    }
    let mut ready_at: Option<Instant> = None;
    let mut measure_start = Instant::now();
    let mut seconds = 0.0;
    let mut connect_errors = 0u64;
    let give_up = Instant::now() + duration + warmup + Duration::from_secs(60);
    loop {
        let now = Instant::now();
        if ch.is_stopping() || now > give_up {
            break;
        }
        if ready_at.is_none() && conns.ready() {
            ready_at = Some(now);
        }
        if let Some(r) = ready_at {
            let phase = conns.phase();
            if !phase.measuring && now.duration_since(r) >= warmup {
                phase.measuring = true;
                measure_start = now;
            }
            if phase.measuring && now.duration_since(measure_start) >= duration {
                seconds = now.duration_since(measure_start).as_secs_f64();
                phase.stopping = true;
                break;
            }
        }
        let mut batch = ch.dispatch(Some(Duration::from_millis(5)));
        for comp in batch.drain(..) {
            match comp {
                Completion::Connected { handle, cookie } => {
                    let (s, _) = split(cookie);
                    ch.read(handle, self::cookie(s, READ));
                    conns.connected(ch, s, handle);
                }
                Completion::Read { data, cookie, .. } => conns.read(ch, split(cookie).0, &data),
                Completion::Eof { handle, .. } | Completion::Reset { handle } => {
                    if let Some(s) = conns.slot_of(handle) {
                        if let Completion::Eof { .. } = comp {
                            ch.close(handle, cookie(s, CLOSE));
                        }
                        conns.ended(ch, s);
                    }
                }
                Completion::Error { cookie, .. } if split(cookie).1 == CONNECT => {
                    conns.connect_failed(split(cookie).0);
                    connect_errors += 1;
                    if connect_errors > connect_errors_allowed(connections) {
                        conns.phase().stopping = true;
                    } else {
                        std::thread::sleep(Duration::from_millis(1));
                        ch.connect(target, cookie);
                    }
                }
                _ => {}
            }
        }
        ch.recycle(batch);
        if conns.phase().stopping {
            break;
        }
    }
    if seconds == 0.0 && conns.phase().measuring {
        seconds = measure_start.elapsed().as_secs_f64();
    }
    conns.close_all(ch);
    let _ = ch.dispatch(Some(Duration::from_millis(10)));
    seconds
}

/// What one core's share of a load reports; the cores' reports add up into one
/// ([`Report::merge`]).
pub trait Report: Clone + Send {
    /// Adds another core's counts (the measured window becomes the longer of the two).
    fn add(&mut self, other: &Self);

    /// Derives the rates and percentiles from the counts.
    fn finish(&mut self);

    /// The reports of several cores added up, rates and percentiles derived; `None`
    /// without any report.
    fn merge(reports: &[Self]) -> Option<Self> {
        let (first, rest) = reports.split_first()?;
        let mut r = first.clone();
        for o in rest {
            r.add(o);
        }
        r.finish();
        Some(r)
    }
}

/// A load that runs one share on each core.
pub trait Load: Sync {
    /// What one core's share reports.
    type Report: Report;

    /// Runs core `core`'s share, of `cores` in all, on `ch`.
    fn run_share<B: Backend>(&self, ch: &mut Channel<B>, cores: usize, core: usize)
    -> Self::Report;
}

/// Runs `load` on every core of `launch` (each its share), and returns the [`Report::merge`] of the
/// reports of the cores that finished; with `verbose`, each core's counters are printed.
pub fn run_shares<L: Load>(
    launch: Launch<'_>,
    load: &L,
    verbose: bool,
) -> Result<L::Report, Failure> {
    struct Shares<'a, L> {
        load: &'a L,
        cores: usize,
    }
    impl<L: Load> App for Shares<'_, L> {
        type Output = L::Report;

        fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> L::Report {
            self.load.run_share(ch, self.cores, ctx.index)
        }
    }
    let cores = launch.cores();
    let outcomes = launch.run(&Shares { load, cores })?;
    if verbose {
        for c in &outcomes {
            eprintln!("{}", c.report);
        }
    }
    let reports: Vec<L::Report> = outcomes.into_iter().filter_map(|c| c.output).collect();
    L::Report::merge(&reports).ok_or_else(|| Failure::Runtime("no core produced a report".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cookies_round_trip() {
        assert_eq!(split(cookie(12345, READ)), (12345, READ));
        assert_eq!(split(cookie(0, CLOSE)), (0, CLOSE));
    }
}
