//! The raw-frame echo: the ceiling of the medium, for `megatcp-bench` to set the servers'
//! rates against.
//!
//! [`reflect`] (`megatcp-echo reflect`) sends every IPv4 frame it receives on a NIC queue
//! back through the same queue: MAC addresses, IPv4 addresses and TCP/UDP ports swapped, no
//! TCP, no stack. Swapping leaves every checksum valid (the IPv4 header checksum and the
//! TCP/UDP pseudo-header sums are sums of 16-bit words, which do not depend on their order),
//! so nothing is recomputed. Anything else (ARP, runts) is dropped and counted.
//!
//! [`load`] (`megatcp-echo reflect-load`) is its client: `window` UDP datagrams of
//! `msg_size` bytes in flight (one per slot, like one request per connection), each sent
//! again when its reflection comes back; it counts the reflections per second. A slot's
//! frame carries the slot's sequence number: a slot whose frame has not come back for
//! [`STALL`] (lost, or held up) sends a fresh one (counted as a refill), and a reflection of
//! an older frame is counted as stale and not answered, so at most `window` frames are in
//! flight. The UDP checksum is 0 (none, allowed over IPv4). When the run ends the client
//! stops sending and waits up to [`STALL`] for what is still in flight, so that the medium
//! is quiet when it closes: a DPDK 22.11 memif server unmaps the shared rings when its peer
//! leaves, whatever its polling core is doing (see `nic/src/dpdk/mod.rs`).

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use megatcp_nic::NicQueue;
use serde::Serialize;

/// Ethernet + IPv4 + UDP header bytes of the client's frames.
const HEADERS: usize = 14 + 20 + 8;
/// How long the client waits for a slot's reflection before it sends the slot again (long
/// enough for a reflector that loses its CPU for a while on a shared machine).
pub const STALL: Duration = Duration::from_millis(20);

/// Turns `frame` into its reflection, sent from `mac`: MACs, IPv4 addresses and TCP/UDP
/// ports swapped. `false` (frame untouched) for anything but a whole IPv4 header.
pub fn reflect_frame(frame: &mut [u8], mac: [u8; 6]) -> bool {
    if frame.len() < 34 || frame[12..14] != [0x08, 0x00] || frame[14] >> 4 != 4 {
        return false;
    }
    let ihl = usize::from(frame[14] & 0x0f) * 4;
    if ihl < 20 || frame.len() < 14 + ihl {
        return false;
    }
    frame.copy_within(6..12, 0);
    frame[6..12].copy_from_slice(&mac);
    for i in 0..4 {
        frame.swap(26 + i, 30 + i);
    }
    let l4 = 14 + ihl;
    // Ports of TCP or UDP (not of a later fragment).
    let first_fragment = u16::from_be_bytes([frame[20], frame[21]]) & 0x1fff == 0;
    if matches!(frame[23], 6 | 17) && first_fragment && frame.len() >= l4 + 4 {
        frame.swap(l4, l4 + 2);
        frame.swap(l4 + 1, l4 + 3);
    }
    true
}

/// Counters of a reflector.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ReflectStats {
    /// Frames sent back.
    pub reflected: u64,
    /// Frames that were not IPv4 (ARP, ...), dropped.
    pub ignored: u64,
    /// Reflections the NIC refused (ring full), dropped.
    pub tx_full: u64,
}

/// Reflects what `nic` receives until `stop` is set (see the module docs); spins.
pub fn reflect<Q: NicQueue>(nic: &mut Q, mac: [u8; 6], stop: &AtomicBool) -> ReflectStats {
    let mut stats = ReflectStats::default();
    let mut batch: Vec<Vec<u8>> = Vec::with_capacity(64);
    while !stop.load(Ordering::Relaxed) {
        let mut n = 0;
        nic.rx_burst(64, &mut |f| {
            if batch.len() <= n {
                batch.push(Vec::with_capacity(f.data.len()));
            }
            let b = &mut batch[n];
            b.clear();
            b.extend_from_slice(f.data);
            if reflect_frame(b, mac) {
                n += 1;
            } else {
                stats.ignored += 1;
            }
        });
        for b in &batch[..n] {
            match megatcp_nic::tx_copy(nic, b) {
                Ok(()) => stats.reflected += 1,
                Err(_) => stats.tx_full += 1,
            }
        }
        if n > 0 {
            nic.tx_flush();
        } else {
            // As the engine does between empty polls: the ring's cache line left to the
            // writer for a moment, and less time inside the driver's receive (see `drain`).
            std::hint::spin_loop();
        }
    }
    stats
}

