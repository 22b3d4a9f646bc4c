//! Plans that read one table's sources (Parquet files and hot pieces) as one relation,
//! last-write-wins applied only where sources can overlap. Queries (`strata-sql`) and the
//! rollup jobs use the same function, so both see exactly the same rows.
//!
//! Plan shape:
//! ```text
//! Union
//!   ├─ Parquet scan of files whose window overlaps no other source  (no dedup)
//!   ├─ hot pieces alone in their window with no repeated (series, time)
//!   └─ last-write-wins aggregate
//!        └─ Union( overlapping hot pieces with __seq/__row, overlapping files with max_seq )
//! ```
//! Two sources overlap when their windows (`chunk_start..chunk_end`: a persisted chunk, a
//! rollup window, or a compacted range) intersect. Only tag and time predicates may be
//! passed in `pushed`: they go below the dedup step and into the Parquet scans.

use std::any::Any;

use std::ops::Range;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::{HashMap, Result, ScalarValue};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::physical_plan::ParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::DefaultParquetFileReaderFactory;
use datafusion::datasource::physical_plan::parquet::metadata::{
    CachedParquetMetaData, DFParquetMetadata,
};
use datafusion::datasource::physical_plan::parquet::{
    ParquetAccessPlan, ParquetFileMetrics, RowGroupAccess,
};
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::execution::cache::cache_manager::{
    CachedFileMetadataEntry, FileMetadata, FileMetadataCache,
};
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, SortExpr, TableProviderFilterPushDown, lit,
};
use datafusion::physical_plan::execution_plan::ExecutionPlan;
use datafusion::physical_plan::metrics::ExecutionPlanMetricsSet;
use datafusion::prelude::ident;
use futures::FutureExt;
use futures::future::BoxFuture;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{ObjectMeta, ObjectStore};
use parquet::arrow::arrow_reader::{ArrowReaderOptions, RowSelection, RowSelector};
use parquet::arrow::async_reader::AsyncFileReader;
use parquet::file::metadata::{PageIndexPolicy, ParquetMetaData};
use strata_catalog::{ColumnDef, ParquetFileMeta, Tier};
use tracing::warn;

use crate::HotPiece;
use crate::dedup::{
    dedup_plan, project_to_table, ranked_batches, ranked_schema, then_write_order, to_table_schema,
};
use crate::persist::PAGE_ROWS;
use crate::schema::{ROW_COLUMN, SEQ_COLUMN};
use crate::time_blocks::{self, Selection, TimeBlocks};
use crate::time_filter::TimeSpans;

/// The URL under which the local data store (raw and warm tiers) is registered with
/// DataFusion.
pub const DATA_STORE_URL: &str = "strata://data";
/// The URL of the cold tier's store (a local directory or an S3 bucket).
pub const COLD_STORE_URL: &str = "strata://cold";

/// The DataFusion object-store URL a tier's files are read through.
pub fn store_url(tier: Tier) -> &'static str {
    match tier {
        Tier::Hot | Tier::Warm => DATA_STORE_URL,
        Tier::Cold => COLD_STORE_URL,
    }
}

/// Parquet files of one table and one store, read with statistics and predicate pruning.
#[derive(Debug)]
pub struct FileSet {
    schema: SchemaRef,
    files: Vec<ParquetFileMeta>,
}

impl FileSet {
    /// `files` must all live in one store (one tier's store URL).
    pub fn new(schema: SchemaRef, files: Vec<ParquetFileMeta>) -> Self {
        Self { schema, files }
    }
}

