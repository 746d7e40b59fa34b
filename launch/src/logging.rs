//! Logging of the binaries: `tracing` events to standard error, filtered by `RUST_LOG`
//! (tracing-subscriber's `EnvFilter` syntax: `info`, `megatcp_engine=debug`, `smoltcp=trace`),
//! with smoltcp's `log` records bridged in. Without `RUST_LOG`, a binary's default level.
//!
//! Nothing logs per packet unless asked: the `log` crate's level gate is set to the filter's
//! most verbose level, so smoltcp's per-packet `trace!` records cost one relaxed load each
//! until `RUST_LOG` asks for them.

use tracing_subscriber::EnvFilter;

/// Installs the subscriber (once per process; later calls do nothing). `default` is the
/// filter used when `RUST_LOG` is unset, e.g. `"info"`.
pub fn init(default: &str) {
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let max = filter
        .max_level_hint()
        .unwrap_or(tracing_subscriber::filter::LevelFilter::TRACE);
    let subscriber = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_target(true)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .finish();
    if tracing::subscriber::set_global_default(subscriber).is_err() {
        return;
    }
    let level = match max.into_level() {
        None => log::LevelFilter::Off,
        Some(tracing::Level::ERROR) => log::LevelFilter::Error,
        Some(tracing::Level::WARN) => log::LevelFilter::Warn,
        Some(tracing::Level::INFO) => log::LevelFilter::Info,
        Some(tracing::Level::DEBUG) => log::LevelFilter::Debug,
        Some(tracing::Level::TRACE) => log::LevelFilter::Trace,
    };
    let _ = tracing_log::LogTracer::builder()
        .with_max_level(level)
        .init();
}
