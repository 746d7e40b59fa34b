//! The DPDK arm of the launcher (feature `dpdk`): initialises EAL with `--dpdk-args` (and
//! `--pci`), opens the port with one queue pair per core, and runs the engine on it, one
//! [`megatcp_nic::dpdk::DpdkQueue`] per core, exactly like the AF_XDP arm.
//!
//! The port is the `--pci` device when one is given, else the first port EAL has (the first
//! `--vdev`). Transmit checksum offload is turned on where the port offers it (unless
//! `--tx-csum-offload off`) and the stacks are told to leave those checksums to the NIC;
//! the start line says which. Its device counters are printed when the run ends.
//!
//! [`run_ring_pair`] runs a server and a client application in one process over two ports
//! joined back to back by `rte_eth_from_rings`: the DPDK path without any device.

use megatcp_nic::dpdk::{DpdkPort, EalConfig, PortConfig, init_eal};
pub use megatcp_nic::dpdk::{NicStats, free_hugepages};
use megatcp_stack::{MacAddr, TxChecksum};

use megatcp_engine::Runtime;

use crate::bypass::run_bypass;
use crate::nic::TxCsumArg;
use crate::pair::{PairConfig, PairOutcome, run_pair_on};
use crate::{App, BackendArgs, CoreOutcome, LaunchError};

pub(crate) fn run<A: App>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    let mut cfg = EalConfig::from_arg_string(args.dpdk_args.as_deref().unwrap_or(""));
    cfg.pci = args.pci.clone();
    if cfg.pci.is_none() && !cfg.args.iter().any(|a| a.starts_with("--vdev")) {
        return Err(LaunchError::Usage(
            "--backend dpdk needs a device: --dpdk-args \"--vdev net_memif0,role=server\" \
             (or net_af_xdp0,iface=IF / net_af_packet0,iface=IF / net_ring0), or --pci ADDR"
                .into(),
        ));
    }
    // Check the stack flags before EAL takes the device.
    crate::stack_config(args, MacAddr([2, 0, 0, 0, 0, 1]))?;
    let eal = init_eal(&cfg).map_err(|e| LaunchError::Usage(e.to_string()))?;
    let port = match &args.pci {
        Some(pci) => eal.port_by_name(pci),
        None => eal.ports().first().copied(),
    }
    .ok_or_else(|| {
        LaunchError::Usage(format!(
            "DPDK found no device (EAL arguments {:?}): check the --vdev spelling and \
             arguments in the EAL log above, or the --pci address",
            eal.args()
        ))
    })?;
    let queues = u16::try_from(args.cores.0.len())
        .map_err(|_| LaunchError::Usage("too many cores".into()))?;
    let mut pcfg = PortConfig::new(queues);
    pcfg.tx_checksum = args.nic.tx_csum_offload == TxCsumArg::Auto;
    pcfg.mtu = args.nic.mtu;
    let port = DpdkPort::open(eal, port, &pcfg).map_err(|e| LaunchError::Usage(e.to_string()))?;
    let caps = port.capabilities();
    let tx_checksum = if caps.checksum.tx_ipv4 && caps.checksum.tx_l4 {
        TxChecksum::Offload
    } else {
        TxChecksum::Software
    };
    let tx_line = match (tx_checksum, port.offers_tx_checksum()) {
        (TxChecksum::Offload, _) => "on (the NIC fills IPv4 and TCP checksums)",
        (_, true) => "off (--tx-csum-offload off; the NIC offers it)",
        (_, false) => "off (not offered by the NIC; megatcp computes checksums)",
    };
    if args.nic.mtu > port.capabilities().mtu {
        return Err(LaunchError::Usage(format!(
            "--mtu {}: the DPDK port runs with MTU {} (rte_eth_dev_get_mtu)",
            args.nic.mtu,
            port.capabilities().mtu
        )));
    }
    tracing::info!(
        "DPDK port {} ({}, driver {}), {} queue(s), MAC {}, MTU {} (MSS {}), RSS {}, rx \
         checksum offload {}, tx checksum offload {tx_line}, EAL {}",
        port.id(),
        port.name(),
        port.driver(),
        queues,
        port.mac()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
        args.nic.mtu,
        args.nic.mtu - 40,
        if port.capabilities().rss.is_some() {
            "symmetric Toeplitz"
        } else {
            "none (software steering)"
        },
        port.capabilities().checksum.rx_l4,
        if eal.hugepages() {
            "on hugepages"
        } else {
            "without hugepages"
        },
    );
    let mac = MacAddr(port.mac());
    let result = run_bypass(args, runtime, app, mac, tx_checksum, |q, _| {
        let q = u16::try_from(q).map_err(|e| e.to_string())?;
        port.queue(q).map_err(|e| e.to_string())
    });
    tracing::info!("DPDK port {}: {}", port.id(), port.stats());
    result
}

/// What a ring pair run did.
#[derive(Debug)]
pub struct RingPairOutcome<S, C> {
    /// What each core did.
    pub cores: PairOutcome<S, C>,
    /// The device counters of the server's port.
    pub server_port: NicStats,
    /// The device counters of the client's port.
    pub client_port: NicStats,
}

/// Runs `server` and `client` (one core each) in this process over a pair of DPDK ports
/// joined by `rte_eth_from_rings` under `name` (unique in the process), with EAL's default
/// arguments (EAL starts once per process).
pub fn run_ring_pair<S: App, C: App>(
    name: &str,
    server: &S,
    client: &C,
    cfg: &PairConfig,
) -> Result<RingPairOutcome<S::Output, C::Output>, LaunchError> {
    let usage = |e: &dyn std::fmt::Display| LaunchError::Usage(e.to_string());
    if cfg.server_cores.len() != 1 || cfg.client_cores.len() != 1 {
        return Err(LaunchError::Usage("a ring pair runs one core each".into()));
    }
    let eal = init_eal(&EalConfig::default()).map_err(|e| usage(&e))?;
    let (a, b) = eal.ring_pair(name, 1).map_err(|e| usage(&e))?;
    // The pair's stacks compute their own checksums.
    let mut pcfg = PortConfig::new(1);
    pcfg.tx_checksum = false;
    let server_port = DpdkPort::open(eal, a, &pcfg).map_err(|e| usage(&e))?;
    let client_port = DpdkPort::open(eal, b, &pcfg).map_err(|e| usage(&e))?;
    let outcome = run_pair_on(
        |_| server_port.queue(0).map_err(|e| e.to_string()),
        |_| client_port.queue(0).map_err(|e| e.to_string()),
        server,
        client,
        cfg,
    )?;
    Ok(RingPairOutcome {
        cores: outcome,
        server_port: server_port.stats(),
        client_port: client_port.stats(),
    })
}
