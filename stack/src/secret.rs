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

use core::net::{Ipv4Addr, SocketAddrV4};

use siphasher::sip::SipHasher24;

use crate::Instant;
use crate::flow::FourTuple;

const TUPLE: u8 = 1;
const PORT: u8 = 2;
const COOKIE: u8 = 3;
const PORT_BUCKET: u8 = 4;

/// The stack's keys.
#[derive(Clone)]
pub(crate) struct Keys {
    sip: SipHasher24,
}

impl core::fmt::Debug for Keys {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("Keys(..)")
    }
}

/// A message for the hash: a domain byte, then the fields, packed (one call hashes it).
struct Msg {
    buf: [u8; 32],
    len: usize,
}

impl Msg {
    fn new(domain: u8) -> Self {
        let mut buf = [0; 32];
        buf[0] = domain;
        Msg { buf, len: 1 }
    }

    fn put(mut self, bytes: &[u8]) -> Self {
        self.buf[self.len..self.len + bytes.len()].copy_from_slice(bytes);
        self.len += bytes.len();
        self
    }

    fn addr(self, a: SocketAddrV4) -> Self {
        self.put(&a.ip().octets()).put(&a.port().to_be_bytes())
    }

    fn tuple(self, t: &FourTuple) -> Self {
        self.addr(t.local).addr(t.remote)
    }
}

impl Keys {
    pub(crate) fn new(secret: [u8; 16]) -> Self {
        Self {
            sip: SipHasher24::new_with_key(&secret),
        }
    }

    fn hash(&self, m: &Msg) -> u64 {
        self.sip.hash(&m.buf[..m.len])
    }

    /// The keyed hash of a 4-tuple: its high half gives the ISN base, its low half the
    /// timestamp offset.
    pub(crate) fn tuple_secrets(&self, t: &FourTuple) -> TupleSecrets {
        TupleSecrets(self.hash(&Msg::new(TUPLE).tuple(t)))
    }

    /// The timestamp offset of a 4-tuple (RFC 7323 section 5.4).
    pub(crate) fn ts_offset(&self, t: &FourTuple) -> u32 {
        self.tuple_secrets(t).ts_offset()
    }

    /// Where the ephemeral port search starts for this destination (RFC 6056).
    pub(crate) fn port_offset(&self, local: Ipv4Addr, remote: SocketAddrV4) -> u32 {
        self.hash(&Msg::new(PORT).put(&local.octets()).addr(remote)) as u32
    }

    /// Which counter of the port search a destination uses (RFC 6056 algorithm 4's `G`).
    pub(crate) fn port_bucket(&self, local: Ipv4Addr, remote: SocketAddrV4) -> u32 {
        self.hash(&Msg::new(PORT_BUCKET).put(&local.octets()).addr(remote)) as u32
    }

    /// The 24-bit authenticator of a SYN cookie.
    pub(crate) fn cookie_mac(&self, t: &FourTuple, peer_isn: u32, count: u32, data: u32) -> u32 {
        let m = Msg::new(COOKIE)
            .tuple(t)
            .put(&peer_isn.to_be_bytes())
            .put(&count.to_be_bytes())
            .put(&[data as u8]);
        (self.hash(&m) as u32) & 0x00ff_ffff
    }
}

/// What a 4-tuple's keyed hash gives (two independent halves of one PRF output).
#[derive(Debug, Clone, Copy)]
pub(crate) struct TupleSecrets(u64);

impl TupleSecrets {
    /// The initial sequence number of a connection opened (or answered) at `now`: RFC
    /// 6528's `F(4-tuple, secret) + M`, with `M` a 4 us timer.
    pub(crate) fn isn(self, now: Instant) -> u32 {
        let m = (now.total_micros() / 4) as u32;
        ((self.0 >> 32) as u32).wrapping_add(m)
    }

    /// The timestamp offset (RFC 7323 section 5.4).
    pub(crate) fn ts_offset(self) -> u32 {
        self.0 as u32
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tuple(port: u16) -> FourTuple {
        FourTuple::test(80, port)
    }

    #[test]
    fn values_depend_on_the_secret_and_the_tuple() {
        let a = Keys::new([1; 16]);
        let b = Keys::new([2; 16]);
        let now = Instant::from_secs(5);
        let isn = |k: &Keys, port| k.tuple_secrets(&tuple(port)).isn(now);
        assert_ne!(isn(&a, 1000), isn(&b, 1000));
        assert_ne!(isn(&a, 1000), isn(&a, 1001));
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
        let i0 = k.tuple_secrets(&t).isn(Instant::from_micros(1_000_000));
        let i1 = k.tuple_secrets(&t).isn(Instant::from_micros(1_000_400));
        assert_eq!(i1.wrapping_sub(i0), 100);
    }
}