#[async_trait]
impl TableProvider for FileSet {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![TableProviderFilterPushDown::Inexact; filters.len()])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        // No predicate here: the filters given are only ever copies of a filter kept above
        // this scan (the push-down is inexact), and the physical optimizer's filter
        // push-down hands that filter's predicate to the Parquet source for pruning.
        // Setting it here too would make the source prune with every conjunct twice.
        // Their time bounds only choose the rows of each file's time blocks to read.
        // Strata writes no bloom filters (files are sorted by series, so statistics and the
        // page index prune by tag): looking for them took 2% of a small query's CPU.
        let mut source =
            ParquetSource::new(Arc::clone(&self.schema)).with_bloom_filter_on_read(false);
        let tier = self.files.first().map(|f| f.tier).unwrap_or(Tier::Hot);
        let url = ObjectStoreUrl::parse(store_url(tier))?;
        let runtime = state.runtime_env();
        let local = state
            .config()
            .get_extension::<LocalStores>()
            .and_then(|l| l.of(tier));
        source = source.with_parquet_file_reader_factory(Arc::new(IndexedReaders {
            store: runtime.object_store(&url)?,
            cache: runtime.cache_manager.get_file_metadata_cache(),
            local,
        }));
        // Spread the files over the session's partitions, each with the rows of its time
        // blocks that the filters' time intervals can need.
        let spans = TimeSpans::from_filters(filters);
        let store = runtime.object_store(&url)?;
        let cache = runtime.cache_manager.get_file_metadata_cache();
        let n = state.config().target_partitions().max(1);
        let mut files = Vec::with_capacity(self.files.len());
        for f in &self.files {
            let file = PartitionedFile::new(f.path.clone(), f.size_bytes);
            match time_selection(&spans, f, &file, &store, &cache).await? {
                Some(s) if s.selected_rows == 0 => {}
                Some(s) => {
                    let meta = file_metadata(&store, &cache, &file.object_meta, None).await?;
                    let selection = RowSelection::from(s.selectors);
                    let plan = ParquetAccessPlan::try_new_from_overall_row_selection(
                        selection,
                        meta.row_groups(),
                    )?;
                    for part in split_row_groups(&plan, meta.row_groups(), n) {
                        files.push(file.clone().with_extension(part));
                    }
                }
                None => files.push(file),
            }
        }
        let mut groups: Vec<Vec<PartitionedFile>> = vec![Vec::new(); n.min(files.len()).max(1)];
        let k = groups.len();
        for (i, f) in files.into_iter().enumerate() {
            groups[i % k].push(f);
        }
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_file_groups(groups.into_iter().map(Into::into).collect())
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// `plan`'s rows shared out among up to `parts` plans of consecutive rows, about as many
/// each (every row of a row group read, even one only skipped, is decoded; a part cut
/// inside a row group reads only its own rows, and the page index spares it the pages
/// of the others): a short time range over every series keeps rows in every row group of
/// its slice, and the partitions then decode them side by side. (DataFusion's own split,
/// by byte ranges of the file, can leave all of them to one partition, and whole row
/// groups leave one partition a row group more than the other.) No part gets fewer than
/// [`PAGE_ROWS`] rows.
fn split_row_groups(
    plan: &ParquetAccessPlan,
    groups: &[parquet::file::metadata::RowGroupMetaData],
    parts: usize,
) -> Vec<ParquetAccessPlan> {
    let read = plan.row_group_indexes();
    let rows = |g: usize| usize::try_from(groups[g].num_rows()).unwrap_or(0);
    let total: usize = read.iter().map(|&g| rows(g)).sum();
    let parts = parts.min(total / PAGE_ROWS).max(1);
    if parts == 1 {
        return vec![plan.clone()];
    }
    let mut out: Vec<ParquetAccessPlan> = (0..parts)
        .map(|_| ParquetAccessPlan::new_none(groups.len()))
        .collect();
    // Part `p` takes the rows from `p * total / parts` on, counted over the row groups read.
    let bound = |p: usize| p * total / parts;
    let mut first = 0;
    for &g in &read {
        let n = rows(g);
        let access = &plan.inner()[g];
        for (p, part) in out.iter_mut().enumerate() {
            let lo = bound(p).clamp(first, first + n) - first;
            let hi = bound(p + 1).clamp(first, first + n) - first;
            if lo == hi {
                continue;
            }
            if lo == 0 && hi == n {
                part.set(g, access.clone());
            } else if let Some(rows) = rows_between(access, n, lo, hi) {
                part.set(g, RowGroupAccess::Selection(rows));
            }
        }
        first += n;
    }
    out.retain(|p| p.row_group_index_iter().next().is_some());
    out
}

/// `access` to a row group of `n` rows limited to its rows `lo..hi` (the rest skipped);
/// `None` when it selects none of them.
fn rows_between(access: &RowGroupAccess, n: usize, lo: usize, hi: usize) -> Option<RowSelection> {
    let selectors: Vec<RowSelector> = match access {
        RowGroupAccess::Skip => return None,
        RowGroupAccess::Scan => vec![RowSelector::select(n)],
        RowGroupAccess::Selection(s) => s.iter().copied().collect(),
    };
    let mut out = vec![RowSelector::skip(lo)];
    let (mut at, mut len, mut selected) = (0, lo, false);
    for s in selectors {
        let (a, b) = (at.max(lo), (at + s.row_count).min(hi));
        if a < b {
            selected |= !s.skip;
            out.push(RowSelector {
                row_count: b - a,
                skip: s.skip,
            });
            len += b - a;
        }
        at += s.row_count;
    }
    // Whatever is left, including rows a short selection does not reach, is skipped.
    out.push(RowSelector::skip(n.saturating_sub(len)));
    selected.then(|| RowSelection::from(out))
}

