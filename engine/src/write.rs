//! Points as decoders hand them to the engine, their validation against table schemas,
//! and their conversion into one Arrow record batch per table.

use datafusion::common::HashMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int64Builder, StringBuilder, StringDictionaryBuilder,
    TimestampNanosecondBuilder, UInt64Builder,
};
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use strata_catalog::{ColumnDef, ColumnKind, FieldType};

use crate::schema::{TIME_COLUMN, add_column, arrow_schema};

/// A field value as written.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    F64(f64),
    I64(i64),
    U64(u64),
    Bool(bool),
    Str(String),
}

impl FieldValue {
    pub fn field_type(&self) -> FieldType {
        match self {
            Self::F64(_) => FieldType::Float,
            Self::I64(_) => FieldType::Integer,
            Self::U64(_) => FieldType::UInteger,
            Self::Bool(_) => FieldType::Boolean,
            Self::Str(_) => FieldType::String,
        }
    }
}

/// One point: a row of one table. `line` is the 1-based line (or element) number in the
/// request, used in error messages.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub table: String,
    pub tags: Vec<(String, String)>,
    pub fields: Vec<(String, FieldValue)>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time: i64,
    pub line: usize,
}

/// A point the engine refused, and why, in the user's terms.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct RejectedPoint {
    pub line: usize,
    pub reason: String,
}

/// Limits applied to every point.
#[derive(Debug, Clone, Copy)]
pub struct PointLimits {
    pub max_columns_per_table: usize,
    pub max_name_bytes: usize,
    /// Points with `time < oldest_time` are older than the hot tier's retention.
    pub oldest_time: i64,
}

/// Checks `p` against (and extends) `columns`, a scratch copy of its table's schema,
/// so an all-or-nothing request that fails changes nothing.
pub(crate) fn validate_point(
    p: &Point,
    columns: &mut Vec<ColumnDef>,
    limits: &PointLimits,
) -> Result<(), String> {
    if p.table.is_empty() {
        return Err("table (measurement) name is empty".into());
    }
    if p.table.len() > limits.max_name_bytes {
        return Err(format!(
            "table name is {} bytes, over the limit of {}",
            p.table.len(),
            limits.max_name_bytes
        ));
    }
    if p.fields.is_empty() {
        return Err(format!("point in table `{}` has no fields", p.table));
    }
    if p.time < limits.oldest_time {
        return Err(format!(
            "point time {} ns is older than the hot tier's retention (oldest accepted: {} ns); \
             its raw neighbours are gone, so last-write-wins could not hold",
            p.time, limits.oldest_time
        ));
    }
    let mut seen: HashMap<&str, &'static str> = HashMap::new();
    let mut new_cols: Vec<ColumnDef> = Vec::new();
    let kinds = p
        .tags
        .iter()
        .map(|(k, _)| (k.as_str(), ColumnKind::Tag, "tag"))
        .chain(
            p.fields
                .iter()
                .map(|(k, v)| (k.as_str(), ColumnKind::Field(v.field_type()), "field")),
        );
    for (name, kind, what) in kinds {
        if name.is_empty() {
            return Err(format!("a {what} name in table `{}` is empty", p.table));
        }
        if name == TIME_COLUMN {
            return Err(format!(
                "a {what} may not be named `time` (table `{}`): `time` is the timestamp column",
                p.table
            ));
        }
        if name.starts_with("__") {
            return Err(format!(
                "{what} `{name}` in table `{}`: names starting with `__` are reserved",
                p.table
            ));
        }
        if name.len() > limits.max_name_bytes {
            return Err(format!(
                "{what} name `{}…` is {} bytes, over the limit of {}",
                &name[..name.floor_char_boundary(32)],
                name.len(),
                limits.max_name_bytes
            ));
        }
        if let Some(prev) = seen.insert(name, what) {
            return Err(if prev == what {
                format!(
                    "{what} `{name}` appears twice in one point of table `{}`",
                    p.table
                )
            } else {
                format!(
                    "`{name}` is used both as tag and field in one point of table `{}`",
                    p.table
                )
            });
        }
        match columns.iter().find(|c| c.name == name) {
            Some(existing) if existing.kind == kind => {}
            Some(existing) => return Err(conflict(&p.table, name, existing.kind, kind)),
            None => new_cols.push(ColumnDef {
                name: name.to_string(),
                kind,
            }),
        }
    }
    if !new_cols.is_empty() {
        let has_time = columns.iter().any(|c| c.kind == ColumnKind::Time);
        let total = columns.len() + new_cols.len() + usize::from(!has_time);
        if total > limits.max_columns_per_table {
            return Err(format!(
                "table `{}` would have {total} columns, over the limit of {}",
                p.table, limits.max_columns_per_table
            ));
        }
        for c in new_cols {
            add_column(columns, c);
        }
        if !has_time {
            add_column(
                columns,
                ColumnDef {
                    name: TIME_COLUMN.into(),
                    kind: ColumnKind::Time,
                },
            );
        }
    }
    Ok(())
}

