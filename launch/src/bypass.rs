//! What the bypass arms of the launcher (AF_XDP in `afxdp`, DPDK in `dpdk`) share:
//! megatcp's own stack on NIC queues, one queue per core, through the engine's runtime; the
//! stack's configuration from the flags; the interface's hardware address.

use std::net::Ipv4Addr;

use megatcp_engine::Runtime;
use megatcp_stack::{LocalAddr, MacAddr, StackConfig, TxChecksum};

use crate::{App, BackendArgs, CoreOutcome, LaunchError, Outputs};

/// Runs `app` over megatcp's own stack on NIC queues opened by `open(queue, queues)`, one
/// per core; `mac` is the interface's hardware address, `tx_checksum` who fills transmit
/// checksums (the NIC only where its queues were opened with the offload on).
#[cfg_attr(not(any(feature = "afxdp", feature = "dpdk")), allow(dead_code))]
pub(crate) fn run_bypass<A, Q, O>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
    mac: MacAddr,
    tx_checksum: TxChecksum,
    open: O,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError>
where
    A: App,
    Q: megatcp_nic::NicQueue,
    O: Fn(usize, usize) -> Result<Q, String> + Sync,
{
    let mut stack = stack_config(args, mac)?;
    stack.tx_checksum = tx_checksum;
    let n = args.cores.0.len();
    let outputs = Outputs::new();
    let reports = runtime.run(
        |q| open(q, n),
        |core| {
            let mut c = stack.clone();
            // Distinct initial sequence numbers and ephemeral ports per core.
            c.seed ^= 0x1000 * core as u64;
            c
        },
        |ctx, ch| outputs.put(ctx.index, app.run(ctx, ch)),
    )?;
    Ok(outputs.collect(
        reports
            .into_iter()
            .map(|r| (r.to_string(), Some(r)))
            .collect(),
    ))
}

/// The stack configuration for `--ip`/`--gateway` on an interface with address `mac`.
pub fn stack_config(args: &BackendArgs, mac: MacAddr) -> Result<StackConfig, LaunchError> {
    let usage = |m: String| LaunchError::Usage(m);
    let ip = args.ip.as_deref().ok_or_else(|| {
        usage(
            format!(
                "--ip ADDR/PREFIX is required with --backend {:?}",
                args.backend
            )
            .to_lowercase(),
        )
    })?;
    let (addr, prefix) = ip
        .split_once('/')
        .ok_or_else(|| usage("--ip needs a prefix length: ADDR/PREFIX".into()))?;
    let addr: Ipv4Addr = addr.parse().map_err(|e| usage(format!("--ip {ip}: {e}")))?;
    let prefix: u8 = prefix
        .parse()
        .ok()
        .filter(|p| *p <= 32)
        .ok_or_else(|| usage(format!("--ip {ip}: the prefix length must be 0..=32")))?;
    let mut c = StackConfig::new(mac, LocalAddr::new(addr, prefix));
    c.gateway = args.gateway;
    if !(576..=9000).contains(&args.nic.mtu) {
        return Err(usage(format!(
            "--mtu {}: must be within 576..=9000",
            args.nic.mtu
        )));
    }
    c.mtu = args.nic.mtu;
    c.seed = u64::from(std::process::id()) ^ (u64::from(u32::from(addr)) << 16);
    Ok(c)
}

/// The hardware address of a Linux interface, from sysfs.
pub fn iface_mac(iface: &str) -> Result<MacAddr, LaunchError> {
    let text = std::fs::read_to_string(format!("/sys/class/net/{iface}/address"))
        .map_err(|e| LaunchError::Usage(format!("interface {iface}: {e}")))?;
    let bad = || {
        LaunchError::Usage(format!(
            "interface {iface}: bad MAC address {:?}",
            text.trim()
        ))
    };
    let mut mac = [0u8; 6];
    let mut parts = text.trim().split(':');
    for b in &mut mac {
        *b = parts
            .next()
            .and_then(|p| u8::from_str_radix(p, 16).ok())
            .ok_or_else(bad)?;
    }
    if parts.next().is_some() {
        return Err(bad());
    }
    Ok(MacAddr(mac))
}
