//! HTTP dates (RFC 9110 section 5.6.7): formatting as IMF-fixdate, parsing the three forms a
//! client may send (IMF-fixdate, the obsolete RFC 850 form and asctime), with no time-zone
//! database: all HTTP dates are GMT.

/// Seconds since the Unix epoch, whole (HTTP dates have one-second resolution).
pub type UnixSecs = u64;

const DAYS: [&str; 7] = ["Thu", "Fri", "Sat", "Sun", "Mon", "Tue", "Wed"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Length of an IMF-fixdate (`Sun, 06 Nov 1994 08:49:37 GMT`).
pub const DATE_LEN: usize = 29;

/// Civil date (year, month 1..=12, day 1..=31) of a day count since 1970-01-01.
fn civil(days: i64) -> (i64, u32, u32) {
    // Howard Hinnant's days-to-civil algorithm.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// Days since 1970-01-01 of a civil date.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// `secs` as an IMF-fixdate, e.g. `Sun, 06 Nov 1994 08:49:37 GMT`.
pub fn format(secs: UnixSecs) -> [u8; DATE_LEN] {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let (y, m, d) = civil(days);
    let mut out = [0u8; DATE_LEN];
    let two = |v: u64| [b'0' + (v / 10 % 10) as u8, b'0' + (v % 10) as u8];
    out[..3].copy_from_slice(DAYS[(days % 7) as usize].as_bytes());
    out[3..5].copy_from_slice(b", ");
    out[5..7].copy_from_slice(&two(u64::from(d)));
    out[7] = b' ';
    out[8..11].copy_from_slice(MONTHS[(m - 1) as usize].as_bytes());
    out[11] = b' ';
    let y = y.clamp(0, 9999) as u64;
    out[12..14].copy_from_slice(&two(y / 100));
    out[14..16].copy_from_slice(&two(y));
    out[16] = b' ';
    out[17..19].copy_from_slice(&two(rem / 3600));
    out[19] = b':';
    out[20..22].copy_from_slice(&two(rem / 60 % 60));
    out[22] = b':';
    out[23..25].copy_from_slice(&two(rem % 60));
    out[25..].copy_from_slice(b" GMT");
    out
}

fn num(s: &str) -> Option<u32> {
    if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    s.parse().ok()
}

fn month(s: &str) -> Option<u32> {
    MONTHS.iter().position(|m| *m == s).map(|i| i as u32 + 1)
}

fn hms(s: &str) -> Option<(u32, u32, u32)> {
    let mut it = s.split(':');
    let (h, m, sec) = (it.next()?, it.next()?, it.next()?);
    if it.next().is_some() || h.len() != 2 || m.len() != 2 || sec.len() != 2 {
        return None;
    }
    let (h, m, sec) = (num(h)?, num(m)?, num(sec)?);
    // 60: a leap second, allowed by the grammar.
    (h < 24 && m < 60 && sec <= 60).then_some((h, m, sec))
}

fn assemble(y: i64, mo: u32, d: u32, (h, m, s): (u32, u32, u32)) -> Option<UnixSecs> {
    if !(1..=31).contains(&d) || y < 1970 {
        return None;
    }
    let days = days_from_civil(y, mo, d);
    // Reject 31 Feb and the like: the day must survive the round trip.
    if civil(days) != (y, mo, d) {
        return None;
    }
    let secs = days * 86_400 + i64::from(h) * 3600 + i64::from(m) * 60 + i64::from(s);
    u64::try_from(secs).ok()
}

/// Parses an HTTP date in any of the three forms; `None` for anything else (a client's
/// invalid `If-Modified-Since` is ignored, RFC 9110 section 13.1.3).
pub fn parse(text: &[u8]) -> Option<UnixSecs> {
    let s = std::str::from_utf8(text).ok()?.trim();
    let parts: Vec<&str> = s.split(' ').collect();
    match parts.as_slice() {
        // IMF-fixdate: Sun, 06 Nov 1994 08:49:37 GMT
        [wd, d, mo, y, t, "GMT"] if wd.ends_with(',') && wd.len() == 4 => {
            if d.len() != 2 || y.len() != 4 {
                return None;
            }
            assemble(i64::from(num(y)?), month(mo)?, num(d)?, hms(t)?)
        }
        // RFC 850: Sunday, 06-Nov-94 08:49:37 GMT (two-digit years: 70..99 are 19xx)
        [wd, dmy, t, "GMT"] if wd.ends_with(',') => {
            let mut it = dmy.split('-');
            let (d, mo, y) = (it.next()?, it.next()?, it.next()?);
            if it.next().is_some() || d.len() != 2 || y.len() != 2 {
                return None;
            }
            let y = i64::from(num(y)?);
            let y = if y >= 70 { 1900 + y } else { 2000 + y };
            assemble(y, month(mo)?, num(d)?, hms(t)?)
        }
        // asctime: Sun Nov  6 08:49:37 1994 (the day padded with a space)
        [_wd, mo, rest @ ..] => {
            let rest: Vec<&str> = rest.iter().copied().filter(|p| !p.is_empty()).collect();
            let [d, t, y] = rest.as_slice() else {
                return None;
            };
            if y.len() != 4 || d.len() > 2 {
                return None;
            }
            assemble(i64::from(num(y)?), month(mo)?, num(d)?, hms(t)?)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_rfc_example() {
        assert_eq!(&format(784_111_777), b"Sun, 06 Nov 1994 08:49:37 GMT");
        assert_eq!(&format(0), b"Thu, 01 Jan 1970 00:00:00 GMT");
        assert_eq!(&format(951_782_400), b"Tue, 29 Feb 2000 00:00:00 GMT");
    }

    #[test]
    fn parses_all_three_forms() {
        for s in [
            "Sun, 06 Nov 1994 08:49:37 GMT",
            "Sunday, 06-Nov-94 08:49:37 GMT",
            "Sun Nov  6 08:49:37 1994",
        ] {
            assert_eq!(parse(s.as_bytes()), Some(784_111_777), "{s}");
        }
    }

    #[test]
    fn rejects_bad_dates() {
        for s in [
            "",
            "yesterday",
            "Sun, 31 Feb 1994 08:49:37 GMT",
            "Sun, 06 Nov 1994 24:00:00 GMT",
            "Sun, 06 Nov 1994 08:49:37 UTC",
            "Sun, 6 Nov 1994 08:49:37 GMT",
            "Sun, 06 Nov 1969 08:49:37 GMT",
            "Sun, 06 Foo 1994 08:49:37 GMT",
        ] {
            assert_eq!(parse(s.as_bytes()), None, "{s}");
        }
    }

    #[test]
    fn format_and_parse_round_trip() {
        for secs in [0u64, 1, 86_399, 1_700_000_000, 4_102_444_799] {
            assert_eq!(parse(&format(secs)), Some(secs));
        }
    }
}
