//! The seed JSON model: `{"metric_name": …, "timestamp": <ms>, "value": <number>,
//! "labels": {…}}`, one object, an array of them, or NDJSON (one per line). Each object
//! is one point of table `metric_name` with tags from `labels` and one f64 field `value`.

use serde_json::Value;
use strata_engine::{FieldValue, Point};

use crate::LineError;

/// Parses a body in the seed JSON model. Element numbers (1-based; the line number for
/// NDJSON) identify bad elements in errors; good elements are kept.
pub fn parse(body: &str) -> (Vec<Point>, Vec<LineError>) {
    let trimmed = body.trim_start();
    let mut points = Vec::new();
    let mut errors = Vec::new();
    if trimmed.starts_with('[') {
        match serde_json::from_str::<Vec<Value>>(body) {
            Ok(items) => {
                for (i, v) in items.iter().enumerate() {
                    push(&mut points, &mut errors, i + 1, v, || v.to_string());
                }
            }
            Err(e) => errors.push(LineError::new(
                e.line(),
                "",
                format!("body is not a valid JSON array: {e}"),
            )),
        }
        return (points, errors);
    }
    for (i, line) in body.lines().enumerate() {
        let text = line.trim();
        if text.is_empty() {
            continue;
        }
        match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => {
                for v in &items {
                    push(&mut points, &mut errors, i + 1, v, || text.to_string());
                }
            }
            Ok(v) => push(&mut points, &mut errors, i + 1, &v, || text.to_string()),
            Err(e) => errors.push(LineError::new(i + 1, text, format!("invalid JSON: {e}"))),
        }
    }
    (points, errors)
}

fn push(
    points: &mut Vec<Point>,
    errors: &mut Vec<LineError>,
    n: usize,
    v: &Value,
    original: impl FnOnce() -> String,
) {
    match point(v, n) {
        Ok(p) => points.push(p),
        Err(msg) => errors.push(LineError::new(n, &original(), msg)),
    }
}

fn point(v: &Value, n: usize) -> Result<Point, String> {
    let obj = v
        .as_object()
        .ok_or_else(|| format!("expected a JSON object, got {}", kind(v)))?;
    let name = match obj.get("metric_name") {
        Some(Value::String(s)) if !s.is_empty() => s.clone(),
        Some(Value::String(_)) => return Err("`metric_name` is empty".into()),
        Some(other) => {
            return Err(format!(
                "`metric_name` must be a string, got {}",
                kind(other)
            ));
        }
        None => return Err("missing `metric_name`".into()),
    };
    let ts = match obj.get("timestamp") {
        Some(Value::Number(x)) => x
            .as_i64()
            .or_else(|| {
                x.as_f64()
                    .filter(|f| f.fract() == 0.0 && f.abs() < 9.2e18)
                    .map(|f| f as i64)
            })
            .ok_or_else(|| format!("`timestamp` {x} is not an integer number of milliseconds"))?,
        Some(other) => {
            return Err(format!(
                "`timestamp` must be milliseconds since the epoch, got {}",
                kind(other)
            ));
        }
        None => return Err("missing `timestamp` (milliseconds since the epoch)".into()),
    };
    let time = ts
        .checked_mul(1_000_000)
        .ok_or_else(|| format!("`timestamp` {ts} ms is out of range"))?;
    let value = match obj.get("value") {
        Some(Value::Number(x)) => x
            .as_f64()
            .ok_or_else(|| format!("`value` {x} is not a number"))?,
        Some(other) => return Err(format!("`value` must be a number, got {}", kind(other))),
        None => return Err("missing `value`".into()),
    };
    let mut tags = Vec::new();
    match obj.get("labels") {
        None | Some(Value::Null) => {}
        Some(Value::Object(m)) => {
            for (k, v) in m {
                let s = match v {
                    Value::String(s) => s.clone(),
                    Value::Number(x) => x.to_string(),
                    Value::Bool(b) => b.to_string(),
                    Value::Null => continue,
                    other => {
                        return Err(format!("label `{k}` must be a string, got {}", kind(other)));
                    }
                };
                tags.push((k.as_str().into(), s.into()));
            }
        }
        Some(other) => return Err(format!("`labels` must be an object, got {}", kind(other))),
    }
    Ok(Point {
        table: name.into(),
        tags: tags.into(),
        fields: vec![("value".into(), FieldValue::F64(value))],
        time,
        line: n,
    })
}

fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn array_and_ndjson_and_single() {
        let one = r#"{"metric_name":"cpu_usage_percent","timestamp":1672531200000,"value":75.5,"labels":{"host":"a","core":3}}"#;
        let (p, e) = parse(one);
        assert!(e.is_empty());
        assert_eq!(&*p[0].table, "cpu_usage_percent");
        assert_eq!(p[0].time, 1_672_531_200_000_000_000);
        assert_eq!(p[0].field_pairs(), vec![("value", &FieldValue::F64(75.5))]);
        assert!(p[0].tag_pairs().contains(&("core", "3")));

        let (p, e) = parse(&format!("[{one},{one}]"));
        assert_eq!((p.len(), e.len()), (2, 0));
        let (p, e) = parse(&format!("{one}\n\n{one}\n"));
        assert_eq!((p.len(), e.len()), (2, 0));
        assert_eq!(p[1].line, 3);
    }

    #[test]
    fn bad_elements_are_named() {
        let body = r#"[{"metric_name":"m","timestamp":1,"value":1},{"metric_name":"m","value":"x","timestamp":1},{"timestamp":1,"value":1}]"#;
        let (p, e) = parse(body);
        assert_eq!(p.len(), 1);
        assert_eq!(e.len(), 2);
        assert_eq!(e[0].line_number, 2);
        assert!(
            e[0].error_message.contains("`value` must be a number"),
            "{e:?}"
        );
        assert!(
            e[1].error_message.contains("missing `metric_name`"),
            "{e:?}"
        );
        let (_, e) = parse("[{");
        assert!(e[0].error_message.contains("not a valid JSON array"));
    }
}
