//! A counted, rate-limited hint for frames that fail their checksum on a device known for
//! it (a veth whose peer leaves checksums to offload): the stack drops and counts such
//! frames; this tells the user why and what to run, at most once every ten seconds.

use std::time::{Duration, Instant};

use megatcp_stack::Counters;

/// Least time between two hints.
const EVERY: Duration = Duration::from_secs(10);

/// The hint of one core. See the module docs.
#[derive(Debug)]
pub(crate) struct ChecksumHint {
    text: String,
    /// Bad frames when the last hint was given.
    told_bad: u64,
    told_at: Option<Instant>,
    /// Hints given.
    pub(crate) given: u64,
}

impl ChecksumHint {
    /// A hint saying `text`, if the device has one.
    pub(crate) fn new(text: Option<&str>) -> Option<Self> {
        Some(Self {
            text: text?.to_string(),
            told_bad: 0,
            told_at: None,
            given: 0,
        })
    }

    /// Frames dropped for a bad checksum so far.
    pub(crate) fn bad_frames(c: &Counters) -> u64 {
        c.drops.ipv4_bad_checksum + c.drops.tcp_bad_checksum + c.drops.icmp_bad_checksum
    }

    /// The hint to print now, if frames failed since the last one and it is time.
    pub(crate) fn check(&mut self, bad: u64, now: Instant) -> Option<String> {
        if bad <= self.told_bad || self.told_at.is_some_and(|t| now.duration_since(t) < EVERY) {
            return None;
        }
        let new = bad - self.told_bad;
        self.told_bad = bad;
        self.told_at = Some(now);
        self.given += 1;
        Some(format!(
            "{new} received frame(s) failed their checksum ({bad} so far): {}",
            self.text
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_hint_per_ten_seconds_with_the_counts() {
        assert!(ChecksumHint::new(None).is_none());
        let mut h = ChecksumHint::new(Some("ethtool -K peer tx off")).expect("hint");
        let t0 = Instant::now();
        assert_eq!(h.check(0, t0), None, "nothing bad yet");
        let first = h.check(3, t0).expect("first hint");
        assert!(
            first.starts_with("3 received frame(s)") && first.contains("ethtool -K peer tx off")
        );
        assert_eq!(h.check(50, t0 + Duration::from_secs(9)), None, "too soon");
        let second = h
            .check(50, t0 + Duration::from_secs(10))
            .expect("second hint");
        assert!(
            second.starts_with("47 received") && second.contains("(50 so far)"),
            "{second}"
        );
        assert_eq!(
            h.check(50, t0 + Duration::from_secs(60)),
            None,
            "no new bad frame"
        );
        assert_eq!(h.given, 2);
    }
}
