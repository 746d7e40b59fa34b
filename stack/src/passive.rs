//! Segments for a listener or a TIME-WAIT record, that no connection holds: SYNs (a new
//! half-open connection, or a SYN cookie when the backlog is full), ACKs carrying a SYN
//! cookie (the connection is made by replaying its handshake into a fresh socket), and
//! whatever arrives for a 4-tuple in TIME-WAIT.

use smoltcp::wire::{IpAddress, IpListenEndpoint, TcpControl, TcpRepr, TcpTimestampRepr};

use crate::cookie::{self, CookieOpts};
use crate::craft;
use crate::egress::FlowDevice;
use crate::flow::{FourTuple, Phase};
use crate::ingress::{Rx, drop};
use crate::lifecycle::set_ts;
use crate::open::new_socket;
use crate::timewait;
use crate::xlate::{SegInfo, seq_le, seq_lt};
use crate::{Duration, ListenerId, Stack};

/// How long after its last cookie a listener checks unknown ACKs as cookies (two cookie
/// periods: as long as a cookie stays valid).
const COOKIE_WINDOW: Duration = Duration::from_secs(128);

/// How far a 4-tuple reopened from TIME-WAIT starts its ISN beyond the old connection.
const REOPEN_ISN_GAP: u32 = 65_535 + 2;

/// The window shift smoltcp uses for a receive buffer of `rx` bytes.
fn window_shift(rx: usize) -> u8 {
    let bits = usize::BITS - rx.leading_zeros();
    bits.saturating_sub(16) as u8
}

impl Stack {
    /// The buffer sizes of connections `lid` accepts.
    fn listener_buffers(&self, lid: ListenerId) -> (usize, usize) {
        self.listeners
            .get(lid)
            .and_then(|l| l.buffers)
            .unwrap_or((self.cfg.tcp.rx_buffer, self.cfg.tcp.tx_buffer))
    }

    /// A SYN for a listener: a new connection in SYN-RECEIVED if the backlog has room, a
    /// SYN cookie if half-open connections fill it, a drop if established ones do. `isn`
    /// overrides the ISN (a 4-tuple reopened from TIME-WAIT).
    pub(crate) fn on_syn(
        &mut self,
        lid: ListenerId,
        tuple: FourTuple,
        iface: usize,
        packet: &[u8],
        repr: &TcpRepr<'_>,
        isn: Option<u32>,
    ) -> Rx {
        let Some(l) = self.listeners.get_mut(lid) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        if l.pending >= l.backlog {
            if l.queue.len() >= l.backlog {
                return drop(&mut self.eg.counters.drops.tcp_backlog_full);
            }
            l.last_cookie = Some(self.now);
            self.send_cookie(lid, &tuple, repr);
            return Rx::Delivered;
        }
        l.pending += 1;
        let Some(id) = self.embryonic(lid, tuple, iface, isn) else {
            return drop(&mut self.eg.counters.drops.tcp_malformed);
        };
        let seg = SegInfo::of(repr);
        self.flow_ingress(id.index(), packet, &seg)
    }

    /// A new half-open connection of listener `lid` (its `pending` already counted): a
    /// listening socket with the listener's buffers, in the flow table. `None` (and
    /// `pending` undone) if the socket refuses to listen, which a valid port never does.
    fn embryonic(
        &mut self,
        lid: ListenerId,
        tuple: FourTuple,
        iface: usize,
        isn: Option<u32>,
    ) -> Option<crate::ConnId> {
        let (rx, tx) = self.listener_buffers(lid);
        let mut tcp = self.cfg.tcp.clone();
        (tcp.rx_buffer, tcp.tx_buffer) = (rx, tx);
        let mut sock = new_socket(&tcp, &self.clock, &mut self.spare_sockets);
        let endpoint = IpListenEndpoint {
            addr: Some(IpAddress::Ipv4(*tuple.local.ip())),
            port: tuple.local.port(),
        };
        if sock.socket_mut().listen(endpoint).is_err() {
            if let Some(l) = self.listeners.get_mut(lid) {
                l.pending -= 1;
            }
            return None;
        }
        Some(self.insert_flow(tuple, iface, sock, Phase::Embryonic(lid), isn))
    }

