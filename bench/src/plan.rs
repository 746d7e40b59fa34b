//! What a run measures: the variants (server backends), the sweeps modelled on MegaPipe's and
//! mTCP's figures, and the points of each sweep.

use serde::Serialize;

/// A server backend under test.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Variant {
    /// megatcp over AF_XDP (kernel bypass).
    Afxdp,
    /// The afxdp server again, its short connections closed by the client with RST instead
    /// of FIN (no TIME-WAIT anywhere): only the points with short connections.
    #[value(name = "afxdp-rst")]
    #[serde(rename = "afxdp-rst")]
    AfxdpRst,
    /// megatcp over DPDK (`net_af_xdp` on the veth).
    Dpdk,
    /// The Linux kernel through io_uring.
    Uring,
    /// The Linux kernel through epoll.
    Epoll,
    /// No server: raw frames reflected at L2/L3 on the bypass servers' AF_XDP queue
    /// (`megatcp-echo reflect`), one frame each way per transaction, `connections` frames in
    /// flight: the medium's ceiling, at the persistent points of the AF_XDP client only.
    Reflect,
}

impl Variant {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Variant::Afxdp => "afxdp",
            Variant::AfxdpRst => "afxdp-rst",
            Variant::Dpdk => "dpdk",
            Variant::Uring => "uring",
            Variant::Epoll => "epoll",
            Variant::Reflect => "reflect",
        }
    }

    /// The name in plot legends: the RST variant says so.
    pub(crate) fn legend(self) -> &'static str {
        match self {
            Variant::AfxdpRst => "afxdp-rst (RST close)",
            Variant::Reflect => "reflect (raw frames, no TCP)",
            v => v.name(),
        }
    }

    /// The server's `--backend`.
    pub(crate) fn backend(self) -> &'static str {
        match self {
            Variant::AfxdpRst => "afxdp",
            v => v.name(),
        }
    }

    /// Whether the server runs megatcp's stack (on the bypass address) or the kernel's.
    pub(crate) fn is_bypass(self) -> bool {
        matches!(
            self,
            Variant::Afxdp | Variant::AfxdpRst | Variant::Dpdk | Variant::Reflect
        )
    }

    /// How the client closes the connections of `point`.
    pub(crate) fn close(self, point: &Point) -> Close {
        match (point.txns_per_conn, self) {
            (0, _) => Close::Persistent,
            (_, Variant::AfxdpRst) => Close::Rst,
            _ => Close::Fin,
        }
    }

    /// Whether the variant runs at `point`: the RST variant only where connections close,
    /// the raw reflection only at the closed-loop persistent points of the AF_XDP client.
    pub(crate) fn runs(self, point: &Point) -> bool {
        match self {
            Variant::AfxdpRst => point.txns_per_conn > 0,
            Variant::Reflect => {
                point.txns_per_conn == 0 && point.client == Client::Afxdp && point.rate.is_none()
            }
            _ => true,
        }
    }
}

/// How the load generator ends its connections at a point.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Close {
    /// Orderly close (FIN), the client first: it holds TIME-WAIT.
    Fin,
    /// Reset (RST): no TIME-WAIT on either side.
    Rst,
    /// Persistent connections: opened once, not closed while measuring.
    Persistent,
}

impl Close {
    /// As in the CSV file.
    pub(crate) fn name(self) -> &'static str {
        match self {
            Close::Fin => "fin",
            Close::Rst => "rst",
            Close::Persistent => "persistent",
        }
    }

    /// As in the tables.
    pub(crate) fn label(self) -> &'static str {
        match self {
            Close::Fin => "FIN",
            Close::Rst => "RST",
            Close::Persistent => "-",
        }
    }
}

/// The load generator's path.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum Client {
    /// megatcp-echo load over AF_XDP: the same, fast client for every variant.
    Afxdp,
    /// megatcp-echo load over epoll: the kernel-path client.
    Epoll,
}

impl Client {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Client::Afxdp => "afxdp",
            Client::Epoll => "epoll",
        }
    }
}

/// A sweep: one figure of the report.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum Sweep {
    /// Throughput against transactions per connection (64 B).
    TxnsPerConn,
    /// Throughput against message size (persistent connections).
    MsgSize,
    /// Throughput against concurrent connections (persistent, 64 B).
    Connections,
    /// Latency percentiles at a fixed offered load.
    Latency,
    /// The headline points with the kernel-path client.
    KernelClient,
}

impl Sweep {
    pub(crate) const ALL: [Sweep; 5] = [
        Sweep::TxnsPerConn,
        Sweep::MsgSize,
        Sweep::Connections,
        Sweep::Latency,
        Sweep::KernelClient,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Sweep::TxnsPerConn => "txns_per_conn",
            Sweep::MsgSize => "msg_size",
            Sweep::Connections => "connections",
            Sweep::Latency => "latency",
            Sweep::KernelClient => "kernel_client",
        }
    }

    pub(crate) fn title(self) -> &'static str {
        match self {
            Sweep::TxnsPerConn => {
                "Throughput vs transactions per connection (64 B, 64 connections, FIN close)"
            }
            Sweep::MsgSize => "Throughput vs message size (persistent, 64 connections)",
            Sweep::Connections => "Throughput vs concurrent connections (persistent, 64 B)",
            Sweep::Latency => "Latency at a fixed offered load (persistent, 64 B, 64 connections)",
            Sweep::KernelClient => {
                "Kernel-path client (epoll) against each server (64 B, 64 connections, FIN close)"
            }
        }
    }
}

