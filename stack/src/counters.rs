//! Per-core counters of a [`Stack`](crate::Stack).

/// Number of drop reasons ([`DropCounters::by_reason`]).
pub const DROP_REASONS: usize = 25;

/// Why an incoming frame was dropped. Every drop is counted under exactly one reason.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DropCounters {
    /// Shorter than an Ethernet header.
    pub eth_truncated: u64,
    /// Destination MAC neither ours nor broadcast.
    pub eth_not_for_us: u64,
    /// EtherType other than ARP and IPv4.
    pub eth_unsupported_type: u64,
    /// ARP that is not Ethernet/IPv4 request or reply, or is truncated.
    pub arp_malformed: u64,
    /// ARP for an address that is not ours (and not from a known neighbour).
    pub arp_not_for_us: u64,
    /// IPv4 header truncated, bad IHL, bad version or bad total length.
    pub ipv4_malformed: u64,
    /// IPv4 header checksum wrong.
    pub ipv4_bad_checksum: u64,
    /// IPv4 fragment (reassembly is not supported).
    pub ipv4_fragment: u64,
    /// IPv4 destination is not one of our addresses (includes broadcast and multicast).
    pub ipv4_not_for_us: u64,
    /// IPv4 source is broadcast, multicast or unspecified.
    pub ipv4_bad_source: u64,
    /// IP protocol other than TCP and ICMP.
    pub ip_unsupported_protocol: u64,
    /// ICMP truncated or not understood.
    pub icmp_malformed: u64,
    /// ICMP checksum wrong.
    pub icmp_bad_checksum: u64,
    /// ICMP message other than echo request (replies, errors): ignored.
    pub icmp_ignored: u64,
    /// TCP header truncated, bad data offset, zero port, bad flag combination or options.
    pub tcp_malformed: u64,
    /// TCP checksum wrong.
    pub tcp_bad_checksum: u64,
    /// TCP segment for no connection and no listener (a RST was sent unless it was a RST).
    pub tcp_no_socket: u64,
    /// SYN to a listening port whose accept queue was full (SYN cookies answer SYNs when
    /// only half-open connections fill the backlog), or a valid cookie ACK at that moment.
    pub tcp_backlog_full: u64,
    /// ACK to a listening port carrying a SYN cookie that does not check out (forged, stale
    /// or for another 4-tuple).
    pub tcp_syn_cookie_bad: u64,
    /// RST inside the receive window but not at its exact start (RFC 5961 3.2): answered
    /// with a challenge ACK, the connection goes on.
    pub tcp_rst_challenged: u64,
    /// RST outside the receive window.
    pub tcp_rst_out_of_window: u64,
    /// SYN on a synchronized connection (RFC 5961 4.2): answered with a challenge ACK.
    pub tcp_syn_challenged: u64,
    /// Segment whose timestamp is older than the connection's last one (PAWS, RFC 7323 5):
    /// answered with an ACK.
    pub tcp_paws: u64,
    /// RST for a 4-tuple in TIME-WAIT not at its exact sequence number: ignored (RFC 1337).
    pub tcp_time_wait_rst: u64,
    /// Other segments for a 4-tuple in TIME-WAIT that need no answer (ACKs, old
    /// duplicates).
    pub tcp_time_wait_stale: u64,
}

