//! Property tests of the protocol layers (no I/O): arbitrary bytes never panic the parsers
//! or a session, and how the input is split into reads never changes the responses.
#![allow(clippy::unwrap_used)]

use megatcp_kv::binary::{self, Header, op};
use megatcp_kv::session::{Flow, Session};
use megatcp_kv::{Kv, Settings, base64, numbers, text};
use proptest::prelude::*;

fn kv() -> Kv {
    Kv::new(Settings {
        max_bytes: 4 * 1024 * 1024,
        item_max: 64 * 1024,
        ..Settings::default()
    })
}

/// Feeds `input` in pieces cut at `cuts`; returns all responses and whether it closed.
fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool) {
    let kv = kv();
    let now = 1000;
    let mut s = Session::new();
    let mut out = Vec::new();
    let mut all = Vec::new();
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    points.push(0);
    points.push(input.len());
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        let mut flow = s.feed(&input[w[0]..w[1]], &kv, now, &mut out);
        all.append(&mut out);
        while flow == Flow::Continue && s.has_backlog() {
            flow = s.feed(&[], &kv, now, &mut out);
            all.append(&mut out);
        }
        if flow == Flow::Close {
            return (all, true);
        }
    }
    (all, false)
}

/// Runs `input` whole, cut at `cuts` and byte by byte: the three must answer alike. Returns
/// the whole run's answers.
fn same_however_split(input: &[u8], cuts: &[usize]) -> Result<(Vec<u8>, bool), TestCaseError> {
    let whole = run(input, &[]);
    let bytewise: Vec<usize> = (0..input.len()).collect();
    prop_assert_eq!(&whole, &run(input, cuts));
    prop_assert_eq!(&whole, &run(input, &bytewise));
    Ok(whole)
}

/// A request with a fixed opaque.
fn bin(opcode: u8, extras: &[u8], key: &[u8], value: &[u8], cas: u64) -> Vec<u8> {
    binary::request(opcode, extras, key, value, cas, 0x1234)
}

/// Text commands, valid and not.
fn text_piece() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec!["a", "b", "key", "n", "x y", "", "Zm9v"]);
    let cmd = prop::sample::select(vec![
        "get",
        "gets",
        "gat 10",
        "gats 0",
        "set",
        "add",
        "replace",
        "append",
        "prepend",
        "cas",
        "incr",
        "decr",
        "delete",
        "touch",
        "flush_all",
        "version",
        "verbosity",
        "mn",
        "mg",
        "ms",
        "md",
        "ma",
        "me",
        "bogus",
        "quit",
    ]);
    // Meta flags, valid and not (duplicates, unknown, bad tokens, base64).
    let flags = prop::sample::select(vec![
        "",
        "v",
        "s v t f c",
        "k O123 q",
        "N30 v t",
        "T10 h l",
        "I T30",
        "b k v",
        "C1",
        "C2 q",
        "MA",
        "ME c",
        "MD D3 v",
        "N0 J7 v",
        "R30 v",
        "q",
        "u v",
        "zz",
        "v v",
        "F5 T0",
        "Tx",
        "Oaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa",
    ]);
    (
        cmd,
        key,
        0usize..40,
        any::<bool>(),
        any::<u8>(),
        0u64..5,
        flags,
    )
        .prop_map(|(cmd, key, len, noreply, junk, cas, flags)| {
            let nr = if noreply { " noreply" } else { "" };
            let value: Vec<u8> = (0..len).map(|i| b'0' + ((i as u8 ^ junk) % 10)).collect();
            let mut b = match cmd {
                "set" | "add" | "replace" | "append" | "prepend" => {
                    format!("{cmd} {key} {junk} 0 {len}{nr}\r\n").into_bytes()
                }
                "cas" => format!("cas {key} 0 0 {len} {cas}{nr}\r\n").into_bytes(),
                "incr" | "decr" => format!("{cmd} {key} {junk}{nr}\r\n").into_bytes(),
                "touch" => format!("touch {key} 100{nr}\r\n").into_bytes(),
                "delete" => format!("delete {key}{nr}\r\n").into_bytes(),
                "flush_all" => format!("flush_all{nr}\r\n").into_bytes(),
                "verbosity" => format!("verbosity 1{nr}\r\n").into_bytes(),
                "mg" | "md" | "ma" | "me" => format!("{cmd} {key} {flags}\r\n").into_bytes(),
                "ms" => format!("ms {key} {len} {flags}\r\n").into_bytes(),
                c => format!("{c} {key}\r\n").into_bytes(),
            };
            if matches!(
                cmd,
                "set" | "add" | "replace" | "append" | "prepend" | "cas" | "ms"
            ) {
                b.extend_from_slice(&value);
                // Sometimes a bad data chunk.
                b.extend_from_slice(if junk % 7 == 0 { b"xx" } else { b"\r\n" });
            }
            b
        })
}

