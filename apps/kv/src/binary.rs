//! memcached's binary protocol: the 24-byte header, opcodes, status codes, and the
//! response encoder (no I/O, no store).
//!
//! How to drive it: once 24 bytes are buffered, [`Header::parse`] reads the request header
//! (refusing a bad magic byte, on which memcached closes the connection); the caller then
//! waits for `extlen + keylen` bytes (and the value, for storage commands) and answers with
//! [`write_response`]. Quiet opcodes map to their loud twin with [`Opcode::loud`].

/// Request magic byte.
pub const REQ_MAGIC: u8 = 0x80;
/// Response magic byte.
pub const RES_MAGIC: u8 = 0x81;
/// Header length.
pub const HEADER_LEN: usize = 24;

/// Opcodes memcached 1.6 serves.
#[allow(missing_docs)]
pub mod op {
    pub const GET: u8 = 0x00;
    pub const SET: u8 = 0x01;
    pub const ADD: u8 = 0x02;
    pub const REPLACE: u8 = 0x03;
    pub const DELETE: u8 = 0x04;
    pub const INCREMENT: u8 = 0x05;
    pub const DECREMENT: u8 = 0x06;
    pub const QUIT: u8 = 0x07;
    pub const FLUSH: u8 = 0x08;
    pub const GETQ: u8 = 0x09;
    pub const NOOP: u8 = 0x0a;
    pub const VERSION: u8 = 0x0b;
    pub const GETK: u8 = 0x0c;
    pub const GETKQ: u8 = 0x0d;
    pub const APPEND: u8 = 0x0e;
    pub const PREPEND: u8 = 0x0f;
    pub const STAT: u8 = 0x10;
    pub const SETQ: u8 = 0x11;
    pub const ADDQ: u8 = 0x12;
    pub const REPLACEQ: u8 = 0x13;
    pub const DELETEQ: u8 = 0x14;
    pub const INCREMENTQ: u8 = 0x15;
    pub const DECREMENTQ: u8 = 0x16;
    pub const QUITQ: u8 = 0x17;
    pub const FLUSHQ: u8 = 0x18;
    pub const APPENDQ: u8 = 0x19;
    pub const PREPENDQ: u8 = 0x1a;
    pub const TOUCH: u8 = 0x1c;
    pub const GAT: u8 = 0x1d;
    pub const GATQ: u8 = 0x1e;
    pub const GATK: u8 = 0x23;
    pub const GATKQ: u8 = 0x24;
}

/// Response status codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Status {
    /// Success.
    Ok = 0x00,
    /// Key not found.
    KeyNotFound = 0x01,
    /// Key exists (CAS mismatch, add on present).
    KeyExists = 0x02,
    /// Value too large.
    TooLarge = 0x03,
    /// Invalid arguments.
    Invalid = 0x04,
    /// Item not stored.
    NotStored = 0x05,
    /// incr/decr on a non-numeric value.
    NonNumeric = 0x06,
    /// Unknown command.
    UnknownCommand = 0x81,
    /// Out of memory.
    OutOfMemory = 0x82,
}

impl Status {
    /// memcached's error text for the status (the body of an error response).
    pub fn message(self) -> &'static str {
        match self {
            Status::Ok => "",
            Status::KeyNotFound => "Not found",
            Status::KeyExists => "Data exists for key.",
            Status::TooLarge => "Too large.",
            Status::Invalid => "Invalid arguments",
            Status::NotStored => "Not stored.",
            Status::NonNumeric => "Non-numeric server-side value for incr or decr",
            Status::UnknownCommand => "Unknown command",
            Status::OutOfMemory => "Out of memory",
        }
    }
}

/// A request header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Opcode.
    pub opcode: u8,
    /// Key length.
    pub keylen: u16,
    /// Extras length.
    pub extlen: u8,
    /// Total body length (extras + key + value).
    pub bodylen: u32,
    /// Opaque, echoed back.
    pub opaque: u32,
    /// CAS.
    pub cas: u64,
}

/// Why a header was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum HeaderError {
    /// Fewer than 24 bytes.
    #[error("need 24 bytes of header")]
    Short,
    /// The first byte is not the request magic: memcached closes the connection.
    #[error("bad magic byte {0:#04x}")]
    BadMagic(u8),
}

impl Header {
    /// Reads a request header from the first 24 bytes of `b`.
    pub fn parse(b: &[u8]) -> Result<Header, HeaderError> {
        let h: &[u8; HEADER_LEN] = b
            .get(..HEADER_LEN)
            .and_then(|s| s.try_into().ok())
            .ok_or(HeaderError::Short)?;
        if h[0] != REQ_MAGIC {
            return Err(HeaderError::BadMagic(h[0]));
        }
        Ok(Header {
            opcode: h[1],
            keylen: u16::from_be_bytes([h[2], h[3]]),
            extlen: h[4],
            bodylen: u32::from_be_bytes([h[8], h[9], h[10], h[11]]),
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
        })
    }

    /// Encodes the header (for clients and tests).
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(REQ_MAGIC);
        out.push(self.opcode);
        out.extend_from_slice(&self.keylen.to_be_bytes());
        out.push(self.extlen);
        out.push(0);
        out.extend_from_slice(&[0, 0]);
        out.extend_from_slice(&self.bodylen.to_be_bytes());
        out.extend_from_slice(&self.opaque.to_be_bytes());
        out.extend_from_slice(&self.cas.to_be_bytes());
    }
}

