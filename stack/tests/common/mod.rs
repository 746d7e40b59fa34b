//! Test bench: stacks joined by the in-memory wire NIC, driven in virtual time.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used)]

pub mod bulk;
pub mod frames;
pub mod raw;

use std::net::{Ipv4Addr, SocketAddrV4};

use megatcp_nic::NicQueue;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{
    ConnId, ConnectOpts, Duration, Event, Instant, ListenerId, LocalAddr, MacAddr, Stack,
    StackConfig,
};
use smoltcp::wire::Ipv4Repr;

pub const A_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 1);
pub const B_IP: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
pub const A_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x01]);
pub const B_MAC: MacAddr = MacAddr([0x02, 0, 0, 0, 0, 0x02]);

pub fn config(mac: MacAddr, ip: Ipv4Addr, seed: u64) -> StackConfig {
    let mut c = StackConfig::new(mac, LocalAddr::new(ip, 24));
    c.seed = seed;
    c
}

/// One stack on one NIC queue.
pub struct Host<Q: NicQueue = WireQueue> {
    pub stack: Stack,
    pub nic: Q,
    pub events: Vec<Event>,
}

impl<Q: NicQueue> Host<Q> {
    pub fn new(stack: Stack, nic: Q) -> Self {
        Self {
            stack,
            nic,
            events: Vec::new(),
        }
    }

    /// One engine iteration: receive a burst, poll, transmit. Returns frames moved.
    pub fn step(&mut self, now: Instant) -> usize {
        let stack = &mut self.stack;
        let mut moved = self.nic.rx_burst(64, &mut |f| stack.receive(now, f.data));
        stack.poll(now);
        let nic = &mut self.nic;
        moved += stack.transmit_into(&mut |fill| nic.tx_frame(fill).is_ok());
        nic.tx_flush();
        while let Some(e) = stack.next_event() {
            self.events.push(e);
        }
        moved
    }
}

/// Two hosts on a wire, in virtual time.
pub struct Net<Q: NicQueue = WireQueue> {
    pub a: Host<Q>,
    pub b: Host<Q>,
    pub now: Instant,
}

impl Net<WireQueue> {
    pub fn new() -> Self {
        Self::with_configs(config(A_MAC, A_IP, 1), config(B_MAC, B_IP, 2))
    }

    pub fn with_configs(ca: StackConfig, cb: StackConfig) -> Self {
        let (mut qa, mut qb) = wire::pair(WireConfig::default());
        Net::with_queues(ca, cb, qa.remove(0), qb.remove(0))
    }
}

impl<Q: NicQueue> Net<Q> {
    /// Two hosts on the given queues (e.g. wire queues wrapped in fault injection).
    pub fn with_queues(ca: StackConfig, cb: StackConfig, qa: Q, qb: Q) -> Self {
        let now = Instant::from_secs(1);
        Net {
            a: Host::new(Stack::new(ca, now).unwrap(), qa),
            b: Host::new(Stack::new(cb, now).unwrap(), qb),
            now,
        }
    }

    /// Steps both hosts once; advances time a little when frames moved, else jumps to the
    /// next deadline (at most `max_jump`).
    pub fn step(&mut self) -> usize {
        let moved = self.a.step(self.now) + self.b.step(self.now);
        if moved > 0 {
            self.now += Duration::from_micros(10);
        } else {
            let next = [self.a.stack.poll_at(), self.b.stack.poll_at()]
                .into_iter()
                .flatten()
                .min()
                .unwrap_or(self.now + Duration::from_millis(100));
            let cap = self.now + Duration::from_millis(100);
            self.now = next.clamp(self.now + Duration::from_micros(10), cap);
        }
        moved
    }

    /// Steps until `done` holds; panics after `limit` of virtual time.
    pub fn run_until(&mut self, limit: Duration, mut done: impl FnMut(&mut Self) -> bool) {
        let end = self.now + limit;
        while !done(self) {
            assert!(
                self.now < end,
                "condition not reached within {limit} of virtual time"
            );
            self.step();
        }
    }

