//! Executes memcached's text protocol against the store: one command line (and, for the
//! storage commands, its value) per call, with memcached 1.6's answers. Parsing is in
//! `text.rs`, the meta commands in `meta.rs`, the `stats` reports in `stats.rs`.

use crate::clock::RelTime;
use crate::meta;
use crate::numbers::push_u64;
use crate::prefixes::Op;
use crate::state::{Ctr, Kv, Local, MAX_VERBOSITY, VERSION};
use crate::stats;
use crate::step::Step;
use crate::store::{DeleteOutcome, DeltaOutcome, Item, SetMode, StoreOutcome};
use crate::text::{self, Line, Request, StoreOp, Tokens};

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

fn reply(out: &mut Vec<u8>, noreply: bool, s: &str) {
    if !noreply {
        line(out, s);
    }
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

/// `flush_all [delay]` as memcached does it: items last accessed up to one second before
/// the deadline are invalid from the deadline on (and, when that is now, every item stored
/// so far).
pub(crate) fn flush(kv: &Kv, delay: i64, now: RelTime) {
    let new_oldest = if delay > 0 {
        kv.clock.expiry(delay, now)
    } else {
        now
    };
    kv.store.flush_all(new_oldest.saturating_sub(1), now);
}

/// One text command from the start of `rest`; `me` is the connection's number.
pub(crate) fn step(
    rest: &[u8],
    kv: &Kv,
    now: RelTime,
    out: &mut Vec<u8>,
    ctr: &mut Local,
    me: u64,
) -> Step {
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
                kv.record_prefix(key, Op::Get(hit.is_some()));
                if hit.is_none() {
                    ctr.inc(if exp.is_some() {
                        Ctr::TouchMisses
                    } else {
                        Ctr::GetMisses
                    });
                }
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
                kv.record_prefix(key, Op::Set);
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
            kv.record_prefix(key, Op::Set);
            if &data[bytes..] != b"\r\n" {
                store.count_set(key, flags, bytes);
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
                StoreOutcome::TooLarge => {
                    ctr.inc(Ctr::StoreTooLarge);
                    text::TOO_LARGE
                }
            };
            if op == StoreOp::Cas && r == StoreOutcome::NotFound {
                ctr.inc(Ctr::CasMisses);
            }
            reply(out, noreply, msg);
            Step::Done(total)
        }
        Request::Delete { key, noreply } => {
            kv.record_prefix(key, Op::Delete);
            if store.delete(key, 0, now) == DeleteOutcome::Deleted {
                reply(out, noreply, "DELETED");
            } else {
                ctr.inc(Ctr::DeleteMisses);
                reply(out, noreply, "NOT_FOUND");
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
                    if !noreply {
                        push_u64(out, v);
                        out.extend_from_slice(b"\r\n");
                    }
                }
                DeltaOutcome::NonNumeric => reply(out, noreply, text::NON_NUMERIC),
                DeltaOutcome::NoMemory => reply(out, noreply, "SERVER_ERROR out of memory"),
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
        Request::Stats { args } => {
            let args: Vec<&[u8]> = text::keys(args).take(3).collect();
            stats::text(kv, now, &args, me, out);
            Step::Done(next)
        }
        Request::Meta { line } => {
            let tk = Tokens::new(line);
            match meta::run(&tk, &rest[next..], kv, now, out, ctr) {
                meta::Flow::Done(n) => Step::Done(next + n),
                meta::Flow::More => Step::More,
                meta::Flow::Swallow(n) => Step::Swallow(next, n),
            }
        }
        Request::SlabsAutomove { level, noreply } => {
            kv.slab_automove
                .store(level, std::sync::atomic::Ordering::Relaxed);
            reply(out, noreply, "OK");
            Step::Done(next)
        }
        Request::SlabsAutomoveRatio { ratio, noreply } => {
            kv.slab_automove_ratio
                .store(ratio.to_bits(), std::sync::atomic::Ordering::Relaxed);
            reply(out, noreply, "OK");
            Step::Done(next)
        }
        Request::SlabsReassign => {
            line(out, "CLIENT_ERROR slab reassignment disabled");
            Step::Done(next)
        }
        Request::Quit => Step::Close(next),
        Request::Reply { msg, noreply } => {
            reply(out, noreply, msg);
            Step::Done(next)
        }
        Request::Close => Step::Close(next),
    }
}
