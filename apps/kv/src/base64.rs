//! Base64 for the meta protocol's binary keys (flag `b`), with memcached's rules: the
//! standard alphabet with `=` padding; on decode, bytes outside the alphabet are skipped,
//! the alphabet characters (padding included) must come in groups of four, and decoding
//! stops after the first group with padding. An empty result is a failure.

const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

/// Appends the encoding of `src`.
pub fn encode(src: &[u8], out: &mut Vec<u8>) {
    let sym = |i: u8| ALPHABET[usize::from(i & 0x3f)];
    let mut chunks = src.chunks_exact(3);
    for c in &mut chunks {
        out.extend_from_slice(&[
            sym(c[0] >> 2),
            sym((c[0] << 4) | (c[1] >> 4)),
            sym((c[1] << 2) | (c[2] >> 6)),
            sym(c[2]),
        ]);
    }
    match *chunks.remainder() {
        [a] => out.extend_from_slice(&[sym(a >> 2), sym(a << 4), b'=', b'=']),
        [a, b] => {
            out.extend_from_slice(&[sym(a >> 2), sym((a << 4) | (b >> 4)), sym(b << 2), b'='])
        }
        _ => {}
    }
}

/// The value of an alphabet character (`=` counts as 0), or `None` for other bytes.
fn value(c: u8) -> Option<u8> {
    match c {
        b'A'..=b'Z' => Some(c - b'A'),
        b'a'..=b'z' => Some(c - b'a' + 26),
        b'0'..=b'9' => Some(c - b'0' + 52),
        b'+' => Some(62),
        b'/' => Some(63),
        b'=' => Some(0),
        _ => None,
    }
}

/// Decodes `src`; `None` where memcached's decoder fails (returns 0 bytes).
pub fn decode(src: &[u8]) -> Option<Vec<u8>> {
    let count = src.iter().filter(|&&c| value(c).is_some()).count();
    if count == 0 || count % 4 != 0 {
        return None;
    }
    let mut out = Vec::with_capacity(count / 4 * 3);
    let mut block = [0u8; 4];
    let mut n = 0;
    let mut pad = 0;
    for &c in src {
        let Some(v) = value(c) else { continue };
        if c == b'=' {
            pad += 1;
        }
        block[n] = v;
        n += 1;
        if n == 4 {
            out.push((block[0] << 2) | (block[1] >> 4));
            out.push((block[1] << 4) | (block[2] >> 2));
            out.push((block[2] << 6) | block[3]);
            n = 0;
            if pad > 0 {
                match pad {
                    1 => {
                        out.pop();
                    }
                    2 => {
                        out.truncate(out.len() - 2);
                    }
                    _ => return None,
                }
                break;
            }
        }
    }
    (!out.is_empty()).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(s: &[u8]) -> String {
        let mut v = Vec::new();
        encode(s, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn round_trips() {
        assert_eq!(enc(b""), "");
        assert_eq!(enc(b"f"), "Zg==");
        assert_eq!(enc(b"fo"), "Zm8=");
        assert_eq!(enc(b"foo"), "Zm9v");
        assert_eq!(enc(b"foob"), "Zm9vYg==");
        for s in [&b"f"[..], b"fo", b"foo", b"\x00\xff\x10 key"] {
            assert_eq!(decode(enc(s).as_bytes()).unwrap(), s);
        }
    }

    #[test]
    fn decodes_as_memcached() {
        assert_eq!(decode(b"Zm9v\n"), Some(b"foo".to_vec()));
        assert_eq!(decode(b"Zm*9v"), Some(b"foo".to_vec()));
        assert_eq!(decode(b"Zm9"), None);
        assert_eq!(decode(b"!!!"), None);
        assert_eq!(decode(b"Zg==Zm9v"), Some(b"f".to_vec()));
        assert_eq!(decode(b"Z==="), None);
    }
}
