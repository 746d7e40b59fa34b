//! Instructions per unit of work, for A/B comparisons on a noisy machine: runs one workload
//! of `benches/workload.rs` a fixed number of times, so that under
//! `valgrind --tool=callgrind` the instruction total divided by the count is the cost of one
//! unit (run twice with different counts and subtract to cancel the set-up).
//!
//! Run: `valgrind --tool=callgrind target/release/examples/instructions fin 100` (workloads:
//! `fin`, `rst`: 64 short connections per unit; `txn`: one 64 B transaction on each of 64
//! connections per unit; `syn`: 64 SYNs of a flood answered with SYN cookies per unit).
#![allow(clippy::unwrap_used, missing_docs)]

#[path = "../benches/workload.rs"]
mod workload;

use workload::{Bench, Close, Flood};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let (what, n) = match (
        args.get(1),
        args.get(2).and_then(|n| n.parse::<usize>().ok()),
    ) {
        (Some(w), Some(n)) => (w.as_str(), n),
        _ => {
            eprintln!("usage: instructions fin|rst|txn|syn COUNT");
            std::process::exit(2);
        }
    };
    match what {
        "fin" | "rst" => {
            let close = if what == "fin" {
                Close::Fin
            } else {
                Close::Rst
            };
            let mut bench = Bench::new(0);
            let l = bench.short_listener();
            for _ in 0..n {
                bench.short_connections(l, 64, close);
            }
        }
        "syn" => {
            let mut flood = Flood::new(64);
            for _ in 0..n {
                flood.round();
            }
        }
        "txn" => {
            let mut bench = Bench::new(64);
            for _ in 0..n {
                bench.round();
            }
        }
        _ => {
            eprintln!("unknown workload {what}: fin, rst, txn or syn");
            std::process::exit(2);
        }
    }
    println!("{what} x {n}");
}
