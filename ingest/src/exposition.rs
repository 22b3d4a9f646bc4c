//! The Prometheus text exposition format (0.0.4) and OpenMetrics 1.0 text, as served on
//! `/metrics` endpoints.
//!
//! Written here rather than taken from a crate: the one permissively licensed crate
//! (`prometheus-parse` 0.2.5) splits label sets on `,` and `=` (so `{path="/a,b"}` is
//! stored wrong), rejects `:` in metric names and skips malformed lines silently;
//! `openmetrics-parser` is LGPL-3.0. This parser is one pass over the text, borrows
//! until a point is built, and reports every bad line with its number.
//!
//! Mapping (DESIGN.md): every sample becomes a point in the table named after the
//! sample (`node_cpu_seconds_total`, `http_duration_seconds_bucket`, `…_sum`,
//! `…_count`), labels become tags (an empty value is a missing tag), the value is the
//! f64 field `value`. Histograms and summaries therefore stay plain SQL tables (`le` and
//! `quantile` are tags). Labels Strata cannot store as tags are mapped the same way in
//! every Prometheus-family decoder ([`tag_name`]). OpenMetrics `_created` samples and
//! exemplars are not stored (a creation time is not a measurement; Prometheus 2.42 stores
//! `_created` as a series of its own, which only clutters SQL).

use std::collections::HashMap;

use strata_engine::{FieldValue, Point};

use crate::{LineError, MAX_LABEL_VALUE_BYTES};

/// The field every Prometheus sample is stored in.
pub const VALUE_FIELD: &str = "value";

/// The tag a Prometheus label is stored as: `None` for `__`-prefixed (internal) labels,
/// which Prometheus also removes before storage; `time` and `value`, which name the
/// timestamp and the sample's field here, become `exported_time` / `exported_value`.
pub fn tag_name(label: String) -> Option<String> {
    if label.starts_with("__") {
        return None;
    }
    Some(match label.as_str() {
        "time" | "value" => format!("exported_{label}"),
        _ => label,
    })
}

/// A token quoted in an error, cut to a readable length.
pub(crate) fn quote(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        s.to_string()
    } else {
        format!("{}…", &s[..s.floor_char_boundary(MAX)])
    }
}

/// Which text variant the body is; chosen from the response's `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `text/plain; version=0.0.4`: timestamps are integer milliseconds.
    Prometheus,
    /// `application/openmetrics-text`: timestamps are seconds (with a fraction), `# EOF`
    /// ends the body.
    OpenMetrics,
}

impl Dialect {
    pub fn from_content_type(content_type: &str) -> Self {
        if content_type
            .trim_start()
            .to_ascii_lowercase()
            .starts_with("application/openmetrics-text")
        {
            Self::OpenMetrics
        } else {
            Self::Prometheus
        }
    }
}

/// What one body decoded to.
#[derive(Debug, Default)]
pub struct Exposition {
    pub points: Vec<Point>,
    /// Bad lines, each with its number; the other lines are still decoded.
    pub errors: Vec<LineError>,
    /// `# TYPE` of each metric family seen.
    pub types: HashMap<String, String>,
    /// OpenMetrics `_created` samples that were dropped.
    pub created_dropped: usize,
}

