//! The `stats` reports, as memcached 1.6 gives them, for both protocols.
//!
//! How to drive it: [`text()`] answers a text `stats [group] [args]` line, [`binary()`] a binary
//! `STAT` request (its key), both appending the whole answer to `out`. The groups:
//! the general statistics, `settings`, `items`, `slabs`, `sizes`, `conns` (text only, as in
//! memcached), `detail on|off|dump`, `cachedump CLASS LIMIT` (text only) and `reset`. The
//! server runs like memcached without its LRU maintainer, LRU crawler and slab mover
//! (`-o no_lru_maintainer,no_lru_crawler,no_slab_reassign`), and reports in that format:
//! one LRU per slab class, no hot/warm/cold figures.

use std::fmt::Write as _;
use std::sync::atomic::Ordering;

use crate::binary::{self, Status};
use crate::clock::RelTime;
use crate::numbers::c_strtoul;
use crate::slabs::MAX_CLASSES;
use crate::state::{Ctr, Kv, VERSION};

/// A report: names and values, in order.
pub type Report = Vec<(String, String)>;

fn push(r: &mut Report, k: impl Into<String>, v: impl ToString) {
    r.push((k.into(), v.to_string()));
}

/// The general statistics (`stats`), in memcached's order; those with no counterpart here
/// (response objects, hash table, logger) read 0.
pub fn general(kv: &Kv, now: RelTime) -> Report {
    let c = |x: Ctr| kv.counters.get(x);
    let st = kv.store.stats();
    let cls = &st.classes;
    let (user, sys) = rusage();
    let conns = kv.curr_connections.load(Ordering::Relaxed);
    let mut r = Report::new();
    push(&mut r, "pid", std::process::id());
    push(&mut r, "uptime", kv.uptime());
    push(&mut r, "time", kv.clock.unix(now));
    push(&mut r, "version", VERSION);
    push(&mut r, "libevent", "megatcp");
    push(&mut r, "pointer_size", usize::BITS);
    push(&mut r, "rusage_user", user);
    push(&mut r, "rusage_system", sys);
    push(&mut r, "max_connections", kv.settings.max_conns);
    push(&mut r, "curr_connections", conns);
    push(&mut r, "total_connections", c(Ctr::TotalConnections));
    push(&mut r, "rejected_connections", c(Ctr::RejectedConnections));
    push(&mut r, "connection_structures", conns);
    for name in [
        "response_obj_oom",
        "response_obj_count",
        "response_obj_bytes",
        "read_buf_count",
        "read_buf_bytes",
        "read_buf_bytes_free",
        "read_buf_oom",
        "reserved_fds",
    ] {
        push(&mut r, name, 0);
    }
    push(&mut r, "cmd_get", c(Ctr::CmdGet));
    push(&mut r, "cmd_set", cls.cmd_set);
    push(&mut r, "cmd_flush", c(Ctr::CmdFlush));
    push(&mut r, "cmd_touch", c(Ctr::CmdTouch));
    push(&mut r, "cmd_meta", c(Ctr::CmdMeta));
    push(&mut r, "get_hits", cls.get_hits);
    push(&mut r, "get_misses", c(Ctr::GetMisses));
    push(&mut r, "get_expired", st.get_expired);
    push(&mut r, "get_flushed", st.get_flushed);
    push(&mut r, "delete_misses", c(Ctr::DeleteMisses));
    push(&mut r, "delete_hits", cls.delete_hits);
    push(&mut r, "incr_misses", c(Ctr::IncrMisses));
    push(&mut r, "incr_hits", cls.incr_hits);
    push(&mut r, "decr_misses", c(Ctr::DecrMisses));
    push(&mut r, "decr_hits", cls.decr_hits);
    push(&mut r, "cas_misses", c(Ctr::CasMisses));
    push(&mut r, "cas_hits", cls.cas_hits);
    push(&mut r, "cas_badval", cls.cas_badval);
    push(&mut r, "touch_hits", cls.touch_hits);
    push(&mut r, "touch_misses", c(Ctr::TouchMisses));
    push(&mut r, "store_too_large", c(Ctr::StoreTooLarge));
    push(&mut r, "store_no_memory", c(Ctr::StoreNoMemory));
    push(&mut r, "auth_cmds", 0);
    push(&mut r, "auth_errors", 0);
    push(&mut r, "bytes_read", c(Ctr::BytesRead));
    push(&mut r, "bytes_written", c(Ctr::BytesWritten));
    push(&mut r, "limit_maxbytes", st.limit_maxbytes);
    push(&mut r, "accepting_conns", 1);
    push(&mut r, "listen_disabled_num", 0);
    push(&mut r, "time_in_listen_disabled_us", 0);
    push(&mut r, "threads", kv.settings.threads);
    for name in [
        "conn_yields",
        "hash_power_level",
        "hash_bytes",
        "hash_is_expanding",
        "malloc_fails",
        "log_worker_dropped",
        "log_worker_written",
        "log_watcher_skipped",
        "log_watcher_sent",
        "log_watchers",
        "unexpected_napi_ids",
        "round_robin_fallback",
    ] {
        push(&mut r, name, 0);
    }
    push(&mut r, "bytes", st.bytes);
    push(&mut r, "curr_items", st.curr_items);
    push(&mut r, "total_items", st.total_items);
    push(&mut r, "slab_global_page_pool", 0);
    push(&mut r, "expired_unfetched", cls.expired_unfetched);
    push(&mut r, "evicted_unfetched", cls.evicted_unfetched);
    push(&mut r, "evictions", cls.evicted);
    push(&mut r, "reclaimed", cls.reclaimed);
    push(&mut r, "crawler_reclaimed", 0);
    push(&mut r, "crawler_items_checked", 0);
    push(&mut r, "lrutail_reflocked", 0);
    r
}

