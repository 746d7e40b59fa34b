//! `megatcp-bench synflood`: spoofed TCP SYNs at a server, from raw Ethernet frames sent
//! through an `AF_PACKET` socket ([`megatcp_nic::packet`]), in batches of one `sendmmsg`.
//!
//! Every SYN looks like a Linux client's first segment (MSS 1460, SACK permitted, window
//! scale 7, a timestamp) from a spoofed address: one address, a range or a prefix
//! (`--sources`), a random port, sequence number and timestamp. Its source MAC address is a
//! locally administered one made from the spoofed address, so the server's SYN-ACKs go to
//! a station that does not exist: nobody answers them, as in a real flood.
//!
//! ```text
//! ip netns exec megatcp-cli megatcp-bench synflood --iface mtcp-cli --target 10.77.0.10:7 \
//!     --sources 10.77.0.100-10.77.0.199 --duration 10s            # as fast as it goes
//! ip netns exec megatcp-cli megatcp-bench synflood --iface mtcp-cli --target 10.77.0.10:7 \
//!     --rate 50000 --count 20000 --json
//! ```

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::str::FromStr;
use std::time::{Duration, Instant};

use clap::Args;
use megatcp_nic::packet::{BATCH, PacketTx};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use serde::Serialize;
use smoltcp::phy::ChecksumCapabilities;
use smoltcp::wire::{
    EthernetAddress, EthernetFrame, EthernetProtocol, EthernetRepr, IpAddress, IpProtocol,
    Ipv4Packet, Ipv4Repr, TcpControl, TcpPacket, TcpRepr, TcpSeqNumber, TcpTimestampRepr,
};

/// The flags of `megatcp-bench synflood`.
#[derive(Args, Debug, Clone)]
pub(crate) struct SynfloodArgs {
    /// Interface to send on, in this network namespace (e.g. mtcp-cli).
    #[arg(long)]
    pub(crate) iface: String,
    /// The server: ADDR:PORT.
    #[arg(long)]
    pub(crate) target: SocketAddrV4,
    /// The server's MAC address (default: resolved through the kernel's ARP).
    #[arg(long)]
    pub(crate) target_mac: Option<Mac>,
    /// Spoofed source addresses: one address (`10.77.0.99`), a range
    /// (`10.77.0.100-10.77.0.199`) or a prefix (`10.77.1.0/24`).
    #[arg(long, default_value = "10.77.0.99")]
    pub(crate) sources: Sources,
    /// SYNs per second (default: as fast as the sender goes).
    #[arg(long)]
    pub(crate) rate: Option<f64>,
    /// Stop after this many SYNs.
    #[arg(long)]
    pub(crate) count: Option<u64>,
    /// Stop after this long: `10s`, `500ms`.
    #[arg(long, default_value = "10s", value_parser = megatcp_launch::duration::parse)]
    pub(crate) duration: Duration,
    /// CPU to pin the sender to.
    #[arg(long)]
    pub(crate) cpu: Option<usize>,
    /// Seed of ports, sequence numbers and timestamps (default: from the clock).
    #[arg(long)]
    pub(crate) seed: Option<u64>,
    /// Print the result as JSON.
    #[arg(long)]
    pub(crate) json: bool,
}

/// A MAC address `aa:bb:cc:dd:ee:ff`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mac(pub(crate) [u8; 6]);

impl FromStr for Mac {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let bytes: Vec<u8> = s
            .split(':')
            .map(|b| u8::from_str_radix(b, 16))
            .collect::<Result<_, _>>()
            .map_err(|e| format!("bad MAC address {s:?}: {e}"))?;
        <[u8; 6]>::try_from(bytes)
            .map(Mac)
            .map_err(|_| format!("bad MAC address {s:?}: six bytes aa:bb:cc:dd:ee:ff"))
    }
}

/// Spoofed source addresses: `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Sources {
    first: u32,
    last: u32,
}

impl Sources {
    fn len(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }

    fn nth(&self, i: u64) -> Ipv4Addr {
        Ipv4Addr::from(self.first + (i % self.len()) as u32)
    }
}

impl FromStr for Sources {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let ip = |t: &str| {
            t.trim()
                .parse::<Ipv4Addr>()
                .map(u32::from)
                .map_err(|e| format!("bad address {t:?} in {s:?}: {e}"))
        };
        let (first, last) = if let Some((a, b)) = s.split_once('-') {
            (ip(a)?, ip(b)?)
        } else if let Some((a, n)) = s.split_once('/') {
            let n: u32 = n
                .parse()
                .ok()
                .filter(|n| (8..=32).contains(n))
                .ok_or_else(|| format!("bad prefix length in {s:?}: 8..=32"))?;
            let mask = u32::MAX.checked_shl(32 - n).unwrap_or(0);
            let base = ip(a)? & mask;
            (base, base | !mask)
        } else {
            let a = ip(s)?;
            (a, a)
        };
        if first > last {
            return Err(format!("empty range {s:?}"));
        }
        Ok(Sources { first, last })
    }
}

