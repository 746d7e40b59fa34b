//! One HTTP connection, sans-I/O: bytes in (with the time), responses out, and whether to
//! close. No socket, no clock: the server loop (`server.rs`) drives it, and the tests
//! (`tests/fuzz.rs`) feed it arbitrary splits.
//!
//! # How to drive it
//!
//! * [`Session::feed`] every received chunk with an [`Env`] (files, limits, the current
//!   `Date`, the time in milliseconds, counters); responses are appended to `out` in
//!   request order (pipelining). [`Flow::Close`] means: send `out`, then close.
//! * When `out` reaches [`Limits::output_high`] the session stops answering and keeps the
//!   rest of its input ([`Session::has_backlog`]); issue no new read, and call `feed` with no
//!   data once the writes have drained.
//! * [`Session::deadline`]: when the connection is to be closed for slowness: the header
//!   timeout runs from a request's first byte until its end (head and body), the idle
//!   timeout from the last byte received while no request is in progress.
//!
//! Memory per connection is bounded: the unanswered input is at most one request head
//! ([`Limits::max_header_bytes`]) plus one read; bodies are discarded as they arrive.

use core::mem::MaybeUninit;
use core::net::SocketAddrV4;

use crate::chunked::{ChunkError, Chunked};
use crate::date::DATE_LEN;
use crate::files::{Files, Lookup};
use crate::request::{self, Framing, HeadLimits, Method, RequestHead};
use crate::response::{self, Head, Status};

/// Most header fields the parser can hold (the configurable limit is clamped to it).
pub const MAX_HEADERS: usize = 128;

/// The bounds of a connection.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Largest request head (request line and header fields): 431 beyond, or 414 when the
    /// request line alone is longer.
    pub max_header_bytes: usize,
    /// Most header fields: 431 beyond.
    pub max_headers: usize,
    /// Longest request target: 414 beyond.
    pub max_uri: usize,
    /// Largest request body (read and discarded): 413 beyond.
    pub max_body: u64,
    /// A request must arrive whole within this many milliseconds of its first byte.
    pub header_timeout_ms: u64,
    /// An idle keep-alive connection is closed after this many milliseconds.
    pub idle_timeout_ms: u64,
    /// Requests per connection, then `Connection: close` (0: no limit).
    pub max_requests: u64,
    /// Stop answering while this many response bytes wait in `out`.
    pub output_high: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_header_bytes: 16 * 1024,
            max_headers: 64,
            max_uri: 8 * 1024,
            max_body: 1024 * 1024,
            header_timeout_ms: 10_000,
            idle_timeout_ms: 60_000,
            max_requests: 0,
            output_high: 1024 * 1024,
        }
    }
}

/// Counters of a core's sessions.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Serialize)]
pub struct Counters {
    /// Requests answered (interim `100 Continue` not counted).
    pub requests: u64,
    /// Responses by class: 2xx, 3xx, 4xx, 5xx.
    pub status_2xx: u64,
    /// 3xx.
    pub status_3xx: u64,
    /// 4xx.
    pub status_4xx: u64,
    /// 5xx.
    pub status_5xx: u64,
    /// Bytes of responses (heads and bodies).
    pub bytes_out: u64,
    /// Connections closed because of the request (errors, `Connection: close`, HTTP/1.0).
    pub protocol_closes: u64,
}

impl Counters {
    fn count(&mut self, status: Status, bytes: usize) {
        self.requests += 1;
        self.bytes_out += bytes as u64;
        match status.code() / 100 {
            2 => self.status_2xx += 1,
            3 => self.status_3xx += 1,
            4 => self.status_4xx += 1,
            _ => self.status_5xx += 1,
        }
    }

    /// Adds another core's counters.
    pub fn add(&mut self, o: &Counters) {
        self.requests += o.requests;
        self.status_2xx += o.status_2xx;
        self.status_3xx += o.status_3xx;
        self.status_4xx += o.status_4xx;
        self.status_5xx += o.status_5xx;
        self.bytes_out += o.bytes_out;
        self.protocol_closes += o.protocol_closes;
    }
}