    /// Connects A to B's `port`, where B listens as `listener`, and runs until A is
    /// connected and B can accept; returns A's connection.
    pub fn connect(&mut self, listener: ListenerId, port: u16) -> ConnId {
        let conn = self
            .a
            .stack
            .connect(self.now, sa(B_IP, port), ConnectOpts::default())
            .unwrap();
        self.run_until(Duration::from_secs(5), |n| {
            n.a.events.contains(&Event::Connected { conn })
                && n.b.events.contains(&Event::Acceptable { listener })
        });
        conn
    }

    /// Steps for `d` of virtual time.
    pub fn run_for(&mut self, d: Duration) {
        let end = self.now + d;
        while self.now < end {
            self.step();
        }
    }
}

pub fn sa(ip: Ipv4Addr, port: u16) -> SocketAddrV4 {
    SocketAddrV4::new(ip, port)
}

/// Removes and returns the events matching `f`.
pub fn take_events(events: &mut Vec<Event>, f: impl Fn(&Event) -> bool) -> Vec<Event> {
    let (hit, keep): (Vec<_>, Vec<_>) = events.drain(..).partition(|e| f(e));
    *events = keep;
    hit
}

/// An Ethernet frame from A to B carrying `ip` and an L4 payload written by `fill`
/// (`ip.payload_len` bytes).
pub fn frame_a_to_b(ip: &Ipv4Repr, fill: impl FnOnce(&mut [u8])) -> Vec<u8> {
    frames::ipv4_frame(A_MAC, B_MAC, ip, fill)
}

impl<Q: NicQueue> Net<Q> {
    /// Opens `n` connections from A to B's listener `lid` on `port` at once; returns the
    /// client ids and the accepted server ids (in accept order).
    pub fn open_many(
        &mut self,
        n: usize,
        lid: ListenerId,
        port: u16,
    ) -> (Vec<ConnId>, Vec<ConnId>) {
        let clients: Vec<_> = (0..n)
            .map(|_| {
                self.a
                    .stack
                    .connect(self.now, sa(B_IP, port), ConnectOpts::default())
                    .unwrap()
            })
            .collect();
        let mut servers = Vec::new();
        self.run_until(Duration::from_secs(30), |net| {
            while let Some((s, _)) = net.b.stack.accept(lid) {
                servers.push(s);
            }
            servers.len() == n
        });
        (clients, servers)
    }
}

/// One stack (B) facing a raw-frame peer (A's address and MAC) on a wire, in virtual time.
pub struct Solo<Q: NicQueue = WireQueue> {
    pub host: Host<Q>,
    pub raw: raw::RawPeer,
    pub now: Instant,
}

impl Solo<WireQueue> {
    pub fn new(cfg: StackConfig) -> Self {
        let (mut qa, mut qb) = wire::pair(WireConfig::default());
        Solo::with_queue(cfg, qb.remove(0), qa.remove(0))
    }
}

impl<Q: NicQueue> Solo<Q> {
    pub fn with_queue(cfg: StackConfig, q: Q, raw_q: WireQueue) -> Self {
        let now = Instant::from_secs(1);
        Solo {
            host: Host::new(Stack::new(cfg, now).unwrap(), q),
            raw: raw::RawPeer {
                q: raw_q,
                mac: A_MAC,
                peer_mac: B_MAC,
                ip: A_IP,
            },
            now,
        }
    }

    /// Sends `seg` and runs the stack for `d` of virtual time (1 ms steps); returns what it
    /// sent back.
    pub fn exchange(&mut self, seg: &raw::Seg, d: Duration) -> Vec<raw::Seg> {
        self.raw.send(seg);
        self.run(d)
    }

    /// Runs the stack for `d` of virtual time in steps of at most 1 ms (or up to its next
    /// deadline); returns the segments it sent.
    pub fn run(&mut self, d: Duration) -> Vec<raw::Seg> {
        let end = self.now + d;
        let mut out = Vec::new();
        loop {
            self.host.step(self.now);
            out.extend(self.raw.recv());
            if self.now >= end {
                return out;
            }
            let next = self.host.stack.poll_at().unwrap_or(end);
            self.now = next
                .clamp(
                    self.now + Duration::from_micros(10),
                    self.now + Duration::from_millis(1),
                )
                .min(end);
        }
    }
}
