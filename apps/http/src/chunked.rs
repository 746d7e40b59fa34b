//! The chunked transfer coding of request bodies (RFC 9112 section 7.1), decoded only to be
//! discarded: the decoder tells how many input bytes belong to the body and when it ends,
//! bounding the body's size, each chunk-size line and the trailer section.

/// Longest chunk-size line (size, extensions) accepted.
const MAX_LINE: usize = 4096;

/// Why a chunked body is refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ChunkError {
    /// Not the chunked coding's syntax.
    #[error("malformed chunked body")]
    Malformed,
    /// The body (data of all chunks) is larger than the bound.
    #[error("chunked body larger than the bound")]
    TooLarge,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Hex digits of a chunk size (`digits` read so far).
    Size {
        size: u64,
        digits: u32,
    },
    /// Chunk extensions (or whitespace) up to the end of the line.
    Ext {
        size: u64,
        len: usize,
    },
    /// The LF after a chunk-size line's CR.
    SizeLf {
        size: u64,
    },
    /// Chunk data still to come.
    Data(u64),
    /// The CRLF after chunk data.
    DataCr,
    DataLf,
    /// A trailer line (`len` bytes so far; 0 = the empty line ending the body).
    Trailer {
        len: usize,
    },
    TrailerLf {
        len: usize,
    },
    Done,
}

/// Decoder of one chunked body.
#[derive(Debug, Clone)]
pub struct Chunked {
    state: State,
    /// Data bytes seen so far.
    total: u64,
    /// Trailer bytes seen so far.
    trailer: usize,
    max_body: u64,
    max_trailer: usize,
}

impl Chunked {
    /// A decoder allowing `max_body` bytes of data and `max_trailer` bytes of trailers.
    pub fn new(max_body: u64, max_trailer: usize) -> Self {
        Self {
            state: State::Size { size: 0, digits: 0 },
            total: 0,
            trailer: 0,
            max_body,
            max_trailer,
        }
    }

    /// Whether the body ended.
    pub fn is_done(&self) -> bool {
        self.state == State::Done
    }

    /// Consumes body bytes from the front of `input`; returns how many belonged to the body
    /// (all of them unless the body ended inside `input`).
    pub fn feed(&mut self, input: &[u8]) -> Result<usize, ChunkError> {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(rem) = self.state {
                let take = rem.min((input.len() - i) as u64);
                i += take as usize;
                self.state = if rem == take {
                    State::DataCr
                } else {
                    State::Data(rem - take)
                };
                continue;
            }
            let b = input[i];
            i += 1;
            self.state = match self.state {
                State::Size { size, digits } => match b {
                    b'0'..=b'9' | b'a'..=b'f' | b'A'..=b'F' => {
                        let d = (b as char).to_digit(16).unwrap_or(0);
                        if digits >= 15 {
                            return Err(ChunkError::TooLarge);
                        }
                        State::Size {
                            size: size * 16 + u64::from(d),
                            digits: digits + 1,
                        }
                    }
                    _ if digits == 0 => return Err(ChunkError::Malformed),
                    b';' | b' ' | b'\t' => State::Ext { size, len: 0 },
                    b'\r' => State::SizeLf { size },
                    b'\n' => self.after_size(size)?,
                    _ => return Err(ChunkError::Malformed),
                },
                State::Ext { size, len } => match b {
                    b'\r' => State::SizeLf { size },
                    b'\n' => self.after_size(size)?,
                    _ if len >= MAX_LINE => return Err(ChunkError::Malformed),
                    _ => State::Ext { size, len: len + 1 },
                },
                State::SizeLf { size } => match b {
                    b'\n' => self.after_size(size)?,
                    _ => return Err(ChunkError::Malformed),
                },
                State::DataCr => match b {
                    b'\r' => State::DataLf,
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError::Malformed),
                },
                State::DataLf => match b {
                    b'\n' => State::Size { size: 0, digits: 0 },
                    _ => return Err(ChunkError::Malformed),
                },
                State::Trailer { len } | State::TrailerLf { len } if b == b'\n' => {
                    if len == 0 {
                        self.state = State::Done;
                        return Ok(i);
                    }
                    State::Trailer { len: 0 }
                }
                State::TrailerLf { .. } => return Err(ChunkError::Malformed),
                State::Trailer { len } if b == b'\r' => State::TrailerLf { len },
                State::Trailer { len } => {
                    self.trailer += 1;
                    if self.trailer > self.max_trailer {
                        return Err(ChunkError::TooLarge);
                    }
                    State::Trailer { len: len + 1 }
                }
                // `Data` was handled above; after `Done` nothing more belongs to the body.
                State::Data(_) | State::Done => return Ok(i - 1),
            };
        }
        Ok(i)
    }

    fn after_size(&mut self, size: u64) -> Result<State, ChunkError> {
        if size == 0 {
            return Ok(State::Trailer { len: 0 });
        }
        self.total = self.total.saturating_add(size);
        if self.total > self.max_body {
            return Err(ChunkError::TooLarge);
        }
        Ok(State::Data(size))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: u64) -> Result<(usize, bool), ChunkError> {
        let mut c = Chunked::new(max, 1024);
        let n = c.feed(input)?;
        Ok((n, c.is_done()))
    }

    #[test]
    fn decodes_chunks_extensions_and_trailers() {
        let body = b"5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nX-T: 1\r\n\r\nNEXT";
        assert_eq!(all(body, 100), Ok((body.len() - 4, true)));
        assert_eq!(all(b"0\r\n\r\n", 0), Ok((5, true)));
        // Bare LF line ends are accepted.
        assert_eq!(all(b"1\nx\n0\n\n", 10), Ok((7, true)));
    }

    #[test]
    fn byte_at_a_time_gives_the_same_end() {
        let body = b"a\r\n0123456789\r\n0\r\n\r\nGET";
        let mut c = Chunked::new(100, 100);
        let mut used = 0;
        for b in body {
            used += c.feed(std::slice::from_ref(b)).unwrap();
            if c.is_done() {
                break;
            }
        }
        assert_eq!(used, body.len() - 3);
    }

    #[test]
    fn refuses_bad_and_oversized_bodies() {
        assert_eq!(all(b"x\r\n", 10), Err(ChunkError::Malformed));
        assert_eq!(all(b"\r\n", 10), Err(ChunkError::Malformed));
        assert_eq!(all(b"3\r\nabcX", 10), Err(ChunkError::Malformed));
        assert_eq!(all(b"b\r\n", 10), Err(ChunkError::TooLarge));
        assert_eq!(
            all(b"ffffffffffffffffff\r\n", u64::MAX),
            Err(ChunkError::TooLarge)
        );
        let mut c = Chunked::new(10, 4);
        assert_eq!(c.feed(b"0\r\nLongTrailer"), Err(ChunkError::TooLarge));
    }
}
