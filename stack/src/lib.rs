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
//! 2. Call [`Stack::poll`]`(now)`: it sends what connections owe (data, ACKs, SYN-ACKs), runs
//!    expired timers (retransmission, delayed ACK, TIME-WAIT, ARP retries).
//! 3. Call [`Stack::transmit`] with a sink that copies each frame into the NIC's TX ring;
//!    when the sink refuses (ring full), the rest stays queued for next time.
//! 4. Take events with [`Stack::next_event`] and act on them (accept, recv, send, close).
//!    Commands ([`Stack::send`], [`Stack::close`], ...) mark connections for output at the
//!    next `poll`, so a batch of commands turns into one batch of frames.
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

#![forbid(unsafe_code)]

mod arp;
pub mod config;
pub mod counters;
mod egress;
mod error;
mod event;
mod flow;
mod ingress;
mod listen;
mod out;
mod timers;

#[cfg(test)]
mod tests;

use core::net::{Ipv4Addr, SocketAddrV4};
use std::cell::Cell;
use std::collections::VecDeque;

use smoltcp::iface::{Config as IfaceConfig, Interface, PollResult, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{HardwareAddress, IpAddress, IpCidr, IpListenEndpoint};

pub use smoltcp::socket::tcp::State as TcpState;
pub use smoltcp::time::{Duration, Instant};
pub use smoltcp::wire::EthernetAddress as MacAddr;

pub use config::{ArpConfig, CongestionControl, LocalAddr, StackConfig, TcpConfig};
pub use counters::{Counters, DropCounters};
pub use error::{
    BufferSizeError, ConfigError, ConnectError, HandleError, ListenError, RecvError, SendError,
};
pub use event::{ConnId, Event, ListenerId};

use egress::{Egress, FlowDevice, NullDevice};
use flow::{Flow, FlowTable, FourTuple, Phase};
use listen::Listeners;
use out::OutQueue;
use timers::Timers;

/// Segments one connection may send per poll before others get their turn.
const EGRESS_BUDGET: usize = 64;

thread_local! {
    /// Milliseconds of the `now` last handed to a stack on this thread: the source of TCP
    /// timestamp values (smoltcp takes a plain `fn() -> u32`).
    static TS_MILLIS: Cell<u32> = const { Cell::new(0) };
}

fn tsval() -> u32 {
    TS_MILLIS.with(Cell::get)
}

/// Options of an active open.
#[derive(Debug, Clone, Copy, Default)]
pub struct ConnectOpts {
    /// Source address (default: the local address on the destination's subnet, else the
    /// first one).
    pub local_ip: Option<Ipv4Addr>,
    /// Source port (default: an ephemeral port free for this destination and accepted by the
    /// port filter).
    pub local_port: Option<u16>,
}

/// Sizes of the stack's tables, for monitoring and memory tests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StackStats {
    /// Connections in the flow table (any state, including TIME-WAIT).
    pub flows: usize,
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
    /// Heap bytes of spare frame buffers kept for reuse (bounded, not per connection).
    pub pooled_frame_bytes: usize,
    /// Heap bytes of closed TCP sockets kept for reuse (at most [`SOCKET_POOL`] sockets).
    pub pooled_socket_bytes: usize,
}

/// Closed TCP sockets (with their buffers) a stack keeps for new connections: a short
/// connection then costs no allocation and no zeroing of its buffers.
pub const SOCKET_POOL: usize = 256;

/// Decides whether an ephemeral source port may be used: `(local, remote) -> bool`.
pub type PortFilter = Box<dyn FnMut(SocketAddrV4, SocketAddrV4) -> bool>;

