//! Per-packet cost of the stack against the number of connections, and memory per idle
//! connection.
//!
//! Two stacks (client and server) on the in-memory wire NIC, driven by one thread in real
//! time. Every connection carries 64 B request/response transactions back to back, so all
//! are active and most packets of a 32-packet receive batch belong to different flows.
//! `ns_per_packet` is wall time divided by the frames both stacks received (each frame is
//! received, processed, answered and transmitted in that time).
//!
//! `bytes_per_connection`: heap growth (counted by the global allocator) for 10,000 idle
//! established connections with 4 KiB buffers each way, divided by the connection endpoints
//! (each connection has one on each stack).
//!
//! The sizes 10, 1,000 and 10,000 run in interleaved rounds (`--rounds`, 3 by default); the
//! last line gives the median per size and the medians of the per-round ratios, which a slow
//! stretch of a shared machine disturbs far less than single runs. Retransmissions and drops
//! are counted within the measured window only.
//!
//! Run: `cargo run --release -p megatcp-stack --example flow_scaling [-- --secs S] [--rounds R] [--only N]`
#![allow(clippy::unwrap_used, missing_docs)]

use std::alloc::System;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Instant as StdInstant;

use cap::Cap;
use megatcp_nic::NicQueue;
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{ConnId, ConnectOpts, Event, Instant, LocalAddr, MacAddr, Stack, StackConfig};

#[global_allocator]
static ALLOC: Cap<System> = Cap::new(System, usize::MAX);

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 77, 0, 2);
const PORT: u16 = 7;
const MSG: usize = 64;
const BATCH: usize = 32;

struct Host {
    stack: Stack,
    nic: WireQueue,
}

impl Host {
    fn step(&mut self, now: Instant, events: &mut Vec<Event>) {
        let stack = &mut self.stack;
        self.nic
            .rx_burst(BATCH, &mut |f| stack.receive(now, f.data));
        stack.poll(now);
        let nic = &mut self.nic;
        stack.transmit_into(&mut |fill| nic.tx_frame(fill).is_ok());
        nic.tx_flush();
        while let Some(e) = stack.next_event() {
            events.push(e);
        }
    }
}

struct Pair {
    client: Host,
    server: Host,
    clock: StdInstant,
    conns: Vec<ConnId>,
    /// Bytes of the current response received, per client connection (by slot index).
    got: Vec<usize>,
    txns: u64,
    ev_c: Vec<Event>,
    ev_s: Vec<Event>,
}

fn config(mac: u8, ip: Ipv4Addr, buf: usize) -> StackConfig {
    let mut c = StackConfig::new(MacAddr([2, 0, 0, 0, 0, mac]), LocalAddr::new(ip, 24));
    c.seed = u64::from(mac) * 7919;
    c.tcp.rx_buffer = buf;
    c.tcp.tx_buffer = buf;
    c.default_backlog = 65536;
    c.tx_queue_limit = 65536;
    c.arp.max_queued_per_neighbour = 65536;
    c
}

impl Pair {
    fn new(buf: usize) -> Pair {
        let cfg = WireConfig {
            ring_size: 65536,
            ..WireConfig::default()
        };
        let (mut a, mut b) = wire::pair(cfg);
        let clock = StdInstant::now();
        let now = Instant::from_micros(0);
        let client = Stack::new(config(1, Ipv4Addr::new(10, 77, 0, 1), buf), now).unwrap();
        let mut server = Stack::new(config(2, SERVER, buf), now).unwrap();
        server
            .listen(SocketAddrV4::new(SERVER, PORT), None)
            .unwrap();
        Pair {
            client: Host {
                stack: client,
                nic: a.remove(0),
            },
            server: Host {
                stack: server,
                nic: b.remove(0),
            },
            clock,
            conns: Vec::new(),
            got: Vec::new(),
            txns: 0,
            ev_c: Vec::new(),
            ev_s: Vec::new(),
        }
    }

    fn now(&self) -> Instant {
        Instant::from_micros(self.clock.elapsed().as_micros() as i64)
    }

