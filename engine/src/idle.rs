//! What a core does when a poll finds nothing ([`IdlePolicy`], [`idle_sleep`]) and the
//! loop's counters ([`LoopStats`]; their busy and idle time come from `busy`).

use std::time::Duration as StdDuration;

use megatcp_stack::Stack;

/// What a core does when a poll finds nothing to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IdlePolicy {
    /// Spin: lowest latency, one core at 100 %.
    BusyPoll,
    /// Spin `spins` empty iterations, then sleep up to `max_sleep` at a time (bounded by the
    /// stack's next deadline and the dispatch timeout).
    Backoff {
        /// Empty iterations before sleeping.
        spins: u32,
        /// Longest single sleep.
        max_sleep: StdDuration,
    },
}

impl Default for IdlePolicy {
    fn default() -> Self {
        IdlePolicy::Backoff {
            spins: 2000,
            max_sleep: StdDuration::from_micros(200),
        }
    }
}

/// Counters of the engine loop of one core.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LoopStats {
    /// Loop iterations.
    pub iterations: u64,
    /// Iterations that received no frame.
    pub idle_iterations: u64,
    /// Sleeps taken by the idle policy.
    pub sleeps: u64,
    /// NIC transmit flushes (batches).
    pub tx_batches: u64,
    /// Frames the NIC refused (ring full); they stayed queued in the stack.
    pub tx_ring_full: u64,
    /// Iterations that did work: received or sent frames, or produced completions.
    pub busy_iterations: u64,
    /// Nanoseconds from the start of a busy iteration to the start of the next one (the
    /// application's handling of its completions included).
    pub busy_ns: u64,
    /// Nanoseconds from the start of an empty iteration to the start of the next one
    /// (idle polling and sleeps).
    pub idle_ns: u64,
}

impl LoopStats {
    /// The share of the time (0..=1) spent busy, `None` before any time was counted.
    pub fn busy_fraction(&self) -> Option<f64> {
        let all = self.busy_ns + self.idle_ns;
        (all > 0).then(|| self.busy_ns as f64 / all as f64)
    }
}

/// How long an idle poll that began at `start` may sleep at `clock`: at most `max_sleep`,
/// what is left of the timeout, and the time to the stack's next deadline (`stack_now` is
/// the stack's time now).
pub(crate) fn idle_sleep(
    max_sleep: StdDuration,
    timeout: Option<StdDuration>,
    elapsed: StdDuration,
    stack: &Stack,
    stack_now: megatcp_stack::Instant,
) -> StdDuration {
    let mut sleep = max_sleep;
    if let Some(t) = timeout {
        sleep = sleep.min(t.saturating_sub(elapsed));
    }
    if let Some(at) = stack.poll_at() {
        let until = (at - stack_now.min(at)).total_micros();
        sleep = sleep.min(StdDuration::from_micros(until));
    }
    sleep
}
