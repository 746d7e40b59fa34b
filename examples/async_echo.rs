//! The echo server of `megatcp-echo serve`, ported to megatcp's async runtime: one task per
//! connection instead of a completion loop, on every backend and core of the flags.
//!
//! ```sh
//! async-echo --backend afxdp --iface mtcp-srv --ip 10.77.0.10/24 --port 7 --cores 0
//! ```

use std::process::ExitCode;

use clap::Parser;
use megatcp_async::{TcpListener, TcpStream, spawn_local};
use megatcp_launch::BackendArgs;

/// Echo server on megatcp's async runtime.
#[derive(Parser)]
struct Args {
    #[command(flatten)]
    backend: BackendArgs,
    /// Listening port.
    #[arg(long, default_value_t = 7)]
    port: u16,
    /// Backlog per core.
    #[arg(long, default_value_t = 4096)]
    backlog: u32,
}

/// Serves echo on `port` until the runtime stops; the connections accepted.
pub async fn serve(port: u16, backlog: u32) -> std::io::Result<u64> {
    let listener = TcpListener::bind_with_backlog(("0.0.0.0", port), backlog).await?;
    let mut accepted = 0;
    while let Ok((stream, _peer)) = listener.accept().await {
        accepted += 1;
        spawn_local(echo(stream));
    }
    Ok(accepted)
}

/// Writes every byte read back, in the very buffer it came in (no copy); closes at EOF.
async fn echo(mut stream: TcpStream) {
    while let Ok(data) = stream.recv().await {
        if data.is_empty() || stream.send(data).await.is_err() {
            break;
        }
    }
}

fn main() -> ExitCode {
    let args = Args::parse();
    // Notices of the backends (AF_XDP mode, fallbacks, hints); RUST_LOG overrides.
    megatcp_launch::logging::init("info");
    let (port, backlog) = (args.port, args.backlog);
    megatcp_examples::server_exit(
        "async-echo",
        megatcp_async::run(&args.backend, |_core| serve(port, backlog)),
    )
}
