//! memcached's text protocol: finding command lines and parsing them (no I/O, no store).
//!
//! How to drive it: [`find_line`] over the buffered input says whether a whole command line
//! is there (and where the next command starts); [`parse`] turns the line into a
//! [`Request`] (or the exact error reply memcached gives). For storage commands the caller
//! then waits for `bytes + 2` more bytes (the value and its CRLF) and checks the CRLF
//! ([`BAD_DATA_CHUNK`] when it is missing). The parser follows memcached 1.6's tokenizer
//! and number parsing (`safe_strtol` and friends) so that malformed input gets the same
//! answer as from memcached; the one deliberate difference: keys with control characters
//! are refused (`CLIENT_ERROR bad command line format`), as the protocol says keys must
//! not contain them (memcached does not check).

use crate::numbers::{c_strtol, c_strtoul, c_strtoull};
use crate::store::KEY_MAX;

/// Longest command line that is not a `get`/`gets` (memcached: 2048 bytes, then it closes).
pub const LINE_MAX: usize = 2048;
/// Longest `get`/`gets` line (memcached has no bound; we close beyond this).
pub const MULTIGET_LINE_MAX: usize = 256 * 1024;

/// memcached's reply to an unknown or malformed command.
pub const ERROR: &str = "ERROR";
/// memcached's reply to a bad argument.
pub const BAD_FORMAT: &str = "CLIENT_ERROR bad command line format";
/// memcached's reply when a value is not followed by CRLF.
pub const BAD_DATA_CHUNK: &str = "CLIENT_ERROR bad data chunk";
/// memcached's reply when an item exceeds `-I`.
pub const TOO_LARGE: &str = "SERVER_ERROR object too large for cache";
/// memcached's reply when an item can never fit in memory.
pub const NO_MEMORY: &str = "SERVER_ERROR out of memory storing object";
/// memcached's reply to incr/decr on a non-number.
pub const NON_NUMERIC: &str = "CLIENT_ERROR cannot increment or decrement non-numeric value";
/// memcached's reply to a bad expiry time.
pub const BAD_EXPTIME: &str = "CLIENT_ERROR invalid exptime argument";
/// memcached's reply to a bad incr/decr amount.
pub const BAD_DELTA: &str = "CLIENT_ERROR invalid numeric delta argument";
/// memcached's reply to a malformed delete.
pub const BAD_DELETE: &str = "CLIENT_ERROR bad command line format.  Usage: delete <key> [noreply]";

/// Where the next command line is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Line {
    /// The line is `buf[..end]` (without CR LF); the next command starts at `next`.
    Complete {
        /// End of the command text.
        end: usize,
        /// Start of what follows the LF.
        next: usize,
    },
    /// No LF yet; wait for more bytes.
    Incomplete,
    /// The line is longer than allowed: memcached closes the connection.
    TooLong,
}

/// Finds the first command line of `buf`. The verdict depends only on the bytes, never on
/// how they were split into reads: a line is too long when its LF is (or would be) beyond
/// the limit, whether or not the LF has arrived.
pub fn find_line(buf: &[u8]) -> Line {
    let limit = if is_multiget(buf) {
        MULTIGET_LINE_MAX
    } else {
        LINE_MAX
    };
    let window = &buf[..buf.len().min(limit + 1)];
    match window.iter().position(|&b| b == b'\n') {
        Some(lf) => {
            let end = if lf > 1 && buf.get(lf - 1) == Some(&b'\r') {
                lf - 1
            } else {
                lf
            };
            Line::Complete { end, next: lf + 1 }
        }
        None if buf.len() > limit => Line::TooLong,
        None => Line::Incomplete,
    }
}

/// Whether the line starts (after at most 100 spaces) with `get ` or `gets `, the only
/// commands memcached lets grow beyond 2048 bytes.
fn is_multiget(buf: &[u8]) -> bool {
    let skip = buf.iter().take_while(|&&b| b == b' ').count();
    if skip > 100 {
        return false;
    }
    let rest = &buf[skip..];
    rest.starts_with(b"get ") || rest.starts_with(b"gets ")
}

/// The storage commands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreOp {
    /// `set`
    Set,
    /// `add`
    Add,
    /// `replace`
    Replace,
    /// `append`
    Append,
    /// `prepend`
    Prepend,
    /// `cas`
    Cas,
}

