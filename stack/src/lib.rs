//! megatcp's per-core TCP/IP engine, sans-I/O.
//!
//! A [`Stack`] is one core's network stack: Ethernet, ARP, IPv4, ICMP echo and TCP (with
//! smoltcp's `tcp::Socket` as the state machine, under our own flow table, listen tables and
//! timers). It has no clock, no threads and makes no system calls: it is handed frames and
//! the current time, and hands back frames to send, events, and the time it next needs to be
//! polled.
//!
//! # How to drive a `Stack`
//!
//! One loop per core, each iteration:
//!
//! 1. For every frame the NIC received, call [`Stack::receive`]`(now, frame)`. Ingress work
//!    happens at once; replies and output are deferred so a whole batch is processed first.
//! 2. Call [`Stack::poll`]`(now)`: it runs expired timers (retransmission, delayed ACK,
//!    tail-loss probes, give-ups), TIME-WAIT expiry and ARP retries.
//! 3. Call [`Stack::transmit_into`] with a sink that lends the NIC's transmit buffers: the
//!    output of every connection touched since the last call (data, ACKs, SYN-ACKs, FINs) is
//!    written straight into them; when the sink is full, the rest stays queued for next
//!    time. ([`Stack::transmit`] does the same for a sink that takes finished frames.)
//! 4. Take events with [`Stack::next_event`] and act on them (accept, recv, send, close).
//!    Commands ([`Stack::send`], [`Stack::close`], ...) mark connections for output at the
//!    next transmit, so a batch of commands turns into one batch of frames.
//! 5. Sleep (or keep polling the NIC) until a frame arrives or [`Stack::poll_at`] is due.
//!
//! `now` must never go backwards. All time is a [`smoltcp::time::Instant`], re-exported as
//! [`Instant`].
//!
//! # Scaling
//!
//! Each connection owns a one-socket smoltcp `SocketSet`, polled through the stack's
//! `Interface` (one per local address) with a device that yields only that connection's
//! packet; connections are found by 4-tuple in a hash table, and only connections with a due
//! deadline are visited by timers. Per-packet cost therefore does not depend on how many
//! connections exist. See `ARCHITECTURE.md`.

//!
//! # What the wire sees
//!
//! Initial sequence numbers, SYN cookies, ephemeral ports and timestamp offsets are keyed
//! hashes under [`StackConfig::secret`]; TIME-WAIT is a compact record handled by the stack
//! itself; RSTs and SYNs inside the window get challenge ACKs (RFC 5961) and old
//! timestamps are refused (PAWS). Module by module: `secret`, `xlate`, `timewait`,
//! `cookie`, `ingress`, `clock`. Outgoing TCP checksums are the stack's own or, with
//! [`StackConfig::tx_checksum`], left to the NIC (`checksum`).

#![forbid(unsafe_code)]

mod arp;
mod checksum;
mod clock;
pub mod config;
mod cookie;
pub mod counters;
mod craft;
mod data;
mod egress;
mod error;
mod event;
mod flow;
mod ingress;
mod lifecycle;
mod listen;
mod open;
mod out;
mod passive;
mod secret;
mod timers;
mod timewait;
mod xlate;

#[cfg(test)]
mod tests;

use core::net::SocketAddrV4;
use std::cell::Cell;
use std::collections::VecDeque;

use smoltcp::iface::{Config as IfaceConfig, Interface};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr};

pub use smoltcp::socket::tcp::State as TcpState;
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::EthernetAddress as MacAddr;

pub use checksum::TxChecksum;
pub use config::{ArpConfig, CongestionControl, LocalAddr, StackConfig, TcpConfig};
pub use counters::{Counters, DROP_REASONS, DropCounters};
pub use error::{
    BufferSizeError, ConfigError, ConnectError, HandleError, ListenError, RecvError, SendError,
};
pub use event::{ConnId, Event, ListenerId};
pub use open::ConnectOpts;