    /// Answers a SYN with a SYN-ACK whose sequence number is a cookie, keeping nothing.
    fn send_cookie(&mut self, lid: ListenerId, tuple: &FourTuple, syn: &TcpRepr<'_>) {
        let now_ms = self.now_ms();
        let peer_isn = syn.seq_number.0 as u32;
        let peer_mss = syn.max_seg_size.unwrap_or(536);
        let isn = cookie::make(&self.keys, tuple, peer_isn, peer_mss, self.now);
        let ts = syn.timestamp.map(|t| {
            let opts = CookieOpts {
                wscale: syn.window_scale,
                sack: syn.sack_permitted,
            };
            let tsval = now_ms.wrapping_add(self.keys.ts_offset(tuple));
            (cookie::encode_ts(tsval, opts), t.tsval)
        });
        let (rx, _) = self.listener_buffers(lid);
        let mut synack =
            craft::segment(tuple, TcpControl::Syn, isn, Some(peer_isn.wrapping_add(1)));
        synack.window_len = rx.min(usize::from(u16::MAX)) as u16;
        synack.max_seg_size = Some((self.cfg.mtu - 40) as u16);
        // Without a timestamp to remember them by, window scaling and SACK are not offered.
        if ts.is_some() {
            synack.window_scale = syn.window_scale.map(|_| window_shift(rx));
            synack.sack_permitted = syn.sack_permitted;
        }
        synack.timestamp = ts.map(|(v, e)| TcpTimestampRepr::new(v, e));
        self.eg.counters.syn_cookies_sent += 1;
        self.eg.send_tcp(tuple, &synack);
    }

    /// Whether `lid` sent a cookie recently enough for an ACK to carry a valid one.
    pub(crate) fn cookies_recent(&self, lid: ListenerId) -> bool {
        self.listeners
            .get(lid)
            .and_then(|l| l.last_cookie)
            .is_some_and(|t| self.now < t + COOKIE_WINDOW)
    }

    /// An ACK for a listener that no connection holds: if it returns a valid cookie, the
    /// connection is made (its handshake replayed into a fresh socket, then the ACK handed
    /// to it); else it is dropped and counted.
    pub(crate) fn on_cookie_ack(
        &mut self,
        lid: ListenerId,
        tuple: FourTuple,
        iface: usize,
        packet: &[u8],
        repr: &TcpRepr<'_>,
    ) -> Rx {
        let Some(ack) = repr.ack_number else {
            return drop(&mut self.eg.counters.drops.tcp_syn_cookie_bad);
        };
        let peer_isn = (repr.seq_number.0 as u32).wrapping_sub(1);
        let isn = (ack.0 as u32).wrapping_sub(1);
        let Some(mss) = cookie::check(&self.keys, &tuple, peer_isn, isn, self.now) else {
            return drop(&mut self.eg.counters.drops.tcp_syn_cookie_bad);
        };
        let Some(l) = self.listeners.get_mut(lid) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        if l.queue.len() >= l.backlog {
            return drop(&mut self.eg.counters.drops.tcp_backlog_full);
        }
        l.pending += 1;
        let opts = repr
            .timestamp
            .map(|t| cookie::decode_ts(t.tsecr))
            .unwrap_or_default();
        let Some(id) = self.embryonic(lid, tuple, iface, Some(isn)) else {
            return drop(&mut self.eg.counters.drops.tcp_malformed);
        };
        // The SYN the client sent, as far as the cookie remembers it.
        let from_peer = craft::reversed(&tuple);
        let mut syn = craft::segment(&from_peer, TcpControl::Syn, peer_isn, None);
        syn.window_len = repr.window_len;
        syn.max_seg_size = Some(mss);
        syn.window_scale = opts.wscale;
        syn.sack_permitted = opts.sack;
        syn.timestamp = repr.timestamp.map(|t| TcpTimestampRepr::new(t.tsval, 0));
        craft::ip_packet(&from_peer, &syn, &mut self.rewrite);
        let snow = self.clock.socket_time(self.now);
        let (mtu, now_ms) = (self.cfg.mtu, self.now_ms());
        let Some(flow) = self.flows.get_mut(id) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        set_ts(now_ms, flow.x.ts_off);
        flow.x.on_ingress(&SegInfo::of(&syn));
        flow.x.capture = true;
        let mut dev = FlowDevice::receiving(&self.rewrite, &mut self.eg, &mut flow.x, mtu);
        self.ifaces[flow.iface].poll_ingress_single(snow, &mut dev, &mut flow.sockets);
        // Its SYN-ACK (already sent, as the cookie) is captured: that teaches the flow the
        // offset between the socket's ISN and the cookie.
        self.egress(id, None);
        if let Some(flow) = self.flows.get_mut(id) {
            flow.x.capture = false;
        }
        self.eg.counters.syn_cookies_accepted += 1;
        self.flow_ingress(id.index(), packet, &SegInfo::of(repr))
    }