fn conflict(table: &str, name: &str, have: ColumnKind, got: ColumnKind) -> String {
    let describe = |k: ColumnKind| match k {
        ColumnKind::Tag => "a tag".to_string(),
        ColumnKind::Time => "the time column".to_string(),
        ColumnKind::Field(t) => format!("a {} field", t.name()),
    };
    match (have, got) {
        (ColumnKind::Field(h), ColumnKind::Field(g)) => format!(
            "field `{name}` is {} in table `{table}`, got {}",
            h.name(),
            g.name()
        ),
        _ => format!(
            "`{name}` is {} in table `{table}`, got {}",
            describe(have),
            describe(got)
        ),
    }
}

enum ColBuilder {
    Tag(StringDictionaryBuilder<Int32Type>),
    Time(TimestampNanosecondBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl ColBuilder {
    fn new(kind: ColumnKind, cap: usize) -> Self {
        match kind {
            ColumnKind::Tag => Self::Tag(StringDictionaryBuilder::new()),
            ColumnKind::Time => Self::Time(TimestampNanosecondBuilder::with_capacity(cap)),
            ColumnKind::Field(FieldType::Float) => Self::F64(Float64Builder::with_capacity(cap)),
            ColumnKind::Field(FieldType::Integer) => Self::I64(Int64Builder::with_capacity(cap)),
            ColumnKind::Field(FieldType::UInteger) => Self::U64(UInt64Builder::with_capacity(cap)),
            ColumnKind::Field(FieldType::Boolean) => Self::Bool(BooleanBuilder::with_capacity(cap)),
            ColumnKind::Field(FieldType::String) => {
                Self::Str(StringBuilder::with_capacity(cap, cap * 8))
            }
        }
    }

    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Self::Tag(b) => b.len(),
            Self::Time(b) => b.len(),
            Self::F64(b) => b.len(),
            Self::I64(b) => b.len(),
            Self::U64(b) => b.len(),
            Self::Bool(b) => b.len(),
            Self::Str(b) => b.len(),
        }
    }

    fn append_null(&mut self) {
        match self {
            Self::Tag(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::F64(b) => b.append_null(),
            Self::I64(b) => b.append_null(),
            Self::U64(b) => b.append_null(),
            Self::Bool(b) => b.append_null(),
            Self::Str(b) => b.append_null(),
        }
    }

    /// Appends a field value; the type was validated against the schema before.
    fn append_field(&mut self, v: &FieldValue) {
        match (self, v) {
            (Self::F64(b), FieldValue::F64(x)) => b.append_value(*x),
            (Self::I64(b), FieldValue::I64(x)) => b.append_value(*x),
            (Self::U64(b), FieldValue::U64(x)) => b.append_value(*x),
            (Self::Bool(b), FieldValue::Bool(x)) => b.append_value(*x),
            (Self::Str(b), FieldValue::Str(x)) => b.append_value(x),
            (b, _) => b.append_null(),
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Tag(mut b) => Arc::new(b.finish()),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::U64(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds one record batch from validated points of one table. The batch has the
/// table's columns that these points use (plus `time`), in table order. An empty tag
/// value is stored as null: a missing tag equals an empty one.
pub(crate) fn build_batch(
    points: &[&Point],
    table_columns: &[ColumnDef],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut used: Vec<bool> = vec![false; table_columns.len()];
    let index: HashMap<&str, usize> = table_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    for p in points {
        for (k, _) in &p.tags {
            if let Some(&i) = index.get(k.as_str()) {
                used[i] = true;
            }
        }
        for (k, _) in &p.fields {
            if let Some(&i) = index.get(k.as_str()) {
                used[i] = true;
            }
        }
    }
    let cols: Vec<ColumnDef> = table_columns
        .iter()
        .zip(&used)
        .filter(|(c, u)| **u || c.kind == ColumnKind::Time)
        .map(|(c, _)| c.clone())
        .collect();
    let pos: HashMap<&str, usize> = cols
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let time_pos = cols
        .iter()
        .position(|c| c.kind == ColumnKind::Time)
        .ok_or_else(|| arrow::error::ArrowError::SchemaError("table has no time column".into()))?;
    let mut builders: Vec<ColBuilder> = cols
        .iter()
        .map(|c| ColBuilder::new(c.kind, points.len()))
        .collect();
    for (row, p) in points.iter().enumerate() {
        for (k, v) in &p.tags {
            if let Some(&i) = pos.get(k.as_str())
                && let ColBuilder::Tag(b) = &mut builders[i]
            {
                if v.is_empty() {
                    b.append_null();
                } else {
                    b.append_value(v);
                }
            }
        }
        for (k, v) in &p.fields {
            if let Some(&i) = pos.get(k.as_str()) {
                builders[i].append_field(v);
            }
        }
        if let ColBuilder::Time(b) = &mut builders[time_pos] {
            b.append_value(p.time);
        }
        for b in &mut builders {
            if b.len() <= row {
                b.append_null();
            }
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(ColBuilder::finish).collect();
    RecordBatch::try_new(arrow_schema(&cols), arrays)
}