/// Parquet readers whose footer and page index are parsed once per file, not once per
/// query: both go to the session's metadata cache together. (DataFusion's own cached
/// readers cache the footer alone, then read and parse the page index on every scan
/// that prunes pages.) A file's path is never reused, so an entry cannot go stale.
#[derive(Debug)]
struct IndexedReaders {
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    /// The same store when it is a local directory: data pages are then read in place.
    local: Option<Arc<LocalFileSystem>>,
}

/// The local directories behind the tiers' store URLs, as a session extension. Scans of
/// their files read data pages themselves, on the query's own thread (`pread`, mostly
/// from the page cache), rather than through the object store, whose every read of a
/// local file is two thread hand-offs to and from tokio's blocking pool. A query over a few
/// minutes of every series (TSBS `groupby-orderby-limit`) switched threads 31 times, 11
/// with reads in place, and took 0.6–1 ms less. Without the extension, scans read through
/// the object store.
#[derive(Debug, Default)]
pub struct LocalStores {
    pub data: Option<Arc<LocalFileSystem>>,
    pub cold: Option<Arc<LocalFileSystem>>,
}

impl LocalStores {
    fn of(&self, tier: Tier) -> Option<Arc<LocalFileSystem>> {
        match tier {
            Tier::Hot | Tier::Warm => self.data.clone(),
            Tier::Cold => self.cold.clone(),
        }
    }
}

impl ParquetFileReaderFactory for IndexedReaders {
    fn create_reader(
        &self,
        partition_index: usize,
        file: PartitionedFile,
        metadata_size_hint: Option<usize>,
        metrics: &ExecutionPlanMetricsSet,
    ) -> Result<Box<dyn AsyncFileReader + Send>> {
        let meta = file.object_meta.clone();
        let bytes = match &self.local {
            Some(fs) => Pages::Local(Box::new(LocalPages {
                path: fs.path_to_filesystem(&meta.location)?,
                file: None,
                metrics: ParquetFileMetrics::new(partition_index, meta.location.as_ref(), metrics),
                size: meta.size,
            })),
            None => Pages::Store(
                DefaultParquetFileReaderFactory::new(Arc::clone(&self.store)).create_reader(
                    partition_index,
                    file,
                    metadata_size_hint,
                    metrics,
                )?,
            ),
        };
        Ok(Box::new(IndexedReader {
            bytes,
            store: Arc::clone(&self.store),
            cache: Arc::clone(&self.cache),
            meta,
            metadata_size_hint,
        }))
    }
}

/// Where a scan's data pages come from.
enum Pages {
    /// The object store's reader (which counts the bytes in the scan's metrics).
    Store(Box<dyn AsyncFileReader + Send>),
    Local(Box<LocalPages>),
}

/// A local file read in place: opened on the first read, each range one `pread`.
struct LocalPages {
    path: std::path::PathBuf,
    file: Option<std::fs::File>,
    metrics: ParquetFileMetrics,
    size: u64,
}

impl LocalPages {
    fn read(&mut self, range: Range<u64>) -> parquet::errors::Result<bytes::Bytes> {
        use std::os::unix::fs::FileExt;
        let error = |e: std::io::Error| {
            parquet::errors::ParquetError::External(
                format!("reading bytes {range:?} of {}: {e}", self.path.display()).into(),
            )
        };
        let file = match &mut self.file {
            Some(f) => f,
            None => self
                .file
                .insert(std::fs::File::open(&self.path).map_err(error)?),
        };
        let len = usize::try_from(range.end.saturating_sub(range.start)).unwrap_or(usize::MAX);
        let mut buf = vec![0; len];
        file.read_exact_at(&mut buf, range.start).map_err(error)?;
        self.metrics.bytes_scanned.add(len);
        Ok(buf.into())
    }
}

impl Drop for LocalPages {
    fn drop(&mut self) {
        // What DataFusion's own reader reports: bytes read of the file's size.
        let ratio = &self.metrics.scan_efficiency_ratio;
        ratio.add_part(self.metrics.bytes_scanned.value());
        ratio.set_total(usize::try_from(self.size).unwrap_or(usize::MAX));
    }
}

