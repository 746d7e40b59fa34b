//! Programs on megatcp's async runtime (`megatcp-async`), each a binary of this package:
//!
//! * `async-echo`: the echo server of `megatcp-echo serve`, ported to async in a few dozen
//!   lines (`async_echo.rs`);
//! * `hyper-server`: hyper 1.x's HTTP/1 server connection, unchanged, over megatcp's
//!   `TcpStream` (and, with `--tokio`, the same server on tokio and the kernel's TCP: the
//!   baseline);
//! * `hyper-client`: hyper's HTTP/1 client connection over megatcp.
//!
//! Each takes the shared backend flags (`--backend afxdp|dpdk|uring|epoll`, `--cores`,
//! `--iface`, `--ip`). `PORTING.md` (at the repository's root) is compiled here too: each of
//! its code blocks is a doctest of this crate.
#![forbid(unsafe_code)]

#[cfg(doctest)]
#[doc = include_str!("../PORTING.md")]
pub struct PortingGuide;

use std::process::ExitCode;

use megatcp_launch::{CoreOutcome, LaunchError};

/// The end of a server binary: prints (on stderr, prefixed with `name`) why the runtime did
/// not start, or each core's counters and the connections it accepted; the exit code: 2
/// when it did not start, 1 when a core failed or did not return, else success.
pub fn server_exit(
    name: &str,
    cores: Result<Vec<CoreOutcome<std::io::Result<u64>>>, LaunchError>,
) -> ExitCode {
    let cores = match cores {
        Ok(cores) => cores,
        Err(e) => {
            eprintln!("{name}: {e}");
            return ExitCode::from(2);
        }
    };
    let mut code = ExitCode::SUCCESS;
    for c in cores {
        eprintln!("{}", c.report);
        match c.output {
            Some(Ok(n)) => eprintln!("core {}: accepted {n}", c.index),
            Some(Err(e)) => {
                eprintln!("{name}: core {}: {e}", c.index);
                code = ExitCode::from(1);
            }
            None => code = ExitCode::from(1),
        }
    }
    code
}
