//! Compiles megatcp's XDP program (`src/afxdp/filter.bpf.c`) into a BPF object with clang's
//! BPF target when the `afxdp` feature is on; `afxdp::program` embeds the object.

use std::env;
use std::path::PathBuf;
use std::process::Command;

fn main() {
    println!("cargo::rerun-if-changed=src/afxdp/filter.bpf.c");
    println!("cargo::rerun-if-env-changed=CLANG");
    if env::var_os("CARGO_FEATURE_AFXDP").is_none() {
        return;
    }
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("cargo sets OUT_DIR"));
    let object = out.join("megatcp_xdp.o");
    let clang = env::var("CLANG").unwrap_or_else(|_| "clang".into());
    let result = Command::new(&clang)
        .args(["-O2", "-g", "-target", "bpf", "-Wall", "-Werror", "-c"])
        .arg("src/afxdp/filter.bpf.c")
        .arg("-o")
        .arg(&object)
        .output();
    match result {
        Ok(o) if o.status.success() => {}
        Ok(o) => panic!(
            "clang could not build the XDP program src/afxdp/filter.bpf.c:\n{}",
            String::from_utf8_lossy(&o.stderr)
        ),
        Err(e) => panic!(
            "cannot run {clang} to build the XDP program ({e}): install clang \
             (apt-get install clang, or scripts/install-deps as root), or build without the \
             AF_XDP backend: cargo build --no-default-features [--features dpdk]"
        ),
    }
}
