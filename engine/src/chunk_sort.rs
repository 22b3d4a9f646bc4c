//! Sorting a frozen chunk into the raw tier's file order ([`crate::persist::file_order`]:
//! time slice, tags in schema order with nulls first, then `time`) without a general
//! sort. Every tag value is ranked once per chunk (its string's place among the chunk's
//! values of that tag), and a row's time slice and tag ranks are packed into one integer
//! whose order is theirs (mixed radix: slice, then each tag). Rows then sort by that
//! integer and `time`, then write order, which makes the repeats of a point adjacent and
//! oldest first, to fold into one row where the chunk may hold repeats.
//!
//! DataFusion's sort compared up to a dozen dictionary columns row by row and merged the
//! sorted batches through row-encoded keys: about a fifth of the ingest path's CPU in the
//! TSBS load. When the packed integer would not fit in 64 bits (very many distinct values
//! of many tags in one chunk), [`sort_chunk`] declines and the caller sorts as before.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, AsArray, DictionaryArray, Int32Array, RecordBatch, StringArray,
    TimestampNanosecondArray,
};
use arrow::compute::interleave;
use arrow::datatypes::{DataType, Int32Type, SchemaRef};
use datafusion::common::{DataFusionError, Result};
use strata_catalog::{ColumnDef, ColumnKind};

use crate::buffer::SeqBatch;
use crate::dedup::to_table_schema;
use crate::schema::TIME_COLUMN;

/// Rows in each sorted batch.
const OUT_ROWS: usize = 32 * 1024;

/// One tag column over the chunk: its values sorted, and per batch each dictionary key's
/// rank (0 for null, else 1 + the value's place in `values`).
struct Ranked {
    column: usize,
    values: Arc<StringArray>,
    ranks: Vec<Vec<u64>>,
}