/// One core's TCP/IP stack. See the [crate docs](crate) for how to drive it.
pub struct Stack {
    cfg: StackConfig,
    eg: Egress,
    /// One smoltcp interface per local address (same index as `eg.addrs`).
    ifaces: Vec<Interface>,
    flows: FlowTable,
    listeners: Listeners,
    timers: Timers,
    events: VecDeque<Event>,
    dirty: Vec<ConnId>,
    scratch: Vec<ConnId>,
    /// Closed sockets of the default buffer sizes, for reuse.
    spare_sockets: Vec<tcp::Socket<'static>>,
    /// Room to rewrite a received segment (see `ingress::rescue_old_ack`).
    rewrite: Vec<u8>,
    next_port: u16,
    port_filter: Option<PortFilter>,
    now: Instant,
}

impl Stack {
    /// Creates a stack. `now` is the caller's current time.
    pub fn new(cfg: StackConfig, now: Instant) -> Result<Self, ConfigError> {
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
        if cfg.tcp.rx_buffer < 1024 || cfg.tcp.tx_buffer < 1024 {
            return Err(ConfigError::BufferTooSmall);
        }
        if cfg.tcp.rx_buffer > (1 << 30) || cfg.tcp.tx_buffer > (1 << 30) {
            return Err(ConfigError::BufferTooLarge);
        }
        if cfg.ephemeral_ports.is_empty() || *cfg.ephemeral_ports.start() == 0 {
            return Err(ConfigError::BadPortRange);
        }
        let mut dev = NullDevice { mtu: cfg.mtu };
        let ifaces = cfg
            .addrs
            .iter()
            .enumerate()
            .map(|(i, a)| {
                let mut c = IfaceConfig::new(HardwareAddress::Ip);
                c.random_seed = cfg.seed ^ (i as u64 + 1).wrapping_mul(0x9e37_79b9_7f4a_7c15);
                let mut iface = Interface::new(c, &mut dev, now);
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
        };
        let next_port = *cfg.ephemeral_ports.start()
            + (cfg.seed % u64::from(cfg.ephemeral_ports.len() as u32)) as u16;
        Ok(Self {
            eg,
            ifaces,
            flows: FlowTable::new(),
            listeners: Listeners::default(),
            timers: Timers::default(),
            events: VecDeque::new(),
            dirty: Vec::new(),
            scratch: Vec::new(),
            spare_sockets: Vec::new(),
            rewrite: Vec::new(),
            next_port,
            port_filter: None,
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
        TS_MILLIS.with(|c| c.set(self.now.total_millis() as u32));
    }

    // ----- output and time -----------------------------------------------------------------

    /// Does the deferred work: output of connections touched since the last poll, expired
    /// timers, ARP retries. Call after a batch of `receive`s and after commands.
    pub fn poll(&mut self, now: Instant) {
        self.set_now(now);
        let mut work = std::mem::take(&mut self.scratch);
        work.clear();
        std::mem::swap(&mut work, &mut self.dirty);
        for &id in &work {
            self.egress(id);
        }
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
        if self.dirty.is_empty() && self.dirty.capacity() > 4096 {
            self.dirty.shrink_to(1024);
        }
        self.scratch = work;
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

    fn on_timer(&mut self, id: ConnId) {
        let now = self.now;
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        if flow.phase == Phase::Orphan && flow.orphan_deadline.is_some_and(|d| d <= now) {
            flow.orphan_deadline = None;
            flow.aborted = true;
            flow.socket_mut().abort();
        }
        self.egress(id);
    }

    /// Hands queued frames, in order, to `sink` until it returns `false` (its ring is full);
    /// the refused frame stays queued. Returns the number of frames handed out.
    pub fn transmit(&mut self, sink: &mut dyn FnMut(&[u8]) -> bool) -> usize {
        let (n, bytes) = self.eg.out.drain(sink);
        self.eg.counters.tx_frames += n as u64;
        self.eg.counters.tx_bytes += bytes as u64;
        n
    }

    /// When the stack next needs [`Stack::poll`], if no frame arrives before. `Some(t)` with
    /// `t <= now` means at once (work or output is pending).
    pub fn poll_at(&self) -> Option<Instant> {
        if !self.dirty.is_empty() || self.eg.out.len() > 0 {
            return Some(self.now);
        }
        match (self.timers.next(), self.eg.neighbours.next_deadline()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
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
            timer_entries: self.timers.len(),
            queued_frames: self.eg.out.len(),
            queued_events: self.events.len(),
            arp_entries: self.eg.neighbours.cached(),
            flow_table_bytes: self.flows.table_bytes(),
            pooled_frame_bytes: self.eg.out.pooled_bytes(),
            pooled_socket_bytes: self
                .spare_sockets
                .iter()
                .map(|s| s.recv_capacity() + s.send_capacity() + size_of::<tcp::Socket<'static>>())
                .sum(),
        }
    }

    /// Sets (or clears) the filter that ephemeral source ports must pass, e.g. so that the
    /// peer's replies hash (RSS) to this core's queue.
    pub fn set_port_filter(&mut self, filter: Option<PortFilter>) {
        self.port_filter = filter;
    }

    // ----- listening -----------------------------------------------------------------------

    /// Listens on `addr` (0.0.0.0 = every local address). `backlog` bounds the connections
    /// being established plus those established and not yet accepted (default:
    /// [`StackConfig::default_backlog`]); SYNs beyond it are dropped and counted.
    pub fn listen(
        &mut self,
        addr: SocketAddrV4,
        backlog: Option<usize>,
    ) -> Result<ListenerId, ListenError> {
        if addr.port() == 0 {
            return Err(ListenError::ZeroPort);
        }
        if !addr.ip().is_unspecified() && self.eg.local_index(*addr.ip()).is_none() {
            return Err(ListenError::NotLocal(*addr.ip()));
        }
        let backlog = backlog.unwrap_or(self.cfg.default_backlog);
        if backlog == 0 {
            return Err(ListenError::ZeroBacklog);
        }
        self.listeners
            .add(addr, backlog)
            .ok_or(ListenError::InUse(addr))
    }

    /// Stops listening. Connections not yet accepted are reset.
    pub fn unlisten(&mut self, listener: ListenerId) -> Result<(), HandleError> {
        self.listeners.remove(listener).ok_or(HandleError::Stale)?;
        for id in self.flows.ids() {
            let Some(flow) = self.flows.get_mut(id) else {
                continue;
            };
            if matches!(flow.phase, Phase::Embryonic(l) | Phase::Queued(l) if l == listener) {
                flow.phase = Phase::Orphan;
                flow.aborted = true;
                flow.reported_closed = true;
                flow.socket_mut().abort();
                mark_dirty(&mut self.dirty, flow, id);
            }
        }
        Ok(())
    }

    /// Takes the oldest established connection from the listener's accept queue, with the
    /// peer's address. The connection's pending data (if any) is reported as `Readable`.
    pub fn accept(&mut self, listener: ListenerId) -> Option<(ConnId, SocketAddrV4)> {
        loop {
            let l = self.listeners.get_mut(listener)?;
            let id = l.queue.pop_front()?;
            let Some(flow) = self.flows.get_mut(id) else {
                continue;
            };
            if flow.phase != Phase::Queued(listener) {
                continue;
            }
            l.pending = l.pending.saturating_sub(1);
            if l.queue.is_empty() && l.queue.capacity() > 1024 {
                l.queue.shrink_to(64);
            }
            flow.phase = Phase::Open;
            let peer = flow.tuple.remote;
            self.refresh(id);
            return Some((id, peer));
        }
    }

    /// Sets the receive and send buffer sizes of connections the listener accepts from now
    /// on (each 1 KiB ..= 1 GiB).
    pub fn set_listener_buffers(
        &mut self,
        listener: ListenerId,
        rx: usize,
        tx: usize,
    ) -> Result<(), BufferSizeError> {
        let ok = |n: usize| (1024..=(1 << 30)).contains(&n);
        if !ok(rx) || !ok(tx) {
            return Err(BufferSizeError::OutOfRange { rx, tx });
        }
        self.listeners
            .get_mut(listener)
            .ok_or(BufferSizeError::Stale)?
            .buffers = Some((rx, tx));
        Ok(())
    }

    /// Established connections waiting in the listener's accept queue.
    pub fn accept_queue_len(&self, listener: ListenerId) -> usize {
        self.listeners.get(listener).map_or(0, |l| l.queue.len())
    }

    // ----- active open ---------------------------------------------------------------------

    /// Starts an active open to `remote`. Completion comes as [`Event::Connected`] or
    /// [`Event::ConnectFailed`]; the SYN leaves at the next `poll`.
    pub fn connect(
        &mut self,
        now: Instant,
        remote: SocketAddrV4,
        opts: ConnectOpts,
    ) -> Result<ConnId, ConnectError> {
        self.set_now(now);
        if !flow::is_unicast(*remote.ip()) || remote.port() == 0 {
            return Err(ConnectError::BadRemote(remote));
        }
        let (local_ip, port) = match (opts.local_ip, opts.local_port) {
            (ip, Some(p)) => {
                let ip = ip.unwrap_or_else(|| self.source_candidates(remote)[0]);
                let tuple = FourTuple {
                    local: SocketAddrV4::new(ip, p),
                    remote,
                };
                if p == 0 || self.flows.contains(&tuple) {
                    return Err(ConnectError::PortInUse(p));
                }
                (ip, p)
            }
            (Some(ip), None) => (ip, self.ephemeral_port(ip, remote)?),
            // Without a requested source, the addresses on the destination's subnet come
            // first; when one runs out of ports, the next one is used.
            (None, None) => {
                let mut found = None;
                for ip in self.source_candidates(remote) {
                    if let Ok(p) = self.ephemeral_port(ip, remote) {
                        found = Some((ip, p));
                        break;
                    }
                }
                found.ok_or(ConnectError::NoFreePort(remote))?
            }
        };
        let iface = self
            .eg
            .local_index(local_ip)
            .ok_or(ConnectError::NotLocal(local_ip))?;
        let tuple = FourTuple {
            local: SocketAddrV4::new(local_ip, port),
            remote,
        };
        let mut socket = new_socket(&self.cfg.tcp, &mut self.spare_sockets);
        socket
            .connect(
                self.ifaces[iface].context(),
                (IpAddress::Ipv4(*remote.ip()), remote.port()),
                IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(local_ip)),
                    port,
                },
            )
            .map_err(|_| ConnectError::BadRemote(remote))?;
        let id = self.insert_flow(tuple, iface, socket, Phase::Connecting);
        self.eg.counters.conns_opened += 1;
        Ok(id)
    }

    /// Local addresses to open a connection to `remote` from, best first (those on its
    /// subnet, then the rest). Never empty: a stack has at least one address.
    fn source_candidates(&self, remote: SocketAddrV4) -> Vec<Ipv4Addr> {
        let (mut near, far): (Vec<&LocalAddr>, Vec<&LocalAddr>) =
            self.eg.addrs.iter().partition(|a| a.contains(*remote.ip()));
        near.extend(far);
        near.into_iter().map(|a| a.addr).collect()
    }

    fn ephemeral_port(
        &mut self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<u16, ConnectError> {
        let (start, end) = (
            *self.cfg.ephemeral_ports.start(),
            *self.cfg.ephemeral_ports.end(),
        );
        let span = u32::from(end - start) + 1;
        for _ in 0..span {
            let port = self.next_port;
            self.next_port = if port >= end { start } else { port + 1 };
            let local = SocketAddrV4::new(local_ip, port);
            if self.flows.contains(&FourTuple { local, remote }) {
                continue;
            }
            if let Some(filter) = self.port_filter.as_mut()
                && !filter(local, remote)
            {
                continue;
            }
            return Ok(port);
        }
        Err(ConnectError::NoFreePort(remote))
    }

    fn insert_flow(
        &mut self,
        tuple: FourTuple,
        iface: usize,
        socket: tcp::Socket<'static>,
        phase: Phase,
    ) -> ConnId {
        let mut sockets = SocketSet::new(Vec::with_capacity(1));
        let handle = sockets.add(socket);
        let generation = self.flows.next_generation();
        let flow = Flow {
            generation,
            tuple,
            iface,
            sockets,
            handle,
            phase,
            deadline: None,
            orphan_deadline: None,
            dirty: false,
            reported_rx: 0,
            reported_peer_closed: false,
            reported_closed: false,
            want_writable: false,
            shut_wr: false,
            aborted: false,
            seq: Default::default(),
        };
        let id = self.flows.insert(flow);
        if let Some(flow) = self.flows.get_mut(id) {
            mark_dirty(&mut self.dirty, flow, id);
        }
        id
    }

    // ----- data ----------------------------------------------------------------------------

    /// Queues bytes for sending; returns how many were taken (limited by free send-buffer
    /// space; when short, [`Event::Writable`] follows once space frees). They leave at the
    /// next `poll`.
    pub fn send(&mut self, id: ConnId, data: &[u8]) -> Result<usize, SendError> {
        let flow = open_flow(&mut self.flows, id)?;
        if flow.shut_wr {
            return Err(SendError::InvalidState);
        }
        let n = flow
            .socket_mut()
            .send_slice(data)
            .map_err(|_| SendError::InvalidState)?;
        if n < data.len() {
            flow.want_writable = true;
        }
        if n > 0 {
            mark_dirty(&mut self.dirty, flow, id);
        }
        Ok(n)
    }

    /// Free space in the send buffer.
    pub fn send_space(&self, id: ConnId) -> Result<usize, HandleError> {
        let s = self.flows.get(id).ok_or(HandleError::Stale)?.socket();
        Ok(s.send_capacity() - s.send_queue())
    }

    /// Copies received bytes into `buf`. `Ok(0)`: nothing to read now (wait for
    /// [`Event::Readable`]); `Err(RecvError::Finished)`: end of stream.
    pub fn recv(&mut self, id: ConnId, buf: &mut [u8]) -> Result<usize, RecvError> {
        self.recv_with(id, |data| {
            let n = data.len().min(buf.len());
            buf[..n].copy_from_slice(&data[..n]);
            n
        })
    }

    /// Lends received bytes to `f` without copying; `f` returns how many it consumed. The
    /// buffer is a ring: when the data wraps, `f` sees the first part only (call again).
    pub fn recv_with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&[u8]) -> usize,
    ) -> Result<usize, RecvError> {
        let flow = open_flow(&mut self.flows, id)?;
        let s = flow.socket_mut();
        let n = match s.recv(|data| {
            let n = f(data).min(data.len());
            (n, n)
        }) {
            Ok(n) => n,
            Err(tcp::RecvError::Finished) => return Err(RecvError::Finished),
            Err(tcp::RecvError::InvalidState) => return Err(RecvError::InvalidState),
        };
        flow.reported_rx = flow.socket().recv_queue();
        if n > 0 {
            // The window opened: smoltcp may owe the peer a window update.
            mark_dirty(&mut self.dirty, flow, id);
        }
        Ok(n)
    }

    /// Bytes waiting to be read.
    pub fn recv_queue(&self, id: ConnId) -> Result<usize, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .recv_queue())
    }