/// What a flood sent.
#[derive(Debug, Clone, Copy, Serialize)]
pub(crate) struct FloodReport {
    /// SYNs the kernel took.
    pub(crate) sent: u64,
    /// Seconds from the first batch to the last.
    pub(crate) seconds: f64,
    /// SYNs per second.
    pub(crate) rate: f64,
    /// Batches refused for a moment (kernel buffers full).
    pub(crate) busy: u64,
}

/// The locally administered MAC address a spoofed source `ip` sends from.
fn spoofed_mac(ip: Ipv4Addr) -> EthernetAddress {
    let o = ip.octets();
    EthernetAddress([0x02, 0x5f, o[0], o[1], o[2], o[3]])
}

/// Writes a SYN from `src` to `dst` into `buf` (cleared first).
fn syn_frame(
    buf: &mut Vec<u8>,
    dst_mac: EthernetAddress,
    src: SocketAddrV4,
    dst: SocketAddrV4,
    seq: u32,
    tsval: u32,
) {
    let tcp = TcpRepr {
        src_port: src.port(),
        dst_port: dst.port(),
        control: TcpControl::Syn,
        seq_number: TcpSeqNumber(seq as i32),
        ack_number: None,
        window_len: 64240,
        window_scale: Some(7),
        max_seg_size: Some(1460),
        sack_permitted: true,
        sack_ranges: [None; 3],
        timestamp: Some(TcpTimestampRepr::new(tsval, 0)),
        payload: &[],
    };
    let ip = Ipv4Repr {
        src_addr: *src.ip(),
        dst_addr: *dst.ip(),
        next_header: IpProtocol::Tcp,
        payload_len: tcp.buffer_len(),
        hop_limit: 64,
    };
    let eth = EthernetRepr {
        src_addr: spoofed_mac(*src.ip()),
        dst_addr: dst_mac,
        ethertype: EthernetProtocol::Ipv4,
    };
    buf.clear();
    buf.resize(eth.buffer_len() + ip.buffer_len() + tcp.buffer_len(), 0);
    let mut frame = EthernetFrame::new_unchecked(&mut buf[..]);
    eth.emit(&mut frame);
    let mut packet = Ipv4Packet::new_unchecked(frame.payload_mut());
    let caps = ChecksumCapabilities::default();
    ip.emit(&mut packet, &caps);
    tcp.emit(
        &mut TcpPacket::new_unchecked(packet.payload_mut()),
        &IpAddress::Ipv4(*src.ip()),
        &IpAddress::Ipv4(*dst.ip()),
        &caps,
    );
}

/// The MAC address of `ip` from this namespace's ARP table (`/proc/net/arp`), asking the
/// kernel to resolve it first (one UDP datagram to the discard port) when it is not there.
fn resolve_mac(ip: Ipv4Addr) -> Result<Mac, String> {
    let lookup = || -> Option<Mac> {
        let table = std::fs::read_to_string("/proc/net/arp").ok()?;
        table.lines().skip(1).find_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            // IP address, HW type, Flags (0x2: complete), HW address, Mask, Device.
            (f.len() >= 4 && f[0] == ip.to_string() && f[2] == "0x2")
                .then(|| f[3].parse().ok())
                .flatten()
        })
    };
    if let Some(m) = lookup() {
        return Ok(m);
    }
    let sock = UdpSocket::bind("0.0.0.0:0").map_err(|e| format!("udp socket: {e}"))?;
    let end = Instant::now() + Duration::from_secs(3);
    while Instant::now() < end {
        let _ = sock.send_to(b"arp", SocketAddrV4::new(ip, 9));
        std::thread::sleep(Duration::from_millis(100));
        if let Some(m) = lookup() {
            return Ok(m);
        }
    }
    Err(format!(
        "cannot resolve the MAC address of {ip} (no ARP answer in 3 s): pass --target-mac"
    ))
}

