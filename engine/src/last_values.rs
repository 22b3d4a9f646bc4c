//! The last-value cache: per table, the latest row of every series, kept current by the
//! write path, so "the last point of every host" is answered from memory instead of a
//! scan of every file.
//!
//! A table created by a write in this process has its cache from its first row on
//! ([`LastValues::ready`]): every row it will hold passes the write path. Any other table
//! (one found in the catalog or the WAL at start-up) gets its cache when a query first
//! asks for it ([`LastValues::warming`]): from then on every applied write updates it,
//! while the query layer reads each series' latest row from the table once and merges it
//! in ([`merge_scan`]); the cache is [`Ready`](CacheState::Ready) after that and stays so
//! until the process ends. Rows follow the table's last-write-wins rule:
//! a newer time replaces a series' row, the same time merges field by field (a later
//! write's non-null fields win).
//!
//! Series are keyed by [`series_hashes`]; the tags are kept and compared whenever a row
//! would change an entry, and a hash collision turns the table's cache off for good
//! ([`CacheState::Off`]) rather than risk a wrong answer.

use std::cmp::Ordering;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;

use arrow::array::{
    Array, ArrayRef, BooleanArray, DictionaryArray, Float64Array, Int32Array, Int64Array,
    StringArray, TimestampNanosecondArray, UInt64Array, new_null_array,
};
use arrow::compute::cast;
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::{HashMap, ScalarValue};
use strata_catalog::{ColumnDef, ColumnKind};

use crate::buffer::series_hashes;
use crate::schema::TIME_COLUMN;

/// Where a table's cache stands.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CacheState {
    /// Writes are applied; the table's existing rows are being merged in. Not yet usable.
    Warming,
    /// Holds the latest row of every series.
    Ready,
    /// Unusable (the reason); queries scan the table.
    Off(String),
}

impl CacheState {
    pub fn name(&self) -> &'static str {
        match self {
            Self::Warming => "warming",
            Self::Ready => "ready",
            Self::Off(_) => "off",
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    /// Non-null tags, sorted by name. Names are the cache's ([`LastValues::names`]).
    tags: Vec<(Arc<str>, Arc<str>)>,
    time: i64,
    /// Non-null fields at `time`.
    fields: Vec<(Arc<str>, ScalarValue)>,
}

impl Entry {
    fn bytes(&self) -> usize {
        std::mem::size_of::<Self>()
            + self
                .tags
                .iter()
                .map(|(k, v)| 32 + k.len() + v.len())
                .sum::<usize>()
            + self
                .fields
                .iter()
                .map(|(k, v)| 16 + k.len() + v.size())
                .sum::<usize>()
    }

    /// The values of the tags `keys` (none where the series lacks one).
    fn group_key(&self, keys: &[&str]) -> Vec<Option<&str>> {
        keys.iter()
            .map(|k| {
                self.tags
                    .iter()
                    .find(|(n, _)| &**n == *k)
                    .map(|(_, v)| &**v)
            })
            .collect()
    }

    /// Orders series by their tags, as their sorted `(name, value)` lists compare.
    fn cmp_tags(&self, other: &Self) -> Ordering {
        for ((ka, va), (kb, vb)) in self.tags.iter().zip(&other.tags) {
            let names = if Arc::ptr_eq(ka, kb) {
                Ordering::Equal
            } else {
                ka.cmp(kb)
            };
            let o = names.then_with(|| va.cmp(vb));
            if o != Ordering::Equal {
                return o;
            }
        }
        self.tags.len().cmp(&other.tags.len())
    }

