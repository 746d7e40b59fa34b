//! What a bypass core pays to publish its counters (`Bypass::publish`: the stack's, the loop's,
//! the NIC queue's and the steering counters and the drops by reason, stored into its
//! `CoreMonitor`), done about once a millisecond: the time of one publication is the share of
//! a core it costs (1 µs = 0.1 %). A server core with 64 open connections over the in-memory
//! wire, with its pool of spare sockets empty and full (the stack's stats sum the pool's
//! buffers); the listing of connections (only made when `megatcp-stat conns` asks) apart.
#![allow(clippy::unwrap_used, missing_docs)]

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use megatcp_channel::{Channel, Completion};
use megatcp_engine::{Bypass, CoreMonitor, IdlePolicy};
use megatcp_nic::wire::{self, WireConfig, WireQueue};
use megatcp_stack::{LocalAddr, MacAddr, SOCKET_POOL, StackConfig};

const SERVER: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 1);
const CLIENT: Ipv4Addr = Ipv4Addr::new(10, 5, 0, 2);
const CONNECTIONS: usize = 64;

type Ch = Channel<Bypass<WireQueue>>;

/// A server channel publishing to a monitor, with `CONNECTIONS` connections from a client
/// channel (returned too: its end of the wire must stay open), and `pooled` more connections
/// accepted then aborted, whose sockets wait in the stack's pool of spare ones.
fn server(pooled: usize) -> (Ch, Ch) {
    let (mut a, mut b) = wire::pair(WireConfig::default());
    let mk = |q, mac, ip| {
        let cfg = StackConfig::new(MacAddr([2, 0, 0, 0, 0, mac]), LocalAddr::new(ip, 24));
        let stop = Arc::new(AtomicBool::new(false));
        Channel::new(Bypass::new(q, cfg, stop, IdlePolicy::BusyPoll).unwrap())
    };
    let (mut s, mut c) = (mk(a.remove(0), 1, SERVER), mk(b.remove(0), 2, CLIENT));
    s.backend_mut()
        .set_monitor(Arc::new(vec![CoreMonitor::default()]), 0);
    s.listen(SocketAddrV4::new(SERVER, 7), 1024, 1);
    let listener = loop {
        if let Some(Completion::Listening { handle, .. }) = s.dispatch(Some(Duration::ZERO)).pop() {
            break handle;
        }
    };
    let all = CONNECTIONS + pooled;
    // In rounds of 64 connects (within the listener's backlog), one accept at a time: each
    // takes the next connection of the backlog.
    let (mut accepted, mut connected, mut issued) = (Vec::new(), 0, 0);
    for _ in 0..100_000 {
        if accepted.len() == all && connected == all {
            break;
        }
        if connected == issued && accepted.len() == issued {
            for _ in 0..64.min(all - issued) {
                c.connect(SocketAddrV4::new(SERVER, 7), 200);
                issued += 1;
            }
        }
        if accepted.len() < issued {
            s.accept(listener, false, 100);
        }
        for x in s.dispatch(Some(Duration::ZERO)) {
            if let Completion::Accepted { handle, .. } = x {
                accepted.push(handle);
            }
        }
        connected += c
            .dispatch(Some(Duration::ZERO))
            .iter()
            .filter(|x| matches!(x, Completion::Connected { .. }))
            .count();
    }
    assert_eq!((accepted.len(), connected), (all, all), "connections");
    for &h in &accepted[CONNECTIONS..] {
        s.abort(h, 300);
    }
    for _ in 0..100 {
        let _ = s.dispatch(Some(Duration::ZERO));
        let _ = c.dispatch(Some(Duration::ZERO));
    }
    let st = s.backend().stack().stats();
    assert_eq!(st.flows, CONNECTIONS, "open connections");
    assert_eq!(
        st.pooled_socket_bytes > 0,
        pooled > 0,
        "spare sockets: {st:?}"
    );
    (s, c)
}

fn publish(c: &mut Criterion) {
    for (name, pooled) in [("pool_empty", 0), ("pool_full", SOCKET_POOL)] {
        let (s, _client) = server(pooled);
        c.bench_function(&format!("publish_64_connections_{name}"), |b| {
            b.iter(|| black_box(s.backend()).publish())
        });
    }
}

criterion_group!(benches, publish);
criterion_main!(benches);
