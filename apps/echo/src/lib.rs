//! The echo/RPC application of megatcp, on the channel API: a server, and a load generator
//! that verifies every echoed byte and measures transactions, connections and latency.
//!
//! Both are plain functions over a [`megatcp_channel::Channel`], so they run unchanged on
//! every backend; [`app`] wraps them as `megatcp_launch` applications.

#![forbid(unsafe_code)]

pub mod app;
pub mod load;
pub mod pair;
pub mod server;
pub mod sockperf;

pub use app::{LoadApp, Protocol, ServeApp};
pub use load::{LoadOpts, LoadReport, MsgSize, run_load};
pub use server::{ServeOpts, ServerStats, serve, serve_sockperf, serve_with};
