//! What reading part of a Parquet file costs, estimated before planning a scan of it, so
//! the query planner can choose between ways of answering (tier choice: rollups or raw
//! rows). Files are sorted by series, then time: a filter on tags keeps whole stretches
//! of pages, while a time range keeps a few rows of every series' run, and the reader
//! decodes (or decodes to skip) every page it keeps. So the estimate has two parts:
//! - **decoded rows**: the rows of the pages whose tag statistics can match the tag
//!   filters, in row groups whose time statistics overlap the ranges;
//! - **selected rows**: of those, the share inside the time ranges, what filters and
//!   aggregates then process.
//!
//! It reads the file's footer and page index from the metadata cache only (metadata
//! warming keeps them there); without them, every row counts as decoded and the time
//! share of the file's `[min_time, max_time]` as selected.

use parquet::file::metadata::ParquetMetaData;
use parquet::file::page_index::column_index::ColumnIndexMetaData;
use parquet::file::statistics::Statistics;
use strata_catalog::ParquetFileMeta;

use crate::schema::TIME_COLUMN;

/// A filter `column IN (values)` on a tag (`=` is one value).
#[derive(Debug, Clone)]
pub struct TagFilter {
    pub column: String,
    pub values: Vec<String>,
}

/// Rows a scan of a file, or of many, is expected to decode and to select.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct ReadEstimate {
    pub files: usize,
    pub decoded_rows: f64,
    pub selected_rows: f64,
}

impl ReadEstimate {
    pub fn add(&mut self, other: ReadEstimate) {
        self.files += other.files;
        self.decoded_rows += other.decoded_rows;
        self.selected_rows += other.selected_rows;
    }
}

/// The estimate for reading the rows of `f` in `ranges` (`[lo, hi)`, ns) that `tags` can
/// match, with `meta` its cached footer and page index if there; `None` when no range
/// overlaps the file.
pub fn estimate(
    f: &ParquetFileMeta,
    meta: Option<&ParquetMetaData>,
    tags: &[TagFilter],
    ranges: &[(i64, i64)],
) -> Option<ReadEstimate> {
    if !overlaps(f, ranges) {
        return None;
    }
    let rows = f.row_count as f64;
    let fallback = ReadEstimate {
        files: 1,
        decoded_rows: rows,
        selected_rows: rows * time_share(f.min_time, f.max_time, ranges),
    };
    let Some(meta) = meta else {
        return Some(fallback);
    };
    let columns = meta.file_metadata().schema_descr().columns();
    let position = |name: &str| columns.iter().position(|c| c.name() == name);
    let Some(time) = position(TIME_COLUMN) else {
        return Some(fallback);
    };
    let filtered: Vec<(usize, &TagFilter)> = tags
        .iter()
        .filter_map(|t| position(&t.column).map(|i| (i, t)))
        .collect();
    let mut out = ReadEstimate {
        files: 1,
        ..ReadEstimate::default()
    };
    for (g, group) in meta.row_groups().iter().enumerate() {
        let group_rows = group.num_rows().max(0) as f64;
        let (lo, hi) = match group.column(time).statistics() {
            Some(Statistics::Int64(s)) => match (s.min_opt(), s.max_opt()) {
                (Some(&lo), Some(&hi)) => (lo, hi),
                _ => (f.min_time, f.max_time),
            },
            _ => (f.min_time, f.max_time),
        };
        let share = time_share(lo, hi, ranges);
        if share == 0.0 {
            continue;
        }
        // Each tag filter keeps some of the group's rows; together at most the fewest.
        let matched = filtered
            .iter()
            .map(|&(c, t)| matching_rows(meta, g, c, t))
            .fold(group_rows, f64::min);
        out.decoded_rows += matched;
        out.selected_rows += matched * share;
    }
    Some(out)
}

/// Whether `f` holds times in any of `ranges` (`[lo, hi)`, ns).
pub fn overlaps(f: &ParquetFileMeta, ranges: &[(i64, i64)]) -> bool {
    ranges
        .iter()
        .any(|&(lo, hi)| f.min_time < hi && f.max_time >= lo)
}