struct IndexedReader {
    /// Reads the data pages (and counts the bytes in the scan's metrics).
    bytes: Pages,
    store: Arc<dyn ObjectStore>,
    cache: Arc<FileMetadataCache>,
    meta: ObjectMeta,
    metadata_size_hint: Option<usize>,
}

impl AsyncFileReader for IndexedReader {
    fn get_bytes(
        &mut self,
        range: Range<u64>,
    ) -> BoxFuture<'_, parquet::errors::Result<bytes::Bytes>> {
        match &mut self.bytes {
            Pages::Store(r) => r.get_bytes(range),
            Pages::Local(l) => futures::future::ready(l.read(range)).boxed(),
        }
    }

    fn get_byte_ranges(
        &mut self,
        ranges: Vec<Range<u64>>,
    ) -> BoxFuture<'_, parquet::errors::Result<Vec<bytes::Bytes>>> {
        match &mut self.bytes {
            Pages::Store(r) => r.get_byte_ranges(ranges),
            Pages::Local(l) => {
                futures::future::ready(ranges.into_iter().map(|r| l.read(r)).collect()).boxed()
            }
        }
    }

    fn get_metadata<'a>(
        &'a mut self,
        _options: Option<&'a ArrowReaderOptions>,
    ) -> BoxFuture<'a, parquet::errors::Result<Arc<ParquetMetaData>>> {
        async move {
            file_metadata(
                &self.store,
                &self.cache,
                &self.meta,
                self.metadata_size_hint,
            )
            .await
            .map_err(|e| {
                parquet::errors::ParquetError::General(format!(
                    "metadata of {}: {e}",
                    self.meta.location
                ))
            })
        }
        .boxed()
    }
}

/// A file's footer and page index, from the session's metadata cache or read into it.
async fn file_metadata(
    store: &Arc<dyn ObjectStore>,
    cache: &Arc<FileMetadataCache>,
    meta: &ObjectMeta,
    size_hint: Option<usize>,
) -> Result<Arc<ParquetMetaData>> {
    DFParquetMetadata::new(store.as_ref(), meta)
        .with_file_metadata_cache(Some(Arc::clone(cache)))
        .with_metadata_size_hint(size_hint)
        .with_page_index_policy(Some(PageIndexPolicy::Optional))
        .fetch_metadata()
        .await
}

/// `f`'s footer and page index if `cache` holds them, without reading anything.
pub fn cached_metadata(
    f: &ParquetFileMeta,
    cache: &FileMetadataCache,
) -> Option<Arc<ParquetMetaData>> {
    let entry = cache.get(&Path::from(f.path.as_str()))?;
    if entry.meta.size != f.size_bytes {
        return None;
    }
    entry
        .file_metadata
        .as_any()
        .downcast_ref::<CachedParquetMetaData>()
        .map(|m| Arc::clone(m.parquet_metadata()))
}

/// Reads `f`'s footer, page index and time blocks into `cache`, unless already there, so
/// the first query of the file does not wait for them. Returns the bytes they take.
pub async fn warm_file(
    f: &ParquetFileMeta,
    store: &Arc<dyn ObjectStore>,
    cache: &Arc<FileMetadataCache>,
) -> Result<usize> {
    let file = PartitionedFile::new(f.path.clone(), f.size_bytes);
    let meta = file_metadata(store, cache, &file.object_meta, None).await?;
    let blocks = file_time_blocks(f, &file, store, cache).await?;
    Ok(meta.memory_size() + blocks.map_or(0, |b| b.memory_size()))
}

/// A selection reading more than this share of a file's rows is not worth its skips.
const MAX_SELECTED_SHARE: f64 = 0.5;

/// The rows of `f` in its time blocks that overlap `spans` ([`crate::time_blocks`]), when
/// the spans leave some of the file out and the selection reads at most
/// [`MAX_SELECTED_SHARE`] of it. `None` reads the whole file: so do files without blocks,
/// or with blocks that do not match the file (with a warning).
async fn time_selection(
    spans: &TimeSpans,
    f: &ParquetFileMeta,
    file: &PartitionedFile,
    store: &Arc<dyn ObjectStore>,
    cache: &Arc<FileMetadataCache>,
) -> Result<Option<Selection>> {
    let whole = spans
        .ranges()
        .iter()
        .any(|r| r.lo <= f.min_time && r.hi >= f.max_time);
    if whole || spans.is_empty() {
        return Ok(None);
    }
    let Some(blocks) = file_time_blocks(f, file, store, cache).await? else {
        return Ok(None);
    };
    let selection = blocks.selection(spans.ranges());
    let rows = blocks.row_count() as f64;
    Ok(((selection.selected_rows as f64) <= MAX_SELECTED_SHARE * rows).then_some(selection))
}

