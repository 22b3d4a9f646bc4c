//! The logical table of one metric: hot chunks plus persisted Parquet files, with
//! time-range pruning from the catalog, Parquet statistics pruning, and last-write-wins
//! applied only where sources can overlap.
//!
//! Plan shape (built as a DataFusion logical plan inside `scan`, then planned physically):
//! ```text
//! Union
//!   ├─ Parquet scan of files alone in their time chunk   (no dedup: nothing overlaps them)
//!   └─ last-write-wins aggregate
//!        └─ Union( hot batches with __seq/__row, overlapping files with their max_seq )
//! ```
//! Only tag and time predicates are pushed below the dedup step (and into Parquet);
//! field predicates stay above the scan.

use std::collections::{BTreeMap, HashSet};
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{DFSchema, Result, ScalarValue, plan_err};
use datafusion::datasource::listing::PartitionedFile;
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::physical_plan::{FileScanConfigBuilder, ParquetSource};
use datafusion::datasource::source::DataSourceExec;
use datafusion::datasource::{TableProvider, TableType, provider_as_source};
use datafusion::execution::TaskContext;
use datafusion::execution::object_store::ObjectStoreUrl;
use datafusion::logical_expr::utils::conjunction;
use datafusion::logical_expr::{
    BinaryExpr, Expr, LogicalPlan, LogicalPlanBuilder, Operator, TableProviderFilterPushDown, lit,
};
use datafusion::physical_plan::execution_plan::ExecutionPlan;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, PhysicalExpr, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::ident;
use strata_catalog::{ColumnKind, ParquetFileMeta};
use strata_engine::dedup::{
    dedup_plan, project_to_table, ranked_batches, ranked_schema, to_table_schema,
};
use strata_engine::schema::{ROW_COLUMN, SEQ_COLUMN, TIME_COLUMN};
use strata_engine::{HotPiece, TableSnapshot};

/// The URL under which the engine's data store is registered with DataFusion.
pub const DATA_STORE_URL: &str = "strata://data";

/// The metric table behind a logical plan's table source, if it is one.
pub fn metric_table(
    source: &Arc<dyn datafusion::logical_expr::TableSource>,
) -> Option<&MetricTable> {
    let any: &dyn std::any::Any = source.as_ref();
    let provider = &any
        .downcast_ref::<datafusion::datasource::DefaultTableSource>()?
        .table_provider;
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<MetricTable>()
}

/// One metric table over all of its data.
#[derive(Debug)]
pub struct MetricTable {
    snap: TableSnapshot,
}

impl MetricTable {
    pub fn new(snap: TableSnapshot) -> Self {
        Self { snap }
    }

    /// The table's data as of planning.
    pub fn snapshot(&self) -> &TableSnapshot {
        &self.snap
    }

    fn pushable(&self, e: &Expr) -> bool {
        let safe: HashSet<&str> = self
            .snap
            .columns
            .iter()
            .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
            .map(|c| c.name.as_str())
            .collect();
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| safe.contains(c.name.as_str()))
    }
}

