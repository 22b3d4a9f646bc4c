//! From a rule's query result to alert instances: string columns are labels, numeric
//! columns are values, every column is available to annotation templates; the label set
//! (with the rule's labels and `alertname`) is the instance's identity, its fingerprint.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Float64Type};
use arrow::util::display::{ArrayFormatter, FormatOptions};

/// The column a rule's `WHEN` condition is computed into.
pub const ACTIVE_COLUMN: &str = "__strata_active";

/// One result row.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Row {
    pub labels: BTreeMap<String, String>,
    pub values: BTreeMap<String, f64>,
    /// Every column as text, for templates.
    pub text: BTreeMap<String, String>,
    /// Whether the row is an active alert (its `WHEN` condition; true without one).
    pub active: bool,
}

fn is_string(t: &DataType) -> bool {
    match t {
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => true,
        DataType::Dictionary(_, v) => is_string(v),
        _ => false,
    }
}

fn is_numeric(t: &DataType) -> bool {
    t.is_numeric() || matches!(t, DataType::Boolean)
}

/// The rows of `batches`. Null labels are left out (a missing label equals an empty one);
/// null values are left out of `values`.
pub fn rows(batches: &[RecordBatch]) -> Result<Vec<Row>, String> {
    let mut out = Vec::new();
    let options = FormatOptions::default().with_null("");
    for batch in batches {
        let schema = batch.schema();
        let mut labels = Vec::new();
        let mut values = Vec::new();
        let mut texts = Vec::new();
        let mut active = None;
        for (i, field) in schema.fields().iter().enumerate() {
            let col = batch.column(i);
            let name = field.name().as_str();
            if name == ACTIVE_COLUMN {
                let b = cast(col, &DataType::Boolean)
                    .map_err(|e| format!("the WHEN condition is not a boolean: {e}"))?;
                active = Some(b.as_boolean().clone());
                continue;
            }
            if is_string(field.data_type()) {
                let s = cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
                labels.push((name, s));
            } else if is_numeric(field.data_type()) {
                let f = cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
                values.push((name, f));
            }
            texts.push((
                name,
                ArrayFormatter::try_new(col.as_ref(), &options).map_err(|e| e.to_string())?,
            ));
        }
        for r in 0..batch.num_rows() {
            let mut row = Row {
                active: active.as_ref().is_none_or(|a| a.is_valid(r) && a.value(r)),
                ..Row::default()
            };
            for (name, col) in &labels {
                let s = col.as_string::<i32>();
                if s.is_valid(r) && !s.value(r).is_empty() {
                    row.labels.insert(name.to_string(), s.value(r).to_string());
                }
            }
            for (name, col) in &values {
                let f = col.as_primitive::<Float64Type>();
                if f.is_valid(r) {
                    row.values.insert(name.to_string(), f.value(r));
                }
            }
            for (name, fmt) in &texts {
                row.text.insert(name.to_string(), fmt.value(r).to_string());
            }
            out.push(row);
        }
    }
    Ok(out)
}

/// A stable 64-bit fingerprint of a label set (FNV-1a over sorted `name\xffvalue\xff`),
/// as 16 hex digits. Stable across versions and restarts: receivers dedupe on it.
pub fn fingerprint(labels: &BTreeMap<String, String>) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for (k, v) in labels {
        for b in k.bytes().chain([0xff]).chain(v.bytes()).chain([0xff]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

/// Formats a value for people: integers without decimals, others with up to 4.
pub fn format_value(v: f64) -> String {
    if v.fract() == 0.0 && v.abs() < 1e15 {
        format!("{v:.0}")
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Renders an annotation template: `{{ name }}` is a column or label of the row,
/// `{{ $labels.name }}` a label, `{{ $values.name }}` a value, `{{ $value }}` the column
/// `value` (or the first numeric column). Unknown names render as `<no value>`, as in
/// Prometheus.
pub fn render(
    template: &str,
    labels: &BTreeMap<String, String>,
    values: &BTreeMap<String, f64>,
    text: &BTreeMap<String, String>,
) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find("{{") {
        out.push_str(&rest[..open]);
        let Some(close) = rest[open..].find("}}") else {
            out.push_str(&rest[open..]);
            return out;
        };
        let key = rest[open + 2..open + close].trim();
        let value = if key == "$value" || key == ".Value" {
            values
                .get("value")
                .or_else(|| values.values().next())
                .map(|v| format_value(*v))
        } else if let Some(l) = key
            .strip_prefix("$labels.")
            .or_else(|| key.strip_prefix(".Labels."))
        {
            labels.get(l).cloned()
        } else if let Some(v) = key.strip_prefix("$values.") {
            values.get(v).map(|v| format_value(*v))
        } else {
            values
                .get(key)
                .map(|v| format_value(*v))
                .or_else(|| labels.get(key).cloned())
                .or_else(|| text.get(key).cloned())
        };
        out.push_str(value.as_deref().unwrap_or("<no value>"));
        rest = &rest[open + close + 2..];
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{ArrayRef, BooleanArray, Float64Array, Int64Array, StringArray};

    use super::*;

    #[test]
    fn strings_are_labels_numbers_values() {
        let batch = RecordBatch::try_from_iter(vec![
            (
                "host",
                Arc::new(StringArray::from(vec![Some("a"), None])) as ArrayRef,
            ),
            (
                "value",
                Arc::new(Float64Array::from(vec![93.456_78, 12.0])) as ArrayRef,
            ),
            ("n", Arc::new(Int64Array::from(vec![3, 4])) as ArrayRef),
            (
                ACTIVE_COLUMN,
                Arc::new(BooleanArray::from(vec![Some(true), None])) as ArrayRef,
            ),
        ])
        .expect("batch");
        let rows = rows(&[batch]).expect("rows");
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].labels.get("host").map(String::as_str), Some("a"));
        assert!(rows[1].labels.is_empty());
        assert_eq!(rows[0].values["n"], 3.0);
        assert!(rows[0].active && !rows[1].active);
        let s = render(
            "CPU {{ value }}% on {{ host }} ({{ $labels.host }}, n={{$values.n}}, {{ nope }})",
            &rows[0].labels,
            &rows[0].values,
            &rows[0].text,
        );
        assert_eq!(s, "CPU 93.4568% on a (a, n=3, <no value>)");
    }

    #[test]
    fn fingerprints_are_stable_and_order_free() {
        let a: BTreeMap<_, _> = [("b", "2"), ("a", "1")]
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        assert_eq!(fingerprint(&a), "1cc37fac8a64ae01");
        let mut b = a.clone();
        b.insert("c".into(), String::new());
        assert_ne!(fingerprint(&a), fingerprint(&b));
    }
}