    /// Later non-null fields win; the others stay.
    fn overlay(&mut self, newer: Vec<(Arc<str>, ScalarValue)>) {
        for (k, v) in newer {
            match self.fields.iter_mut().find(|(n, _)| *n == k) {
                Some(slot) => slot.1 = v,
                None => self.fields.push((k, v)),
            }
        }
    }
}

/// One table's cache.
#[derive(Debug)]
pub struct LastValues {
    pub state: CacheState,
    entries: HashMap<u64, Entry>,
    /// When the cache was asked for and when it became ready (engine clock, ns).
    pub started_at: i64,
    pub ready_at: Option<i64>,
    /// Queries answered from it.
    pub hits: AtomicU64,
    bytes: usize,
    /// Every column name the entries use, one allocation each: entries share them, and
    /// building a batch finds a value's column by the name's address.
    names: Vec<Arc<str>>,
}

impl LastValues {
    pub fn warming(now: i64) -> Self {
        Self {
            state: CacheState::Warming,
            entries: HashMap::new(),
            started_at: now,
            ready_at: None,
            hits: AtomicU64::new(0),
            bytes: 0,
            names: Vec::new(),
        }
    }

    /// The cache of a table that has no rows yet: ready at once, kept by writes alone.
    pub fn ready(now: i64) -> Self {
        Self {
            state: CacheState::Ready,
            ready_at: Some(now),
            ..Self::warming(now)
        }
    }

    pub fn series(&self) -> usize {
        self.entries.len()
    }

    /// Approximate memory held.
    pub fn bytes(&self) -> usize {
        self.bytes + self.entries.capacity() * 16
    }

    fn turn_off(&mut self, why: &str) {
        self.state = CacheState::Off(why.to_string());
        self.entries = HashMap::new();
        self.bytes = 0;
    }

    /// Applies one written batch (rows of the write's table, dictionary-encoded tags).
    pub fn apply_write(&mut self, batch: &RecordBatch) {
        if matches!(self.state, CacheState::Off(_)) || batch.num_rows() == 0 {
            return;
        }
        let Some(times) = time_column(batch) else {
            return;
        };
        let hashes = series_hashes(batch);
        // Only each series' rows at its newest time in this batch can change the cache.
        let mut newest: HashMap<u64, i64> =
            HashMap::with_capacity_and_hasher(hashes.len().min(4096), Default::default());
        for (h, t) in hashes.iter().zip(times.values()) {
            let n = newest.entry(*h).or_insert(i64::MIN);
            *n = (*n).max(*t);
        }
        let view = RowView::new(batch, &mut self.names);
        for (row, (h, t)) in hashes.iter().zip(times.values()).enumerate() {
            if newest.get(h) != Some(t) {
                continue;
            }
            if let Err(why) = self.upsert(*h, *t, &view, row, Precedence::Row) {
                self.turn_off(why);
                return;
            }
        }
    }

    /// Merges each series' latest row as read from the table (after the cache started),
    /// then marks the cache ready. Rows the write path put in the cache win ties: they
    /// are at least as new as anything the read saw.
    pub fn merge_scan(&mut self, batches: &[RecordBatch], columns: &[ColumnDef], now: i64) {
        if self.state != CacheState::Warming {
            return;
        }
        for batch in batches {
            let batch = match with_dictionary_tags(batch, columns) {
                Ok(b) => b,
                Err(e) => {
                    self.turn_off(&format!("reading the table's latest rows: {e}"));
                    return;
                }
            };
            let Some(times) = time_column(&batch) else {
                continue;
            };
            let hashes = series_hashes(&batch);
            let view = RowView::new(&batch, &mut self.names);
            for (row, (h, t)) in hashes.iter().zip(times.values()).enumerate() {
                if let Err(why) = self.upsert(*h, *t, &view, row, Precedence::Cache) {
                    self.turn_off(why);
                    return;
                }
            }
        }
        self.state = CacheState::Ready;
        self.ready_at = Some(now);
    }

