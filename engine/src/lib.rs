//! megatcp's engine: the glue between a NIC queue, a stack and a channel on one core.
//!
//! * [`Bypass`] is the channel backend of the kernel-bypass path: it owns one NIC queue and
//!   one [`megatcp_stack::Stack`]; the channel's rules and per-handle state are the
//!   [`megatcp_channel::Ledger`]'s, which it drives with the stack's operations
//!   (`stack_io`) and feeds with the stack's events. Each `dispatch` runs one stack poll and
//!   transmit batch and one receive burst (run to completion, in the application's thread). A
//!   read completion's bytes are copied once, out of the connection's TCP receive ring
//!   (smoltcp owns the ring); the buffer comes from the ledger's pool and returns to it when
//!   the application writes it back (an echo) and the write completes.
//! * [`Runtime`] spawns one pinned thread per core, builds each core's backend on that
//!   thread, and runs the application closure there; SIGINT/SIGTERM set a stop flag the
//!   application sees through `Channel::is_stopping`, after which every open handle is
//!   closed gracefully and per-core counters are returned.
//!
//! Nothing is shared between cores but the stop flag and the read-only monitoring counters
//! ([`CoreMonitor`]); frames of flows owned by another core cross through SPSC rings
//! (`steer`).

#![forbid(unsafe_code)]

mod busy;
mod bypass;
mod capture;
mod hint;
mod idle;
pub mod monitor;
mod publish;
mod runtime;
mod stack_io;
mod steer;

pub use bypass::{Bypass, BypassError};
pub use capture::CaptureControl;
pub use idle::{IdlePolicy, LoopStats};
pub use monitor::{ConnInfo, CoreMonitor, Snapshot};
pub use runtime::{CoreCtx, CoreReport, EngineError, Runtime};
pub use steer::SteerStats;