/// What a session needs from its server for one call.
pub struct Env<'a> {
    /// The files served.
    pub files: &'a Files,
    /// Bounds.
    pub limits: &'a Limits,
    /// The current date (IMF-fixdate), for the `Date` header.
    pub date: &'a [u8; DATE_LEN],
    /// The time, in milliseconds from any fixed origin.
    pub now_ms: u64,
    /// Counters to add to.
    pub counters: &'a mut Counters,
    /// Access log lines are appended here when logging is on.
    pub log: Option<&'a mut Vec<u8>>,
    /// The client (for the access log).
    pub peer: SocketAddrV4,
}

/// What to do with the connection after a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Flow {
    /// Keep reading.
    Continue,
    /// Send what was produced, then close.
    Close,
}

enum Body {
    Length(u64),
    Chunked(Chunked),
}

enum State {
    /// Waiting for (more of) a request head.
    Head,
    /// Discarding the body of `head`, answered once it has arrived.
    Body { body: Body, head: RequestHead },
    /// Closing: input is ignored.
    Closed,
}

/// One connection's protocol state. See the module docs.
pub struct Session {
    /// Input received and not yet consumed (a partial head, or the rest of a backlog).
    buf: Vec<u8>,
    state: State,
    /// Requests answered on this connection.
    requests: u64,
    /// When the request in progress started (its first byte), if one is.
    request_start: Option<u64>,
    /// When the last byte arrived (or the session started).
    last_active: u64,
    /// Answering stopped at the output bound with input left.
    backlog: bool,
    /// Closing with input unread or after an error: see [`Session::close_needs_linger`].
    linger: bool,
}

impl Session {
    /// A new connection at time `now_ms`.
    pub fn new(now_ms: u64) -> Self {
        Self {
            buf: Vec::new(),
            state: State::Head,
            requests: 0,
            request_start: None,
            last_active: now_ms,
            backlog: false,
            linger: false,
        }
    }

    /// After [`Flow::Close`]: whether the client may still be sending (an error answered
    /// before the whole request was read, or bytes left after the last answer), so that its
    /// remaining input should be read and discarded before closing (a kernel socket closed
    /// with unread input sends a RST that can destroy the response). A plain
    /// `Connection: close` needs no lingering.
    pub fn close_needs_linger(&self) -> bool {
        self.linger
    }

    /// Whether input is waiting because the output bound was reached.
    pub fn has_backlog(&self) -> bool {
        self.backlog
    }

    /// Bytes of input held (bounded by one request head plus one read).
    pub fn buffered(&self) -> usize {
        self.buf.len()
    }

    /// Requests answered so far.
    pub fn requests(&self) -> u64 {
        self.requests
    }

    /// When this connection is to be closed for slowness (milliseconds), if at all.
    pub fn deadline(&self, limits: &Limits) -> Option<u64> {
        if self.backlog || matches!(self.state, State::Closed) {
            return None;
        }
        Some(match self.request_start {
            Some(t) => t.saturating_add(limits.header_timeout_ms),
            None => self.last_active.saturating_add(limits.idle_timeout_ms),
        })
    }

    /// Handles `data` received (may be empty: resume after a backlog); appends responses to
    /// `out`.
    pub fn feed(&mut self, data: &[u8], env: &mut Env<'_>, out: &mut Vec<u8>) -> Flow {
        if matches!(self.state, State::Closed) {
            return Flow::Close;
        }
        if !data.is_empty() {
            self.last_active = env.now_ms;
            if self.buf.is_empty() && matches!(self.state, State::Head) {
                self.request_start.get_or_insert(env.now_ms);
            }
        }
        self.backlog = false;
        let flow = if self.buf.is_empty() {
            // The common case: parse straight from the received bytes, keep only the rest.
            let (used, flow) = self.process(data, env, out);
            self.buf.extend_from_slice(&data[used..]);
            flow
        } else {
            self.buf.extend_from_slice(data);
            let buf = std::mem::take(&mut self.buf);
            let (used, flow) = self.process(&buf, env, out);
            self.buf = buf;
            self.buf.drain(..used);
            flow
        };
        if flow == Flow::Close {
            // Input left unanswered: the client may still be sending.
            self.linger |= !self.buf.is_empty();
            self.state = State::Closed;
            self.buf = Vec::new();
            self.backlog = false;
            env.counters.protocol_closes += 1;
        } else if self.buf.is_empty() && matches!(self.state, State::Head) {
            self.request_start = None;
        } else if self.request_start.is_none() {
            self.request_start = Some(env.now_ms);
        }
        flow
    }