/// `batches` (one chunk of a table with `columns`, in any order) in the table's schema
/// (`schema`), sorted by time slice (`slice` ns), tags, `time`, then write order (batch
/// sequence, then row). With `dedup`, the repeats of a point (series and time) are folded
/// into one row, each field its latest non-null value: last write wins. `None` when the
/// sort keys do not pack into 64 bits, or a tag column is not the dictionary of strings
/// tags are stored as.
pub fn sort_chunk(
    batches: &[SeqBatch],
    columns: &[ColumnDef],
    schema: &SchemaRef,
    slice: i64,
    dedup: bool,
) -> Result<Option<Vec<RecordBatch>>> {
    let mut order: Vec<usize> = (0..batches.len()).collect();
    order.sort_by_key(|&i| batches[i].seq);
    let tables: Vec<RecordBatch> = order
        .iter()
        .map(|&i| to_table_schema(&batches[i].batch, schema))
        .collect::<Result<_>>()?;
    let time = schema.index_of(TIME_COLUMN)?;
    let mut tags = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        if c.kind == ColumnKind::Tag {
            match rank_tag(&tables, i)? {
                Some(r) => tags.push(r),
                None => return Ok(None),
            }
        }
    }
    let times: Vec<&TimestampNanosecondArray> = tables
        .iter()
        .map(|b| b.column(time).as_primitive())
        .collect();
    let slices = times
        .iter()
        .flat_map(|t| t.iter().flatten())
        .map(|t| t.div_euclid(slice))
        .fold(None, |acc: Option<(i64, i64)>, s| {
            Some(acc.map_or((s, s), |(lo, hi)| (lo.min(s), hi.max(s))))
        });
    let Some((first_slice, last_slice)) = slices else {
        return Ok(Some(Vec::new()));
    };
    // The radix of each digit: slices, then each tag's values and null.
    let mut span: u64 = 1;
    let mut radix = vec![u64::try_from(last_slice - first_slice + 1).unwrap_or(u64::MAX)];
    radix.extend(tags.iter().map(|t| t.values.len() as u64 + 1));
    for r in &radix {
        match span.checked_mul(*r) {
            Some(s) => span = s,
            None => return Ok(None),
        }
    }
    // (packed slice and tags, time, batch, row) of every row; every key is distinct.
    let rows: usize = tables.iter().map(RecordBatch::num_rows).sum();
    let mut keys: Vec<(u64, i64, u32, u32)> = Vec::with_capacity(rows);
    for (b, t) in times.iter().enumerate() {
        if t.null_count() > 0 {
            return Err(DataFusionError::Internal(
                "a hot batch has rows without a time".into(),
            ));
        }
        let mut codes: Vec<u64> = t
            .values()
            .iter()
            .map(|v| (v.div_euclid(slice) - first_slice) as u64)
            .collect();
        for (tag, n) in tags.iter().zip(&radix[1..]) {
            let dict = tables[b].column(tag.column).as_dictionary::<Int32Type>();
            let ranks = &tag.ranks[b];
            for (i, code) in codes.iter_mut().enumerate() {
                let rank = if dict.is_null(i) {
                    0
                } else {
                    ranks[dict.keys().value(i) as usize]
                };
                *code = *code * n + rank;
            }
        }
        for (row, (code, time)) in codes.into_iter().zip(t.values().iter()).enumerate() {
            keys.push((code, *time, b as u32, row as u32));
        }
    }
    keys.sort_unstable();
    let at = |i: usize| (keys[i].2 as usize, keys[i].3 as usize);
    // Runs of one (series, time): a point and its repeats, oldest first.
    let mut runs: Vec<Range<usize>> = Vec::new();
    let mut start = 0;
    for i in 1..=keys.len() {
        let same =
            i < keys.len() && dedup && keys[i].0 == keys[start].0 && keys[i].1 == keys[start].1;
        if !same {
            runs.push(start..i);
            start = i;
        }
    }
    let mut out = Vec::with_capacity(runs.len().div_ceil(OUT_ROWS));
    for part in runs.chunks(OUT_ROWS) {
        let firsts: Vec<(usize, usize)> = part.iter().map(|r| at(r.start)).collect();
        let repeats = part.iter().any(|r| r.len() > 1);
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(schema.fields().len());
        for (c, def) in columns.iter().enumerate() {
            let parts: Vec<&dyn Array> = tables.iter().map(|b| b.column(c).as_ref()).collect();
            let col = match tags.iter().find(|t| t.column == c) {
                Some(tag) => tag_column(tag, &tables, &firsts)?,
                // A field of a repeated point: its latest non-null value.
                None if repeats && matches!(def.kind, ColumnKind::Field(_)) => {
                    let latest: Vec<(usize, usize)> = part
                        .iter()
                        .map(|r| {
                            let valid =
                                r.clone().rev().map(at).find(|&(b, i)| parts[b].is_valid(i));
                            valid.unwrap_or_else(|| at(r.end - 1))
                        })
                        .collect();
                    interleave(&parts, &latest)?
                }
                None => interleave(&parts, &firsts)?,
            };
            cols.push(col);
        }
        out.push(RecordBatch::try_new(Arc::clone(schema), cols)?);
    }
    Ok(Some(out))
}

/// Ranks tag column `column` over `batches`; `None` when it is not a dictionary of strings.
fn rank_tag(batches: &[RecordBatch], column: usize) -> Result<Option<Ranked>> {
    let mut dicts = Vec::with_capacity(batches.len());
    for b in batches {
        let col = b.column(column);
        let (DataType::Dictionary(k, v), Some(dict)) =
            (col.data_type(), col.as_dictionary_opt::<Int32Type>())
        else {
            return Ok(None);
        };
        if **k != DataType::Int32 || **v != DataType::Utf8 {
            return Ok(None);
        }
        dicts.push(dict);
    }
    let mut all: Vec<&str> = dicts
        .iter()
        .flat_map(|d| d.values().as_string::<i32>().iter().flatten())
        .collect();
    all.sort_unstable();
    all.dedup();
    let ranks = dicts
        .iter()
        .map(|d| {
            d.values()
                .as_string::<i32>()
                .iter()
                .map(|v| v.map_or(0, |s| all.binary_search(&s).map_or(0, |i| i as u64 + 1)))
                .collect()
        })
        .collect();
    Ok(Some(Ranked {
        column,
        values: Arc::new(StringArray::from_iter_values(all)),
        ranks,
    }))
}

