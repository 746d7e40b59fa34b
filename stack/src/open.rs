//! Opening connections: listening ports and their accept queues, active opens with
//! ephemeral ports (RFC 6056, reusing TIME-WAIT 4-tuples where timestamps make it safe),
//! and the creation of flows and their sockets.

use core::net::{Ipv4Addr, SocketAddrV4};

use smoltcp::iface::{SocketHandle, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::wire::{IpAddress, IpListenEndpoint, TcpControl};

use crate::clock::SocketClock;
use crate::craft;
use crate::flow::{self, Flow, FourTuple, Phase};
use crate::ingress::Rx;
use crate::timewait::{self, TwRecord};
use crate::xlate::{self, SegInfo, Xlate};
use crate::{
    BufferSizeError, CongestionControl, ConnId, ConnectError, HandleError, Instant, ListenError,
    ListenerId, Stack, TcpConfig, mark_dirty, tsval,
};

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

/// Counters of the ephemeral port search (RFC 6056 algorithm 4's table).
pub(crate) const PORT_BUCKETS: usize = 1024;

/// How far a reused 4-tuple's ISN starts beyond the old connection's sequence space (as
/// Linux: past any window the old one could have had, without scaling).
const REUSE_ISN_GAP: u32 = 65_535 + 2;

impl Stack {
    // ----- listening -----------------------------------------------------------------------

    /// Listens on `addr` (0.0.0.0 = every local address). `backlog` bounds the connections
    /// being established plus those established and not yet accepted (default:
    /// [`StackConfig::default_backlog`](crate::StackConfig::default_backlog)). When
    /// half-open connections fill it, SYNs are answered with SYN cookies; when established
    /// ones do, SYNs are dropped and counted.
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

    /// Starts an active open to `remote`. Completion comes as
    /// [`Event::Connected`](crate::Event::Connected) or
    /// [`Event::ConnectFailed`](crate::Event::ConnectFailed); the SYN leaves at the next
    /// `poll`.
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
        let (local_ip, port, reused) = match (opts.local_ip, opts.local_port) {
            (ip, Some(p)) => {
                let ip = ip.unwrap_or_else(|| self.first_source(remote));
                let tuple = FourTuple {
                    local: SocketAddrV4::new(ip, p),
                    remote,
                };
                if p == 0 || self.flows.contains(&tuple) {
                    return Err(ConnectError::PortInUse(p));
                }
                match self.take_time_wait(&tuple) {
                    Ok(reused) => (ip, p, reused),
                    Err(()) => return Err(ConnectError::PortInUse(p)),
                }
            }
            (Some(ip), None) => {
                let (p, reused) = self.ephemeral_port(ip, remote)?;
                (ip, p, reused)
            }
            // Without a requested source, the addresses on the destination's subnet come
            // first; when one runs out of ports, the next one is used.
            (None, None) => {
                let mut found = None;
                'search: for near in [true, false] {
                    for i in 0..self.eg.addrs.len() {
                        let a = self.eg.addrs[i];
                        if a.contains(*remote.ip()) != near {
                            continue;
                        }
                        if let Ok((p, reused)) = self.ephemeral_port(a.addr, remote) {
                            found = Some((a.addr, p, reused));
                            break 'search;
                        }
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
        let mut sock = new_socket(&self.cfg.tcp, &self.clock, &mut self.spare_sockets);
        sock.socket_mut()
            .connect(
                self.ifaces[iface].context(),
                (IpAddress::Ipv4(*remote.ip()), remote.port()),
                IpListenEndpoint {
                    addr: Some(IpAddress::Ipv4(local_ip)),
                    port,
                },
            )
            .map_err(|_| ConnectError::BadRemote(remote))?;
        let isn = reused.map(|r| r.snd_nxt.wrapping_add(REUSE_ISN_GAP));
        let id = self.insert_flow(tuple, iface, sock, Phase::Connecting, isn);
        self.eg.counters.conns_opened += 1;
        Ok(id)
    }

    /// For a connection in SYN-SENT (slot `index`) that received `seg`: when `seg` is a bare
    /// ACK that does not acknowledge our SYN, the peer holds the 4-tuple in TIME-WAIT (our
    /// SYN's timestamp or sequence number looked old to it, RFC 6191) or in a stale
    /// connection. RFC 9293's answer is an RST at the ACK's number, which ends such a record
    /// (at Linux by default, and at this stack); then, rather than wait for the SYN's
    /// retransmission timeout (200 ms here, 1 s at Linux), the connection starts over at
    /// once with a fresh ISN. Once per connection: a peer that keeps
    /// answering so gets smoltcp's ordinary treatment. `None` when this does not apply.
    pub(crate) fn restart_syn(&mut self, index: u32, seg: &SegInfo) -> Option<Rx> {
        let flow = self.flows.slot_mut(index)?;
        let ack = seg.ack?;
        if flow.x.syn_restarted
            || seg.flags & (xlate::SYN | xlate::RST) != 0
            || flow.x.snd_max.is_none_or(|sent| sent == ack)
        {
            return None;
        }
        let rst = craft::segment(&flow.tuple, TcpControl::Rst, ack, None);
        let (local, remote, iface) = (flow.tuple.local, flow.tuple.remote, flow.iface);
        let sock = flow.socket_mut();
        sock.abort();
        let again = sock.connect(
            self.ifaces[iface].context(),
            (IpAddress::Ipv4(*remote.ip()), remote.port()),
            IpListenEndpoint {
                addr: Some(IpAddress::Ipv4(*local.ip())),
                port: local.port(),
            },
        );
        if again.is_err() {
            // Cannot happen for a socket just aborted; leave it to its own timers.
            return None;
        }
        // A fresh RFC 6528 ISN: the old record or connection is gone after the RST, and an
        // ISN derived from the ACK would let a forged ACK choose it.
        let isn = self.keys.tuple_secrets(&flow.tuple).isn(self.now);
        flow.x = Xlate {
            want_isn: Some(isn),
            ts_off: flow.x.ts_off,
            syn_restarted: true,
            ..Xlate::default()
        };
        let id = flow.id(index);
        mark_dirty(&mut self.dirty, flow, id);
        self.eg.send_tcp(&flow.tuple, &rst);
        self.eg.counters.tcp_syn_restarted += 1;
        Some(Rx::Delivered)
    }

    /// The local address to open a connection to `remote` from: the first one on its subnet,
    /// else the first one (a stack has at least one address).
    fn first_source(&self, remote: SocketAddrV4) -> Ipv4Addr {
        let addrs = &self.eg.addrs;
        addrs
            .iter()
            .find(|a| a.contains(*remote.ip()))
            .or(addrs.first())
            .map_or(Ipv4Addr::UNSPECIFIED, |a| a.addr)
    }

    /// Takes over a 4-tuple held in TIME-WAIT, when it is safe (`Ok(Some)`), or finds it
    /// free (`Ok(None)`); `Err` when a record holds it and must stay.
    fn take_time_wait(&mut self, tuple: &FourTuple) -> Result<Option<TwRecord>, ()> {
        let now = self.now;
        match self
            .time_waits
            .take_if(tuple, |r| timewait::reusable(r, now))
        {
            Ok(Some(r)) => {
                self.eg.counters.tcp_time_wait_reused += 1;
                Ok(Some(r))
            }
            other => other,
        }
    }

    /// An ephemeral port for a connection from `local_ip` to `remote` (RFC 6056 algorithm
    /// 4: the search starts at a keyed hash of the addresses plus the counter of their
    /// bucket), with the TIME-WAIT record it takes over, if any.
    fn ephemeral_port(
        &mut self,
        local_ip: Ipv4Addr,
        remote: SocketAddrV4,
    ) -> Result<(u16, Option<TwRecord>), ConnectError> {
        let (start, end) = (
            *self.cfg.ephemeral_ports.start(),
            *self.cfg.ephemeral_ports.end(),
        );
        let span = u32::from(end - start) + 1;
        let bucket = self.keys.port_bucket(local_ip, remote) as usize % PORT_BUCKETS;
        let offset = self
            .keys
            .port_offset(local_ip, remote)
            .wrapping_add(self.port_counters[bucket]);
        for i in 0..span {
            let port = start + (offset.wrapping_add(i) % span) as u16;
            let local = SocketAddrV4::new(local_ip, port);
            let tuple = FourTuple { local, remote };
            if self.flows.contains(&tuple) {
                continue;
            }
            if let Some(filter) = self.port_filter.as_mut()
                && !filter(local, remote)
            {
                continue;
            }
            let Ok(reused) = self.take_time_wait(&tuple) else {
                continue;
            };
            self.port_counters[bucket] = self.port_counters[bucket].wrapping_add(i + 1);
            return Ok((port, reused));
        }
        Err(ConnectError::NoFreePort(remote))
    }

    /// Adds a connection whose socket will send `isn` as its ISN on the wire (by default
    /// the RFC 6528 one of its 4-tuple).
    pub(crate) fn insert_flow(
        &mut self,
        tuple: FourTuple,
        iface: usize,
        sock: PooledSocket,
        phase: Phase,
        isn: Option<u32>,
    ) -> ConnId {
        let secrets = self.keys.tuple_secrets(&tuple);
        let isn = isn.unwrap_or_else(|| secrets.isn(self.now));
        let PooledSocket { sockets, handle } = sock;
        let generation = self.flows.next_generation();
        let flow = Flow {
            generation,
            tuple,
            iface,
            sockets,
            handle,
            phase,
            deadline: None,
            give_up: Some(self.now + self.cfg.tcp.handshake_timeout),
            dirty: false,
            reported_rx: 0,
            reported_peer_closed: false,
            reported_closed: false,
            want_writable: false,
            shut_wr: false,
            eof_seen: false,
            aborted: false,
            x: Xlate {
                want_isn: Some(isn),
                ts_off: secrets.ts_offset(),
                ..Xlate::default()
            },
        };
        let id = self.flows.insert(flow);
        if let Some(flow) = self.flows.get_mut(id) {
            mark_dirty(&mut self.dirty, flow, id);
        }
        id
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

/// A one-socket smoltcp `SocketSet`: what a flow polls, and what the stack keeps for reuse
/// when a connection ends (the set's storage and the socket with its buffers).
pub(crate) struct PooledSocket {
    pub(crate) sockets: SocketSet<'static>,
    pub(crate) handle: SocketHandle,
}

impl PooledSocket {
    pub(crate) fn socket(&self) -> &tcp::Socket<'static> {
        self.sockets.get::<tcp::Socket<'static>>(self.handle)
    }

    pub(crate) fn socket_mut(&mut self) -> &mut tcp::Socket<'static> {
        self.sockets.get_mut::<tcp::Socket<'static>>(self.handle)
    }
}

/// A smoltcp TCP socket with `cfg`'s settings (durations in socket time), in its socket
/// set: a closed one from `spare` when its buffers have the right sizes (`listen`/`connect`
/// reset its state and empty its buffers), else a new one.
pub(crate) fn new_socket(
    cfg: &TcpConfig,
    clock: &SocketClock,
    spare: &mut Vec<PooledSocket>,
) -> PooledSocket {
    let fits = |p: &PooledSocket| {
        let s = p.socket();
        s.recv_capacity() == cfg.rx_buffer && s.send_capacity() == cfg.tx_buffer
    };
    let mut p = match spare.pop() {
        Some(p) if fits(&p) => p,
        other => {
            if let Some(p) = other {
                spare.push(p);
            }
            let mut sockets = SocketSet::new(Vec::with_capacity(1));
            let handle = sockets.add(tcp::Socket::new(
                tcp::SocketBuffer::new(touched_buffer(cfg.rx_buffer)),
                tcp::SocketBuffer::new(touched_buffer(cfg.tx_buffer)),
            ));
            PooledSocket { sockets, handle }
        }
    };
    let s = p.socket_mut();
    s.set_nagle_enabled(cfg.nagle);
    s.set_ack_delay(cfg.ack_delay.map(|d| clock.stretch(d)));
    s.set_congestion_control(match cfg.congestion {
        CongestionControl::None => tcp::CongestionControl::None,
        CongestionControl::Reno => tcp::CongestionControl::Reno,
        CongestionControl::Cubic => tcp::CongestionControl::Cubic,
    });
    s.set_tsval_generator(if cfg.timestamps { Some(tsval) } else { None });
    s.set_timeout(cfg.user_timeout.map(|d| clock.stretch(d)));
    s.set_keep_alive(cfg.keep_alive.map(|d| clock.stretch(d)));
    p
}