/// Binary requests, valid and not.
fn binary_piece() -> impl Strategy<Value = Vec<u8>> {
    let key = prop::sample::select(vec![&b"a"[..], b"b", b"key", b"n", b""]);
    let opcode = prop::sample::select(vec![
        op::GET,
        op::GETQ,
        op::GETK,
        op::GETKQ,
        op::SET,
        op::SETQ,
        op::ADD,
        op::REPLACE,
        op::APPEND,
        op::PREPENDQ,
        op::DELETE,
        op::INCREMENT,
        op::DECREMENTQ,
        op::NOOP,
        op::VERSION,
        op::TOUCH,
        op::GAT,
        op::GATKQ,
        op::FLUSH,
        op::QUITQ,
        0x55,
    ]);
    (
        opcode,
        key,
        prop::collection::vec(any::<u8>(), 0..20),
        0u64..3,
    )
        .prop_map(|(opcode, key, value, cas)| match opcode {
            op::SET | op::SETQ | op::ADD | op::REPLACE => {
                bin(opcode, &[0, 0, 0, 1, 0, 0, 0, 0], key, &value, cas)
            }
            op::APPEND | op::PREPENDQ => bin(opcode, &[], key, &value, cas),
            op::INCREMENT | op::DECREMENTQ => {
                let mut e = vec![0u8; 20];
                e[7] = 3;
                e[15] = 10;
                bin(opcode, &e, key, &[], cas)
            }
            op::TOUCH | op::GAT | op::GATKQ => bin(opcode, &[0, 0, 0, 100], key, &[], 0),
            op::NOOP | op::VERSION | op::FLUSH | op::QUITQ => bin(opcode, &[], &[], &[], 0),
            o => bin(o, &[], key, &value, 0),
        })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_bytes_never_panic(data in prop::collection::vec(any::<u8>(), 0..600)) {
        let _ = text::parse(&data);
        let _ = text::find_line(&data);
        let _ = Header::parse(&data);
        let _ = binary::parse_response(&data);
        let _ = numbers::c_strtol(&data);
        let _ = numbers::c_strtoull(&data);
        let _ = base64::decode(&data);
        let (a, _) = run(&data, &[]);
        // Also as a binary stream.
        let mut b = vec![binary::REQ_MAGIC];
        b.extend_from_slice(&data);
        let _ = run(&b, &[]);
        let _ = a;
    }

    #[test]
    fn splitting_arbitrary_bytes_changes_nothing(
        data in prop::collection::vec(any::<u8>(), 0..400),
        cuts in prop::collection::vec(any::<usize>(), 0..8),
    ) {
        prop_assert_eq!(run(&data, &[]), run(&data, &cuts));
    }

    #[test]
    fn splitting_text_commands_changes_nothing(
        pieces in prop::collection::vec(text_piece(), 1..30),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        same_however_split(&pieces.concat(), &cuts)?;
    }

    #[test]
    fn splitting_binary_requests_changes_nothing(
        pieces in prop::collection::vec(binary_piece(), 1..30),
        cuts in prop::collection::vec(any::<usize>(), 0..12),
    ) {
        let whole = same_however_split(&pieces.concat(), &cuts)?;
        // Every response parses.
        let mut rest = &whole.0[..];
        while !rest.is_empty() {
            match binary::parse_response(rest) {
                Ok(Some((_, n))) => rest = &rest[n..],
                other => prop_assert!(false, "bad response stream: {:?}", other),
            }
        }
    }
}

#[test]
fn a_huge_pipeline_is_executed_in_bounded_steps() {
    let kv = kv();
    let mut s = Session::new();
    let mut out = Vec::new();
    let v = vec![b'v'; 60_000];
    let mut req = format!("set big 0 0 {}\r\n", v.len()).into_bytes();
    req.extend_from_slice(&v);
    req.extend_from_slice(b"\r\n");
    s.feed(&req, &kv, 10, &mut out);
    assert_eq!(out, b"STORED\r\n");
    out.clear();
    let gets = b"get big\r\n".repeat(1000); // 60 MB of responses
    s.feed(&gets, &kv, 10, &mut out);
    assert!(
        out.len() < 2 * megatcp_kv::session::OUT_HIGH,
        "{}",
        out.len()
    );
    assert!(s.has_backlog());
    let mut total = out.len();
    let mut rounds = 0;
    while s.has_backlog() {
        out.clear();
        s.feed(&[], &kv, 10, &mut out);
        assert!(out.len() < 2 * megatcp_kv::session::OUT_HIGH);
        total += out.len();
        rounds += 1;
    }
    assert!(rounds > 10);
    assert_eq!(
        total,
        1000 * (v.len() + "VALUE big 0 60000\r\n\r\nEND\r\n".len())
    );
}