/// Decodes `text`. Samples without a timestamp (or all samples, unless
/// `honor_timestamps`) get `default_time` (nanoseconds).
pub fn parse(
    text: &str,
    dialect: Dialect,
    default_time: i64,
    honor_timestamps: bool,
) -> Exposition {
    let mut out = Exposition::default();
    for (i, raw) in text.split('\n').enumerate() {
        let number = i + 1;
        let line = raw.strip_suffix('\r').unwrap_or(raw);
        let trimmed = line.trim();
        if trimmed.is_empty() {
            continue;
        }
        if let Some(comment) = trimmed.strip_prefix('#') {
            if dialect == Dialect::OpenMetrics && comment.trim() == "EOF" {
                break;
            }
            let mut words = comment.split_whitespace();
            if words.next() == Some("TYPE")
                && let (Some(name), Some(kind)) = (words.next(), words.next())
            {
                out.types
                    .insert(name.to_string(), kind.to_ascii_lowercase());
            }
            continue;
        }
        match sample(trimmed, dialect) {
            Ok(s) => {
                if dialect == Dialect::OpenMetrics && is_created(s.name, &out.types) {
                    out.created_dropped += 1;
                    continue;
                }
                let time = match s.timestamp {
                    Some(t) if honor_timestamps => t,
                    _ => default_time,
                };
                let openmetrics = dialect == Dialect::OpenMetrics;
                out.points.push(Point {
                    table: s.name.into(),
                    tags: s
                        .labels
                        .into_iter()
                        .filter(|(_, v)| !v.is_empty())
                        .filter_map(|(k, v)| {
                            let v = if openmetrics && (k == "le" || k == "quantile") {
                                normalize_float(v)
                            } else {
                                v
                            };
                            Some((tag_name(k)?.into(), v.into()))
                        })
                        .collect(),
                    fields: vec![(VALUE_FIELD.into(), FieldValue::F64(s.value))],
                    time,
                    line: number,
                });
            }
            Err(e) => out.errors.push(LineError::new(number, line, e)),
        }
    }
    out
}

/// OpenMetrics writes bucket bounds and quantiles as `1.0`; Prometheus' text format as
/// `1`. Normalised (as Prometheus does) so one histogram has one `le` whatever format
/// its target chose.
fn normalize_float(v: String) -> String {
    match v.parse::<f64>() {
        Ok(f) if !f.is_nan() => float_label(f),
        _ => v,
    }
}

/// A bucket bound or quantile as a label value, the way Prometheus writes it: `0.5`,
/// `1`, `+Inf`.
pub(crate) fn float_label(f: f64) -> String {
    if f == f64::INFINITY {
        "+Inf".into()
    } else if f == f64::NEG_INFINITY {
        "-Inf".into()
    } else {
        f.to_string()
    }
}

/// `foo_created` of a counter, histogram or summary family `foo`.
fn is_created(name: &str, types: &HashMap<String, String>) -> bool {
    name.strip_suffix("_created").is_some_and(|family| {
        types.get(family).is_some_and(|t| {
            matches!(
                t.as_str(),
                "counter" | "histogram" | "gaugehistogram" | "summary"
            )
        })
    })
}

struct Sample<'a> {
    name: &'a str,
    labels: Vec<(String, String)>,
    value: f64,
    /// Nanoseconds.
    timestamp: Option<i64>,
}

fn is_name_start(c: u8) -> bool {
    c.is_ascii_alphabetic() || c == b'_' || c == b':'
}

fn is_name_char(c: u8) -> bool {
    c.is_ascii_alphanumeric() || c == b'_' || c == b':'
}

/// One sample line: `name{label="value",…} value [timestamp] [# exemplar]`.
fn sample(line: &str, dialect: Dialect) -> Result<Sample<'_>, String> {
    let b = line.as_bytes();
    if !b.first().copied().is_some_and(is_name_start) {
        return Err(
            "a sample line must start with a metric name ([a-zA-Z_:][a-zA-Z0-9_:]*)".into(),
        );
    }
    let mut i = 1;
    while i < b.len() && is_name_char(b[i]) {
        i += 1;
    }
    let name = &line[..i];
    let mut labels = Vec::new();
    if b.get(i) == Some(&b'{') {
        i = label_set(line, i + 1, &mut labels)?;
    }
    let rest = &line[i..];
    if !rest.starts_with([' ', '\t']) {
        return Err(format!(
            "expected a space and the value after `{}`",
            quote(&line[..i])
        ));
    }
    // An OpenMetrics exemplar follows ` # `; it is not stored.
    let rest = match rest.find(" # ") {
        Some(at) if dialect == Dialect::OpenMetrics => &rest[..at],
        _ => rest,
    };
    let mut words = rest.split_whitespace();
    let value_text = words.next().ok_or("the sample has no value")?;
    let value = parse_value(value_text)?;
    let timestamp = match words.next() {
        None => None,
        Some(t) => Some(parse_timestamp(t, dialect)?),
    };
    if let Some(extra) = words.next() {
        return Err(format!("unexpected `{}` after the timestamp", quote(extra)));
    }
    Ok(Sample {
        name,
        labels,
        value,
        timestamp,
    })
}

