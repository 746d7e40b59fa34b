//! Criterion benchmark: 64 B request/response transactions between two stacks joined
//! directly (frames handed from one stack's `transmit` to the other's `receive`), for several
//! connection counts. Throughput is in transactions; each is four frames (request, response,
//! and their piggybacked ACKs) through both stacks.
#![allow(clippy::unwrap_used, missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use megatcp_stack::{ConnId, ConnectOpts, Event, Instant, LocalAddr, MacAddr, Stack, StackConfig};

const B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

struct Bench {
    a: Stack,
    b: Stack,
    clients: Vec<ConnId>,
    servers: Vec<ConnId>,
    now: Instant,
    frames: Vec<Vec<u8>>,
}

fn config(mac: u8, ip: Ipv4Addr) -> StackConfig {
    let mut c = StackConfig::new(MacAddr([2, 0, 0, 0, 0, mac]), LocalAddr::new(ip, 24));
    c.seed = u64::from(mac);
    c.tx_queue_limit = 1 << 16;
    // Every SYN leaves before the first ARP answer.
    c.arp.max_queued_per_neighbour = 1 << 16;
    c.default_backlog = 1 << 16;
    c
}

impl Bench {
    fn new(n: usize) -> Bench {
        let now = Instant::from_secs(1);
        let a = Stack::new(config(1, Ipv4Addr::new(10, 9, 0, 1)), now).unwrap();
        let mut b = Stack::new(config(2, B), now).unwrap();
        let l = b.listen(SocketAddrV4::new(B, 7), None).unwrap();
        let mut bench = Bench {
            a,
            b,
            clients: Vec::new(),
            servers: Vec::new(),
            now,
            frames: Vec::new(),
        };
        for _ in 0..n {
            let c = bench
                .a
                .connect(now, SocketAddrV4::new(B, 7), ConnectOpts::default())
                .unwrap();
            bench.clients.push(c);
        }
        bench.settle();
        while let Some((s, _)) = bench.b.accept(l) {
            bench.servers.push(s);
        }
        assert_eq!(bench.servers.len(), n);
        while bench.a.next_event().is_some() {}
        while bench.b.next_event().is_some() {}
        bench
    }

    /// Moves frames both ways until quiet.
    fn settle(&mut self) {
        loop {
            self.a.poll(self.now);
            self.b.poll(self.now);
            let moved = shuttle(&mut self.a, &mut self.b, self.now, &mut self.frames)
                + shuttle(&mut self.b, &mut self.a, self.now, &mut self.frames);
            if moved == 0 {
                break;
            }
        }
    }

    /// One 64 B transaction on every connection.
    fn round(&mut self) {
        let msg = [0x42u8; 64];
        let mut buf = [0u8; 256];
        for &c in &self.clients {
            self.a.send(c, &msg).unwrap();
        }
        self.settle();
        while let Some(e) = self.b.next_event() {
            if let Event::Readable { conn } = e {
                let n = self.b.recv(conn, &mut buf).unwrap();
                self.b.send(conn, &buf[..n]).unwrap();
            }
        }
        self.settle();
        while let Some(e) = self.a.next_event() {
            if let Event::Readable { conn } = e {
                self.a.recv(conn, &mut buf).unwrap();
            }
        }
        self.now += megatcp_stack::Duration::from_micros(50);
    }
}

/// Hands every frame `src` has queued to `dst`.
fn shuttle(src: &mut Stack, dst: &mut Stack, now: Instant, frames: &mut Vec<Vec<u8>>) -> usize {
    src.transmit(&mut |f| {
        frames.push(f.to_vec());
        true
    });
    let n = frames.len();
    for f in frames.drain(..) {
        dst.receive(now, &f);
    }
    n
}

fn transactions(c: &mut Criterion) {
    let mut g = c.benchmark_group("transaction_64B");
    for n in [1usize, 100, 1000, 10_000] {
        let mut bench = Bench::new(n);
        g.throughput(Throughput::Elements(n as u64));
        g.bench_function(BenchmarkId::from_parameter(n), |bn| {
            bn.iter(|| bench.round())
        });
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = transactions
}
criterion_main!(benches);
