//! memcached's number parsing (its `safe_strtoull`, `safe_strtoul`, `safe_strtol` over C's
//! `strtoull`/`strtol`), shared by the protocols and the store: leading white space, an
//! optional sign, decimal digits, then the end or white space; overflow is an error.

/// Appends `v` in decimal.
pub fn push_u64(out: &mut Vec<u8>, mut v: u64) {
    let mut b = [0u8; 20];
    let mut i = b.len();
    loop {
        i -= 1;
        b[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            break;
        }
    }
    out.extend_from_slice(&b[i..]);
}

fn is_c_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | 0x0b | 0x0c | b'\r')
}

/// C's `strtoull`/`strtoll` digits part: (negative, magnitude, rest), `None` when there are
/// no digits or the magnitude overflows 64 bits (ERANGE).
fn c_digits(s: &[u8]) -> Option<(bool, u64, &[u8])> {
    let mut i = 0;
    while s.get(i).copied().is_some_and(is_c_space) {
        i += 1;
    }
    let mut neg = false;
    if let Some(&c) = s.get(i) {
        if c == b'+' || c == b'-' {
            neg = c == b'-';
            i += 1;
        }
    }
    let start = i;
    let mut v: u64 = 0;
    let mut overflow = false;
    while let Some(&c) = s.get(i) {
        if !c.is_ascii_digit() {
            break;
        }
        match v
            .checked_mul(10)
            .and_then(|v| v.checked_add(u64::from(c - b'0')))
        {
            Some(n) => v = n,
            None => overflow = true,
        }
        i += 1;
    }
    if i == start || overflow {
        return None;
    }
    Some((neg, v, &s[i..]))
}

/// What memcached accepts after a number: the end, or white space.
fn c_end_ok(rest: &[u8]) -> bool {
    rest.first().is_none_or(|&b| is_c_space(b))
}

/// memcached's `safe_strtoull`.
pub fn c_strtoull(s: &[u8]) -> Option<u64> {
    let (neg, v, rest) = c_digits(s)?;
    if !c_end_ok(rest) {
        return None;
    }
    let v = if neg { v.wrapping_neg() } else { v };
    if (v as i64) < 0 && s.contains(&b'-') {
        return None;
    }
    Some(v)
}

/// memcached's `safe_strtoul` on a 64-bit build (parsed as 64 bits, then truncated).
pub fn c_strtoul(s: &[u8]) -> Option<u32> {
    c_strtoull(s).map(|v| v as u32)
}

/// memcached's `safe_strtol` on a 64-bit build (a C `long`, then truncated to 32 bits).
pub fn c_strtol(s: &[u8]) -> Option<i32> {
    let (neg, v, rest) = c_digits(s)?;
    if !c_end_ok(rest) {
        return None;
    }
    let v: i64 = if neg {
        if v > (i64::MAX as u64) + 1 {
            return None;
        }
        (v as i64).wrapping_neg()
    } else {
        i64::try_from(v).ok()?
    };
    Some(v as i32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_follow_memcached() {
        assert_eq!(c_strtol(b"10"), Some(10));
        assert_eq!(c_strtol(b"-1"), Some(-1));
        assert_eq!(c_strtol(b"2147483648"), Some(i32::MIN));
        assert_eq!(c_strtol(b"4294967300"), Some(4));
        assert_eq!(c_strtol(b"99999999999999999999"), None);
        assert_eq!(c_strtol(b"1x"), None);
        assert_eq!(c_strtol(b""), None);
        assert_eq!(c_strtoul(b"-1"), None);
        assert_eq!(c_strtoul(b"-0"), Some(0));
        assert_eq!(c_strtoull(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(c_strtoull(b"18446744073709551616"), None);
        assert_eq!(c_strtoull(b"12  "), Some(12));
        assert_eq!(c_strtoull(b" 12"), Some(12));
    }
}
