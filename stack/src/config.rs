//! Configuration of a [`Stack`](crate::Stack): addresses, ARP, TCP defaults, limits.

use core::net::Ipv4Addr;
use core::ops::RangeInclusive;

use crate::{Duration, MacAddr, TxChecksum};

/// One local IPv4 address with its subnet prefix length (e.g. `10.77.0.1/24`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct LocalAddr {
    /// The address.
    pub addr: Ipv4Addr,
    /// Subnet prefix length, 0..=32.
    pub prefix_len: u8,
}

impl LocalAddr {
    /// `addr/prefix_len`.
    pub const fn new(addr: Ipv4Addr, prefix_len: u8) -> Self {
        Self { addr, prefix_len }
    }

    /// Whether `other` is on this address's subnet (reachable without a gateway).
    pub fn contains(&self, other: Ipv4Addr) -> bool {
        let bits = u32::from(self.prefix_len.min(32));
        if bits == 0 {
            return true;
        }
        let mask = u32::MAX << (32 - bits);
        (u32::from(self.addr) & mask) == (u32::from(other) & mask)
    }

    /// The subnet's broadcast address (none for /31 and /32).
    pub fn broadcast(&self) -> Option<Ipv4Addr> {
        if self.prefix_len >= 31 {
            return None;
        }
        let mask = u32::MAX
            .checked_shl(32 - u32::from(self.prefix_len))
            .unwrap_or(0);
        Some(Ipv4Addr::from(u32::from(self.addr) | !mask))
    }
}

impl core::fmt::Display for LocalAddr {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix_len)
    }
}

/// Congestion control algorithm of new TCP connections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CongestionControl {
    /// No congestion control (send whatever the peer's window allows).
    None,
    /// Reno.
    Reno,
    /// CUBIC (the Linux default).
    Cubic,
}

/// ARP settings.
#[derive(Debug, Clone)]
pub struct ArpConfig {
    /// Maximum number of neighbours kept in the cache.
    pub cache_size: usize,
    /// How long a learned neighbour stays valid.
    pub entry_ttl: Duration,
    /// Interval between ARP requests for an unresolved neighbour.
    pub retry_interval: Duration,
    /// Requests sent before an unresolved neighbour's queued packets are dropped.
    pub max_requests: u8,
    /// Packets queued per neighbour while it resolves; more are dropped and counted.
    pub max_queued_per_neighbour: usize,
    /// Neighbours that may be resolving at once; packets to further ones are dropped.
    pub max_resolving: usize,
}

impl Default for ArpConfig {
    fn default() -> Self {
        Self {
            cache_size: 1024,
            entry_ttl: Duration::from_secs(60),
            retry_interval: Duration::from_secs(1),
            max_requests: 3,
            max_queued_per_neighbour: 128,
            max_resolving: 256,
        }
    }
}