/// `f`'s time blocks, decoded once and kept in the session's metadata cache beside its
/// footer (under the path with [`BLOCKS_SUFFIX`]); `None` for a file without them.
async fn file_time_blocks(
    f: &ParquetFileMeta,
    file: &PartitionedFile,
    store: &Arc<dyn ObjectStore>,
    cache: &Arc<FileMetadataCache>,
) -> Result<Option<Arc<TimeBlocks>>> {
    let key = Path::from(format!("{}{BLOCKS_SUFFIX}", f.path));
    if let Some(entry) = cache
        .get(&key)
        .filter(|e| e.is_valid_for(&file.object_meta))
    {
        return Ok(entry
            .file_metadata
            .as_any()
            .downcast_ref::<CachedBlocks>()
            .and_then(|b| b.0.clone()));
    }
    let meta = file_metadata(store, cache, &file.object_meta, None).await?;
    let Some(value) = meta
        .file_metadata()
        .key_value_metadata()
        .and_then(|kv| kv.iter().find(|e| e.key == time_blocks::KEY))
        .and_then(|e| e.value.as_deref())
    else {
        return Ok(None);
    };
    let rows = u64::try_from(meta.file_metadata().num_rows()).unwrap_or(0);
    let blocks = match TimeBlocks::decode(value) {
        Ok(b) if b.row_count() == rows => Some(Arc::new(b)),
        Ok(b) => {
            warn!(
                file = f.path,
                rows,
                block_rows = b.row_count(),
                "time blocks do not match the file's rows; reading it whole"
            );
            None
        }
        Err(e) => {
            warn!(
                file = f.path,
                error = e,
                "damaged time blocks; reading the file whole"
            );
            None
        }
    };
    // Blocks that cannot be used are remembered too, so the warning is given once.
    let entry = CachedFileMetadataEntry::new(
        file.object_meta.clone(),
        Arc::new(CachedBlocks(blocks.clone())),
    );
    cache.put(&key, entry);
    Ok(blocks)
}

/// Appended to a file's path to key its decoded time blocks in the metadata cache.
const BLOCKS_SUFFIX: &str = "#time_blocks";

/// Decoded time blocks as an entry of the metadata cache (which bounds their memory);
/// `None` for blocks that could not be used.
struct CachedBlocks(Option<Arc<TimeBlocks>>);

impl FileMetadata for CachedBlocks {
    fn as_any(&self) -> &dyn Any {
        self
    }

    fn memory_size(&self) -> usize {
        self.0.as_ref().map_or(0, |b| b.memory_size()) + std::mem::size_of::<Self>()
    }

    fn extra_info(&self) -> HashMap<String, String> {
        HashMap::new()
    }
}

/// A plan over some sources of one table, and how many needed last-write-wins.
#[derive(Debug)]
pub struct SourcesPlan {
    /// Rows in the table schema of `columns`, in column order.
    pub plan: LogicalPlan,
    pub files_deduplicated: usize,
    pub hot_deduplicated: usize,
}

/// Reads `files` (all of one tier) and `hot` as one relation with the table's `columns`,
/// sources that share a window deduplicated by an aggregate ([`dedup_plan`]).
pub fn sources_plan(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    files: &[&ParquetFileMeta],
    hot: &[&HotPiece],
    pushed: &[Expr],
) -> Result<SourcesPlan> {
    let mut parts = source_parts(schema, columns, files, hot, pushed)?;
    if let Some(ranked) = parts.ranked {
        parts.direct.push(dedup_plan(ranked, columns)?);
    }
    Ok(SourcesPlan {
        plan: union_or_empty(schema, columns, parts.direct)?,
        files_deduplicated: parts.files_deduplicated,
        hot_deduplicated: parts.hot_deduplicated,
    })
}

/// The input of a job that reads sources whole and deduplicates them with
/// [`crate::dedup::merge_sorted_runs`] rather than an aggregate.
#[derive(Debug)]
pub struct MergeInput {
    /// Rows that need no deduplication, in the table schema.
    pub direct: LogicalPlan,
    /// Rows of sources that share a window, ranked and sorted by the job's order then
    /// write order.
    pub ranked: Option<LogicalPlan>,
}

