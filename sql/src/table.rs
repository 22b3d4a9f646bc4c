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

use std::collections::HashSet;
use std::fmt;
use std::sync::Arc;

use arrow::datatypes::DataType;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
use datafusion::catalog::Session;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, ScalarValue, plan_err};
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::datasource::{TableProvider, TableType};
use datafusion::execution::TaskContext;
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::{SessionState, SessionStateBuilder};
use datafusion::functions::expr_fn::nullif;
use datafusion::logical_expr::{
    Expr, LogicalPlan, LogicalPlanBuilder, TableProviderFilterPushDown, cast, lit,
};
use datafusion::optimizer::OptimizerRule;
use datafusion::optimizer::optimize_projections::OptimizeProjections;
use datafusion::optimizer::optimize_unions::OptimizeUnions;
use datafusion::optimizer::push_down_filter::PushDownFilter;
use datafusion::optimizer::push_down_limit::PushDownLimit;
use datafusion::physical_plan::execution_plan::ExecutionPlan;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, PhysicalExpr, PlanProperties, SendableRecordBatchStream,
};
use datafusion::prelude::{SessionConfig, ident};
use strata_catalog::{ColumnDef, ColumnKind, FieldType, ParquetFileMeta, Tier};
use strata_engine::dedup::project_to_table;
use strata_engine::rollup::{RollupAgg, rollup_fields, tier_columns};
use strata_engine::scan::sources_plan;
use strata_engine::schema::TIME_COLUMN;
use strata_engine::schema::{arrow_schema, field_type};
pub use strata_engine::time_filter::{TimeRange, TimeSpans};
use strata_engine::{HotPiece, TableSnapshot};

pub use strata_engine::scan::{COLD_STORE_URL, DATA_STORE_URL, FileSet};

/// The metric table behind a logical plan's table source, if it is one (the logical
/// table over all tiers, not a rollup tier's table).
pub fn metric_table(
    source: &Arc<dyn datafusion::logical_expr::TableSource>,
) -> Option<&MetricTable> {
    any_metric_table(source).filter(|t| t.tier == Tier::Hot)
}

/// The metric table behind a logical plan's table source, of any tier.
pub fn any_metric_table(
    source: &Arc<dyn datafusion::logical_expr::TableSource>,
) -> Option<&MetricTable> {
    let any: &dyn std::any::Any = source.as_ref();
    let provider = &any
        .downcast_ref::<datafusion::datasource::DefaultTableSource>()?
        .table_provider;
    let any: &dyn std::any::Any = provider.as_ref();
    any.downcast_ref::<MetricTable>()
}

/// One metric table: with [`Tier::Hot`] the logical table over all tiers (`public.cpu`),
/// with a rollup tier that tier's rows as they are stored (`rollup_1m.cpu`).
#[derive(Debug)]
pub struct MetricTable {
    snap: TableSnapshot,
    tier: Tier,
    /// The columns and schema this table shows (raw, or the rollup columns).
    columns: Vec<ColumnDef>,
    schema: SchemaRef,
}

impl MetricTable {
    pub fn new(snap: TableSnapshot) -> Self {
        Self::of_tier(snap, Tier::Hot)
    }

    /// A rollup tier's table, or with [`Tier::Hot`] the logical table.
    pub fn of_tier(snap: TableSnapshot, tier: Tier) -> Self {
        let columns = tier_columns(tier, &snap.columns);
        let schema = arrow_schema(&columns);
        Self {
            snap,
            tier,
            columns,
            schema,
        }
    }

    /// This table over the data as it is now, if it still has the same columns (so a plan
    /// made over this table holds over the new one); `None` if it changed or went away.
    pub fn refreshed(&self, engine: &strata_engine::Engine) -> Option<Self> {
        let snap = engine.table_snapshot(&self.snap.db, &self.snap.table)?;
        let fresh = Self::of_tier(snap, self.tier);
        (fresh.schema == self.schema).then_some(fresh)
    }

