//! The DPDK port layer's errors (feature `dpdk`), on real DPDK vdevs and ring ports, never a
//! PCI NIC. (Two stacks over a ring pair, and the process-to-process runs, are the echo
//! app's tests: `apps/echo/tests/dpdk.rs`.)
#![cfg(feature = "dpdk")]
#![allow(clippy::unwrap_used)]

use megatcp_nic::NicQueue;
use megatcp_nic::dpdk::{DpdkPort, EalConfig, PortConfig, init_eal};

/// The process's EAL, the same for every test (EAL initialises once).
fn eal() -> &'static megatcp_nic::dpdk::Eal {
    init_eal(&EalConfig::default()).unwrap()
}

#[test]
fn a_missing_port_or_queue_is_a_clear_error() {
    let eal = eal();
    let e = DpdkPort::open(eal, 200, &PortConfig::new(1)).unwrap_err();
    assert!(e.to_string().contains("no DPDK port 200"), "{e}");
    let (a, _) = eal.ring_pair("mtcp_r3", 1).unwrap();
    let e = DpdkPort::open(eal, a, &PortConfig::new(64)).unwrap_err();
    assert!(e.to_string().contains("queues"), "{e}");
    let p = DpdkPort::open(eal, a, &PortConfig::new(1)).unwrap();
    assert_eq!(p.capabilities().queues, 1);
    let e = p.queue(1).unwrap_err();
    assert!(e.to_string().contains("no queue 1"), "{e}");
    let q = p.queue(0).unwrap();
    assert_eq!(q.queue_id(), 0);
    // A second initialisation with other arguments is refused, not ignored.
    let e = init_eal(&EalConfig::new(&["--vdev", "net_null0"])).unwrap_err();
    assert!(e.to_string().contains("already initialised"), "{e}");
}
