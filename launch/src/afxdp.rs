//! The AF_XDP arm of the launcher (feature `afxdp`): megatcp's stack on `--iface`, one
//! AF_XDP queue per core, behind megatcp's XDP program (the kernel keeps every frame that
//! is not for `--ip`). At start it reports what the interface offers and what megatcp uses:
//! the queues against the cores (with the `ethtool` command when they differ), the RSS key
//! and indirection table (so active opens pick ports whose replies come back to their own
//! queue) or why there is none (then cores steer in software), the MTU, checksums; and it
//! sets a symmetric RSS key with `--rss-key symmetric`, putting the old one back at exit.

use megatcp_engine::Runtime;
use megatcp_nic::RssInfo;
use megatcp_nic::afxdp::{AfXdpConfig, AfXdpQueue, Steering, ZeroCopy};
use megatcp_nic::ethtool;
use megatcp_stack::TxChecksum;

use crate::bypass::{iface_mac, run_bypass};
use crate::nic::{RssKeyArg, XdpSteer, ZeroCopyArg, queue_advice};
use crate::{App, BackendArgs, CoreOutcome, LaunchError};

/// Puts the interface's RSS key back when dropped.
struct KeyGuard {
    iface: String,
    old: Vec<u8>,
}

impl Drop for KeyGuard {
    fn drop(&mut self) {
        match ethtool::set_rss_key(&self.iface, &self.old) {
            Ok(()) => tracing::info!("{}: RSS key restored", self.iface),
            Err(e) => tracing::warn!("cannot restore the RSS key of {}: {e}", self.iface),
        }
    }
}

/// What the interface's RSS gives megatcp: the key and table to predict queues with, and
/// the report line. With `symmetric`, a symmetric key is set first (the guard restores
/// the old one).
fn rss(iface: &str, symmetric: bool) -> (Option<RssInfo>, Option<KeyGuard>, String) {
    let read = ethtool::rss(iface);
    let mut guard = None;
    let mut note = String::new();
    let read = match (read, symmetric) {
        (Ok(r), true) if !r.key.is_empty() => {
            let key = megatcp_nic::rss::symmetric_key(r.key.len());
            match ethtool::set_rss_key(iface, &key) {
                Ok(()) => {
                    guard = Some(KeyGuard {
                        iface: iface.to_string(),
                        old: r.key.clone(),
                    });
                    note = " (set by --rss-key symmetric; the old key comes back at exit)".into();
                    ethtool::rss(iface)
                }
                Err(e) => {
                    note = format!(" (--rss-key symmetric refused: {e})");
                    Ok(r)
                }
            }
        }
        (other, _) => other,
    };
    match read {
        Ok(r) if r.predictable() => {
            let key_hex: String = r.key.iter().map(|b| format!("{b:02x}")).collect();
            let symmetric = r.key == megatcp_nic::rss::symmetric_key(r.key.len());
            let line = format!(
                "RSS key {key_hex}{}{note}, indirection table of {} entries over queues {}: \
                 active opens pick ports whose replies hash to their own queue",
                if symmetric { " (symmetric)" } else { "" },
                r.table.len(),
                table_queues(&r.table)
            );
            let table = r
                .table
                .iter()
                .map(|&q| u16::try_from(q).unwrap_or(u16::MAX))
                .collect();
            let info = RssInfo {
                key: Some(r.key),
                symmetric,
                table,
            };
            (Some(info), guard, line)
        }
        Ok(r) => (
            None,
            guard,
            format!(
                "RSS hash function {} is not Toeplitz (or no key/table): cores steer flows \
                 in software{note}",
                r.hfunc
            ),
        ),
        Err(e) => (
            None,
            guard,
            format!(
                "RSS key not available ({e}): cores steer flows between them in software{note}"
            ),
        ),
    }
}

/// `0-3` or `0,2,5`: the queues a table names.
fn table_queues(table: &[u32]) -> String {
    let mut q: Vec<u32> = table.to_vec();
    q.sort_unstable();
    q.dedup();
    match (q.first(), q.last()) {
        (Some(a), Some(b)) if (b - a) as usize + 1 == q.len() && q.len() > 1 => {
            format!("{a}-{b}")
        }
        _ => q.iter().map(u32::to_string).collect::<Vec<_>>().join(","),
    }
}

