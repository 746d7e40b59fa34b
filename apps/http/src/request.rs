//! Interpreting a parsed request head (httparse's `Request`): method, version, target path
//! (decoded and normalised), body framing, persistence, conditional headers; and telling a
//! well-formed request line with an unsupported version (505) from garbage (400).

use crate::response::Status;

/// The request methods that are served; every other valid method gets 405.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Method {
    /// GET.
    Get,
    /// HEAD: the same head as GET, no body.
    Head,
    /// Any other method (a valid token).
    Other,
}

/// How the request's body is delimited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Framing {
    /// No body.
    None,
    /// `Content-Length` bytes.
    Length(u64),
    /// The chunked coding.
    Chunked,
}

/// What the server needs from a request head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestHead {
    /// Method.
    pub method: Method,
    /// HTTP/1.1 (`true`) or HTTP/1.0.
    pub http11: bool,
    /// The decoded, normalised path (`/` + segments; a trailing `/` kept).
    pub path: String,
    /// How the body is delimited.
    pub framing: Framing,
    /// Whether the client wants the connection kept open.
    pub keep_alive: bool,
    /// A valid `If-Modified-Since` date.
    pub if_modified_since: Option<u64>,
    /// `Expect: 100-continue`.
    pub expect_continue: bool,
    /// `Transfer-Encoding` together with `Content-Length`: answered, then closed (the two
    /// disagreeing is how requests are smuggled, RFC 9112 section 6.1).
    pub must_close: bool,
}

/// Limits applied while interpreting.
#[derive(Debug, Clone, Copy)]
pub struct HeadLimits {
    /// Longest request target.
    pub max_uri: usize,
    /// Largest body accepted (to be discarded).
    pub max_body: u64,
}

fn has_token(value: &[u8], token: &str) -> bool {
    value
        .split(|&b| b == b',')
        .any(|t| t.trim_ascii().eq_ignore_ascii_case(token.as_bytes()))
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

/// Decodes `%XX` escapes; `None` for a bad escape or a NUL.
fn percent_decode(s: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len());
    let mut i = 0;
    while i < s.len() {
        let b = s[i];
        if b == b'%' {
            let (h, l) = (hex(*s.get(i + 1)?)?, hex(*s.get(i + 2)?)?);
            out.push(h * 16 + l);
            i += 3;
        } else {
            out.push(b);
            i += 1;
        }
    }
    (!out.contains(&0)).then_some(out)
}

/// The path of a request target: origin form (`/a/b?q`) or absolute form
/// (`http://host/a/b`), decoded, with `.`/`..` segments resolved and repeated slashes
/// merged. `Err(BadRequest)` for anything else, or a path climbing above the root.
pub fn target_path(target: &str) -> Result<String, Status> {
    let bytes = target.as_bytes();
    let path = if bytes.first() == Some(&b'/') {
        bytes
    } else {
        let lower = target
            .get(..8)
            .map(str::to_ascii_lowercase)
            .unwrap_or_default();
        let rest = if lower.starts_with("http://") {
            &bytes[7..]
        } else if lower.starts_with("https://") {
            &bytes[8..]
        } else {
            return Err(Status::BadRequest);
        };
        match rest.iter().position(|&b| b == b'/') {
            Some(p) => &rest[p..],
            None => b"/".as_slice(),
        }
    };
    let end = path
        .iter()
        .position(|&b| b == b'?' || b == b'#')
        .unwrap_or(path.len());
    let decoded = percent_decode(&path[..end]).ok_or(Status::BadRequest)?;
    let mut segs: Vec<&[u8]> = Vec::new();
    let trailing = decoded.ends_with(b"/") || decoded.ends_with(b"/.") || decoded.ends_with(b"/..");
    for seg in decoded.split(|&b| b == b'/') {
        match seg {
            b"" | b"." => {}
            b".." => {
                segs.pop().ok_or(Status::BadRequest)?;
            }
            s => segs.push(s),
        }
    }
    let mut out = Vec::with_capacity(decoded.len());
    for s in &segs {
        out.push(b'/');
        out.extend_from_slice(s);
    }
    if trailing || segs.is_empty() {
        out.push(b'/');
    }
    // A path that is not UTF-8 names no file (files are keyed by their UTF-8 names).
    Ok(String::from_utf8(out).unwrap_or_else(|_| "/\u{fffd}".into()))
}

