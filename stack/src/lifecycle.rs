//! A connection's life inside the stack: its output and timers (`egress`, `on_timer`),
//! the events its state changes give (`refresh`), its end (`release`), TIME-WAIT as a
//! record (`enter_time_wait`) and the tail-loss probe.
//!
//! Every socket is polled on socket time (see [`crate::clock`]) and with its own TSval
//! offset (see [`set_ts`]); deadlines go back into the timers in stack time.

use smoltcp::iface::PollResult;
use smoltcp::socket::tcp;
use smoltcp::wire::TcpControl;

use crate::craft;
use crate::egress::FlowDevice;
use crate::flow::Phase;
use crate::open::PooledSocket;
use crate::timewait::TwRecord;
use crate::{ConnId, Event, FrameSink, SOCKET_POOL, Stack, TS_VALUE, TcpState, mark_dirty};

/// Segments one connection may send per poll before others get their turn.
const EGRESS_BUDGET: usize = 64;

/// Duplicate ACKs that make smoltcp retransmit (its fast retransmit threshold).
const DUP_ACKS: usize = 3;

/// Sets the TSval smoltcp's sockets send to the stack's milliseconds plus `ts_off` (the
/// connection's own offset, RFC 7323 section 5.4).
pub(crate) fn set_ts(now_ms: u32, ts_off: u32) {
    TS_VALUE.with(|c| c.set(now_ms.wrapping_add(ts_off)));
}

/// Whether a socket that has just sent a segment may have another one ready: in
/// ESTABLISHED and CLOSE-WAIT only when data is left unsent (or it was retransmitting:
/// after a timeout smoltcp resends several); in the other states (handshake, closing) it
/// is asked again.
fn may_send_more(s: &tcp::Socket<'static>, x: &crate::xlate::Xlate) -> bool {
    match s.state() {
        TcpState::Established | TcpState::CloseWait if !x.last_retransmit => {
            match (x.snd_una, x.snd_max) {
                (Some(una), Some(max)) => s.send_queue() > max.wrapping_sub(una) as usize,
                _ => true,
            }
        }
        _ => true,
    }
}

/// Whether a TCP state comes after the peer's FIN.
pub(crate) fn fin_received(state: TcpState) -> bool {
    matches!(
        state,
        TcpState::CloseWait | TcpState::LastAck | TcpState::Closing | TcpState::TimeWait
    )
}

impl Stack {
    /// Lets a connection send what it owes (in place through `sink` when given),
    /// reschedules its timer, reports what changed.
    pub(crate) fn egress(&mut self, id: ConnId, sink: Option<&mut FrameSink<'_>>) {
        let now = self.now;
        let snow = self.clock.socket_time(now);
        let (mtu, probe, now_ms) = (self.cfg.mtu, self.cfg.tcp.tail_probe, self.now_ms());
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        flow.dirty = false;
        set_ts(now_ms, flow.x.ts_off);
        let iface = &mut self.ifaces[flow.iface];
        let remote = *flow.tuple.remote.ip();
        let mut dev = FlowDevice {
            rx: None,
            eg: &mut self.eg,
            x: &mut flow.x,
            mtu,
            probe,
            sink: sink.map(|s| (s, remote)),
        };
        // Nothing due (the common case after a segment arrived whose ACK is delayed): no
        // need to ask smoltcp for output, which costs as much as producing some.
        let mut socket_at = iface.poll_at(snow, &flow.sockets);
        let mut budget_left = true;
        if socket_at.is_some_and(|t| t <= snow) {
            for i in 0..EGRESS_BUDGET {
                if iface.poll_egress(snow, &mut dev, &mut flow.sockets) == PollResult::None {
                    break;
                }
                budget_left = i + 1 < EGRESS_BUDGET;
                // Stop when this segment was surely the last (what is due and was not sent
                // comes back as a deadline of "now", at the next poll).
                let s = flow.sockets.get::<tcp::Socket<'static>>(flow.handle);
                if !may_send_more(s, dev.x) {
                    break;
                }
            }
            socket_at = iface.poll_at(snow, &flow.sockets);
        }
        let output_done = budget_left && !self.eg.out.is_full();
        if !output_done {
            // Out of budget or the NIC queue is full: try again at the next poll.
            mark_dirty(&mut self.dirty, flow, id);
        }
        let socket_at = socket_at.map(|t| self.clock.real_time(t));
        let at = [socket_at, flow.give_up, flow.x.probe.deadline]
            .into_iter()
            .flatten()
            .min();
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
        if output_done {
            self.enter_time_wait(id);
        }
    }

    /// A connection's deadline came: give up a handshake or an orphan that took too long,
    /// probe a lost tail, let the socket run its timers.
    pub(crate) fn on_timer(&mut self, id: ConnId) {
        let now = self.now;
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        if flow.give_up.is_some_and(|d| d <= now) {
            flow.give_up = None;
            let c = &mut self.eg.counters;
            match flow.phase {
                Phase::Orphan => {
                    flow.aborted = true;
                    flow.socket_mut().abort();
                }
                // A half-open connection goes silently: its peer may not exist (a flood).
                Phase::Embryonic(lid) => {
                    c.handshake_timeouts += 1;
                    c.conns_embryonic_dropped += 1;
                    if let Some(l) = self.listeners.get_mut(lid) {
                        l.pending = l.pending.saturating_sub(1);
                    }
                    self.release(id);
                    return;
                }
                Phase::Connecting => {
                    c.handshake_timeouts += 1;
                    c.conns_connect_failed += 1;
                    self.release(id);
                    self.events.push_back(Event::ConnectFailed { conn: id });
                    return;
                }
                Phase::Queued(_) | Phase::Open => {}
            }
        }
        if flow.x.probe.deadline.is_some_and(|d| d <= now) {
            flow.x.probe.deadline = None;
            self.tail_probe(id);
        }
        // The socket runs its timers (and the probe its retransmission) at the next
        // transmit, with the rest of the output.
        if let Some(flow) = self.flows.get_mut(id) {
            mark_dirty(&mut self.dirty, flow, id);
        }
    }