/// `stats settings`, in memcached's names and order (those of its optional parts, TLS and
/// external storage, left out).
pub fn settings(kv: &Kv) -> Report {
    let s = &kv.settings;
    let classes = kv.store.slabs().classes();
    let mut r = Report::new();
    push(&mut r, "maxbytes", s.max_bytes);
    push(&mut r, "maxconns", s.max_conns);
    push(&mut r, "tcpport", s.port);
    push(&mut r, "udpport", 0);
    push(&mut r, "inter", "NULL");
    push(&mut r, "verbosity", kv.verbosity.load(Ordering::Relaxed));
    push(&mut r, "oldest", 0);
    push(&mut r, "evictions", "on");
    push(&mut r, "domain_socket", "NULL");
    push(&mut r, "umask", 700);
    push(&mut r, "shutdown_command", "no");
    push(&mut r, "growth_factor", format!("{:.2}", s.factor));
    push(&mut r, "chunk_size", s.min_chunk);
    push(&mut r, "num_threads", s.threads);
    push(&mut r, "num_threads_per_udp", s.threads);
    push(&mut r, "stat_key_prefix", ":");
    push(
        &mut r,
        "detail_enabled",
        if kv.detail_on() { "yes" } else { "no" },
    );
    push(&mut r, "reqs_per_event", 20);
    push(&mut r, "cas_enabled", "yes");
    push(&mut r, "tcp_backlog", s.backlog);
    push(&mut r, "binding_protocol", "auto-negotiate");
    push(&mut r, "auth_enabled_sasl", "no");
    push(&mut r, "auth_enabled_ascii", "no");
    push(&mut r, "item_size_max", s.item_max);
    push(&mut r, "maxconns_fast", "yes");
    push(&mut r, "hashpower_init", 0);
    push(&mut r, "slab_reassign", "no");
    push(
        &mut r,
        "slab_automove",
        kv.slab_automove.load(Ordering::Relaxed),
    );
    let ratio = f64::from_bits(kv.slab_automove_ratio.load(Ordering::Relaxed));
    push(&mut r, "slab_automove_ratio", format!("{ratio:.2}"));
    push(&mut r, "slab_automove_window", 30);
    push(&mut r, "slab_chunk_max", classes.chunk_max());
    // Fixed here: no option changes them.
    for (name, value) in [
        ("lru_crawler", "no"),
        ("lru_crawler_sleep", "100"),
        ("lru_crawler_tocrawl", "0"),
        ("tail_repair_time", "0"),
        ("flush_enabled", "yes"),
        ("dump_enabled", "yes"),
        ("hash_algorithm", "foldhash"),
        ("lru_maintainer_thread", "no"),
        ("lru_segmented", "no"),
        ("hot_lru_pct", "20"),
        ("warm_lru_pct", "40"),
        ("hot_max_factor", "0.20"),
        ("warm_max_factor", "2.00"),
        ("temp_lru", "no"),
        ("temporary_ttl", "61"),
        ("idle_timeout", "0"),
        ("watcher_logbuf_size", "0"),
        ("worker_logbuf_size", "0"),
        ("read_buf_mem_limit", "0"),
        ("track_sizes", "no"),
        ("inline_ascii_response", "no"),
        ("num_napi_ids", "(null)"),
        ("memory_file", "(null)"),
    ] {
        push(&mut r, name, value);
    }
    push(&mut r, "store_stripes", kv.store.stripes());
    r
}