/// A parsed command line.
#[derive(Debug, Clone, PartialEq)]
pub enum Request<'a> {
    /// `get`/`gets`/`gat`/`gats`: `keys` is the rest of the line (space-separated keys,
    /// validated one by one while answering, as memcached does).
    Get {
        /// Return CAS values (`gets`, `gats`).
        cas: bool,
        /// `gat`/`gats`: the new expiry time.
        touch: Option<i32>,
        /// The keys, space separated.
        keys: &'a [u8],
    },
    /// A storage command; `bytes + 2` bytes (value, CRLF) follow the line.
    Store {
        /// Which command.
        op: StoreOp,
        /// The key (validated).
        key: &'a [u8],
        /// Client flags.
        flags: u32,
        /// Expiry time as sent.
        exptime: i32,
        /// Value length.
        bytes: usize,
        /// `cas`: the unique value to match.
        cas: u64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `delete <key> [0] [noreply]`
    Delete {
        /// The key.
        key: &'a [u8],
        /// No reply wanted.
        noreply: bool,
    },
    /// `incr`/`decr <key> <delta> [noreply]`
    Arith {
        /// incr (else decr).
        incr: bool,
        /// The key.
        key: &'a [u8],
        /// The amount.
        delta: u64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `touch <key> <exptime> [noreply]`
    Touch {
        /// The key.
        key: &'a [u8],
        /// New expiry time.
        exptime: i32,
        /// No reply wanted.
        noreply: bool,
    },
    /// `flush_all [delay] [noreply]`
    FlushAll {
        /// Delay (0: now).
        delay: i32,
        /// No reply wanted.
        noreply: bool,
    },
    /// `version`
    Version,
    /// `verbosity <level> [noreply]`
    Verbosity {
        /// The level.
        level: u32,
        /// No reply wanted.
        noreply: bool,
    },
    /// `stats [group [args]]`
    Stats {
        /// What follows `stats`: the group (`settings`, `items`, `slabs`, `reset`,
        /// `detail`, ...) and its arguments, space separated.
        args: &'a [u8],
    },
    /// `slabs automove LEVEL` (0, 1 or 2).
    SlabsAutomove {
        /// The level.
        level: u32,
        /// No reply wanted.
        noreply: bool,
    },
    /// `slabs automove ratio RATIO`.
    SlabsAutomoveRatio {
        /// The ratio.
        ratio: f64,
        /// No reply wanted.
        noreply: bool,
    },
    /// `slabs reassign SRC DST`.
    SlabsReassign,
    /// `quit`
    Quit,
    /// A meta command (`mg`, `ms`, `md`, `ma`, `me`, `mn`, or an unknown `m?`): the whole
    /// line, for `meta.rs`.
    Meta {
        /// The command line.
        line: &'a [u8],
    },
    /// An error reply (the command was not executed).
    Reply {
        /// The reply line, without CRLF.
        msg: &'static str,
        /// The client asked for no reply (memcached then stays silent).
        noreply: bool,
    },
    /// Close the connection without a reply (memcached does this for HTTP requests).
    Close,
}

/// memcached's tokenizer: up to 23 space-separated tokens (the rest of the line stays
/// unsplit); `n` is memcached's `ntokens` (tokens + 1 terminal).
pub(crate) struct Tokens<'a> {
    t: [&'a [u8]; 24],
    /// memcached's `ntokens`: the tokens plus the terminal one.
    pub(crate) n: usize,
}

impl<'a> Tokens<'a> {
    pub(crate) fn new(line: &'a [u8]) -> Self {
        let mut t: [&'a [u8]; 24] = [&[]; 24];
        let mut n = 0;
        for tok in line.split(|&b| b == b' ').filter(|s| !s.is_empty()) {
            if n == 23 {
                n += 1;
                break;
            }
            t[n] = tok;
            n += 1;
        }
        // `n` real tokens (capped at 23, 24 meaning "more"); memcached counts the terminal.
        let n = n.min(23) + 1;
        Tokens { t, n }
    }

    /// Token `i` (empty past the last one).
    pub(crate) fn get(&self, i: usize) -> &'a [u8] {
        self.t.get(i).copied().unwrap_or(&[])
    }

    /// memcached's `set_noreply_maybe`: the last token is `noreply`.
    fn noreply(&self) -> bool {
        self.n >= 2 && self.get(self.n - 2) == b"noreply"
    }
}

fn bad_key(key: &[u8]) -> bool {
    key.len() > KEY_MAX || key.iter().any(|&b| b < 0x20 || b == 0x7f)
}

/// The key and `noreply` of a `COMMAND KEY NUMBER [noreply]` line (`incr`, `decr`,
/// `touch`), or memcached's answer to a line of another shape or with a bad key.
fn key_and_number<'a>(tk: &Tokens<'a>) -> Result<(&'a [u8], bool), Request<'a>> {
    if tk.n != 4 && tk.n != 5 {
        return Err(Request::Reply {
            msg: ERROR,
            noreply: false,
        });
    }
    let noreply = tk.noreply();
    let key = tk.get(1);
    if bad_key(key) {
        return Err(Request::Reply {
            msg: BAD_FORMAT,
            noreply,
        });
    }
    Ok((key, noreply))
}

/// Whether `key` is acceptable in the text protocol (length, no control characters).
pub fn key_ok(key: &[u8]) -> bool {
    !key.is_empty() && !bad_key(key)
}

/// Parses one command line (without its CR LF).
pub fn parse(line: &[u8]) -> Request<'_> {
    // memcached works on C strings: a NUL ends the command.
    let line = match line.iter().position(|&b| b == 0) {
        Some(p) => &line[..p],
        None => line,
    };
    let tk = Tokens::new(line);
    let reply = |msg| Request::Reply {
        msg,
        noreply: false,
    };
    if tk.n < 2 || tk.get(0).len() < 2 {
        return reply(ERROR);
    }
    let cmd = tk.get(0);
    let n = tk.n;
    // Meta commands are all two characters long and start with `m`.
    if cmd.len() == 2 && cmd[0] == b'm' {
        return Request::Meta { line };
    }
    match cmd {
        b"get" | b"gets" | b"gat" | b"gats" | b"bget" => {
            if n < 3 {
                return reply(ERROR);
            }
            let cas = cmd == b"gets" || cmd == b"gats";
            let touch = cmd.starts_with(b"gat");
            let mut rest = after_tokens(line, 1);
            let touch = if touch {
                let Some(t) = c_strtol(tk.get(1)) else {
                    return reply(BAD_EXPTIME);
                };
                rest = after_tokens(line, 2);
                Some(t)
            } else {
                None
            };
            Request::Get {
                cas,
                touch,
                keys: rest,
            }
        }
        b"set" | b"add" | b"replace" | b"append" | b"prepend" | b"cas" => {
            let op = match cmd {
                b"set" => StoreOp::Set,
                b"add" => StoreOp::Add,
                b"replace" => StoreOp::Replace,
                b"append" => StoreOp::Append,
                b"prepend" => StoreOp::Prepend,
                _ => StoreOp::Cas,
            };
            let is_cas = op == StoreOp::Cas;
            let ok_n = if is_cas {
                n == 7 || n == 8
            } else {
                n == 6 || n == 7
            };
            if !ok_n {
                return reply(ERROR);
            }
            let noreply = tk.noreply();
            let err = |msg| Request::Reply { msg, noreply };
            let key = tk.get(1);
            if bad_key(key) {
                return err(BAD_FORMAT);
            }
            let (Some(flags), Some(exptime), Some(vlen)) = (
                c_strtoul(tk.get(2)),
                c_strtol(tk.get(3)),
                c_strtol(tk.get(4)),
            ) else {
                return err(BAD_FORMAT);
            };
            let cas = if is_cas {
                match c_strtoull(tk.get(5)) {
                    Some(c) => c,
                    None => return err(BAD_FORMAT),
                }
            } else {
                0
            };
            if !(0..=i32::MAX - 2).contains(&vlen) {
                return err(BAD_FORMAT);
            }
            Request::Store {
                op,
                key,
                flags,
                exptime,
                bytes: vlen as usize,
                cas,
                noreply,
            }
        }
        b"incr" | b"decr" => {
            let (key, noreply) = match key_and_number(&tk) {
                Ok(k) => k,
                Err(r) => return r,
            };
            match c_strtoull(tk.get(2)) {
                Some(delta) => Request::Arith {
                    incr: cmd == b"incr",
                    key,
                    delta,
                    noreply,
                },
                None => Request::Reply {
                    msg: BAD_DELTA,
                    noreply,
                },
            }
        }
        b"delete" => {
            if !(3..=5).contains(&n) {
                return reply(ERROR);
            }
            let mut noreply = false;
            if n > 3 {
                let hold_is_zero = tk.get(2) == b"0";
                noreply = tk.noreply();
                let valid =
                    (n == 4 && (hold_is_zero || noreply)) || (n == 5 && hold_is_zero && noreply);
                if !valid {
                    return Request::Reply {
                        msg: BAD_DELETE,
                        noreply,
                    };
                }
            }
            let key = tk.get(1);
            if bad_key(key) {
                return Request::Reply {
                    msg: BAD_FORMAT,
                    noreply,
                };
            }
            Request::Delete { key, noreply }
        }
        b"touch" => {
            let (key, noreply) = match key_and_number(&tk) {
                Ok(k) => k,
                Err(r) => return r,
            };
            match c_strtol(tk.get(2)) {
                Some(exptime) => Request::Touch {
                    key,
                    exptime,
                    noreply,
                },
                None => Request::Reply {
                    msg: BAD_EXPTIME,
                    noreply,
                },
            }
        }
        b"flush_all" => {
            if !(2..=4).contains(&n) {
                return reply(ERROR);
            }
            let noreply = tk.noreply();
            let mut delay = 0;
            if n != if noreply { 3 } else { 2 } {
                match c_strtol(tk.get(1)) {
                    Some(d) => delay = d,
                    None => {
                        return Request::Reply {
                            msg: BAD_EXPTIME,
                            noreply,
                        };
                    }
                }
            }
            Request::FlushAll { delay, noreply }
        }
        b"version" => Request::Version,
        b"quit" => Request::Quit,
        b"verbosity" => {
            if n != 3 && n != 4 {
                return reply(ERROR);
            }
            let noreply = tk.noreply();
            match c_strtoul(tk.get(1)) {
                Some(level) => Request::Verbosity { level, noreply },
                None => Request::Reply {
                    msg: BAD_FORMAT,
                    noreply,
                },
            }
        }
        b"slabs" => {
            if n == 5 && tk.get(1) == b"reassign" {
                return Request::SlabsReassign;
            }
            if n < 4 || tk.get(1) != b"automove" {
                return reply(ERROR);
            }
            let noreply = tk.noreply();
            let err = |msg| Request::Reply { msg, noreply };
            if tk.get(2) == b"ratio" {
                return match std::str::from_utf8(tk.get(3))
                    .ok()
                    .and_then(|t| t.parse().ok())
                {
                    Some(ratio) if n >= 5 => Request::SlabsAutomoveRatio { ratio, noreply },
                    _ => err(ERROR),
                };
            }
            match c_strtoul(tk.get(2)) {
                None => err(BAD_FORMAT),
                Some(level @ 0..=2) => Request::SlabsAutomove { level, noreply },
                Some(_) => err(ERROR),
            }
        }
        b"stats" => Request::Stats {
            args: after_tokens(line, 1),
        },
        _ => {
            if tk.get(n - 2).starts_with(b"HTTP/") {
                Request::Close
            } else {
                reply(ERROR)
            }
        }
    }
}

