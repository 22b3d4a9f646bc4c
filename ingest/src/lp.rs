//! Influx line protocol, parsed with InfluxData's `influxdb-line-protocol` crate; line
//! numbers and timestamp precision handled here the way InfluxDB 3's write API does.

use influxdb_line_protocol::{FieldValue as LpValue, parse_lines, split_lines};
use strata_engine::{FieldValue, Point};

use crate::LineError;

/// Timestamp precision of a write request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Precision {
    /// Guess from the magnitude (InfluxDB 3's default for `/api/v3/write_lp`).
    Auto,
    Nanosecond,
    Microsecond,
    Millisecond,
    Second,
    Minute,
    Hour,
}

impl Precision {
    /// Parses the `precision` query parameter; accepts the v3 names
    /// (`nanosecond`, …, `auto`) and the v1/v2 ones (`ns`, `n`, `us`, `u`, `ms`, `s`, `m`, `h`).
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "auto" => Self::Auto,
            "ns" | "n" | "nanosecond" | "nanoseconds" => Self::Nanosecond,
            "us" | "u" | "µs" | "microsecond" | "microseconds" => Self::Microsecond,
            "ms" | "millisecond" | "milliseconds" => Self::Millisecond,
            "s" | "second" | "seconds" => Self::Second,
            "m" | "minute" | "minutes" => Self::Minute,
            "h" | "hour" | "hours" => Self::Hour,
            _ => return None,
        })
    }

    /// Converts a timestamp in this precision to nanoseconds; `None` on overflow.
    pub fn to_nanos(self, ts: i64) -> Option<i64> {
        let mult: i64 = match self {
            Self::Auto => return Some(auto_to_nanos(ts)),
            Self::Nanosecond => 1,
            Self::Microsecond => 1_000,
            Self::Millisecond => 1_000_000,
            Self::Second => 1_000_000_000,
            Self::Minute => 60_000_000_000,
            Self::Hour => 3_600_000_000_000,
        };
        ts.checked_mul(mult)
    }
}

/// InfluxDB 3's guess: by the number of digits, seconds < 5e9 ≤ ms < 5e12 ≤ µs < 5e15 ≤ ns.
fn auto_to_nanos(ts: i64) -> i64 {
    let a = ts.unsigned_abs();
    if a < 5_000_000_000 {
        ts.saturating_mul(1_000_000_000)
    } else if a < 5_000_000_000_000 {
        ts.saturating_mul(1_000_000)
    } else if a < 5_000_000_000_000_000 {
        ts.saturating_mul(1_000)
    } else {
        ts
    }
}

/// Parses a line-protocol body. Valid lines become points; each invalid line becomes a
/// [`LineError`] with its 1-based number. Lines without a timestamp get `default_time`.
pub fn parse(body: &str, precision: Precision, default_time: i64) -> (Vec<Point>, Vec<LineError>) {
    let mut points = Vec::new();
    let mut errors = Vec::new();
    for (i, raw) in split_lines(body).enumerate() {
        let line_no = i + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        let parsed = match parse_lines(text).next() {
            Some(Ok(p)) => p,
            Some(Err(e)) => {
                let msg = e.to_string();
                let msg = if msg.starts_with("A generic parsing error occurred") {
                    format!(
                        "not valid line protocol, expected `measurement[,tag=value...] field=value[,field=value...] [timestamp]` ({msg})"
                    )
                } else {
                    msg
                };
                errors.push(LineError::new(line_no, text, msg));
                continue;
            }
            None => continue,
        };
        let time = match parsed.timestamp {
            None => default_time,
            Some(ts) => match precision.to_nanos(ts) {
                Some(t) => t,
                None => {
                    errors.push(LineError::new(
                        line_no,
                        text,
                        format!("timestamp {ts} overflows nanoseconds at the given precision"),
                    ));
                    continue;
                }
            },
        };
        let tags = parsed
            .series
            .tag_set
            .iter()
            .flatten()
            .map(|(k, v)| (k.as_str().to_string(), v.as_str().to_string()))
            .collect();
        let fields = parsed
            .field_set
            .iter()
            .map(|(k, v)| {
                let v = match v {
                    LpValue::I64(x) => FieldValue::I64(*x),
                    LpValue::U64(x) => FieldValue::U64(*x),
                    LpValue::F64(x) => FieldValue::F64(*x),
                    LpValue::Boolean(x) => FieldValue::Bool(*x),
                    LpValue::String(s) => FieldValue::Str(s.as_str().to_string()),
                };
                (k.as_str().to_string(), v)
            })
            .collect();
        points.push(Point {
            table: parsed.series.measurement.as_str().to_string(),
            tags,
            fields,
            time,
            line: line_no,
        });
    }
    (points, errors)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_tags_fields_and_types() {
        let body = "cpu,host=a,dc=x usage_user=1.5,n=3i,u=4u,ok=true,msg=\"hi there\" 1000\n";
        let (pts, errs) = parse(body, Precision::Nanosecond, 0);
        assert!(errs.is_empty(), "{errs:?}");
        let p = &pts[0];
        assert_eq!(p.table, "cpu");
        assert_eq!(
            p.tags,
            vec![("host".into(), "a".into()), ("dc".into(), "x".into())]
        );
        assert_eq!(p.fields[0], ("usage_user".into(), FieldValue::F64(1.5)));
        assert_eq!(p.fields[1], ("n".into(), FieldValue::I64(3)));
        assert_eq!(p.fields[2], ("u".into(), FieldValue::U64(4)));
        assert_eq!(p.fields[3], ("ok".into(), FieldValue::Bool(true)));
        assert_eq!(
            p.fields[4],
            ("msg".into(), FieldValue::Str("hi there".into()))
        );
        assert_eq!(p.time, 1000);
    }

    #[test]
    fn bad_lines_are_numbered_and_good_ones_kept() {
        let body = "cpu v=1 1\n\n# comment\ncpu\ncpu v=2 2\ncpu v=abc 3\n";
        let (pts, errs) = parse(body, Precision::Nanosecond, 0);
        assert_eq!(pts.len(), 2);
        assert_eq!(pts[1].line, 5);
        let lines: Vec<usize> = errs.iter().map(|e| e.line_number).collect();
        assert_eq!(lines, vec![4, 6]);
        assert_eq!(errs[0].original_line, "cpu");
        let (_, errs) = parse("broken", Precision::Nanosecond, 0);
        assert!(
            errs[0].error_message.contains("expected `measurement"),
            "{errs:?}"
        );
    }

    #[test]
    fn precision_scales_and_defaults() {
        let (pts, _) = parse("m v=1 2\nm v=1", Precision::Second, 77);
        assert_eq!(pts[0].time, 2_000_000_000);
        assert_eq!(pts[1].time, 77);
        assert_eq!(
            Precision::Auto.to_nanos(1_700_000_000),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(
            Precision::Auto.to_nanos(1_700_000_000_000),
            Some(1_700_000_000_000_000_000)
        );
        assert_eq!(Precision::parse("ms"), Some(Precision::Millisecond));
        assert_eq!(
            Precision::parse("millisecond"),
            Some(Precision::Millisecond)
        );
        assert_eq!(Precision::parse("fortnight"), None);
        let (_, errs) = parse("m v=1 9223372036854775807", Precision::Second, 0);
        assert!(errs[0].error_message.contains("overflows"), "{errs:?}");
    }
}
