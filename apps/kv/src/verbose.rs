//! memcached's `-vv` lines on standard error: a connection's arrival and end, the protocol
//! it speaks, each text command and what was answered (`<FD cmd`, `>FD reply`), as
//! memcached 1.6 prints them (connections are numbered as `stats conns` numbers them, not
//! by file descriptor). At `-v` memcached prints only errors and warnings, so do we.

use std::io::Write;
use std::sync::atomic::Ordering;

use crate::state::Kv;

/// Whether `-vv` lines are printed (the `verbosity` command changes it at run time).
pub fn chatty(kv: &Kv) -> bool {
    kv.verbosity.load(Ordering::Relaxed) >= 2
}

fn emit(lines: &[String]) {
    let mut e = std::io::stderr().lock();
    for l in lines {
        let _ = writeln!(e, "{l}");
    }
}

/// A connection arrived.
pub fn accepted(id: u64) {
    emit(&[format!("<{id} new auto-negotiating client connection")]);
}

/// The protocol a connection speaks, chosen by its first byte.
pub fn protocol(id: u64, binary: bool) {
    let p = if binary { "binary" } else { "ascii" };
    emit(&[format!("{id}: Client using the {p} protocol")]);
}

/// A connection ended.
pub fn closed(id: u64) {
    emit(&[format!("<{id} connection closed.")]);
}

/// A listener is up.
pub fn listening(id: usize) {
    emit(&[format!("<{id} server listening (auto-negotiate)")]);
}

/// The slab classes, as memcached prints them at start.
pub fn slab_classes(kv: &Kv) {
    let c = kv.store.slabs().classes();
    let lines: Vec<String> = (1..=c.largest())
        .map(|i| {
            format!(
                "slab class {i:3}: chunk size {:9} perslab {:7}",
                c.chunk_size(i),
                c.per_page(i)
            )
        })
        .collect();
    emit(&lines);
}

/// One text command (`input`: what it consumed, data block included) and its answer.
pub fn command(id: u64, input: &[u8], answer: &[u8]) {
    let line = first_line(input);
    if line.is_empty() {
        return;
    }
    let mut lines = vec![format!("<{id} {}", String::from_utf8_lossy(line))];
    let mut rest = answer;
    while !rest.is_empty() {
        let l = first_line(rest);
        let mut used = (l.len() + 2).min(rest.len());
        if let Some(value) = l.strip_prefix(b"VALUE ") {
            let mut f = value.split(|&b| b == b' ');
            let key = f.next().unwrap_or_default();
            let len = f
                .nth(1)
                .and_then(|n| std::str::from_utf8(n).ok()?.parse::<usize>().ok())
                .unwrap_or(0);
            lines.push(format!(
                ">{id} sending key {}",
                String::from_utf8_lossy(key)
            ));
            used = (used + len + 2).min(rest.len());
        } else {
            lines.push(format!(">{id} {}", String::from_utf8_lossy(l)));
        }
        rest = &rest[used..];
    }
    emit(&lines);
}

fn first_line(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == b'\n').unwrap_or(b.len());
    let l = &b[..end];
    l.strip_suffix(b"\r").unwrap_or(l)
}