    /// The table's data as of planning.
    pub fn snapshot(&self) -> &TableSnapshot {
        &self.snap
    }

    fn pushable(&self, e: &Expr) -> bool {
        let safe: HashSet<&str> = self
            .columns
            .iter()
            .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
            .map(|c| c.name.as_str())
            .collect();
        let cols = e.column_refs();
        !cols.is_empty() && cols.iter().all(|c| safe.contains(c.name.as_str()))
    }

    /// Where each tier's coverage starts: raw rows from `raw_from`, warm rollup rows in
    /// `[warm_from, raw_from)`, cold rollup rows before `warm_from`. Each time range comes
    /// from exactly one tier, the finest that holds it.
    pub(crate) fn boundaries(&self) -> (i64, i64) {
        let snap = &self.snap;
        let start_of = |tier: Tier| {
            snap.files
                .iter()
                .filter(|f| f.tier == tier)
                .map(|f| f.chunk_start)
                .min()
        };
        let hot_start = snap
            .hot
            .iter()
            .filter(|h| h.rows > 0)
            .map(|h| h.chunk_start)
            .min();
        let raw_from = match (start_of(Tier::Hot), hot_start) {
            (Some(a), Some(b)) => a.min(b),
            (a, b) => a.or(b).unwrap_or(i64::MAX),
        };
        let warm_from = start_of(Tier::Warm).map_or(raw_from, |w| w.min(raw_from));
        (raw_from, warm_from)
    }

    /// Rollup rows of `tier` in `[from, to)` shaped as raw rows: tags, `time` (the bucket
    /// start), and each field as the bucket average (`sum / count`; the last value for
    /// strings and booleans), in the raw table's types.
    fn rollup_as_rows(
        &self,
        tier: Tier,
        from: i64,
        to: i64,
        spans: &TimeSpans,
        pushed: &[Expr],
        summary: &mut ScanSummary,
    ) -> Result<Option<LogicalPlan>> {
        let spans = spans.within(from, to.saturating_sub(1));
        if spans.is_empty() {
            return Ok(None);
        }
        let all: Vec<&ParquetFileMeta> =
            self.snap.files.iter().filter(|f| f.tier == tier).collect();
        let files: Vec<&ParquetFileMeta> = all
            .iter()
            .copied()
            .filter(|f| spans.overlaps(f.min_time, f.max_time))
            .collect();
        summary.add_tier(tier, all.len(), files.len());
        if files.is_empty() {
            return Ok(None);
        }
        let columns = tier_columns(tier, &self.snap.columns);
        let schema = arrow_schema(&columns);
        let mut filters = pushed.to_vec();
        filters.push(ident(TIME_COLUMN).gt_eq(ts_lit(from)));
        filters.push(ident(TIME_COLUMN).lt(ts_lit(to)));
        let sources = sources_plan(&schema, &columns, &files, &[], &filters)?;
        summary.files_deduplicated += sources.files_deduplicated;
        let rollup = rollup_fields(&self.snap.columns);
        // The rollup column of a field's aggregate (absent when its name was taken).
        let col_of = |field: &str, agg: RollupAgg| {
            rollup
                .iter()
                .find(|f| f.field == field && f.agg == agg)
                .map(|f| ident(&f.name))
        };
        let exprs: Vec<Expr> = self
            .snap
            .columns
            .iter()
            .map(|c| match c.kind {
                ColumnKind::Tag | ColumnKind::Time => ident(&c.name),
                ColumnKind::Field(t @ (FieldType::Boolean | FieldType::String)) => {
                    col_of(&c.name, RollupAgg::Last)
                        .unwrap_or_else(|| cast(lit(ScalarValue::Null), field_type(t)))
                        .alias(&c.name)
                }
                ColumnKind::Field(_) => {
                    match (
                        col_of(&c.name, RollupAgg::Sum),
                        col_of(&c.name, RollupAgg::Count),
                    ) {
                        (Some(s), Some(n)) => (cast(s, DataType::Float64)
                            / cast(nullif(n, lit(0i64)), DataType::Float64))
                        .alias(&c.name),
                        _ => cast(lit(ScalarValue::Null), DataType::Float64).alias(&c.name),
                    }
                }
            })
            .collect();
        let plan = LogicalPlanBuilder::from(sources.plan)
            .project(exprs)?
            .build()?;
        Ok(Some(project_to_table(plan, &self.snap.columns)?))
    }
}

