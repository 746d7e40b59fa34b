//! One client connection, sans-I/O: bytes in, responses out.
//!
//! How to drive it: create a [`Session`] per connection; hand every received chunk to
//! [`Session::feed`] with the shared [`Kv`] and the current time, and send what it appended
//! to `out`. It returns [`Flow::Close`] when the connection must end (after `out` is sent):
//! `quit`, a protocol error memcached closes on, an over-long line. The protocol (text or
//! binary) is chosen by the first byte, as memcached does.
//!
//! Memory per connection is bounded whatever the client sends: a partial command line is
//! at most [`crate::text::MULTIGET_LINE_MAX`] bytes, a partial value at most `-I`, a binary key at
//! most 64 KiB plus 255 bytes of extras; a value above `-I` (even a 2 GiB one) is answered
//! at once and its bytes swallowed as they arrive, never stored. Output is bounded too:
//! `feed` stops executing once [`OUT_HIGH`] bytes of responses are pending and keeps the
//! rest of the input ([`Session::has_backlog`]); the caller sends, then calls `feed` with
//! no new bytes to go on. The result never depends on how the input was split into reads.

use std::net::SocketAddrV4;

use crate::binary;
use crate::binary_exec;
use crate::clock::RelTime;
use crate::conns::ConnHandle;
use crate::state::{Ctr, Kv, Local};
use crate::step::Step;
use crate::text_exec;
use crate::verbose;

/// Stop executing commands once this many response bytes are waiting in `out`.
pub const OUT_HIGH: usize = 1024 * 1024;

/// What the connection does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Send what is in `out`, then close.
    Close,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Proto {
    Unknown,
    Text,
    Binary,
}

/// One connection's protocol state. See the module docs.
#[derive(Debug)]
pub struct Session {
    proto: Proto,
    buf: Vec<u8>,
    start: usize,
    swallow: u64,
    closed: bool,
    /// Execution stopped at the output bound with input left.
    held: bool,
    local: Local,
    /// The connection's entry in `stats conns`, if registered.
    conn: Option<ConnHandle>,
}

impl Default for Session {
    fn default() -> Self {
        Self::new()
    }
}

impl Session {
    /// A new connection.
    pub fn new() -> Self {
        Self {
            proto: Proto::Unknown,
            buf: Vec::new(),
            start: 0,
            swallow: 0,
            closed: false,
            held: false,
            local: Local::default(),
            conn: None,
        }
    }

    /// A new connection from `peer`, listed in `stats conns` until the session is dropped.
    pub fn accepted(kv: &Kv, peer: SocketAddrV4) -> Self {
        let conn = kv.conns.open(peer, kv.now());
        if verbose::chatty(kv) {
            verbose::accepted(conn.id());
        }
        Self {
            conn: Some(conn),
            ..Self::new()
        }
    }

    /// The end of an accepted connection (its `-vv` line).
    pub fn ended(&self, kv: &Kv) {
        if let (Some(c), true) = (&self.conn, verbose::chatty(kv)) {
            verbose::closed(c.id());
        }
    }

    /// Input kept for later (incomplete command, or held back by the output bound).
    pub fn buffered(&self) -> usize {
        self.buf.len() - self.start
    }

    /// Whether buffered input may hold complete commands not yet executed because the
    /// output bound was reached: call `feed(&[])` again once `out` is sent.
    pub fn has_backlog(&self) -> bool {
        self.held
    }