/// `stats items`: per slab class holding items.
pub fn items(kv: &Kv, now: RelTime) -> Report {
    let mut r = Report::new();
    for (n, c) in kv.store.class_stats(now).iter().enumerate() {
        if c.number == 0 {
            continue;
        }
        let mut p = |k: &str, v: u64| push(&mut r, format!("items:{n}:{k}"), v);
        p("number", c.number);
        p("age", c.age);
        p("mem_requested", c.mem_requested);
        p("evicted", c.evicted);
        p("evicted_nonzero", c.evicted_nonzero);
        p("evicted_time", c.evicted_time);
        p("outofmemory", c.outofmemory);
        p("tailrepairs", 0);
        p("reclaimed", c.reclaimed);
        p("expired_unfetched", c.expired_unfetched);
        p("evicted_unfetched", c.evicted_unfetched);
        p("crawler_reclaimed", 0);
        p("crawler_items_checked", 0);
        p("lrutail_reflocked", 0);
    }
    r
}

/// `stats slabs`: per slab class holding pages, then the totals.
pub fn slabs(kv: &Kv, now: RelTime) -> Report {
    let slabs = kv.store.slabs();
    let classes = slabs.classes();
    let counts = kv.store.class_stats(now);
    let mut r = Report::new();
    let mut active = 0;
    for n in 1..=classes.largest() {
        let pages = slabs.class_pages(n);
        if pages.pages == 0 {
            continue;
        }
        active += 1;
        let per = classes.per_page(n);
        let total = pages.pages * per;
        let c = counts.get(n).copied().unwrap_or_default();
        let mut p = |k: &str, v: u64| push(&mut r, format!("{n}:{k}"), v);
        p("chunk_size", u64::from(classes.chunk_size(n)));
        p("chunks_per_page", u64::from(per));
        p("total_pages", u64::from(pages.pages));
        p("total_chunks", u64::from(total));
        p("used_chunks", u64::from(total.saturating_sub(pages.free)));
        p("free_chunks", u64::from(pages.free));
        p("free_chunks_end", 0);
        p("get_hits", c.get_hits);
        p("cmd_set", c.cmd_set);
        p("delete_hits", c.delete_hits);
        p("incr_hits", c.incr_hits);
        p("decr_hits", c.decr_hits);
        p("cas_hits", c.cas_hits);
        p("cas_badval", c.cas_badval);
        p("touch_hits", c.touch_hits);
    }
    push(&mut r, "active_slabs", active);
    push(&mut r, "total_malloced", slabs.malloced());
    r
}

/// `stats sizes`: the size histogram is not kept (memcached's default).
pub fn sizes() -> Report {
    vec![("sizes_status".into(), "disabled".into())]
}