/// One measured configuration.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub(crate) struct Point {
    pub(crate) sweep: Sweep,
    pub(crate) client: Client,
    /// Transactions per connection; 0 = persistent.
    pub(crate) txns_per_conn: u64,
    pub(crate) msg_size: usize,
    pub(crate) connections: usize,
    /// Open-loop offered load (transactions/s), if any.
    pub(crate) rate: Option<f64>,
}

impl Point {
    /// The value on the sweep's x axis, as text.
    pub(crate) fn x_label(&self) -> String {
        match self.sweep {
            Sweep::TxnsPerConn | Sweep::KernelClient => match self.txns_per_conn {
                0 => "persistent".into(),
                n => n.to_string(),
            },
            Sweep::MsgSize => self.msg_size.to_string(),
            Sweep::Connections => self.connections.to_string(),
            Sweep::Latency => format!("{:.0} txn/s", self.rate.unwrap_or(0.0)),
        }
    }

    /// One transaction per connection, 64 B, the afxdp client: the first headline figure.
    pub(crate) fn is_short_headline(&self) -> bool {
        self.sweep == Sweep::TxnsPerConn && self.txns_per_conn == 1
    }

    /// Persistent connections, 64 B, the afxdp client: the second headline figure.
    pub(crate) fn is_persistent_headline(&self) -> bool {
        self.sweep == Sweep::TxnsPerConn && self.txns_per_conn == 0
    }
}

/// Offered load of the latency sweep: below every variant's capacity, so that the latencies
/// compare paths at the same load.
pub(crate) const LATENCY_RATE: f64 = 50_000.0;

/// The points of a run.
pub(crate) fn points(quick: bool) -> Vec<Point> {
    let base = Point {
        sweep: Sweep::TxnsPerConn,
        client: Client::Afxdp,
        txns_per_conn: 0,
        msg_size: 64,
        connections: 64,
        rate: None,
    };
    let (txns, sizes, conns): (&[u64], &[usize], &[usize]) = if quick {
        (&[1, 4, 0], &[64, 1024], &[1, 100, 1000])
    } else {
        (
            &[1, 2, 4, 8, 16, 32, 64, 128, 0],
            &[64, 256, 1024, 4096],
            &[1, 10, 100, 1000, 10_000],
        )
    };
    let mut v = Vec::new();
    for &t in txns {
        v.push(Point {
            txns_per_conn: t,
            ..base
        });
    }
    for &m in sizes {
        v.push(Point {
            sweep: Sweep::MsgSize,
            msg_size: m,
            ..base
        });
    }
    for &c in conns {
        v.push(Point {
            sweep: Sweep::Connections,
            connections: c,
            ..base
        });
    }
    v.push(Point {
        sweep: Sweep::Latency,
        rate: Some(LATENCY_RATE),
        ..base
    });
    for t in [1, 0] {
        v.push(Point {
            sweep: Sweep::KernelClient,
            client: Client::Epoll,
            txns_per_conn: t,
            ..base
        });
    }
    v
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_connections_close_with_fin_unless_the_variant_says_rst() {
        let p = points(true);
        let short = p.iter().find(|p| p.is_short_headline()).unwrap();
        let pers = p.iter().find(|p| p.is_persistent_headline()).unwrap();
        assert_eq!(Variant::Afxdp.close(short), Close::Fin);
        assert_eq!(Variant::Epoll.close(short), Close::Fin);
        assert_eq!(Variant::AfxdpRst.close(short), Close::Rst);
        assert_eq!(Variant::Afxdp.close(pers), Close::Persistent);
        assert!(Variant::AfxdpRst.runs(short) && !Variant::AfxdpRst.runs(pers));
        assert_eq!(Variant::AfxdpRst.backend(), "afxdp");
        let reflected = p.iter().filter(|p| Variant::Reflect.runs(p)).count();
        assert_eq!(
            reflected, 6,
            "the quick persistent points of the AF_XDP client"
        );
        assert!(Variant::Reflect.runs(pers) && !Variant::Reflect.runs(short));
    }

    #[test]
    fn both_modes_hold_the_headline_points_and_every_sweep() {
        for quick in [true, false] {
            let p = points(quick);
            assert_eq!(p.iter().filter(|p| p.is_short_headline()).count(), 1);
            assert_eq!(p.iter().filter(|p| p.is_persistent_headline()).count(), 1);
            for s in Sweep::ALL {
                assert!(p.iter().any(|p| p.sweep == s), "{s:?} missing");
            }
        }
        assert!(points(false).len() > points(true).len());
    }
}
