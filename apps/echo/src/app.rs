//! The echo server and the load generator as [`megatcp_launch::App`]s: what one core runs,
//! for `megatcp-echo serve`/`load`/`pair` and the tests, on any backend.

use megatcp_channel::{Backend, Channel, ChannelError};
use megatcp_launch::{App, CoreCtx};

use crate::{LoadOpts, LoadReport, ServeOpts, ServerStats, run_load, serve_sockperf, serve_with};

/// What the server speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Protocol {
    /// Every byte read is written back.
    Echo,
    /// sockperf's messages: pong requests answered, throughput messages consumed.
    Sockperf,
}

/// The server on one core: the chosen protocol with `opts` (port, backlog, close).
#[derive(Debug, Clone, Copy)]
pub struct ServeApp {
    /// What to speak.
    pub protocol: Protocol,
    /// Port, backlog per core, and when the server closes (`--close-after`, echo only).
    pub opts: ServeOpts,
}

impl App for ServeApp {
    type Output = Result<ServerStats, ChannelError>;

    fn run<B: Backend>(&self, _: CoreCtx, ch: &mut Channel<B>) -> Self::Output {
        match self.protocol {
            Protocol::Echo => serve_with(ch, &self.opts),
            Protocol::Sockperf => serve_sockperf(ch, self.opts.port, self.opts.backlog),
        }
    }
}

/// The load generator on one core: its share of `base` (connections, rate, transactions)
/// when it runs on `cores` cores.
#[derive(Debug, Clone)]
pub struct LoadApp {
    /// The whole load.
    pub base: LoadOpts,
    /// Cores sharing it.
    pub cores: usize,
}

impl App for LoadApp {
    type Output = LoadReport;

    fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> LoadReport {
        megatcp_launch::load::Load::run_share(&self.base, ch, self.cores, ctx.index)
    }
}

impl megatcp_launch::load::Load for LoadOpts {
    type Report = LoadReport;

    fn run_share<B: Backend>(&self, ch: &mut Channel<B>, cores: usize, core: usize) -> LoadReport {
        run_load(ch, self.share(cores, core))
    }
}
