//! Persistence of frozen hot chunks to Parquet.
//!
//! # File format
//! One file per persisted chunk (`paths::ParquetFilePath`), rows deduplicated
//! (last write wins) and sorted by (time slice, tags in schema order, `time`): files are
//! cut into time slices ([`slice_ns`]), a slice starts a new row group (unless the current
//! one is still small, see [`MIN_SLICE_ROWS`]), and within a row group rows are sorted by
//! (tags, `time`), the order recorded in its `sorting_columns`. A query over a few
//! minutes reads the row groups of one slice, not a whole file; a query for one series
//! still finds it by the tag statistics of each row group and page.
//!
//! Slices are long enough that a series' run in one holds about a thousand points at a
//! 10-second interval: delta encoding pays for every change of series (the jump widens a
//! whole block of 128 deltas). At rest, the TSBS integers took 0.51 bytes a value with
//! 1-hour slices (360 points), 0.44 with 3-hour ones and 0.40 in unsliced 6-hour files.
//!
//! Encodings chosen for time series:
//! - `time` and integer fields: `DELTA_BINARY_PACKED`, dictionary off (timestamps and
//!   counters are near-monotonic, deltas are tiny);
//! - tags: dictionary (few distinct values per row group);
//! - floats: dictionary while it pays, falling back to `BYTE_STREAM_SPLIT`, which lets
//!   ZSTD find the repeated exponent bytes of slowly changing gauges;
//! - ZSTD (level 3) everywhere, page and column-chunk statistics for pruning, row groups of
//!   at most [`ROW_GROUP_ROWS`] rows, pages of at most [`PAGE_ROWS`].
//!
//! The Arrow schema is embedded (the default of `ArrowWriter`), so tags read back as
//! dictionaries. The footer's key-value metadata also holds the file's time blocks
//! ([`crate::time_blocks`]): the time range of every 64 rows, which lets a query over a
//! few minutes of a slice read a few rows of each series' run rather than all of them.

use std::sync::Arc;

use arrow::array::{Array, TimestampNanosecondArray};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::{LogicalPlanBuilder, SortExpr};
use datafusion::prelude::{SessionContext, ident};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::{KeyValue, SortingColumn};
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use strata_catalog::{ColumnDef, ColumnKind, FieldType, Tier};

use crate::buffer::FrozenChunk;
use crate::chunk_sort::sort_chunk;
use crate::dedup::{
    merge_sorted_runs, ranked_batches, ranked_schema, then_write_order, to_table_schema,
};
use crate::rollup::bucket_expr;
use crate::schema::{TIME_COLUMN, arrow_schema};
use crate::time_blocks::{self, TimeBlocks};

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Rows per data page at most. A page holds the runs of a few series (a run is about a
/// thousand rows, see above), so the page index finds one series' rows without decoding
/// those of twenty others, as pages of DataFusion's default 20,000 rows made it.
pub const PAGE_ROWS: usize = 8 * 1024;

/// A slice smaller than this shares its row group with the next: a table of a few series
/// keeps row groups worth compressing and indexing.
pub const MIN_SLICE_ROWS: usize = 8 * 1024;

const HOUR: i64 = 3_600_000_000_000;

/// The time slice of `tier`'s files (ns): 3 hours of raw data, 6 hours of 1-minute
/// rollups (360 rows a series), 30 days of 1-hour rollups (720 rows a series; the cold
/// tier's compaction window, so its files are not sliced).
pub fn slice_ns(tier: Tier) -> i64 {
    match tier {
        Tier::Hot => 3 * HOUR,
        Tier::Warm => 6 * HOUR,
        Tier::Cold => 30 * 24 * HOUR,
    }
}

/// The row order of `tier`'s files for a table with `columns` (the tier's own columns):
/// time slice, then tags in schema order, then `time`.
pub fn file_order(tier: Tier, columns: &[ColumnDef]) -> Vec<SortExpr> {
    let mut sort = vec![bucket_expr(slice_ns(tier)).sort(true, true)];
    sort.extend(
        columns
            .iter()
            .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
            .map(|c| ident(&c.name).sort(true, true)),
    );
    sort
}

/// Writer properties for a table with `columns`.
pub fn writer_properties(columns: &[ColumnDef]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
        .set_data_page_row_count_limit(PAGE_ROWS)
        .set_created_by(format!("strata {}", env!("CARGO_PKG_VERSION")));
    let mut sorting = Vec::new();
    for (i, c) in columns.iter().enumerate() {
        let path = ColumnPath::from(c.name.as_str());
        match c.kind {
            ColumnKind::Tag => {
                b = b.set_column_dictionary_enabled(path, true);
                sorting.push(SortingColumn {
                    column_idx: i as i32,
                    descending: false,
                    nulls_first: true,
                });
            }
            ColumnKind::Time => {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
                sorting.push(SortingColumn {
                    column_idx: i as i32,
                    descending: false,
                    nulls_first: true,
                });
            }
            ColumnKind::Field(FieldType::Integer | FieldType::UInteger) => {
                b = b
                    .set_column_dictionary_enabled(path.clone(), false)
                    .set_column_encoding(path, Encoding::DELTA_BINARY_PACKED);
            }
            ColumnKind::Field(FieldType::Float) => {
                b = b.set_column_encoding(path, Encoding::BYTE_STREAM_SPLIT);
            }
            ColumnKind::Field(FieldType::Boolean | FieldType::String) => {}
        }
    }
    // Tags come before time in every table schema, so this is the (tags, time) order.
    b.set_sorting_columns(Some(sorting)).build()
}

/// Deduplicates and sorts a frozen chunk ([`file_order`]). Returns batches in the table
/// schema for `columns`.
///
/// [`sort_chunk`] sorts and folds the repeats of a point (series, time) where the chunk may
/// hold any. Where it declines, DataFusion sorts, also by write order (`__seq`, `__row`)
/// where rows may repeat, and [`merge_sorted_runs`] folds each run. Deduplicating with an
/// aggregate (as queries over overlapping data do) took more CPU than the whole rest of the
/// write path when concurrent writers deliver a series' points out of order.
pub async fn dedup_sorted(
    ctx: &SessionContext,
    chunk: &FrozenChunk,
    columns: &[ColumnDef],
) -> datafusion::common::Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = arrow_schema(columns);
    // The chunk's own sort, off the async runtime; DataFusion's when it declines.
    let (batches, cols, table) = (chunk.batches.clone(), columns.to_vec(), Arc::clone(&schema));
    let overlap = chunk.stats.may_overlap;
    let sorted = tokio::task::spawn_blocking(move || {
        sort_chunk(&batches, &cols, &table, slice_ns(Tier::Hot), overlap)
    })
    .await
    .map_err(|e| datafusion::error::DataFusionError::External(Box::new(e)))??;
    if let Some(sorted) = sorted {
        return Ok((schema, sorted));
    }
    datafusion_sorted(ctx, chunk, columns).await
}

