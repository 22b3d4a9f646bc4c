//! Points as decoders hand them to the engine, their validation against table schemas,
//! and their conversion into one Arrow record batch per table.

use datafusion::common::HashMap;
use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BooleanBuilder, DictionaryArray, Float64Builder, Int32Array, Int64Builder,
    StringBuilder, TimestampNanosecondBuilder, UInt64Builder,
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
///
/// Names and tag values are shared strings: a parser hands the same `Arc` to every point
/// of a request that repeats a name (see [`Interner`]), and the same [`Tags`] to every
/// point of a request's series, so a point of a known series costs one allocation (its
/// field list) and checks of a repeated layout compare pointers.
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
/// (measurement, tag and field names, tag values).
#[derive(Debug, Default)]
pub struct Interner<'a> {
    seen: HashMap<&'a str, Arc<str>>,
    /// The string last asked for at each position of a line: lines of one shape repeat
    /// most names in place, and one comparison is cheaper than a hash lookup.
    last: Vec<(&'a str, Arc<str>)>,
    /// Series by their text as written (a decoder's choice of key): table and tags.
    series: HashMap<&'a str, (Arc<str>, Tags)>,
}

impl<'a> Interner<'a> {
    /// Most distinct strings (and series) kept: beyond it (a request of unique tag
    /// values) new ones are allocated without being remembered.
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

    /// The table and tags of a series seen before in the request, by its text.
    pub fn series(&self, text: &str) -> Option<(Arc<str>, Tags)> {
        self.series
            .get(text)
            .map(|(table, tags)| (Arc::clone(table), Arc::clone(tags)))
    }