/// What the client sends and to whom.
#[derive(Debug, Clone, Copy)]
pub struct LoadSpec {
    /// This side's MAC address.
    pub mac: [u8; 6],
    /// This side's IPv4 address.
    pub ip: Ipv4Addr,
    /// The reflector's address (its MAC is not needed: frames go to the broadcast MAC, the
    /// reflector's queue takes them by address).
    pub server: Ipv4Addr,
    /// The UDP destination port.
    pub port: u16,
    /// Frames in flight.
    pub window: u16,
    /// UDP payload bytes.
    pub msg_size: usize,
    /// Measured time, after `warmup`.
    pub duration: Duration,
    /// Time before measuring.
    pub warmup: Duration,
}

/// What the client measured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct LoadReport {
    /// Reflections received per second over the measured time: one transaction is one frame
    /// each way.
    pub txns_per_sec: f64,
    /// Seconds measured.
    pub seconds: f64,
    /// Frames sent over the measured time.
    pub sent: u64,
    /// Current reflections received over the measured time.
    pub received: u64,
    /// Reflections of frames a refill had replaced (whole run).
    pub stale: u64,
    /// Frames sent again because the slot's last one had not come back for [`STALL`]
    /// (whole run).
    pub refills: u64,
    /// Frames the NIC refused (whole run): their slot waits for the next refill.
    pub tx_full: u64,
}

/// The client's frame of slot `slot`, sequence `seq` (see the module docs).
pub fn client_frame(spec: &LoadSpec, slot: u16, seq: u32) -> Vec<u8> {
    let mut f = vec![0u8; HEADERS + spec.msg_size.max(4)];
    f[0..6].fill(0xff);
    f[6..12].copy_from_slice(&spec.mac);
    f[12..14].copy_from_slice(&[0x08, 0x00]);
    let ip_len = u16::try_from(f.len() - 14).unwrap_or(u16::MAX);
    let ip = &mut f[14..34];
    ip[0] = 0x45;
    ip[2..4].copy_from_slice(&ip_len.to_be_bytes());
    ip[6] = 0x40; // DF
    ip[8] = 64;
    ip[9] = 17;
    ip[12..16].copy_from_slice(&spec.ip.octets());
    ip[16..20].copy_from_slice(&spec.server.octets());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let folded = (sum & 0xffff) + (sum >> 16);
    let check = !(((folded & 0xffff) + (folded >> 16)) as u16);
    ip[10..12].copy_from_slice(&check.to_be_bytes());
    let udp = &mut f[34..];
    // Source port: one per slot (like one connection per slot).
    udp[0..2].copy_from_slice(&(40_000u16.wrapping_add(slot)).to_be_bytes());
    udp[2..4].copy_from_slice(&spec.port.to_be_bytes());
    udp[4..6].copy_from_slice(&(ip_len - 20).to_be_bytes());
    udp[8..12].copy_from_slice(&seq.to_be_bytes());
    f
}

/// (slot, sequence) of a reflection of one of our frames, else `None`.
fn reflection(spec: &LoadSpec, f: &[u8]) -> Option<(u16, u32)> {
    if f.len() < HEADERS + 4 || f[12..14] != [0x08, 0x00] || f[14] != 0x45 || f[23] != 17 {
        return None;
    }
    if f[26..30] != spec.server.octets() || f[30..34] != spec.ip.octets() {
        return None;
    }
    let slot = u16::from_be_bytes([f[36], f[37]]).wrapping_sub(40_000);
    let seq = u32::from_be_bytes([f[42], f[43], f[44], f[45]]);
    (slot < spec.window).then_some((slot, seq))
}

