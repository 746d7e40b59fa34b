//! Writing responses: the status line and headers, and the small HTML bodies of error
//! responses. Every response is HTTP/1.1 (a server answers with its own version, RFC 9110
//! section 6.2) and carries `Server`, `Date` and a framing header.

use crate::date::DATE_LEN;

/// A response status this server sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize)]
pub enum Status {
    /// 100 Continue (interim, for `Expect: 100-continue`).
    Continue,
    /// 200 OK.
    Ok,
    /// 301 Moved Permanently (a directory named without its slash).
    MovedPermanently,
    /// 304 Not Modified (`If-Modified-Since`).
    NotModified,
    /// 400 Bad Request.
    BadRequest,
    /// 403 Forbidden (a directory without `index.html`).
    Forbidden,
    /// 404 Not Found.
    NotFound,
    /// 405 Method Not Allowed.
    MethodNotAllowed,
    /// 413 Content Too Large.
    ContentTooLarge,
    /// 414 URI Too Long.
    UriTooLong,
    /// 431 Request Header Fields Too Large.
    HeaderFieldsTooLarge,
    /// 505 HTTP Version Not Supported.
    VersionNotSupported,
}

impl Status {
    /// The numeric code.
    pub fn code(self) -> u16 {
        match self {
            Status::Continue => 100,
            Status::Ok => 200,
            Status::MovedPermanently => 301,
            Status::NotModified => 304,
            Status::BadRequest => 400,
            Status::Forbidden => 403,
            Status::NotFound => 404,
            Status::MethodNotAllowed => 405,
            Status::ContentTooLarge => 413,
            Status::UriTooLong => 414,
            Status::HeaderFieldsTooLarge => 431,
            Status::VersionNotSupported => 505,
        }
    }

    /// The status line's reason phrase.
    pub fn reason(self) -> &'static str {
        match self {
            Status::Continue => "Continue",
            Status::Ok => "OK",
            Status::MovedPermanently => "Moved Permanently",
            Status::NotModified => "Not Modified",
            Status::BadRequest => "Bad Request",
            Status::Forbidden => "Forbidden",
            Status::NotFound => "Not Found",
            Status::MethodNotAllowed => "Not Allowed",
            Status::ContentTooLarge => "Request Entity Too Large",
            Status::UriTooLong => "Request-URI Too Large",
            Status::HeaderFieldsTooLarge => "Request Header Fields Too Large",
            Status::VersionNotSupported => "HTTP Version Not Supported",
        }
    }

    /// Whether the connection must close after this response because the request's end
    /// in the byte stream is unknown or the client misbehaves (RFC 9112 sections 6.3 and
    /// 9.6): malformed or oversized requests and unsupported versions.
    pub fn closes(self) -> bool {
        matches!(
            self,
            Status::BadRequest
                | Status::ContentTooLarge
                | Status::UriTooLong
                | Status::HeaderFieldsTooLarge
                | Status::VersionNotSupported
        )
    }
}

/// The `Server` header's value.
pub const SERVER: &str = "megatcp-http";

/// The head of a response.
#[derive(Debug, Clone, Copy)]
pub struct Head<'a> {
    /// Status.
    pub status: Status,
    /// The current date (IMF-fixdate).
    pub date: &'a [u8; DATE_LEN],
    /// `Content-Type`, if any.
    pub content_type: Option<&'a str>,
    /// `Content-Length`, if any (the full length even for `HEAD`).
    pub content_length: Option<u64>,
    /// `Last-Modified`, if any.
    pub last_modified: Option<&'a [u8; DATE_LEN]>,
    /// `Location`, if any.
    pub location: Option<&'a str>,
    /// Whether the connection stays open (`Connection: keep-alive` or `close`).
    pub keep_alive: bool,
}

fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut buf = [0u8; 20];
    let mut i = buf.len();
    loop {
        i -= 1;
        buf[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&buf[i..]);
}

impl Head<'_> {
    /// Appends the status line and headers, up to and including the empty line.
    pub fn write(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(b"HTTP/1.1 ");
        push_u64(out, u64::from(self.status.code()));
        out.push(b' ');
        out.extend_from_slice(self.status.reason().as_bytes());
        out.extend_from_slice(b"\r\nServer: ");
        out.extend_from_slice(SERVER.as_bytes());
        out.extend_from_slice(b"\r\nDate: ");
        out.extend_from_slice(self.date);
        if let Some(t) = self.content_type {
            out.extend_from_slice(b"\r\nContent-Type: ");
            out.extend_from_slice(t.as_bytes());
        }
        if let Some(n) = self.content_length {
            out.extend_from_slice(b"\r\nContent-Length: ");
            push_u64(out, n);
        }
        if let Some(m) = self.last_modified {
            out.extend_from_slice(b"\r\nLast-Modified: ");
            out.extend_from_slice(m);
        }
        if let Some(l) = self.location {
            out.extend_from_slice(b"\r\nLocation: ");
            out.extend_from_slice(l.as_bytes());
        }
        match self.status {
            Status::MethodNotAllowed => out.extend_from_slice(b"\r\nAllow: GET, HEAD"),
            Status::Ok => out.extend_from_slice(b"\r\nAccept-Ranges: none"),
            _ => {}
        }
        out.extend_from_slice(if self.keep_alive {
            b"\r\nConnection: keep-alive\r\n\r\n".as_slice()
        } else {
            b"\r\nConnection: close\r\n\r\n".as_slice()
        });
    }
}

/// The HTML body of an error (or redirect) response.
pub fn error_body(status: Status) -> Vec<u8> {
    let title = format!("{} {}", status.code(), status.reason());
    format!(
        "<html>\r\n<head><title>{title}</title></head>\r\n<body>\r\n<center><h1>{title}</h1></center>\r\n<hr><center>{SERVER}</center>\r\n</body>\r\n</html>\r\n"
    )
    .into_bytes()
}

/// The interim `100 Continue` response.
pub const CONTINUE: &[u8] = b"HTTP/1.1 100 Continue\r\n\r\n";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_head_has_every_header_in_order() {
        let date = crate::date::format(784_111_777);
        let mut out = Vec::new();
        Head {
            status: Status::Ok,
            date: &date,
            content_type: Some("text/plain"),
            content_length: Some(12),
            last_modified: Some(&date),
            location: None,
            keep_alive: true,
        }
        .write(&mut out);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "HTTP/1.1 200 OK\r\nServer: megatcp-http\r\nDate: Sun, 06 Nov 1994 08:49:37 GMT\r\n\
             Content-Type: text/plain\r\nContent-Length: 12\r\n\
             Last-Modified: Sun, 06 Nov 1994 08:49:37 GMT\r\nAccept-Ranges: none\r\n\
             Connection: keep-alive\r\n\r\n"
        );
    }

    #[test]
    fn errors_that_close() {
        assert!(Status::BadRequest.closes());
        assert!(Status::HeaderFieldsTooLarge.closes());
        assert!(!Status::NotFound.closes());
        assert!(!Status::MethodNotAllowed.closes());
        assert!(
            String::from_utf8(error_body(Status::NotFound))
                .unwrap()
                .contains("<title>404 Not Found</title>")
        );
    }
}