/// Sends the flood; returns what was sent.
pub(crate) fn flood(args: &SynfloodArgs) -> Result<FloodReport, String> {
    if let Some(r) = args.rate
        && !(r.is_finite() && r > 0.0)
    {
        return Err(format!("--rate {r}: must be positive"));
    }
    if let Some(cpu) = args.cpu
        && !core_affinity::set_for_current(core_affinity::CoreId { id: cpu })
    {
        return Err(format!("cannot pin the sender to CPU {cpu}"));
    }
    let mut tx = PacketTx::open(&args.iface).map_err(|e| format!("{}: {e}", args.iface))?;
    let dst_mac = match args.target_mac {
        Some(m) => m,
        None => resolve_mac(*args.target.ip())?,
    };
    let dst_mac = EthernetAddress(dst_mac.0);
    let seed = args.seed.unwrap_or_else(|| {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
    });
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let limit = args.count.unwrap_or(u64::MAX);
    let mut bufs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(128)).collect();
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < limit && start.elapsed() < args.duration {
        let mut n = BATCH.min((limit - sent) as usize);
        if let Some(rate) = args.rate {
            // Paced: no more than the rate allows by now.
            let due = (start.elapsed().as_secs_f64() * rate) as u64;
            if due <= sent {
                let next = Duration::from_secs_f64((sent + 1) as f64 / rate);
                std::thread::sleep(next.saturating_sub(start.elapsed()));
                continue;
            }
            n = n.min((due - sent) as usize);
        }
        for (i, buf) in bufs.iter_mut().take(n).enumerate() {
            let src = SocketAddrV4::new(
                args.sources.nth(sent + i as u64),
                rng.random_range(1024..=65535),
            );
            syn_frame(buf, dst_mac, src, args.target, rng.random(), rng.random());
        }
        let frames: Vec<&[u8]> = bufs[..n].iter().map(Vec::as_slice).collect();
        let took = tx.send(&frames).map_err(|e| e.to_string())?;
        sent += took as u64;
        if took < n {
            // The kernel's buffers are full: let them drain.
            std::thread::yield_now();
        }
    }
    let seconds = start.elapsed().as_secs_f64();
    Ok(FloodReport {
        sent,
        seconds,
        rate: sent as f64 / seconds.max(1e-9),
        busy: tx.stats().busy,
    })
}

/// `megatcp-bench synflood`: floods and prints the report.
pub(crate) fn run(args: &SynfloodArgs) -> Result<(), String> {
    let r = flood(args)?;
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&r).map_err(|e| e.to_string())?
        );
    } else {
        println!(
            "synflood: {} SYNs to {} in {:.2} s = {:.0} SYN/s ({} busy batches)",
            r.sent, args.target, r.seconds, r.rate, r.busy
        );
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sources_parse_as_one_a_range_or_a_prefix() {
        let one: Sources = "10.77.0.99".parse().unwrap();
        assert_eq!((one.len(), one.nth(5)), (1, Ipv4Addr::new(10, 77, 0, 99)));
        let r: Sources = "10.77.0.100-10.77.0.199".parse().unwrap();
        assert_eq!(r.len(), 100);
        assert_eq!(r.nth(100), Ipv4Addr::new(10, 77, 0, 100));
        let p: Sources = "10.77.1.7/24".parse().unwrap();
        assert_eq!((p.len(), p.nth(0)), (256, Ipv4Addr::new(10, 77, 1, 0)));
        for bad in ["10.77.0.9-10.77.0.1", "10.0.0.0/4", "x", "10.0.0.1-"] {
            assert!(bad.parse::<Sources>().is_err(), "{bad}");
        }
    }

    #[test]
    fn macs_parse() {
        assert_eq!(
            "02:5f:0a:4d:00:63".parse::<Mac>(),
            Ok(Mac([2, 0x5f, 10, 77, 0, 99]))
        );
        assert!("02:5f:0a".parse::<Mac>().is_err());
        assert!("zz:5f:0a:4d:00:63".parse::<Mac>().is_err());
    }

    #[test]
    fn a_syn_frame_parses_back_with_valid_checksums() {
        let mut buf = Vec::new();
        let src = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 99), 40000);
        let dst = SocketAddrV4::new(Ipv4Addr::new(10, 77, 0, 10), 7);
        let mac = EthernetAddress([2, 0, 0, 0, 0, 1]);
        syn_frame(&mut buf, mac, src, dst, 12345, 777);
        let eth = EthernetFrame::new_checked(&buf[..]).unwrap();
        assert_eq!(eth.dst_addr(), mac);
        assert_eq!(eth.src_addr(), spoofed_mac(*src.ip()));
        let ip = Ipv4Packet::new_checked(eth.payload()).unwrap();
        assert!(ip.verify_checksum());
        let caps = ChecksumCapabilities::default();
        let ipr = Ipv4Repr::parse(&ip, &caps).unwrap();
        assert_eq!((ipr.src_addr, ipr.dst_addr), (*src.ip(), *dst.ip()));
        let tcp = TcpPacket::new_checked(ip.payload()).unwrap();
        let s = IpAddress::Ipv4(*src.ip());
        let d = IpAddress::Ipv4(*dst.ip());
        assert!(tcp.verify_checksum(&s, &d));
        let t = TcpRepr::parse(&tcp, &s, &d, &caps).unwrap();
        assert_eq!(t.control, TcpControl::Syn);
        assert_eq!((t.src_port, t.dst_port), (40000, 7));
        assert_eq!(t.seq_number, TcpSeqNumber(12345));
        assert_eq!(t.max_seg_size, Some(1460));
        assert_eq!(t.timestamp, Some(TcpTimestampRepr::new(777, 0)));
    }
}