/// Runs the client over `nic` (see the module docs) until the measured time is over or
/// `stop` is set.
pub fn load<Q: NicQueue>(nic: &mut Q, spec: &LoadSpec, stop: &AtomicBool) -> LoadReport {
    let mut frames: Vec<Vec<u8>> = (0..spec.window).map(|s| client_frame(spec, s, 0)).collect();
    let mut seqs = vec![0u32; usize::from(spec.window)];
    let mut r = LoadReport::default();
    let (mut sent, mut received) = (0u64, 0u64);
    let send =
        |nic: &mut Q, frame: &[u8], sent: &mut u64, full: &mut u64| match megatcp_nic::tx_copy(
            nic, frame,
        ) {
            Ok(()) => *sent += 1,
            Err(_) => *full += 1,
        };
    for f in &frames {
        send(nic, f, &mut sent, &mut r.tx_full);
    }
    nic.tx_flush();
    let start = Instant::now();
    let (measure_from, end) = (start + spec.warmup, start + spec.warmup + spec.duration);
    let mut measuring = false;
    let mut sent_at = vec![start; usize::from(spec.window)];
    let mut next_scan = start + STALL;
    let mut due: Vec<u16> = Vec::with_capacity(64);
    let ended = loop {
        let now = Instant::now();
        if now >= end || stop.load(Ordering::Relaxed) {
            break now;
        }
        if !measuring && now >= measure_from {
            measuring = true;
            (sent, received) = (0, 0);
        }
        due.clear();
        let mut stale = 0;
        nic.rx_burst(64, &mut |f| {
            if let Some((slot, seq)) = reflection(spec, f.data) {
                if seqs[usize::from(slot)] == seq {
                    due.push(slot);
                } else {
                    stale += 1;
                }
            }
        });
        r.stale += stale;
        received += due.len() as u64;
        if now >= next_scan {
            // A slot whose frame has not come back for STALL (lost, or its ring was full)
            // sends a fresh one.
            next_scan = now + STALL;
            for (slot, at) in sent_at.iter().enumerate() {
                if now.saturating_duration_since(*at) >= STALL && !due.contains(&(slot as u16)) {
                    r.refills += 1;
                    due.push(slot as u16);
                }
            }
        }
        if due.is_empty() {
            continue;
        }
        for &slot in &due {
            let i = usize::from(slot);
            seqs[i] = seqs[i].wrapping_add(1);
            frames[i][42..46].copy_from_slice(&seqs[i].to_be_bytes());
            sent_at[i] = now;
            send(nic, &frames[i], &mut sent, &mut r.tx_full);
        }
        nic.tx_flush();
    };
    // Not measured: the medium goes quiet before the caller closes it.
    drain(nic, spec, &seqs, ended + STALL);
    let secs = if measuring {
        ended.saturating_duration_since(measure_from).as_secs_f64()
    } else {
        0.0
    };
    r.seconds = secs;
    r.sent = sent;
    r.received = if measuring { received } else { 0 };
    r.txns_per_sec = if secs > 0.0 {
        r.received as f64 / secs
    } else {
        0.0
    };
    r
}

/// Receives, without sending, until the current frame of every slot has come back or
/// `until`: the client's last frames leave the medium before it closes (see the module docs).
fn drain<Q: NicQueue>(nic: &mut Q, spec: &LoadSpec, seqs: &[u32], until: Instant) {
    let mut back = vec![false; seqs.len()];
    let mut left = seqs.len();
    while left > 0 && Instant::now() < until {
        nic.rx_burst(64, &mut |f| {
            if let Some((slot, seq)) = reflection(spec, f.data) {
                let i = usize::from(slot);
                if seqs[i] == seq && !back[i] {
                    back[i] = true;
                    left -= 1;
                }
            }
        });
    }
}

/// Sets the returned flag on SIGINT or SIGTERM.
pub fn stop_on_signals() -> std::io::Result<Arc<AtomicBool>> {
    let stop = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, stop.clone())?;
    }
    Ok(stop)
}

/// `megatcp-echo reflect` and `reflect-load`.
#[derive(clap::Subcommand, Debug)]
pub enum ReflectCmd {
    /// Reflect every IPv4 frame of a NIC queue (AF_XDP or DPDK) back through it (the
    /// medium's ceiling).
    Serve {
        /// The queue.
        #[command(flatten)]
        nic: RawNic,
    },
    /// Keep `--window` UDP frames in flight against a reflector; count reflections per
    /// second.
    Load {
        /// The queue.
        #[command(flatten)]
        nic: RawNic,
        /// The reflector's address and port.
        #[arg(long)]
        connect: std::net::SocketAddrV4,
        /// Frames in flight (like connections with one request each).
        #[arg(long, default_value_t = 64)]
        window: u16,
        /// UDP payload bytes (at least 4).
        #[arg(long, default_value_t = 64)]
        msg_size: usize,
        /// Measured time.
        #[arg(long, default_value = "3s", value_parser = crate::duration::parse)]
        duration: Duration,
        /// Time before measuring.
        #[arg(long, default_value = "0.5s", value_parser = crate::duration::parse)]
        warmup: Duration,
        /// JSON report on standard output.
        #[arg(long)]
        json: bool,
    },
}

