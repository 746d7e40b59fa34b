//! One runtime per core, started through `megatcp_launch` on any backend: [`AsyncApp`]
//! turns "a function from the core to its main future" into a launch
//! [`App`](megatcp_launch::App), and [`run`] runs it on the flags' backend and cores.

use std::future::Future;
use std::time::Duration;

use megatcp_channel::{Backend, Channel};
use megatcp_launch::{App, BackendArgs, CoreCtx, CoreOutcome, LaunchError};

use crate::Runtime;

/// An async application: `main(core)` is the main future of each core's runtime.
#[derive(Debug, Clone)]
pub struct AsyncApp<F> {
    main: F,
    grace: Duration,
}

impl<F> AsyncApp<F> {
    /// The application whose cores each run `main(core)`.
    pub fn new(main: F) -> Self {
        Self {
            main,
            grace: Duration::from_secs(1),
        }
    }

    /// How long each core's remaining tasks may run once its main future is done (see
    /// [`Runtime::grace`]).
    pub fn grace(mut self, grace: Duration) -> Self {
        self.grace = grace;
        self
    }
}

impl<F, Fut> App for AsyncApp<F>
where
    F: Fn(CoreCtx) -> Fut + Sync,
    Fut: Future,
    Fut::Output: Send,
{
    type Output = Fut::Output;

    fn run<B: Backend>(&self, ctx: CoreCtx, ch: &mut Channel<B>) -> Fut::Output {
        Runtime::new(ch)
            .grace(self.grace)
            .block_on((self.main)(ctx))
    }
}

/// Runs `main(core)` in a runtime on every core of `args` over its backend (epoll, io_uring,
/// AF_XDP, DPDK), until each core's main future is done; one outcome per core.
pub fn run<F, Fut>(
    args: &BackendArgs,
    main: F,
) -> Result<Vec<CoreOutcome<Fut::Output>>, LaunchError>
where
    F: Fn(CoreCtx) -> Fut + Sync,
    Fut: Future,
    Fut::Output: Send,
{
    megatcp_launch::run(args, &AsyncApp::new(main))
}
