//! Differential test of the binary protocol: one script of requests (quiet variants, errors,
//! CAS, incr/decr with initial values, touch/gat, protocol errors) sent to real memcached
//! (`-t 1 -U 0`) and to `megatcp-kv`; every response packet must match byte for byte,
//! with non-zero CAS values and the version string masked.
//!
//! Each step ends with a NOOP (opaque `0xffffffff`) whose answer marks the end of the
//! step's responses (quiet commands answer nothing on success).
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;

use common::{MEMCACHED_LIKE_KV, connect, differential, read_to_eof};
use megatcp_kv::binary::{op, parse_response, request};

const MARK: u32 = 0xffff_ffff;

fn set_ext(flags: u32, exptime: u32) -> Vec<u8> {
    [flags.to_be_bytes(), exptime.to_be_bytes()].concat()
}

fn incr_ext(delta: u64, initial: u64, exptime: u32) -> Vec<u8> {
    [
        &delta.to_be_bytes()[..],
        &initial.to_be_bytes(),
        &exptime.to_be_bytes(),
    ]
    .concat()
}

/// A step: the bytes to send given the last CAS seen, and whether the server closes.
type Step = (Box<dyn Fn(u64) -> Vec<u8>>, bool);

fn step(f: impl Fn(u64) -> Vec<u8> + 'static) -> Step {
    (Box::new(f), false)
}