/// Defaults for every new TCP connection (server-grade; each can be changed).
#[derive(Debug, Clone)]
pub struct TcpConfig {
    /// Receive buffer per connection, bytes (window scaling is used above 64 KiB).
    pub rx_buffer: usize,
    /// Send buffer per connection, bytes.
    pub tx_buffer: usize,
    /// Nagle's algorithm (off by default: message-oriented servers want no coalescing delay).
    pub nagle: bool,
    /// Delayed-ACK timeout; `None` acknowledges at once.
    pub ack_delay: Option<Duration>,
    /// Congestion control.
    pub congestion: CongestionControl,
    /// RFC 7323 timestamps.
    pub timestamps: bool,
    /// Abort a connection whose sent data stays unacknowledged this long (`None`: never).
    pub user_timeout: Option<Duration>,
    /// Send keep-alive probes after this much idle time (`None`: off).
    pub keep_alive: Option<Duration>,
    /// After `close`, the connection is aborted if it has not finished closing within this
    /// time (e.g. a peer that never sends its FIN).
    pub orphan_timeout: Duration,
    /// How long a closed connection stays in TIME-WAIT, as a compact record (see
    /// `ARCHITECTURE.md` for the choice of the default, 5 s). At most 120 s.
    pub time_wait: Duration,
    /// Minimum (and initial) retransmission timeout: 1 s divided by a whole number from 1
    /// to 100 (smoltcp's own 1 s, run on a faster clock; see `ARCHITECTURE.md`). Default
    /// 200 ms, as Linux.
    pub min_rto: Duration,
    /// Tail-loss probe: when data sent stays unacknowledged for two smoothed round trips
    /// plus this allowance, its first unacknowledged segment is sent again (`None`: off).
    pub tail_probe: Option<Duration>,
    /// A handshake (SYN-RECEIVED or SYN-SENT) not completed in this time is given up: a
    /// half-open passive connection is dropped silently, an active open fails.
    pub handshake_timeout: Duration,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            rx_buffer: 16 * 1024,
            tx_buffer: 16 * 1024,
            nagle: false,
            ack_delay: Some(Duration::from_millis(1)),
            congestion: CongestionControl::Cubic,
            timestamps: true,
            user_timeout: Some(Duration::from_secs(300)),
            keep_alive: None,
            orphan_timeout: Duration::from_secs(60),
            time_wait: Duration::from_secs(5),
            min_rto: Duration::from_millis(200),
            tail_probe: Some(Duration::from_millis(10)),
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// Everything a [`Stack`](crate::Stack) is created with.
#[derive(Debug, Clone)]
pub struct StackConfig {
    /// This stack's Ethernet address.
    pub mac: MacAddr,
    /// Local IPv4 addresses (at least one). A load generator uses several to open more than
    /// ~64k connections to one server port.
    pub addrs: Vec<LocalAddr>,
    /// Next hop for destinations outside every local subnet.
    pub gateway: Option<Ipv4Addr>,
    /// IP MTU (1500 on Ethernet).
    pub mtu: usize,
    /// Who fills the checksums of outgoing TCP segments: the stack, or the NIC (only when
    /// the NIC queue the frames go to completes them: DPDK's transmit checksum offload).
    pub tx_checksum: TxChecksum,
    /// Seed of smoltcp's own pseudo-random numbers (not security relevant: initial sequence
    /// numbers, ports and cookies come from `secret`).
    pub seed: u64,
    /// The key of everything an off-path attacker must not predict: initial sequence numbers
    /// (RFC 6528), SYN cookies, timestamp offsets, ephemeral ports (see the `secret`
    /// module). It must come from the operating system's random source and differ on every
    /// start (the engine takes it from `getrandom`). All zero (the default) derives it from
    /// `seed`, for reproducible tests only.
    pub secret: [u8; 16],
    /// Challenge ACKs (RFC 5961) this stack sends per second at most.
    pub challenge_ack_limit: u32,
    /// ARP settings.
    pub arp: ArpConfig,
    /// TCP defaults for new connections.
    pub tcp: TcpConfig,
    /// Backlog of a listening port when `listen` is given none: connections being
    /// established plus established ones not yet accepted. Further SYNs are dropped.
    pub default_backlog: usize,
    /// Source ports for active opens.
    pub ephemeral_ports: RangeInclusive<u16>,
    /// Frames the stack keeps queued for the NIC before it stops generating more (back
    /// pressure; the frames are generated again on a later poll).
    pub tx_queue_limit: usize,
}

impl StackConfig {
    /// A configuration with defaults for everything but the Ethernet and IPv4 addresses.
    pub fn new(mac: MacAddr, addr: LocalAddr) -> Self {
        Self {
            mac,
            addrs: vec![addr],
            gateway: None,
            mtu: 1500,
            tx_checksum: TxChecksum::Software,
            seed: 0x6d65_6761_7463_7000,
            secret: [0; 16],
            challenge_ack_limit: 1000,
            arp: ArpConfig::default(),
            tcp: TcpConfig::default(),
            default_backlog: 4096,
            ephemeral_ports: 49152..=65535,
            tx_queue_limit: 4096,
        }
    }
}
