//! One client connection, sans-I/O: bytes in, responses out.
//!
//! How to drive it: create a [`Session`] per connection; hand every received chunk to
//! [`Session::feed`] with the shared [`Kv`] and the current time, and send what it appended
//! to `out`. It returns [`Flow::Close`] when the connection must end (after `out` is sent):
//! `quit`, a protocol error memcached closes on, an over-long line. The protocol (text or
//! binary) is chosen by the first byte, as memcached does.
//!
//! Memory per connection is bounded whatever the client sends: a partial command line is
//! at most [`text::MULTIGET_LINE_MAX`] bytes, a partial value at most `-I`, a binary key at
//! most 64 KiB plus 255 bytes of extras; a value above `-I` (even a 2 GiB one) is answered
//! at once and its bytes swallowed as they arrive, never stored. Output is bounded too:
//! `feed` stops executing once [`OUT_HIGH`] bytes of responses are pending and keeps the
//! rest of the input ([`Session::has_backlog`]); the caller sends, then calls `feed` with
//! no new bytes to go on. The result never depends on how the input was split into reads.

use crate::binary::{self, HEADER_LEN, Header, HeaderError, Opcode, Status, op};
use crate::state::{Ctr, Kv, Local, MAX_VERBOSITY, VERSION};
use crate::store::{DeleteOutcome, DeltaOutcome, Item, KEY_MAX, RelTime, SetMode, StoreOutcome};
use crate::text::{self, Line, Request, StoreOp};

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

/// What one step over the buffered input did.
enum Step {
    /// `n` bytes were one command, executed.
    Done(usize),
    /// `n` bytes consumed, then swallow `m` more as they come.
    Swallow(usize, u64),
    /// Incomplete: wait for more bytes.
    More,
    /// `n` bytes consumed; then close.
    Close(usize),
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
            }
            let step = match self.proto {
                Proto::Binary => binary_step(rest, kv, now, out, &mut self.local),
                _ => text_step(rest, kv, now, out, &mut self.local),
            };
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

// ---------------------------------------------------------------------------------------
// Text protocol.

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn reply(out: &mut Vec<u8>, noreply: bool, s: &str) {
    if !noreply {
        line(out, s);
    }
}

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

fn value_line(out: &mut Vec<u8>, it: Item<'_>, with_cas: bool) {
    out.reserve(it.key.len() + it.value.len() + 64);
    out.extend_from_slice(b"VALUE ");
    out.extend_from_slice(it.key);
    out.push(b' ');
    push_u64(out, u64::from(it.flags));
    out.push(b' ');
    push_u64(out, it.value.len() as u64);
    if with_cas {
        out.push(b' ');
        push_u64(out, it.cas);
    }
    out.extend_from_slice(b"\r\n");
    out.extend_from_slice(it.value);
    out.extend_from_slice(b"\r\n");
}

