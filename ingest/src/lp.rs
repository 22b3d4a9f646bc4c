//! Influx line protocol: a hand-written parser (checked against InfluxData's
//! `influxdb-line-protocol` crate in the tests); line numbers and timestamp precision
//! handled the way InfluxDB 3's write API does.

use std::borrow::Cow;
use std::sync::Arc;

use strata_engine::{FieldValue, Interner, Point, Rows, Tags};

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

/// The shape every line must have, quoted in parse errors.
const EXPECTED: &str =
    "expected `measurement[,tag=value...] field=value[,field=value...] [timestamp]`";

/// The lines of a body: split at newlines outside double-quoted string values (a string
/// field may hold a newline), as InfluxDB splits them. Line numbers count these lines.
pub fn split_lines(body: &str) -> impl Iterator<Item = &str> {
    let bytes = body.as_bytes();
    let (mut start, mut done) = (0, false);
    std::iter::from_fn(move || {
        if done {
            return None;
        }
        let end = line_end(bytes, start);
        // `end` is at a newline or the end: a character boundary.
        let line = &body[start..end];
        if end == bytes.len() {
            done = true;
        } else {
            start = end + 1;
        }
        Some(line)
    })
}

/// Where the line that starts at `start` ends: at its first newline outside a quoted
/// string value and not escaped, or at the end of the body. A line with no quote and no
/// backslash (nearly every line) ends at its first newline, found a word at a time.
fn line_end(b: &[u8], start: usize) -> usize {
    let rest = &b[start..];
    let n = memchr::memchr(b'\n', rest).unwrap_or(rest.len());
    if memchr::memchr2(b'"', b'\\', &rest[..n]).is_none() {
        return start + n;
    }
    let (mut pos, mut quoted) = (start, false);
    while pos < b.len() {
        match b[pos] {
            b'\\' => pos += 1,
            b'"' => quoted = !quoted,
            b'\n' if !quoted => return pos,
            _ => {}
        }
        pos += 1;
    }
    b.len()
}

/// Parses a line-protocol body into points: [`parse_rows`], one point per row.
pub fn parse(body: &str, precision: Precision, default_time: i64) -> (Vec<Point>, Vec<LineError>) {
    let (rows, errors) = parse_rows(body, precision, default_time);
    (rows.into_points(), errors)
}

/// Parses a line-protocol body. Valid lines become rows; each invalid line becomes a
/// [`LineError`] with its 1-based number. Lines without a timestamp get `default_time`.
///
/// A hand-written single pass over the bytes (this is the hottest code of ingestion), that
/// puts each line's values straight into the columns of [`Rows`]: names and tag values are
/// sliced from the body and copied once per request (an [`Interner`] shares them),
/// unescaped only when they contain a backslash; a series (measurement and tags, as
/// written) seen before in the request is looked up whole, not parsed again; field keys
/// are compared with the keys of the block of rows being filled, not copied. The grammar
/// is InfluxDB's: `\` escapes `,` and space in the measurement, `,` `=` and space in tag
/// keys, tag values and field keys, `"` and `\` in string values; field values are floats,
/// `<n>i`, `<n>u`, booleans (`t`/`true`/`f`/`false` in any of InfluxDB's spellings) or
/// quoted strings.
pub fn parse_rows(body: &str, precision: Precision, default_time: i64) -> (Rows, Vec<LineError>) {
    let mut rows = Rows::new();
    let mut errors = Vec::new();
    let mut seen = Seen::default();
    let mut fields = Vec::new();
    for (i, raw) in split_lines(body).enumerate() {
        let line_no = i + 1;
        let text = raw.trim();
        if text.is_empty() || text.starts_with('#') {
            continue;
        }
        match parse_line(
            text,
            precision,
            default_time,
            &mut seen,
            &mut rows,
            &mut fields,
        ) {
            Ok((series, time)) => rows.push_row(series, &mut fields, time, line_no),
            Err(msg) => {
                fields.clear();
                errors.push(LineError::new(line_no, text, msg));
            }
        }
    }
    (rows, errors)
}