    fn upsert(
        &mut self,
        hash: u64,
        time: i64,
        view: &RowView<'_>,
        row: usize,
        ties: Precedence,
    ) -> Result<(), &'static str> {
        match self.entries.get_mut(&hash) {
            None => {
                let e = Entry {
                    tags: view.tags(row),
                    time,
                    fields: view.fields(row),
                };
                self.bytes += e.bytes();
                self.entries.insert(hash, e);
            }
            Some(e) => {
                if time < e.time {
                    return Ok(());
                }
                if !view.same_tags(row, &e.tags) {
                    return Err("two series share a hash: the cache is off for this table");
                }
                let before = e.bytes();
                if time > e.time {
                    e.time = time;
                    e.fields = view.fields(row);
                } else {
                    match ties {
                        Precedence::Row => e.overlay(view.fields(row)),
                        Precedence::Cache => {
                            let mut merged = Entry {
                                tags: Vec::new(),
                                time,
                                fields: view.fields(row),
                            };
                            merged.overlay(std::mem::take(&mut e.fields));
                            e.fields = merged.fields;
                        }
                    }
                }
                self.bytes = self.bytes.saturating_sub(before) + e.bytes();
            }
        }
        Ok(())
    }

    /// The cached rows in `schema` (the table's schema of `columns`), series ordered by
    /// tags. Rows older than `min_time` are left out. With `per_group`, one row per
    /// group of series with equal values of those tags, in no particular order: the
    /// newest (of equally new ones, the series first in tag order).
    pub fn to_batch(
        &self,
        schema: &SchemaRef,
        columns: &[ColumnDef],
        min_time: i64,
        per_group: Option<&[&str]>,
    ) -> Result<RecordBatch, ArrowError> {
        let mut rows: Vec<&Entry> = self
            .entries
            .values()
            .filter(|e| e.time >= min_time)
            .collect();
        if let Some(keys) = per_group {
            let mut newest: HashMap<Vec<Option<&str>>, &Entry> = HashMap::new();
            for e in rows {
                let slot = newest.entry(e.group_key(keys)).or_insert(e);
                if e.time > slot.time || (e.time == slot.time && e.cmp_tags(slot) == Ordering::Less)
                {
                    *slot = e;
                }
            }
            rows = newest.into_values().collect();
        } else {
            rows.sort_unstable_by(|a, b| a.cmp_tags(b));
        }

        // Each name of the cache to its column in `schema`, by the name's address (a row
        // holds only its non-null values, in no fixed order).
        enum Col<'e> {
            Time,
            Tag(Vec<Option<&'e str>>),
            Field(Vec<Option<&'e ScalarValue>>),
            Missing,
        }
        let at: HashMap<*const u8, usize> = self
            .names
            .iter()
            .filter_map(|n| Some((n.as_ptr(), schema.index_of(n).ok()?)))
            .collect();
        let mut cols: Vec<Col> = schema
            .fields()
            .iter()
            .map(|f| {
                let name = f.name().as_str();
                if name == TIME_COLUMN {
                    return Col::Time;
                }
                match columns.iter().find(|c| c.name == name).map(|c| &c.kind) {
                    Some(ColumnKind::Tag) => Col::Tag(vec![None; rows.len()]),
                    Some(_) => Col::Field(vec![None; rows.len()]),
                    None => Col::Missing,
                }
            })
            .collect();
        for (r, e) in rows.iter().enumerate() {
            for (k, v) in &e.tags {
                if let Some(Col::Tag(values)) = at.get(&k.as_ptr()).map(|&i| &mut cols[i]) {
                    values[r] = Some(&**v);
                }
            }
            for (k, v) in &e.fields {
                if let Some(Col::Field(values)) = at.get(&k.as_ptr()).map(|&i| &mut cols[i]) {
                    values[r] = Some(v);
                }
            }
        }
        let mut out: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (f, col) in schema.fields().iter().zip(cols) {
            let col: ArrayRef = match col {
                Col::Time => Arc::new(TimestampNanosecondArray::from_iter_values(
                    rows.iter().map(|e| e.time),
                )),
                Col::Tag(values) => tag_array(values, f.data_type())?,
                Col::Field(values) => match typed_array(&values, f.data_type()) {
                    Some(array) => array,
                    None => scalar_array(values, f.data_type())?,
                },
                Col::Missing => new_null_array(f.data_type(), rows.len()),
            };
            out.push(col);
        }
        RecordBatch::try_new(Arc::clone(schema), out)
    }
}

/// A tag column of `dt` from its values: as the table's tags are, a dictionary (of
/// `Int32` keys, each row its own entry: no hashing for a column of mostly distinct
/// values), else cast.
fn tag_array(values: Vec<Option<&str>>, dt: &DataType) -> Result<ArrayRef, ArrowError> {
    let dictionary = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    if *dt != dictionary {
        return cast(&StringArray::from(values), dt);
    }
    let mut keys = Vec::with_capacity(values.len());
    let mut strings = Vec::with_capacity(values.len());
    for v in values {
        let key = match v {
            Some(v) => {
                let key = i32::try_from(strings.len()).map_err(|_| {
                    ArrowError::ComputeError("more cached series than Int32 keys".into())
                })?;
                strings.push(v);
                Some(key)
            }
            None => None,
        };
        keys.push(key);
    }
    let array = DictionaryArray::<Int32Type>::try_new(
        Int32Array::from(keys),
        Arc::new(StringArray::from(strings)),
    )?;
    Ok(Arc::new(array))
}

/// A field column of one of the engine's field types, built directly from values all of
/// that type; `None` otherwise (a value of another type).
fn typed_array(values: &[Option<&ScalarValue>], dt: &DataType) -> Option<ArrayRef> {
    /// The values as an array of `$array` when each is a `ScalarValue::$variant`.
    macro_rules! all_of {
        ($array:ty, $variant:ident) => {{
            let each: Option<Vec<_>> = values
                .iter()
                .map(|v| match v {
                    None => Some(None),
                    Some(ScalarValue::$variant(x)) => Some(x.clone()),
                    Some(_) => None,
                })
                .collect();
            Arc::new(<$array>::from(each?))
        }};
    }
    let array: ArrayRef = match dt {
        DataType::Float64 => all_of!(Float64Array, Float64),
        DataType::Int64 => all_of!(Int64Array, Int64),
        DataType::UInt64 => all_of!(UInt64Array, UInt64),
        DataType::Boolean => all_of!(BooleanArray, Boolean),
        DataType::Utf8 => all_of!(StringArray, Utf8),
        _ => return None,
    };
    Some(array)
}

/// A field column of `dt` from values of any type, cast where they differ.
fn scalar_array(values: Vec<Option<&ScalarValue>>, dt: &DataType) -> Result<ArrayRef, ArrowError> {
    let null = ScalarValue::try_from(dt).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
    let values = values
        .into_iter()
        .map(|v| v.map_or_else(|| null.clone(), Clone::clone));
    let array =
        ScalarValue::iter_to_array(values).map_err(|e| ArrowError::ComputeError(e.to_string()))?;
    if array.data_type() == dt {
        Ok(array)
    } else {
        cast(&array, dt)
    }
}

#[derive(Debug, Clone, Copy)]
enum Precedence {
    /// The incoming row is newer than the cache (a write).
    Row,
    /// The cache is newer than the incoming row (the warm-up read).
    Cache,
}

fn time_column(batch: &RecordBatch) -> Option<&TimestampNanosecondArray> {
    batch
        .column_by_name(TIME_COLUMN)
        .and_then(|a| a.as_any().downcast_ref::<TimestampNanosecondArray>())
}

/// Tags as dictionaries (as the write path has them), so [`series_hashes`] agrees.
fn with_dictionary_tags(
    batch: &RecordBatch,
    columns: &[ColumnDef],
) -> Result<RecordBatch, ArrowError> {
    let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
    let mut fields = Vec::with_capacity(batch.num_columns());
    let mut arrays = Vec::with_capacity(batch.num_columns());
    for (f, a) in batch.schema().fields().iter().zip(batch.columns()) {
        let is_tag = columns
            .iter()
            .any(|c| c.name == *f.name() && matches!(c.kind, ColumnKind::Tag));
        if is_tag && a.data_type() != &dict {
            arrays.push(cast(a, &dict)?);
            fields.push(f.as_ref().clone().with_data_type(dict.clone()));
        } else {
            arrays.push(Arc::clone(a));
            fields.push(f.as_ref().clone());
        }
    }
    RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), arrays)
}

