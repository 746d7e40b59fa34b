//! Workloads shared by the criterion benchmark (`benches/stack.rs`) and the instruction
//! counter (`examples/instructions.rs`): two stacks joined directly (frames handed from one
//! stack's `transmit` to the other's `receive`), in explicit time.
#![allow(dead_code, unreachable_pub, clippy::unwrap_used, missing_docs)]

use std::net::{Ipv4Addr, SocketAddrV4};

#[path = "../tests/common/frames.rs"]
mod frames;

use megatcp_stack::{
    ConnId, ConnectOpts, Event, Instant, ListenerId, LocalAddr, MacAddr, Stack, StackConfig,
};

const B: Ipv4Addr = Ipv4Addr::new(10, 9, 0, 2);

pub struct Bench {
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
    pub fn new(n: usize) -> Bench {
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
    pub fn settle(&mut self) {
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

    /// One 64 B request/response on every connection.
    pub fn round(&mut self) {
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

impl Bench {
    /// A 64 B data segment of the first client connection, not delivered (the server's
    /// input for an ingress measurement); what the server owes the client is delivered first,
    /// so that its window stays open.
    pub fn client_segment(&mut self) -> Vec<u8> {
        self.now += megatcp_stack::Duration::from_micros(10);
        shuttle(&mut self.b, &mut self.a, self.now, &mut self.frames);
        self.a.send(self.clients[0], &[0x42u8; 64]).unwrap();
        self.a.poll(self.now);
        let mut out = Vec::new();
        self.a.transmit(&mut |f| {
            out = f.to_vec();
            true
        });
        out
    }

    /// The server takes in one data segment: receive, read, poll, output (its ACK is
    /// delayed: usually nothing).
    pub fn server_ingress(&mut self, frame: &[u8]) {
        let mut buf = [0u8; 256];
        self.b.receive(self.now, frame);
        let _ = self.b.recv(self.servers[0], &mut buf);
        self.b.poll(self.now);
        let frames = &mut self.frames;
        self.b.transmit(&mut |f| {
            frames.push(f.to_vec());
            true
        });
        while self.b.next_event().is_some() {}
    }

    /// The server sends a 64 B reply: send, poll, output (one segment, kept for the client).
    pub fn server_reply(&mut self) {
        self.b.send(self.servers[0], &[0x42u8; 64]).unwrap();
        self.b.poll(self.now);
        let frames = &mut self.frames;
        self.b.transmit(&mut |f| {
            frames.push(f.to_vec());
            true
        });
    }

    /// The client takes what the server sent, reads it and acknowledges it at once.
    pub fn client_acks(&mut self) {
        let mut buf = [0u8; 256];
        self.now += megatcp_stack::Duration::from_millis(2);
        for f in self.frames.drain(..) {
            self.a.receive(self.now, &f);
        }
        while self.a.recv(self.clients[0], &mut buf).unwrap_or(0) > 0 {}
        self.settle();
        while self.a.next_event().is_some() {}
        while self.b.next_event().is_some() {}
    }

    /// Every connection received a 64 B segment whose ACK is delayed; then time passes
    /// beyond the delay: the next [`Bench::fire_timers`] has one timer due per connection.
    pub fn arm_delayed_acks(&mut self) {
        for &c in &self.clients {
            self.a.send(c, &[0x42u8; 64]).unwrap();
        }
        self.a.poll(self.now);
        shuttle(&mut self.a, &mut self.b, self.now, &mut self.frames);
        self.b.poll(self.now);
        let frames = &mut self.frames;
        self.b.transmit(&mut |f| {
            frames.push(f.to_vec());
            true
        });
        self.frames.clear();
        let mut buf = [0u8; 256];
        for &s in &self.servers {
            let _ = self.b.recv(s, &mut buf);
        }
        self.now += megatcp_stack::Duration::from_millis(2);
    }

    /// The server's poll with the delayed-ACK timers of every connection due, and their
    /// output.
    pub fn fire_timers(&mut self) {
        self.b.poll(self.now);
        let frames = &mut self.frames;
        self.b.transmit(&mut |f| {
            frames.push(f.to_vec());
            true
        });
        // The ACKs reach the client (keeps its state moving), outside what is measured.
    }

    /// Delivers the server's ACKs to the client and lets everything settle.
    pub fn deliver(&mut self) {
        for f in self.frames.drain(..) {
            self.a.receive(self.now, &f);
        }
        self.settle();
        while self.a.next_event().is_some() {}
        while self.b.next_event().is_some() {}
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

/// How a short connection ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Close {
    /// The client closes first with a FIN (it then holds TIME-WAIT as a record).
    Fin,
    /// The client aborts with a RST.
    Rst,
}

impl Bench {
    /// A listener for short connections.
    pub fn short_listener(&mut self) -> ListenerId {
        self.b.listen(SocketAddrV4::new(B, 8), None).unwrap()
    }

    /// `n` short connections at once, both stacks' work: connect, one 64 B request and its
    /// echo, close (the server closes when it sees the end).
    pub fn short_connections(&mut self, l: ListenerId, n: usize, close: Close) {
        let msg = [0x42u8; 64];
        let mut buf = [0u8; 256];
        let now = self.now;
        let clients: Vec<_> = (0..n)
            .map(|_| {
                self.a
                    .connect(now, SocketAddrV4::new(B, 8), ConnectOpts::default())
                    .unwrap()
            })
            .collect();
        self.settle();
        while let Some((s, _)) = self.b.accept(l) {
            self.servers.push(s);
        }
        for &c in &clients {
            self.a.send(c, &msg).unwrap();
        }
        self.settle();
        for &s in &self.servers {
            let k = self.b.recv(s, &mut buf).unwrap();
            self.b.send(s, &buf[..k]).unwrap();
        }
        self.settle();
        for &c in &clients {
            self.a.recv(c, &mut buf).unwrap();
            match close {
                Close::Fin => self.a.close(c).unwrap(),
                Close::Rst => self.a.abort(c).unwrap(),
            }
        }
        self.settle();
        for s in self.servers.drain(..) {
            // Gone already after a RST; closed in turn after a FIN.
            let _ = self.b.close(s);
        }
        self.settle();
        while self.a.next_event().is_some() {}
        while self.b.next_event().is_some() {}
        self.now += megatcp_stack::Duration::from_micros(50);
    }
}

/// A SYN flood against a listener whose backlog is full: every SYN is answered with a SYN
/// cookie (the stack's stateless path).
pub struct Flood {
    stack: Stack,
    frames: Vec<Vec<u8>>,
    now: Instant,
}

impl Flood {
    /// `n` spoofed SYNs (timestamps, window scale, SACK, as Linux sends them) from one
    /// address, ready to be received again and again.
    pub fn new(n: usize) -> Flood {
        use smoltcp::wire::{TcpControl, TcpRepr, TcpSeqNumber, TcpTimestampRepr};
        let now = Instant::from_secs(1);
        let mut stack = Stack::new(config(2, B), now).unwrap();
        stack.listen(SocketAddrV4::new(B, 8), Some(1)).unwrap();
        let src = Ipv4Addr::new(10, 9, 0, 99);
        let frames = (0..n)
            .map(|i| {
                let tcp = TcpRepr {
                    src_port: 1024 + (i % 60_000) as u16,
                    dst_port: 8,
                    control: TcpControl::Syn,
                    seq_number: TcpSeqNumber((i as i32).wrapping_mul(7919)),
                    ack_number: None,
                    window_len: 64_240,
                    window_scale: Some(7),
                    max_seg_size: Some(1460),
                    sack_permitted: true,
                    sack_ranges: [None; 3],
                    timestamp: Some(TcpTimestampRepr::new(i as u32, 0)),
                    payload: &[],
                };
                frames::tcp_frame(
                    (MacAddr([2, 0, 0, 0, 0, 0x99]), src),
                    (MacAddr([2, 0, 0, 0, 0, 2]), B),
                    &tcp,
                )
            })
            .collect();
        let mut flood = Flood { stack, frames, now };
        // The first SYN makes the one half-open connection that fills the backlog.
        flood.round();
        flood
    }

    /// Every SYN received once, the answers sent (into a buffer that is thrown away).
    pub fn round(&mut self) {
        let mut out = [0u8; 1600];
        for f in &self.frames {
            self.stack.receive(self.now, f);
        }
        self.stack.poll(self.now);
        self.stack.transmit_into(&mut |fill| {
            fill(&mut out);
            true
        });
        self.now += megatcp_stack::Duration::from_micros(50);
    }
}
