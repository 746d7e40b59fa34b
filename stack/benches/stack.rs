//! Criterion benchmark of the stack alone (see `workload.rs`): 64 B request/response
//! transactions for several connection counts (each is four frames through both stacks:
//! request, response and their piggybacked ACKs), short connections closed with a FIN or a
//! RST, and the hot paths one at a time (a data segment in, a reply out, due timers).
#![allow(clippy::unwrap_used, missing_docs)]

mod workload;

use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use workload::{Bench, Close};

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

/// 64 short connections per iteration.
fn short_connections(c: &mut Criterion) {
    const N: usize = 64;
    let mut g = c.benchmark_group("short_connection");
    g.throughput(Throughput::Elements(N as u64));
    for (name, close) in [("fin", Close::Fin), ("rst", Close::Rst)] {
        let mut bench = Bench::new(0);
        let l = bench.short_listener();
        g.bench_function(name, |bn| bn.iter(|| bench.short_connections(l, N, close)));
    }
    g.finish();
}

/// The hot paths one at a time: a data segment in, a reply out, timers firing. Each
/// measures only its part (`iter_custom`), the peer's work in between is left out.
fn hot_paths(c: &mut Criterion) {
    use std::time::{Duration, Instant};
    let mut g = c.benchmark_group("hot_path");
    let mut bench = Bench::new(1);
    g.bench_function("ingress_data_segment", |bn| {
        bn.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let frame = bench.client_segment();
                let t = Instant::now();
                bench.server_ingress(&frame);
                spent += t.elapsed();
            }
            spent
        })
    });
    let mut bench = Bench::new(1);
    g.bench_function("egress_reply", |bn| {
        bn.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                let t = Instant::now();
                bench.server_reply();
                spent += t.elapsed();
                bench.client_acks();
            }
            spent
        })
    });
    const N: usize = 1000;
    let mut bench = Bench::new(N);
    g.throughput(Throughput::Elements(N as u64));
    g.bench_function("timers_1000_delayed_acks", |bn| {
        bn.iter_custom(|iters| {
            let mut spent = Duration::ZERO;
            for _ in 0..iters {
                bench.arm_delayed_acks();
                let t = Instant::now();
                bench.fire_timers();
                spent += t.elapsed();
                bench.deliver();
            }
            spent
        })
    });
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = transactions, short_connections, hot_paths
}
criterion_main!(benches);
