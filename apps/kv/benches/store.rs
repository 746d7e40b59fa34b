//! How should cores share the store? One lock over one table, or N stripes each with its
//! own lock, table and LRU. Two threads (the server's two cores) each run 10,000 operations
//! (90 % get / 10 % set, uniform over 10,000 keys, 64-byte values) per iteration, against
//! the same store, as the server's cores do. A single-thread run gives the uncontended cost.
#![allow(missing_docs, clippy::unwrap_used)]

use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, criterion_group, criterion_main};
use megatcp_kv::store::{SetMode, Store, StoreConfig};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

const KEYS: u64 = 10_000;
const OPS: usize = 10_000;

fn store(stripes: usize) -> Store {
    let s = Store::new(StoreConfig {
        stripes,
        ..StoreConfig::new(64 * 1024 * 1024, 1024 * 1024)
    });
    let v = [b'v'; 64];
    for i in 0..KEYS {
        s.store(SetMode::Set, format!("key:{i}").as_bytes(), 0, 0, &v, 10);
    }
    s
}

/// One thread's work: returns the hits (so nothing is optimised away).
fn work(s: &Store, seed: u64, keys: &[Vec<u8>]) -> u64 {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let v = [b'w'; 64];
    let mut hits = 0;
    let mut out = Vec::with_capacity(256);
    for _ in 0..OPS {
        let k = &keys[rng.random_range(0..KEYS as usize)];
        if rng.random_bool(0.9) {
            out.clear();
            if s.get(k, 10, |it| out.extend_from_slice(it.value)).is_some() {
                hits += 1;
            }
        } else {
            s.store(SetMode::Set, k, 0, 0, &v, 10);
        }
    }
    hits
}

fn bench(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..KEYS).map(|i| format!("key:{i}").into_bytes()).collect();
    let mut g = c.benchmark_group("store_90get_10set");
    g.measurement_time(Duration::from_secs(3));
    g.warm_up_time(Duration::from_millis(500));
    for (threads, stripes) in [(1, 1), (2, 1), (2, 32)] {
        let s = store(stripes);
        let id = BenchmarkId::new(format!("{threads}_threads"), format!("{stripes}_stripes"));
        g.throughput(criterion::Throughput::Elements((OPS * threads) as u64));
        g.bench_function(id, |b| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for i in 0..iters {
                    let t = Instant::now();
                    std::thread::scope(|sc| {
                        for th in 0..threads {
                            let (s, keys) = (&s, &keys);
                            sc.spawn(move || work(s, i * 31 + th as u64, keys));
                        }
                    });
                    total += t.elapsed();
                }
                total
            });
        });
    }
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