/// Parses labels from just after `{` through `}`; returns the index after `}`.
fn label_set(
    line: &str,
    mut i: usize,
    labels: &mut Vec<(String, String)>,
) -> Result<usize, String> {
    let b = line.as_bytes();
    loop {
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        match b.get(i) {
            None => return Err("the label set has no closing `}`".into()),
            Some(b'}') => return Ok(i + 1),
            Some(&c) if is_name_start(c) && c != b':' => {}
            Some(_) => {
                return Err(format!(
                    "expected a label name at column {} ([a-zA-Z_][a-zA-Z0-9_]*)",
                    i + 1
                ));
            }
        }
        let start = i;
        while i < b.len() && is_name_char(b[i]) && b[i] != b':' {
            i += 1;
        }
        let name = &line[start..i];
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'=') {
            return Err(format!("expected `=` after label name `{name}`"));
        }
        i += 1;
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        if b.get(i) != Some(&b'"') {
            return Err(format!(
                "the value of label `{name}` must be in double quotes"
            ));
        }
        i += 1;
        let mut value = String::new();
        let mut start = i;
        loop {
            match b.get(i) {
                None => return Err(format!("the value of label `{name}` has no closing quote")),
                Some(b'"') => {
                    value.push_str(&line[start..i]);
                    i += 1;
                    break;
                }
                Some(b'\\') => {
                    value.push_str(&line[start..i]);
                    let step = match b.get(i + 1) {
                        Some(b'n') => {
                            value.push('\n');
                            2
                        }
                        Some(c @ (b'\\' | b'"')) => {
                            value.push(char::from(*c));
                            2
                        }
                        // Other escapes are kept as written (`C:\Windows`), as Prometheus
                        // does: the backslash here, the next character with the rest.
                        Some(_) => {
                            value.push('\\');
                            1
                        }
                        None => {
                            return Err(format!(
                                "the value of label `{name}` has no closing quote"
                            ));
                        }
                    };
                    i += step;
                    start = i;
                }
                Some(_) => i += 1,
            }
        }
        if value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "the value of label `{name}` is {} bytes, over the limit of {MAX_LABEL_VALUE_BYTES}",
                value.len()
            ));
        }
        if labels.iter().any(|(n, _)| n == name) {
            return Err(format!("label `{name}` appears twice"));
        }
        labels.push((name.to_string(), value));
        while i < b.len() && (b[i] == b' ' || b[i] == b'\t') {
            i += 1;
        }
        match b.get(i) {
            Some(b',') => i += 1,
            Some(b'}') => return Ok(i + 1),
            _ => return Err(format!("expected `,` or `}}` after label `{name}`")),
        }
    }
}

fn parse_value(s: &str) -> Result<f64, String> {
    match s {
        "+Inf" | "Inf" | "+inf" | "inf" => return Ok(f64::INFINITY),
        "-Inf" | "-inf" => return Ok(f64::NEG_INFINITY),
        "NaN" | "nan" => return Ok(f64::NAN),
        _ => {}
    }
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite())
        .ok_or_else(|| format!("`{}` is not a number", quote(s)))
}

fn parse_timestamp(s: &str, dialect: Dialect) -> Result<i64, String> {
    let ns = match dialect {
        Dialect::Prometheus => s
            .parse::<i64>()
            .ok()
            .and_then(|ms| ms.checked_mul(1_000_000)),
        Dialect::OpenMetrics => seconds_to_nanos(s),
    };
    ns.ok_or_else(|| match dialect {
        Dialect::Prometheus => format!(
            "timestamp `{}` is not integer milliseconds in range",
            quote(s)
        ),
        Dialect::OpenMetrics => format!("timestamp `{}` is not seconds in range", quote(s)),
    })
}

