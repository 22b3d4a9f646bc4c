//! How catalog column definitions map to Arrow, and the names the engine reserves.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use strata_catalog::{ColumnDef, ColumnKind, FieldType};

/// The time column every table has: `Timestamp(Nanosecond, None)` holding UTC.
pub const TIME_COLUMN: &str = "time";
/// Internal column ranking rows for last-write-wins: the WAL sequence of the write.
pub const SEQ_COLUMN: &str = "__seq";
/// Internal column ranking rows of one write: the row's position in it.
pub const ROW_COLUMN: &str = "__row";

pub fn tag_type() -> DataType {
    DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8))
}

pub fn time_type() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

pub fn field_type(t: FieldType) -> DataType {
    match t {
        FieldType::Float => DataType::Float64,
        FieldType::Integer => DataType::Int64,
        FieldType::UInteger => DataType::UInt64,
        FieldType::Boolean => DataType::Boolean,
        FieldType::String => DataType::Utf8,
    }
}

pub fn arrow_field(c: &ColumnDef) -> Field {
    match c.kind {
        ColumnKind::Tag => Field::new(&c.name, tag_type(), true),
        ColumnKind::Time => Field::new(&c.name, time_type(), false),
        ColumnKind::Field(t) => Field::new(&c.name, field_type(t), true),
    }
}

pub fn arrow_schema(columns: &[ColumnDef]) -> SchemaRef {
    Arc::new(Schema::new(
        columns.iter().map(arrow_field).collect::<Vec<_>>(),
    ))
}

/// The column definition an Arrow field written by the engine stands for.
pub fn column_def(field: &Field) -> Option<ColumnDef> {
    let kind = match field.data_type() {
        DataType::Dictionary(_, v) if **v == DataType::Utf8 => ColumnKind::Tag,
        DataType::Timestamp(TimeUnit::Nanosecond, None) if field.name() == TIME_COLUMN => {
            ColumnKind::Time
        }
        DataType::Float64 => ColumnKind::Field(FieldType::Float),
        DataType::Int64 => ColumnKind::Field(FieldType::Integer),
        DataType::UInt64 => ColumnKind::Field(FieldType::UInteger),
        DataType::Boolean => ColumnKind::Field(FieldType::Boolean),
        DataType::Utf8 => ColumnKind::Field(FieldType::String),
        _ => return None,
    };
    Some(ColumnDef {
        name: field.name().clone(),
        kind,
    })
}

/// Names of the tag columns, in schema order (the sort key before `time`).
pub fn tag_names(columns: &[ColumnDef]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Tag)
        .map(|c| c.name.clone())
        .collect()
}

/// Names of the field columns, in schema order.
pub fn field_names(columns: &[ColumnDef]) -> Vec<String> {
    columns
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| c.name.clone())
        .collect()
}

/// Adds a column to a table's column list: tags before `time`, `time` before fields, each
/// group in order of first appearance, so `SELECT *` reads naturally and the sort key
/// (tags, time) is a prefix of the schema. Does nothing if the name is known.
pub fn add_column(columns: &mut Vec<ColumnDef>, c: ColumnDef) {
    if columns.iter().any(|x| x.name == c.name) {
        return;
    }
    let pos = match c.kind {
        ColumnKind::Tag => columns
            .iter()
            .position(|x| x.kind != ColumnKind::Tag)
            .unwrap_or(columns.len()),
        ColumnKind::Time => columns
            .iter()
            .position(|x| matches!(x.kind, ColumnKind::Field(_)))
            .unwrap_or(columns.len()),
        ColumnKind::Field(_) => columns.len(),
    };
    columns.insert(pos, c);
}

/// Columns `host` (tag), `time`, then the given fields: the shape unit tests use.
#[cfg(test)]
pub(crate) fn test_columns(fields: &[(&str, FieldType)]) -> Vec<ColumnDef> {
    let mut cols = vec![
        ColumnDef {
            name: "host".into(),
            kind: ColumnKind::Tag,
        },
        ColumnDef {
            name: TIME_COLUMN.into(),
            kind: ColumnKind::Time,
        },
    ];
    cols.extend(fields.iter().map(|(name, t)| ColumnDef {
        name: (*name).into(),
        kind: ColumnKind::Field(*t),
    }));
    cols
}