/// [`sources_plan`] for a job that merges: the sources that share a window come back
/// ranked and sorted by `order` then write order instead of aggregated.
pub fn merge_input(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    files: &[&ParquetFileMeta],
    hot: &[&HotPiece],
    pushed: &[Expr],
    order: Vec<SortExpr>,
) -> Result<MergeInput> {
    let parts = source_parts(schema, columns, files, hot, pushed)?;
    let order = then_write_order(order);
    Ok(MergeInput {
        direct: union_or_empty(schema, columns, parts.direct)?,
        ranked: parts
            .ranked
            .map(|b| b.sort(order).and_then(|b| b.build()))
            .transpose()?,
    })
}

/// Sources split by whether they need last-write-wins.
struct SourceParts {
    /// Plans of rows that need none, each in the table schema (or a subset of columns).
    direct: Vec<LogicalPlan>,
    /// The union of the sources that share a window, ranked and filtered.
    ranked: Option<LogicalPlanBuilder>,
    files_deduplicated: usize,
    hot_deduplicated: usize,
}

fn source_parts(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    files: &[&ParquetFileMeta],
    hot: &[&HotPiece],
    pushed: &[Expr],
) -> Result<SourceParts> {
    let overlapping = overlap_groups(files, hot);
    let filter = conjunction(pushed.to_vec());
    let with_filter = |b: LogicalPlanBuilder| -> Result<LogicalPlanBuilder> {
        match &filter {
            Some(p) => b.filter(p.clone()),
            None => Ok(b),
        }
    };

    let mut parts: Vec<LogicalPlan> = Vec::new();
    let direct: Vec<ParquetFileMeta> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| !overlapping.files[*i])
        .map(|(_, f)| (*f).clone())
        .collect();
    if !direct.is_empty() {
        let t = FileSet::new(Arc::clone(schema), direct);
        let b = LogicalPlanBuilder::scan("files", provider_as_source(Arc::new(t)), None)?;
        parts.push(with_filter(b)?.build()?);
    }
    let mut hot_direct = Vec::new();
    let mut hot_dedup = Vec::new();
    for (i, h) in hot.iter().enumerate() {
        if !h.may_overlap && !overlapping.hot[i] {
            hot_direct.push(*h);
        } else {
            hot_dedup.push(*h);
        }
    }
    if !hot_direct.is_empty() {
        let mut batches = Vec::new();
        for h in &hot_direct {
            for b in &h.batches {
                batches.push(to_table_schema(&b.batch, schema)?);
            }
        }
        let mem = MemTable::try_new(Arc::clone(schema), vec![batches])?;
        let b = LogicalPlanBuilder::scan("hot_direct", provider_as_source(Arc::new(mem)), None)?;
        parts.push(with_filter(b)?.build()?);
    }
    let dedup_files: Vec<&ParquetFileMeta> = files
        .iter()
        .enumerate()
        .filter(|(i, _)| overlapping.files[*i])
        .map(|(_, f)| *f)
        .collect();
    let mut ranked = None;
    if !hot_dedup.is_empty() || !dedup_files.is_empty() {
        let mut sources: Vec<LogicalPlan> = Vec::new();
        if !hot_dedup.is_empty() {
            let mut batches = Vec::new();
            for h in &hot_dedup {
                batches.extend(ranked_batches(&h.batches, schema)?);
            }
            let mem = MemTable::try_new(ranked_schema(schema), vec![batches])?;
            sources.push(
                LogicalPlanBuilder::scan("hot", provider_as_source(Arc::new(mem)), None)?
                    .build()?,
            );
        }
        for f in &dedup_files {
            sources.push(ranked_file(schema, columns, f)?);
        }
        let mut b = LogicalPlanBuilder::from(sources.remove(0));
        for s in sources {
            b = b.union(s)?;
        }
        ranked = Some(with_filter(b)?);
    }
    Ok(SourceParts {
        direct: parts,
        ranked,
        files_deduplicated: dedup_files.len(),
        hot_deduplicated: hot_dedup.len(),
    })
}