/// Interprets a complete head. `Err` is the error status to answer with.
pub fn interpret(
    req: &httparse::Request<'_, '_>,
    limits: HeadLimits,
) -> Result<RequestHead, Status> {
    let method = match req.method {
        Some("GET") => Method::Get,
        Some("HEAD") => Method::Head,
        Some(_) => Method::Other,
        None => return Err(Status::BadRequest),
    };
    let http11 = req.version == Some(1);
    let target = req.path.ok_or(Status::BadRequest)?;
    if target.len() > limits.max_uri {
        return Err(Status::UriTooLong);
    }
    let path = target_path(target)?;
    let mut hosts = 0;
    let mut length: Option<u64> = None;
    let mut chunked = false;
    let mut te = false;
    let (mut close, mut keep) = (false, false);
    let mut ims = None;
    let mut expect_continue = false;
    for h in req.headers.iter() {
        let name = h.name.as_bytes();
        let v = h.value.trim_ascii();
        if name.eq_ignore_ascii_case(b"host") {
            hosts += 1;
        } else if name.eq_ignore_ascii_case(b"content-length") {
            if v.is_empty() || v.len() > 19 || !v.iter().all(u8::is_ascii_digit) {
                return Err(Status::BadRequest);
            }
            let n = std::str::from_utf8(v)
                .ok()
                .and_then(|s| s.parse::<u64>().ok())
                .ok_or(Status::BadRequest)?;
            if length.is_some_and(|l| l != n) {
                return Err(Status::BadRequest);
            }
            length = Some(n);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            te = true;
            // The last coding decides; only chunked is understood.
            let last = v
                .rsplit(|&b| b == b',')
                .next()
                .unwrap_or_default()
                .trim_ascii();
            chunked = last.eq_ignore_ascii_case(b"chunked");
        } else if name.eq_ignore_ascii_case(b"connection") {
            close |= has_token(v, "close");
            keep |= has_token(v, "keep-alive");
        } else if name.eq_ignore_ascii_case(b"if-modified-since") {
            ims = crate::date::parse(v);
        } else if name.eq_ignore_ascii_case(b"expect") {
            expect_continue = v.eq_ignore_ascii_case(b"100-continue");
        }
    }
    // HTTP/1.1 requires exactly one Host (RFC 9112 section 3.2); HTTP/1.0 at most one.
    if hosts > 1 || (http11 && hosts == 0) {
        return Err(Status::BadRequest);
    }
    // A transfer coding other than a final chunked leaves the body's end unknown
    // (RFC 9112 section 6.3); so does chunked in HTTP/1.0, which has no transfer codings.
    if te && (!chunked || !http11) {
        return Err(Status::BadRequest);
    }
    let framing = match (te, length) {
        (true, _) => Framing::Chunked,
        (false, Some(n)) if n > limits.max_body => return Err(Status::ContentTooLarge),
        (false, Some(0) | None) => Framing::None,
        (false, Some(n)) => Framing::Length(n),
    };
    Ok(RequestHead {
        method,
        http11,
        path,
        framing,
        keep_alive: if http11 { !close } else { keep && !close },
        if_modified_since: ims,
        expect_continue,
        must_close: te && length.is_some(),
    })
}

/// For a head httparse refused with `Error::Version` whose request line says `HTTP/1.x`
/// with a single-digit minor version above 1: the same bytes saying `HTTP/1.1` (a later
/// minor version is compatible, RFC 9110 section 2.5; nginx does the same). `None` otherwise.
pub fn as_http11(buf: &[u8]) -> Option<Vec<u8>> {
    let line_end = buf.iter().position(|&b| b == b'\n')?;
    let line = buf[..line_end]
        .strip_suffix(b"\r")
        .unwrap_or(&buf[..line_end]);
    let at = line.len().checked_sub(8)?;
    let v = &line[at..];
    if at == 0
        || line[at - 1] != b' '
        || !v.starts_with(b"HTTP/1.")
        || !v[7].is_ascii_digit()
        || v[7] < b'2'
    {
        return None;
    }
    let mut fixed = buf.to_vec();
    fixed[at + 7] = b'1';
    Some(fixed)
}