fn script() -> Vec<Step> {
    let big = 1_048_576 - 48 - 2 - 8 - 2 + 1; // one byte over -I 1m for key "b"
    vec![
        step(|_| request(op::FLUSH, &[], &[], &[], 0, 1)),
        step(|_| request(op::SET, &set_ext(5, 0), b"k", b"value", 0, 2)),
        step(|_| request(op::GET, &[], b"k", &[], 0, 3)),
        step(|_| request(op::GETK, &[], b"k", &[], 0, 4)),
        step(|_| {
            [
                request(op::GETQ, &[], b"missing", &[], 0, 5),
                request(op::GETKQ, &[], b"missing", &[], 0, 6),
                request(op::GETQ, &[], b"k", &[], 0, 7),
                request(op::GETKQ, &[], b"k", &[], 0, 8),
            ]
            .concat()
        }),
        step(|_| request(op::GET, &[], b"missing", &[], 0, 9)),
        step(|_| request(op::GETK, &[], b"missing", &[], 0, 10)),
        step(|_| request(op::ADD, &set_ext(0, 0), b"k", b"x", 0, 11)),
        step(|_| request(op::ADDQ, &set_ext(0, 0), b"k", b"x", 0, 12)),
        step(|_| request(op::ADDQ, &set_ext(0, 0), b"a", b"x", 0, 13)),
        step(|_| request(op::REPLACE, &set_ext(0, 0), b"missing", b"x", 0, 14)),
        step(|_| request(op::REPLACEQ, &set_ext(0, 0), b"missing", b"x", 0, 15)),
        step(|_| request(op::REPLACE, &set_ext(9, 0), b"a", b"yy", 0, 16)),
        step(|_| {
            [
                request(op::APPEND, &[], b"a", b"-end", 0, 17),
                request(op::PREPENDQ, &[], b"a", b"start-", 0, 18),
                request(op::GET, &[], b"a", &[], 0, 19),
            ]
            .concat()
        }),
        step(|_| request(op::APPEND, &[], b"missing", b"x", 0, 20)),
        step(|_| request(op::GETK, &[], b"k", &[], 0, 21)),
        step(|cas| request(op::SET, &set_ext(0, 0), b"k", b"new", cas + 1000, 22)),
        step(|cas| request(op::SET, &set_ext(0, 0), b"k", b"new", cas, 23)),
        step(|_| request(op::SET, &set_ext(0, 0), b"nokey", b"new", 77, 24)),
        step(|cas| request(op::APPEND, &[], b"k", b"x", cas + 1000, 25)),
        step(|_| request(op::DELETE, &[], b"missing", &[], 0, 26)),
        step(|_| request(op::GETK, &[], b"k", &[], 0, 27)),
        step(|cas| request(op::DELETE, &[], b"k", &[], cas + 1000, 28)),
        step(|cas| request(op::DELETE, &[], b"k", &[], cas, 29)),
        step(|_| request(op::DELETEQ, &[], b"a", &[], 0, 30)),
        step(|_| request(op::DELETEQ, &[], b"a", &[], 0, 31)),
        step(|_| request(op::INCREMENT, &incr_ext(1, 10, 0), b"n", &[], 0, 32)),
        step(|_| request(op::INCREMENT, &incr_ext(5, 10, 0), b"n", &[], 0, 33)),
        step(|_| request(op::DECREMENT, &incr_ext(100, 10, 0), b"n", &[], 0, 34)),
        step(|_| request(op::INCREMENTQ, &incr_ext(7, 0, 0), b"n", &[], 0, 35)),
        step(|_| request(op::GET, &[], b"n", &[], 0, 36)),
        step(|_| {
            request(
                op::INCREMENT,
                &incr_ext(1, 0, 0xffff_ffff),
                b"m",
                &[],
                0,
                37,
            )
        }),
        step(|_| {
            request(
                op::DECREMENT,
                &incr_ext(1, 0, 0xffff_ffff),
                b"m",
                &[],
                0,
                38,
            )
        }),
        step(|_| {
            [
                request(
                    op::SET,
                    &set_ext(0, 0),
                    b"w",
                    b"18446744073709551615",
                    0,
                    39,
                ),
                request(op::INCREMENT, &incr_ext(2, 0, 0), b"w", &[], 0, 40),
                request(op::GET, &[], b"w", &[], 0, 41),
            ]
            .concat()
        }),
        step(|_| {
            [
                request(op::SET, &set_ext(0, 0), b"t", b"text", 0, 42),
                request(op::INCREMENT, &incr_ext(1, 0, 0), b"t", &[], 0, 43),
            ]
            .concat()
        }),
        step(|_| request(op::TOUCH, &100u32.to_be_bytes(), b"t", &[], 0, 44)),
        step(|_| request(op::TOUCH, &100u32.to_be_bytes(), b"missing", &[], 0, 45)),
        step(|_| request(op::GAT, &100u32.to_be_bytes(), b"t", &[], 0, 46)),
        step(|_| request(op::GATK, &100u32.to_be_bytes(), b"t", &[], 0, 47)),
        step(|_| {
            [
                request(op::GATQ, &100u32.to_be_bytes(), b"missing", &[], 0, 48),
                request(op::GATKQ, &100u32.to_be_bytes(), b"t", &[], 0, 49),
            ]
            .concat()
        }),
        step(|_| request(op::GATK, &100u32.to_be_bytes(), b"missing", &[], 0, 50)),
        step(|_| request(op::SET, &set_ext(0, 0xffff_ffff), b"e", b"1", 0, 51)),
        step(|_| request(op::GET, &[], b"e", &[], 0, 52)),
        step(|_| request(op::VERSION, &[], &[], &[], 0, 53)),
        step(|_| request(op::SETQ, &set_ext(1, 0), b"q", b"quiet", 0, 54)),
        step(|_| request(op::GETK, &[], b"q", &[], 0, 55)),
        step(move |_| request(op::SET, &set_ext(0, 0), b"b", &vec![b'x'; big], 0, 56)),
        step(move |_| request(op::SET, &set_ext(0, 0), b"b", &vec![b'x'; big - 1], 0, 57)),
        // Memory and hits per slab class, before and after a reset of the counters.
        step(|_| request(op::STAT, &[], b"slabs", &[], 0, 90)),
        step(|_| request(op::STAT, &[], b"reset", &[], 0, 91)),
        step(|_| request(op::STAT, &[], b"slabs", &[], 0, 92)),
        step(|_| request(op::FLUSHQ, &[], &[], &[], 0, 58)),
        step(|_| request(op::GET, &[], b"q", &[], 0, 59)),
        // More STAT groups (`items`, with its ages, and the general statistics are left to
        // differential_stats.rs).
        step(|_| request(op::STAT, &[], b"detail on", &[], 0, 70)),
        step(|_| {
            [
                request(op::SET, &set_ext(0, 0), b"pre:a", b"1", 0, 71),
                request(op::GET, &[], b"pre:a", &[], 0, 72),
                request(op::GETK, &[], b"pre:b", &[], 0, 73),
                request(op::DELETE, &[], b"pre:c", &[], 0, 74),
                request(op::APPEND, &[], b"other:x", b"1", 0, 75),
                request(op::SET, &set_ext(0, 0), b"nodelim", b"1", 0, 76),
            ]
            .concat()
        }),
        step(|_| request(op::STAT, &[], b"detail dump", &[], 0, 77)),
        step(|_| request(op::STAT, &[], b"detail off", &[], 0, 78)),
        step(|_| request(op::GET, &[], b"pre:a", &[], 0, 79)),
        step(|_| request(op::STAT, &[], b"detail dump", &[], 0, 80)),
        step(|_| request(op::STAT, &[], b"sizes", &[], 0, 82)),
        step(|_| request(op::STAT, &[], b"conns", &[], 0, 83)),
        step(|_| request(op::STAT, &[], b"bogus", &[], 0, 84)),
        step(|_| request(op::STAT, &[], b"detail", &[], 0, 85)),
        step(|_| request(op::STAT, &[], b"detail maybe", &[], 0, 86)),
        step(|_| request(op::STAT, &[], b"reset", &[], 0, 87)),
        step(|_| request(op::STAT, &[], b"detail dump", &[], 0, 89)),
        (
            Box::new(|_| request(op::SET, &[0; 4], b"k", b"v", 0, 60)),
            true,
        ),
        (
            Box::new(|_| request(op::GET, &[0; 4], b"k", &[], 0, 61)),
            true,
        ),
        (Box::new(|_| request(op::NOOP, &[], b"k", &[], 0, 62)), true),
        (Box::new(|_| request(op::QUIT, &[], &[], &[], 0, 63)), true),
        (Box::new(|_| request(op::QUITQ, &[], &[], &[], 0, 64)), true),
    ]
}

