//! Durations as people write them in SQL, config files and flags: `30s`, `5m`, `1h30m`,
//! `250ms`, `7d`, `2w`. One parser for every place so they all accept the same words.
//! Points in time likewise: RFC 3339, or relative to now (`now`, `now-6h`, `-6h`).

use std::time::Duration;

/// Parses a duration: one or more `<integer><unit>` parts (`ms`, `s`, `m`, `h`, `d`, `w`);
/// a bare integer means seconds. The error says what was wrong.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("an empty string is not a duration (write e.g. 30s, 5m, 1h30m)".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit()) {
        return t
            .parse::<u64>()
            .map(Duration::from_secs)
            .map_err(|_| format!("`{s}` is too large a duration"));
    }
    let mut total = Duration::ZERO;
    let mut rest = t;
    while !rest.is_empty() {
        let digits = rest
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(rest.len());
        if digits == 0 {
            return Err(format!("`{s}` is not a duration like 30s, 5m or 1h30m"));
        }
        let n: u64 = rest[..digits]
            .parse()
            .map_err(|_| format!("`{s}` is too large a duration"))?;
        rest = &rest[digits..];
        let unit_len = rest
            .find(|c: char| c.is_ascii_digit())
            .unwrap_or(rest.len());
        let unit = &rest[..unit_len];
        rest = &rest[unit_len..];
        let secs = |m: u64| Duration::from_secs(n.saturating_mul(m));
        let part = match unit {
            "ms" => Duration::from_millis(n),
            "s" => secs(1),
            "m" => secs(60),
            "h" => secs(3600),
            "d" => secs(86_400),
            "w" => secs(7 * 86_400),
            other => {
                return Err(format!(
                    "unknown duration unit `{other}` in `{s}` (use ms, s, m, h, d, w)"
                ));
            }
        };
        total = total
            .checked_add(part)
            .ok_or_else(|| format!("`{s}` is too large a duration"))?;
    }
    Ok(total)
}

/// Parses a point in time: RFC 3339 (`2026-11-30T08:00:00Z`, any offset), `now`, or now
/// minus a duration (`now-6h`, `-6h`). Returns ns since the epoch.
pub fn parse_time(s: &str, now_ns: i64) -> Result<i64, String> {
    let t = s.trim();
    if t.eq_ignore_ascii_case("now") {
        return Ok(now_ns);
    }
    let ago = if t.get(..3).is_some_and(|p| p.eq_ignore_ascii_case("now")) {
        t[3..].trim_start()
    } else {
        t
    };
    if let Some(d) = ago.strip_prefix('-') {
        let d = parse_duration(d.trim()).map_err(|e| format!("`{s}`: {e}"))?;
        let ns = i64::try_from(d.as_nanos()).map_err(|_| format!("`{s}` is too far back"))?;
        return Ok(now_ns.saturating_sub(ns));
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .ok()
        .and_then(|x| x.timestamp_nanos_opt())
        .ok_or_else(|| {
            format!("`{s}` is not a time: use RFC 3339 (2026-11-30T08:00:00Z), now, or now-6h")
        })
}

/// Formats a duration the way [`parse_duration`] reads it (`1h30m`, `250ms`, `0s`).
pub fn format_duration(d: Duration) -> String {
    let ms = d.as_millis();
    if ms == 0 {
        return "0s".into();
    }
    if !ms.is_multiple_of(1000) {
        return format!("{ms}ms");
    }
    let mut secs = ms / 1000;
    let mut out = String::new();
    for (unit, len) in [("d", 86_400), ("h", 3600), ("m", 60), ("s", 1)] {
        if secs >= len {
            out.push_str(&format!("{}{unit}", secs / len));
            secs %= len;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_simple_and_compound_durations() {
        assert_eq!(parse_duration("10m"), Ok(Duration::from_secs(600)));
        assert_eq!(parse_duration("250ms"), Ok(Duration::from_millis(250)));
        assert_eq!(parse_duration("1h30m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("45"), Ok(Duration::from_secs(45)));
        assert_eq!(parse_duration(" 2w "), Ok(Duration::from_secs(14 * 86_400)));
        let e = parse_duration("3 fortnights").expect_err("bad unit");
        assert!(e.contains("unknown duration unit"), "{e}");
        assert!(parse_duration("m5").is_err());
        assert!(parse_duration("").is_err());
    }

    #[test]
    fn formats_what_it_parses() {
        for s in ["0s", "250ms", "1h30m", "2d", "5m10s"] {
            let d = parse_duration(s).expect("parse");
            assert_eq!(format_duration(d), s);
        }
    }

    #[test]
    fn parses_absolute_and_relative_times() {
        let now = 1_700_000_000_000_000_000;
        assert_eq!(parse_time("now", now), Ok(now));
        assert_eq!(parse_time("now-1h", now), Ok(now - 3_600_000_000_000));
        assert_eq!(parse_time("-30s", now), Ok(now - 30_000_000_000));
        assert_eq!(parse_time("Now - 1m", now), Ok(now - 60_000_000_000));
        assert!(parse_time("now-18446744073709551615s1s", now).is_err());
        assert_eq!(
            parse_time("2023-11-14T22:13:20Z", 0),
            Ok(1_700_000_000_000_000_000)
        );
        assert_eq!(
            parse_time("2023-11-14T23:13:20+01:00", 0),
            Ok(1_700_000_000_000_000_000)
        );
        let e = parse_time("yesterday", now).expect_err("not a time");
        assert!(e.contains("RFC 3339"), "{e}");
        let e = parse_time("now-3x", now).expect_err("bad unit");
        assert!(e.contains("unknown duration unit"), "{e}");
    }
}
