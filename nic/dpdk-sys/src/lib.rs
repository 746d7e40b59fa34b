//! Narrow bindings to the system DPDK (Debian's 22.11) for megatcp's DPDK backend.
//!
//! * `build.rs` finds DPDK with `pkg-config libdpdk`, passes its whole `--cflags` output
//!   (`-include rte_config.h`, `-march=...`) to both the C compiler and bindgen, generates
//!   bindings for an allowlist of EAL, ethdev, mempool, mbuf and ring functions, types and
//!   (macro) constants, and compiles `src/shim.c`: `mtcp_*` wrappers around DPDK's
//!   `static inline` fast path (`rte_eth_rx_burst`, `rte_eth_tx_burst`,
//!   `rte_pktmbuf_alloc`, `rte_pktmbuf_free`, `rte_pktmbuf_mtod`, `rte_pktmbuf_append`,
//!   `rte_errno`, `rte_lcore_id`) and the mbuf fields bindgen cannot reach (the
//!   `l2_len`/`l3_len`/`l4_len` bit fields and `ol_flags` of transmit checksum offload).
//! * Without libdpdk this crate builds **empty** (so `cargo build --workspace --no-default-features` works on any
//!   machine); with feature `required` (turned on by `megatcp-nic/dpdk`) a missing libdpdk
//!   fails the build with what to install. `cfg(megatcp_dpdk)` is set when the bindings
//!   are there.
//!
//! Everything here is raw FFI: use the safe layer, `megatcp_nic::dpdk`.

#![allow(
    non_upper_case_globals,
    non_camel_case_types,
    non_snake_case,
    missing_docs,
    unreachable_pub,
    clippy::all,
    clippy::undocumented_unsafe_blocks,
    clippy::missing_safety_doc,
    rust_2018_idioms,
    unsafe_op_in_unsafe_fn
)]

#[cfg(megatcp_dpdk)]
include!(concat!(env!("OUT_DIR"), "/bindings.rs"));

/// Whether this build has DPDK (libdpdk was found when it was compiled).
pub const AVAILABLE: bool = cfg!(megatcp_dpdk);
