//! SYN cookies (RFC 4987): when a listener's backlog is full, a SYN is answered without
//! keeping any state, and the state rides in the SYN-ACK's sequence number (the cookie).
//! The client's ACK brings it back (`ACK - 1`); a valid cookie recreates the connection.
//!
//! Layout of a cookie (32 bits), all of it under the stack's secret:
//!
//! ```text
//!  31      27 26  24 23                     0
//! +----------+------+------------------------+
//! | period   | MSS  | MAC (24 bits)          |
//! +----------+------+------------------------+
//! ```
//!
//! * `period`: the low 5 bits of a 64-second counter; a cookie is valid in the period it was
//!   made and the next one (64 to 128 s).
//! * `MSS`: an index into [`MSS_TABLE`], the largest entry not above the client's MSS.
//! * `MAC`: SipHash of the 4-tuple, the client's ISN, the full period counter and the MSS
//!   index (see [`crate::secret`]). A forged ACK guesses it with probability 2^-24.
//!
//! Window scaling and SACK cannot fit as well; when the client sends timestamps they ride in
//! the low 5 bits of our TSval, which the client echoes (as Linux does): bit 4 is SACK
//! permitted, bits 0..4 the client's window shift + 1 (0: no window scaling). Without
//! timestamps, the SYN-ACK offers neither, so neither side uses them.

use crate::Instant;
use crate::flow::FourTuple;
use crate::secret::Keys;

/// The MSS values a cookie can carry.
pub(crate) const MSS_TABLE: [u16; 8] = [536, 1200, 1360, 1440, 1460, 4036, 8940, 8960];

/// Seconds per cookie period.
const PERIOD_SECS: u64 = 64;

/// Options a cookie's timestamp carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct CookieOpts {
    /// The client's window shift, if it offered window scaling.
    pub(crate) wscale: Option<u8>,
    pub(crate) sack: bool,
}

fn period(now: Instant) -> u32 {
    (now.total_micros().max(0) as u64 / 1_000_000 / PERIOD_SECS) as u32
}

/// The index of the largest MSS in the table not above `mss`.
pub(crate) fn mss_index(mss: u16) -> u32 {
    MSS_TABLE.iter().rposition(|&m| m <= mss).unwrap_or(0) as u32
}

/// The cookie (our ISN) for a SYN with ISN `peer_isn` on `tuple`, at `now`.
pub(crate) fn make(keys: &Keys, tuple: &FourTuple, peer_isn: u32, mss: u16, now: Instant) -> u32 {
    let count = period(now);
    let idx = mss_index(mss);
    ((count & 0x1f) << 27) | (idx << 24) | keys.cookie_mac(tuple, peer_isn, count, idx)
}

/// Checks a cookie returned as `ACK - 1`; gives the MSS it carries when valid.
pub(crate) fn check(
    keys: &Keys,
    tuple: &FourTuple,
    peer_isn: u32,
    cookie: u32,
    now: Instant,
) -> Option<u16> {
    let now_count = period(now);
    let (stamp, idx, mac) = (cookie >> 27, (cookie >> 24) & 7, cookie & 0x00ff_ffff);
    (0..2u32)
        .filter_map(|age| now_count.checked_sub(age))
        .find(|&count| count & 0x1f == stamp && keys.cookie_mac(tuple, peer_isn, count, idx) == mac)
        .map(|_| MSS_TABLE[idx as usize])
}

/// Our TSval for a cookie's SYN-ACK: `tsval` (the connection's clock) with its low 5 bits
/// replaced by the options, and never above `tsval` (the client must not later see a
/// smaller TSval than the one it recorded).
pub(crate) fn encode_ts(tsval: u32, opts: CookieOpts) -> u32 {
    let bits = u32::from(opts.sack) << 4 | opts.wscale.map_or(0, |w| u32::from(w.min(14)) + 1);
    let mut ts = (tsval & !0x1f) | bits;
    if ts > tsval {
        ts = ts.wrapping_sub(0x20);
    }
    ts
}

/// The options a cookie's echoed timestamp carries.
pub(crate) fn decode_ts(tsecr: u32) -> CookieOpts {
    let w = tsecr & 0x0f;
    CookieOpts {
        wscale: (w > 0).then(|| (w - 1) as u8),
        sack: tsecr & 0x10 != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple::test(80, port)
    }

    #[test]
    fn valid_cookie_round_trips_within_two_periods() {
        let k = Keys::new([9; 16]);
        let t = tuple(4000);
        let now = Instant::from_secs(1000);
        let c = make(&k, &t, 12345, 1460, now);
        assert_eq!(check(&k, &t, 12345, c, now), Some(1460));
        assert_eq!(
            check(&k, &t, 12345, c, now + crate::Duration::from_secs(64)),
            Some(1460)
        );
        assert_eq!(
            check(&k, &t, 12345, c, now + crate::Duration::from_secs(200)),
            None
        );
        // Another tuple, another ISN, another key, a flipped bit: refused.
        assert_eq!(check(&k, &tuple(4001), 12345, c, now), None);
        assert_eq!(check(&k, &t, 12346, c, now), None);
        assert_eq!(check(&Keys::new([8; 16]), &t, 12345, c, now), None);
        for bit in 0..32 {
            assert_eq!(check(&k, &t, 12345, c ^ (1 << bit), now), None, "bit {bit}");
        }
    }

    #[test]
    fn mss_rounds_down() {
        assert_eq!(MSS_TABLE[mss_index(1460) as usize], 1460);
        assert_eq!(MSS_TABLE[mss_index(1448) as usize], 1440);
        assert_eq!(MSS_TABLE[mss_index(100) as usize], 536);
        assert_eq!(MSS_TABLE[mss_index(65535) as usize], 8960);
    }

    #[test]
    fn options_ride_in_the_timestamp() {
        for opts in [
            CookieOpts::default(),
            CookieOpts {
                wscale: Some(7),
                sack: true,
            },
            CookieOpts {
                wscale: Some(0),
                sack: false,
            },
        ] {
            for tsval in [0u32, 5, 31, 32, 1_000_003, u32::MAX] {
                let ts = encode_ts(tsval, opts);
                assert_eq!(decode_ts(ts), opts);
                assert!(crate::xlate::seq_le(ts, tsval), "{ts} above {tsval}");
                assert!(tsval.wrapping_sub(ts) < 64);
            }
        }
    }
}
