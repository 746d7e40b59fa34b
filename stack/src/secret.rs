//! What an off-path attacker must not predict, derived from the stack's secret.
//!
//! Every value here is a keyed hash (SipHash-2-4) of the connection's addresses under the
//! 128-bit [`StackConfig::secret`](crate::StackConfig::secret), with one domain byte per
//! use so that one value never reveals another:
//!
//! * initial sequence numbers, RFC 6528: `ISN = F(4-tuple, secret) + (now / 4 us)`;
//! * the per-connection timestamp offset, RFC 7323 section 5.4: `F(4-tuple, secret)`, the
//!   same for every incarnation of a 4-tuple, so that a reused 4-tuple's timestamps keep
//!   increasing (what TIME-WAIT reuse relies on);
//! * the start of the ephemeral port search, RFC 6056 algorithm 4:
//!   `F(local address, remote address and port, secret)` plus the counter of the
//!   destination's bucket `G(same, secret)`;
//! * the authenticator of SYN cookies (RFC 4987), see [`crate::cookie`].

use core::hash::Hasher;
use core::net::{Ipv4Addr, SocketAddrV4};

use siphasher::sip::SipHasher24;

use crate::Instant;
use crate::flow::FourTuple;

const ISN: u8 = 1;
const TS_OFFSET: u8 = 2;
const PORT: u8 = 3;
const COOKIE: u8 = 4;
const PORT_BUCKET: u8 = 5;

/// The stack's keys.
#[derive(Clone)]
pub(crate) struct Keys {
    k0: u64,
    k1: u64,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keys(..)")
    }
}

impl Keys {
    pub(crate) fn new(secret: [u8; 16]) -> Self {
        let (a, b) = secret.split_at(8);
        let word = |s: &[u8]| s.iter().fold(0u64, |w, &x| (w << 8) | u64::from(x));
        Self {
            k0: word(a),
            k1: word(b),
        }
    }

    fn hasher(&self, domain: u8) -> SipHasher24 {
        let mut h = SipHasher24::new_with_keys(self.k0, self.k1);
        h.write_u8(domain);
        h
    }

    fn tuple_hash(&self, domain: u8, t: &FourTuple) -> SipHasher24 {
        let mut h = self.hasher(domain);
        write_addr(&mut h, t.local);
        write_addr(&mut h, t.remote);
        h
    }

    /// The initial sequence number of a connection opened (or answered) at `now`.
    pub(crate) fn isn(&self, t: &FourTuple, now: Instant) -> u32 {
        let f = self.tuple_hash(ISN, t).finish() as u32;
        // RFC 6528's M: a 4 us timer.
        let m = (now.total_micros() / 4) as u32;
        f.wrapping_add(m)
    }

    /// The timestamp offset of a 4-tuple (RFC 7323 section 5.4).
    pub(crate) fn ts_offset(&self, t: &FourTuple) -> u32 {
        self.tuple_hash(TS_OFFSET, t).finish() as u32
    }

    /// Where the ephemeral port search starts for this destination (RFC 6056 algorithm 3).
    pub(crate) fn port_offset(&self, local: Ipv4Addr, remote: SocketAddrV4) -> u32 {
        let mut h = self.hasher(PORT);
        h.write(&local.octets());
        write_addr(&mut h, remote);
        h.finish() as u32
    }

    /// Which counter of the port search a destination uses (RFC 6056 algorithm 4's `G`).
    pub(crate) fn port_bucket(&self, local: Ipv4Addr, remote: SocketAddrV4) -> u32 {
        let mut h = self.hasher(PORT_BUCKET);
        h.write(&local.octets());
        write_addr(&mut h, remote);
        h.finish() as u32
    }

    /// The 24-bit authenticator of a SYN cookie.
    pub(crate) fn cookie_mac(&self, t: &FourTuple, peer_isn: u32, count: u32, data: u32) -> u32 {
        let mut h = self.tuple_hash(COOKIE, t);
        h.write_u32(peer_isn);
        h.write_u32(count);
        h.write_u32(data);
        (h.finish() as u32) & 0x00ff_ffff
    }
}

fn write_addr(h: &mut SipHasher24, a: SocketAddrV4) {
    h.write(&a.ip().octets());
    h.write_u16(a.port());
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple {
            local: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 1), 80),
            remote: SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), port),
        }
    }

    #[test]
    fn values_depend_on_the_secret_and_the_tuple() {
        let a = Keys::new([1; 16]);
        let b = Keys::new([2; 16]);
        let now = Instant::from_secs(5);
        assert_ne!(a.isn(&tuple(1000), now), b.isn(&tuple(1000), now));
        assert_ne!(a.isn(&tuple(1000), now), a.isn(&tuple(1001), now));
        assert_ne!(a.ts_offset(&tuple(1000)), b.ts_offset(&tuple(1000)));
        assert_eq!(a.ts_offset(&tuple(1000)), a.ts_offset(&tuple(1000)));
        let remote = SocketAddrV4::new(Ipv4Addr::new(10, 0, 0, 2), 80);
        assert_ne!(
            a.port_offset(Ipv4Addr::new(10, 0, 0, 1), remote),
            b.port_offset(Ipv4Addr::new(10, 0, 0, 1), remote)
        );
    }

    #[test]
    fn isn_advances_with_a_4us_clock() {
        let k = Keys::new([7; 16]);
        let t = tuple(1234);
        let i0 = k.isn(&t, Instant::from_micros(1_000_000));
        let i1 = k.isn(&t, Instant::from_micros(1_000_400));
        assert_eq!(i1.wrapping_sub(i0), 100);
    }
}