#[async_trait]
impl TableProvider for MetricTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.snap.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|f| {
                if self.pushable(f) {
                    TableProviderFilterPushDown::Inexact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let snap = &self.snap;
        let pushed: Vec<Expr> = filters
            .iter()
            .filter(|f| self.pushable(f))
            .cloned()
            .collect();
        let range = TimeRange::from_filters(&pushed);

        let total_files = snap.files.len();
        let files: Vec<&ParquetFileMeta> = snap
            .files
            .iter()
            .filter(|f| range.overlaps(f.min_time, f.max_time))
            .collect();
        let hot: Vec<&HotPiece> = snap
            .hot
            .iter()
            .filter(|h| h.rows > 0 && range.overlaps(h.min_time, h.max_time))
            .collect();

        // Sources sharing a time chunk may hold the same (series, time): they go through
        // last-write-wins. A file alone in its chunk is read directly.
        let mut per_chunk: BTreeMap<i64, usize> = BTreeMap::new();
        for f in &files {
            *per_chunk.entry(f.chunk_start).or_default() += 1;
        }
        for h in &hot {
            *per_chunk.entry(h.chunk_start).or_default() += 1;
        }
        let (direct, overlapping): (Vec<&ParquetFileMeta>, Vec<&ParquetFileMeta>) = files
            .iter()
            .partition(|f| per_chunk.get(&f.chunk_start) == Some(&1));

        let mut parts: Vec<LogicalPlan> = Vec::new();
        if !direct.is_empty() {
            let t = FileSet::new(
                snap.schema.clone(),
                direct.iter().map(|f| (*f).clone()).collect(),
            );
            let mut b = LogicalPlanBuilder::scan("files", provider_as_source(Arc::new(t)), None)?;
            if let Some(p) = conjunction(pushed.clone()) {
                b = b.filter(p)?;
            }
            parts.push(b.build()?);
        }
        // Hot pieces alone in their chunk whose rows cannot repeat a (series, time) are
        // read directly too.
        let (hot_direct, hot_dedup): (Vec<&HotPiece>, Vec<&HotPiece>) = hot
            .iter()
            .partition(|h| !h.may_overlap && per_chunk.get(&h.chunk_start) == Some(&1));
        if !hot_direct.is_empty() {
            let mut batches = Vec::new();
            for h in &hot_direct {
                for b in &h.batches {
                    batches.push(to_table_schema(&b.batch, &snap.schema)?);
                }
            }
            let mem = MemTable::try_new(snap.schema.clone(), vec![batches])?;
            let mut b =
                LogicalPlanBuilder::scan("hot_direct", provider_as_source(Arc::new(mem)), None)?;
            if let Some(p) = conjunction(pushed.clone()) {
                b = b.filter(p)?;
            }
            parts.push(b.build()?);
        }
        let needs_dedup = !hot_dedup.is_empty() || !overlapping.is_empty();
        if needs_dedup {
            let mut sources: Vec<LogicalPlan> = Vec::new();
            if !hot_dedup.is_empty() {
                let mut batches = Vec::new();
                for h in &hot_dedup {
                    batches.extend(ranked_batches(&h.batches, &snap.schema)?);
                }
                let mem = MemTable::try_new(ranked_schema(&snap.schema), vec![batches])?;
                sources.push(
                    LogicalPlanBuilder::scan("hot", provider_as_source(Arc::new(mem)), None)?
                        .build()?,
                );
            }
            for f in &overlapping {
                let t = FileSet::new(snap.schema.clone(), vec![(*f).clone()]);
                let mut exprs: Vec<Expr> = snap.columns.iter().map(|c| ident(&c.name)).collect();
                exprs.push(lit(ScalarValue::UInt64(Some(f.max_seq))).alias(SEQ_COLUMN));
                exprs.push(lit(ScalarValue::UInt32(Some(0))).alias(ROW_COLUMN));
                sources.push(
                    LogicalPlanBuilder::scan(
                        format!("file_{}", f.id.0),
                        provider_as_source(Arc::new(t)),
                        None,
                    )?
                    .project(exprs)?
                    .build()?,
                );
            }
            let mut b = LogicalPlanBuilder::from(sources.remove(0));
            for s in sources {
                b = b.union(s)?;
            }
            if let Some(p) = conjunction(pushed.clone()) {
                b = b.filter(p)?;
            }
            parts.push(dedup_plan(b, &snap.columns)?);
        }
        let plan = match parts.len() {
            0 => LogicalPlanBuilder::empty(false).build()?,
            _ => {
                let mut b = LogicalPlanBuilder::from(parts.remove(0));
                for p in parts {
                    b = b.union(p)?;
                }
                b.build()?
            }
        };
        let plan = if matches!(plan, LogicalPlan::EmptyRelation(_)) {
            let empty = MemTable::try_new(snap.schema.clone(), vec![vec![]])?;
            LogicalPlanBuilder::scan("empty", provider_as_source(Arc::new(empty)), None)?.build()?
        } else {
            plan
        };
        let plan = project_to_table(plan, &snap.columns)?;
        let mut b = LogicalPlanBuilder::from(plan);
        if let Some(p) = projection {
            let exprs: Vec<Expr> = p
                .iter()
                .map(|i| ident(snap.schema.field(*i).name()))
                .collect();
            b = b.project(exprs)?;
        }
        if let Some(n) = limit {
            b = b.limit(0, Some(n))?;
        }
        let inner = state.create_physical_plan(&b.build()?).await?;
        Ok(Arc::new(TierScanExec {
            summary: ScanSummary {
                table: snap.table.clone(),
                files_total: total_files,
                files_scanned: files.len(),
                files_pruned: total_files - files.len(),
                files_deduplicated: overlapping.len(),
                hot_chunks: hot.len(),
                hot_chunks_deduplicated: hot_dedup.len(),
                hot_chunks_pruned: snap.hot.len() - hot.len(),
            },
            properties: Arc::clone(inner.properties()),
            inner,
        }))
    }
}