/// What the lines of one request have shown so far: names, tag values and series (a
/// series' key is its text, the measurement and tags up to the first unescaped space).
#[derive(Default)]
struct Seen<'a> {
    names: Interner<'a>,
}

/// A line's fields: keys as written, unescaped only when they hold a backslash.
type Fields<'a> = Vec<(Cow<'a, str>, FieldValue)>;

/// One trimmed, non-empty, non-comment line: its series and time; its fields are left in
/// `fields` (empty on entry).
fn parse_line<'a>(
    text: &'a str,
    precision: Precision,
    default_time: i64,
    seen: &mut Seen<'a>,
    rows: &mut Rows,
    fields: &mut Fields<'a>,
) -> Result<(u32, i64), String> {
    let b = text.as_bytes();
    let (series, mut pos) = series(text, seen, rows)?;
    while pos < b.len() && b[pos] == b' ' {
        pos += 1;
    }
    loop {
        let (key, s) = token(text, &mut pos, b",= ");
        if s != Some(b'=') || key.is_empty() {
            return Err(format!("field `{key}` has no `=value` ({EXPECTED})"));
        }
        let key = if key.contains('\\') {
            Cow::Owned(unescape(key))
        } else {
            Cow::Borrowed(key)
        };
        let value = field_value(text, &mut pos).map_err(|e| format!("field `{key}`: {e}"))?;
        fields.push((key, value));
        match b.get(pos) {
            Some(b',') => pos += 1,
            Some(b' ') => break,
            None => break,
            Some(c) => {
                return Err(format!(
                    "unexpected `{}` after the value of field `{}` ({EXPECTED})",
                    *c as char,
                    fields.last().map(|f| &*f.0).unwrap_or_default()
                ));
            }
        }
    }
    while pos < b.len() && b[pos] == b' ' {
        pos += 1;
    }
    let time = if pos == b.len() {
        default_time
    } else {
        let ts_text = &text[pos..];
        let ts: i64 = ts_text
            .parse()
            .map_err(|_| format!("timestamp `{ts_text}` is not an integer ({EXPECTED})"))?;
        precision
            .to_nanos(ts)
            .ok_or_else(|| format!("timestamp {ts} overflows nanoseconds at the given precision"))?
    };
    Ok((series, time))
}

/// The series of a line (its number in `rows`), and the position after the space that
/// ends it: the request's earlier parse of the same text when there is one.
fn series<'a>(text: &'a str, seen: &mut Seen<'a>, rows: &mut Rows) -> Result<(u32, usize), String> {
    if let Some(end) = series_end(text.as_bytes())
        && let Some(id) = seen.names.series(&text[..end])
    {
        return Ok((id, end + 1));
    }
    let mut pos = 0;
    let (table, stop) = token(text, &mut pos, b", ");
    if table.is_empty() {
        return Err(format!("the measurement name is missing ({EXPECTED})"));
    }
    let mut at = 0;
    let table = name(&mut seen.names, &mut at, table);
    let mut tags = Vec::new();
    let mut stop = stop;
    while stop == Some(b',') {
        let (key, s) = token(text, &mut pos, b",= ");
        if s != Some(b'=') || key.is_empty() {
            return Err(format!("tag `{key}` has no `=value` ({EXPECTED})"));
        }
        let (value, s) = token(text, &mut pos, b", ");
        if value.is_empty() {
            return Err(format!(
                "tag `{}` has an empty value ({EXPECTED})",
                unescape(key)
            ));
        }
        tags.push((
            name(&mut seen.names, &mut at, key),
            name(&mut seen.names, &mut at, value),
        ));
        stop = s;
    }
    if stop.is_none() {
        return Err(format!("the line has no fields ({EXPECTED})"));
    }
    let tags: Tags = tags.into();
    let id = rows.add_series(table, tags);
    // `pos` is past the unescaped space that ended the series: what `series_end` finds.
    seen.names.keep_series(&text[..pos - 1], id);
    Ok((id, pos))
}

