//! What the HTTP head-to-head measures: the servers, the clients, the sweeps and their
//! points.

use serde::Serialize;

/// A server under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Server {
    /// megatcp-http over AF_XDP.
    Afxdp,
    /// megatcp-http over DPDK (`net_af_xdp` on the veth).
    Dpdk,
    /// megatcp-http on the kernel through io_uring.
    Uring,
    /// megatcp-http on the kernel through epoll.
    Epoll,
    /// nginx, one worker.
    Nginx,
    /// lighttpd (one process).
    Lighttpd,
}

impl Server {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Server::Afxdp => "afxdp",
            Server::Dpdk => "dpdk",
            Server::Uring => "uring",
            Server::Epoll => "epoll",
            Server::Nginx => "nginx",
            Server::Lighttpd => "lighttpd",
        }
    }

    /// Whether it runs megatcp's own stack (on the bypass address).
    pub(crate) fn is_bypass(self) -> bool {
        matches!(self, Server::Afxdp | Server::Dpdk)
    }
}

/// The load generator.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Client {
    /// `megatcp-http load` over AF_XDP: verifies every response.
    Ours,
    /// wrk (one thread), over the kernel.
    Wrk,
    /// ab, over the kernel (`Connection: close` points).
    Ab,
}

impl Client {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Ours => "ours",
            Client::Wrk => "wrk",
            Client::Ab => "ab",
        }
    }
}

/// A sweep: one table and one plot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sweep {
    /// Keep-alive against `Connection: close`, 64 B, 64 connections, every client.
    Mode,
    /// Response size, keep-alive, 64 connections.
    Size,
    /// Concurrent connections, keep-alive, 64 B.
    Connections,
}

impl Sweep {
    pub(crate) const ALL: [Sweep; 3] = [Sweep::Mode, Sweep::Size, Sweep::Connections];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Sweep::Mode => "http_mode",
            Sweep::Size => "http_size",
            Sweep::Connections => "http_connections",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Sweep::Mode => {
                "Requests/s: keep-alive vs Connection: close (64 B body, 64 connections)"
            }
            Sweep::Size => "Requests/s vs response body size (keep-alive, 64 connections)",
            Sweep::Connections => "Requests/s vs concurrent connections (keep-alive, 64 B body)",
        }
    }

    pub(crate) fn x_name(self) -> &'static str {
        match self {
            Sweep::Mode => "client, connection mode",
            Sweep::Size => "body bytes",
            Sweep::Connections => "connections",
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub(crate) struct Point {
    pub(crate) sweep: Sweep,
    pub(crate) client: Client,
    pub(crate) keep_alive: bool,
    pub(crate) size: usize,
    pub(crate) connections: usize,
}

impl Point {
    pub(crate) fn x_label(&self) -> String {
        match self.sweep {
            Sweep::Mode => format!(
                "{} {}",
                self.client.name(),
                if self.keep_alive {
                    "keep-alive"
                } else {
                    "close"
                }
            ),
            Sweep::Size => self.size.to_string(),
            Sweep::Connections => self.connections.to_string(),
        }
    }
}

/// The body sizes served (one file each, `/{size}.bin`).
pub(crate) const SIZES: [usize; 5] = [64, 1024, 4096, 16_384, 65_536];

/// The points of a run.
pub(crate) fn points(quick: bool) -> Vec<Point> {
    let base = Point {
        sweep: Sweep::Mode,
        client: Client::Ours,
        keep_alive: true,
        size: 64,
        connections: 64,
    };
    let mut v = Vec::new();
    for (client, keep_alive) in [
        (Client::Ours, true),
        (Client::Wrk, true),
        (Client::Ours, false),
        (Client::Wrk, false),
        (Client::Ab, false),
    ] {
        v.push(Point {
            client,
            keep_alive,
            ..base
        });
    }
    let (sizes, conns): (&[usize], &[usize]) = if quick {
        (&[64, 4096, 65_536], &[1, 100, 1000])
    } else {
        (&SIZES, &[1, 10, 100, 1000, 10_000])
    };
    for &size in sizes {
        v.push(Point {
            sweep: Sweep::Size,
            size,
            ..base
        });
    }
    for &connections in conns {
        v.push(Point {
            sweep: Sweep::Connections,
            connections,
            ..base
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_modes_hold_the_headline_points_and_every_sweep() {
        for quick in [true, false] {
            let p = points(quick);
            for s in Sweep::ALL {
                assert!(p.iter().any(|p| p.sweep == s), "{s:?}");
            }
            assert!(
                p.iter()
                    .any(|p| p.client == Client::Ours && p.keep_alive && p.sweep == Sweep::Mode)
            );
            assert!(p.iter().any(|p| p.client == Client::Ours && !p.keep_alive));
            assert!(
                p.iter()
                    .all(|p| p.size <= 65_536 && SIZES.contains(&p.size))
            );
        }
        assert!(points(false).iter().any(|p| p.connections == 10_000));
    }
}
