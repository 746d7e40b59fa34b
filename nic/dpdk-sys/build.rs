//! Finds DPDK with pkg-config, compiles the C shim for DPDK's `static inline` fast path and
//! generates narrow bindings with bindgen. Without libdpdk the crate builds empty (cfg
//! `megatcp_dpdk` unset), unless feature `required` asks for DPDK: then the build fails
//! with what to install.

use std::env;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(megatcp_dpdk)");
    println!("cargo::rerun-if-changed=src/shim.c");
    println!("cargo::rerun-if-changed=src/shim.h");
    println!("cargo::rerun-if-env-changed=PKG_CONFIG_PATH");
    let required = env::var_os("CARGO_FEATURE_REQUIRED").is_some();
    let lib = match pkg_config::Config::new()
        .atleast_version("22.11")
        .cargo_metadata(false)
        .probe("libdpdk")
    {
        Ok(lib) => lib,
        Err(e) if required => {
            panic!(
                "DPDK not found ({e}). Install it: `apt-get install libdpdk-dev libclang-dev \
                 clang pkg-config` (or run scripts/install-deps as root), or build without \
                 the DPDK backend: cargo build --no-default-features [--features afxdp]."
            );
        }
        Err(_) => {
            println!("cargo::warning=libdpdk not found: megatcp-dpdk-sys is built empty (no DPDK)");
            return;
        }
    };
    // The whole `pkg-config --cflags libdpdk` output (-include rte_config.h, -march=...).
    let cflags = cflags();

    let mut build = cc::Build::new();
    build.file("src/shim.c").opt_level(3).warnings(false);
    for f in &cflags {
        build.flag(f);
    }
    build.compile("megatcp_dpdk_shim");

    // Shared DPDK libraries; drivers (net_memif, net_ring, net_af_xdp, ...) are plugins EAL
    // loads at init, except net_ring whose `rte_eth_from_rings` we call directly.
    for path in &lib.link_paths {
        println!("cargo::rustc-link-search=native={}", path.display());
    }
    for l in lib.libs.iter().chain(["rte_net_ring".to_string()].iter()) {
        println!("cargo::rustc-link-lib=dylib={l}");
    }
    println!("cargo::rustc-cfg=megatcp_dpdk");

    let bindings = bindgen::Builder::default()
        .header("src/shim.h")
        .clang_args(&cflags)
        .clang_macro_fallback()
        .allowlist_function("rte_eal_init")
        .allowlist_function("rte_eal_cleanup")
        .allowlist_function("rte_eal_get_runtime_dir")
        .allowlist_function("rte_strerror")
        .allowlist_function("rte_thread_register")
        .allowlist_function("rte_thread_unregister")
        .allowlist_function("rte_eth_dev_count_avail")
        .allowlist_function("rte_eth_find_next")
        .allowlist_function("rte_eth_dev_get_port_by_name")
        .allowlist_function("rte_eth_dev_get_name_by_port")
        .allowlist_function("rte_eth_dev_info_get")
        .allowlist_function("rte_eth_dev_configure")
        .allowlist_function("rte_eth_rx_queue_setup")
        .allowlist_function("rte_eth_tx_queue_setup")
        .allowlist_function("rte_eth_dev_start")
        .allowlist_function("rte_eth_dev_stop")
        .allowlist_function("rte_eth_dev_close")
        .allowlist_function("rte_eth_dev_socket_id")
        .allowlist_function("rte_eth_dev_get_mtu")
        .allowlist_function("rte_eth_macaddr_get")
        .allowlist_function("rte_eth_stats_get")
        .allowlist_function("rte_eth_promiscuous_enable")
        .allowlist_function("rte_eth_dev_rss_reta_update")
        .allowlist_function("rte_eth_from_rings")
        .allowlist_function("rte_ring_create")
        .allowlist_function("rte_ring_free")
        .allowlist_function("rte_pktmbuf_pool_create")
        .allowlist_function("rte_mempool_free")
        .allowlist_function("rte_pktmbuf_free_bulk")
        .allowlist_function("rte_mempool_in_use_count")
        .allowlist_function("rte_eth_dev_adjust_nb_rx_tx_desc")
        .allowlist_function("mtcp_.*")
        .allowlist_type("rte_eth_conf")
        .allowlist_type("rte_eth_dev_info")
        .allowlist_type("rte_eth_stats")
        .allowlist_type("rte_ether_addr")
        .allowlist_type("rte_eth_rss_reta_entry64")
        .allowlist_var("RTE_ETH_RSS_.*")
        .allowlist_var("RTE_ETH_RX_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_TX_OFFLOAD_.*")
        .allowlist_var("RTE_ETH_MQ_RX_.*")
        .allowlist_var("RTE_ETH_RETA_GROUP_SIZE")
        .allowlist_var("RTE_MAX_ETHPORTS")
        .allowlist_var("RTE_MBUF_DEFAULT_BUF_SIZE")
        .allowlist_var("RTE_PKTMBUF_HEADROOM")
        .allowlist_var("RING_F_.*")
        .allowlist_var("SOCKET_ID_ANY")
        .allowlist_var("MTCP_.*")
        .derive_default(true)
        .layout_tests(false)
        .generate_comments(false)
        .generate()
        .unwrap_or_else(|e| panic!("bindgen on DPDK's headers failed: {e}"));
    let out = PathBuf::from(env::var_os("OUT_DIR").unwrap_or_default()).join("bindings.rs");
    bindings
        .write_to_file(&out)
        .unwrap_or_else(|e| panic!("cannot write {}: {e}", out.display()));
}

/// `pkg-config --cflags libdpdk`, split into arguments.
fn cflags() -> Vec<String> {
    let out = std::process::Command::new(env::var("PKG_CONFIG").unwrap_or("pkg-config".into()))
        .args(["--cflags", "libdpdk"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run pkg-config: {e}"));
    assert!(
        out.status.success(),
        "pkg-config --cflags libdpdk failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .map(str::to_string)
        .collect()
}