/// Where the series of a line ends: its first unescaped space.
fn series_end(b: &[u8]) -> Option<usize> {
    let mut i = 0;
    while i < b.len() {
        let at = i + memchr::memchr2(b' ', b'\\', &b[i..])?;
        if b[at] == b' ' {
            return Some(at);
        }
        // A backslash: the byte after it is escaped.
        i = at + 2;
    }
    None
}

/// The bytes from `pos` up to the first unescaped byte of `stops` (or the end), and
/// that byte; `pos` moves past it.
fn token<'a>(text: &'a str, pos: &mut usize, stops: &[u8]) -> (&'a str, Option<u8>) {
    let b = text.as_bytes();
    let start = *pos;
    let mut i = start;
    while i < b.len() {
        let c = b[i];
        if c == b'\\' && i + 1 < b.len() {
            i += 2;
            continue;
        }
        if stops.contains(&c) {
            *pos = i + 1;
            // `i` is at an ASCII byte: a character boundary.
            return (&text[start..i], Some(c));
        }
        i += 1;
    }
    *pos = b.len();
    (&text[start.min(b.len())..], None)
}

/// A name or tag value (the `at`-th of its line; `at` moves on) as a shared string: the
/// request's copy when it has no escapes.
fn name<'a>(names: &mut Interner<'a>, at: &mut usize, raw: &'a str) -> Arc<str> {
    *at += 1;
    if raw.contains('\\') {
        Arc::from(unescape(raw))
    } else {
        names.get_at(*at - 1, raw)
    }
}

/// A name or tag value with its escapes removed: `\` before `,`, `=`, space, `"` or
/// `\` is dropped; any other backslash stays (InfluxDB's rule).
fn unescape(s: &str) -> String {
    if !s.contains('\\') {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len());
    let mut chars = s.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\\'
            && let Some(&n) = chars.peek()
            && matches!(n, ',' | '=' | ' ' | '"' | '\\')
        {
            out.push(n);
            chars.next();
            continue;
        }
        out.push(c);
    }
    out
}

