//! `megatcp-http`: a static HTTP/1.1 server on megatcp's channel API, and a verifying HTTP
//! load generator.
//!
//! # Layers
//!
//! * No I/O, fuzzed (`tests/fuzz.rs`, `fuzz/`): [`request`] (interpreting an `httparse`
//!   head: method, version, target, framing, persistence), [`chunked`] (chunked request
//!   bodies, bounded and discarded), [`response`] (status lines, headers, error bodies),
//!   [`date`] (HTTP dates), [`mime`] (types by extension), and [`session`]: one connection,
//!   bytes in, responses out, pipelined requests answered in order, limits and timeouts.
//! * [`files`]: the tree served, read into memory at start within a bound, plus `/hello`.
//! * [`server`]: the loop on the channel API, generic over the backend (bypass, io_uring,
//!   epoll); per-core counters; the access log written by its own thread.
//! * [`load`]: a load generator on the channel API, keep-alive or `Connection: close`,
//!   every response checked byte for byte.
//!
//! # Protocol choices
//!
//! * HTTP/1.0 and HTTP/1.1; responses are always `HTTP/1.1`. HTTP/1.1 stays open unless
//!   `Connection: close`; HTTP/1.0 closes unless `Connection: keep-alive`.
//! * `GET` and `HEAD` are served; every other method gets 405 with `Allow: GET, HEAD`
//!   (after its body, read and discarded, so the connection stays usable).
//! * Errors that leave the byte stream's framing in doubt close the connection after the
//!   response (RFC 9112 sections 6.3 and 9.6): 400 (malformed, missing or repeated `Host`
//!   in HTTP/1.1, conflicting `Content-Length`, unknown transfer coding), 413 (body over
//!   the bound; the body is not read), 414, 431, 505. 404, 405, 403, 301 and 304 keep it.
//! * `Transfer-Encoding` with `Content-Length`: chunked wins and the connection closes after
//!   the response (request smuggling defence).
//! * `Range` is not supported: the whole file comes with 200 and `Accept-Ranges: none`
//!   (RFC 9110 section 14.2 allows ignoring it).
//! * `If-Modified-Since` (any of the three date forms) answers 304 when the file is not
//!   newer; a malformed date is ignored.
#![forbid(unsafe_code)]

pub mod chunked;
pub mod date;
pub mod files;
pub mod harness;
pub mod load;
pub mod mime;
pub mod request;
pub mod response;
pub mod server;
pub mod session;
