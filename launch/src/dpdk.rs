//! The DPDK arm of the launcher (feature `dpdk`): initialises EAL with `--dpdk-args` (and
//! `--pci`), opens the port with one queue pair per core, and runs the engine on it, one
//! [`megatcp_nic::dpdk::DpdkQueue`] per core, exactly like the AF_XDP arm.
//!
//! The port is the `--pci` device when one is given, else the first port EAL has (the first
//! `--vdev`). Its device counters are printed when the run ends.

use megatcp_nic::dpdk::{DpdkPort, EalConfig, PortConfig, init_eal};
use megatcp_stack::MacAddr;

use megatcp_engine::Runtime;

use crate::bypass::run_bypass;
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
    let port = DpdkPort::open(eal, port, &PortConfig::new(queues))
        .map_err(|e| LaunchError::Usage(e.to_string()))?;
    eprintln!(
        "megatcp: DPDK port {} ({}, driver {}), {} queue(s), MAC {}, RSS {}, rx checksum \
         offload {}, EAL {}",
        port.id(),
        port.name(),
        port.driver(),
        queues,
        port.mac()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":"),
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
    let result = run_bypass(args, runtime, app, MacAddr(port.mac()), |q, _| {
        let q = u16::try_from(q).map_err(|e| e.to_string())?;
        port.queue(q).map_err(|e| e.to_string())
    });
    eprintln!("megatcp: DPDK port {}: {}", port.id(), port.stats());
    result
}