/// A field value starting at `pos`; `pos` ends on the byte after it.
fn field_value(text: &str, pos: &mut usize) -> Result<FieldValue, String> {
    let b = text.as_bytes();
    if b.get(*pos) == Some(&b'"') {
        let mut out = String::new();
        let mut i = *pos + 1;
        let mut run = i;
        while i < b.len() {
            match b[i] {
                b'\\' if matches!(b.get(i + 1), Some(b'"' | b'\\')) => {
                    out.push_str(&text[run..i]);
                    out.push(b[i + 1] as char);
                    i += 2;
                    run = i;
                }
                b'"' => {
                    out.push_str(&text[run..i]);
                    *pos = i + 1;
                    return Ok(FieldValue::Str(out));
                }
                _ => i += 1,
            }
        }
        return Err("the string value has no closing `\"`".into());
    }
    let start = *pos;
    let mut end = start;
    while end < b.len() && b[end] != b',' && b[end] != b' ' {
        end += 1;
    }
    *pos = end;
    let v = &text[start..end];
    let bad = || format!("`{v}` is not a number, `<n>i`, `<n>u`, a boolean or a quoted string");
    match v {
        "" => Err("the value is empty".into()),
        "t" | "T" | "true" | "True" | "TRUE" => Ok(FieldValue::Bool(true)),
        "f" | "F" | "false" | "False" | "FALSE" => Ok(FieldValue::Bool(false)),
        _ => {
            let first = v.as_bytes()[0];
            if !(first.is_ascii_digit() || matches!(first, b'-' | b'+' | b'.')) {
                return Err(bad());
            }
            if let Some(n) = v.strip_suffix('i') {
                n.parse()
                    .map(FieldValue::I64)
                    .map_err(|_| format!("`{v}` is not a 64-bit signed integer"))
            } else if let Some(n) = v.strip_suffix('u') {
                n.parse()
                    .map(FieldValue::U64)
                    .map_err(|_| format!("`{v}` is not a 64-bit unsigned integer"))
            } else {
                match v.parse::<f64>() {
                    Ok(x) if x.is_finite() => Ok(FieldValue::F64(x)),
                    Ok(_) => Err(format!("`{v}` is out of the range of a 64-bit float")),
                    Err(_) => Err(bad()),
                }
            }
        }
    }
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
    let fields: Vec<&(std::sync::Arc<str>, FieldValue)> = p
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
                    ("empty".into(), "".into()),
                ]
                .into(),
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
                tags: Vec::new().into(),
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
        assert_eq!(&*p.table, "disk io,x");
        let mut tags = p.tag_pairs();
        tags.sort();
        assert_eq!(
            tags,
            [
                ("host", "h b c"),
                ("mount", "C:/"),
                ("path", "C:\\dir with space,=x")
            ]
        );
        let mut want = points[0].fields.clone();
        want.retain(|(k, _)| &**k != "nan");
        let mut got = p.fields.clone();
        got.sort_by(|a, b| a.0.cmp(&b.0));
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(got, want);
        assert_eq!(p.time, 1_700_000_000_123_456_789);
    }

    use super::*;

    #[test]
    fn points_of_a_request_share_their_names_and_tag_values() {
        let body = "cpu,host=a,dc=x v=1 1\ncpu,host=b,dc=x v=2 2\ncpu,host=a\\ b,dc=x v=3 3\n\
                    cpu,dc=x,host=a v=4 4\ncpu,host=a,dc=x  w=5i 5\ncpu,host=a\\ b,dc=x v=6 6\n\
                    cpu,host=a,dc=x v=oops 7\ncpu,host=a,dc=x\n";
        let (p, e) = parse(body, Precision::Nanosecond, 0);
        assert!(Arc::ptr_eq(&p[0].table, &p[1].table));
        assert!(Arc::ptr_eq(&p[0].tags[0].0, &p[1].tags[0].0), "tag names");
        assert!(Arc::ptr_eq(&p[0].tags[1].1, &p[1].tags[1].1), "tag values");
        assert!(
            Arc::ptr_eq(&p[0].fields[0].0, &p[1].fields[0].0),
            "field names"
        );
        assert!(!Arc::ptr_eq(&p[0].tags[0].1, &p[1].tags[0].1));
        // An escaped value is unescaped into its own string.
        assert_eq!(&*p[2].tags[0].1, "a b");
        // Seen before, at another place in its line.
        assert!(Arc::ptr_eq(&p[0].tags[0].1, &p[3].tags[1].1));
        assert!(Arc::ptr_eq(&p[0].tags[0].0, &p[3].tags[1].0));
        // A series seen before is shared whole, escaped or not; its fields are its own.
        assert!(Arc::ptr_eq(&p[0].tags, &p[4].tags));
        assert!(Arc::ptr_eq(&p[0].table, &p[4].table));
        assert_eq!(p[4].fields, [("w".into(), FieldValue::I64(5))]);
        assert!(Arc::ptr_eq(&p[2].tags, &p[5].tags));
        assert_eq!(&*p[5].tags[0].1, "a b");
        assert!(!Arc::ptr_eq(&p[0].tags, &p[1].tags));
        // A known series does not excuse a bad field, nor a line without fields.
        assert_eq!(p.len(), 6);
        let lines: Vec<usize> = e.iter().map(|e| e.line_number).collect();
        assert_eq!(lines, [7, 8], "{e:?}");
    }

    #[test]
    fn parses_tags_fields_and_types() {
        let body = "cpu,host=a,dc=x usage_user=1.5,n=3i,u=4u,ok=true,msg=\"hi there\" 1000\n";
        let (pts, errs) = parse(body, Precision::Nanosecond, 0);
        assert!(errs.is_empty(), "{errs:?}");
        let p = &pts[0];
        assert_eq!(&*p.table, "cpu");
        assert_eq!(
            &p.tags[..],
            [("host".into(), "a".into()), ("dc".into(), "x".into())]
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

    /// The reference parser (InfluxData's crate) and ours agree on which lines are valid
    /// and on what the valid ones hold; a line parses the same with its series known.
    #[test]
    fn agrees_with_influxdatas_parser() {
        use influxdb_line_protocol::{FieldValue as Lp, parse_lines};
        let lines = [
            "cpu v=1",
            "cpu,host=a,dc=x usage_user=1.5,n=3i,u=4u,ok=true,msg=\"hi there\" 1000",
            "cpu,host=a  v=1   1000",
            "disk\\ io\\,x,path=C:\\\\dir\\ with\\ space\\,\\=x v=1 5",
            "m s=\"say \\\"hi\\\" \\\\ bye, ok=1\" 7",
            "m b1=t,b2=T,b3=true,b4=True,b5=TRUE,b6=f,b7=F,b8=false,b9=False,b10=FALSE",
            "m x=-1.5e3,y=0.5,z=-3i,w=18446744073709551615u 1",
            "m x=1 -1000",
            "m,t=\u{e9}t\u{e9} \u{fc}=\"\u{fc}ber\" 3",
            "cpu",
            "cpu,host=a",
            "cpu,host= v=1",
            "cpu v=abc 3",
            "cpu v= 3",
            "cpu v=1 12x",
            "cpu v=\"open 1",
            "cpu v=1i2",
            "cpu v=99999999999999999999i",
            "cpu v=-1u",
            "cpu v=nan",
            "cpu v=inf",
            "cpu,=a v=1",
            "cpu =1",
            ",host=a v=1",
            "cpu v=1 1 2",
        ];
        /// The line as a point, parsed in the context of a request.
        fn one<'a>(line: &'a str, seen: &mut Seen<'a>, rows: &mut Rows) -> Result<Point, String> {
            let mut fields = Vec::new();
            let (series, time) =
                super::parse_line(line, Precision::Nanosecond, 0, seen, rows, &mut fields)?;
            rows.push_row(series, &mut fields, time, 1);
            rows.clone().into_points().pop().ok_or("no row".into())
        }
        for line in lines {
            let (mut seen, mut rows) = (Seen::default(), Rows::new());
            let ours = one(line, &mut seen, &mut rows);
            // Again, with its series known.
            let again = one(line, &mut seen, &mut rows);
            assert_eq!(ours, again, "{line}");
            let theirs = parse_lines(line).next().expect("one line");
            match (&ours, &theirs) {
                (
                    Ok(Point {
                        table,
                        tags,
                        fields,
                        time,
                        ..
                    }),
                    Ok(p),
                ) => {
                    assert_eq!(&**table, p.series.measurement.as_str(), "{line}");
                    let want: Vec<(Arc<str>, Arc<str>)> = p
                        .series
                        .tag_set
                        .iter()
                        .flatten()
                        .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
                        .collect();
                    assert_eq!(&tags[..], &want[..], "{line}");
                    let want: Vec<(Arc<str>, FieldValue)> = p
                        .field_set
                        .iter()
                        .map(|(k, v)| {
                            let v = match v {
                                Lp::I64(x) => FieldValue::I64(*x),
                                Lp::U64(x) => FieldValue::U64(*x),
                                Lp::F64(x) => FieldValue::F64(*x),
                                Lp::Boolean(x) => FieldValue::Bool(*x),
                                Lp::String(s) => FieldValue::Str(s.to_string()),
                            };
                            (k.as_str().into(), v)
                        })
                        .collect();
                    assert_eq!(fields, &want, "{line}");
                    assert_eq!(*time, p.timestamp.unwrap_or(0), "{line}");
                }
                (Err(_), Err(_)) => {}
                _ => panic!("{line}: ours {ours:?}, InfluxData's {theirs:?}"),
            }
        }
        let bodies = [
            "a v=1\nb s=\"two\nlines\" 2\r\n\nc v=3",
            "",
            "a v=1\n",
            "a v=1\n\n",
            "a\\\nb v=1\nc v=2",
            "a s=\"x\\\"\ny\" 1\nb v=2",
            "a,t=x\\ y v=1\nb v=2\\",
            "a s=\"open\nb v=1\nc v=2",
            "\n\na v=1",
        ];
        for body in bodies {
            let ours: Vec<&str> = super::split_lines(body).collect();
            let theirs: Vec<&str> = influxdb_line_protocol::split_lines(body).collect();
            assert_eq!(ours, theirs, "{body:?}");
        }
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