    /// Remembers what a series' text parsed to (up to [`Self::MAX`] series).
    pub fn keep_series(&mut self, text: &'a str, table: &Arc<str>, tags: &Tags) {
        if self.series.len() < Self::MAX {
            self.series
                .insert(text, (Arc::clone(table), Arc::clone(tags)));
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
fn same_name(a: &str, b: &str) -> bool {
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
        return Err(too_old(p.time, limits.oldest_time));
    }
    let mut seen: HashMap<&str, &'static str> = HashMap::new();
    let mut new_cols: Vec<ColumnDef> = Vec::new();
    let kinds = p
        .tags
        .iter()
        .map(|(k, _)| (&**k, ColumnKind::Tag, "tag"))
        .chain(
            p.fields
                .iter()
                .map(|(k, v)| (&**k, ColumnKind::Field(v.field_type()), "field")),
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

/// The keys (tags, then fields) and kinds of the last point of a table that passed
/// [`validate_point`] in a request. Points of one source nearly always share it.
pub(crate) type Layout<'a> = Vec<(&'a str, ColumnKind)>;

fn same_layout(p: &Point, layout: &Layout<'_>) -> bool {
    p.tags.len() + p.fields.len() == layout.len()
        && p.tags
            .iter()
            .map(|(k, _)| (&**k, ColumnKind::Tag))
            .chain(
                p.fields
                    .iter()
                    .map(|(k, v)| (&**k, ColumnKind::Field(v.field_type()))),
            )
            .zip(layout)
            .all(|(a, b)| a.1 == b.1 && same_name(a.0, b.0))
}

/// [`validate_point`], skipping the per-name checks when `p` has the layout of the
/// table's last valid point (same names, kinds and order: same verdict on all of them,
/// and the schema already holds them); `layout` is updated to `p`'s when it passes.
pub(crate) fn validate_point_cached<'a>(
    p: &'a Point,
    columns: &mut Vec<ColumnDef>,
    limits: &PointLimits,
    layout: &mut Layout<'a>,
) -> Result<(), String> {
    if !layout.is_empty() && same_layout(p, layout) {
        if p.time < limits.oldest_time {
            return Err(too_old(p.time, limits.oldest_time));
        }
        return Ok(());
    }
    validate_point(p, columns, limits)?;
    layout.clear();
    layout.extend(p.tags.iter().map(|(k, _)| (&**k, ColumnKind::Tag)));
    layout.extend(
        p.fields
            .iter()
            .map(|(k, v)| (&**k, ColumnKind::Field(v.field_type()))),
    );
    Ok(())
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

    fn len(&self) -> usize {
        use arrow::array::ArrayBuilder;
        match self {
            Self::Tag(b) => b.keys.len(),
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
            Self::Tag(b) => b.append_key(None),
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

/// Column positions of a point's keys (tags, then fields), looked up once per key
/// layout: consecutive points with the same keys reuse the previous lookup.
#[derive(Default)]
struct Slots<'a> {
    keys: Vec<&'a str>,
    at: Vec<Option<usize>>,
}

impl<'a> Slots<'a> {
    fn of(&mut self, p: &'a Point, index: &HashMap<&str, usize>) -> &[Option<usize>] {
        let keys = p
            .tags
            .iter()
            .map(|(k, _)| &**k)
            .chain(p.fields.iter().map(|(k, _)| &**k));
        let same = self.keys.len() == p.tags.len() + p.fields.len()
            && keys.clone().zip(&self.keys).all(|(a, b)| same_name(a, b));
        if !same {
            self.keys.clear();
            self.keys.extend(keys);
            self.at.clear();
            self.at
                .extend(self.keys.iter().map(|k| index.get(k).copied()));
        }
        &self.at
    }
}

/// Builds one record batch from validated points of one table. The batch has the
/// table's columns that these points use (plus `time`), in table order. An empty tag
/// value is stored as null: a missing tag equals an empty one.
pub(crate) fn build_batch<'a>(
    points: &[&'a Point],
    table_columns: &[ColumnDef],
) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut used: Vec<bool> = vec![false; table_columns.len()];
    let index: HashMap<&str, usize> = table_columns
        .iter()
        .enumerate()
        .map(|(i, c)| (c.name.as_str(), i))
        .collect();
    let mut slots = Slots::default();
    for p in points {
        for i in slots.of(p, &index).iter().flatten() {
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
    let mut builders: Vec<ColBuilder<'a>> = cols
        .iter()
        .map(|c| ColBuilder::new(c.kind, points.len()))
        .collect();
    // The dictionary key of each tag of a series whose points share their tags (as a
    // parser hands them out): looked up once per series, not once per point. By the
    // address of the shared tags, which every point keeps alive until the batch is built.
    let mut series_keys: HashMap<usize, Box<[Option<i32>]>> = HashMap::default();
    let mut slots = Slots::default();
    for (row, p) in points.iter().copied().enumerate() {
        let at = slots.of(p, &pos);
        let shared = Arc::strong_count(&p.tags) > 1;
        let known = if shared {
            series_keys.get(&p.tags.as_ptr().addr())
        } else {
            None
        };
        if let Some(keys) = known {
            for (key, i) in keys.iter().zip(at) {
                if let Some(i) = i
                    && let ColBuilder::Tag(b) = &mut builders[*i]
                {
                    b.append_key(*key);
                }
            }
        } else {
            let mut keys = Vec::with_capacity(p.tags.len());
            for ((_, v), i) in p.tags.iter().zip(at) {
                let mut key = None;
                if let Some(i) = i
                    && let ColBuilder::Tag(b) = &mut builders[*i]
                {
                    key = b.key(v);
                    b.append_key(key);
                }
                keys.push(key);
            }
            if shared {
                series_keys.insert(p.tags.as_ptr().addr(), keys.into());
            }
        }
        for ((_, v), i) in p.fields.iter().zip(&at[p.tags.len()..]) {
            if let Some(i) = i {
                builders[*i].append_field(v);
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

    /// The shortcut for a repeated layout gives the verdicts of the full check.
    #[test]
    fn a_repeated_layout_is_checked_like_a_new_one() {
        let limits = PointLimits {
            max_columns_per_table: 10,
            max_name_bytes: 64,
            oldest_time: 100,
        };
        let points = [
            point(vec![("v", FieldValue::F64(1.0))], 200),
            point(vec![("v", FieldValue::F64(2.0))], 300),
            point(vec![("v", FieldValue::F64(3.0))], 50),
            point(vec![("v", FieldValue::Str("x".into()))], 400),
            point(
                vec![("v", FieldValue::F64(4.0)), ("v", FieldValue::F64(5.0))],
                400,
            ),
            point(vec![("v", FieldValue::F64(6.0))], 500),
        ];
        let (mut cached, mut full) = (Vec::new(), Vec::new());
        let mut layout = Layout::default();
        let verdicts: Vec<Result<(), String>> = points
            .iter()
            .map(|p| validate_point_cached(p, &mut cached, &limits, &mut layout))
            .collect();
        let want: Vec<Result<(), String>> = points
            .iter()
            .map(|p| validate_point(p, &mut full, &limits))
            .collect();
        assert_eq!(verdicts, want);
        assert_eq!(cached, full);
        let ok: Vec<bool> = verdicts.iter().map(Result::is_ok).collect();
        assert_eq!(ok, [true, true, false, false, false, true]);
        assert!(
            verdicts[2]
                .as_ref()
                .expect_err("too old")
                .contains("older than")
        );
        assert!(
            verdicts[3]
                .as_ref()
                .expect_err("conflict")
                .contains("got string")
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