/// The tag column of the rows at `at` (batch, row) over the chunk's sorted values.
fn tag_column(tag: &Ranked, batches: &[RecordBatch], at: &[(usize, usize)]) -> Result<ArrayRef> {
    let dicts: Vec<&DictionaryArray<Int32Type>> = batches
        .iter()
        .map(|b| b.column(tag.column).as_dictionary())
        .collect();
    let keys: Int32Array = at
        .iter()
        .map(|&(b, r)| {
            let dict = dicts[b];
            if dict.is_null(r) {
                return None;
            }
            match tag.ranks[b][dict.keys().value(r) as usize] {
                0 => None,
                rank => Some(rank as i32 - 1),
            }
        })
        .collect();
    let values: ArrayRef = Arc::clone(&tag.values) as ArrayRef;
    Ok(Arc::new(DictionaryArray::<Int32Type>::try_new(
        keys, values,
    )?))
}

#[cfg(test)]
mod tests {
    use arrow::array::{Float64Array, Int64Array};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::prelude::SessionContext;
    use strata_catalog::FieldType;

    use super::*;
    use crate::buffer::{ChunkStats, FrozenChunk};
    use crate::persist::datafusion_sorted;
    use crate::schema::arrow_schema;

    fn column(name: &str, kind: ColumnKind) -> ColumnDef {
        ColumnDef {
            name: name.into(),
            kind,
        }
    }

    fn table() -> Vec<ColumnDef> {
        vec![
            column("a", ColumnKind::Tag),
            column("b", ColumnKind::Tag),
            column(TIME_COLUMN, ColumnKind::Time),
            column("f", ColumnKind::Field(FieldType::Float)),
            column("i", ColumnKind::Field(FieldType::Integer)),
        ]
    }

    /// A deterministic stream of numbers (a linear congruential generator).
    struct Numbers(u64);

    impl Numbers {
        fn below(&mut self, n: u64) -> u64 {
            self.0 = self
                .0
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            (self.0 >> 33) % n
        }
    }

    /// Five batches of rows in random order, with their own dictionaries, written out of
    /// sequence order; one lacks tag `b`, some tag values are null, times span several
    /// slices. With `repeats`, times come from a small set, so points repeat within and
    /// across batches; otherwise every row has its own time.
    fn chunk(repeats: bool) -> FrozenChunk {
        let all = table();
        let mut n = Numbers(7);
        let a_values = ["web", "db", "cache", "", "api"];
        let b_values = ["x", "y", "zz"];
        let mut batches = Vec::new();
        for (k, seq) in [5u64, 2, 9, 1, 7].into_iter().enumerate() {
            let cols: Vec<ColumnDef> = all
                .iter()
                .filter(|c| k != 3 || c.name != "b")
                .cloned()
                .collect();
            let rows = 200 + 37 * k;
            let mut a = Vec::new();
            let mut b = Vec::new();
            let mut time = Vec::new();
            for r in 0..rows {
                let v = a_values[n.below(5) as usize];
                a.push((!v.is_empty()).then_some(v));
                b.push((n.below(4) != 0).then(|| b_values[n.below(3) as usize]));
                time.push(if repeats {
                    n.below(40) as i64 * 250
                } else {
                    (k * 1000 + r) as i64 * 7 - 3000
                });
            }
            let mut arrays: Vec<ArrayRef> = Vec::new();
            for c in &cols {
                arrays.push(match c.name.as_str() {
                    "a" => Arc::new(a.iter().copied().collect::<DictionaryArray<Int32Type>>()),
                    "b" => Arc::new(b.iter().copied().collect::<DictionaryArray<Int32Type>>()),
                    "f" => Arc::new(Float64Array::from_iter(
                        (0..rows).map(|_| (n.below(3) != 0).then(|| n.below(1000) as f64)),
                    )),
                    "i" => Arc::new(Int64Array::from_iter_values(
                        (0..rows).map(|_| n.below(100) as i64),
                    )),
                    _ => Arc::new(TimestampNanosecondArray::from(time.clone())),
                });
            }
            let batch = RecordBatch::try_new(arrow_schema(&cols), arrays).expect("batch");
            batches.push(SeqBatch { seq, batch });
        }
        let rows = batches.iter().map(|b| b.batch.num_rows()).sum();
        FrozenChunk {
            db: "db".into(),
            table: "t".into(),
            start: -3000,
            end: 40_000,
            batches,
            stats: ChunkStats {
                rows,
                may_overlap: repeats,
                ..ChunkStats::default()
            },
        }
    }