    /// A segment for a 4-tuple in TIME-WAIT: a RST is ignored (RFC 1337); a SYN that is
    /// new by its timestamp or sequence number (RFC 6191) opens a new connection if a
    /// listener wants it; a FIN, data, an old SYN or an old timestamp is answered with the
    /// record's ACK; anything else (ACKs) is dropped.
    pub(crate) fn time_wait_segment(
        &mut self,
        iface: usize,
        tuple: &FourTuple,
        packet: &[u8],
        repr: &TcpRepr<'_>,
        src_mac: crate::MacAddr,
    ) -> Rx {
        let Some(&r) = self.time_waits.get(tuple) else {
            return drop(&mut self.eg.counters.drops.tcp_no_socket);
        };
        let seg = SegInfo::of(repr);
        let tsval = repr.timestamp.map(|t| t.tsval);
        match repr.control {
            // An RST at exactly the sequence number the record expects ends it, as Linux does
            // by default (`tcp_rfc1337 = 0`): it is what a client sends when its new SYN was
            // answered with the record's ACK (an older timestamp or ISN than the record's),
            // and its retransmitted SYN then opens the connection at once instead of after
            // the record's whole life. An off-path sender has to guess the exact 32-bit
            // number (RFC 5961's bar for RSTs); any other RST is ignored (RFC 1337).
            TcpControl::Rst if seg.seq == r.rcv_nxt => {
                self.time_waits.remove(tuple);
                self.eg.counters.tcp_time_wait_reset += 1;
                return Rx::Delivered;
            }
            TcpControl::Rst => return drop(&mut self.eg.counters.drops.tcp_time_wait_rst),
            TcpControl::Syn if repr.ack_number.is_none() => {
                if timewait::syn_is_new(&r, seg.seq, tsval)
                    && let Some(lid) = self.listeners.find(tuple.local)
                {
                    self.time_waits.remove(tuple);
                    self.eg.counters.tcp_time_wait_reopened += 1;
                    self.learn_from_syn(*tuple.remote.ip(), src_mac);
                    let isn = r.snd_nxt.wrapping_add(REOPEN_ISN_GAP);
                    return self.on_syn(lid, *tuple, iface, packet, repr, Some(isn));
                }
            }
            _ => {}
        }
        let old_ts = r.ts_on && tsval.is_some_and(|t| seq_lt(t, r.ts_recent));
        let wants_ack = seg.payload > 0 || repr.control == TcpControl::Fin;
        if !(wants_ack || old_ts || repr.control == TcpControl::Syn) {
            return drop(&mut self.eg.counters.drops.tcp_time_wait_stale);
        }
        // RFC 7323's TS.Recent rule holds here too: a newer timestamp on a segment at or
        // before the left edge (a retransmitted FIN) is the one to echo.
        let mut r = r;
        if let Some(t) = tsval
            && r.ts_on
            && seq_lt(r.ts_recent, t)
            && seq_le(seg.seq, r.rcv_nxt)
            && let Some(rec) = self.time_waits.get_mut(tuple)
        {
            rec.ts_recent = t;
            r.ts_recent = t;
        }
        let now_ms = self.now_ms();
        let ts = r
            .ts_on
            .then(|| (now_ms.wrapping_add(r.ts_off), r.ts_recent));
        let ack = craft::ack(tuple, r.snd_nxt, r.rcv_nxt, r.win, ts);
        self.eg.counters.tcp_time_wait_acks += 1;
        self.eg.send_tcp(tuple, &ack);
        Rx::Delivered
    }
}

#[cfg(test)]
mod tests {
    use super::window_shift;

    #[test]
    fn window_shift_matches_smoltcp() {
        // smoltcp: bits needed for the capacity, minus 16.
        assert_eq!(window_shift(16 * 1024), 0);
        assert_eq!(window_shift(65_535), 0);
        assert_eq!(window_shift(65_536), 1);
        assert_eq!(window_shift(1 << 20), 5);
        assert_eq!(window_shift(1 << 30), 15);
    }
}