/// A time interval `[lo, hi]` (ns, inclusive) a query can need.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeRange {
    pub lo: i64,
    pub hi: i64,
}

impl TimeRange {
    pub const ALL: Self = Self {
        lo: i64::MIN,
        hi: i64::MAX,
    };

    pub fn overlaps(&self, min: i64, max: i64) -> bool {
        min <= self.hi && max >= self.lo
    }

    /// The time bounds implied by a conjunction of pushed filters. Anything not
    /// understood leaves the range open, which is always safe.
    pub fn from_filters(filters: &[Expr]) -> Self {
        let mut r = Self::ALL;
        for f in filters {
            r.narrow(f);
        }
        r
    }

    fn narrow(&mut self, e: &Expr) {
        match e {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                if *op == Operator::And {
                    self.narrow(left);
                    self.narrow(right);
                    return;
                }
                let (op, v) = match (
                    time_col(left),
                    ts_value(right),
                    time_col(right),
                    ts_value(left),
                ) {
                    (true, Some(v), _, _) => (*op, v),
                    (_, _, true, Some(v)) => match op.swap() {
                        Some(o) => (o, v),
                        None => return,
                    },
                    _ => return,
                };
                match op {
                    Operator::Gt => self.lo = self.lo.max(v.saturating_add(1)),
                    Operator::GtEq => self.lo = self.lo.max(v),
                    Operator::Lt => self.hi = self.hi.min(v.saturating_sub(1)),
                    Operator::LtEq => self.hi = self.hi.min(v),
                    Operator::Eq => {
                        self.lo = self.lo.max(v);
                        self.hi = self.hi.min(v);
                    }
                    _ => {}
                }
            }
            Expr::Between(b) if !b.negated && time_col(&b.expr) => {
                if let (Some(lo), Some(hi)) = (ts_value(&b.low), ts_value(&b.high)) {
                    self.lo = self.lo.max(lo);
                    self.hi = self.hi.min(hi);
                }
            }
            _ => {}
        }
    }
}

fn time_col(e: &Expr) -> bool {
    match e {
        Expr::Column(c) => c.name == TIME_COLUMN,
        Expr::Cast(c) => time_col(&c.expr),
        _ => false,
    }
}

/// A literal timestamp in ns, after the type coercion DataFusion applied.
fn ts_value(e: &Expr) -> Option<i64> {
    match e {
        Expr::Literal(v, _) => match v {
            ScalarValue::TimestampNanosecond(Some(x), _) => Some(*x),
            ScalarValue::TimestampMicrosecond(Some(x), _) => x.checked_mul(1_000),
            ScalarValue::TimestampMillisecond(Some(x), _) => x.checked_mul(1_000_000),
            ScalarValue::TimestampSecond(Some(x), _) => x.checked_mul(1_000_000_000),
            _ => None,
        },
        Expr::Cast(c) => ts_value(&c.expr).or_else(|| match c.expr.as_ref() {
            Expr::Literal(ScalarValue::Utf8(Some(s)), _) => parse_ts(s),
            _ => None,
        }),
        _ => None,
    }
}

fn parse_ts(s: &str) -> Option<i64> {
    let v = ScalarValue::Utf8(Some(s.to_string()));
    match v.cast_to(&strata_engine::schema::time_type()).ok()? {
        ScalarValue::TimestampNanosecond(Some(x), _) => Some(x),
        _ => None,
    }
}

