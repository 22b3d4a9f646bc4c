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

/// Writes `p` as one line of line protocol (nanosecond timestamp), escaped so that
/// [`parse`] reads back the same table, tags and fields. What line protocol cannot carry
/// is adjusted, not refused: NaN and infinite floats are left out (a point left with no
/// field is not written: `false`), tags with an empty key or value are left out (a missing
/// tag equals an empty one), newlines and tabs in names and tags become spaces, and a
/// trailing backslash (`C:\`) becomes `/`.
pub fn write_line(out: &mut String, p: &Point) -> bool {
    use std::fmt::Write;
    fn escape(out: &mut String, s: &str, specials: &[char]) {
        let body = s.strip_suffix('\\');
        for c in body.unwrap_or(s).chars() {
            let c = if matches!(c, '\n' | '\r' | '\t') {
                ' '
            } else {
                c
            };
            if c == '\\' || specials.contains(&c) {
                out.push('\\');
            }
            out.push(c);
        }
        if body.is_some() {
            out.push('/');
        }
    }
    let fields: Vec<&(String, FieldValue)> = p
        .fields
        .iter()
        .filter(|(_, v)| !matches!(v, FieldValue::F64(x) if !x.is_finite()))
        .collect();
    if fields.is_empty() {
        return false;
    }
    escape(out, &p.table, &[',', ' ']);
    for (k, v) in p
        .tags
        .iter()
        .filter(|(k, v)| !k.is_empty() && !v.is_empty())
    {
        out.push(',');
        escape(out, k, &[',', '=', ' ']);
        out.push('=');
        escape(out, v, &[',', '=', ' ']);
    }
    for (i, (k, v)) in fields.into_iter().enumerate() {
        out.push(if i == 0 { ' ' } else { ',' });
        escape(out, k, &[',', '=', ' ']);
        out.push('=');
        let _ = match v {
            FieldValue::F64(x) => write!(out, "{x:?}"),
            FieldValue::I64(x) => write!(out, "{x}i"),
            FieldValue::U64(x) => write!(out, "{x}u"),
            FieldValue::Bool(x) => write!(out, "{x}"),
            FieldValue::Str(x) => {
                out.push('"');
                for c in x.chars() {
                    if c == '"' || c == '\\' {
                        out.push('\\');
                    }
                    out.push(c);
                }
                out.push('"');
                Ok(())
            }
        };
    }
    let _ = writeln!(out, " {}", p.time);
    true
}

#[cfg(test)]
mod tests {
    #[test]
    fn written_lines_parse_back_to_the_same_points() {
        use strata_engine::{FieldValue, Point};
        let points = [
            Point {
                table: "disk io,x".into(),
                tags: vec![
                    ("path".into(), "C:\\dir with space,=x".into()),
                    ("host".into(), "h\nb\tc".into()),
                    ("mount".into(), "C:\\".into()),
                    ("empty".into(), String::new()),
                ],
                fields: vec![
                    ("used".into(), FieldValue::F64(0.1 + 0.2)),
                    ("nan".into(), FieldValue::F64(f64::NAN)),
                    ("n".into(), FieldValue::I64(-3)),
                    ("u".into(), FieldValue::U64(u64::MAX)),
                    ("ok".into(), FieldValue::Bool(true)),
                    ("s".into(), FieldValue::Str("say \"hi\" \\ bye".into())),
                ],
                time: 1_700_000_000_123_456_789,
                line: 1,
            },
            Point {
                table: "only_nan".into(),
                tags: vec![],
                fields: vec![("v".into(), FieldValue::F64(f64::INFINITY))],
                time: 1,
                line: 2,
            },
        ];
        let mut text = String::new();
        let written: Vec<bool> = points
            .iter()
            .map(|p| super::write_line(&mut text, p))
            .collect();
        assert_eq!(written, [true, false]);
        let (back, errors) = super::parse(&text, super::Precision::Nanosecond, 0);
        assert!(errors.is_empty(), "{errors:?}\n{text}");
        assert_eq!(back.len(), 1);
        let p = &back[0];
        assert_eq!(p.table, "disk io,x");
        let mut tags = p.tags.clone();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("host".to_string(), "h b c".to_string()),
                ("mount".to_string(), "C:/".to_string()),
                ("path".to_string(), "C:\\dir with space,=x".to_string())
            ]
        );
        let mut want = points[0].fields.clone();
        want.retain(|(k, _)| k != "nan");
        let mut got = p.fields.clone();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        assert_eq!(p.time, 1_700_000_000_123_456_789);
    }

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