/// [`dedup_sorted`] with DataFusion's sort.
pub(crate) async fn datafusion_sorted(
    ctx: &SessionContext,
    chunk: &FrozenChunk,
    columns: &[ColumnDef],
) -> datafusion::common::Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = arrow_schema(columns);
    let mut order = file_order(Tier::Hot, columns);
    let (input, input_schema) = if chunk.stats.may_overlap {
        order = then_write_order(order);
        (
            ranked_batches(&chunk.batches, &schema)?,
            ranked_schema(&schema),
        )
    } else {
        // No (series, time) repeats in the chunk: sorting is all it needs.
        let batches = chunk
            .batches
            .iter()
            .map(|b| to_table_schema(&b.batch, &schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        (batches, Arc::clone(&schema))
    };
    let mem = MemTable::try_new(Arc::clone(&input_schema), vec![input])?;
    let plan = LogicalPlanBuilder::scan("chunk", provider_as_source(Arc::new(mem)), None)?
        .sort(order)?
        .build()?;
    let sorted = ctx.execute_logical_plan(plan).await?.collect().await?;
    if !chunk.stats.may_overlap {
        return Ok((schema, sorted));
    }
    let merged = merge_sorted_runs(sorted, columns, &schema)?;
    Ok((schema, merged))
}

/// Encodes batches (in [`file_order`] for slices of `slice` ns) as one Parquet file, a new
/// row group at the start of each slice once the current one holds [`MIN_SLICE_ROWS`].
pub fn encode_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    columns: &[ColumnDef],
    slice: i64,
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        Arc::clone(schema),
        Some(writer_properties(columns)),
    )?;
    let time = schema.index_of(TIME_COLUMN).ok();
    let mut current: Option<i64> = None;
    // `None` once a batch has no (non-null) times: the file then gets no time blocks.
    let mut blocks = Some(TimeBlocks::default());
    for b in batches {
        let times = time.and_then(|i| {
            b.column(i)
                .as_any()
                .downcast_ref::<TimestampNanosecondArray>()
        });
        let Some(times) = times.filter(|t| t.null_count() == 0) else {
            blocks = None;
            w.write(b)?;
            continue;
        };
        if let Some(blocks) = blocks.as_mut() {
            blocks.push(times.values());
        }
        let mut start = 0;
        for (row, t) in times.values().iter().enumerate() {
            let s = t.div_euclid(slice.max(1));
            if current.is_some_and(|c| c != s) {
                if row > start {
                    w.write(&b.slice(start, row - start))?;
                }
                if w.in_progress_rows() >= MIN_SLICE_ROWS {
                    w.flush()?;
                }
                start = row;
            }
            current = Some(s);
        }
        if start < b.num_rows() {
            w.write(&b.slice(start, b.num_rows() - start))?;
        }
    }
    if let Some(blocks) = blocks.filter(|b| !b.is_empty()) {
        w.append_key_value_metadata(KeyValue::new(time_blocks::KEY.to_string(), blocks.encode()));
    }
    w.close()?;
    Ok(buf)
}
