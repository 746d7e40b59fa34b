//! `megatcp-bench kv`: memcached load (text protocol) from megatcp's channel API against any
//! memcached-compatible server (megatcp-kv on any backend, or real memcached), every
//! response verified. The flags and the run are `apps/kv`'s load generator
//! (`megatcp_kv::load`), shared with `megatcp-kv load`.
//!
//! ```text
//! megatcp-bench kv --connect 10.77.0.10:11211 --backend epoll --cores 1 \
//!     --connections 64 --get-ratio 0.9 --keys 10000 --value-size 64 --depth 1 --duration 10
//! ```

pub(crate) use megatcp_kv::load::LoadArgs as KvArgs;

/// Runs the load and prints its report (text, or JSON with `--json`).
pub(crate) fn run(args: &KvArgs) -> Result<(), String> {
    let r = megatcp_kv::load::run_cli(args).map_err(|e| e.message().to_string())?;
    megatcp_kv::load::print_report(&r, args.json);
    if r.errors.total() > 0 {
        return Err(format!("{} errors", r.errors.total()));
    }
    Ok(())
}