/// The union of `parts` projected to the table's columns (an empty relation if none).
fn union_or_empty(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    mut parts: Vec<LogicalPlan>,
) -> Result<LogicalPlan> {
    let plan = if parts.is_empty() {
        let empty = MemTable::try_new(Arc::clone(schema), vec![vec![]])?;
        LogicalPlanBuilder::scan("empty", provider_as_source(Arc::new(empty)), None)?.build()?
    } else {
        let mut b = LogicalPlanBuilder::from(parts.remove(0));
        for p in parts {
            b = b.union(p)?;
        }
        b.build()?
    };
    project_to_table(plan, columns)
}

/// The rows of file `f` with the ranking columns of last-write-wins: its `max_seq` for
/// every row (a file holds one row per series and time, so no `__row` is needed).
fn ranked_file(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    f: &ParquetFileMeta,
) -> Result<LogicalPlan> {
    let t = FileSet::new(Arc::clone(schema), vec![f.clone()]);
    let mut exprs: Vec<Expr> = columns.iter().map(|c| ident(&c.name)).collect();
    exprs.push(lit(ScalarValue::UInt64(Some(f.max_seq))).alias(SEQ_COLUMN));
    exprs.push(lit(ScalarValue::UInt32(Some(0))).alias(ROW_COLUMN));
    LogicalPlanBuilder::scan(
        format!("file_{}", f.id.0),
        provider_as_source(Arc::new(t)),
        None,
    )?
    .project(exprs)?
    .build()
}

/// Every row of `files` (of one tier) with the ranking columns, sorted by `order` then
/// write order: the input of [`crate::dedup::merge_sorted_runs`], for compaction.
pub fn ranked_sorted_plan(
    schema: &SchemaRef,
    columns: &[ColumnDef],
    files: &[&ParquetFileMeta],
    order: Vec<SortExpr>,
) -> Result<LogicalPlan> {
    let mut parts = files.iter().map(|f| ranked_file(schema, columns, f));
    let first = parts.next().ok_or_else(|| {
        datafusion::error::DataFusionError::Internal("no files to read".to_string())
    })??;
    let mut b = LogicalPlanBuilder::from(first);
    for p in parts {
        b = b.union(p?)?;
    }
    b.sort(then_write_order(order))?.build()
}

/// Which sources share a window with another source.
struct Overlaps {
    files: Vec<bool>,
    hot: Vec<bool>,
}

fn overlap_groups(files: &[&ParquetFileMeta], hot: &[&HotPiece]) -> Overlaps {
    // (start, end, is_file, index), swept in start order into connected groups.
    let mut items: Vec<(i64, i64, bool, usize)> = files
        .iter()
        .enumerate()
        .map(|(i, f)| (f.chunk_start, f.chunk_end, true, i))
        .chain(
            hot.iter()
                .enumerate()
                .map(|(i, h)| (h.chunk_start, h.chunk_end, false, i)),
        )
        .collect();
    items.sort_unstable_by_key(|x| (x.0, x.1));
    let mut out = Overlaps {
        files: vec![false; files.len()],
        hot: vec![false; hot.len()],
    };
    let mut i = 0;
    while i < items.len() {
        let mut end = items[i].1;
        let mut j = i + 1;
        while j < items.len() && items[j].0 < end {
            end = end.max(items[j].1);
            j += 1;
        }
        if j - i > 1 {
            for &(_, _, is_file, k) in &items[i..j] {
                if is_file {
                    out.files[k] = true;
                } else {
                    out.hot[k] = true;
                }
            }
        }
        i = j;
    }
    out
}

#[cfg(test)]
mod tests {
    use parquet::file::metadata::{ColumnChunkMetaData, RowGroupMetaData};
    use parquet::schema::parser::parse_message_type;
    use parquet::schema::types::SchemaDescriptor;

    use super::*;

    fn groups(rows: &[i64]) -> Vec<RowGroupMetaData> {
        let schema = parse_message_type("message m { required int64 t; }").expect("schema");
        let descr = Arc::new(SchemaDescriptor::new(Arc::new(schema)));
        rows.iter()
            .map(|&n| {
                let column = ColumnChunkMetaData::builder(descr.column(0))
                    .build()
                    .expect("column");
                RowGroupMetaData::builder(Arc::clone(&descr))
                    .set_num_rows(n)
                    .set_column_metadata(vec![column])
                    .build()
                    .expect("row group")
            })
            .collect()
    }

    fn read(plans: &[ParquetAccessPlan]) -> Vec<Vec<usize>> {
        plans
            .iter()
            .map(ParquetAccessPlan::row_group_indexes)
            .collect()
    }