    /// Bytes queued but not yet acknowledged by the peer.
    pub fn send_queue(&self, id: ConnId) -> Result<usize, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .send_queue())
    }

    /// Closes the write side after the queued data (FIN); receiving goes on.
    pub fn shutdown(&mut self, id: ConnId) -> Result<(), HandleError> {
        let flow = open_flow(&mut self.flows, id)?;
        flow.shut_wr = true;
        flow.socket_mut().close();
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Closes the connection: queued data is sent, then FIN. The id is released for the
    /// application at once; the stack finishes the closing handshake, reports
    /// [`Event::Closed`] when it is done, and frees the connection (after TIME-WAIT where
    /// applicable). Unread received data makes it a reset instead, as in Linux.
    pub fn close(&mut self, id: ConnId) -> Result<(), HandleError> {
        let orphan_timeout = self.cfg.tcp.orphan_timeout;
        let now = self.now;
        let flow = open_flow(&mut self.flows, id)?;
        flow.phase = Phase::Orphan;
        if flow.socket().recv_queue() > 0 {
            flow.aborted = true;
            flow.socket_mut().abort();
        } else {
            flow.socket_mut().close();
            flow.orphan_deadline = Some(now + orphan_timeout);
            if flow.deadline.is_none_or(|d| d > now + orphan_timeout) {
                flow.deadline = Some(now + orphan_timeout);
                self.timers.schedule(now + orphan_timeout, id);
            }
        }
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Resets the connection (RST) and releases the id at once.
    pub fn abort(&mut self, id: ConnId) -> Result<(), HandleError> {
        let flow = open_flow(&mut self.flows, id)?;
        flow.phase = Phase::Orphan;
        flow.aborted = true;
        flow.socket_mut().abort();
        mark_dirty(&mut self.dirty, flow, id);
        self.refresh(id);
        Ok(())
    }

    /// Turns Nagle's algorithm off (`true`) or on.
    pub fn set_nodelay(&mut self, id: ConnId, nodelay: bool) -> Result<(), HandleError> {
        open_flow(&mut self.flows, id)?
            .socket_mut()
            .set_nagle_enabled(!nodelay);
        Ok(())
    }

    /// Sets the delayed-ACK timeout (`None`: acknowledge at once).
    pub fn set_ack_delay(
        &mut self,
        id: ConnId,
        delay: Option<Duration>,
    ) -> Result<(), HandleError> {
        open_flow(&mut self.flows, id)?
            .socket_mut()
            .set_ack_delay(delay);
        Ok(())
    }

    /// Sets the keep-alive interval (`None`: off).
    pub fn set_keep_alive(
        &mut self,
        id: ConnId,
        interval: Option<Duration>,
    ) -> Result<(), HandleError> {
        let flow = open_flow(&mut self.flows, id)?;
        flow.socket_mut().set_keep_alive(interval);
        mark_dirty(&mut self.dirty, flow, id);
        Ok(())
    }

    /// TCP state of a connection.
    pub fn state(&self, id: ConnId) -> Result<TcpState, HandleError> {
        Ok(self
            .flows
            .get(id)
            .ok_or(HandleError::Stale)?
            .socket()
            .state())
    }

    /// The peer's address and port.
    pub fn peer_addr(&self, id: ConnId) -> Result<SocketAddrV4, HandleError> {
        Ok(self.flows.get(id).ok_or(HandleError::Stale)?.tuple.remote)
    }

    /// This side's address and port.
    pub fn local_addr(&self, id: ConnId) -> Result<SocketAddrV4, HandleError> {
        Ok(self.flows.get(id).ok_or(HandleError::Stale)?.tuple.local)
    }

    // ----- per-connection engine -----------------------------------------------------------

    /// Lets a connection send what it owes, reschedules its timer, reports what changed.
    fn egress(&mut self, id: ConnId) {
        let now = self.now;
        let mtu = self.cfg.mtu;
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        flow.dirty = false;
        let iface = &mut self.ifaces[flow.iface];
        let mut dev = FlowDevice {
            rx: None,
            eg: &mut self.eg,
            seq: &mut flow.seq,
            mtu,
        };
        let mut budget_left = true;
        for i in 0..EGRESS_BUDGET {
            if iface.poll_egress(now, &mut dev, &mut flow.sockets) == PollResult::None {
                break;
            }
            budget_left = i + 1 < EGRESS_BUDGET;
        }
        if !budget_left || self.eg.out.is_full() {
            // Out of budget or the NIC queue is full: try again at the next poll.
            mark_dirty(&mut self.dirty, flow, id);
        }
        let mut at = iface.poll_at(now, &flow.sockets);
        if let Some(o) = flow.orphan_deadline {
            at = Some(at.map_or(o, |a| a.min(o)));
        }
        // Keep at most one live timer entry per connection: a new entry only when the
        // deadline moved earlier. When it moved later (the common case: every ACK pushes the
        // retransmission timer back), the earlier entry fires, finds nothing to do, and
        // reschedules. The timers stay proportional to the connections, not to the packets.
        if let Some(t) = at
            && flow.deadline.is_none_or(|d| t < d)
        {
            flow.deadline = Some(t);
            self.timers.schedule(t, id);
        }
        self.refresh(id);
    }

    /// Compares a connection's state with what was last reported; emits events, moves it
    /// between phases, and releases it when it is done.
    fn refresh(&mut self, id: ConnId) {
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let state = flow.socket().state();
        // CLOSED with an endpoint still set means a RST is yet to be sent (abort, timeout):
        // the connection is gone only once it has left.
        let gone = state == TcpState::Closed && flow.socket().remote_endpoint().is_none();
        let counters = &mut self.eg.counters;
        match flow.phase {
            Phase::Embryonic(lid) => match state {
                TcpState::Listen | TcpState::Closed if state == TcpState::Listen || gone => {
                    counters.conns_embryonic_dropped += 1;
                    if let Some(l) = self.listeners.get_mut(lid) {
                        l.pending = l.pending.saturating_sub(1);
                    }
                    self.release(id);
                }
                TcpState::SynReceived | TcpState::Closed => {}
                _ => {
                    counters.conns_accepted += 1;
                    flow.phase = Phase::Queued(lid);
                    match self.listeners.get_mut(lid) {
                        Some(l) => {
                            l.queue.push_back(id);
                            self.events.push_back(Event::Acceptable { listener: lid });
                        }
                        None => {
                            flow.phase = Phase::Orphan;
                            flow.aborted = true;
                            flow.reported_closed = true;
                            flow.socket_mut().abort();
                            mark_dirty(&mut self.dirty, flow, id);
                        }
                    }
                }
            },
            Phase::Queued(lid) => {
                if gone {
                    counters.conns_reset += 1;
                    if let Some(l) = self.listeners.get_mut(lid) {
                        l.pending = l.pending.saturating_sub(1);
                    }
                    self.release(id);
                }
            }
            Phase::Connecting => match state {
                TcpState::SynSent => {}
                TcpState::Closed if !gone => {}
                TcpState::Closed => {
                    counters.conns_connect_failed += 1;
                    self.release(id);
                    self.events.push_back(Event::ConnectFailed { conn: id });
                }
                _ => {
                    flow.phase = Phase::Open;
                    self.events.push_back(Event::Connected { conn: id });
                    self.refresh_open(id);
                }
            },
            Phase::Open => self.refresh_open(id),
            Phase::Orphan => {
                let finished = state == TcpState::TimeWait || gone;
                if finished && !flow.reported_closed {
                    flow.reported_closed = true;
                    self.events.push_back(Event::Closed { conn: id });
                }
                if gone {
                    if flow.aborted {
                        counters.conns_reset += 1;
                    } else {
                        counters.conns_closed += 1;
                    }
                    self.release(id);
                }
            }
        }
    }

    /// Frees a connection, and stale timer entries with it.
    fn release(&mut self, id: ConnId) {
        if let Some(mut flow) = self.flows.remove(id)
            && self.spare_sockets.len() < SOCKET_POOL
        {
            let tcp = &self.cfg.tcp;
            #[allow(irrefutable_let_patterns, reason = "only TCP sockets are compiled in")]
            if let smoltcp::socket::Socket::Tcp(s) = flow.sockets.remove(flow.handle)
                && s.state() == tcp::State::Closed
                && s.recv_capacity() == tcp.rx_buffer
                && s.send_capacity() == tcp.tx_buffer
            {
                self.spare_sockets.push(s);
            }
        }
        let flows = &self.flows;
        self.timers.compact(flows.len(), |t, id| {
            flows.get(id).is_some_and(|f| f.deadline == Some(t))
        });
    }

    fn refresh_open(&mut self, id: ConnId) {
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let s = flow.socket();
        let state = s.state();
        let rx = s.recv_queue();
        let space = s.send_capacity() - s.send_queue();
        let may_send = s.may_send();
        let gone = state == TcpState::Closed && s.remote_endpoint().is_none();
        if rx > flow.reported_rx {
            self.events.push_back(Event::Readable { conn: id });
        }
        flow.reported_rx = rx;
        // These states are only reached after the peer's FIN.
        let fin = matches!(
            state,
            TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
        );
        if fin && !flow.reported_peer_closed {
            flow.reported_peer_closed = true;
            self.events.push_back(Event::PeerClosed { conn: id });
        }
        if flow.want_writable && space > 0 && may_send {
            flow.want_writable = false;
            self.events.push_back(Event::Writable { conn: id });
        }
        if gone {
            if flow.shut_wr && flow.reported_peer_closed {
                self.eg.counters.conns_closed += 1;
                self.events.push_back(Event::Closed { conn: id });
            } else {
                self.eg.counters.conns_reset += 1;
                self.events.push_back(Event::Reset { conn: id });
            }
            self.release(id);
        }
    }
}

/// The connection `id` if the application holds it (open or connecting).
fn open_flow(flows: &mut FlowTable, id: ConnId) -> Result<&mut Flow, HandleError> {
    match flows.get_mut(id) {
        Some(f) if matches!(f.phase, Phase::Open | Phase::Connecting) => Ok(f),
        _ => Err(HandleError::Stale),
    }
}

fn mark_dirty(dirty: &mut Vec<ConnId>, flow: &mut Flow, id: ConnId) {
    if !flow.dirty {
        flow.dirty = true;
        dirty.push(id);
    }
}

/// A buffer of `n` bytes whose pages are all touched now. `vec![0; n]` would get fresh,
/// lazily zeroed pages from the kernel, and the page faults would then land on the data
/// path, one per 4 KiB as the ring advances (seen as a third of the time of 10,000 active
/// connections in `examples/flow_scaling.rs`).
#[allow(
    clippy::slow_vector_initialization,
    reason = "the explicit writes are the point"
)]
fn touched_buffer(n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    v.resize(n, 0u8);
    v
}

