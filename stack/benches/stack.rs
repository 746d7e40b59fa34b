//! Criterion benchmark of the stack alone (see `workload.rs`): 64 B request/response
//! transactions for several connection counts (each is four frames through both stacks:
//! request, response and their piggybacked ACKs), and short connections closed with a FIN
//! or a RST.
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

criterion_group! {
    name = benches;
    config = Criterion::default().sample_size(20);
    targets = transactions, short_connections
}
criterion_main!(benches);