/// `1520879607.789` → nanoseconds, exactly for plain decimals (an f64 would turn .789
/// into .788999936); exponent forms go through f64.
fn seconds_to_nanos(s: &str) -> Option<i64> {
    if s.contains(['e', 'E']) {
        return s
            .parse::<f64>()
            .ok()
            .map(|secs| secs * 1e9)
            .filter(|ns| ns.is_finite() && ns.abs() < 9.2e18)
            .map(|ns| ns.round() as i64);
    }
    let (negative, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s.strip_prefix('+').unwrap_or(s)),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    if (whole.is_empty() && frac.is_empty())
        || !whole.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = if whole.is_empty() {
        0
    } else {
        whole.parse().ok()?
    };
    let mut nanos: i64 = 0;
    for (i, b) in frac.bytes().take(9).enumerate() {
        nanos += i64::from(b - b'0') * 10_i64.pow(8 - i as u32);
    }
    let total = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if negative { -total } else { total })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn one(line: &str) -> Result<Point, String> {
        let mut e = parse(line, Dialect::Prometheus, 7, true);
        match e.errors.pop() {
            Some(err) => Err(err.error_message),
            None => Ok(e.points.remove(0)),
        }
    }

    #[test]
    fn node_exporter_page_decodes_completely() {
        let text = include_str!("../tests/data/node_exporter_1.5.txt");
        let e = parse(text, Dialect::Prometheus, 1_000, true);
        assert!(e.errors.is_empty(), "{:?}", e.errors.first());
        let samples = text
            .lines()
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .count();
        assert_eq!(e.points.len(), samples);
        assert_eq!(
            e.types.get("node_cpu_seconds_total").map(String::as_str),
            Some("counter")
        );
        let cpu: Vec<&Point> = e
            .points
            .iter()
            .filter(|p| &*p.table == "node_cpu_seconds_total")
            .collect();
        assert!(!cpu.is_empty());
        for p in &cpu {
            let tags: Vec<&str> = p.tags.iter().map(|(k, _)| &**k).collect();
            assert_eq!(tags, ["cpu", "mode"]);
            assert_eq!(p.time, 1_000);
        }
        // A summary keeps `quantile` as a tag and its _sum/_count as own tables.
        let q: Vec<&Point> = e
            .points
            .iter()
            .filter(|p| &*p.table == "go_gc_duration_seconds")
            .collect();
        assert_eq!(q.len(), 5);
        assert_eq!(q[0].tag_pairs(), [("quantile", "0")]);
        assert!(
            e.points
                .iter()
                .any(|p| &*p.table == "go_gc_duration_seconds_count")
        );
    }

    #[test]
    fn labels_with_separators_escapes_and_spaces() {
        let p = one(r#"http_requests_total{path="/a,b=c}",msg="say \"hi\"\n", code = "200" ,} 1027 1395066363000"#)
            .expect("parses");
        assert_eq!(&*p.table, "http_requests_total");
        assert_eq!(
            p.tag_pairs(),
            [
                ("path", "/a,b=c}"),
                ("msg", "say \"hi\"\n"),
                ("code", "200"),
            ]
        );
        assert_eq!(p.field_pairs(), [("value", &FieldValue::F64(1027.0))]);
        assert_eq!(p.time, 1_395_066_363_000_000_000);
        let p = one(r#"w{path="C:\Windows\n",time="t",value="v",__meta="m"} 1"#).expect("escapes");
        assert_eq!(
            p.tag_pairs(),
            [
                ("path", "C:\\Windows\n"),
                ("exported_time", "t"),
                ("exported_value", "v"),
            ]
        );
        let p = one("job:rate5m:sum{empty=\"\"} -Inf").expect("recording-rule name");
        assert_eq!(&*p.table, "job:rate5m:sum");
        assert!(p.tags.is_empty(), "an empty label is a missing tag");
        assert_eq!(p.time, 7);
        assert!(matches!(one("x NaN").expect("nan").fields[0].1, FieldValue::F64(v) if v.is_nan()));
        assert_eq!(
            one("x 1.5e3").expect("exp").fields[0].1,
            FieldValue::F64(1500.0)
        );
    }

    #[test]
    fn openmetrics_seconds_exemplars_created_and_eof() {
        let text = "# TYPE foo counter\n\
                    foo_total{a=\"1\"} 17.0 1520879607.789 # {trace_id=\"KOO5S4vxi0o\"} 0.67\n\
                    foo_created{a=\"1\"} 1520430000.123\n\
                    # TYPE bar histogram\n\
                    bar_bucket{le=\"+Inf\"} 3\n\
                    # EOF\n\
                    after_eof 1\n";
        let e = parse(text, Dialect::OpenMetrics, 0, true);
        assert!(e.errors.is_empty(), "{:?}", e.errors);
        assert_eq!(e.created_dropped, 1);
        let names: Vec<&str> = e.points.iter().map(|p| &*p.table).collect();
        assert_eq!(names, ["foo_total", "bar_bucket"]);
        assert_eq!(e.points[0].time, 1_520_879_607_789_000_000);
        assert_eq!(e.points[1].tag_pairs(), [("le", "+Inf")]);
        // Timestamps not honoured: the scrape time is used.
        let e = parse(text, Dialect::OpenMetrics, 5, false);
        assert_eq!(e.points[0].time, 5);
        assert_eq!(seconds_to_nanos("1.5e3"), Some(1_500_000_000_000));
        assert_eq!(seconds_to_nanos("-0.000000001"), Some(-1));
        assert_eq!(seconds_to_nanos(".5"), Some(500_000_000));
        assert_eq!(seconds_to_nanos("1.2.3"), None);
        assert_eq!(seconds_to_nanos("99999999999999999999"), None);
    }

    #[test]
    fn malformed_lines_are_reported_and_the_rest_kept() {
        let huge = "v".repeat(MAX_LABEL_VALUE_BYTES + 1);
        let text = format!(
            "ok 1\n\
             9bad 1\n\
             x{{a=\"1\" 2\n\
             x{{a=1}} 2\n\
             x{{a=\"1\",a=\"2\"}} 2\n\
             x{{a=\"1\"}}2\n\
             x 1 2 3\n\
             x abc\n\
             x\n\
             x 1 12.5\n\
             x{{big=\"{huge}\"}} 1\n\
             x{{a=\"unterminated\n\
             also_ok{{a=\"b\"}} 2\n"
        );
        let e = parse(&text, Dialect::Prometheus, 0, true);
        let lines: Vec<usize> = e.errors.iter().map(|e| e.line_number).collect();
        assert_eq!(lines, (2..=12).collect::<Vec<_>>());
        let msgs: Vec<&str> = e.errors.iter().map(|e| e.error_message.as_str()).collect();
        assert!(
            msgs[0].contains("must start with a metric name"),
            "{}",
            msgs[0]
        );
        assert!(msgs[1].contains("expected `,` or `}`"), "{}", msgs[1]);
        assert!(msgs[2].contains("double quotes"), "{}", msgs[2]);
        assert!(msgs[3].contains("appears twice"), "{}", msgs[3]);
        assert!(msgs[4].contains("expected a space"), "{}", msgs[4]);
        assert!(msgs[5].contains("unexpected `3`"), "{}", msgs[5]);
        assert!(msgs[6].contains("`abc` is not a number"), "{}", msgs[6]);
        assert!(msgs[7].contains("value"), "{}", msgs[7]);
        assert!(msgs[8].contains("integer milliseconds"), "{}", msgs[8]);
        assert!(msgs[9].contains("over the limit of"), "{}", msgs[9]);
        assert!(
            e.errors[9].original_line.len() < 300,
            "quoted lines are cut"
        );
        assert!(msgs[10].contains("no closing quote"), "{}", msgs[10]);
        let names: Vec<&str> = e.points.iter().map(|p| &*p.table).collect();
        assert_eq!(names, ["ok", "also_ok"]);
    }

    #[test]
    fn arbitrary_bytes_never_panic() {
        // Every prefix of a real page (cuts inside labels, escapes and numbers).
        let text = include_str!("../tests/data/node_exporter_1.5.txt");
        let page = &text[..text.floor_char_boundary(6000)];
        for cut in 0..page.len() {
            if page.is_char_boundary(cut) {
                let _ = parse(&page[..cut], Dialect::OpenMetrics, 0, true);
                let _ = parse(&page[..cut], Dialect::Prometheus, 0, true);
            }
        }
    }
}