    /// The rows each part selects, as (row group, first row, rows) runs.
    fn runs(plans: &[ParquetAccessPlan], groups: &[RowGroupMetaData]) -> Vec<Vec<[usize; 3]>> {
        plans
            .iter()
            .map(|p| {
                let mut out = Vec::new();
                for g in p.row_group_indexes() {
                    let n = groups[g].num_rows() as usize;
                    let selectors: Vec<RowSelector> = match &p.inner()[g] {
                        RowGroupAccess::Selection(s) => s.iter().copied().collect(),
                        _ => vec![RowSelector::select(n)],
                    };
                    assert_eq!(selectors.iter().map(|s| s.row_count).sum::<usize>(), n);
                    let mut at = 0;
                    for s in selectors {
                        if !s.skip {
                            out.push([g, at, s.row_count]);
                        }
                        at += s.row_count;
                    }
                }
                out
            })
            .collect()
    }

    #[test]
    fn rows_are_shared_out_evenly_across_row_groups() {
        let five = groups(&[100_000; 5]);
        let all = ParquetAccessPlan::new_all(5);
        let parts = split_row_groups(&all, &five, 2);
        assert_eq!(read(&parts), [vec![0, 1, 2], vec![2, 3, 4]]);
        assert_eq!(
            runs(&parts, &five),
            [
                vec![[0, 0, 100_000], [1, 0, 100_000], [2, 0, 50_000]],
                vec![[2, 50_000, 50_000], [3, 0, 100_000], [4, 0, 100_000]],
            ]
        );
        // Whole row groups stay scans.
        assert_eq!(parts[0].inner()[0], RowGroupAccess::Scan);

        // Eight parts: every row once, in order, 62,500 each.
        let parts = split_row_groups(&all, &five, 8);
        let got = runs(&parts, &five);
        assert_eq!(got.len(), 8);
        for part in &got {
            assert_eq!(part.iter().map(|r| r[2]).sum::<usize>(), 62_500);
        }
        let flat: Vec<[usize; 3]> = got.into_iter().flatten().collect();
        let mut next = (0, 0);
        for [g, lo, n] in flat {
            if lo == 0 && next.1 == 100_000 {
                next = (next.0 + 1, 0);
            }
            assert_eq!((g, lo), next);
            next = (g, lo + n);
        }
        assert_eq!(next, (4, 100_000));

        // One part, or too few rows to share: the plan as it is.
        assert_eq!(split_row_groups(&all, &five, 1), std::slice::from_ref(&all));
        let small = groups(&[10_000, 5_000]);
        let both = ParquetAccessPlan::new_all(2);
        assert_eq!(
            split_row_groups(&both, &small, 2),
            std::slice::from_ref(&both)
        );
    }

    #[test]
    fn selections_are_cut_with_their_rows() {
        let five = groups(&[100_000; 5]);
        // Skipped row groups stay skipped; a part ending on a row group keeps its selection.
        let mut plan = ParquetAccessPlan::new_none(5);
        let rows = RowSelection::from(vec![RowSelector::skip(90_000), RowSelector::select(10_000)]);
        plan.set(1, RowGroupAccess::Selection(rows.clone()));
        plan.scan(3);
        let parts = split_row_groups(&plan, &five, 2);
        assert_eq!(read(&parts), [vec![1], vec![3]]);
        assert_eq!(parts[0].inner()[1], RowGroupAccess::Selection(rows));

        // Cut inside a selection: each side keeps its own selected rows.
        let mut plan = ParquetAccessPlan::new_none(5);
        let rows = RowSelection::from(vec![
            RowSelector::select(20_000),
            RowSelector::skip(20_000),
            RowSelector::select(60_000),
        ]);
        plan.set(2, RowGroupAccess::Selection(rows));
        assert_eq!(
            runs(&split_row_groups(&plan, &five, 2), &five),
            [
                vec![[2, 0, 20_000], [2, 40_000, 10_000]],
                vec![[2, 50_000, 50_000]]
            ]
        );

        // A part whose rows are all skipped is left out.
        let mut plan = ParquetAccessPlan::new_none(5);
        let rows = RowSelection::from(vec![RowSelector::select(10_000), RowSelector::skip(90_000)]);
        plan.set(0, RowGroupAccess::Selection(rows.clone()));
        let parts = split_row_groups(&plan, &five, 2);
        assert_eq!(runs(&parts, &five), [vec![[0, 0, 10_000]]]);
        assert_eq!(parts[0].inner()[0], RowGroupAccess::Selection(rows));
    }
}