/// A smoltcp TCP socket with `cfg`'s settings: a closed one from `spare` when its buffers
/// have the right sizes (`listen`/`connect` reset its state and empty its buffers), else a
/// new one.
fn new_socket(cfg: &TcpConfig, spare: &mut Vec<tcp::Socket<'static>>) -> tcp::Socket<'static> {
    let reuse = spare
        .last()
        .is_some_and(|s| s.recv_capacity() == cfg.rx_buffer && s.send_capacity() == cfg.tx_buffer);
    let mut s = match spare.pop() {
        Some(s) if reuse => s,
        other => {
            if let Some(s) = other {
                spare.push(s);
            }
            tcp::Socket::new(
                tcp::SocketBuffer::new(touched_buffer(cfg.rx_buffer)),
                tcp::SocketBuffer::new(touched_buffer(cfg.tx_buffer)),
            )
        }
    };
    s.set_nagle_enabled(cfg.nagle);
    s.set_ack_delay(cfg.ack_delay);
    s.set_congestion_control(match cfg.congestion {
        CongestionControl::None => tcp::CongestionControl::None,
        CongestionControl::Reno => tcp::CongestionControl::Reno,
        CongestionControl::Cubic => tcp::CongestionControl::Cubic,
    });
    s.set_tsval_generator(if cfg.timestamps { Some(tsval) } else { None });
    s.set_timeout(cfg.user_timeout);
    s.set_keep_alive(cfg.keep_alive);
    s
}