/// For a head httparse refused with `Error::Version`: 505 when the request line is well
/// formed (`METHOD SP target SP HTTP/d.d`) with a version other than 1.0/1.1, else 400.
pub fn version_error(buf: &[u8]) -> Status {
    let line_end = buf.iter().position(|&b| b == b'\n').unwrap_or(buf.len());
    let line = buf[..line_end].trim_ascii();
    let parts: Vec<&[u8]> = line
        .split(|&b| b == b' ')
        .filter(|p| !p.is_empty())
        .collect();
    let [method, target, version] = parts.as_slice() else {
        return Status::BadRequest;
    };
    let well_formed_version = version
        .strip_prefix(b"HTTP/")
        .and_then(|v| {
            let dot = v.iter().position(|&b| b == b'.')?;
            let (maj, min) = (&v[..dot], &v[dot + 1..]);
            let digits =
                |d: &[u8]| !d.is_empty() && d.len() <= 3 && d.iter().all(u8::is_ascii_digit);
            (digits(maj) && digits(min)).then_some(())
        })
        .is_some();
    if !method.is_empty() && !target.is_empty() && well_formed_version {
        Status::VersionNotSupported
    } else {
        Status::BadRequest
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_are_decoded_and_normalised() {
        let ok = |t: &str| target_path(t).unwrap();
        assert_eq!(ok("/"), "/");
        assert_eq!(ok("/a/b.txt?x=1"), "/a/b.txt");
        assert_eq!(ok("/a//b/./c/../d"), "/a/b/d");
        assert_eq!(ok("/a/b/"), "/a/b/");
        assert_eq!(ok("/a/b/.."), "/a/");
        assert_eq!(ok("/h%65llo"), "/hello");
        assert_eq!(ok("http://example.com/x/y"), "/x/y");
        assert_eq!(ok("HTTP://example.com"), "/");
        for bad in [
            "x",
            "*",
            "/..",
            "/a/../../b",
            "/%zz",
            "/%0",
            "/a%00b",
            "ftp://x/",
        ] {
            assert_eq!(target_path(bad), Err(Status::BadRequest), "{bad}");
        }
    }

    fn head(text: &str) -> Result<RequestHead, Status> {
        let mut headers = [httparse::EMPTY_HEADER; 16];
        let mut req = httparse::Request::new(&mut headers);
        assert!(req.parse(text.as_bytes()).unwrap().is_complete());
        interpret(
            &req,
            HeadLimits {
                max_uri: 64,
                max_body: 1000,
            },
        )
    }

    #[test]
    fn persistence_framing_and_errors() {
        let h = head("GET / HTTP/1.1\r\nHost: x\r\n\r\n").unwrap();
        assert!(h.keep_alive && h.http11 && h.framing == Framing::None);
        assert!(
            !head("GET / HTTP/1.1\r\nHost: x\r\nConnection: Close\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert!(!head("GET / HTTP/1.0\r\n\r\n").unwrap().keep_alive);
        assert!(
            head("GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
                .unwrap()
                .keep_alive
        );
        assert_eq!(head("GET / HTTP/1.1\r\n\r\n"), Err(Status::BadRequest));
        assert_eq!(
            head("GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n"),
            Err(Status::BadRequest)
        );
        let p = head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n").unwrap();
        assert_eq!((p.method, p.framing), (Method::Other, Framing::Length(10)));
        assert_eq!(
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1001\r\n\r\n"),
            Err(Status::ContentTooLarge)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n"),
            Err(Status::BadRequest)
        );
        assert_eq!(
            head("POST / HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n"),
            Err(Status::BadRequest)
        );
        let c = head(
            "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n",
        )
        .unwrap();
        assert!(c.framing == Framing::Chunked && c.must_close);
        assert_eq!(
            head("POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n"),
            Err(Status::BadRequest)
        );
        let long = format!("GET /{} HTTP/1.1\r\nHost: x\r\n\r\n", "a".repeat(64));
        assert_eq!(head(&long), Err(Status::UriTooLong));
        let ims = head(
            "GET / HTTP/1.1\r\nHost: x\r\nIf-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n\r\n",
        )
        .unwrap();
        assert_eq!(ims.if_modified_since, Some(784_111_777));
    }

    #[test]
    fn unsupported_versions_are_505_and_garbage_400() {
        assert_eq!(
            version_error(b"GET / HTTP/2.0\r\n"),
            Status::VersionNotSupported
        );
        assert_eq!(
            version_error(b"GET / HTTP/3.0\r\n\r\n"),
            Status::VersionNotSupported
        );
        assert_eq!(
            as_http11(b"GET / HTTP/1.2\r\nHost: a\r\n").unwrap(),
            b"GET / HTTP/1.1\r\nHost: a\r\n"
        );
        assert_eq!(as_http11(b"GET / HTTP/2.0\r\n"), None);
        assert_eq!(as_http11(b"GET / HTTP/1.10\r\n"), None);
        assert_eq!(version_error(b"GET / HTTP/x\r\n"), Status::BadRequest);
        assert_eq!(version_error(b"GET / FTP/1.0\r\n"), Status::BadRequest);
        assert_eq!(version_error(b"GET /\r\n"), Status::BadRequest);
    }
}
