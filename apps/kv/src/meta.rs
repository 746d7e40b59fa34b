//! memcached's meta protocol (`mg`, `ms`, `md`, `ma`, `me`, `mn`), with memcached 1.6.18's
//! answers byte for byte.
//!
//! How to drive it: when a text command line is a meta command, `run` executes it with
//! the bytes that follow the line (the value of an `ms`) and appends the answer to `out`;
//! it says how much of what follows it used, or that it needs more.
//!
//! The rules, as memcached applies them:
//!
//! * Flags are single characters, some with a token (`T30`, `Oabc`); a flag given twice, or
//!   one memcached does not know, is an error. More than 18 flags is an error.
//! * `b`: the key is base64; the stored key is the decoded one, and keys are shown encoded
//!   again (followed by ` b`).
//! * `q`: quiet mode: the usual answer is left out (`EN` of `mg`, `HD` of `ms`, `md` and
//!   `ma`); failures and errors are still answered. `mn` answers `MN`, so a client knows
//!   when a pipeline of quiet commands is done.
//! * `O`: an opaque token (at most 32 bytes) echoed back; `k` echoes the key.
//! * Stale-while-revalidate: `md I` marks an item stale instead of deleting it (`ms I` with
//!   an older CAS does the same with a new value); readers of a stale item see `X`, and the
//!   first reader, or the first reader of an item whose remaining TTL is below `R`'s, or
//!   the first `N` reader of a missing item (which creates it empty), also gets `W`: it won
//!   the right to recache; later readers see `Z`.

use crate::base64;
use crate::clock::RelTime;
use crate::numbers::{c_strtol, c_strtoul, c_strtoull};
use crate::state::{Ctr, Kv, Local};
use crate::store::{DeltaOutcome, Hit, KEY_MAX, SetMode, StoreOutcome, Update};
use crate::text::{BAD_DATA_CHUNK, Tokens};

const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
const BAD_TOKEN: &str = "CLIENT_ERROR bad token in command line format";
const BAD_FLAG: &str = "CLIENT_ERROR invalid or duplicate flag";
const OPAQUE_TOO_LONG: &str = "CLIENT_ERROR opaque token too long";
/// memcached's `MFLAG_MAX_OPT_LENGTH`: more tokens than this is an error.
const MAX_TOKENS: usize = 20;
/// memcached's `MFLAG_MAX_OPAQUE_LENGTH`.
const MAX_OPAQUE: usize = 32;

/// What [`run`] did with the bytes after the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flow {
    /// Done; `n` bytes after the line were used (an `ms` value and its CRLF).
    Done(usize),
    /// An `ms` value is not all there yet.
    More,
    /// Refused; the next `n` bytes (the announced value) are to be swallowed.
    Swallow(u64),
}

/// The flags of one meta command, as memcached's `_meta_flag_preparse` reads them.
#[derive(Debug, Default)]
struct Flags {
    no_update: bool,
    vivify: bool,
    value: bool,
    set_stale: bool,
    no_reply: bool,
    has_cas: bool,
    new_ttl: bool,
    key_binary: bool,
    mode: u8,
    exptime: RelTime,
    autoviv_exptime: RelTime,
    recache_time: RelTime,
    client_flags: u32,
    req_cas: u64,
    delta: u64,
    initial: u64,
    /// The key (decoded when `b` was given).
    key: Vec<u8>,
}

