//! `stats detail`: per key-prefix counts of gets, hits, sets and deletes, as memcached keeps
//! them while `stats detail on` is in force. A key's prefix is what comes before its first
//! `:`; keys without one are not counted.
//!
//! How to drive it: [`Prefixes::record`] for every counted command (the caller checks that
//! detail is on), [`Prefixes::dump`] for `stats detail dump`, [`Prefixes::clear`] on
//! `stats reset`. The dump lists prefixes in memcached's order: by bucket (MurmurHash3 of the
//! prefix modulo 256), the newest prefix of a bucket first.

/// memcached's `PREFIX_HASH_SIZE`.
const BUCKETS: usize = 256;
/// memcached's default `stat_key_prefix`.
pub const DELIMITER: u8 = b':';

/// What a command did to a prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Op {
    /// A get; whether it hit.
    Get(bool),
    /// A store command.
    Set,
    /// A delete.
    Delete,
}

#[derive(Debug, Clone, Default)]
struct Counts {
    prefix: Vec<u8>,
    gets: u64,
    hits: u64,
    sets: u64,
    deletes: u64,
}

/// The per-prefix counts. See the module docs.
#[derive(Debug, Clone)]
pub struct Prefixes {
    buckets: Vec<Vec<Counts>>,
}

impl Default for Prefixes {
    fn default() -> Self {
        Self {
            buckets: vec![Vec::new(); BUCKETS],
        }
    }
}

impl Prefixes {
    /// Counts `op` for the prefix of `key` (nothing when the key has no prefix).
    pub fn record(&mut self, key: &[u8], op: Op) {
        // memcached reads the key as a C string: a NUL before the delimiter ends it.
        let Some(len) = key
            .iter()
            .take_while(|&&b| b != 0)
            .position(|&b| b == DELIMITER)
        else {
            return;
        };
        let prefix = &key[..len];
        let bucket = murmur3_32(prefix) as usize % BUCKETS;
        let Some(list) = self.buckets.get_mut(bucket) else {
            return;
        };
        // New prefixes go to the front of their bucket, as in memcached.
        let pos = match list.iter().position(|c| c.prefix == prefix) {
            Some(p) => p,
            None => {
                list.insert(
                    0,
                    Counts {
                        prefix: prefix.to_vec(),
                        ..Counts::default()
                    },
                );
                0
            }
        };
        let c = &mut list[pos];
        match op {
            Op::Get(hit) => {
                c.gets += 1;
                c.hits += u64::from(hit);
            }
            Op::Set => c.sets += 1,
            Op::Delete => c.deletes += 1,
        }
    }

    /// Appends memcached's `stats detail dump` text (`PREFIX ...` lines, then `END`).
    pub fn dump(&self, out: &mut Vec<u8>) {
        for c in self.buckets.iter().flatten() {
            out.extend_from_slice(b"PREFIX ");
            out.extend_from_slice(&c.prefix);
            out.extend_from_slice(
                format!(
                    " get {} hit {} set {} del {}\r\n",
                    c.gets, c.hits, c.sets, c.deletes
                )
                .as_bytes(),
            );
        }
        out.extend_from_slice(b"END\r\n");
    }

    /// Forgets every prefix.
    pub fn clear(&mut self) {
        for b in &mut self.buckets {
            b.clear();
        }
    }
}

/// MurmurHash3, x86 32-bit variant, seed 0 (memcached's default hash).
pub fn murmur3_32(data: &[u8]) -> u32 {
    const C1: u32 = 0xcc9e_2d51;
    const C2: u32 = 0x1b87_3593;
    let mut h: u32 = 0;
    let mut blocks = data.chunks_exact(4);
    for b in &mut blocks {
        let mut k = u32::from_le_bytes([b[0], b[1], b[2], b[3]]);
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
        h = h.rotate_left(13).wrapping_mul(5).wrapping_add(0xe654_6b64);
    }
    let tail = blocks.remainder();
    if !tail.is_empty() {
        let mut k: u32 = 0;
        for (i, &b) in tail.iter().enumerate() {
            k |= u32::from(b) << (8 * i);
        }
        k = k.wrapping_mul(C1).rotate_left(15).wrapping_mul(C2);
        h ^= k;
    }
    h ^= data.len() as u32;
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur3_known_values() {
        // Reference values of MurmurHash3_x86_32 with seed 0.
        assert_eq!(murmur3_32(b""), 0);
        assert_eq!(murmur3_32(b"hello"), 0x248b_fa47);
        assert_eq!(
            murmur3_32(b"The quick brown fox jumps over the lazy dog"),
            0x2e4f_f723
        );
    }

    #[test]
    fn counts_by_prefix() {
        let mut p = Prefixes::default();
        p.record(b"foo:1", Op::Set);
        p.record(b"foo:2", Op::Get(true));
        p.record(b"foo:3", Op::Get(false));
        p.record(b"nodelim", Op::Set);
        p.record(b"foo:1", Op::Delete);
        let mut out = Vec::new();
        p.dump(&mut out);
        assert_eq!(out, b"PREFIX foo get 2 hit 1 set 1 del 1\r\nEND\r\n");
        p.clear();
        out.clear();
        p.dump(&mut out);
        assert_eq!(out, b"END\r\n");
    }
}