impl DropCounters {
    /// Every reason with its count, in declaration order (names as the fields').
    pub fn by_reason(&self) -> [(&'static str, u64); DROP_REASONS] {
        let Self {
            eth_truncated,
            eth_not_for_us,
            eth_unsupported_type,
            arp_malformed,
            arp_not_for_us,
            ipv4_malformed,
            ipv4_bad_checksum,
            ipv4_fragment,
            ipv4_not_for_us,
            ipv4_bad_source,
            ip_unsupported_protocol,
            icmp_malformed,
            icmp_bad_checksum,
            icmp_ignored,
            tcp_malformed,
            tcp_bad_checksum,
            tcp_no_socket,
            tcp_backlog_full,
            tcp_syn_cookie_bad,
            tcp_rst_challenged,
            tcp_rst_out_of_window,
            tcp_syn_challenged,
            tcp_paws,
            tcp_time_wait_rst,
            tcp_time_wait_stale,
        } = *self;
        [
            ("eth_truncated", eth_truncated),
            ("eth_not_for_us", eth_not_for_us),
            ("eth_unsupported_type", eth_unsupported_type),
            ("arp_malformed", arp_malformed),
            ("arp_not_for_us", arp_not_for_us),
            ("ipv4_malformed", ipv4_malformed),
            ("ipv4_bad_checksum", ipv4_bad_checksum),
            ("ipv4_fragment", ipv4_fragment),
            ("ipv4_not_for_us", ipv4_not_for_us),
            ("ipv4_bad_source", ipv4_bad_source),
            ("ip_unsupported_protocol", ip_unsupported_protocol),
            ("icmp_malformed", icmp_malformed),
            ("icmp_bad_checksum", icmp_bad_checksum),
            ("icmp_ignored", icmp_ignored),
            ("tcp_malformed", tcp_malformed),
            ("tcp_bad_checksum", tcp_bad_checksum),
            ("tcp_no_socket", tcp_no_socket),
            ("tcp_backlog_full", tcp_backlog_full),
            ("tcp_syn_cookie_bad", tcp_syn_cookie_bad),
            ("tcp_rst_challenged", tcp_rst_challenged),
            ("tcp_rst_out_of_window", tcp_rst_out_of_window),
            ("tcp_syn_challenged", tcp_syn_challenged),
            ("tcp_paws", tcp_paws),
            ("tcp_time_wait_rst", tcp_time_wait_rst),
            ("tcp_time_wait_stale", tcp_time_wait_stale),
        ]
    }

    /// Sum of all drop reasons.
    pub fn total(&self) -> u64 {
        self.by_reason().iter().map(|&(_, n)| n).sum()
    }
}

/// Counters of one stack. Read them with [`Stack::counters`](crate::Stack::counters).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Counters {
    /// Frames handed to `receive`.
    pub rx_frames: u64,
    /// Bytes in those frames.
    pub rx_bytes: u64,
    /// Frames handed out by `transmit`.
    pub tx_frames: u64,
    /// Bytes in those frames.
    pub tx_bytes: u64,
    /// Incoming frames dropped, by reason.
    pub drops: DropCounters,
    /// Incoming frames not dropped (ARP and ICMP handled, TCP segments handed to a
    /// connection or answered by the stack): `rx_frames = rx_delivered + drops.total()`.
    pub rx_delivered: u64,
    /// Outgoing packets dropped because no route (no gateway) leads to their destination.
    pub tx_no_route: u64,
    /// Outgoing packets dropped because their neighbour did not answer ARP.
    pub tx_arp_unresolved: u64,
    /// Outgoing packets dropped because too many were already waiting for ARP.
    pub tx_arp_queue_full: u64,
    /// ARP requests sent.
    pub arp_requests_sent: u64,
    /// ARP replies sent.
    pub arp_replies_sent: u64,
    /// ICMP echo replies sent.
    pub icmp_echo_replies: u64,
    /// RSTs sent for segments that matched no connection.
    pub tcp_rst_sent: u64,
    /// Active opens started.
    pub conns_opened: u64,
    /// Passive opens that reached ESTABLISHED (entered an accept queue).
    pub conns_accepted: u64,
    /// Passive opens abandoned before ESTABLISHED (RST or timeout in SYN-RECEIVED).
    pub conns_embryonic_dropped: u64,
    /// Active opens that failed (refused or timed out).
    pub conns_connect_failed: u64,
    /// Connections that ended after an orderly close.
    pub conns_closed: u64,
    /// Connections that ended by a reset (sent or received) or a timeout.
    pub conns_reset: u64,
    /// TCP segments sent again (sequence space sent before).
    pub tcp_retransmits: u64,
    /// TCP segments sent.
    pub tcp_segments_out: u64,
    /// TCP segments received and handed to a connection.
    pub tcp_segments_in: u64,
    /// Old segments whose ACK was rescued (see `ARCHITECTURE.md`, smoltcp notes).
    pub tcp_old_acks_rescued: u64,
    /// Connections that entered TIME-WAIT (as compact records).
    pub tcp_time_wait_entered: u64,
    /// TIME-WAIT records that expired.
    pub tcp_time_wait_expired: u64,
    /// ACKs sent by TIME-WAIT records (a retransmitted FIN, data, an old SYN).
    pub tcp_time_wait_acks: u64,
    /// SYNs that opened a new connection on a 4-tuple in TIME-WAIT (RFC 6191).
    pub tcp_time_wait_reopened: u64,
    /// TIME-WAIT records ended by an RST at exactly their sequence number (a restarted
    /// client's answer to the record's ACK for its SYN).
    pub tcp_time_wait_reset: u64,
    /// Active opens whose SYN was answered by an ACK that did not acknowledge it (the peer
    /// held the 4-tuple in TIME-WAIT): answered with an RST and started over at once.
    pub tcp_syn_restarted: u64,
    /// Active opens that reused a 4-tuple in TIME-WAIT (timestamps on).
    pub tcp_time_wait_reused: u64,
    /// SYN-ACKs sent with a SYN cookie (the listener's backlog was full).
    pub syn_cookies_sent: u64,
    /// Connections made from a valid SYN cookie.
    pub syn_cookies_accepted: u64,
    /// Challenge ACKs sent (RFC 5961: in-window RST or SYN on a connection).
    pub challenge_acks_sent: u64,
    /// Challenge ACKs not sent because of the rate limit.
    pub challenge_acks_limited: u64,
    /// Tail-loss probes sent.
    pub tail_probes: u64,
    /// Handshakes given up (`handshake_timeout`).
    pub handshake_timeouts: u64,
}