    /// Whether the session has decided to close.
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Takes `data`, executes every complete command (until [`OUT_HIGH`] bytes are in
    /// `out`), appends the responses to `out`.
    pub fn feed(&mut self, data: &[u8], kv: &Kv, now: RelTime, out: &mut Vec<u8>) -> Flow {
        if self.closed {
            return Flow::Close;
        }
        self.local.add(Ctr::BytesRead, data.len() as u64);
        if let (Some(c), false) = (&self.conn, data.is_empty()) {
            c.saw_command(now);
        }
        let mut data = data;
        if self.swallow > 0 && self.buffered() == 0 {
            let n = data
                .len()
                .min(usize::try_from(self.swallow).unwrap_or(usize::MAX));
            self.swallow -= n as u64;
            data = &data[n..];
        }
        self.buf.extend_from_slice(data);
        let before = out.len();
        let flow = self.run(kv, now, out);
        // Compact: drop what was consumed.
        if self.start > 0 {
            if self.start >= self.buf.len() {
                self.buf.clear();
                if self.buf.capacity() > 64 * 1024 {
                    self.buf = Vec::new();
                }
            } else {
                self.buf.drain(..self.start);
            }
            self.start = 0;
        }
        self.local
            .add(Ctr::BytesWritten, out.len().saturating_sub(before) as u64);
        self.local.flush(&kv.counters);
        if flow == Flow::Close {
            self.closed = true;
            self.buf = Vec::new();
        }
        flow
    }

    fn run(&mut self, kv: &Kv, now: RelTime, out: &mut Vec<u8>) -> Flow {
        self.held = false;
        loop {
            if self.swallow > 0 {
                let avail = self.buffered();
                let n = avail.min(usize::try_from(self.swallow).unwrap_or(usize::MAX));
                self.start += n;
                self.swallow -= n as u64;
                if self.swallow > 0 {
                    return Flow::Continue;
                }
            }
            if out.len() >= OUT_HIGH {
                self.held = self.buffered() > 0;
                return Flow::Continue;
            }
            let rest = &self.buf[self.start..];
            let Some(&first) = rest.first() else {
                return Flow::Continue;
            };
            if self.proto == Proto::Unknown {
                self.proto = if first == binary::REQ_MAGIC {
                    Proto::Binary
                } else {
                    Proto::Text
                };
                if let (Some(c), true) = (&self.conn, verbose::chatty(kv)) {
                    verbose::protocol(c.id(), self.proto == Proto::Binary);
                }
            }
            let me = self.conn.as_ref().map_or(0, ConnHandle::id);
            let answered = out.len();
            let step = match self.proto {
                Proto::Binary => binary_exec::step(rest, kv, now, out, &mut self.local),
                _ => text_exec::step(rest, kv, now, out, &mut self.local, me),
            };
            if self.proto == Proto::Text
                && self.conn.is_some()
                && verbose::chatty(kv)
                && let Step::Done(n) | Step::Close(n) = step
            {
                let input = &self.buf[self.start..self.start + n];
                verbose::command(me, input, &out[answered..]);
            }
            match step {
                Step::Done(n) => self.start += n,
                Step::Swallow(n, m) => {
                    self.start += n;
                    self.swallow = m;
                }
                Step::More => return Flow::Continue,
                Step::Close(n) => {
                    self.start += n;
                    return Flow::Close;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::binary::{Header, op};
    use crate::state::Settings;

    fn kv() -> Kv {
        Kv::new(Settings::default())
    }

    fn run(kv: &Kv, input: &[u8]) -> Vec<u8> {
        let mut s = Session::new();
        let mut out = Vec::new();
        let _ = s.feed(input, kv, kv.now(), &mut out);
        out
    }

    #[test]
    fn text_set_get_pipelined() {
        let kv = kv();
        let out = run(&kv, b"set a 5 0 3\r\nabc\r\nget a b\r\ngets a\r\n");
        let s = String::from_utf8(out).unwrap();
        assert!(s.starts_with("STORED\r\nVALUE a 5 3\r\nabc\r\nEND\r\nVALUE a 5 3 "));
    }

    #[test]
    fn too_large_is_answered_and_swallowed() {
        let kv = kv();
        let mut s = Session::new();
        let mut out = Vec::new();
        let now = kv.now();
        s.feed(b"set k 0 0 2000000\r\n", &kv, now, &mut out);
        assert_eq!(out, b"SERVER_ERROR object too large for cache\r\n");
        out.clear();
        let chunk = vec![b'x'; 1_000_000];
        s.feed(&chunk, &kv, now, &mut out);
        s.feed(&chunk, &kv, now, &mut out);
        assert!(out.is_empty());
        assert!(s.buffered() == 0);
        s.feed(b"\r\nget k\r\n", &kv, now, &mut out);
        assert_eq!(out, b"END\r\n");
    }

    #[test]
    fn binary_get_miss_and_set() {
        let kv = kv();
        let mut req = Vec::new();
        Header {
            opcode: op::SET,
            keylen: 1,
            extlen: 8,
            bodylen: 1 + 8 + 2,
            opaque: 1,
            cas: 0,
        }
        .encode(&mut req);
        req.extend_from_slice(&[0, 0, 0, 7, 0, 0, 0, 0]);
        req.extend_from_slice(b"kvv");
        Header {
            opcode: op::GETK,
            keylen: 1,
            extlen: 0,
            bodylen: 1,
            opaque: 2,
            cas: 0,
        }
        .encode(&mut req);
        req.push(b'k');
        let out = run(&kv, &req);
        let (r1, n) = binary::parse_response(&out).unwrap().unwrap();
        assert_eq!(r1.status, 0);
        let (r2, _) = binary::parse_response(&out[n..]).unwrap().unwrap();
        assert_eq!(
            (r2.key, r2.value, r2.extras),
            (&b"k"[..], &b"vv"[..], &[0, 0, 0, 7][..])
        );
    }
}
