//! The kernel arms of the launcher: epoll and io_uring (`megatcp-kernel`), one backend per
//! core, built on the core's own thread.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use megatcp_channel::Backend;
use megatcp_engine::{EngineError, Runtime};

use crate::{App, BackendArgs, CoreOutcome, LaunchError, Outputs};

/// Runs `app` on `runtime` over a kernel backend built by `make(core, stop)` on each
/// core's thread.
pub(crate) fn run<A, B, M>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
    make: M,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError>
where
    A: App,
    B: Backend,
    M: Fn(usize, Arc<AtomicBool>) -> Result<B, String> + Sync,
{
    // Thousands of kernel sockets need more descriptors than the usual soft limit.
    megatcp_kernel::raise_nofile();
    let outputs = Outputs::new();
    let reports = runtime.run_with(
        |core, stop| make(core, stop).map_err(|reason| EngineError::Backend { core, reason }),
        |ctx, ch| outputs.put(ctx.index, app.run(ctx, ch)),
        |index, ch| {
            let s = ch.stats();
            let line = format!(
                "core {index}: {:?} channel: commands {} flushes {} dispatches {} completions {}",
                args.backend, s.commands, s.flushes, s.dispatches, s.completions
            );
            (line, None)
        },
    )?;
    Ok(outputs.collect(reports))
}