/// `stats conns`: the listening port, then every connection (`me`: the asking one, which
/// is busy parsing; the others wait for input).
pub fn conns(kv: &Kv, me: u64, now: RelTime) -> Report {
    let listen = format!("tcp:0.0.0.0:{}", kv.settings.port);
    let mut r = Report::new();
    push(&mut r, "0:addr", &listen);
    push(&mut r, "0:state", "conn_listening");
    push(&mut r, "0:secs_since_last_cmd", 0);
    for c in kv.conns.list() {
        let id = c.id;
        push(&mut r, format!("{id}:addr"), format!("tcp:{}", c.peer));
        push(&mut r, format!("{id}:listen_addr"), &listen);
        let state = if id == me {
            "conn_parse_cmd"
        } else {
            "conn_waiting"
        };
        push(&mut r, format!("{id}:state"), state);
        push(
            &mut r,
            format!("{id}:secs_since_last_cmd"),
            now.saturating_sub(c.last_cmd),
        );
    }
    r
}

/// Appends a report as text (`STAT name value` lines, then `END`).
pub fn write_text(out: &mut Vec<u8>, r: &Report) {
    for (k, v) in r {
        out.extend_from_slice(b"STAT ");
        out.extend_from_slice(k.as_bytes());
        out.push(b' ');
        out.extend_from_slice(v.as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out.extend_from_slice(b"END\r\n");
}

/// Appends a report as binary packets (one per statistic, then an empty one).
fn write_binary(out: &mut Vec<u8>, opcode: u8, opaque: u32, r: &Report) {
    for (k, v) in r {
        binary::write_response(
            out,
            opcode,
            Status::Ok,
            opaque,
            0,
            &[],
            k.as_bytes(),
            v.as_bytes(),
        );
    }
    binary::write_response(out, opcode, Status::Ok, opaque, 0, &[], &[], &[]);
}

fn line(out: &mut Vec<u8>, s: &str) {
    out.extend_from_slice(s.as_bytes());
    out.extend_from_slice(b"\r\n");
}

/// Answers a text `stats` line: `args` are its tokens after `stats` (memcached reads at
/// most the first three); `me` is the asking connection's number.
pub fn text(kv: &Kv, now: RelTime, args: &[&[u8]], me: u64, out: &mut Vec<u8>) {
    let Some(&group) = args.first() else {
        write_text(out, &general(kv, now));
        return;
    };
    match group {
        b"reset" => {
            kv.reset_stats();
            line(out, "RESET");
        }
        b"detail" => match args.get(1).copied() {
            Some(b"on") => {
                kv.set_detail(true);
                line(out, "OK");
            }
            Some(b"off") => {
                kv.set_detail(false);
                line(out, "OK");
            }
            Some(b"dump") => kv.prefixes().dump(out),
            _ => line(out, "CLIENT_ERROR usage: stats detail on|off|dump"),
        },
        b"settings" => write_text(out, &settings(kv)),
        b"cachedump" => cachedump(kv, args, out),
        b"conns" => write_text(out, &conns(kv, me, now)),
        b"items" => write_text(out, &items(kv, now)),
        b"slabs" => write_text(out, &slabs(kv, now)),
        b"sizes" => write_text(out, &sizes()),
        b"megatcp" => write_text(out, &megatcp(kv)),
        _ => line(out, "ERROR"),
    }
}

/// `stats megatcp` (ours): the backend, and per core the stack's, engine's and NIC queue's
/// counters as `coreN:name` (drops by reason as `coreN:drop:reason`), with its busy
/// fraction; kernel backends have no stack counters (`coreN:bypass 0`).
pub fn megatcp(kv: &Kv) -> Report {
    let mut r = Report::new();
    let Some(node) = kv.node.get() else {
        push(&mut r, "backend", "none");
        return r;
    };
    push(&mut r, "backend", &node.backend);
    push(&mut r, "cores", node.monitors.len());
    let reasons = megatcp_launch::monitor::drop_reasons();
    for (i, m) in node.monitors.iter().enumerate() {
        push(&mut r, format!("core{i}:bypass"), u8::from(m.is_bypass()));
        if !m.is_bypass() {
            continue;
        }
        let s = m.snapshot();
        for &f in megatcp_launch::monitor::Field::ALL {
            push(&mut r, format!("core{i}:{}", f.name()), s.get(f));
        }
        push(
            &mut r,
            format!("core{i}:busy_fraction"),
            format!("{:.4}", s.busy_fraction(None).unwrap_or(0.0)),
        );
        for (reason, v) in reasons.iter().zip(s.drops) {
            push(&mut r, format!("core{i}:drop:{reason}"), v);
        }
    }
    r
}

/// `stats cachedump CLASS LIMIT`: up to LIMIT (0: all) items of a class.
fn cachedump(kv: &Kv, args: &[&[u8]], out: &mut Vec<u8>) {
    if args.len() < 3 {
        line(out, "CLIENT_ERROR bad command line");
        return;
    }
    let (Some(id), Some(limit)) = (c_strtoul(args[1]), c_strtoul(args[2])) else {
        line(out, "CLIENT_ERROR bad command line format");
        return;
    };
    if id as usize >= MAX_CLASSES {
        line(out, "CLIENT_ERROR Illegal slab id");
        return;
    }
    // memcached bounds the answer at 2 MB.
    const DUMP_MAX: usize = 2 * 1024 * 1024;
    let start = out.len();
    let epoch = kv.clock.epoch;
    kv.store.dump(id as u8, limit as usize, |it| {
        let mut l = String::with_capacity(it.key.len() + 32);
        l.push_str("ITEM ");
        l.push_str(&String::from_utf8_lossy(it.key));
        let exp = if it.exptime == 0 {
            0
        } else {
            u64::from(it.exptime) + epoch
        };
        let _ = write!(l, " [{} b; {} s]\r\n", it.value.len(), exp);
        if out.len() - start + l.len() + 6 > DUMP_MAX {
            return false;
        }
        out.extend_from_slice(l.as_bytes());
        true
    });
    out.extend_from_slice(b"END\r\n");
}

/// Answers a binary `STAT` request whose key is `key`, as memcached does: the key names
/// the group by its first bytes (`reset`, `settings`, `detail on|off|dump`) or exactly
/// (`items`, `slabs`, `sizes`); anything else is "not found".
pub fn binary(kv: &Kv, now: RelTime, key: &[u8], opcode: u8, opaque: u32, out: &mut Vec<u8>) {
    let report = if key.is_empty() {
        general(kv, now)
    } else if key.starts_with(b"reset") {
        kv.reset_stats();
        Report::new()
    } else if key.starts_with(b"settings") {
        settings(kv)
    } else if let Some(sub) = key.strip_prefix(b"detail") {
        if sub.starts_with(b" dump") {
            let mut dump = Vec::new();
            kv.prefixes().dump(&mut dump);
            binary::write_response(out, opcode, Status::Ok, opaque, 0, &[], b"detailed", &dump);
            Report::new()
        } else if sub.starts_with(b" on") {
            kv.set_detail(true);
            Report::new()
        } else if sub.starts_with(b" off") {
            kv.set_detail(false);
            Report::new()
        } else {
            binary::write_error(out, opcode, Status::KeyNotFound, opaque);
            return;
        }
    } else {
        match key {
            b"items" => items(kv, now),
            b"slabs" => slabs(kv, now),
            b"sizes" => sizes(),
            _ => {
                binary::write_error(out, opcode, Status::KeyNotFound, opaque);
                return;
            }
        }
    };
    write_binary(out, opcode, opaque, &report);
}

/// CPU time of the process (user, system) from /proc, in memcached's format.
fn rusage() -> (String, String) {
    let fields = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // Fields after the command name (which is in parentheses and may hold spaces).
    let after = fields.rsplit_once(')').map_or("", |(_, r)| r);
    let mut it = after.split_whitespace().skip(11);
    let ticks = |s: Option<&str>| s.and_then(|t| t.parse::<u64>().ok()).unwrap_or(0);
    let (u, s) = (ticks(it.next()), ticks(it.next()));
    // Linux reports in clock ticks of 1/100 s.
    let fmt = |t: u64| format!("{}.{:06}", t / 100, (t % 100) * 10_000);
    (fmt(u), fmt(s))
}
