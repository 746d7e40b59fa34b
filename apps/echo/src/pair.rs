//! Server and load generator in one process, on separate cores, joined by the in-memory
//! wire NIC (`megatcp_launch::pair`): the whole system without root or a network.

use std::net::SocketAddrV4;

use megatcp_channel::{Backend, Channel};
use megatcp_launch::pair::{PairConfig, SERVER_IP};
use megatcp_launch::{App, CoreCtx, CoreReport, LaunchError};

use crate::{LoadOpts, LoadReport, run_load, serve};

/// What to run.
#[derive(Debug, Clone)]
pub struct PairOpts {
    /// The load (its `target` is ignored: the pair's server is used).
    pub load: LoadOpts,
    /// CPUs of the server, one stack each.
    pub server_cores: Vec<usize>,
    /// CPUs of the load generator.
    pub client_cores: Vec<usize>,
    /// TCP buffer per connection and direction.
    pub buffer: usize,
    /// Busy-poll when idle.
    pub busy_poll: bool,
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

/// The echo server on each server core.
struct Server;

impl App for Server {
    type Output = ();

    fn run<B: Backend>(&self, _: CoreCtx, ch: &mut Channel<B>) {
        if let Err(e) = serve(ch, PAIR_PORT, 65536) {
            eprintln!("server: {e}");
        }
    }
}

/// The load generator on each client core: its share of the load.
struct Client {
    load: LoadOpts,
    cores: usize,
}

impl App for Client {
    type Output = LoadReport;

    fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> LoadReport {
        let opts = LoadOpts {
            target: SocketAddrV4::new(SERVER_IP, PAIR_PORT),
            ..self.load.share(self.cores, ctx.index)
        };
        run_load(ch, opts)
    }
}

/// Runs a pair.
pub fn run_pair(p: PairOpts) -> Result<PairReport, LaunchError> {
    let cfg = PairConfig {
        server_cores: p.server_cores,
        client_cores: p.client_cores,
        buffer: p.buffer,
        busy_poll: p.busy_poll,
    };
    let client = Client {
        load: p.load,
        cores: cfg.client_cores.len(),
    };
    let r = megatcp_launch::pair::run_pair(&Server, &client, &cfg)?;
    let (mut reports, mut client) = (Vec::new(), Vec::new());
    for core in r.client {
        reports.extend(core.output);
        client.extend(core.engine);
    }
    let load = LoadReport::merge(&reports)
        .ok_or_else(|| LaunchError::Usage("no client core produced a report".into()))?;
    Ok(PairReport {
        load,
        server: r.server.into_iter().filter_map(|c| c.engine).collect(),
        client,
    })
}