/// The queue of a reflector or its client: an AF_XDP queue of `--iface`, or the first port
/// of DPDK's EAL started with `--dpdk-args` (a memif or other vdev; never a PCI device).
#[derive(clap::Args, Debug)]
pub struct RawNic {
    /// The medium: one of `--iface` and `--dpdk-args`.
    #[command(flatten)]
    pub medium: Medium,
    /// This side's address (`A` or `A/PREFIX`; the prefix is ignored). Over AF_XDP the XDP
    /// program hands the queue the frames for it; a DPDK port takes every frame.
    #[arg(long)]
    pub ip: String,
    /// NIC queue (AF_XDP).
    #[arg(long, default_value_t = 0)]
    pub queue: u32,
    /// CPU to pin the thread to.
    #[arg(long)]
    pub cores: Option<usize>,
}

/// Where the queue is: exactly one of the two.
#[derive(clap::Args, Debug)]
#[group(required = true, multiple = false)]
pub struct Medium {
    /// Interface (AF_XDP).
    #[arg(long)]
    pub iface: Option<String>,
    /// DPDK EAL arguments naming one vdev, e.g. `--vdev net_memif0,role=server` (DPDK).
    #[arg(long, allow_hyphen_values = true)]
    pub dpdk_args: Option<String>,
}

impl std::fmt::Display for LoadReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{:.0} reflections/s over {:.2} s (sent {}, received {}, stale {}, resent {}, \
             tx full {})",
            self.txns_per_sec,
            self.seconds,
            self.sent,
            self.received,
            self.stale,
            self.refills,
            self.tx_full
        )
    }
}

/// Runs `cmd`; `Err` with the message to print.
pub fn run(cmd: ReflectCmd) -> Result<(), String> {
    let nic = match &cmd {
        ReflectCmd::Serve { nic } | ReflectCmd::Load { nic, .. } => nic,
    };
    let ip: Ipv4Addr = nic
        .ip
        .split('/')
        .next()
        .unwrap_or_default()
        .parse()
        .map_err(|e| format!("--ip {}: {e}", nic.ip))?;
    if let Some(cpu) = nic.cores
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(format!("cannot pin to CPU {cpu}"));
    }
    let stop = stop_on_signals().map_err(|e| format!("signal handlers: {e}"))?;
    match (&nic.medium.iface, &nic.medium.dpdk_args) {
        (Some(iface), _) => {
            let mac = crate::iface_mac(iface).map_err(|e| e.to_string())?.0;
            let queue = open_afxdp(iface, nic.queue, ip)?;
            eprintln!(
                "megatcp-echo: AF_XDP on {iface} queue {} for {ip}: raw reflection",
                nic.queue
            );
            drive(queue, mac, &cmd, ip, &stop)
        }
        (None, Some(eal)) => {
            let (queue, mac, name) = open_dpdk(eal)?;
            eprintln!("megatcp-echo: DPDK port {name} for {ip}: raw reflection");
            drive(queue, mac, &cmd, ip, &stop)
        }
        (None, None) => Err("--iface or --dpdk-args names the queue".into()),
    }
}

/// Runs `cmd` on `queue` (this side's MAC `mac` and address `ip`) until done or `stop`.
fn drive<Q: NicQueue>(
    mut queue: Q,
    mac: [u8; 6],
    cmd: &ReflectCmd,
    ip: Ipv4Addr,
    stop: &AtomicBool,
) -> Result<(), String> {
    match cmd {
        ReflectCmd::Serve { .. } => {
            let stats = reflect(&mut queue, mac, stop);
            eprintln!(
                "megatcp-echo: reflected {} frames, ignored {}, tx full {}",
                stats.reflected, stats.ignored, stats.tx_full
            );
        }
        &ReflectCmd::Load {
            connect,
            window,
            msg_size,
            duration,
            warmup,
            json,
            ..
        } => {
            if window == 0 || msg_size < 4 || HEADERS + msg_size > 1514 {
                return Err("--window must be at least 1, --msg-size 4 to 1472".into());
            }
            let spec = LoadSpec {
                mac,
                ip,
                server: *connect.ip(),
                port: connect.port(),
                window,
                msg_size,
                duration,
                warmup,
            };
            let r = load(&mut queue, &spec, stop);
            crate::report::print(&r, json);
        }
    }
    Ok(())
}

/// The AF_XDP queue `queue` of `iface`, handed the frames for `ip`.
#[cfg(feature = "afxdp")]
fn open_afxdp(iface: &str, queue: u32, ip: Ipv4Addr) -> Result<impl NicQueue, String> {
    use megatcp_nic::afxdp::{AfXdpConfig, AfXdpQueue, Steering};
    let mut cfg = AfXdpConfig::new(iface, queue);
    cfg.steering = Steering::Address {
        addr: ip,
        ports: Vec::new(),
        ephemeral: 0..=0,
    };
    AfXdpQueue::open(&cfg).map_err(|e| format!("AF_XDP on {iface}: {e}"))
}

