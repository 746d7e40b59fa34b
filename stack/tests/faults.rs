//! 64 MiB each way over a wire with 5 % loss, 2 % duplication and reordering: every byte
//! arrives, in order (hash compared), and the connection closes cleanly.
#![allow(clippy::unwrap_used)]

mod common;

use megatcp_nic::fault::FaultConfig;

#[test]
fn sixty_four_mib_each_way_through_loss_duplication_and_reordering() {
    let faults = FaultConfig {
        seed: 0,
        loss: 0.05,
        duplicate: 0.02,
        reorder: 0.02,
        reorder_window: 8,
        corrupt: 0.001,
        delay: None,
    };
    common::bulk::each_way(faults, 64 << 20);
}
