//! megatcp's engine: the glue between a NIC queue, a stack and a channel on one core.
//!
//! * [`Bypass`] is the channel backend of the kernel-bypass path: it owns one NIC queue and
//!   one [`megatcp_stack::Stack`] and turns the application's commands into stack calls and
//!   the stack's events into completions. Each `dispatch` runs one receive burst, one stack
//!   poll and one transmit batch (run to completion, in the application's thread). A read
//!   completion's bytes are copied once, out of the connection's TCP receive ring (smoltcp
//!   owns the ring); the buffer comes from a pool and returns to it when the application
//!   writes it back (an echo) and the write completes.
//! * [`Runtime`] spawns one pinned thread per core, builds each core's NIC queue, stack and
//!   channel on that thread, and runs the application closure there; SIGINT/SIGTERM set a
//!   stop flag the application sees through `Channel::is_stopping`, after which every open
//!   handle is closed gracefully and per-core counters are returned.
//!
//! Nothing is shared between cores but the stop flag and the read-only monitoring counters.

mod bypass;
mod handles;
mod runtime;
mod steer;

pub use bypass::{Bypass, BypassError, IdlePolicy, LoopStats};
pub use runtime::{CoreCtx, CoreMonitor, CoreReport, EngineError, Runtime};
pub use steer::SteerStats;
