//! Server and load generator in one process, on separate cores, joined by the in-memory
//! wire NIC (`megatcp_launch::pair`): the whole system without root or a network.

use std::net::SocketAddrV4;

use megatcp_launch::load::Report as _;
use megatcp_launch::pair::SERVER_IP;
pub use megatcp_launch::pair::{FaultConfig, PairConfig};
use megatcp_launch::{CoreReport, LaunchError};

use crate::{LoadApp, LoadOpts, LoadReport, Protocol, ServeApp, ServeOpts};

/// What to run.
#[derive(Debug, Clone)]
pub struct PairOpts {
    /// The load (its `target` is ignored: the pair's server is used).
    pub load: LoadOpts,
    /// Where and how the pair runs (cores, buffers, faults, ...).
    pub pair: PairConfig,
}

/// What a pair run produced.
#[derive(Debug)]
pub struct PairReport {
    /// The load generator's merged report.
    pub load: LoadReport,
    /// Per-core reports of the server.
    pub server: Vec<CoreReport>,
    /// Per-core reports of the client.
    pub client: Vec<CoreReport>,
}

const PAIR_PORT: u16 = 7;

/// Runs a pair.
pub fn run_pair(p: PairOpts) -> Result<PairReport, LaunchError> {
    let cfg = p.pair;
    let client = LoadApp {
        base: LoadOpts {
            target: SocketAddrV4::new(SERVER_IP, PAIR_PORT),
            ..p.load
        },
        cores: cfg.client_cores.len(),
    };
    let server = ServeApp {
        protocol: Protocol::Echo,
        opts: ServeOpts {
            port: PAIR_PORT,
            backlog: 65536,
            close_after: None,
        },
    };
    let r = megatcp_launch::pair::run_pair(&server, &client, &cfg)?;
    let (mut reports, mut client) = (Vec::new(), Vec::new());
    for core in r.client {
        reports.extend(core.output);
        client.extend(core.engine);
    }
    let load = LoadReport::merge(&reports)
        .ok_or_else(|| LaunchError::Usage("no client core produced a report".into()))?;
    let mut server = Vec::new();
    for core in r.server {
        if let Some(Err(e)) = core.output {
            tracing::error!("server: {e}");
        }
        server.extend(core.engine);
    }
    Ok(PairReport {
        load,
        server,
        client,
    })
}