/// Row access to a batch: which columns are tags (dictionaries) and which are fields.
struct RowView<'a> {
    tags: Vec<(Arc<str>, &'a DictionaryArray<Int32Type>, &'a StringArray)>,
    fields: Vec<(Arc<str>, &'a ArrayRef)>,
}

impl<'a> RowView<'a> {
    /// The view of `batch`, its column names taken from `names` (added when new).
    fn new(batch: &'a RecordBatch, names: &mut Vec<Arc<str>>) -> Self {
        let mut tags = Vec::new();
        let mut fields = Vec::new();
        for (f, col) in batch.schema_ref().fields().iter().zip(batch.columns()) {
            if f.name() == TIME_COLUMN {
                continue;
            }
            let name = match names.iter().find(|n| ***n == **f.name()) {
                Some(n) => Arc::clone(n),
                None => {
                    let n: Arc<str> = Arc::from(f.name().as_str());
                    names.push(Arc::clone(&n));
                    n
                }
            };
            match col
                .as_any()
                .downcast_ref::<DictionaryArray<Int32Type>>()
                .and_then(|d| {
                    d.values()
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .map(|v| (d, v))
                }) {
                Some((d, v)) => tags.push((name, d, v)),
                None => fields.push((name, col)),
            }
        }
        tags.sort_by(|a, b| a.0.cmp(&b.0));
        Self { tags, fields }
    }