/// Reads packets until the marker NOOP's answer.
fn read_step(c: &mut TcpStream) -> Vec<u8> {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 65536];
    loop {
        let mut off = 0;
        while let Ok(Some((r, n))) = parse_response(&buf[off..]) {
            off += n;
            if r.opaque == MARK {
                return buf;
            }
        }
        let n = c.read(&mut chunk).unwrap();
        assert!(n > 0, "closed while waiting for the marker");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// The packets of a transcript with CAS values and the version masked, one per line.
fn mask(resp: &[u8], last_cas: &mut u64) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = resp;
    while !rest.is_empty() {
        let Ok(Some((r, n))) = parse_response(rest) else {
            out.push(format!("unparsable {:?}", &rest[..rest.len().min(64)]));
            break;
        };
        if r.cas != 0 {
            *last_cas = r.cas;
        }
        let value = if r.opcode == op::VERSION {
            "<version>".to_string()
        } else if r.value.len() > 64 {
            format!("{} bytes", r.value.len())
        } else {
            String::from_utf8_lossy(r.value).into_owned()
        };
        out.push(format!(
            "op {:#04x} status {:#06x} opaque {:#x} cas {} extras {:?} key {:?} value {:?}",
            r.opcode,
            r.status,
            r.opaque,
            if r.cas == 0 { "0" } else { "<cas>" },
            r.extras,
            String::from_utf8_lossy(r.key),
            value
        ));
        rest = &rest[n..];
    }
    out
}

fn run_script(port: u16) -> Vec<Vec<String>> {
    let mut c = connect(port);
    let mut cas = 0;
    let mut transcript = Vec::new();
    let noop = request(op::NOOP, &[], &[], &[], 0, MARK);
    for (make, closes) in script() {
        let bytes = make(cas);
        c.write_all(&bytes).unwrap();
        let resp = if closes {
            let (resp, closed) = read_to_eof(&mut c);
            assert!(closed, "the server did not close");
            c = connect(port);
            resp
        } else {
            c.write_all(&noop).unwrap();
            read_step(&mut c)
        };
        transcript.push(mask(&resp, &mut cas));
    }
    transcript
}

#[test]
fn binary_protocol_matches_real_memcached_byte_for_byte() {
    differential(
        MEMCACHED_LIKE_KV,
        &["--backend", "epoll", "--cores", "0"],
        run_script,
        |e, g| e == g,
        |_| String::new(),
    );
}