    /// The tail of what a connection sent is still unacknowledged after the probe timeout:
    /// three duplicate ACKs, synthesized and handed to the socket, make smoltcp resend its
    /// first unacknowledged segment now (fast retransmit) rather than at the RTO. For the
    /// usual lost tail, a reply of one segment, that is the lost segment itself.
    fn tail_probe(&mut self, id: ConnId) {
        let snow = self.clock.socket_time(self.now);
        let (mtu, now_ms) = (self.cfg.mtu, self.now_ms());
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        let state = flow.socket().state();
        let synchronized = matches!(
            state,
            TcpState::Established
                | TcpState::CloseWait
                | TcpState::FinWait1
                | TcpState::Closing
                | TcpState::LastAck
        );
        let x = &flow.x;
        let queued = flow.socket().recv_queue();
        let (Some(una), Some(seq)) = (x.snd_una, x.rcv_next(queued, fin_received(state))) else {
            return;
        };
        if !synchronized || !x.outstanding() || x.probe.probed || flow.socket().send_queue() == 0 {
            return;
        }
        let ts = match (x.ts_on, x.ts_recent) {
            (Some(true), Some(r)) => Some((r, now_ms.wrapping_add(x.ts_off))),
            _ => None,
        };
        let from_peer = craft::reversed(&flow.tuple);
        let mut dup = craft::ack(&from_peer, seq, una.wrapping_sub(x.seq_off), x.peer_win, ts);
        dup.control = TcpControl::None;
        craft::ip_packet(&from_peer, &dup, &mut self.rewrite);
        set_ts(now_ms, flow.x.ts_off);
        let iface = &mut self.ifaces[flow.iface];
        for _ in 0..DUP_ACKS {
            let mut dev = FlowDevice::receiving(&self.rewrite, &mut self.eg, &mut flow.x, mtu);
            iface.poll_ingress_single(snow, &mut dev, &mut flow.sockets);
        }
        flow.x.probe.probed = true;
        self.eg.counters.tail_probes += 1;
        mark_dirty(&mut self.dirty, flow, id);
    }

    /// A connection in TIME-WAIT whose last ACK is out becomes a compact record (see
    /// [`crate::timewait`]); its socket and buffers go back to the pool. One the application
    /// still holds (it shut down, then the peer closed) waits until the application has
    /// read the end of the stream; until then it stays a socket in smoltcp's TIME-WAIT.
    fn enter_time_wait(&mut self, id: ConnId) {
        let now_ms = self.now_ms();
        let keep = self.cfg.tcp.time_wait != crate::Duration::ZERO;
        let Some(flow) = self.flows.get_mut(id) else {
            return;
        };
        if flow.socket().state() != TcpState::TimeWait {
            return;
        }
        match flow.phase {
            Phase::Orphan => {}
            Phase::Open if flow.eof_seen => {
                // The application still holds the id: the orderly end is its last event.
                if !flow.reported_closed {
                    flow.reported_closed = true;
                    self.events.push_back(Event::Closed { conn: id });
                }
            }
            _ => return,
        }
        let x = &flow.x;
        if keep && let (Some(snd_nxt), Some(rcv_nxt)) = (x.snd_max, x.rcv_nxt) {
            let ts_on = x.ts_on == Some(true) && x.ts_recent.is_some();
            let record = TwRecord {
                snd_nxt,
                rcv_nxt,
                ts_recent: x.ts_recent.unwrap_or(0),
                ts_off: x.ts_off,
                win: x.last_win,
                ts_on,
                iface: flow.iface as u8,
                made_ms: now_ms,
            };
            self.time_waits.insert(flow.tuple, record);
            self.eg.counters.tcp_time_wait_entered += 1;
        }
        self.eg.counters.conns_closed += 1;
        flow.socket_mut().abort();
        self.release(id);
    }
    /// Compares a connection's state with what was last reported; emits events, moves it
    /// between phases, and releases it when it is done.
    pub(crate) fn refresh(&mut self, id: ConnId) {
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
                    flow.give_up = None;
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
                    flow.give_up = None;
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
    pub(crate) fn release(&mut self, id: ConnId) {
        if let Some(flow) = self.flows.remove(id)
            && self.spare_sockets.len() < SOCKET_POOL
        {
            let tcp = &self.cfg.tcp;
            let p = PooledSocket {
                sockets: flow.sockets,
                handle: flow.handle,
            };
            let s = p.socket();
            if s.state() == tcp::State::Closed
                && s.recv_capacity() == tcp.rx_buffer
                && s.send_capacity() == tcp.tx_buffer
            {
                self.spare_sockets.push(p);
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
