//! What executing one command did to a connection's buffered input: the contract between
//! the session (which owns the input) and the protocol executors (`text_exec`,
//! `binary_exec`).

/// What one step over the buffered input did.
pub(crate) enum Step {
    /// `n` bytes were one command, executed.
    Done(usize),
    /// `n` bytes consumed, then swallow `m` more as they come.
    Swallow(usize, u64),
    /// Incomplete: wait for more bytes.
    More,
    /// `n` bytes consumed; then close.
    Close(usize),
}
