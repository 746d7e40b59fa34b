//! What a trial cost the two sides' CPUs: each process's CPU time and each CPU's busy share
//! ([`CpuUse`], and their medians [`CpuStats`]), and the server's CPU time for its work
//! ([`ServerWork`], measured as [`Basis`] says), which gives the report's server µs per
//! transaction.

use serde::Serialize;

use crate::report::{Stat, pct, stat};

/// CPU use of both sides over a trial's measured window (1.0 = one core).
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CpuUse {
    /// CPU time of the server's and of the client's process.
    pub(crate) server_cpu: f64,
    pub(crate) client_cpu: f64,
    /// Busy share of the server's and the client's CPU (softirq included).
    pub(crate) server_core: f64,
    pub(crate) client_core: f64,
}

impl Default for CpuUse {
    /// Not measured.
    fn default() -> Self {
        Self {
            server_cpu: f64::NAN,
            client_cpu: f64::NAN,
            server_core: f64::NAN,
            client_core: f64::NAN,
        }
    }
}

impl CpuUse {
    /// The names of [`CpuUse::csv`]'s columns.
    pub(crate) const CSV_HEADER: &'static str = "server_cpu,client_cpu,server_core,client_core";

    /// Its four CSV columns.
    pub(crate) fn csv(&self) -> String {
        format!(
            "{:.3},{:.3},{:.3},{:.3}",
            self.server_cpu, self.client_cpu, self.server_core, self.client_core
        )
    }
}

/// The medians of the [`CpuUse`] of a cell's successful trials.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct CpuStats {
    pub(crate) server_cpu: Option<Stat>,
    pub(crate) client_cpu: Option<Stat>,
    pub(crate) server_core: Option<Stat>,
    pub(crate) client_core: Option<Stat>,
}

impl CpuStats {
    /// The medians of `cpus`.
    pub(crate) fn of(cpus: &[CpuUse]) -> Self {
        let get = |f: fn(&CpuUse) -> f64| stat(cpus.iter().map(f).collect());
        Self {
            server_cpu: get(|c| c.server_cpu),
            client_cpu: get(|c| c.client_cpu),
            server_core: get(|c| c.server_core),
            client_core: get(|c| c.client_core),
        }
    }

    /// Which side ran out of CPU: the side whose CPU was 90 % busy or more (process time,
    /// or the whole CPU's busy time, softirq included, whichever is higher).
    pub(crate) fn saturated(&self) -> &'static str {
        let busy = |v: [Option<Stat>; 2]| v.iter().flatten().any(|s| s.median >= 0.9);
        match (
            busy([self.server_cpu, self.server_core]),
            busy([self.client_cpu, self.client_core]),
        ) {
            (true, true) => "both",
            (true, false) => "server",
            (false, true) => "client",
            (false, false) => "neither",
        }
    }

    /// "cpu S/C core S/C" (percent of one core; `-` where not measured).
    pub(crate) fn text(&self) -> String {
        format!(
            "cpu {}/{} core {}/{}",
            pct(self.server_cpu),
            pct(self.client_cpu),
            pct(self.server_core),
            pct(self.client_core)
        )
    }
}

/// How a server's CPU time for its work was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Basis {
    /// A bypass server's engine busy time (turns that did work), from its published
    /// counters: its idle polling is not counted.
    Busy,
    /// A kernel server's process CPU time (user + system) plus the softirq time of its CPU.
    CpuSoftirq,
    /// Not measured.
    None,
}

impl Basis {
    /// Its name in the CSV.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Basis::Busy => "busy",
            Basis::CpuSoftirq => "cpu-softirq",
            Basis::None => "none",
        }
    }
}

/// The server's CPU use for its work over a window (1.0 = one core), and how it was measured.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ServerWork {
    pub(crate) cores: f64,
    pub(crate) basis: Basis,
}

impl ServerWork {
    /// Not measured.
    pub(crate) const NONE: ServerWork = ServerWork {
        cores: f64::NAN,
        basis: Basis::None,
    };

    /// Microseconds of server CPU per transaction at `txns_per_sec`.
    pub(crate) fn us_per_txn(&self, txns_per_sec: f64) -> f64 {
        if txns_per_sec > 0.0 {
            self.cores * 1e6 / txns_per_sec
        } else {
            f64::NAN
        }
    }
}