/// Without AF_XDP built in there is no queue to open.
#[cfg(not(feature = "afxdp"))]
fn open_afxdp(
    _iface: &str,
    _queue: u32,
    _ip: Ipv4Addr,
) -> Result<megatcp_nic::wire::WireQueue, String> {
    Err("raw reflection over AF_XDP: build megatcp-echo with --features afxdp".into())
}

/// Queue 0 of the first port of an EAL started with `eal_args` (which must name a vdev:
/// no PCI device is taken), its MAC and its name.
#[cfg(feature = "dpdk")]
fn open_dpdk(eal_args: &str) -> Result<(impl NicQueue, [u8; 6], String), String> {
    use megatcp_nic::dpdk::{DpdkPort, EalConfig, PortConfig, init_eal};
    let cfg = EalConfig::from_arg_string(eal_args);
    if !cfg.args.iter().any(|a| a.starts_with("--vdev")) {
        return Err("--dpdk-args must name a --vdev (e.g. net_memif0,role=server)".into());
    }
    let eal = init_eal(&cfg).map_err(|e| e.to_string())?;
    let id = eal
        .ports()
        .first()
        .copied()
        .ok_or_else(|| format!("DPDK found no device (EAL arguments {:?})", eal.args()))?;
    let port = DpdkPort::open(eal, id, &PortConfig::new(1)).map_err(|e| e.to_string())?;
    let queue = port.queue(0).map_err(|e| e.to_string())?;
    Ok((queue, port.mac(), port.name().to_string()))
}

/// Without DPDK built in there is no port to open.
#[cfg(not(feature = "dpdk"))]
fn open_dpdk(_eal_args: &str) -> Result<(megatcp_nic::wire::WireQueue, [u8; 6], String), String> {
    Err("raw reflection over DPDK: build megatcp-echo with --features dpdk".into())
}

#[cfg(test)]
mod tests {
    use megatcp_nic::wire::{WireConfig, pair};

    use super::*;

    fn spec() -> LoadSpec {
        LoadSpec {
            mac: [2, 0, 0, 0, 0, 20],
            ip: Ipv4Addr::new(10, 0, 0, 20),
            server: Ipv4Addr::new(10, 0, 0, 10),
            port: 7,
            window: 8,
            msg_size: 64,
            duration: Duration::from_millis(200),
            warmup: Duration::from_millis(50),
        }
    }

    #[test]
    fn a_reflection_swaps_addresses_and_ports_and_keeps_checksums_valid() {
        let s = spec();
        let mut f = client_frame(&s, 3, 9);
        let orig = f.clone();
        assert!(reflect_frame(&mut f, [2, 0, 0, 0, 0, 10]));
        assert_eq!(&f[0..6], &orig[6..12]);
        assert_eq!(&f[6..12], &[2, 0, 0, 0, 0, 10]);
        assert_eq!((&f[26..30], &f[30..34]), (&orig[30..34], &orig[26..30]));
        assert_eq!((&f[34..36], &f[36..38]), (&orig[36..38], &orig[34..36]));
        // The IPv4 header still sums to 0xffff.
        let sum: u32 = f[14..34]
            .chunks(2)
            .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
            .sum();
        assert_eq!((sum & 0xffff) + (sum >> 16), 0xffff);
        assert_eq!(reflection(&s, &f), Some((3, 9)));
        // Not IPv4: left alone.
        let mut arp = orig.clone();
        arp[12..14].copy_from_slice(&[0x08, 0x06]);
        assert!(!reflect_frame(&mut arp, [0; 6]));
        assert!(!reflect_frame(&mut [0u8; 20], [0; 6]));
    }

    #[test]
    fn the_client_counts_reflections_over_the_in_memory_wire() {
        let (mut a, mut b) = pair(WireConfig::default());
        let (mut client, mut server) = (a.remove(0), b.remove(0));
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let reflector =
            std::thread::spawn(move || reflect(&mut server, [2, 0, 0, 0, 0, 10], &flag));
        let r = load(&mut client, &spec(), &AtomicBool::new(false));
        stop.store(true, Ordering::Relaxed);
        let stats = reflector.join().unwrap();
        assert!(r.received > 100 && r.txns_per_sec > 0.0, "{r:?}");
        assert!(r.seconds >= 0.19, "{r:?}");
        assert!(
            stats.reflected >= r.received && stats.ignored == 0,
            "{stats:?}"
        );
    }
}