    fn printed(batches: &[RecordBatch]) -> String {
        pretty_format_batches(batches).expect("print").to_string()
    }

    #[tokio::test]
    async fn sorts_and_deduplicates_like_datafusion() {
        let ctx = SessionContext::new();
        let columns = table();
        for repeats in [false, true] {
            let chunk = chunk(repeats);
            let (_, want) = datafusion_sorted(&ctx, &chunk, &columns)
                .await
                .expect("datafusion");
            let (schema, got) = crate::persist::dedup_sorted(&ctx, &chunk, &columns)
                .await
                .expect("sorted");
            assert_eq!(schema, arrow_schema(&columns));
            let rows: usize = got.iter().map(RecordBatch::num_rows).sum();
            if repeats {
                assert!(rows < chunk.stats.rows, "{rows}");
            } else {
                assert_eq!(rows, chunk.stats.rows);
            }
            assert_eq!(printed(&got), printed(&want), "repeats: {repeats}");
            // Its own sort did it: the chunk's sorted values are every batch's dictionary.
            let sorted = sort_chunk(&chunk.batches, &columns, &schema, 2500, repeats)
                .expect("sort")
                .expect("packs into 64 bits");
            let a = sorted[0].column(0).as_dictionary::<Int32Type>();
            let values: Vec<_> = a.values().as_string::<i32>().iter().flatten().collect();
            assert_eq!(values, ["api", "cache", "db", "web"]);
        }
    }

    #[test]
    fn declines_keys_that_do_not_pack_into_64_bits() {
        // Eight tags of 300 values each: 301^8 combinations.
        let columns: Vec<ColumnDef> = (0..8)
            .map(|i| column(&format!("t{i}"), ColumnKind::Tag))
            .chain([column(TIME_COLUMN, ColumnKind::Time)])
            .collect();
        let schema = arrow_schema(&columns);
        let mut arrays: Vec<ArrayRef> = (0..8)
            .map(|i| {
                let values = (0..300).map(|r| format!("v{}", (r * 7 + i) % 300));
                Arc::new(
                    values
                        .collect::<Vec<_>>()
                        .iter()
                        .map(String::as_str)
                        .collect::<DictionaryArray<Int32Type>>(),
                ) as ArrayRef
            })
            .collect();
        arrays.push(Arc::new(TimestampNanosecondArray::from_iter_values(0..300)));
        let batch = RecordBatch::try_new(Arc::clone(&schema), arrays).expect("batch");
        let batches = [SeqBatch { seq: 1, batch }];
        assert!(
            sort_chunk(&batches, &columns, &schema, 1000, false)
                .expect("sort")
                .is_none()
        );
        // Two of those tags pack.
        let few: Vec<ColumnDef> = columns[6..].to_vec();
        let schema = arrow_schema(&few);
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            batches[0].batch.columns()[6..].to_vec(),
        )
        .expect("batch");
        let sorted = sort_chunk(&[SeqBatch { seq: 1, batch }], &few, &schema, 1000, false)
            .expect("sort")
            .expect("packs");
        assert_eq!(sorted.iter().map(RecordBatch::num_rows).sum::<usize>(), 300);
    }
}