pub(crate) fn run<A: App>(
    args: &BackendArgs,
    runtime: Runtime,
    app: &A,
) -> Result<Vec<CoreOutcome<A::Output>>, LaunchError> {
    let usage = LaunchError::Usage;
    let iface = args
        .iface
        .clone()
        .ok_or_else(|| usage("--iface is required with --backend afxdp".into()))?;
    let mac = iface_mac(&iface)?;
    let stack = crate::stack_config(args, mac)?;
    let cores = args.cores.0.len();
    let queues = args.nic.queues_for(cores).map_err(usage)?;

    // The interface's MTU bounds the stack's.
    let if_mtu = ethtool::mtu(&iface).map_err(|e| usage(format!("{iface}: MTU: {e}")))?;
    if args.nic.mtu > if_mtu {
        return Err(usage(format!(
            "--mtu {} is above {iface}'s MTU {if_mtu}: raise it first (ip link set dev {iface} \
             mtu {}; the peer too) or use a smaller --mtu",
            args.nic.mtu, args.nic.mtu
        )));
    }

    // Queues against cores.
    let driver = ethtool::driver(&iface).map_or_else(|e| format!("unknown ({e})"), |d| d.driver);
    let channels = ethtool::channels(&iface);
    let device_queues = match &channels {
        Ok(c) if c.receive_queues() > 0 => c.receive_queues(),
        _ => sysfs_rx_queues(&iface),
    };
    let set_command = |n: usize| match &channels {
        Ok(c) => c.set_command(&iface, n),
        Err(_) => format!("ethtool -L {iface} combined {n}"),
    };
    match queue_advice(&iface, device_queues, &queues, &set_command) {
        Err(e) => return Err(usage(e)),
        Ok(Some(w)) => tracing::warn!("{w}"),
        Ok(None) => {}
    }

    let (rss, _key_guard, rss_line) = rss(&iface, args.nic.rss_key == RssKeyArg::Symmetric);
    let steering = match args.nic.xdp {
        XdpSteer::All => Steering::All,
        XdpSteer::Address => Steering::Address {
            addr: stack.addrs[0].addr,
            ports: args.nic.xdp_ports.clone(),
            ephemeral: stack.ephemeral_ports.clone(),
        },
    };
    tracing::info!(
        "{iface}: driver {driver}, {device_queues} receive queue(s), megatcp reads \
         queue(s) {}; MTU {} (interface {if_mtu}, MSS {}); {rss_line}; checksums computed by \
         megatcp (AF_XDP transmit checksum offload needs TX metadata, which xsk-rs 0.11 \
         does not register)",
        queues
            .iter()
            .map(u32::to_string)
            .collect::<Vec<_>>()
            .join(","),
        args.nic.mtu,
        args.nic.mtu - 40,
    );
    let zero_copy = match args.nic.zero_copy {
        ZeroCopyArg::Auto => ZeroCopy::Auto,
        ZeroCopyArg::On => ZeroCopy::On,
        ZeroCopyArg::Off => ZeroCopy::Off,
    };
    run_bypass(args, runtime, app, mac, TxChecksum::Software, |core, _| {
        let mut cfg = AfXdpConfig::new(&iface, queues[core]);
        cfg.queues = u16::try_from(device_queues).unwrap_or(u16::MAX);
        cfg.mtu = args.nic.mtu;
        cfg.rss = rss.clone();
        cfg.steering = steering.clone();
        cfg.zero_copy = zero_copy;
        cfg.busy_poll = args.nic.busy_poll;
        AfXdpQueue::open(&cfg).map_err(|e| e.to_string())
    })
}

/// Receive queues from sysfs (`/sys/class/net/IF/queues/rx-N`), when ethtool has no count.
fn sysfs_rx_queues(iface: &str) -> u32 {
    std::fs::read_dir(format!("/sys/class/net/{iface}/queues"))
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().starts_with("rx-"))
                .count() as u32
        })
        .unwrap_or(1)
        .max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_queues_are_ranges_or_lists() {
        assert_eq!(table_queues(&[0, 1, 2, 3, 0, 1, 2, 3]), "0-3");
        assert_eq!(table_queues(&[5, 2, 5]), "2,5");
        assert_eq!(table_queues(&[7; 4]), "7");
        assert_eq!(table_queues(&[]), "");
    }
}