use clock::SocketClock;
use egress::{Egress, NullDevice};
use flow::{Flow, FlowTable};
use listen::Listeners;
use out::OutQueue;
use secret::Keys;
use timers::Timers;
use timewait::TimeWaits;

thread_local! {
    /// The TSval smoltcp's sockets send: the stack's milliseconds plus the offset of the
    /// connection being polled (smoltcp takes a plain `fn() -> u32`; the stack sets this
    /// before it hands a connection a packet or asks it for output).
    static TS_VALUE: Cell<u32> = const { Cell::new(0) };
}

fn tsval() -> u32 {
    TS_VALUE.with(Cell::get)
}

/// Sizes of the stack's tables, for monitoring and memory tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    /// Connections in the flow table (any state; TIME-WAIT records are counted apart).
    pub flows: usize,
    /// TIME-WAIT records.
    pub time_wait: usize,
    /// Entries in the timers (some may be stale).
    pub timer_entries: usize,
    /// Frames waiting for `transmit`.
    pub queued_frames: usize,
    /// Events waiting for `next_event`.
    pub queued_events: usize,
    /// Neighbours in the ARP cache.
    pub arp_entries: usize,
    /// Approximate heap bytes of the flow table itself (slots and index, not the flows).
    pub flow_table_bytes: usize,
    /// Approximate heap bytes of the TIME-WAIT records and their index.
    pub time_wait_bytes: usize,
    /// Heap bytes of spare frame buffers kept for reuse (bounded, not per connection).
    pub pooled_frame_bytes: usize,
    /// Heap bytes of closed TCP sockets kept for reuse (at most [`SOCKET_POOL`] sockets).
    pub pooled_socket_bytes: usize,
}

/// Closed TCP sockets (with their buffers) a stack keeps for new connections: a short
/// connection then costs no allocation and no zeroing of its buffers.
pub const SOCKET_POOL: usize = 256;

/// Where [`Stack::transmit_into`] writes frames: `sink(fill)` lends the NIC's next free
/// transmit buffer to `fill`, which writes one Ethernet frame into it and returns its length
/// (0: nothing written); `sink` returns `false`, without calling `fill`, when no buffer is
/// free.
pub type FrameSink<'a> = dyn FnMut(&mut dyn FnMut(&mut [u8]) -> usize) -> bool + 'a;

/// Decides whether an ephemeral source port may be used: `(local, remote) -> bool`.
pub type PortFilter = Box<dyn FnMut(SocketAddrV4, SocketAddrV4) -> bool>;

/// One core's TCP/IP stack. See the [crate docs](crate) for how to drive it.
pub struct Stack {
    cfg: StackConfig,
    eg: Egress,
    /// One smoltcp interface per local address (same index as `eg.addrs`).
    ifaces: Vec<Interface>,
    flows: FlowTable,
    time_waits: TimeWaits,
    listeners: Listeners,
    timers: Timers,
    events: VecDeque<Event>,
    dirty: Vec<ConnId>,
    scratch: Vec<ConnId>,
    /// Closed sockets of the default buffer sizes (in their socket sets), for reuse.
    spare_sockets: Vec<open::PooledSocket>,
    /// Room for a packet handed to a socket after translation or synthesis.
    rewrite: Vec<u8>,
    /// RFC 6056 algorithm 4's table of counters: the ephemeral port search for a
    /// destination starts at its keyed offset plus the counter of its bucket, so each
    /// destination walks the whole port range (the oldest ports come back first) and
    /// connections to other destinations do not make it skip ports.
    port_counters: Vec<u32>,
    port_filter: Option<PortFilter>,
    keys: Keys,
    clock: SocketClock,
    challenges: ChallengeBudget,
    now: Instant,
}

/// RFC 5961's rate limit of challenge ACKs: a budget refilled every second.
#[derive(Debug, Clone, Copy)]
struct ChallengeBudget {
    left: u32,
    refill_at: Instant,
}

