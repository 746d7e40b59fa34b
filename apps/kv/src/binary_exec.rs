//! Executes memcached's binary protocol against the store: one request per call, with
//! memcached 1.6's status codes and bodies. The header format is in `binary.rs`, the `STAT`
//! reports in `stats.rs`.

use crate::binary::{self, HEADER_LEN, Header, HeaderError, Opcode, Status, op};
use crate::clock::RelTime;
use crate::numbers::push_u64;
use crate::prefixes::Op;
use crate::state::{Ctr, Kv, Local, VERSION};
use crate::stats;
use crate::step::Step;
use crate::store::{DeleteOutcome, DeltaOutcome, Item, KEY_MAX, SetMode, StoreOutcome};
use crate::text_exec::flush;

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

/// One binary request from the start of `rest`.
pub(crate) fn step(rest: &[u8], kv: &Kv, now: RelTime, out: &mut Vec<u8>, ctr: &mut Local) -> Step {
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
                kv.record_prefix(key, Op::Set);
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
            kv.record_prefix(key, Op::Set);
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
                StoreOutcome::TooLarge => {
                    ctr.inc(Ctr::StoreTooLarge);
                    Some(Status::TooLarge)
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
            if hit.is_none() {
                ctr.inc(if touch {
                    Ctr::TouchMisses
                } else {
                    Ctr::GetMisses
                });
            }
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
            kv.record_prefix(key, Op::Delete);
            match store.delete(key, h.cas, now) {
                DeleteOutcome::Deleted => {
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
            // A miss with an expiry other than all ones creates the counter.
            let r = store.access(key, now, |a| match a.delta(incr, delta, h.cas) {
                DeltaOutcome::NotFound if expiration != u32::MAX => {
                    let mut digits = Vec::with_capacity(20);
                    push_u64(&mut digits, initial);
                    let exp = kv.clock.expiry(i64::from(expiration), now);
                    if a.create(&digits, exp) {
                        DeltaOutcome::Value(initial, a.item().map_or(0, |it| it.cas))
                    } else {
                        DeltaOutcome::NoMemory
                    }
                }
                r => r,
            });
            match r {
                DeltaOutcome::Value(v, cas) => ok(out, v, cas),
                DeltaOutcome::NoMemory => {
                    binary::write_error(out, opc, Status::OutOfMemory, opaque);
                }
                DeltaOutcome::NonNumeric => {
                    binary::write_error(out, opc, Status::NonNumeric, opaque);
                }
                DeltaOutcome::Exists => binary::write_error(out, opc, Status::KeyExists, opaque),
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
            stats::binary(kv, now, key, opc, opaque, out);
            Step::Done(head)
        }
        _ => {
            binary::write_error(out, opc, Status::UnknownCommand, opaque);
            Step::Swallow(head, (bodylen - keylen - extlen) as u64)
        }
    }
}
