//! The hot table: per (database, table), Arrow record batches grouped in time chunks.
//!
//! Writes are applied here by the WAL thread in sequence order, after they are durable.
//! A chunk covers `[start, start + chunk_duration)` of event time. Persistence freezes a
//! chunk (it stays visible to queries) and removes it once its Parquet file is in the
//! catalog; later writes to the same time range start a new chunk.

use std::collections::BTreeMap;
use std::hash::BuildHasher;
use std::sync::Arc;

use arrow::array::{Array, BooleanArray, DictionaryArray, StringArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::Int32Type;
use arrow::record_batch::RecordBatch;
use datafusion::common::HashMap;
use datafusion::common::hash_utils::RandomState;
use strata_catalog::ColumnDef;

use crate::schema::{TIME_COLUMN, add_column, column_def};

/// A batch and the WAL sequence of the write it came from.
#[derive(Debug, Clone)]
pub struct SeqBatch {
    pub seq: u64,
    pub batch: RecordBatch,
}

/// Summary of a set of batches of one chunk.
#[derive(Debug, Clone, Default)]
pub struct ChunkStats {
    pub rows: usize,
    pub bytes: usize,
    pub min_seq: u64,
    pub max_seq: u64,
    pub min_time: i64,
    pub max_time: i64,
    /// Whether two rows of the chunk may share (series, time). False while every row of
    /// every series came later in time than the series' previous row, the common case
    /// for metrics; then queries and persistence skip last-write-wins for the chunk.
    pub may_overlap: bool,
}

impl ChunkStats {
    fn add(&mut self, seq: u64, b: &RecordBatch, min_time: i64, max_time: i64) {
        if self.rows == 0 {
            self.min_seq = seq;
            self.min_time = min_time;
            self.max_time = max_time;
        }
        self.rows += b.num_rows();
        self.bytes += b.get_array_memory_size();
        self.min_seq = self.min_seq.min(seq);
        self.max_seq = self.max_seq.max(seq);
        self.min_time = self.min_time.min(min_time);
        self.max_time = self.max_time.max(max_time);
    }
}

/// A chunk still receiving writes.
#[derive(Debug)]
pub struct HotChunk {
    pub start: i64,
    pub end: i64,
    pub batches: Vec<SeqBatch>,
    pub stats: ChunkStats,
    /// When the chunk received its first write (clock ns).
    pub created_at: i64,
    /// Latest time seen per series (by series hash), to detect possible overlap.
    series_last: HashMap<u64, i64>,
}

/// A chunk being persisted: immutable, still visible to queries.
#[derive(Debug)]
pub struct FrozenChunk {
    pub db: String,
    pub table: String,
    pub start: i64,
    pub end: i64,
    pub batches: Vec<SeqBatch>,
    pub stats: ChunkStats,
}

#[derive(Debug, Default)]
pub struct TableBuffer {
    /// The table's columns: persisted ones from the catalog plus everything written since.
    pub columns: Vec<ColumnDef>,
    pub active: BTreeMap<i64, HotChunk>,
    pub frozen: Vec<Arc<FrozenChunk>>,
    /// The latest row of every series, once a query asked for it.
    pub last_values: Option<crate::last_values::LastValues>,
}

impl TableBuffer {
    pub fn hot_bytes(&self) -> usize {
        self.active.values().map(|c| c.stats.bytes).sum::<usize>()
            + self.frozen.iter().map(|c| c.stats.bytes).sum::<usize>()
    }
}

/// Applies one table's batch of one write: merges its columns into the table's and
/// appends it to the chunks its rows fall in. Returns the change in bytes, which is
/// negative when merging small batches saved more than the write added.
pub fn apply_batch(
    table: &mut TableBuffer,
    seq: u64,
    batch: RecordBatch,
    chunk_ns: i64,
    now: i64,
) -> isize {
    for f in batch.schema().fields() {
        if let Some(c) = column_def(f) {
            add_column(&mut table.columns, c);
        }
    }
    let Some(times) = batch
        .column_by_name(TIME_COLUMN)
        .and_then(|a| a.as_any().downcast_ref::<TimestampNanosecondArray>())
        .cloned()
    else {
        return 0;
    };
    if times.is_empty() {
        return 0;
    }
    let chunk_of = |t: i64| t.div_euclid(chunk_ns) * chunk_ns;
    let values = times.values();
    let first = chunk_of(values[0]);
    let mut added = 0;
    if values.iter().all(|t| chunk_of(*t) == first) {
        added += push(table, first, chunk_ns, seq, batch, values, now);
        return added;
    }
    let mut starts: Vec<i64> = values.iter().map(|t| chunk_of(*t)).collect();
    starts.sort_unstable();
    starts.dedup();
    for start in starts {
        let mask = BooleanArray::from_iter(values.iter().map(|t| Some(chunk_of(*t) == start)));
        let Ok(part) = filter_record_batch(&batch, &mask) else {
            continue;
        };
        let part_times: Vec<i64> = values
            .iter()
            .copied()
            .filter(|t| chunk_of(*t) == start)
            .collect();
        added += push(table, start, chunk_ns, seq, part, &part_times, now);
    }
    added
}

fn push(
    table: &mut TableBuffer,
    start: i64,
    chunk_ns: i64,
    seq: u64,
    batch: RecordBatch,
    times: &[i64],
    now: i64,
) -> isize {
    let (min_t, max_t) = times
        .iter()
        .fold((i64::MAX, i64::MIN), |(lo, hi), t| (lo.min(*t), hi.max(*t)));
    let chunk = table.active.entry(start).or_insert_with(|| HotChunk {
        start,
        end: start.saturating_add(chunk_ns),
        batches: Vec::new(),
        stats: ChunkStats::default(),
        created_at: now,
        series_last: HashMap::new(),
    });
    let before = chunk.stats.bytes;
    let series_before = chunk.series_last.len();
    for (h, t) in series_hashes(&batch).into_iter().zip(times) {
        let last = chunk.series_last.entry(h).or_insert(i64::MIN);
        if *t <= *last {
            chunk.stats.may_overlap = true;
        } else {
            *last = *t;
        }
    }
    chunk.stats.add(seq, &batch, min_t, max_t);
    // Account for the series map too (key, value and table overhead).
    chunk.stats.bytes += (chunk.series_last.len() - series_before) * 32;
    chunk.batches.push(SeqBatch { seq, batch });
    merge_small_tail(chunk);
    chunk.stats.bytes as isize - before as isize
}

/// A batch below this many rows counts as small.
const SMALL_BATCH_ROWS: usize = 512;
/// This many small batches at the end of a chunk are merged into one.
const SMALL_BATCHES_TO_MERGE: usize = 32;

/// Merges the chunk's trailing small batches into one. A scrape or remote_write request
/// touches hundreds of tables with a few rows each; kept apart, every such batch costs
/// ~2 KB of array overhead, more than its rows. The merged batch takes the newest
/// sequence, its rows in write order: the batches are contiguous and in sequence order
/// (the WAL thread applies writes in order), so ranking by (`__seq`, `__row`) in
/// last-write-wins is unchanged.
fn merge_small_tail(chunk: &mut HotChunk) {
    let tail = chunk
        .batches
        .iter()
        .rev()
        .take_while(|b| b.batch.num_rows() < SMALL_BATCH_ROWS)
        .count();
    if tail < SMALL_BATCHES_TO_MERGE {
        return;
    }
    let from = chunk.batches.len() - tail;
    let parts = &chunk.batches[from..];
    // The union of the parts' columns, in order of first appearance.
    let mut fields: Vec<arrow::datatypes::FieldRef> = Vec::new();
    for p in parts {
        for f in p.batch.schema().fields() {
            if !fields.iter().any(|x| x.name() == f.name()) {
                fields.push(Arc::clone(f));
            }
        }
    }
    let schema = Arc::new(arrow::datatypes::Schema::new(fields));
    let padded: Result<Vec<RecordBatch>, _> = parts
        .iter()
        .map(|p| crate::dedup::to_table_schema(&p.batch, &schema))
        .collect();
    let Ok(merged) = padded.and_then(|b| {
        arrow::compute::concat_batches(&schema, &b)
            .map_err(datafusion::error::DataFusionError::from)
    }) else {
        // Types differ (cannot happen: the table's schema is checked per write); keep them.
        return;
    };
    let old: usize = parts.iter().map(|p| p.batch.get_array_memory_size()).sum();
    let seq = parts.last().map_or(0, |p| p.seq);
    chunk.stats.bytes = chunk.stats.bytes.saturating_sub(old) + merged.get_array_memory_size();
    chunk.batches.truncate(from);
    chunk.batches.push(SeqBatch { seq, batch: merged });
}

/// A hash of each row's series: its non-null tags as (name, value) pairs, combined so the
/// order and presence of tag columns in a batch do not matter (a missing tag equals an
/// empty one). Different series may collide; that only makes overlap detection cautious.
pub fn series_hashes(batch: &RecordBatch) -> Vec<u64> {
    let state = RandomState::with_seed(0);
    let mut out = vec![0u64; batch.num_rows()];
    for (f, col) in batch.schema().fields().iter().zip(batch.columns()) {
        let Some(dict) = col.as_any().downcast_ref::<DictionaryArray<Int32Type>>() else {
            continue;
        };
        let Some(values) = dict.values().as_any().downcast_ref::<StringArray>() else {
            continue;
        };
        let value_hash: Vec<u64> = (0..values.len())
            .map(|i| state.hash_one((f.name().as_str(), values.value(i))))
            .collect();
        for (r, k) in dict.keys().iter().enumerate() {
            if let Some(h) = k.and_then(|k| value_hash.get(k as usize)) {
                out[r] ^= h;
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::write::{FieldValue, Point, build_batch};
    use strata_catalog::FieldType;

    fn cols() -> Vec<ColumnDef> {
        crate::schema::test_columns(&[("v", FieldType::Float)])
    }

    fn point(t: i64) -> Point {
        Point {
            table: "cpu".into(),
            tags: vec![("host".into(), "a".into())].into(),
            fields: vec![("v".into(), FieldValue::F64(1.0))],
            time: t,
            line: 1,
        }
    }

    #[test]
    fn small_batches_merge_and_keep_their_order() {
        let mut t = TableBuffer::default();
        let mut columns = cols();
        columns.push(ColumnDef {
            name: "rack".into(),
            kind: strata_catalog::ColumnKind::Tag,
        });
        for i in 0..100_i64 {
            // Each write one point; every tenth also has a tag the others lack (its
            // batch has one more column).
            let mut p = point(i % 7);
            p.fields = vec![("v".into(), FieldValue::F64(i as f64))];
            if i % 10 == 0 {
                p.tags = [("host".into(), "a".into()), ("rack".into(), "r1".into())].into();
            }
            let batch = build_batch(&[&p], &columns).expect("batch");
            apply_batch(&mut t, i as u64 + 1, batch, 1_000, 0);
        }
        let chunk = t.active.values().next().expect("chunk");
        assert!(chunk.batches.len() < 10, "{} batches", chunk.batches.len());
        let rows: usize = chunk.batches.iter().map(|b| b.batch.num_rows()).sum();
        assert_eq!(rows, 100);
        // Sequences still ascend, and within a merged batch rows are in write order.
        assert!(chunk.batches.windows(2).all(|w| w[0].seq < w[1].seq));
        let values: Vec<f64> = chunk
            .batches
            .iter()
            .flat_map(|b| {
                let v = b.batch.column_by_name("v").expect("v");
                let v = v
                    .as_any()
                    .downcast_ref::<arrow::array::Float64Array>()
                    .expect("f64")
                    .clone();
                v.values().to_vec()
            })
            .collect();
        assert_eq!(values, (0..100).map(|i| i as f64).collect::<Vec<_>>());
        let merged = &chunk.batches[0].batch;
        let racks = merged.column_by_name("rack").expect("rack column");
        assert_eq!(
            racks.null_count(),
            merged.num_rows() - merged.num_rows().div_ceil(10)
        );
        let bytes: usize = chunk
            .batches
            .iter()
            .map(|b| b.batch.get_array_memory_size())
            .sum();
        assert!(
            chunk.stats.bytes >= bytes && chunk.stats.bytes < bytes + 4096,
            "{} vs {bytes}",
            chunk.stats.bytes
        );
    }

    #[test]
    fn overlap_is_detected_only_when_a_series_goes_back_in_time() {
        let mut t = TableBuffer::default();
        let apply = |t: &mut TableBuffer, pts: &[Point]| {
            let refs: Vec<&Point> = pts.iter().collect();
            apply_batch(t, 1, build_batch(&refs, &cols()).expect("batch"), 100, 0);
        };
        let mut other = point(1);
        other.tags = vec![("host".into(), "b".into())].into();
        apply(&mut t, &[point(1), point(2), other.clone()]);
        apply(&mut t, &[point(3)]);
        assert!(!t.active[&0].stats.may_overlap);
        // Host b at an older time than its last: may overlap (it does not, but b's order broke).
        other.time = 0;
        apply(&mut t, &[other]);
        assert!(t.active[&0].stats.may_overlap);
        // A real duplicate in one batch is caught too.
        let mut t = TableBuffer::default();
        apply(&mut t, &[point(5), point(5)]);
        assert!(t.active[&0].stats.may_overlap);
    }

    #[test]
    fn batch_spanning_chunks_is_split() {
        let pts = [point(5), point(15), point(-1)];
        let refs: Vec<&Point> = pts.iter().collect();
        let batch = build_batch(&refs, &cols()).expect("batch");
        let mut t = TableBuffer::default();
        apply_batch(&mut t, 7, batch, 10, 0);
        let starts: Vec<i64> = t.active.keys().copied().collect();
        assert_eq!(starts, vec![-10, 0, 10]);
        assert_eq!(t.active[&0].stats.rows, 1);
        assert_eq!(t.active[&-10].stats.min_time, -1);
        assert_eq!(t.active[&10].stats.max_seq, 7);
        assert_eq!(t.columns.len(), 3);
    }
}