    /// Answers every complete request at the front of `input`; returns the bytes consumed.
    fn process(&mut self, input: &[u8], env: &mut Env<'_>, out: &mut Vec<u8>) -> (usize, Flow) {
        let mut off = 0;
        loop {
            match &mut self.state {
                State::Closed => return (off, Flow::Close),
                State::Head => {
                    let rest = &input[off..];
                    if rest.is_empty() {
                        break;
                    }
                    if out.len() >= env.limits.output_high {
                        self.backlog = true;
                        break;
                    }
                    match self.head(rest, env, out) {
                        Parsed::Partial => break,
                        Parsed::Done(n, flow) => {
                            off += n;
                            if flow == Flow::Close {
                                return (off, flow);
                            }
                            // A new request starts with the next byte.
                            self.request_start = Some(env.now_ms);
                        }
                    }
                }
                State::Body { body, .. } => {
                    let rest = &input[off..];
                    let done = match body {
                        Body::Length(left) => {
                            let take = (*left).min(rest.len() as u64);
                            off += take as usize;
                            *left -= take;
                            *left == 0
                        }
                        Body::Chunked(c) => match c.feed(rest) {
                            Ok(n) => {
                                off += n;
                                c.is_done()
                            }
                            Err(e) => {
                                let status = match e {
                                    ChunkError::TooLarge => Status::ContentTooLarge,
                                    ChunkError::Malformed => Status::BadRequest,
                                };
                                return (
                                    off,
                                    self.simple(status, false, false, None, None, env, out),
                                );
                            }
                        },
                    };
                    if !done {
                        break;
                    }
                    let State::Body { head, .. } = std::mem::replace(&mut self.state, State::Head)
                    else {
                        break;
                    };
                    if self.answer(&head, env, out) == Flow::Close {
                        return (off, Flow::Close);
                    }
                    self.request_start = Some(env.now_ms);
                }
            }
        }
        (off, Flow::Continue)
    }

