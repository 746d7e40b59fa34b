//! The one duration syntax of every megatcp tool (`--duration`, `--warmup`,
//! `--stats-interval`, `scripts/soak`'s argument): humantime's (`500ms`, `5s`, `2m`,
//! `1h 30m`), a decimal number with one unit (`1.5s`, `0.25ms`), or a bare number of seconds
//! (`5`, `2.5`).

use std::time::Duration;

/// Parses a duration (see the module docs); the error says what is accepted.
pub fn parse(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if let Ok(d) = humantime::parse_duration(t) {
        return Ok(d);
    }
    let split = t.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let scale = match unit {
        "" | "s" | "sec" => 1.0,
        "ms" => 1e-3,
        "us" | "µs" => 1e-6,
        "ns" => 1e-9,
        "m" | "min" => 60.0,
        "h" => 3600.0,
        _ => f64::NAN,
    };
    num.trim()
        .parse::<f64>()
        .ok()
        .map(|v| v * scale)
        .and_then(|v| Duration::try_from_secs_f64(v).ok())
        .ok_or_else(|| {
            format!("bad duration {s:?}: use e.g. 500ms, 5s, 1.5s, 2m, 1h 30m (a bare number is seconds)")
        })
}

/// [`parse`], in seconds (for flags kept as `f64` seconds).
pub fn parse_secs(s: &str) -> Result<f64, String> {
    parse(s).map(|d| d.as_secs_f64())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_form_parses() {
        let ms = Duration::from_millis;
        assert_eq!(parse("500ms"), Ok(ms(500)));
        assert_eq!(parse("5s"), Ok(ms(5000)));
        assert_eq!(parse("1.5s"), Ok(ms(1500)));
        assert_eq!(parse("2m"), Ok(ms(120_000)));
        assert_eq!(parse("1h 30m"), Ok(ms(5_400_000)));
        assert_eq!(parse("5"), Ok(ms(5000)));
        assert_eq!(parse("0.25"), Ok(ms(250)));
        assert_eq!(parse("0s"), Ok(ms(0)));
        for bad in ["", "x", "-1s", "5 parsecs", "1e400", "NaN"] {
            assert!(parse(bad).is_err(), "{bad}");
        }
    }
}