impl Stack {
    /// Creates a stack. `now` is the caller's current time.
    pub fn new(mut cfg: StackConfig, now: Instant) -> Result<Self, ConfigError> {
        validate(&cfg)?;
        if cfg.secret == [0; 16] {
            cfg.secret = secret_from_seed(cfg.seed);
        }
        let clock = SocketClock::new(cfg.tcp.min_rto);
        let mut dev = NullDevice {
            mtu: cfg.mtu,
            tx_checksum: cfg.tx_checksum,
        };
        let ifaces = cfg
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut c = IfaceConfig::new(HardwareAddress::Ip);
                c.random_seed = cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut iface = Interface::new(c, &mut dev, clock.socket_time(now));
                // Routing and subnets are ours (see `Egress`); to smoltcp every destination
                // is on link.
                iface.update_ip_addrs(|addrs| {
                    let _ = addrs.push(IpCidr::new(IpAddress::Ipv4(a.addr), 0));
                });
                iface
            })
            .collect();
        let eg = Egress {
            mac: cfg.mac,
            addrs: cfg.addrs.clone(),
            gateway: cfg.gateway,
            neighbours: arp::Neighbours::new(cfg.arp.clone()),
            out: OutQueue::new(cfg.mtu + egress::ETH_HDR, cfg.tx_queue_limit.max(1)),
            counters: Counters::default(),
            now,
            tx_checksum: cfg.tx_checksum,
        };
        let keys = Keys::new(cfg.secret);
        Ok(Self {
            eg,
            ifaces,
            flows: FlowTable::new(),
            time_waits: TimeWaits::default(),
            listeners: Listeners::default(),
            timers: Timers::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            spare_sockets: Vec::new(),
            rewrite: Vec::new(),
            port_counters: vec![0; open::PORT_BUCKETS],
            port_filter: None,
            keys,
            clock,
            challenges: ChallengeBudget {
                left: cfg.challenge_ack_limit,
                refill_at: now + Duration::from_secs(1),
            },
            now,
            cfg,
        })
    }

    /// The configuration the stack was created with.
    pub fn config(&self) -> &StackConfig {
        &self.cfg
    }

    fn set_now(&mut self, now: Instant) {
        if now > self.now {
            self.now = now;
        }
        self.eg.now = self.now;
    }

    /// Milliseconds of the stack clock: the base of every connection's TSval.
    fn now_ms(&self) -> u32 {
        self.now.total_millis() as u32
    }

    /// Lifetime of TIME-WAIT records, milliseconds.
    fn time_wait_ms(&self) -> u32 {
        self.cfg.tcp.time_wait.total_millis() as u32
    }

    /// Takes one challenge ACK from the budget (RFC 5961 section 7); counts a refusal.
    fn may_challenge(&mut self) -> bool {
        let b = &mut self.challenges;
        if self.now >= b.refill_at {
            b.left = self.cfg.challenge_ack_limit;
            b.refill_at = self.now + Duration::from_secs(1);
        }
        if b.left == 0 {
            self.eg.counters.challenge_acks_limited += 1;
            return false;
        }
        b.left -= 1;
        self.eg.counters.challenge_acks_sent += 1;
        true
    }

    // ----- output and time -----------------------------------------------------------------

    /// Does the time-driven work: expired connection timers (retransmission, delayed ACK,
    /// probes, give-ups), TIME-WAIT records, ARP retries. Call after a batch of `receive`s
    /// and commands, then [`Stack::transmit_into`] (or [`Stack::transmit`]), which runs
    /// the output of every connection touched since.
    pub fn poll(&mut self, now: Instant) {
        self.set_now(now);
        let mut work = std::mem::take(&mut self.scratch);
        work.clear();
        while let Some((at, id)) = self.timers.pop_due(self.now) {
            if let Some(flow) = self.flows.get_mut(id)
                && flow.deadline == Some(at)
            {
                flow.deadline = None;
                work.push(id);
            }
        }
        for &id in &work {
            self.on_timer(id);
        }
        work.clear();
        if work.capacity() > 4096 {
            work.shrink_to(1024);
        }
        self.scratch = work;
        let life = self.time_wait_ms();
        self.eg.counters.tcp_time_wait_expired += self.time_waits.expire(self.now, life) as u64;
        let eg = &mut self.eg;
        let mut asks = Vec::new();
        let mut dropped = Vec::new();
        eg.neighbours
            .poll(eg.now, &mut |ip| asks.push(ip), &mut |f| dropped.push(f));
        for ip in asks {
            eg.send_arp(smoltcp::wire::ArpOperation::Request, ip, MacAddr::BROADCAST);
        }
        for f in dropped {
            eg.counters.tx_arp_unresolved += 1;
            eg.out.recycle(f);
        }
        if self.events.is_empty() && self.events.capacity() > 4096 {
            self.events.shrink_to(1024);
        }
    }

    /// Runs the output of the connections touched since the last call, each once (so ACKs
    /// piggyback and a batch of input becomes a batch of output), writing frames straight
    /// into the NIC's buffers through `sink` where it can, and into the stack's own queue
    /// otherwise (the neighbour is still being resolved, or `sink` is full).
    fn emit(&mut self, mut sink: Option<&mut FrameSink<'_>>) {
        let mut work = std::mem::take(&mut self.scratch);
        work.clear();
        std::mem::swap(&mut work, &mut self.dirty);
        for (i, &id) in work.iter().enumerate() {
            if self.eg.out.is_full() {
                // The queue is full: the rest keep their turn (and their dirty mark) for the
                // next call, rather than each being polled for nothing.
                self.dirty.extend_from_slice(&work[i..]);
                break;
            }
            self.egress(id, sink.as_deref_mut());
        }
        work.clear();
        if self.dirty.is_empty() && self.dirty.capacity() > 4096 {
            self.dirty.shrink_to(1024);
        }
        self.scratch = work;
    }

    /// Sends what is due: frames queued earlier first, then the output of every connection
    /// touched since the last call, written in place into the NIC's transmit buffers.
    /// `sink(fill)` lends the next free buffer to `fill`, which writes one frame and returns
    /// its length; `sink` returns `false` (without calling `fill`) when no buffer is free,
    /// and what is left stays queued for next time. Returns the frames handed over.
    pub fn transmit_into(&mut self, sink: &mut FrameSink<'_>) -> usize {
        let mut n = self.drain_into(sink);
        if self.eg.out.len() == 0 {
            let before = self.eg.counters.tx_frames;
            self.emit(Some(sink));
            n += (self.eg.counters.tx_frames - before) as usize;
            n += self.drain_into(sink);
        }
        n
    }

    /// Copies queued frames into NIC buffers through `sink` until it is full.
    fn drain_into(&mut self, sink: &mut FrameSink<'_>) -> usize {
        let (n, bytes) = self.eg.out.drain(&mut |frame| {
            sink(&mut |buf: &mut [u8]| match buf.get_mut(..frame.len()) {
                Some(b) => {
                    b.copy_from_slice(frame);
                    frame.len()
                }
                None => 0,
            })
        });
        self.eg.counters.tx_frames += n as u64;
        self.eg.counters.tx_bytes += bytes as u64;
        n
    }

    /// Runs the output of the connections touched since the last call (as
    /// [`Stack::transmit_into`]), then hands queued frames, in order, to `sink` until it
    /// returns `false` (its ring is full); the refused frame stays queued. Returns the number
    /// of frames handed out. For callers that want the bytes rather than to lend a buffer.
    pub fn transmit(&mut self, sink: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        self.emit(None);
        let (n, bytes) = self.eg.out.drain(sink);
        self.eg.counters.tx_frames += n as u64;
        self.eg.counters.tx_bytes += bytes as u64;
        n
    }

    /// Whether output is waiting: connections touched since the last transmit (by a
    /// command, a frame or a timer), or frames queued. A cheap test, for a loop that skips
    /// work when nothing is due.
    pub fn output_pending(&self) -> bool {
        !self.dirty.is_empty() || self.eg.out.len() > 0
    }

    /// When the stack next needs [`Stack::poll`], if no frame arrives before. `Some(t)` with
    /// `t <= now` means at once (work or output is pending).
    pub fn poll_at(&self) -> Option<Instant> {
        if self.output_pending() {
            return Some(self.now);
        }
        [
            self.timers.next(),
            self.eg.neighbours.next_deadline(),
            self.time_waits.next_expiry(self.now, self.time_wait_ms()),
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The next event, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Counters of this stack.
    pub fn counters(&self) -> Counters {
        self.eg.counters
    }

    /// Sizes of the stack's tables.
    pub fn stats(&self) -> StackStats {
        StackStats {
            flows: self.flows.len(),
            time_wait: self.time_waits.len(),
            timer_entries: self.timers.len(),
            queued_frames: self.eg.out.len(),
            queued_events: self.events.len(),
            arp_entries: self.eg.neighbours.cached(),
            flow_table_bytes: self.flows.table_bytes(),
            time_wait_bytes: self.time_waits.heap_bytes(),
            pooled_frame_bytes: self.eg.out.pooled_bytes(),
            pooled_socket_bytes: self
                .spare_sockets
                .iter()
                .map(|p| {
                    let s = p.socket();
                    s.recv_capacity() + s.send_capacity() + size_of::<tcp::Socket<'static>>()
                })
                .sum(),
        }
    }

    /// Sets (or clears) the filter that ephemeral source ports must pass, e.g. so that the
    /// peer's replies hash (RSS) to this core's queue.
    pub fn set_port_filter(&mut self, filter: Option<PortFilter>) {
        self.port_filter = filter;
    }
}

fn validate(cfg: &StackConfig) -> Result<(), ConfigError> {
    if cfg.addrs.is_empty() {
        return Err(ConfigError::NoAddress);
    }
    if !cfg.mac.is_unicast() {
        return Err(ConfigError::BadMac(cfg.mac));
    }
    if cfg.mtu < 576 || cfg.mtu > 9000 {
        return Err(ConfigError::BadMtu(cfg.mtu));
    }
    for a in &cfg.addrs {
        if !flow::is_unicast(a.addr) || a.prefix_len > 32 {
            return Err(ConfigError::BadAddress(*a));
        }
    }
    if cfg.addrs.len() > usize::from(u8::MAX) {
        return Err(ConfigError::TooManyAddresses(cfg.addrs.len()));
    }
    let tcp = &cfg.tcp;
    if tcp.rx_buffer < 1024 || tcp.tx_buffer < 1024 {
        return Err(ConfigError::BufferTooSmall);
    }
    if tcp.rx_buffer > (1 << 30) || tcp.tx_buffer > (1 << 30) {
        return Err(ConfigError::BufferTooLarge);
    }
    if cfg.ephemeral_ports.is_empty() || *cfg.ephemeral_ports.start() == 0 {
        return Err(ConfigError::BadPortRange);
    }
    if tcp.min_rto < Duration::from_millis(10) || tcp.min_rto > Duration::from_secs(1) {
        return Err(ConfigError::BadMinRto(tcp.min_rto));
    }
    if tcp.time_wait > Duration::from_secs(120) {
        return Err(ConfigError::BadTimeWait(tcp.time_wait));
    }
    if tcp.handshake_timeout == Duration::ZERO {
        return Err(ConfigError::BadHandshakeTimeout);
    }
    Ok(())
}

/// A secret derived from a seed (splitmix64), for tests that want reproducible stacks.
fn secret_from_seed(seed: u64) -> [u8; 16] {
    let mut x = seed;
    let mut next = || {
        x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = x;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    };
    let mut s = [0u8; 16];
    s[..8].copy_from_slice(&next().to_le_bytes());
    s[8..].copy_from_slice(&next().to_le_bytes());
    s
}

fn mark_dirty(dirty: &mut Vec<ConnId>, flow: &mut Flow, id: ConnId) {
    if !flow.dirty {
        flow.dirty = true;
        dirty.push(id);
    }
}
