//! Points as decoders hand them to the engine, their validation against table schemas,
//! and their conversion into one Arrow record batch per table.

use datafusion::common::HashMap;
use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanBuilder, DictionaryArray, Float64Builder, Int32Array, Int64Builder,
    PrimitiveBuilder, StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use arrow::datatypes::{ArrowPrimitiveType, Int32Type};
use arrow::record_batch::RecordBatch;
use strata_catalog::{ColumnDef, ColumnKind, FieldType};

use crate::rows::{Block, FieldValues};
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
///
/// Names and tag values are shared strings: a decoder hands the same `Arc` to every point
/// of a request that repeats a name (see [`Interner`]), and the same [`Tags`] to every
/// point of a request's series, which then share one series of [`crate::Rows`], the form
/// the engine writes (the line-protocol parser fills rows directly, with no points).
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub table: Arc<str>,
    pub tags: Tags,
    pub fields: Vec<(Arc<str>, FieldValue)>,
    /// Nanoseconds since the Unix epoch, UTC.
    pub time: i64,
    pub line: usize,
}

impl Point {
    /// Each tag as `(name, value)`.
    pub fn tag_pairs(&self) -> Vec<(&str, &str)> {
        self.tags.iter().map(|(k, v)| (&**k, &**v)).collect()
    }

    /// Each field as `(name, value)`.
    pub fn field_pairs(&self) -> Vec<(&str, &FieldValue)> {
        self.fields.iter().map(|(k, v)| (&**k, v)).collect()
    }
}

/// A point's tags as `(name, value)`, in the order written: shared by the points of one
/// series in a request (`vec![…].into()` makes one).
pub type Tags = Arc<[(Arc<str>, Arc<str>)]>;

/// Strings of one request, each allocated once and shared by the points that repeat it
/// (measurement and tag names, tag values).
#[derive(Debug, Default)]
pub struct Interner<'a> {
    seen: HashMap<&'a str, Arc<str>>,
    /// The string last asked for at each position of a line: lines of one shape repeat
    /// most names in place, and one comparison is cheaper than a hash lookup.
    last: Vec<(&'a str, Arc<str>)>,
    /// Series by their text as written (a decoder's choice of key): their number in the
    /// request's [`crate::Rows`].
    series: HashMap<&'a str, u32>,
}

impl<'a> Interner<'a> {
    /// Most distinct strings kept: beyond it (a request of unique tag values) new ones
    /// are allocated without being remembered.
    const MAX: usize = 1 << 16;

    /// [`Self::get`] for the string at position `at` of a line (0, 1, 2, … in the
    /// order the line holds them).
    pub fn get_at(&mut self, at: usize, s: &'a str) -> Arc<str> {
        if let Some((prev, a)) = self.last.get(at)
            && *prev == s
        {
            return Arc::clone(a);
        }
        let a = self.get(s);
        if at < self.last.len() {
            self.last[at] = (s, Arc::clone(&a));
        } else if at == self.last.len() {
            self.last.push((s, Arc::clone(&a)));
        }
        a
    }

    /// The number of a series seen before in the request, by its text.
    pub fn series(&self, text: &str) -> Option<u32> {
        self.series.get(text).copied()
    }

    /// Remembers a series' number by its text (up to [`Self::MAX`] series).
    pub fn keep_series(&mut self, text: &'a str, id: u32) {
        if self.series.len() < Self::MAX {
            self.series.insert(text, id);
        }
    }

    /// `s` as a shared string: the request's copy if it has one.
    pub fn get(&mut self, s: &'a str) -> Arc<str> {
        if let Some(a) = self.seen.get(s) {
            return Arc::clone(a);
        }
        let a: Arc<str> = Arc::from(s);
        if self.seen.len() < Self::MAX {
            self.seen.insert(s, Arc::clone(&a));
        }
        a
    }
}