/// The rows of row group `g` in pages of column `c` whose min/max can hold one of `t`'s
/// values (the column chunk's statistics when there is no page index).
fn matching_rows(meta: &ParquetMetaData, g: usize, c: usize, t: &TagFilter) -> f64 {
    let group = meta.row_group(g);
    let group_rows = group.num_rows().max(0);
    let can_hold = |min: Option<&[u8]>, max: Option<&[u8]>| match (min, max) {
        (Some(min), Some(max)) => t
            .values
            .iter()
            .any(|v| min <= v.as_bytes() && v.as_bytes() <= max),
        // A page of nulls only, or no statistics: nulls never equal a value, but unknown
        // statistics can hold anything.
        (None, None) => false,
        _ => true,
    };
    let pages = meta
        .column_index()
        .and_then(|ci| ci.get(g))
        .and_then(|ci| ci.get(c));
    let locations = meta
        .offset_index()
        .and_then(|oi| oi.get(g))
        .and_then(|oi| oi.get(c))
        .map(|oi| oi.page_locations());
    match (pages, locations) {
        (Some(ColumnIndexMetaData::BYTE_ARRAY(index)), Some(locations))
            if locations.len() as u64 == index.num_pages() =>
        {
            let mut rows = 0i64;
            for (p, loc) in locations.iter().enumerate() {
                let end = locations
                    .get(p + 1)
                    .map_or(group_rows, |next| next.first_row_index);
                if index.is_null_page(p) {
                    continue;
                }
                if can_hold(index.min_value(p), index.max_value(p)) {
                    rows += end - loc.first_row_index;
                }
            }
            rows as f64
        }
        _ => match group.column(c).statistics() {
            Some(Statistics::ByteArray(s)) => {
                let min = s.min_opt().map(|v| v.data());
                let max = s.max_opt().map(|v| v.data());
                if can_hold(min, max) {
                    group_rows as f64
                } else {
                    0.0
                }
            }
            _ => group_rows as f64,
        },
    }
}