    /// One iteration of both hosts plus the applications. `echo`: run transactions.
    fn step(&mut self, echo: bool) {
        let now = self.now();
        self.client.step(now, &mut self.ev_c);
        self.server.step(now, &mut self.ev_s);
        let mut buf = [0u8; 2048];
        for e in self.ev_s.drain(..) {
            match e {
                Event::Acceptable { listener } => {
                    while self.server.stack.accept(listener).is_some() {}
                }
                Event::Readable { conn } => loop {
                    let n = self.server.stack.recv(conn, &mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    let w = self.server.stack.send(conn, &buf[..n]).unwrap_or(0);
                    assert_eq!(w, n, "server send buffer full");
                },
                _ => {}
            }
        }
        for e in self.ev_c.drain(..) {
            match e {
                Event::Connected { conn } if echo => {
                    self.client.stack.send(conn, &[0x5a; MSG]).unwrap();
                }
                Event::Readable { conn } => loop {
                    let n = self.client.stack.recv(conn, &mut buf).unwrap_or(0);
                    if n == 0 {
                        break;
                    }
                    let slot = conn.index() as usize;
                    self.got[slot] += n;
                    if self.got[slot] == MSG {
                        self.got[slot] = 0;
                        self.txns += 1;
                        self.client.stack.send(conn, &[0x5a; MSG]).unwrap();
                    }
                },
                _ => {}
            }
        }
    }

    fn open(&mut self, n: usize) {
        let now = self.now();
        let remote = SocketAddrV4::new(SERVER, PORT);
        for _ in 0..n {
            let id = self
                .client
                .stack
                .connect(now, remote, ConnectOpts::default())
                .unwrap();
            self.conns.push(id);
            let slot = id.index() as usize;
            if self.got.len() <= slot {
                self.got.resize(slot + 1, 0);
            }
        }
    }

    fn frames_in(&self) -> u64 {
        self.client.stack.counters().rx_frames + self.server.stack.counters().rx_frames
    }

    /// Retransmissions and drops of both stacks so far.
    fn trouble(&self) -> (u64, u64) {
        let c = self.client.stack.counters();
        let s = self.server.stack.counters();
        (
            c.tcp_retransmits + s.tcp_retransmits,
            c.drops.total() + s.drops.total(),
        )
    }
}

/// One measurement at `n` connections.
struct Sample {
    ns_per_packet: f64,
    packets: u64,
    txns_per_sec: f64,
    /// Retransmissions and drops of both stacks within the measured window (not the warm-up).
    retransmits: u64,
    drops: u64,
}

fn scaling(n: usize, secs: f64) -> Sample {
    let mut p = Pair::new(16 * 1024);
    p.open(n);
    let t0 = StdInstant::now();
    // Warm up: every connection established and running transactions for a while.
    while p.client.stack.stats().flows < n || p.server.stack.counters().conns_accepted < n as u64 {
        p.step(true);
        assert!(t0.elapsed().as_secs() < 60, "connections did not establish");
    }
    let t1 = StdInstant::now();
    while t1.elapsed().as_secs_f64() < 0.5 {
        p.step(true);
    }
    let (f0, x0, trouble0, start) = (p.frames_in(), p.txns, p.trouble(), StdInstant::now());
    while start.elapsed().as_secs_f64() < secs {
        p.step(true);
    }
    let elapsed = start.elapsed().as_nanos() as f64;
    let packets = p.frames_in() - f0;
    let trouble = p.trouble();
    Sample {
        ns_per_packet: elapsed / packets.max(1) as f64,
        packets,
        txns_per_sec: (p.txns - x0) as f64 / (elapsed / 1e9),
        retransmits: trouble.0 - trouble0.0,
        drops: trouble.1 - trouble0.1,
    }
}

fn print(round: usize, n: usize, s: &Sample) {
    println!(
        "round={round} connections={n} ns_per_packet={:.0} packets={} txns_per_sec={:.0} retransmits={} drops={}",
        s.ns_per_packet, s.packets, s.txns_per_sec, s.retransmits, s.drops,
    );
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    let m = v.len() / 2;
    if v.len() % 2 == 1 {
        v[m]
    } else {
        (v[m - 1] + v[m]) / 2.0
    }
}

/// Rounds of 10, 1,000 and 10,000 connections, interleaved so that a slow stretch of the
/// machine hits every size alike; the ratios are taken within each round, then their median.
fn rounds(rounds: usize, secs: f64) {
    const SIZES: [usize; 3] = [10, 1000, 10_000];
    let mut per_round = Vec::new();
    for round in 1..=rounds {
        let ns: Vec<f64> = SIZES
            .iter()
            .map(|&n| {
                let s = scaling(n, secs);
                print(round, n, &s);
                s.ns_per_packet
            })
            .collect();
        println!(
            "round={round} ratio_10000_vs_1000={:.2} ratio_10000_vs_10={:.2}",
            ns[2] / ns[1],
            ns[2] / ns[0]
        );
        per_round.push(ns);
    }
    let col = |i: usize| median(per_round.iter().map(|r| r[i]).collect());
    let ratio = |a: usize, b: usize| median(per_round.iter().map(|r| r[a] / r[b]).collect());
    println!(
        "median of {rounds} rounds: ns_per_packet 10={:.0} 1000={:.0} 10000={:.0} ratio_10000_vs_1000={:.2} ratio_10000_vs_10={:.2}",
        col(0),
        col(1),
        col(2),
        ratio(2, 1),
        ratio(2, 0),
    );
}

fn memory(n: usize) {
    let mut p = Pair::new(4 * 1024);
    // Let ARP resolve first, so that only connections are measured.
    p.open(1);
    let t0 = StdInstant::now();
    while t0.elapsed().as_millis() < 50 {
        p.step(false);
    }
    let before = ALLOC.allocated();
    p.open(n - 1);
    let t0 = StdInstant::now();
    while p.server.stack.stats().flows < n || t0.elapsed().as_millis() < 300 {
        p.step(false);
        assert!(t0.elapsed().as_secs() < 30, "connections did not establish");
    }
    let after = ALLOC.allocated();
    let endpoints = 2 * (n - 1);
    println!(
        "bytes_per_connection={} connections={n} buffers=4096+4096 (heap growth / {endpoints} endpoints)",
        (after.saturating_sub(before)) / endpoints
    );
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let value = |flag: &str| {
        args.iter()
            .position(|a| a == flag)
            .and_then(|i| args.get(i + 1))
            .map(|v| {
                v.parse::<f64>().unwrap_or_else(|_| {
                    eprintln!("flow_scaling: {flag} takes a number, not {v:?}");
                    std::process::exit(2);
                })
            })
    };
    let secs = value("--secs").unwrap_or(1.5);
    match value("--only") {
        Some(n) => print(1, n as usize, &scaling(n as usize, secs)),
        None => {
            rounds(value("--rounds").map_or(3, |r| r.max(1.0) as usize), secs);
            memory(10_000);
        }
    }
}
