//! Persistence of frozen hot chunks to Parquet.
//!
//! # File format
//! One file per persisted chunk (`paths::ParquetFilePath`), rows deduplicated
//! (last write wins) and sorted by (tags in schema order, `time`), the sort order recorded
//! in the file's `sorting_columns`. Encodings chosen for time series:
//! - `time` and integer fields: `DELTA_BINARY_PACKED`, dictionary off (timestamps and
//!   counters are near-monotonic, deltas are tiny);
//! - tags: dictionary (few distinct values per row group);
//! - floats: dictionary while it pays, falling back to `BYTE_STREAM_SPLIT`, which lets
//!   ZSTD find the repeated exponent bytes of slowly changing gauges;
//! - ZSTD (level 3) everywhere, page and column-chunk statistics for pruning, row groups of
//!   at most [`ROW_GROUP_ROWS`] rows.
//!
//! The Arrow schema is embedded (the default of `ArrowWriter`), so tags read back as
//! dictionaries.

use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::datasource::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::logical_expr::LogicalPlanBuilder;
use datafusion::prelude::{SessionContext, ident};
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::metadata::SortingColumn;
use parquet::file::properties::{EnabledStatistics, WriterProperties};
use parquet::schema::types::ColumnPath;
use strata_catalog::{ColumnDef, ColumnKind, FieldType};

use crate::buffer::FrozenChunk;
use crate::dedup::{dedup_plan, ranked_batches, ranked_schema, to_table_schema};
use crate::schema::arrow_schema;

/// Rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 256 * 1024;

/// Writer properties for a table with `columns`.
pub fn writer_properties(columns: &[ColumnDef]) -> WriterProperties {
    let mut b = WriterProperties::builder()
        .set_compression(Compression::ZSTD(ZstdLevel::try_new(3).unwrap_or_default()))
        .set_statistics_enabled(EnabledStatistics::Page)
        .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
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

/// Deduplicates and sorts a frozen chunk with DataFusion. Returns batches in the table
/// schema for `columns`.
pub async fn dedup_sorted(
    ctx: &SessionContext,
    chunk: &FrozenChunk,
    columns: &[ColumnDef],
) -> datafusion::common::Result<(SchemaRef, Vec<RecordBatch>)> {
    let schema = arrow_schema(columns);
    let deduped = if chunk.stats.may_overlap {
        let ranked = ranked_batches(&chunk.batches, &schema)?;
        let mem = MemTable::try_new(ranked_schema(&schema), vec![ranked])?;
        let scan = LogicalPlanBuilder::scan("chunk", provider_as_source(Arc::new(mem)), None)?;
        dedup_plan(scan, columns)?
    } else {
        // No (series, time) repeats in the chunk: sorting is all it needs.
        let batches = chunk
            .batches
            .iter()
            .map(|b| to_table_schema(&b.batch, &schema))
            .collect::<datafusion::common::Result<Vec<_>>>()?;
        let mem = MemTable::try_new(Arc::clone(&schema), vec![batches])?;
        LogicalPlanBuilder::scan("chunk", provider_as_source(Arc::new(mem)), None)?.build()?
    };
    let sort: Vec<_> = columns
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| ident(&c.name).sort(true, true))
        .collect();
    let plan = LogicalPlanBuilder::from(deduped).sort(sort)?.build()?;
    let batches = ctx.execute_logical_plan(plan).await?.collect().await?;
    Ok((schema, batches))
}

/// Encodes batches as one Parquet file.
pub fn encode_parquet(
    schema: &SchemaRef,
    batches: &[RecordBatch],
    columns: &[ColumnDef],
) -> Result<Vec<u8>, parquet::errors::ParquetError> {
    let mut buf = Vec::new();
    let mut w = ArrowWriter::try_new(
        &mut buf,
        Arc::clone(schema),
        Some(writer_properties(columns)),
    )?;
    for b in batches {
        w.write(b)?;
    }
    w.close()?;
    Ok(buf)
}
