//! What the apps' servers share: the cookies of their channel commands. A server tells its
//! completions apart by these (the handle says which connection), and a failed listen,
//! `Completion::Error { cookie: LISTEN, .. }`, ends it.

/// The listen command.
pub const LISTEN: u64 = 1;
/// The accept command on the listener.
pub const ACCEPT: u64 = 2;
/// A read.
pub const READ: u64 = 3;
/// A write.
pub const WRITE: u64 = 4;
/// A close or an abort.
pub const CLOSE: u64 = 5;
/// A shutdown of the sending side.
pub const SHUTDOWN: u64 = 6;