/// A set of Parquet files of one table, read with statistics and predicate pruning.
#[derive(Debug)]
pub struct FileSet {
    schema: SchemaRef,
    files: Vec<ParquetFileMeta>,
}

impl FileSet {
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
        let mut source = ParquetSource::new(Arc::clone(&self.schema));
        if let Some(pred) = conjunction(filters.to_vec()) {
            let df_schema = DFSchema::try_from(self.schema.as_ref().clone())?;
            let phys: Arc<dyn PhysicalExpr> = state.create_physical_expr(pred, &df_schema)?;
            source = source.with_predicate(phys);
        }
        let url = ObjectStoreUrl::parse(DATA_STORE_URL)?;
        // Spread the files over the session's partitions.
        let n = state.config().target_partitions().max(1);
        let mut groups: Vec<Vec<PartitionedFile>> =
            vec![Vec::new(); n.min(self.files.len()).max(1)];
        let k = groups.len();
        for (i, f) in self.files.iter().enumerate() {
            groups[i % k].push(PartitionedFile::new(f.path.clone(), f.size_bytes));
        }
        let config = FileScanConfigBuilder::new(url, Arc::new(source))
            .with_projection_indices(projection.cloned())?
            .with_file_groups(groups.into_iter().map(Into::into).collect())
            .with_limit(limit)
            .build();
        Ok(DataSourceExec::from_data_source(config))
    }
}

/// What a scan chose, shown by `EXPLAIN`.
#[derive(Debug, Clone)]
pub struct ScanSummary {
    pub table: String,
    pub files_total: usize,
    pub files_scanned: usize,
    pub files_pruned: usize,
    pub files_deduplicated: usize,
    pub hot_chunks: usize,
    pub hot_chunks_deduplicated: usize,
    pub hot_chunks_pruned: usize,
}

/// Wraps the physical plan of one table scan so `EXPLAIN` shows the tier choice and
/// pruning; execution is the inner plan's.
#[derive(Debug)]
pub struct TierScanExec {
    summary: ScanSummary,
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl DisplayAs for TierScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.summary;
        write!(
            f,
            "TierScanExec: table={}, tiers=[hot], files={} of {} (pruned {}, deduplicated {}), hot_chunks={} (pruned {}, deduplicated {})",
            s.table,
            s.files_scanned,
            s.files_total,
            s.files_pruned,
            s.files_deduplicated,
            s.hot_chunks,
            s.hot_chunks_pruned,
            s.hot_chunks_deduplicated
        )
    }
}

impl ExecutionPlan for TierScanExec {
    fn name(&self) -> &str {
        "TierScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![&self.inner]
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    #[allow(deprecated)]
    fn with_new_children(
        self: Arc<Self>,
        mut children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.len() != 1 {
            return plan_err!("TierScanExec has exactly one child, got {}", children.len());
        }
        let inner = children.swap_remove(0);
        Ok(Arc::new(Self {
            summary: self.summary.clone(),
            properties: Arc::clone(inner.properties()),
            inner,
        }))
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        self.inner.execute(partition, context)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::prelude::col;

    fn ts(v: i64) -> Expr {
        lit(ScalarValue::TimestampNanosecond(Some(v), None))
    }

    #[test]
    fn time_range_from_comparisons() {
        let f = vec![col("time").gt_eq(ts(10)), col("time").lt(ts(20))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { lo: 10, hi: 19 });
        let f = vec![ts(10).lt(col("time"))];
        assert_eq!(
            TimeRange::from_filters(&f),
            TimeRange {
                lo: 11,
                hi: i64::MAX
            }
        );
        let f = vec![col("time").between(ts(1), ts(5))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange { lo: 1, hi: 5 });
        // An OR is not understood: stays open.
        let f = vec![col("time").lt(ts(3)).or(col("time").gt(ts(9)))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange::ALL);
        let f = vec![col("host").eq(lit("a"))];
        assert_eq!(TimeRange::from_filters(&f), TimeRange::ALL);
    }
}
