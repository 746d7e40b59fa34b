//! The parser path under libFuzzer: arbitrary bytes, split into reads at positions taken
//! from the input itself, through a session with small limits. A panic, or a session that
//! holds more than one head plus one read, is a finding.
#![no_main]

use core::net::SocketAddrV4;

use libfuzzer_sys::fuzz_target;
use megatcp_http::files::Files;
use megatcp_http::session::{Counters, Env, Flow, Limits, Session};

fuzz_target!(|data: &[u8]| {
    let Some((&split, input)) = data.split_first() else {
        return;
    };
    let mut files = Files::empty();
    files.add_hello(32, 784_111_777);
    let limits = Limits {
        max_header_bytes: 1024,
        max_headers: 16,
        max_uri: 512,
        max_body: 4096,
        output_high: 4096,
        ..Limits::default()
    };
    let date = megatcp_http::date::format(1_000_000_000);
    let mut counters = Counters::default();
    let mut s = Session::new(0);
    let step = usize::from(split).max(1);
    for chunk in input.chunks(step) {
        let mut data = chunk;
        loop {
            let mut env = Env {
                files: &files,
                limits: &limits,
                date: &date,
                now_ms: 0,
                counters: &mut counters,
                log: None,
                peer: SocketAddrV4::new([10, 0, 0, 1].into(), 1),
            };
            let mut out = Vec::new();
            let flow = s.feed(data, &mut env, &mut out);
            assert!(s.buffered() <= limits.max_header_bytes + step);
            if flow == Flow::Close {
                return;
            }
            if !s.has_backlog() {
                break;
            }
            data = &[];
        }
    }
    let _ = megatcp_http::date::parse(input);
});