#[async_trait]
impl TableProvider for MetricTable {
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
        let spans = TimeSpans::from_filters(&pushed);
        let mut summary = ScanSummary {
            table: snap.table.clone(),
            ..Default::default()
        };
        let mut parts: Vec<LogicalPlan> = Vec::new();
        match self.tier {
            Tier::Hot => {
                let (raw_from, warm_from) = self.boundaries();
                let all: Vec<&ParquetFileMeta> =
                    snap.files.iter().filter(|f| f.tier == Tier::Hot).collect();
                let files: Vec<&ParquetFileMeta> = all
                    .iter()
                    .copied()
                    .filter(|f| spans.overlaps(f.min_time, f.max_time))
                    .collect();
                let hot: Vec<&HotPiece> = snap
                    .hot
                    .iter()
                    .filter(|h| h.rows > 0 && spans.overlaps(h.min_time, h.max_time))
                    .collect();
                summary.add_tier(Tier::Hot, all.len(), files.len());
                summary.hot_chunks = hot.len();
                summary.hot_chunks_pruned = snap.hot.len() - hot.len();
                if !files.is_empty() || !hot.is_empty() {
                    let sources = sources_plan(&snap.schema, &snap.columns, &files, &hot, &pushed)?;
                    summary.files_deduplicated += sources.files_deduplicated;
                    summary.hot_chunks_deduplicated = sources.hot_deduplicated;
                    parts.push(sources.plan);
                }
                let older = [
                    (Tier::Warm, warm_from, raw_from),
                    (Tier::Cold, i64::MIN, warm_from),
                ];
                for (tier, from, to) in older {
                    if let Some(p) =
                        self.rollup_as_rows(tier, from, to, &spans, &pushed, &mut summary)?
                    {
                        parts.push(p);
                    }
                }
            }
            tier => {
                let all: Vec<&ParquetFileMeta> =
                    snap.files.iter().filter(|f| f.tier == tier).collect();
                let files: Vec<&ParquetFileMeta> = all
                    .iter()
                    .copied()
                    .filter(|f| spans.overlaps(f.min_time, f.max_time))
                    .collect();
                summary.add_tier(tier, all.len(), files.len());
                if !files.is_empty() {
                    let sources = sources_plan(&self.schema, &self.columns, &files, &[], &pushed)?;
                    summary.files_deduplicated += sources.files_deduplicated;
                    parts.push(sources.plan);
                }
            }
        }
        let plan = match parts.len() {
            0 => {
                let empty = MemTable::try_new(Arc::clone(&self.schema), vec![vec![]])?;
                LogicalPlanBuilder::scan("empty", provider_as_source(Arc::new(empty)), None)?
                    .build()?
            }
            _ => {
                let mut b = LogicalPlanBuilder::from(parts.remove(0));
                for p in parts {
                    b = b.union(p)?;
                }
                b.build()?
            }
        };
        let mut b = LogicalPlanBuilder::from(plan);
        if let Some(p) = projection {
            let exprs: Vec<Expr> = p
                .iter()
                .map(|i| ident(self.schema.field(*i).name()))
                .collect();
            b = b.project(exprs)?;
        }
        if let Some(n) = limit {
            b = b.limit(0, Some(n))?;
        }
        let plan = b.build()?;
        let inner = match state.config().get_extension::<ScanPlanner>() {
            Some(planner) => planner.plan(&plan).await?,
            None => state.create_physical_plan(&plan).await?,
        };
        Ok(Arc::new(TierScanExec {
            summary,
            properties: Arc::clone(inner.properties()),
            inner,
        }))
    }
}