/// The rest of `line` after its first `k` tokens.
fn after_tokens(line: &[u8], k: usize) -> &[u8] {
    let mut i = 0;
    for _ in 0..k {
        while line.get(i) == Some(&b' ') {
            i += 1;
        }
        while line.get(i).is_some_and(|&b| b != b' ') {
            i += 1;
        }
    }
    &line[i.min(line.len())..]
}

/// The keys of a `get` line, in order.
pub fn keys(rest: &[u8]) -> impl Iterator<Item = &[u8]> {
    rest.split(|&b| b == b' ').filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_and_limits() {
        assert_eq!(find_line(b"get a\r\nx"), Line::Complete { end: 5, next: 7 });
        assert_eq!(find_line(b"get a\nx"), Line::Complete { end: 5, next: 6 });
        assert_eq!(find_line(b"\r\n"), Line::Complete { end: 1, next: 2 });
        assert_eq!(find_line(b"get a"), Line::Incomplete);
        assert_eq!(find_line(&[b'x'; 2049]), Line::TooLong);
        let mut long = b"get ".to_vec();
        long.extend(std::iter::repeat_n(b'k', 5000));
        assert_eq!(find_line(&long), Line::Incomplete);
    }

    #[test]
    fn parse_commands() {
        assert_eq!(
            parse(b"set k 1 2 3 noreply"),
            Request::Store {
                op: StoreOp::Set,
                key: b"k",
                flags: 1,
                exptime: 2,
                bytes: 3,
                cas: 0,
                noreply: true
            }
        );
        assert_eq!(
            parse(b"set k 0 0 2147483648"),
            Request::Reply {
                msg: BAD_FORMAT,
                noreply: false
            }
        );
        assert_eq!(
            parse(b"get"),
            Request::Reply {
                msg: ERROR,
                noreply: false
            }
        );
        assert_eq!(
            parse(b"gat 10 a b"),
            Request::Get {
                cas: false,
                touch: Some(10),
                keys: b" a b"
            }
        );
        assert_eq!(parse(b"GET / HTTP/1.1"), Request::Close);
        assert_eq!(
            parse(b"delete k 1"),
            Request::Reply {
                msg: BAD_DELETE,
                noreply: false
            }
        );
        let key = vec![b'k'; 251];
        let mut line = b"set ".to_vec();
        line.extend_from_slice(&key);
        line.extend_from_slice(b" 0 0 1");
        assert_eq!(
            parse(&line),
            Request::Reply {
                msg: BAD_FORMAT,
                noreply: false
            }
        );
    }
}
