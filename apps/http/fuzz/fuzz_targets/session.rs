//! The parser path under libFuzzer: arbitrary bytes, split into reads at positions taken
//! from the input itself, through a session with small limits. A panic, or a session that
//! holds more than one head plus one read, is a finding.
#![no_main]

use libfuzzer_sys::fuzz_target;
use megatcp_http::files::Files;
use megatcp_http::harness::Harness;
use megatcp_http::session::{Flow, Limits};

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
    let mut h = Harness::new(files, limits);
    let step = usize::from(split).max(1);
    for chunk in input.chunks(step) {
        let (_, flow) = h.feed(chunk);
        assert!(h.session().buffered() <= 1024 + step);
        if flow == Flow::Close {
            break;
        }
    }
    let _ = megatcp_http::date::parse(input);
});
