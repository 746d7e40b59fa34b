//! Property tests of the protocol library (no I/O): how a request stream is split into reads
//! never changes the answers; arbitrary bytes never panic a session; the input a session
//! holds stays bounded whatever arrives.
#![allow(clippy::unwrap_used)]

use megatcp_http::files::Files;
use megatcp_http::harness::Harness;
use megatcp_http::session::{Flow, Limits};
use proptest::prelude::*;

fn files() -> Files {
    let mut f = Files::empty();
    f.add_hello(100, 784_111_777);
    f.insert(
        "/index.html",
        megatcp_http::files::Entry::new("index.html", b"<p>x</p>".to_vec(), 5),
    );
    f
}

fn limits() -> Limits {
    Limits {
        max_header_bytes: 512,
        max_headers: 8,
        max_uri: 256,
        max_body: 300,
        output_high: 2048,
        ..Limits::default()
    }
}

/// Feeds `input` in pieces cut at `cuts`, draining backlogs like the server does; returns
/// everything answered, whether the session closed, and the most input it held.
fn run(input: &[u8], cuts: &[usize]) -> (Vec<u8>, bool, usize) {
    let mut h = Harness::new(files(), limits());
    let mut all = Vec::new();
    let mut held = 0;
    let mut points: Vec<usize> = cuts.iter().map(|&c| c % (input.len() + 1)).collect();
    points.extend([0, input.len()]);
    points.sort_unstable();
    points.dedup();
    for w in points.windows(2) {
        let (out, flow) = h.feed(&input[w[0]..w[1]]);
        all.extend_from_slice(&out);
        held = held.max(h.session().buffered());
        if flow == Flow::Close {
            return (all, true, held);
        }
    }
    (all, false, held)
}

/// Request pieces, valid and not, to build streams from.
fn piece() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        Just(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        Just(b"HEAD /index.html HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n".to_vec()),
        Just(b"GET /missing HTTP/1.1\r\nHost: a\r\n\r\n".to_vec()),
        Just(b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nabcde".to_vec()),
        Just(b"PUT / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nwxyz\r\n0\r\nT: 1\r\n\r\n".to_vec()),
        Just(b"GET /hello HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/2.0\r\n\r\n".to_vec()),
        Just(b"GET / HTTP/1.7\r\nHost: a\r\n\r\n".to_vec()),
        Just(b"BAD\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100000\r\n\r\n".to_vec()),
        Just(b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nfff\r\n".to_vec()),
        Just(format!("GET /{} HTTP/1.1\r\nHost: a\r\n\r\n", "x".repeat(600)).into_bytes()),
        Just(format!("GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n", "y".repeat(600)).into_bytes()),
        proptest::collection::vec(any::<u8>(), 0..40),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(400))]

    #[test]
    fn any_split_gives_the_same_answers(
        pieces in proptest::collection::vec(piece(), 1..12),
        cuts in proptest::collection::vec(any::<usize>(), 0..24),
    ) {
        let input = pieces.concat();
        let whole = run(&input, &[]);
        let split = run(&input, &cuts);
        prop_assert_eq!(&whole.0, &split.0);
        prop_assert_eq!(whole.1, split.1);
        let bytewise: Vec<usize> = (0..input.len()).collect();
        let bytes = run(&input, &bytewise);
        prop_assert_eq!(&whole.0, &bytes.0);
        prop_assert_eq!(whole.1, bytes.1);
    }

    #[test]
    fn arbitrary_bytes_never_panic_and_stay_bounded(
        input in proptest::collection::vec(any::<u8>(), 0..4096),
        cuts in proptest::collection::vec(any::<usize>(), 0..16),
    ) {
        let (_, _, held) = run(&input, &cuts);
        // One head at most, plus the read that completed it.
        prop_assert!(held <= limits().max_header_bytes + input.len().min(4096));
    }

    #[test]
    fn byte_at_a_time_never_holds_more_than_a_head(
        input in proptest::collection::vec(piece(), 1..8),
    ) {
        let input = input.concat();
        let bytewise: Vec<usize> = (0..input.len()).collect();
        let (_, _, held) = run(&input, &bytewise);
        prop_assert!(held <= limits().max_header_bytes + 1, "{held}");
    }
}

#[test]
fn every_piece_alone_gets_an_answer_or_waits() {
    // Sanity of the generator: the valid pieces are answered.
    let (out, closed, _) = run(b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n", &[]);
    assert!(!closed && out.starts_with(b"HTTP/1.1 200 OK"));
    let (out, closed, _) = run(b"BAD\r\n\r\n", &[]);
    assert!(closed && out.starts_with(b"HTTP/1.1 400"));
}
