//! The flags of the bypass backends on a real NIC ([`NicArgs`], flattened into
//! `BackendArgs`): which queues, the MTU, zero-copy, transmit checksum offload, what the XDP program hands megatcp, the
//! RSS key; and the advice given at start when the NIC's queues and megatcp's cores differ.

use crate::Cores;

/// What megatcp's XDP program hands the AF_XDP sockets.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum XdpSteer {
    /// Frames for `--ip` (and ARP for it); the kernel keeps everything else (its own
    /// addresses on the same NIC, SSH, ...).
    #[default]
    Address,
    /// Every frame of the queues (a NIC that is megatcp's alone).
    All,
}

/// AF_XDP zero-copy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ZeroCopyArg {
    /// Zero-copy when the driver offers it, else copy mode.
    #[default]
    Auto,
    /// Zero-copy or fail.
    On,
    /// Copy mode.
    Off,
}

/// Transmit checksum offload (dpdk).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum TxCsumArg {
    /// The NIC fills IPv4 header and TCP checksums when it offers both, else megatcp does.
    #[default]
    Auto,
    /// megatcp computes every checksum.
    Off,
}

/// The NIC's RSS key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum RssKeyArg {
    /// Leave the NIC's key alone.
    #[default]
    Keep,
    /// Set a symmetric key (0x6d5a repeated) while megatcp runs; the old key comes back at
    /// exit (afxdp; DPDK always uses one).
    Symmetric,
}

/// Flags for a real NIC (bypass backends).
#[derive(clap::Args, Clone, Debug)]
pub struct NicArgs {
    /// NIC queues to read, one per core in --cores order (afxdp; default 0, 1, ...). Each
    /// megatcp process on one interface needs queues of its own.
    #[arg(long)]
    pub queues: Option<Cores>,
    /// IP MTU of the stack (afxdp, dpdk): up to 9000 (jumbo frames) where the interface
    /// allows; the MSS follows (MTU - 40).
    #[arg(long, default_value_t = 1500)]
    pub mtu: usize,
    /// AF_XDP zero-copy (afxdp).
    #[arg(long, value_enum, default_value_t = ZeroCopyArg::Auto)]
    pub zero_copy: ZeroCopyArg,
    /// Transmit checksum offload (dpdk): the NIC fills the IPv4 header and TCP checksums
    /// where it offers both; said at start.
    #[arg(long, value_enum, default_value_t = TxCsumArg::Auto)]
    pub tx_csum_offload: TxCsumArg,
    /// What the XDP program hands megatcp (afxdp).
    #[arg(long, value_enum, default_value_t = XdpSteer::Address)]
    pub xdp: XdpSteer,
    /// With `--xdp address`: only TCP to these ports (and to the stack's ephemeral ports)
    /// goes to megatcp; other TCP to the address goes to the kernel (afxdp).
    #[arg(long, value_delimiter = ',')]
    pub xdp_ports: Vec<u16>,
    /// The NIC's RSS key (afxdp).
    #[arg(long, value_enum, default_value_t = RssKeyArg::Keep)]
    pub rss_key: RssKeyArg,
    /// Ask the kernel for preferred busy polling of the AF_XDP sockets (afxdp), taken only
    /// where the interface defers its interrupts (`scripts/nic-setup afxdp IFACE
    /// --busy-poll`). Off by default: measured slower on veth (docs/real-nic.md).
    #[arg(long)]
    pub busy_poll: bool,
}

impl Default for NicArgs {
    fn default() -> Self {
        Self {
            queues: None,
            mtu: 1500,
            zero_copy: ZeroCopyArg::Auto,
            tx_csum_offload: TxCsumArg::Auto,
            xdp: XdpSteer::Address,
            xdp_ports: Vec::new(),
            rss_key: RssKeyArg::Keep,
            busy_poll: false,
        }
    }
}

impl NicArgs {
    /// The NIC queue of each core: `--queues`, or 0, 1, ... Refused when the counts differ.
    pub fn queues_for(&self, cores: usize) -> Result<Vec<u32>, String> {
        let Some(Cores(q)) = &self.queues else {
            return Ok((0..cores as u32).collect());
        };
        if q.len() != cores {
            return Err(format!(
                "--queues names {} queue(s) for {cores} core(s): one queue per core",
                q.len()
            ));
        }
        let mut sorted = q.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.len() != q.len() {
            return Err("--queues names a queue twice".into());
        }
        q.iter()
            .map(|&x| u32::try_from(x).map_err(|_| format!("queue {x} out of range")))
            .collect()
    }
}

/// What to say when the interface receives on `device_queues` queues and megatcp reads
/// `ours`: an error when it reads a queue that does not exist, a warning when the device
/// spreads frames over queues nobody reads (they go to the kernel, which drops what is
/// addressed to megatcp), nothing when they match. `set_command(n)` is the ethtool command
/// that gives the device `n` queues.
pub fn queue_advice(
    iface: &str,
    device_queues: u32,
    ours: &[u32],
    set_command: &dyn Fn(usize) -> String,
) -> Result<Option<String>, String> {
    let n = ours.len();
    let highest = ours.iter().copied().max().unwrap_or(0);
    if highest >= device_queues {
        return Err(format!(
            "{iface} receives on {device_queues} queue(s) but megatcp was asked to read queue \
             {highest}: give it more queues (`{}`) or use fewer cores",
            set_command(highest as usize + 1)
        ));
    }
    if device_queues as usize == n {
        return Ok(None);
    }
    let list = ours
        .iter()
        .map(u32::to_string)
        .collect::<Vec<_>>()
        .join(",");
    Ok(Some(format!(
        "{iface} receives on {device_queues} queues but megatcp reads {n} (queue {list}, one \
         per core): frames for megatcp that RSS puts on the other queues go to the kernel \
         and are lost. Run `{}` so that the queues match the cores, or steer megatcp's \
         address to its queues (ethtool -N {iface} flow-type tcp4 dst-ip ADDR action Q, or \
         ethtool -X {iface} equal {n} when megatcp reads queues 0-{})",
        set_command(n),
        n.saturating_sub(1)
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn combined(n: usize) -> String {
        format!("ethtool -L eth1 combined {n}")
    }

    #[test]
    fn matching_queues_say_nothing_and_others_say_what_to_run() {
        assert_eq!(queue_advice("eth1", 2, &[0, 1], &combined), Ok(None));
        let w = queue_advice("eth1", 8, &[0, 1], &combined)
            .expect("a warning, not an error")
            .expect("a warning");
        assert!(
            w.contains("receives on 8 queues but megatcp reads 2"),
            "{w}"
        );
        assert!(w.contains("`ethtool -L eth1 combined 2`"), "{w}");
        let e = queue_advice("eth1", 1, &[0, 1], &combined).expect_err("queue 1 is missing");
        assert!(e.contains("`ethtool -L eth1 combined 2`"), "{e}");
    }

    #[test]
    fn queues_follow_the_cores() {
        let mut a = NicArgs::default();
        assert_eq!(a.queues_for(3), Ok(vec![0, 1, 2]));
        a.queues = Some(Cores(vec![4, 5]));
        assert_eq!(a.queues_for(2), Ok(vec![4, 5]));
        assert!(a.queues_for(3).is_err());
        a.queues = Some(Cores(vec![4, 4]));
        assert!(a.queues_for(2).is_err());
    }
}