    fn tag(&self, i: usize, row: usize) -> Option<&'a str> {
        let (_, d, v) = &self.tags[i];
        if d.is_null(row) {
            return None;
        }
        let k = d.keys().value(row);
        usize::try_from(k)
            .ok()
            .filter(|k| *k < v.len())
            .map(|k| v.value(k))
    }

    fn tags(&self, row: usize) -> Vec<(Arc<str>, Arc<str>)> {
        (0..self.tags.len())
            .filter_map(|i| {
                self.tag(i, row)
                    .map(|v| (Arc::clone(&self.tags[i].0), Arc::from(v)))
            })
            .collect()
    }

    fn same_tags(&self, row: usize, tags: &[(Arc<str>, Arc<str>)]) -> bool {
        let mut mine =
            (0..self.tags.len()).filter_map(|i| self.tag(i, row).map(|v| (&*self.tags[i].0, v)));
        let mut theirs = tags.iter().map(|(k, v)| (&**k, &**v));
        loop {
            match (mine.next(), theirs.next()) {
                (None, None) => return true,
                (Some(a), Some(b)) if a == b => continue,
                _ => return false,
            }
        }
    }

    fn fields(&self, row: usize) -> Vec<(Arc<str>, ScalarValue)> {
        self.fields
            .iter()
            .filter(|(_, a)| a.is_valid(row))
            .filter_map(|(k, a)| {
                ScalarValue::try_from_array(a, row)
                    .ok()
                    .map(|v| (Arc::clone(k), v))
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{FieldValue, Point, build_batch};
    use strata_catalog::FieldType;

    fn cols() -> Vec<ColumnDef> {
        crate::schema::test_columns(&[("v", FieldType::Float), ("w", FieldType::Float)])
    }

    fn batch(points: &[(&str, i64, Option<f64>, Option<f64>)]) -> RecordBatch {
        let pts: Vec<Point> = points
            .iter()
            .map(|(host, t, v, w)| Point {
                table: "cpu".into(),
                tags: vec![("host".into(), (*host).into())].into(),
                fields: [("v", v), ("w", w)]
                    .into_iter()
                    .filter_map(|(k, x)| x.map(|x| (k.into(), FieldValue::F64(x))))
                    .collect(),
                time: *t,
                line: 1,
            })
            .collect();
        let refs: Vec<&Point> = pts.iter().collect();
        build_batch(&refs, &cols()).expect("batch")
    }

    fn rows(lv: &LastValues) -> Vec<String> {
        let schema = crate::schema::arrow_schema(&cols());
        let b = lv
            .to_batch(&schema, &cols(), i64::MIN, None)
            .expect("batch");
        let text = arrow::util::pretty::pretty_format_batches(&[b])
            .expect("print")
            .to_string();
        text.lines()
            .filter(|l| l.starts_with("| ") && !l.contains("host"))
            .map(str::to_string)
            .collect()
    }

    #[test]
    fn writes_keep_the_newest_row_and_merge_equal_times() {
        let mut lv = LastValues::warming(0);
        lv.apply_write(&batch(&[
            ("a", 1, Some(1.0), Some(1.0)),
            ("a", 3, Some(3.0), None),
            ("b", 2, Some(2.0), Some(2.0)),
            ("a", 2, Some(9.0), Some(9.0)),
        ]));
        // Same time, other field: merged; an older time: ignored.
        lv.apply_write(&batch(&[
            ("a", 3, None, Some(30.0)),
            ("b", 1, Some(-1.0), None),
        ]));
        lv.state = CacheState::Ready;
        assert_eq!(lv.series(), 2);
        let r = rows(&lv);
        assert!(
            r[0].contains("| a    |") && r[0].contains("| 3.0 | 30.0 |"),
            "{r:?}"
        );
        assert!(
            r[1].contains("| b    |") && r[1].contains("| 2.0 | 2.0  |"),
            "{r:?}"
        );
    }

    #[test]
    fn the_warm_up_read_loses_ties_to_writes_and_wins_when_newer() {
        let mut lv = LastValues::warming(0);
        // Written after the cache started: a at 5 with only w; b at 1.
        lv.apply_write(&batch(&[
            ("a", 5, None, Some(50.0)),
            ("b", 1, Some(1.0), None),
        ]));
        // The read saw a at 5 with both fields (an older value of w) and b at 4.
        let read = batch(&[
            ("a", 5, Some(5.0), Some(-5.0)),
            ("b", 4, Some(4.0), Some(4.0)),
        ]);
        lv.merge_scan(&[read], &cols(), 7);
        assert_eq!(lv.state, CacheState::Ready);
        assert_eq!(lv.ready_at, Some(7));
        let r = rows(&lv);
        assert!(r[0].contains("| 5.0 | 50.0 |"), "{r:?}");
        assert!(r[1].contains("| 4.0 | 4.0  |"), "{r:?}");
    }

    #[test]
    fn a_read_with_plain_string_tags_is_keyed_like_writes() {
        let mut lv = LastValues::warming(0);
        lv.apply_write(&batch(&[("a", 5, Some(5.0), None)]));
        let dict = batch(&[("a", 4, Some(4.0), None)]);
        let plain: Vec<ArrayRef> = dict
            .columns()
            .iter()
            .map(|c| match c.data_type() {
                DataType::Dictionary(_, _) => cast(c, &DataType::Utf8).expect("cast"),
                _ => Arc::clone(c),
            })
            .collect();
        let fields: Vec<arrow::datatypes::Field> = dict
            .schema()
            .fields()
            .iter()
            .zip(&plain)
            .map(|(f, a)| f.as_ref().clone().with_data_type(a.data_type().clone()))
            .collect();
        let read = RecordBatch::try_new(Arc::new(arrow::datatypes::Schema::new(fields)), plain)
            .expect("batch");
        lv.merge_scan(&[read], &cols(), 1);
        assert_eq!(lv.series(), 1, "the same series");
        assert!(rows(&lv)[0].contains("| 5.0 |"));
    }
}
