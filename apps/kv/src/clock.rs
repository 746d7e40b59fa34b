//! The server's clock: seconds since start (memcached's `rel_time_t`), and memcached's rules
//! for turning a client's expiry time into one.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds on the server's clock (memcached's `rel_time_t`): 0 means "never" in expiry
/// times, 1 "long ago".
pub type RelTime = u32;

/// The clock's reading at start, as memcached's (whose clock starts at its
/// `ITEM_UPDATE_INTERVAL` plus 2, so that "a minute ago" is never before the start).
pub const START: RelTime = 62;

/// Relative expiry times above this (30 days) are absolute Unix times.
pub const REALTIME_MAXDELTA: i64 = 60 * 60 * 24 * 30;

/// The server's clock: Unix time mapped to [`RelTime`].
#[derive(Debug, Clone, Copy)]
pub struct Clock {
    /// Unix time (seconds) of `RelTime` 0.
    pub epoch: u64,
}

impl Clock {
    /// A clock starting now (now is [`START`]).
    pub fn start() -> Self {
        Self {
            epoch: unix_now().saturating_sub(u64::from(START)),
        }
    }

    /// The current time on this clock.
    pub fn now(&self) -> RelTime {
        u32::try_from(unix_now().saturating_sub(self.epoch)).unwrap_or(u32::MAX)
    }

    /// Unix time of `t`.
    pub fn unix(&self, t: RelTime) -> u64 {
        self.epoch + u64::from(t)
    }

    /// memcached's `realtime()`: an expiry time from a client (0 = never; up to 30 days =
    /// relative seconds; above = absolute Unix time; negative = already expired) as a
    /// [`RelTime`] (0 = never).
    pub fn expiry(&self, exptime: i64, now: RelTime) -> RelTime {
        if exptime == 0 {
            return 0;
        }
        let exptime = if exptime < 0 {
            REALTIME_MAXDELTA + 1
        } else {
            exptime
        };
        if exptime > REALTIME_MAXDELTA {
            // Absolute. Anything at or before our start is "expired long ago".
            let abs = exptime as u64;
            if abs <= self.epoch {
                1
            } else {
                u32::try_from(abs - self.epoch).unwrap_or(u32::MAX)
            }
        } else {
            // exptime <= 30 days fits in u32.
            now.saturating_add(exptime as u32)
        }
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_expiry_rules() {
        let c = Clock {
            epoch: 1_000_000_000,
        };
        assert_eq!(c.expiry(0, 100), 0);
        assert_eq!(c.expiry(10, 100), 110);
        assert_eq!(c.expiry(-1, 100), 1);
        assert_eq!(c.expiry(1_000_000_500, 100), 500);
        assert_eq!(c.expiry(999_000_000, 100), 1);
    }
}