/// Reads the flags from token `start` on. `Err` carries memcached's error text.
fn preparse(tk: &Tokens<'_>, start: usize, kv: &Kv, now: RelTime) -> Result<Flags, &'static str> {
    let mut f = Flags {
        key: tk.get(1).to_vec(),
        delta: 1,
        ..Flags::default()
    };
    let mut seen = [false; 128];
    let mut err: Option<&'static str> = None;
    let mut errstr = BAD_FORMAT;
    let time =
        |tok: &[u8], err: &mut Option<&'static str>, errstr: &mut &'static str| match c_strtol(
            tok.get(1..).unwrap_or(&[]),
        ) {
            Some(t) => Some(kv.clock.expiry(i64::from(t), now)),
            None => {
                *errstr = BAD_TOKEN;
                *err = Some(BAD_TOKEN);
                None
            }
        };
    for i in start..tk.n.saturating_sub(1) {
        let tok = tk.get(i);
        let Some(&o) = tok.first() else { break };
        if o >= 127 || seen[usize::from(o)] {
            return Err("CLIENT_ERROR duplicate flag");
        }
        seen[usize::from(o)] = true;
        let arg = tok.get(1..).unwrap_or(&[]);
        match o {
            b'b' => {
                match base64::decode(tk.get(1)) {
                    Some(k) => f.key = k,
                    None => {
                        errstr = "CLIENT_ERROR error decoding key";
                        err = Some(errstr);
                        f.key.clear();
                    }
                }
                f.key_binary = true;
            }
            b'N' => {
                f.vivify = true;
                if let Some(t) = time(tok, &mut err, &mut errstr) {
                    f.autoviv_exptime = t;
                }
            }
            b'T' => {
                if let Some(t) = time(tok, &mut err, &mut errstr) {
                    f.exptime = t;
                    f.new_ttl = true;
                }
            }
            b'R' => {
                if let Some(t) = time(tok, &mut err, &mut errstr) {
                    f.recache_time = t;
                }
            }
            b'l' | b'O' | b'P' | b'L' | b'k' | b's' | b't' | b'c' | b'f' | b'h' => {}
            b'v' => f.value = true,
            b'u' => f.no_update = true,
            b'q' => f.no_reply = true,
            b'F' => match c_strtoul(arg) {
                Some(v) => f.client_flags = v,
                None => err = Some(errstr),
            },
            b'C' => match c_strtoull(arg) {
                Some(v) => {
                    f.req_cas = v;
                    f.has_cas = true;
                }
                None => {
                    errstr = BAD_TOKEN;
                    err = Some(errstr);
                }
            },
            b'M' => {
                if tok.len() != 2 {
                    errstr = "CLIENT_ERROR incorrect length for M token";
                    err = Some(errstr);
                } else {
                    f.mode = tok[1];
                }
            }
            b'J' => match c_strtoull(arg) {
                Some(v) => f.initial = v,
                None => {
                    errstr = "CLIENT_ERROR invalid numeric initial value";
                    err = Some(errstr);
                }
            },
            b'D' => match c_strtoull(arg) {
                Some(v) => f.delta = v,
                None => {
                    errstr = "CLIENT_ERROR invalid numeric delta value";
                    err = Some(errstr);
                }
            },
            b'I' => f.set_stale = true,
            _ => return Err("CLIENT_ERROR invalid flag"),
        }
    }
    match err {
        // The message is the last one set (a bad `F` keeps the one before it).
        Some(_) => Err(errstr),
        None => Ok(f),
    }
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn push_num(out: &mut Vec<u8>, v: impl std::fmt::Display) {
    out.extend_from_slice(v.to_string().as_bytes());
}

/// ` k<key>`, base64-encoded and followed by ` b` for binary keys.
fn push_key(out: &mut Vec<u8>, key: &[u8], binary: bool) {
    out.extend_from_slice(b" k");
    if binary {
        base64::encode(key, out);
        out.extend_from_slice(b" b");
    } else {
        out.extend_from_slice(key);
    }
}

/// The flag tokens after the key.
fn flag_tokens<'a>(tk: &'a Tokens<'a>, from: usize) -> impl Iterator<Item = &'a [u8]> + 'a {
    (from..tk.n.saturating_sub(1)).map(|i| tk.get(i))
}

/// Appends the ` O...` and ` k...` of a response without an item; `Err` when an opaque is
/// too long.
fn opaque_and_key(
    out: &mut Vec<u8>,
    tk: &Tokens<'_>,
    from: usize,
    key: &[u8],
    binary: bool,
) -> Result<(), &'static str> {
    for tok in flag_tokens(tk, from) {
        match tok.first() {
            Some(b'O') => {
                if tok.len() > MAX_OPAQUE {
                    return Err(OPAQUE_TOO_LONG);
                }
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            Some(b'k') => push_key(out, key, binary),
            _ => {}
        }
    }
    Ok(())
}

/// The remaining TTL as memcached prints it (`-1`: none; unsigned arithmetic).
fn ttl(exptime: RelTime, now: RelTime) -> String {
    if exptime == 0 {
        "-1".into()
    } else {
        exptime.wrapping_sub(now).to_string()
    }
}

/// Executes the meta command on `line` (its tokens `tk`); `after` is what follows the line.
pub(crate) fn run(
    tk: &Tokens<'_>,
    after: &[u8],
    kv: &Kv,
    now: RelTime,
    out: &mut Vec<u8>,
    ctr: &mut Local,
) -> Flow {
    match tk.get(0) {
        b"mg" => mg(tk, kv, now, out, ctr),
        b"ms" => return ms(tk, after, kv, now, out, ctr),
        b"md" => md(tk, kv, now, out, ctr),
        b"ma" => ma(tk, kv, now, out, ctr),
        b"me" => me(tk, kv, now, out, ctr),
        b"mn" => line(out, "MN"),
        _ => line(out, "ERROR"),
    }
    Flow::Done(0)
}

/// The checks every meta command but `ms` and `me` starts with (the message for too many
/// tokens varies); false when one failed and was answered.
fn line_ok(tk: &Tokens<'_>, out: &mut Vec<u8>, too_many: &str) -> bool {
    let err = if tk.n < 3 {
        "ERROR"
    } else if tk.get(1).len() > KEY_MAX {
        BAD_FORMAT
    } else if tk.n > MAX_TOKENS {
        too_many
    } else {
        return true;
    };
    line(out, err);
    false
}

fn mg(tk: &Tokens<'_>, kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) {
    if !line_ok(tk, out, "CLIENT_ERROR options flags are too long") {
        return;
    }
    let f = match preparse(tk, 2, kv, now) {
        Ok(f) => f,
        Err(e) => return line(out, e),
    };
    let mut resp = Vec::with_capacity(64);
    let result = kv.store.access(&f.key, now, |a| {
        let mut created = false;
        if a.item().is_none() && f.vivify {
            // An empty item, to be filled by the client that won the right to.
            created = a.create(b"", 0);
        }
        let Some(it) = a.item() else {
            return Ok(None);
        };
        let (len, exptime0, token_sent, stale) =
            (it.value.len(), it.exptime, it.token_sent(), it.stale());
        if f.value {
            resp.extend_from_slice(b"VA ");
            push_num(&mut resp, len);
        } else {
            resp.extend_from_slice(b"HD");
        }
        let mut won = false;
        let mut ttl_set = false;
        let mut exptime = exptime0;
        for tok in flag_tokens(tk, 2) {
            let Some(&o) = tok.first() else { continue };
            match o {
                b'T' => {
                    ttl_set = true;
                    exptime = f.exptime;
                    a.set_exptime(exptime);
                }
                b'N' if created => {
                    exptime = f.autoviv_exptime;
                    a.set_exptime(exptime);
                    won = true;
                }
                b'R' if !token_sent && !created && exptime != 0 && exptime < f.recache_time => {
                    won = true;
                }
                b's' => {
                    resp.extend_from_slice(b" s");
                    push_num(&mut resp, len);
                }
                b't' => {
                    resp.extend_from_slice(b" t");
                    resp.extend_from_slice(ttl(exptime, now).as_bytes());
                }
                b'O' => {
                    if tok.len() > MAX_OPAQUE {
                        return Err(OPAQUE_TOO_LONG);
                    }
                    resp.push(b' ');
                    resp.extend_from_slice(tok);
                }
                b'c' | b'f' | b'l' | b'h' | b'k' => {
                    let Some(it) = a.item() else { continue };
                    match o {
                        b'c' => {
                            resp.extend_from_slice(b" c");
                            push_num(&mut resp, it.cas);
                        }
                        b'f' => {
                            resp.extend_from_slice(b" f");
                            push_num(&mut resp, it.flags);
                        }
                        b'l' => {
                            resp.extend_from_slice(b" l");
                            push_num(&mut resp, now.wrapping_sub(it.time));
                        }
                        b'h' => {
                            resp.extend_from_slice(if it.fetched() { b" h1" } else { b" h0" });
                        }
                        _ => push_key(&mut resp, it.key, it.key_binary()),
                    }
                }
                _ => {}
            }
        }
        if token_sent {
            resp.extend_from_slice(b" Z");
        }
        if stale {
            resp.extend_from_slice(b" X");
            if !token_sent {
                won = true;
            }
        }
        if won {
            resp.extend_from_slice(b" W");
            a.set_token_sent();
        }
        resp.extend_from_slice(b"\r\n");
        if f.value {
            if let Some(it) = a.item() {
                resp.extend_from_slice(it.value);
                resp.extend_from_slice(b"\r\n");
            }
        }
        if !f.no_update {
            a.bump();
        }
        a.count(if ttl_set { Hit::Touch } else { Hit::Get });
        Ok(Some(ttl_set))
    });
    match result {
        Err(e) => line(out, e),
        Ok(Some(ttl_set)) => {
            ctr.inc(if ttl_set { Ctr::CmdTouch } else { Ctr::CmdGet });
            out.extend_from_slice(&resp);
        }
        Ok(None) => {
            ctr.inc(Ctr::CmdGet);
            ctr.inc(Ctr::GetMisses);
            let mut en = b"EN".to_vec();
            match opaque_and_key(&mut en, tk, 2, &f.key, f.key_binary) {
                Err(e) => line(out, e),
                Ok(()) if f.no_reply => {}
                Ok(()) => {
                    out.extend_from_slice(&en);
                    out.extend_from_slice(b"\r\n");
                }
            }
        }
    }
}

fn ms(
    tk: &Tokens<'_>,
    after: &[u8],
    kv: &Kv,
    now: RelTime,
    out: &mut Vec<u8>,
    ctr: &mut Local,
) -> Flow {
    if tk.n < 3 {
        line(out, "ERROR");
        return Flow::Done(0);
    }
    if tk.get(1).len() > KEY_MAX || tk.n == 3 {
        line(out, BAD_FORMAT);
        return Flow::Done(0);
    }
    if tk.n > MAX_TOKENS {
        line(out, "CLIENT_ERROR options flags too long");
        return Flow::Done(0);
    }
    let vlen = match c_strtol(tk.get(2)) {
        Some(v) if (0..=i32::MAX - 2).contains(&v) => v as usize,
        _ => {
            line(out, BAD_FORMAT);
            return Flow::Done(0);
        }
    };
    let swallow = |out: &mut Vec<u8>, e: &str| {
        line(out, e);
        Flow::Swallow(vlen as u64 + 2)
    };
    let f = match preparse(tk, 3, kv, now) {
        Ok(f) => f,
        Err(e) => return swallow(out, e),
    };
    // The flags to echo, in their order; an over-long opaque is reported after the mode.
    let mut opaque_err = None;
    for tok in flag_tokens(tk, 2) {
        if tok.first() == Some(&b'O') && tok.len() > MAX_OPAQUE {
            opaque_err = Some(OPAQUE_TOO_LONG);
        }
    }
    let mut mode = match f.mode {
        0 | b'S' => SetMode::Set,
        b'E' => SetMode::Add,
        b'A' => SetMode::Append(f.req_cas),
        b'P' => SetMode::Prepend(f.req_cas),
        b'R' => SetMode::Replace,
        _ => return swallow(out, "CLIENT_ERROR invalid mode for ms M token"),
    };
    if f.has_cas && matches!(mode, SetMode::Set | SetMode::Replace) {
        mode = SetMode::Cas(f.req_cas);
    }
    if let Some(e) = opaque_err {
        return swallow(out, e);
    }
    if !kv.store.size_ok(f.key.len(), f.client_flags, vlen) {
        ctr.inc(Ctr::StoreTooLarge);
        // A failed store must not leave the old value behind.
        kv.store.unlink(&f.key, now);
        return swallow(out, crate::text::TOO_LARGE);
    }
    let Some(data) = after.get(..vlen + 2) else {
        return Flow::More;
    };
    if &data[vlen..] != b"\r\n" {
        kv.store.count_set(&f.key, f.client_flags, vlen);
        line(out, BAD_DATA_CHUNK);
        return Flow::Done(vlen + 2);
    }
    let r = kv.store.update(
        &Update {
            mode,
            key: &f.key,
            flags: f.client_flags,
            exptime: f.exptime,
            value: &data[..vlen],
            key_binary: f.key_binary,
            invalidate: f.set_stale && matches!(mode, SetMode::Cas(_)),
        },
        now,
    );
    let (code, cas) = match r {
        StoreOutcome::Stored(cas) => ("HD", cas),
        StoreOutcome::Exists => ("EX", 0),
        StoreOutcome::NotFound => ("NF", 0),
        StoreOutcome::NotStored => ("NS", 0),
        StoreOutcome::NoMemory | StoreOutcome::TooLarge => {
            ctr.inc(if r == StoreOutcome::TooLarge {
                Ctr::StoreTooLarge
            } else {
                Ctr::StoreNoMemory
            });
            kv.store.unlink(&f.key, now);
            line(
                out,
                if r == StoreOutcome::TooLarge {
                    crate::text::TOO_LARGE
                } else {
                    crate::text::NO_MEMORY
                },
            );
            return Flow::Done(vlen + 2);
        }
    };
    if let SetMode::Cas(_) = mode {
        if r == StoreOutcome::NotFound {
            ctr.inc(Ctr::CasMisses);
        }
    }
    if code == "HD" && f.no_reply {
        return Flow::Done(vlen + 2);
    }
    out.extend_from_slice(code.as_bytes());
    for tok in flag_tokens(tk, 2) {
        match tok.first() {
            Some(b'O') => {
                out.push(b' ');
                out.extend_from_slice(tok);
            }
            Some(b'k') => push_key(out, &f.key, f.key_binary),
            Some(b'c') => {
                out.extend_from_slice(b" c");
                push_num(out, cas);
            }
            _ => {}
        }
    }
    out.extend_from_slice(b"\r\n");
    Flow::Done(vlen + 2)
}

fn md(tk: &Tokens<'_>, kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) {
    if !line_ok(tk, out, "CLIENT_ERROR options flags too long") {
        return;
    }
    let Ok(f) = preparse(tk, 2, kv, now) else {
        return line(out, BAD_FLAG);
    };
    let mut tail = Vec::new();
    if let Err(e) = opaque_and_key(&mut tail, tk, 2, &f.key, f.key_binary) {
        return line(out, e);
    }
    let code = kv.store.access(&f.key, now, |a| {
        let Some(it) = a.item() else {
            return "NF";
        };
        if f.has_cas && it.cas != f.req_cas {
            return "EX";
        }
        if f.set_stale {
            a.invalidate(f.new_ttl.then_some(f.exptime));
        } else {
            a.remove();
        }
        "HD"
    });
    if code != "HD" {
        ctr.inc(Ctr::DeleteMisses);
    } else if f.no_reply {
        return;
    }
    out.extend_from_slice(code.as_bytes());
    out.extend_from_slice(&tail);
    out.extend_from_slice(b"\r\n");
}

fn ma(tk: &Tokens<'_>, kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) {
    if !line_ok(tk, out, "CLIENT_ERROR options flags too long") {
        return;
    }
    let Ok(f) = preparse(tk, 2, kv, now) else {
        return line(out, BAD_FLAG);
    };
    let incr = match f.mode {
        0 | b'I' | b'+' => true,
        b'D' | b'-' => false,
        _ => return line(out, "CLIENT_ERROR invalid mode for ma M token"),
    };
    let mut resp = Vec::with_capacity(64);
    let result = kv.store.access(&f.key, now, |a| {
        let mut created = false;
        let mut quiet = false;
        let value = match a.delta(incr, f.delta, f.req_cas) {
            DeltaOutcome::Value(v, _) => {
                quiet = f.no_reply;
                Some(v)
            }
            DeltaOutcome::NonNumeric => {
                return Err("CLIENT_ERROR cannot increment or decrement non-numeric value");
            }
            DeltaOutcome::NoMemory => return Err("SERVER_ERROR out of memory"),
            DeltaOutcome::NotFound if f.vivify => {
                if !a.create(f.initial.to_string().as_bytes(), 0) {
                    return Err("SERVER_ERROR Out of memory allocating new item");
                }
                created = true;
                Some(f.initial)
            }
            DeltaOutcome::NotFound => {
                resp.extend_from_slice(b"NF");
                None
            }
            DeltaOutcome::Exists => {
                resp.extend_from_slice(b"EX");
                None
            }
        };
        let Some(v) = value else {
            return Ok((false, quiet));
        };
        let digits = v.to_string();
        if f.value {
            resp.extend_from_slice(b"VA ");
            push_num(&mut resp, digits.len());
        } else {
            resp.extend_from_slice(b"HD");
        }
        for tok in flag_tokens(tk, 2) {
            match tok.first() {
                Some(b'c') => {
                    resp.extend_from_slice(b" c");
                    push_num(&mut resp, a.item().map_or(0, |it| it.cas));
                }
                Some(b't') => {
                    resp.extend_from_slice(b" t");
                    let e = a.item().map_or(0, |it| it.exptime);
                    resp.extend_from_slice(ttl(e, now).as_bytes());
                }
                Some(b'T') => a.set_exptime(f.exptime),
                Some(b'N') if created => a.set_exptime(f.autoviv_exptime),
                Some(b'O') => {
                    if tok.len() > MAX_OPAQUE {
                        return Err(OPAQUE_TOO_LONG);
                    }
                    resp.push(b' ');
                    resp.extend_from_slice(tok);
                }
                Some(b'k') => push_key(&mut resp, &f.key, f.key_binary),
                _ => {}
            }
        }
        if f.value {
            resp.extend_from_slice(b"\r\n");
            resp.extend_from_slice(digits.as_bytes());
        }
        Ok((true, quiet))
    });
    match result {
        Err(e) => line(out, e),
        Ok((found, quiet)) => {
            if !found {
                if resp == b"NF" {
                    ctr.inc(if incr {
                        Ctr::IncrMisses
                    } else {
                        Ctr::DecrMisses
                    });
                }
                if let Err(e) = opaque_and_key(&mut resp, tk, 2, &f.key, f.key_binary) {
                    return line(out, e);
                }
            }
            if !quiet {
                out.extend_from_slice(&resp);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

fn me(tk: &Tokens<'_>, kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) {
    if tk.n < 3 || tk.get(1).len() > KEY_MAX {
        return line(out, BAD_FORMAT);
    }
    let mut key = tk.get(1).to_vec();
    if tk.n >= 4 && tk.get(2) == b"b" {
        match base64::decode(&key) {
            Some(k) => key = k,
            None => return line(out, BAD_FORMAT),
        }
    }
    ctr.inc(Ctr::CmdMeta);
    let found = kv.store.access(&key, now, |a| {
        let it = a.item()?;
        let mut l = b"ME ".to_vec();
        if it.key_binary() {
            base64::encode(it.key, &mut l);
        } else {
            l.extend_from_slice(it.key);
        }
        // memcached prints the expiry as "now minus exptime" (negative while it lives).
        let exp = if it.exptime == 0 {
            -1
        } else {
            now.wrapping_sub(it.exptime) as i32
        };
        l.extend_from_slice(
            format!(
                " exp={} la={} cas={} fetch={} cls={} size={}\r\n",
                exp,
                now.wrapping_sub(it.time),
                it.cas,
                if it.fetched() { "yes" } else { "no" },
                it.class,
                it.ntotal()
            )
            .as_bytes(),
        );
        Some(l)
    });
    match found {
        Some(l) => out.extend_from_slice(&l),
        None => line(out, "EN"),
    }
}