/// Plans the inner plan of every metric table scan more cheaply than the session would:
/// the analyzer, then only the logical rules that plan's shape needs (flat unions; limit,
/// filter and projection push-down into the sources), and no physical rules, because
/// the query's physical optimizer runs over the inner plan too, as over every node below
/// the scan. Running the whole optimizer here, per tier segment, was the larger part of
/// planning a small query. Built once per engine and found through each session's config;
/// a session without it plans scans with its own rules.
#[derive(Debug)]
pub struct ScanPlanner {
    state: SessionState,
}

impl ScanPlanner {
    pub fn new(config: SessionConfig, runtime: Arc<RuntimeEnv>) -> Self {
        let rules: Vec<Arc<dyn OptimizerRule + Send + Sync>> = vec![
            Arc::new(OptimizeUnions::new()),
            Arc::new(PushDownLimit::new()),
            Arc::new(PushDownFilter::new()),
            Arc::new(OptimizeProjections::new()),
        ];
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_optimizer_rules(rules)
            .with_physical_optimizer_rules(Vec::new())
            .build();
        Self { state }
    }

    async fn plan(&self, plan: &LogicalPlan) -> Result<Arc<dyn ExecutionPlan>> {
        self.state.create_physical_plan(plan).await
    }
}

fn ts_lit(v: i64) -> Expr {
    lit(ScalarValue::TimestampNanosecond(Some(v), None))
}

/// What a scan chose, shown by `EXPLAIN`.
#[derive(Debug, Clone, Default)]
pub struct ScanSummary {
    pub table: String,
    /// Per tier that could hold rows of the query: (tier, files registered, files read).
    pub tiers: Vec<(Tier, usize, usize)>,
    pub files_deduplicated: usize,
    pub hot_chunks: usize,
    pub hot_chunks_deduplicated: usize,
    pub hot_chunks_pruned: usize,
}

impl ScanSummary {
    fn add_tier(&mut self, tier: Tier, total: usize, read: usize) {
        self.tiers.push((tier, total, read));
    }

    /// The tiers that supply rows (files read, or hot data for the raw tier).
    pub fn tiers_used(&self) -> Vec<Tier> {
        self.tiers
            .iter()
            .filter(|(t, _, read)| *read > 0 || (*t == Tier::Hot && self.hot_chunks > 0))
            .map(|(t, _, _)| *t)
            .collect()
    }
}

/// Wraps the physical plan of one table scan so `EXPLAIN` shows the tier choice and
/// pruning; execution is the inner plan's.
#[derive(Debug)]
pub struct TierScanExec {
    summary: ScanSummary,
    inner: Arc<dyn ExecutionPlan>,
    properties: Arc<PlanProperties>,
}

impl TierScanExec {
    /// What the scan chose.
    pub fn summary(&self) -> &ScanSummary {
        &self.summary
    }
}

impl DisplayAs for TierScanExec {
    fn fmt_as(&self, _t: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        let s = &self.summary;
        let used: Vec<&str> = s.tiers_used().iter().map(|t| t.name()).collect();
        let (total, read) = s
            .tiers
            .iter()
            .fold((0, 0), |(t, r), (_, a, b)| (t + a, r + b));
        let per_tier: Vec<String> = s
            .tiers
            .iter()
            .map(|(t, a, b)| format!("{}={b}/{a}", t.name()))
            .collect();
        write!(
            f,
            "TierScanExec: table={}, tiers=[{}], files={read} of {total} (pruned {}, deduplicated {}) [{}], hot_chunks={} (pruned {}, deduplicated {})",
            s.table,
            used.join(", "),
            total - read,
            s.files_deduplicated,
            per_tier.join(", "),
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

    fn maintains_input_order(&self) -> Vec<bool> {
        vec![true]
    }

    fn benefits_from_input_partitioning(&self) -> Vec<bool> {
        vec![false]
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
