//! sockperf's message framing, so that Debian's `sockperf` client (ping-pong, throughput,
//! under-load) can drive a megatcp server. No I/O: bytes in, replies out.
//!
//! Every message starts with a 14-byte header in network byte order: sequence number (u64),
//! flags (u16: 1 = sent by the client, 2 = answer requested ("pong"), 4 = warm-up), total
//! message length including the header (u32). The server answers a message that requests
//! a pong with the same message, the client flag cleared; other messages are consumed.

/// Length of the header.
pub const HEADER_LEN: usize = 14;
/// Flag: the message comes from the client.
pub const FLAG_CLIENT: u16 = 1;
/// Flag: the client wants the message back.
pub const FLAG_PONG: u16 = 2;
/// Largest message accepted (sockperf's own limit is 64 KiB).
pub const MAX_MESSAGE: usize = 65536;

/// A peer broke the framing; the connection should be closed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SockperfError {
    /// A header announced a length below the header's or above [`MAX_MESSAGE`].
    #[error("bad sockperf message length {0}")]
    BadLength(u32),
}

/// The server side of one connection: reassembles messages across reads.
#[derive(Debug, Default)]
pub struct SockperfServer {
    pending: Vec<u8>,
    /// Messages received.
    pub messages: u64,
    /// Messages answered.
    pub replies: u64,
}

impl SockperfServer {
    /// Consumes received bytes; appends the replies owed to `out`.
    pub fn feed(&mut self, data: &[u8], out: &mut Vec<u8>) -> Result<(), SockperfError> {
        let mut input = data;
        if !self.pending.is_empty() {
            self.pending.extend_from_slice(data);
            let buf = std::mem::take(&mut self.pending);
            let used = self.consume(&buf, out)?;
            self.pending = buf[used..].to_vec();
            return Ok(());
        }
        let used = self.consume(input, out)?;
        input = &input[used..];
        self.pending.extend_from_slice(input);
        Ok(())
    }

    /// Handles every whole message at the start of `buf`; returns the bytes used.
    fn consume(&mut self, buf: &[u8], out: &mut Vec<u8>) -> Result<usize, SockperfError> {
        let mut at = 0;
        while let Some(header) = buf.get(at..at + HEADER_LEN) {
            let len = u32::from_be_bytes([header[10], header[11], header[12], header[13]]);
            if (len as usize) < HEADER_LEN || len as usize > MAX_MESSAGE {
                return Err(SockperfError::BadLength(len));
            }
            let Some(msg) = buf.get(at..at + len as usize) else {
                break;
            };
            self.messages += 1;
            let flags = u16::from_be_bytes([msg[8], msg[9]]);
            if flags & FLAG_PONG != 0 {
                let start = out.len();
                out.extend_from_slice(msg);
                out[start + 8..start + 10].copy_from_slice(&(flags & !FLAG_CLIENT).to_be_bytes());
                self.replies += 1;
            }
            at += len as usize;
        }
        Ok(at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(seq: u64, flags: u16, len: usize) -> Vec<u8> {
        let mut m = vec![0xab; len];
        m[..8].copy_from_slice(&seq.to_be_bytes());
        m[8..10].copy_from_slice(&flags.to_be_bytes());
        m[10..14].copy_from_slice(&(len as u32).to_be_bytes());
        m
    }

    #[test]
    fn pong_requests_are_answered_with_the_client_flag_cleared() {
        let mut s = SockperfServer::default();
        let mut out = Vec::new();
        let mut input = msg(7, FLAG_CLIENT | FLAG_PONG, 64);
        input.extend(msg(8, FLAG_CLIENT, 64)); // throughput message: no answer
        s.feed(&input, &mut out).unwrap();
        assert_eq!(out, msg(7, FLAG_PONG, 64));
        assert_eq!((s.messages, s.replies), (2, 1));
    }

    #[test]
    fn messages_split_anywhere_are_reassembled() {
        let mut all = Vec::new();
        for i in 0..50 {
            all.extend(msg(
                i,
                FLAG_CLIENT | FLAG_PONG,
                14 + (i as usize * 37) % 300,
            ));
        }
        for chunk in [1, 3, 13, 14, 15, 64, 1000] {
            let mut s = SockperfServer::default();
            let mut out = Vec::new();
            for piece in all.chunks(chunk) {
                s.feed(piece, &mut out).unwrap();
            }
            assert_eq!(s.replies, 50, "chunk {chunk}");
            assert_eq!(out.len(), all.len());
        }
    }

    #[test]
    fn bad_lengths_are_errors_not_panics() {
        let mut s = SockperfServer::default();
        let mut out = Vec::new();
        assert_eq!(s.feed(&msg(1, 3, 14)[..10], &mut out), Ok(()));
        let mut bad = msg(1, 3, 14);
        bad[10..14].copy_from_slice(&5u32.to_be_bytes());
        assert_eq!(
            SockperfServer::default().feed(&bad, &mut out),
            Err(SockperfError::BadLength(5))
        );
        bad[10..14].copy_from_slice(&u32::MAX.to_be_bytes());
        assert!(SockperfServer::default().feed(&bad, &mut out).is_err());
    }

    #[test]
    fn random_bytes_never_panic() {
        let mut x = 0x2545_f491_4f6c_dd1du64;
        for _ in 0..2000 {
            let mut s = SockperfServer::default();
            let mut out = Vec::new();
            for _ in 0..8 {
                let len = (x % 200) as usize;
                let data: Vec<u8> = (0..len)
                    .map(|_| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        x as u8
                    })
                    .collect();
                if s.feed(&data, &mut out).is_err() {
                    break;
                }
            }
        }
    }
}