/// The share of `[lo, hi]` (inclusive, ns) inside `ranges` (`[lo, hi)`), by duration.
fn time_share(lo: i64, hi: i64, ranges: &[(i64, i64)]) -> f64 {
    let end = hi.saturating_add(1);
    let span = end.saturating_sub(lo).max(1) as f64;
    let inside: f64 = ranges
        .iter()
        .map(|&(a, b)| end.min(b).saturating_sub(lo.max(a)).max(0) as f64)
        .sum();
    (inside / span).min(1.0)
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use arrow::array::{
        ArrayRef, DictionaryArray, Int64Array, RecordBatch, TimestampNanosecondArray,
    };
    use arrow::datatypes::Int32Type;
    use bytes::Bytes;
    use parquet::file::metadata::{PageIndexPolicy, ParquetMetaDataReader};
    use strata_catalog::{FieldType, Tier};

    use super::*;
    use crate::persist::{encode_parquet, slice_ns};
    use crate::schema::{arrow_schema, test_columns};

    const SEC: i64 = 1_000_000_000;

    /// A raw file of `hosts` series (`host_000`…), one point every 10 s for 3 hours, with
    /// its catalog entry and its footer and page index as the cache holds them.
    fn raw_file(hosts: usize) -> (ParquetFileMeta, ParquetMetaData) {
        let columns = test_columns(&[("usage", FieldType::Integer)]);
        let schema = arrow_schema(&columns);
        let points = 1080;
        let (mut names, mut times, mut values) = (Vec::new(), Vec::new(), Vec::new());
        for h in 0..hosts {
            for i in 0..points {
                names.push(format!("host_{h:03}"));
                times.push(i * 10 * SEC);
                values.push((h as i64 * 7 + i) % 100);
            }
        }
        let host: DictionaryArray<Int32Type> = names.iter().map(String::as_str).collect();
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(host) as ArrayRef,
                Arc::new(TimestampNanosecondArray::from(times)),
                Arc::new(Int64Array::from(values)),
            ],
        )
        .expect("batch");
        let bytes =
            encode_parquet(&schema, &[batch], &columns, slice_ns(Tier::Hot)).expect("encode");
        let size = bytes.len() as u64;
        let meta = ParquetMetaDataReader::new()
            .with_page_index_policy(PageIndexPolicy::Required)
            .parse_and_finish(&Bytes::from(bytes))
            .expect("footer");
        let f = ParquetFileMeta {
            id: strata_catalog::FileId(0),
            path: "f.parquet".into(),
            tier: Tier::Hot,
            min_time: 0,
            max_time: (points - 1) * 10 * SEC,
            chunk_start: 0,
            chunk_end: 3 * 3600 * SEC,
            row_count: (hosts as i64 * points) as u64,
            size_bytes: size,
            max_seq: 0,
            created_at: 0,
        };
        (f, meta)
    }

    #[test]
    fn tag_filters_keep_the_pages_of_their_series_and_time_ranges_a_share() {
        let (f, meta) = raw_file(200);
        let all = [(i64::MIN, i64::MAX)];
        let whole = estimate(&f, Some(&meta), &[], &all).expect("overlaps");
        assert_eq!(whole.decoded_rows, 216_000.0);
        assert_eq!(whole.selected_rows, 216_000.0);

        // One host: the pages holding its run (a page is 8 Ki rows, a run 1,080 rows).
        let one = [TagFilter {
            column: "host".into(),
            values: vec!["host_042".into()],
        }];
        let e = estimate(&f, Some(&meta), &one, &all).expect("overlaps");
        assert!(
            e.decoded_rows >= 1080.0 && e.decoded_rows <= 3.0 * 8192.0,
            "{e:?}"
        );
        // Ten minutes of three hours: an eighteenth of those rows.
        let ten = [(3600 * SEC, 4200 * SEC)];
        let t = estimate(&f, Some(&meta), &one, &ten).expect("overlaps");
        assert_eq!(t.decoded_rows, e.decoded_rows);
        assert!(
            (t.selected_rows * 18.0 / e.decoded_rows - 1.0).abs() < 0.01,
            "{t:?}"
        );
        // Every host and ten minutes: every row decoded, an eighteenth selected.
        let t = estimate(&f, Some(&meta), &[], &ten).expect("overlaps");
        assert_eq!(t.decoded_rows, 216_000.0);
        assert!((t.selected_rows / 12_000.0 - 1.0).abs() < 0.01, "{t:?}");

        // A value no page holds, or a range outside the file: nothing, or no file at all.
        let none = [TagFilter {
            column: "host".into(),
            values: vec!["zzz".into()],
        }];
        let e = estimate(&f, Some(&meta), &none, &all).expect("overlaps");
        assert_eq!(e.decoded_rows, 0.0);
        assert_eq!(estimate(&f, Some(&meta), &[], &[(-100, -1)]), None);

        // Without the cached metadata: every row decoded, the time share selected.
        let e = estimate(&f, None, &one, &ten).expect("overlaps");
        assert_eq!(e.decoded_rows, 216_000.0);
        assert!((e.selected_rows / 12_000.0 - 1.0).abs() < 0.01, "{e:?}");
    }

    #[test]
    fn time_share_counts_the_overlap_of_every_range() {
        assert_eq!(time_share(0, 99, &[(0, 100)]), 1.0);
        assert_eq!(time_share(0, 99, &[(50, 60), (90, 200)]), 0.2);
        assert_eq!(time_share(0, 99, &[(100, 200), (-50, 0)]), 0.0);
        assert_eq!(time_share(5, 5, &[(5, 6)]), 1.0);
        assert_eq!(time_share(i64::MIN, i64::MAX, &[(i64::MIN, i64::MAX)]), 1.0);
    }
}