/// Equal names, by pointer first (names shared through an [`Interner`]).
pub(crate) fn same_name(a: &str, b: &str) -> bool {
    std::ptr::eq(a, b) || a == b
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
/// so an all-or-nothing request that fails changes nothing. [`validate_block`] gives each
/// row of a block this verdict.
#[cfg(test)]
pub(crate) fn validate_point(
    p: &Point,
    columns: &mut Vec<ColumnDef>,
    limits: &PointLimits,
) -> Result<(), String> {
    check_table(&p.table, !p.fields.is_empty(), limits)?;
    if p.time < limits.oldest_time {
        return Err(too_old(p.time, limits.oldest_time));
    }
    validate_layout(
        &p.table,
        p.tags.iter().map(|(k, _)| &**k),
        p.fields.iter().map(|(k, v)| (&**k, v.field_type())),
        columns,
        limits,
    )
}

/// The checks of a point's table name and field count, which come before its time's.
fn check_table(table: &str, has_fields: bool, limits: &PointLimits) -> Result<(), String> {
    if table.is_empty() {
        return Err("table (measurement) name is empty".into());
    }
    if table.len() > limits.max_name_bytes {
        return Err(format!(
            "table name is {} bytes, over the limit of {}",
            table.len(),
            limits.max_name_bytes
        ));
    }
    if !has_fields {
        return Err(format!("point in table `{table}` has no fields"));
    }
    Ok(())
}

/// The checks of a point's tag and field names and types against (and extending)
/// `columns`: a verdict that depends only on the layout and the schema so far.
fn validate_layout<'k>(
    table: &str,
    tags: impl Iterator<Item = &'k str>,
    fields: impl Iterator<Item = (&'k str, FieldType)>,
    columns: &mut Vec<ColumnDef>,
    limits: &PointLimits,
) -> Result<(), String> {
    let mut seen: HashMap<&str, &'static str> = HashMap::new();
    let mut new_cols: Vec<ColumnDef> = Vec::new();
    let kinds = tags
        .map(|k| (k, ColumnKind::Tag, "tag"))
        .chain(fields.map(|(k, t)| (k, ColumnKind::Field(t), "field")));
    for (name, kind, what) in kinds {
        if name.is_empty() {
            return Err(format!("a {what} name in table `{table}` is empty"));
        }
        if name == TIME_COLUMN {
            return Err(format!(
                "a {what} may not be named `time` (table `{table}`): `time` is the timestamp column"
            ));
        }
        if name.starts_with("__") {
            return Err(format!(
                "{what} `{name}` in table `{table}`: names starting with `__` are reserved"
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
                format!("{what} `{name}` appears twice in one point of table `{table}`")
            } else {
                format!("`{name}` is used both as tag and field in one point of table `{table}`")
            });
        }
        match columns.iter().find(|c| c.name == name) {
            Some(existing) if existing.kind == kind => {}
            Some(existing) => return Err(conflict(table, name, existing.kind, kind)),
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
                "table `{table}` would have {total} columns, over the limit of {}",
                limits.max_columns_per_table
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

/// The rows of a block that passed [`validate_block`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Accepted {
    All,
    /// Some: a flag per row, and how many are set.
    Some(Vec<bool>, usize),
    None,
}

impl Accepted {
    pub(crate) fn count(&self, block: &Block) -> usize {
        match self {
            Self::All => block.len(),
            Self::Some(_, n) => *n,
            Self::None => 0,
        }
    }

    fn mask(&self) -> Option<&[bool]> {
        match self {
            Self::Some(m, _) => Some(m),
            _ => None,
        }
    }
}

/// Checks the rows of `block` against (and extends) `columns`, a scratch copy of its
/// table's schema: each row gets the verdict [`validate_point`] would give it, checked
/// point by point in order. The layout is checked once, at the first row recent enough
/// to need it. Rejected rows are added to `rejected`.
pub(crate) fn validate_block(
    block: &Block,
    columns: &mut Vec<ColumnDef>,
    limits: &PointLimits,
    rejected: &mut Vec<RejectedPoint>,
) -> Accepted {
    let reject = |rejected: &mut Vec<RejectedPoint>, line: u32, reason: String| {
        rejected.push(RejectedPoint {
            line: line as usize,
            reason,
        })
    };
    if let Err(e) = check_table(&block.table, !block.fields.is_empty(), limits) {
        for line in &block.lines {
            reject(rejected, *line, e.clone());
        }
        return Accepted::None;
    }
    let mut layout: Option<Result<(), String>> = None;
    let mut mask: Option<Vec<bool>> = None;
    let mut accepted = 0;
    for (row, (&time, &line)) in block.time.iter().zip(&block.lines).enumerate() {
        let error = if time < limits.oldest_time {
            Some(too_old(time, limits.oldest_time))
        } else {
            let verdict = layout.get_or_insert_with(|| {
                validate_layout(
                    &block.table,
                    block.tag_keys(),
                    block.fields.iter().map(|(k, c)| (&**k, c.field_type())),
                    columns,
                    limits,
                )
            });
            verdict.as_ref().err().cloned()
        };
        match error {
            None => {
                accepted += 1;
                if let Some(m) = &mut mask {
                    m.push(true);
                }
            }
            Some(reason) => {
                mask.get_or_insert_with(|| vec![true; row]).push(false);
                reject(rejected, line, reason);
            }
        }
    }
    match mask {
        _ if accepted == 0 => Accepted::None,
        None => Accepted::All,
        Some(m) => Accepted::Some(m, accepted),
    }
}

fn too_old(time: i64, oldest: i64) -> String {
    format!(
        "point time {time} ns is older than the hot tier's retention (oldest accepted: {oldest} ns); \
         its raw neighbours are gone, so last-write-wins could not hold"
    )
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

/// A tag column: dictionary keys, and each distinct value once.
struct TagBuilder<'a> {
    keys: Vec<i32>,
    nulls: NullBufferBuilder,
    values: StringBuilder,
    index: HashMap<&'a str, i32>,
}

impl<'a> TagBuilder<'a> {
    fn new(cap: usize) -> Self {
        Self {
            keys: Vec::with_capacity(cap),
            nulls: NullBufferBuilder::new(cap),
            values: StringBuilder::with_capacity(64, 1024),
            index: HashMap::default(),
        }
    }

    /// The key of `value` (added to the values when new); `None` for an empty value (a
    /// missing tag equals an empty one).
    fn key(&mut self, value: &'a str) -> Option<i32> {
        if value.is_empty() {
            return None;
        }
        if let Some(k) = self.index.get(value) {
            return Some(*k);
        }
        let k = self.index.len() as i32;
        self.values.append_value(value);
        self.index.insert(value, k);
        Some(k)
    }

    fn append_key(&mut self, key: Option<i32>) {
        self.keys.push(key.unwrap_or(0));
        self.nulls.append(key.is_some());
    }

    fn finish(mut self) -> ArrayRef {
        let keys = Int32Array::new(self.keys.into(), self.nulls.finish());
        let values: ArrayRef = Arc::new(self.values.finish());
        // Every key was handed out by `key`, so each is in range.
        Arc::new(DictionaryArray::<Int32Type>::new(keys, values))
    }
}

enum ColBuilder<'a> {
    Tag(TagBuilder<'a>),
    Time(TimestampNanosecondBuilder),
    F64(Float64Builder),
    I64(Int64Builder),
    U64(UInt64Builder),
    Bool(BooleanBuilder),
    Str(StringBuilder),
}

impl ColBuilder<'_> {
    fn new(kind: ColumnKind, cap: usize) -> Self {
        match kind {
            // Keys sized for the batch: grown by doubling from the default, a 10,000-row
            // batch held 16,384 keys per tag (2.5 bytes a value of the TSBS hot table).
            ColumnKind::Tag => Self::Tag(TagBuilder::new(cap)),
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

    fn append_nulls(&mut self, n: usize) {
        match self {
            Self::Tag(b) => {
                b.keys.resize(b.keys.len() + n, 0);
                b.nulls.append_n_nulls(n);
            }
            Self::Time(b) => b.append_nulls(n),
            Self::F64(b) => b.append_nulls(n),
            Self::I64(b) => b.append_nulls(n),
            Self::U64(b) => b.append_nulls(n),
            Self::Bool(b) => b.append_nulls(n),
            Self::Str(b) => {
                for _ in 0..n {
                    b.append_null();
                }
            }
        }
    }

    /// Appends a block's values of one field, those whose flag in `mask` is set (all
    /// without a mask). The type was validated against the schema before.
    fn extend_field(&mut self, values: &FieldValues, mask: Option<&[bool]>) {
        match (self, values) {
            (Self::F64(b), FieldValues::F64(v)) => extend(b, v, mask),
            (Self::I64(b), FieldValues::I64(v)) => extend(b, v, mask),
            (Self::U64(b), FieldValues::U64(v)) => extend(b, v, mask),
            (Self::Bool(b), FieldValues::Bool(v)) => {
                for x in kept(v, mask) {
                    b.append_value(*x);
                }
            }
            (Self::Str(b), FieldValues::Str(v)) => {
                for x in kept(v, mask) {
                    b.append_value(x);
                }
            }
            (b, v) => {
                let n = mask.map_or(v.len(), |m| m.iter().filter(|k| **k).count());
                b.append_nulls(n);
            }
        }
    }

    fn finish(self) -> ArrayRef {
        match self {
            Self::Tag(b) => b.finish(),
            Self::Time(mut b) => Arc::new(b.finish()),
            Self::F64(mut b) => Arc::new(b.finish()),
            Self::I64(mut b) => Arc::new(b.finish()),
            Self::U64(mut b) => Arc::new(b.finish()),
            Self::Bool(mut b) => Arc::new(b.finish()),
            Self::Str(mut b) => Arc::new(b.finish()),
        }
    }
}

/// Builds one record batch from the accepted rows of blocks of one table (of the
/// request whose series are `series`). The batch has the table's columns that these
/// blocks use (plus `time`), in table order. An empty tag value is stored as null: a
/// missing tag equals an empty one. `series_keys` holds, per series of the request, the
/// dictionary keys of its tags once a row of it is built (empty at first; a series
/// belongs to one table, so the tables of a request can share it).
pub(crate) fn build_rows_batch<'a>(
    series: &'a [(Arc<str>, Tags)],
    parts: &[(&'a Block, Accepted)],
    table_columns: &[ColumnDef],
    series_keys: &mut [Option<Box<[Option<i32>]>>],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let index: HashMap<&str, usize> = table_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut used: Vec<bool> = vec![false; table_columns.len()];
    for (b, _) in parts {
        let keys = b.tag_keys().chain(b.fields.iter().map(|(k, _)| &**k));
        for i in keys.filter_map(|k| index.get(k)) {
            used[*i] = true;
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
    let total: usize = parts.iter().map(|(b, a)| a.count(b)).sum();
    let mut builders: Vec<ColBuilder<'a>> = cols
        .iter()
        .map(|c| ColBuilder::new(c.kind, total))
        .collect();
    let mut filled = vec![false; builders.len()];
    for (b, accepted) in parts {
        let mask = accepted.mask();
        let keep = |row: usize| mask.is_none_or(|m| m[row]);
        filled.fill(false);
        // Each series' dictionary keys, looked up once (every series of a block has the
        // block's tag keys, in its order).
        let tag_at: Vec<Option<usize>> = b.tag_keys().map(|k| pos.get(k).copied()).collect();
        for row in (0..b.len()).filter(|r| keep(*r)) {
            let s = b.series[row] as usize;
            if series_keys[s].is_none() {
                let keys = series[s]
                    .1
                    .iter()
                    .zip(&tag_at)
                    .map(|((_, v), at)| match at.map(|i| &mut builders[i]) {
                        Some(ColBuilder::Tag(t)) => t.key(v),
                        _ => None,
                    })
                    .collect();
                series_keys[s] = Some(keys);
            }
        }
        for (j, at) in tag_at.iter().enumerate() {
            let Some(i) = *at else {
                continue;
            };
            if let ColBuilder::Tag(t) = &mut builders[i] {
                for row in (0..b.len()).filter(|r| keep(*r)) {
                    let keys = series_keys[b.series[row] as usize].as_deref();
                    t.append_key(keys.and_then(|k| k[j]));
                }
                filled[i] = true;
            }
        }
        for (k, values) in &b.fields {
            if let Some(&i) = pos.get(&**k) {
                builders[i].extend_field(values, mask);
                filled[i] = true;
            }
        }
        if let ColBuilder::Time(t) = &mut builders[time_pos] {
            extend(t, &b.time, mask);
            filled[time_pos] = true;
        }
        let n = accepted.count(b);
        for (builder, _) in builders.iter_mut().zip(&filled).filter(|(_, f)| !**f) {
            builder.append_nulls(n);
        }
    }
    let arrays: Vec<ArrayRef> = builders.into_iter().map(ColBuilder::finish).collect();
    RecordBatch::try_new(arrow_schema(&cols), arrays)
}

/// Appends the values of `values` whose flag in `mask` is set (all without a mask).
fn extend<T: ArrowPrimitiveType>(
    b: &mut PrimitiveBuilder<T>,
    values: &[T::Native],
    mask: Option<&[bool]>,
) {
    match mask {
        None => b.append_slice(values),
        Some(_) => {
            for v in kept(values, mask) {
                b.append_value(*v);
            }
        }
    }
}

/// The values whose flag in `mask` is set (all without a mask).
fn kept<'v, T>(values: &'v [T], mask: Option<&'v [bool]>) -> impl Iterator<Item = &'v T> {
    values
        .iter()
        .enumerate()
        .filter(move |(row, _)| mask.is_none_or(|m| m[*row]))
        .map(|(_, v)| v)
}

/// [`build_rows_batch`] of points of one table, all accepted.
#[cfg(test)]
pub(crate) fn build_batch(
    points: &[&Point],
    table_columns: &[ColumnDef],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let rows = crate::rows::Rows::from(points.iter().map(|p| (*p).clone()).collect::<Vec<_>>());
    let parts: Vec<(&Block, Accepted)> = rows.blocks.iter().map(|b| (b, Accepted::All)).collect();
    let mut keys = vec![None; rows.series.len()];
    build_rows_batch(&rows.series, &parts, table_columns, &mut keys)
}

#[cfg(test)]
mod tests {
    use arrow::array::Array;

    use super::*;

    fn point(fields: Vec<(&str, FieldValue)>, time: i64) -> Point {
        Point {
            table: "cpu".into(),
            tags: vec![("host".into(), "a".into())].into(),
            fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
            time,
            line: 1,
        }
    }

    /// Blocks give each row the verdict of the point-by-point check, in order.
    #[test]
    fn blocks_are_checked_like_points() {
        let limits = PointLimits {
            max_columns_per_table: 10,
            max_name_bytes: 64,
            oldest_time: 100,
        };
        let points = vec![
            point(vec![("v", FieldValue::F64(1.0))], 200),
            point(vec![("v", FieldValue::F64(2.0))], 300),
            point(vec![("v", FieldValue::F64(3.0))], 50),
            point(vec![("v", FieldValue::Str("x".into()))], 400),
            point(
                vec![("v", FieldValue::F64(4.0)), ("v", FieldValue::F64(5.0))],
                400,
            ),
            point(vec![("v", FieldValue::F64(6.0))], 500),
            // A new layout whose first row is too old: the next row adds its column.
            point(vec![("w", FieldValue::I64(1))], 10),
            point(vec![("w", FieldValue::I64(2))], 600),
            point(vec![("w", FieldValue::I64(3))], 20),
        ]
        .into_iter()
        .enumerate()
        .map(|(i, p)| Point { line: i + 1, ..p })
        .collect::<Vec<_>>();
        let rows = crate::rows::Rows::from(points.clone());
        let (mut by_block, mut by_point) = (Vec::new(), Vec::new());
        let mut rejected = Vec::new();
        let accepted: Vec<Accepted> = rows
            .blocks()
            .iter()
            .map(|b| validate_block(b, &mut by_block, &limits, &mut rejected))
            .collect();
        let want: Vec<RejectedPoint> = points
            .iter()
            .filter_map(|p| {
                let reason = validate_point(p, &mut by_point, &limits).err()?;
                Some(RejectedPoint {
                    line: p.line,
                    reason,
                })
            })
            .collect();
        assert_eq!(rejected, want);
        assert_eq!(by_block, by_point);
        let lines: Vec<usize> = rejected.iter().map(|r| r.line).collect();
        assert_eq!(lines, [3, 4, 5, 7, 9]);
        assert!(rejected[0].reason.contains("older than"));
        assert!(rejected[1].reason.contains("got string"));
        assert_eq!(
            accepted,
            [
                Accepted::Some(vec![true, true, false], 2),
                Accepted::None,
                Accepted::None,
                Accepted::All,
                Accepted::Some(vec![false, true, false], 1),
            ]
        );
    }

    /// Points with different key orders and missing columns land in the right columns.
    #[test]
    fn batches_follow_each_points_own_keys() {
        let mut cols = Vec::new();
        let limits = PointLimits {
            max_columns_per_table: 10,
            max_name_bytes: 64,
            oldest_time: 0,
        };
        let a = point(
            vec![("x", FieldValue::I64(1)), ("y", FieldValue::I64(2))],
            1,
        );
        let b = point(
            vec![("y", FieldValue::I64(3)), ("x", FieldValue::I64(4))],
            2,
        );
        let c = point(vec![("y", FieldValue::I64(5))], 3);
        for p in [&a, &b, &c] {
            validate_point(p, &mut cols, &limits).expect("valid");
        }
        let batch = build_batch(&[&a, &b, &a, &c], &cols).expect("batch");
        let col = |name: &str| {
            let c = batch.column_by_name(name).expect("column");
            let c = c
                .as_any()
                .downcast_ref::<arrow::array::Int64Array>()
                .expect("ints");
            (0..c.len())
                .map(|i| (!c.is_null(i)).then(|| c.value(i)))
                .collect::<Vec<_>>()
        };
        assert_eq!(col("x"), [Some(1), Some(4), Some(1), None]);
        assert_eq!(col("y"), [Some(2), Some(3), Some(2), Some(5)]);
    }

    /// A batch holds what its rows need: 8 bytes per integer and timestamp, 4 per tag
    /// key, the tags' distinct values once, and little slack.
    #[test]
    fn a_batch_takes_little_more_memory_than_its_values() {
        let rows = 10_000;
        let points: Vec<Point> = (0..rows)
            .map(|i| Point {
                table: "cpu".into(),
                tags: (0..10)
                    .map(|t| {
                        (
                            format!("tag{t}").into(),
                            format!("v{}", i % (10 + t)).into(),
                        )
                    })
                    .collect(),
                fields: (0..10)
                    .map(|f| (format!("f{f}").into(), FieldValue::I64(i as i64 + f)))
                    .collect(),
                time: i as i64,
                line: i + 1,
            })
            .collect();
        let mut cols = Vec::new();
        let limits = PointLimits {
            max_columns_per_table: 100,
            max_name_bytes: 64,
            oldest_time: 0,
        };
        for p in &points {
            validate_point(p, &mut cols, &limits).expect("valid");
        }
        let refs: Vec<&Point> = points.iter().collect();
        let batch = build_batch(&refs, &cols).expect("batch");
        let needed = rows * (10 * 8 + 8 + 10 * 4);
        let held = batch.get_array_memory_size();
        assert!(
            held <= needed + needed / 20,
            "{held} bytes held for {needed} bytes of values and keys"
        );
    }
}
