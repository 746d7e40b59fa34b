//! The clock a connection's smoltcp socket runs on.
//!
//! smoltcp 0.14 hard-codes a minimum retransmission timeout of 1 s (and an initial RTO of
//! 1 s, a maximum of 60 s, a TIME-WAIT of 10 s). Linux's minimum RTO is 200 ms. Every socket
//! is therefore polled with *socket time*: the stack's time multiplied by `k` (5 for a
//! 200 ms minimum RTO). An RTT measured in socket time is `k` times the real one, so the
//! RTO smoltcp derives from it, converted back, is the real RTO; only its clamps change:
//! minimum and initial RTO become `1 s / k`, the maximum `60 s / k`. Every duration the
//! stack hands a socket (delayed ACK, keep-alive, user timeout) is stretched by `k`, and
//! every deadline a socket reports is shrunk by `k`, so they keep their real length.
//! Timestamps do not go through this clock (the stack generates them from real time).
//!
//! What else scales: CUBIC's window growth (a function of the time since the last loss)
//! runs `k` times faster in real time; smoltcp's own TIME-WAIT (10 s) would last `10 s / k`,
//! but the stack turns TIME-WAIT into a compact record of its own before that matters.

use crate::{Duration, Instant};

/// Converts between the stack's time and socket time.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SocketClock {
    k: i64,
}

/// smoltcp's minimum RTO (`RTTE_MIN_RTO`), microseconds.
const SMOLTCP_MIN_RTO_US: u64 = 1_000_000;

impl SocketClock {
    /// A clock giving smoltcp sockets a minimum RTO of about `min_rto` (1 s / an integer).
    pub(crate) fn new(min_rto: Duration) -> Self {
        let us = min_rto.total_micros().max(1);
        let k = (SMOLTCP_MIN_RTO_US + us / 2) / us;
        Self {
            k: k.clamp(1, 100) as i64,
        }
    }

    /// The factor socket time runs faster by.
    #[cfg(test)]
    pub(crate) fn factor(&self) -> u64 {
        self.k as u64
    }

    pub(crate) fn socket_time(&self, now: Instant) -> Instant {
        Instant::from_micros(now.total_micros().saturating_mul(self.k))
    }

    /// The stack time of a socket-time deadline (rounded up: never early).
    pub(crate) fn real_time(&self, t: Instant) -> Instant {
        let us = t.total_micros();
        Instant::from_micros(us.div_euclid(self.k) + i64::from(us.rem_euclid(self.k) != 0))
    }

    pub(crate) fn stretch(&self, d: Duration) -> Duration {
        d * self.k as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip() {
        let c = SocketClock::new(Duration::from_millis(200));
        assert_eq!(c.factor(), 5);
        let now = Instant::from_micros(1_234_567);
        assert_eq!(c.real_time(c.socket_time(now)), now);
        // A deadline between two real microseconds rounds up.
        assert_eq!(
            c.real_time(Instant::from_micros(11)),
            Instant::from_micros(3)
        );
        assert_eq!(
            c.stretch(Duration::from_millis(1)),
            Duration::from_millis(5)
        );
        assert_eq!(SocketClock::new(Duration::from_secs(1)).factor(), 1);
        assert_eq!(SocketClock::new(Duration::from_millis(10)).factor(), 100);
    }
}