/// One request packet: the header, then `extras`, `key` and `value` (for clients and tests).
pub fn request(
    opcode: u8,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
    cas: u64,
    opaque: u32,
) -> Vec<u8> {
    let mut b = Vec::with_capacity(HEADER_LEN + extras.len() + key.len() + value.len());
    Header {
        opcode,
        keylen: key.len() as u16,
        extlen: extras.len() as u8,
        bodylen: (extras.len() + key.len() + value.len()) as u32,
        opaque,
        cas,
    }
    .encode(&mut b);
    b.extend_from_slice(extras);
    b.extend_from_slice(key);
    b.extend_from_slice(value);
    b
}

/// Opcode helpers.
pub struct Opcode;

impl Opcode {
    /// The loud opcode of a quiet one, and whether it was quiet.
    pub fn loud(opcode: u8) -> (u8, bool) {
        let loud = match opcode {
            op::SETQ => op::SET,
            op::ADDQ => op::ADD,
            op::REPLACEQ => op::REPLACE,
            op::DELETEQ => op::DELETE,
            op::INCREMENTQ => op::INCREMENT,
            op::DECREMENTQ => op::DECREMENT,
            op::QUITQ => op::QUIT,
            op::FLUSHQ => op::FLUSH,
            op::APPENDQ => op::APPEND,
            op::PREPENDQ => op::PREPEND,
            op::GETQ => op::GET,
            op::GETKQ => op::GETK,
            op::GATQ => op::GAT,
            op::GATKQ => op::GATK,
            o => return (o, false),
        };
        (loud, true)
    }
}

/// Appends one response packet.
#[allow(clippy::too_many_arguments)]
pub fn write_response(
    out: &mut Vec<u8>,
    opcode: u8,
    status: Status,
    opaque: u32,
    cas: u64,
    extras: &[u8],
    key: &[u8],
    value: &[u8],
) {
    let body = extras.len() + key.len() + value.len();
    out.reserve(HEADER_LEN + body);
    out.push(RES_MAGIC);
    out.push(opcode);
    out.extend_from_slice(&(key.len() as u16).to_be_bytes());
    out.push(extras.len() as u8);
    out.push(0);
    out.extend_from_slice(&(status as u16).to_be_bytes());
    out.extend_from_slice(&(body as u32).to_be_bytes());
    out.extend_from_slice(&opaque.to_be_bytes());
    out.extend_from_slice(&cas.to_be_bytes());
    out.extend_from_slice(extras);
    out.extend_from_slice(key);
    out.extend_from_slice(value);
}

/// Appends an error response (memcached's text as the body, CAS 0).
pub fn write_error(out: &mut Vec<u8>, opcode: u8, status: Status, opaque: u32) {
    write_response(
        out,
        opcode,
        status,
        opaque,
        0,
        &[],
        &[],
        status.message().as_bytes(),
    );
}

/// A parsed response (for clients: the load generator and tests).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Response<'a> {
    /// Opcode.
    pub opcode: u8,
    /// Status code.
    pub status: u16,
    /// Opaque.
    pub opaque: u32,
    /// CAS.
    pub cas: u64,
    /// Extras.
    pub extras: &'a [u8],
    /// Key.
    pub key: &'a [u8],
    /// Value.
    pub value: &'a [u8],
}

/// Parses one response from the start of `b`: `Ok(None)` if incomplete, else the response
/// and its length. A bad magic byte or inconsistent lengths are an error.
pub fn parse_response(b: &[u8]) -> Result<Option<(Response<'_>, usize)>, HeaderError> {
    let Some(h) = b.get(..HEADER_LEN) else {
        return Ok(None);
    };
    if h[0] != RES_MAGIC {
        return Err(HeaderError::BadMagic(h[0]));
    }
    let keylen = usize::from(u16::from_be_bytes([h[2], h[3]]));
    let extlen = usize::from(h[4]);
    let bodylen = u32::from_be_bytes([h[8], h[9], h[10], h[11]]) as usize;
    if keylen + extlen > bodylen {
        return Err(HeaderError::BadMagic(h[0]));
    }
    let Some(body) = b.get(HEADER_LEN..HEADER_LEN + bodylen) else {
        return Ok(None);
    };
    Ok(Some((
        Response {
            opcode: h[1],
            status: u16::from_be_bytes([h[6], h[7]]),
            opaque: u32::from_be_bytes([h[12], h[13], h[14], h[15]]),
            cas: u64::from_be_bytes([h[16], h[17], h[18], h[19], h[20], h[21], h[22], h[23]]),
            extras: &body[..extlen],
            key: &body[extlen..extlen + keylen],
            value: &body[extlen + keylen..],
        },
        HEADER_LEN + bodylen,
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_round_trip_and_bad_magic() {
        let h = Header {
            opcode: op::SET,
            keylen: 3,
            extlen: 8,
            bodylen: 16,
            opaque: 0xdead_beef,
            cas: 7,
        };
        let mut b = Vec::new();
        h.encode(&mut b);
        assert_eq!(Header::parse(&b), Ok(h));
        b[0] = 0x81;
        assert_eq!(Header::parse(&b), Err(HeaderError::BadMagic(0x81)));
        assert_eq!(Header::parse(&b[..10]), Err(HeaderError::Short));
    }

    #[test]
    fn responses_parse_back() {
        let mut out = Vec::new();
        write_response(
            &mut out,
            op::GETK,
            Status::Ok,
            9,
            5,
            &[0, 0, 0, 1],
            b"key",
            b"val",
        );
        write_error(&mut out, op::GET, Status::KeyNotFound, 10);
        let (r, n) = parse_response(&out).unwrap().unwrap();
        assert_eq!(
            (r.key, r.value, r.cas, r.opaque),
            (&b"key"[..], &b"val"[..], 5, 9)
        );
        let (r2, _) = parse_response(&out[n..]).unwrap().unwrap();
        assert_eq!(r2.status, 1);
        assert_eq!(r2.value, b"Not found");
        assert_eq!(parse_response(&out[..n - 1]), Ok(None));
    }
}