    /// Parses one head at the front of `rest` and answers it (or starts reading its body).
    fn head(&mut self, rest: &[u8], env: &mut Env<'_>, out: &mut Vec<u8>) -> Parsed {
        let limits = env.limits;
        let mut headers = [const { MaybeUninit::<httparse::Header<'_>>::uninit() }; MAX_HEADERS];
        let mut req = httparse::Request::new(&mut []);
        let n = limits.max_headers.clamp(1, MAX_HEADERS);
        let too_large = |rest: &[u8]| {
            // Decided on the first max_header_bytes + 1 bytes only, so that how the input
            // was split never changes the answer.
            let window = &rest[..rest.len().min(limits.max_header_bytes + 1)];
            if window.contains(&b'\n') {
                Status::HeaderFieldsTooLarge
            } else {
                Status::UriTooLong
            }
        };
        let close = |s: &mut Self, status, env: &mut Env<'_>, out: &mut Vec<u8>| {
            Parsed::Done(
                rest.len(),
                s.simple(status, false, false, None, None, env, out),
            )
        };
        // Words of the request line may be separated by several spaces (RFC 9112 section 3
        // allows parsing on whitespace boundaries; nginx does).
        let mut config = httparse::ParserConfig::default();
        config.allow_multiple_spaces_in_request_line_delimiters(true);
        match config.parse_request_with_uninit_headers(&mut req, rest, &mut headers[..n]) {
            Ok(httparse::Status::Partial) => {
                if rest.len() > limits.max_header_bytes {
                    return close(self, too_large(rest), env, out);
                }
                Parsed::Partial
            }
            Ok(httparse::Status::Complete(used)) => {
                if used > limits.max_header_bytes {
                    return close(self, too_large(rest), env, out);
                }
                let head_limits = HeadLimits {
                    max_uri: limits.max_uri,
                    max_body: limits.max_body,
                };
                let head = match request::interpret(&req, head_limits) {
                    Ok(h) => h,
                    Err(status) => {
                        let only_head = req.method == Some("HEAD");
                        let flow = self.simple(status, false, only_head, None, None, env, out);
                        return Parsed::Done(rest.len(), flow);
                    }
                };
                let body = match head.framing {
                    Framing::None => return Parsed::Done(used, self.answer(&head, env, out)),
                    Framing::Length(n) => Body::Length(n),
                    Framing::Chunked => {
                        Body::Chunked(Chunked::new(limits.max_body, limits.max_header_bytes))
                    }
                };
                if head.expect_continue && head.http11 {
                    out.extend_from_slice(response::CONTINUE);
                }
                self.state = State::Body { body, head };
                Parsed::Done(used, Flow::Continue)
            }
            Err(httparse::Error::TooManyHeaders) => {
                close(self, Status::HeaderFieldsTooLarge, env, out)
            }
            Err(httparse::Error::Version) => {
                // 505 or 400 depends on the whole request line: wait for it.
                if !rest.contains(&b'\n') {
                    if rest.len() > limits.max_header_bytes {
                        return close(self, Status::UriTooLong, env, out);
                    }
                    return Parsed::Partial;
                }
                match request::as_http11(rest) {
                    // The rewritten head parses as HTTP/1.1: same length, same answer.
                    Some(fixed) => self.head(&fixed, env, out),
                    None => close(self, request::version_error(rest), env, out),
                }
            }
            Err(_) => close(self, Status::BadRequest, env, out),
        }
    }

    /// Answers a complete request.
    fn answer(&mut self, head: &RequestHead, env: &mut Env<'_>, out: &mut Vec<u8>) -> Flow {
        let max = env.limits.max_requests;
        let keep = head.keep_alive && !head.must_close && (max == 0 || self.requests + 1 < max);
        let only_head = head.method == Method::Head;
        let what = Some((head.method, head.path.as_str(), head.http11));
        if head.method == Method::Other {
            return self.simple(Status::MethodNotAllowed, keep, false, None, what, env, out);
        }
        let e = match env.files.lookup(&head.path) {
            Lookup::File(e) => e,
            Lookup::Directory => {
                let location = format!("{}/", head.path);
                let loc = Some(location.as_str());
                return self.simple(
                    Status::MovedPermanently,
                    keep,
                    only_head,
                    loc,
                    what,
                    env,
                    out,
                );
            }
            Lookup::NoIndex => {
                return self.simple(Status::Forbidden, keep, only_head, None, what, env, out);
            }
            Lookup::Missing => {
                return self.simple(Status::NotFound, keep, only_head, None, what, env, out);
            }
        };
        let start = out.len();
        let not_modified = head.if_modified_since.is_some_and(|t| e.modified <= t);
        let status = if not_modified {
            Status::NotModified
        } else {
            Status::Ok
        };
        Head {
            status,
            date: env.date,
            content_type: (!not_modified).then_some(e.content_type),
            content_length: (!not_modified).then_some(e.body.len() as u64),
            last_modified: Some(&e.last_modified),
            location: None,
            keep_alive: keep,
        }
        .write(out);
        if !not_modified && !only_head {
            out.extend_from_slice(&e.body);
        }
        self.finish(status, keep, out.len() - start, what, env)
    }

    /// Writes a response with an HTML body (errors, redirects).
    #[allow(clippy::too_many_arguments)]
    fn simple(
        &mut self,
        status: Status,
        keep: bool,
        only_head: bool,
        location: Option<&str>,
        what: Option<(Method, &str, bool)>,
        env: &mut Env<'_>,
        out: &mut Vec<u8>,
    ) -> Flow {
        let keep = keep && !status.closes();
        let body = response::error_body(status);
        let start = out.len();
        Head {
            status,
            date: env.date,
            content_type: Some("text/html"),
            content_length: Some(body.len() as u64),
            last_modified: None,
            location,
            keep_alive: keep,
        }
        .write(out);
        if !only_head {
            out.extend_from_slice(&body);
        }
        self.finish(status, keep, out.len() - start, what, env)
    }

    fn finish(
        &mut self,
        status: Status,
        keep: bool,
        bytes: usize,
        what: Option<(Method, &str, bool)>,
        env: &mut Env<'_>,
    ) -> Flow {
        self.requests += 1;
        self.linger |= !keep && status.code() >= 400;
        env.counters.count(status, bytes);
        if let Some(log) = env.log.as_deref_mut() {
            access_line(log, env.peer, env.date, what, status, bytes);
        }
        if keep { Flow::Continue } else { Flow::Close }
    }
}

enum Parsed {
    Partial,
    /// Bytes consumed, and what follows.
    Done(usize, Flow),
}

/// One access-log line: `peer [date] "METHOD path HTTP/1.x" status bytes`.
fn access_line(
    log: &mut Vec<u8>,
    peer: SocketAddrV4,
    date: &[u8; DATE_LEN],
    what: Option<(Method, &str, bool)>,
    status: Status,
    bytes: usize,
) {
    use std::io::Write as _;
    let _ = write!(log, "{peer} [");
    log.extend_from_slice(date);
    let _ = match what {
        Some((m, path, http11)) => {
            let m = match m {
                Method::Get => "GET",
                Method::Head => "HEAD",
                Method::Other => "OTHER",
            };
            let v = if http11 { "1.1" } else { "1.0" };
            writeln!(
                log,
                "] \"{m} {} HTTP/{v}\" {} {bytes}",
                path.escape_debug(),
                status.code()
            )
        }
        None => writeln!(log, "] \"-\" {} {bytes}", status.code()),
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    struct T {
        files: Files,
        limits: Limits,
        counters: Counters,
        now: u64,
    }

    impl T {
        fn new() -> Self {
            let mut files = Files::empty();
            files.add_hello(5, 784_111_777);
            Self {
                files,
                limits: Limits::default(),
                counters: Counters::default(),
                now: 0,
            }
        }

        fn feed(&mut self, s: &mut Session, data: &[u8]) -> (String, Flow) {
            let date = crate::date::format(1_000_000_000);
            let mut env = Env {
                files: &self.files,
                limits: &self.limits,
                date: &date,
                now_ms: self.now,
                counters: &mut self.counters,
                log: None,
                peer: SocketAddrV4::new([127, 0, 0, 1].into(), 1),
            };
            let mut out = Vec::new();
            let flow = s.feed(data, &mut env, &mut out);
            (String::from_utf8_lossy(&out).into_owned(), flow)
        }
    }

    #[test]
    fn pipelined_requests_are_answered_in_order() {
        let mut t = T::new();
        let mut s = Session::new(0);
        let (out, flow) = t.feed(
            &mut s,
            b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nHEAD /nope HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\nGET /hello HTTP/1.1\r\n",
        );
        assert_eq!(flow, Flow::Close);
        let codes: Vec<&str> = out.matches("HTTP/1.1 ").map(|_| "").collect();
        assert_eq!(codes.len(), 3, "{out}");
        let first = out.find("200 OK").unwrap();
        let second = out.find("404 Not Found").unwrap();
        let third = out.rfind("200 OK").unwrap();
        assert!(first < second && second < third);
        assert!(out.ends_with("Connection: close\r\n\r\nabcde"), "{out}");
        assert_eq!(t.counters.requests, 3);
    }

    #[test]
    fn bodies_are_discarded_and_the_next_request_served() {
        let mut t = T::new();
        let mut s = Session::new(0);
        let (out, flow) = t.feed(
            &mut s,
            b"POST /hello HTTP/1.1\r\nHost: a\r\nContent-Length: 4\r\n\r\nabcdGET /hello HTTP/1.1\r\nHost: a\r\n\r\n",
        );
        assert_eq!(flow, Flow::Continue);
        assert!(out.starts_with("HTTP/1.1 405 Not Allowed"), "{out}");
        assert!(out.contains("Allow: GET, HEAD"));
        assert!(out.ends_with("abcde"), "{out}");
        let (out, _) = t.feed(
            &mut s,
            b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n",
        );
        assert_eq!(out, "HTTP/1.1 100 Continue\r\n\r\n");
        let (out, _) = t.feed(&mut s, b"3\r\nabc\r\n0\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 405"), "{out}");
    }

    #[test]
    fn errors_close_the_connection() {
        for (req, code) in [
            (&b"GARBAGE\r\n\r\n"[..], "400"),
            (b"GET / HTTP/2.0\r\n\r\n", "505"),
            (b"GET / HTTP/1.1\r\n\r\n", "400"),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
                "413",
            ),
            (
                b"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
                "400",
            ),
        ] {
            let mut t = T::new();
            let mut s = Session::new(0);
            let (out, flow) = t.feed(&mut s, req);
            assert_eq!(flow, Flow::Close, "{out}");
            assert!(out.starts_with(&format!("HTTP/1.1 {code} ")), "{out}");
            assert!(out.contains("Connection: close"));
            // Nothing more is answered.
            assert_eq!(
                t.feed(&mut s, b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\n").0,
                ""
            );
        }
    }

    #[test]
    fn only_errors_and_leftover_input_need_a_lingering_close() {
        let mut t = T::new();
        let mut s = Session::new(0);
        let (_, flow) = t.feed(
            &mut s,
            b"GET /hello HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
        );
        assert!(flow == Flow::Close && !s.close_needs_linger());
        let mut s = Session::new(0);
        let (_, flow) = t.feed(
            &mut s,
            b"GET /hello HTTP/1.0\r\n\r\nGET /hello HTTP/1.0\r\n\r\n",
        );
        assert!(flow == Flow::Close && s.close_needs_linger());
        let mut s = Session::new(0);
        let (_, flow) = t.feed(
            &mut s,
            b"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 99999999\r\n\r\n",
        );
        assert!(flow == Flow::Close && s.close_needs_linger());
    }

    #[test]
    fn oversized_heads_get_414_or_431() {
        let mut t = T::new();
        let mut s = Session::new(0);
        let long = vec![b'a'; 20_000];
        let (out, _) = t.feed(&mut s, &[b"GET /".as_slice(), &long].concat());
        assert!(out.starts_with("HTTP/1.1 414 "), "{out}");
        let mut s = Session::new(0);
        let many: String = (0..100).map(|i| format!("X-{i}: v\r\n")).collect();
        let (out, _) = t.feed(
            &mut s,
            format!("GET / HTTP/1.1\r\nHost: a\r\n{many}\r\n").as_bytes(),
        );
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
        let mut s = Session::new(0);
        let big = format!(
            "GET / HTTP/1.1\r\nHost: a\r\nX: {}\r\n\r\n",
            "v".repeat(20_000)
        );
        let (out, _) = t.feed(&mut s, big.as_bytes());
        assert!(out.starts_with("HTTP/1.1 431 "), "{out}");
    }

    #[test]
    fn conditional_get_and_timeouts() {
        let mut t = T::new();
        let mut s = Session::new(0);
        let (out, _) = t.feed(
            &mut s,
            b"GET /hello HTTP/1.1\r\nHost: a\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        );
        assert!(out.starts_with("HTTP/1.1 304 Not Modified"), "{out}");
        assert!(!out.contains("Content-Length"));
        assert_eq!(s.deadline(&t.limits), Some(60_000));
        t.now = 1000;
        let _ = t.feed(&mut s, b"GET /hel");
        assert_eq!(s.deadline(&t.limits), Some(11_000));
        t.now = 2000;
        let (out, _) = t.feed(&mut s, b"lo HTTP/1.0\r\n\r\n");
        assert!(out.starts_with("HTTP/1.1 200 OK") && out.contains("Connection: close"));
    }

    #[test]
    fn output_bound_pauses_and_resumes() {
        let mut t = T::new();
        t.limits.output_high = 1;
        let mut s = Session::new(0);
        let two = b"GET /hello HTTP/1.1\r\nHost: a\r\n\r\nGET /hello HTTP/1.1\r\nHost: a\r\n\r\n";
        let (out, _) = t.feed(&mut s, two);
        assert_eq!(out.matches("200 OK").count(), 1);
        assert!(s.has_backlog() && s.deadline(&t.limits).is_none());
        let (out, _) = t.feed(&mut s, b"");
        assert_eq!(out.matches("200 OK").count(), 1);
        assert!(!s.has_backlog() && s.buffered() == 0);
    }
}