fn stats_text<K: AsRef<str>>(out: &mut Vec<u8>, stats: &[(K, String)]) {
    for (k, v) in stats {
        out.extend_from_slice(b"STAT ");
        out.extend_from_slice(k.as_ref().as_bytes());
        out.push(b' ');
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

fn text_step(rest: &[u8], kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) -> Step {
    let (end, next) = match text::find_line(rest) {
        Line::Complete { end, next } => (end, next),
        Line::Incomplete => return Step::More,
        Line::TooLong => return Step::Close(rest.len()),
    };
    let store = &kv.store;
    match text::parse(&rest[..end]) {
        Request::Get { cas, touch, keys } => {
            let mark = out.len();
            let exp = touch.map(|t| kv.clock.expiry(i64::from(t), now));
            for key in text::keys(keys) {
                if !text::key_ok(key) {
                    out.truncate(mark);
                    line(out, text::BAD_FORMAT);
                    return Step::Done(next);
                }
                let hit = match exp {
                    Some(e) => {
                        ctr.inc(Ctr::CmdTouch);
                        store.touch(key, e, now, |it| value_line(out, it, cas))
                    }
                    None => {
                        ctr.inc(Ctr::CmdGet);
                        store.get(key, now, |it| value_line(out, it, cas))
                    }
                };
                ctr.inc(match (hit.is_some(), exp.is_some()) {
                    (true, false) => Ctr::GetHits,
                    (false, false) => Ctr::GetMisses,
                    (true, true) => Ctr::TouchHits,
                    (false, true) => Ctr::TouchMisses,
                });
            }
            out.extend_from_slice(b"END\r\n");
            Step::Done(next)
        }
        Request::Store {
            op,
            key,
            flags,
            exptime,
            bytes,
            cas,
            noreply,
        } => {
            if !store.size_ok(key.len(), flags, bytes) {
                ctr.inc(Ctr::StoreTooLarge);
                reply(out, noreply, text::TOO_LARGE);
                if op == StoreOp::Set {
                    store.unlink(key, now);
                }
                return Step::Swallow(next, bytes as u64 + 2);
            }
            let total = next + bytes + 2;
            let Some(data) = rest.get(next..total) else {
                return Step::More;
            };
            ctr.inc(Ctr::CmdSet);
            if &data[bytes..] != b"\r\n" {
                reply(out, noreply, text::BAD_DATA_CHUNK);
                return Step::Done(total);
            }
            let mode = match op {
                StoreOp::Set => SetMode::Set,
                StoreOp::Add => SetMode::Add,
                StoreOp::Replace => SetMode::Replace,
                StoreOp::Append => SetMode::Append(0),
                StoreOp::Prepend => SetMode::Prepend(0),
                StoreOp::Cas => SetMode::Cas(cas),
            };
            let exp = kv.clock.expiry(i64::from(exptime), now);
            let r = store.store(mode, key, flags, exp, &data[..bytes], now);
            let msg = match r {
                StoreOutcome::Stored(_) => "STORED",
                StoreOutcome::Exists => "EXISTS",
                StoreOutcome::NotFound => "NOT_FOUND",
                StoreOutcome::NotStored => "NOT_STORED",
                StoreOutcome::NoMemory => {
                    ctr.inc(Ctr::StoreNoMemory);
                    text::NO_MEMORY
                }
            };
            if op == StoreOp::Cas {
                ctr.inc(match r {
                    StoreOutcome::Stored(_) => Ctr::CasHits,
                    StoreOutcome::Exists => Ctr::CasBadval,
                    _ => Ctr::CasMisses,
                });
            }
            reply(out, noreply, msg);
            Step::Done(total)
        }
        Request::Delete { key, noreply } => {
            match store.delete(key, 0, now) {
                DeleteOutcome::Deleted => {
                    ctr.inc(Ctr::DeleteHits);
                    reply(out, noreply, "DELETED");
                }
                _ => {
                    ctr.inc(Ctr::DeleteMisses);
                    reply(out, noreply, "NOT_FOUND");
                }
            }
            Step::Done(next)
        }
        Request::Arith {
            incr,
            key,
            delta,
            noreply,
        } => {
            match store.delta(key, incr, delta, 0, now) {
                DeltaOutcome::Value(v, _) => {
                    ctr.inc(if incr { Ctr::IncrHits } else { Ctr::DecrHits });
                    if !noreply {
                        push_u64(out, v);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                DeltaOutcome::NonNumeric => reply(out, noreply, text::NON_NUMERIC),
                DeltaOutcome::NotFound | DeltaOutcome::Exists => {
                    ctr.inc(if incr {
                        Ctr::IncrMisses
                    } else {
                        Ctr::DecrMisses
                    });
                    reply(out, noreply, "NOT_FOUND");
                }
            }
            Step::Done(next)
        }
        Request::Touch {
            key,
            exptime,
            noreply,
        } => {
            ctr.inc(Ctr::CmdTouch);
            let exp = kv.clock.expiry(i64::from(exptime), now);
            if store.touch(key, exp, now, |_| ()).is_some() {
                ctr.inc(Ctr::TouchHits);
                reply(out, noreply, "TOUCHED");
            } else {
                ctr.inc(Ctr::TouchMisses);
                reply(out, noreply, "NOT_FOUND");
            }
            Step::Done(next)
        }
        Request::FlushAll { delay, noreply } => {
            ctr.inc(Ctr::CmdFlush);
            flush(kv, i64::from(delay), now);
            reply(out, noreply, "OK");
            Step::Done(next)
        }
        Request::Version => {
            line(out, &format!("VERSION {VERSION}"));
            Step::Done(next)
        }
        Request::Verbosity { level, noreply } => {
            kv.verbosity.store(
                level.min(MAX_VERBOSITY),
                std::sync::atomic::Ordering::Relaxed,
            );
            reply(out, noreply, "OK");
            Step::Done(next)
        }
        Request::Stats { group, arg } => {
            match group {
                None => stats_text(out, &kv.general_stats(now)),
                Some(b"reset") => {
                    kv.reset_stats();
                    line(out, "RESET");
                }
                Some(b"settings") => stats_text(out, &kv.settings_stats()),
                Some(b"items") => stats_text(out, &kv.items_stats()),
                Some(b"slabs") => stats_text(out, &kv.slabs_stats()),
                Some(b"detail") => match arg {
                    Some(b"on") | Some(b"off") => line(out, "OK"),
                    Some(b"dump") => line(out, "END"),
                    _ => line(out, "CLIENT_ERROR usage: stats detail on|off|dump"),
                },
                Some(_) => line(out, text::ERROR),
            }
            Step::Done(next)
        }
        Request::Quit => Step::Close(next),
        Request::MetaNoop => {
            line(out, "MN");
            Step::Done(next)
        }
        Request::Reply { msg, noreply } => {
            reply(out, noreply, msg);
            Step::Done(next)
        }
        Request::Close => Step::Close(next),
    }
}

/// `flush_all [delay]` as memcached does it: items stored up to one second before the
/// deadline are invalid from the deadline on; a deadline now or past flushes at once.
fn flush(kv: &Kv, delay: i64, now: RelTime) {
    let new_oldest = if delay > 0 {
        kv.clock.expiry(delay, now)
    } else {
        now
    };
    let deadline = new_oldest.saturating_sub(1);
    if deadline <= now {
        kv.store.flush_all(None, now);
    } else {
        kv.store.flush_all(Some(deadline), now);
    }
}

// ---------------------------------------------------------------------------------------
// Binary protocol.

fn be32(b: &[u8], at: usize) -> u32 {
    b.get(at..at + 4)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u32::from_be_bytes)
}

fn be64(b: &[u8], at: usize) -> u64 {
    b.get(at..at + 8)
        .and_then(|s| s.try_into().ok())
        .map_or(0, u64::from_be_bytes)
}

fn binary_step(rest: &[u8], kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) -> Step {
    let h = match Header::parse(rest) {
        Ok(h) => h,
        Err(HeaderError::Short) => return Step::More,
        Err(HeaderError::BadMagic(_)) => return Step::Close(rest.len()),
    };
    let extlen = usize::from(h.extlen);
    let keylen = usize::from(h.keylen);
    let bodylen = h.bodylen as usize;
    let head = HEADER_LEN + extlen + keylen;
    let Some(hk) = rest.get(..head) else {
        return Step::More;
    };
    let ext = &hk[HEADER_LEN..HEADER_LEN + extlen];
    let key = &hk[HEADER_LEN + extlen..];
    let (cmd, quiet) = Opcode::loud(h.opcode);
    let opaque = h.opaque;
    let opc = h.opcode;
    if keylen + extlen > bodylen {
        binary::write_error(out, opc, Status::UnknownCommand, opaque);
        return Step::Close(head);
    }
    if keylen > KEY_MAX {
        binary::write_error(out, opc, Status::Invalid, opaque);
        return Step::Close(head);
    }
    let protocol_error = |out: &mut Vec<u8>| {
        binary::write_error(out, opc, Status::Invalid, opaque);
        Step::Close(head)
    };
    let store = &kv.store;
    match cmd {
        op::VERSION => {
            if extlen != 0 || keylen != 0 || bodylen != 0 {
                return protocol_error(out);
            }
            binary::write_response(
                out,
                opc,
                Status::Ok,
                opaque,
                0,
                &[],
                &[],
                VERSION.as_bytes(),
            );
            Step::Done(head)
        }
        op::NOOP => {
            if extlen != 0 || keylen != 0 || bodylen != 0 {
                return protocol_error(out);
            }
            binary::write_response(out, opc, Status::Ok, opaque, 0, &[], &[], &[]);
            Step::Done(head)
        }
        op::QUIT => {
            if extlen != 0 || keylen != 0 || bodylen != 0 {
                return protocol_error(out);
            }
            if !quiet {
                binary::write_response(out, opc, Status::Ok, opaque, 0, &[], &[], &[]);
            }
            Step::Close(head)
        }
        op::FLUSH => {
            if keylen != 0 || bodylen != extlen || (extlen != 0 && extlen != 4) {
                return protocol_error(out);
            }
            ctr.inc(Ctr::CmdFlush);
            let delay = if extlen == 4 { be32(ext, 0) } else { 0 };
            flush(kv, i64::from(delay), now);
            if !quiet {
                binary::write_response(out, opc, Status::Ok, opaque, 0, &[], &[], &[]);
            }
            Step::Done(head)
        }
        op::SET | op::ADD | op::REPLACE | op::APPEND | op::PREPEND => {
            let is_cat = cmd == op::APPEND || cmd == op::PREPEND;
            let ok = if is_cat {
                keylen > 0 && extlen == 0
            } else {
                extlen == 8 && keylen != 0 && bodylen >= keylen + 8
            };
            if !ok {
                return protocol_error(out);
            }
            let (flags, exptime) = if is_cat {
                (0, 0)
            } else {
                (be32(ext, 0), be32(ext, 4))
            };
            let vlen = bodylen - keylen - extlen;
            if !store.size_ok(keylen, flags, vlen) {
                ctr.inc(Ctr::StoreTooLarge);
                binary::write_error(out, opc, Status::TooLarge, opaque);
                if cmd == op::SET {
                    store.unlink(key, now);
                }
                return Step::Swallow(head, vlen as u64);
            }
            let Some(value) = rest.get(head..head + vlen) else {
                return Step::More;
            };
            ctr.inc(Ctr::CmdSet);
            // A non-zero CAS makes set/add/replace a CAS store (memcached's NREAD_CAS).
            let mode = match cmd {
                op::APPEND => SetMode::Append(h.cas),
                op::PREPEND => SetMode::Prepend(h.cas),
                _ if h.cas != 0 => SetMode::Cas(h.cas),
                op::SET => SetMode::Set,
                op::ADD => SetMode::Add,
                _ => SetMode::Replace,
            };
            let exp = kv.clock.expiry(i64::from(exptime), now);
            let r = store.store(mode, key, flags, exp, value, now);
            let status = match r {
                StoreOutcome::Stored(cas) => {
                    if !quiet {
                        binary::write_response(out, opc, Status::Ok, opaque, cas, &[], &[], &[]);
                    }
                    None
                }
                StoreOutcome::Exists => Some(Status::KeyExists),
                StoreOutcome::NotFound => Some(Status::KeyNotFound),
                StoreOutcome::NoMemory => {
                    ctr.inc(Ctr::StoreNoMemory);
                    Some(Status::OutOfMemory)
                }
                StoreOutcome::NotStored => Some(match cmd {
                    op::ADD => Status::KeyExists,
                    op::REPLACE => Status::KeyNotFound,
                    _ => Status::NotStored,
                }),
            };
            if let Some(s) = status {
                binary::write_error(out, opc, s, opaque);
            }
            Step::Done(head + vlen)
        }
        op::GET | op::GETK | op::TOUCH | op::GAT | op::GATK => {
            let touch = matches!(cmd, op::TOUCH | op::GAT | op::GATK);
            let ok = if touch {
                extlen == 4 && keylen != 0
            } else {
                extlen == 0 && bodylen == keylen && keylen > 0
            };
            if !ok {
                return protocol_error(out);
            }
            let with_key = cmd == op::GETK || cmd == op::GATK;
            let with_value = cmd != op::TOUCH;
            let write = |out: &mut Vec<u8>, it: Item<'_>| {
                let flags = it.flags.to_be_bytes();
                binary::write_response(
                    out,
                    opc,
                    Status::Ok,
                    opaque,
                    it.cas,
                    &flags,
                    if with_key { it.key } else { &[] },
                    if with_value { it.value } else { &[] },
                );
            };
            let hit = if touch {
                ctr.inc(Ctr::CmdTouch);
                let exp = kv.clock.expiry(i64::from(be32(ext, 0)), now);
                store.touch(key, exp, now, |it| write(out, it))
            } else {
                ctr.inc(Ctr::CmdGet);
                store.get(key, now, |it| write(out, it))
            };
            ctr.inc(match (hit.is_some(), touch) {
                (true, false) => Ctr::GetHits,
                (false, false) => Ctr::GetMisses,
                (true, true) => Ctr::TouchHits,
                (false, true) => Ctr::TouchMisses,
            });
            if hit.is_none() && !quiet {
                if with_key {
                    binary::write_response(out, opc, Status::KeyNotFound, opaque, 0, &[], key, &[]);
                } else {
                    binary::write_error(out, opc, Status::KeyNotFound, opaque);
                }
            }
            Step::Done(head)
        }
        op::DELETE => {
            if keylen == 0 || extlen != 0 || bodylen != keylen {
                return protocol_error(out);
            }
            match store.delete(key, h.cas, now) {
                DeleteOutcome::Deleted => {
                    ctr.inc(Ctr::DeleteHits);
                    if !quiet {
                        binary::write_response(out, opc, Status::Ok, opaque, 0, &[], &[], &[]);
                    }
                }
                DeleteOutcome::Exists => {
                    binary::write_error(out, opc, Status::KeyExists, opaque);
                }
                DeleteOutcome::NotFound => {
                    ctr.inc(Ctr::DeleteMisses);
                    binary::write_error(out, opc, Status::KeyNotFound, opaque);
                }
            }
            Step::Done(head)
        }
        op::INCREMENT | op::DECREMENT => {
            if keylen == 0 || extlen != 20 || bodylen != keylen + extlen {
                return protocol_error(out);
            }
            let incr = cmd == op::INCREMENT;
            let delta = be64(ext, 0);
            let initial = be64(ext, 8);
            let expiration = be32(ext, 16);
            let ok = |out: &mut Vec<u8>, v: u64, cas: u64| {
                if !quiet {
                    binary::write_response(
                        out,
                        opc,
                        Status::Ok,
                        opaque,
                        cas,
                        &[],
                        &[],
                        &v.to_be_bytes(),
                    );
                }
            };
            match store.delta(key, incr, delta, h.cas, now) {
                DeltaOutcome::Value(v, cas) => {
                    ctr.inc(if incr { Ctr::IncrHits } else { Ctr::DecrHits });
                    ok(out, v, cas);
                }
                DeltaOutcome::NonNumeric => {
                    binary::write_error(out, opc, Status::NonNumeric, opaque);
                }
                DeltaOutcome::Exists => binary::write_error(out, opc, Status::KeyExists, opaque),
                DeltaOutcome::NotFound if expiration != u32::MAX => {
                    let mut digits = Vec::with_capacity(20);
                    push_u64(&mut digits, initial);
                    let exp = kv.clock.expiry(i64::from(expiration), now);
                    match store.store(SetMode::Add, key, 0, exp, &digits, now) {
                        StoreOutcome::Stored(cas) => ok(out, initial, cas),
                        _ => binary::write_error(out, opc, Status::NotStored, opaque),
                    }
                }
                DeltaOutcome::NotFound => {
                    ctr.inc(if incr {
                        Ctr::IncrMisses
                    } else {
                        Ctr::DecrMisses
                    });
                    binary::write_error(out, opc, Status::KeyNotFound, opaque);
                }
            }
            Step::Done(head)
        }
        op::STAT => {
            if extlen != 0 {
                return protocol_error(out);
            }
            let stat = |out: &mut Vec<u8>, k: &[u8], v: &[u8]| {
                binary::write_response(out, opc, Status::Ok, opaque, 0, &[], k, v);
            };
            let pairs: Option<Vec<(String, String)>> = match key {
                b"" => Some(
                    kv.general_stats(now)
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
                b"reset" => {
                    kv.reset_stats();
                    Some(Vec::new())
                }
                b"settings" => Some(
                    kv.settings_stats()
                        .into_iter()
                        .map(|(k, v)| (k.to_string(), v))
                        .collect(),
                ),
                b"items" => Some(kv.items_stats()),
                b"slabs" => Some(kv.slabs_stats()),
                _ => None,
            };
            match pairs {
                Some(p) => {
                    for (k, v) in &p {
                        stat(out, k.as_bytes(), v.as_bytes());
                    }
                    stat(out, &[], &[]);
                }
                None => binary::write_error(out, opc, Status::KeyNotFound, opaque),
            }
            Step::Done(head)
        }
        _ => {
            binary::write_error(out, opc, Status::UnknownCommand, opaque);
            Step::Swallow(head, (bodylen - keylen - extlen) as u64)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
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
