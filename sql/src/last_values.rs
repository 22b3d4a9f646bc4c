//! The planner side of the engine's last-value cache: a query for the latest row of each
//! group of series,
//!
//! ```sql
//! SELECT DISTINCT ON (host) * FROM cpu [WHERE <tag predicates>] ORDER BY host, time DESC
//! ```
//!
//! reads the cache (one row per series) instead of every file. That is exact: the latest
//! row of a group of series is the latest of its series' latest rows, and `DISTINCT ON`
//! with its `ORDER BY` still runs over the cached rows (as the first row per group by
//! `row_number()`), so ties break the same way. It
//! applies when the `DISTINCT ON` keys are tags, the `ORDER BY` is those keys then `time
//! DESC`, and every predicate is on tags (a time or field predicate could exclude a
//! series' latest row while an older one qualifies).
//!
//! The first such query of a table starts its cache and is answered by a scan; the cache
//! is filled in the background by one `DISTINCT ON` over all tags of the table, and later
//! queries use it (`system.last_value_caches` shows each cache, its state and hits).

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::common::Result;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::datasource::memory::MemTable;
use datafusion::datasource::provider_as_source;
use datafusion::functions_window::expr_fn::row_number;
use datafusion::logical_expr::{
    Distinct, DistinctOn, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, TableScanBuilder,
};
use datafusion::optimizer::AnalyzerRule;
use datafusion::prelude::{ident, lit};
use futures::TryStreamExt;
use strata_catalog::ColumnKind;
use strata_engine::schema::TIME_COLUMN;

use crate::QueryEngine;
use crate::table::{MetricTable, metric_table};

/// The rank column of the rewritten plan (projected away).
const RANK_COLUMN: &str = "__strata_last_rank";

/// The analyzer rule (runs before DataFusion turns `DISTINCT ON` into an aggregate).
#[derive(Debug)]
pub struct LastValueRule {
    queries: QueryEngine,
}

impl LastValueRule {
    pub fn new(queries: QueryEngine) -> Self {
        Self { queries }
    }

    fn rewrite(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::Distinct(Distinct::On(on)) = &node else {
            return Ok(Transformed::no(node));
        };
        let Some((table, filters_on_keys)) = lastpoint_table(on) else {
            return Ok(Transformed::no(node));
        };
        let snap = table.snapshot();
        let engine = self.queries.engine();
        // With filters on the `DISTINCT ON` keys alone (or none), a group's rows pass or
        // fail together: the cache can hand over one row per group, ready.
        let keys = key_names(on);
        let per_group = filters_on_keys.then_some(keys.as_slice());
        let Some(cached) = engine.last_values(&snap.db, &snap.table, &snap.schema, per_group)
        else {
            if engine.last_values_start(&snap.db, &snap.table) {
                self.warm(snap);
            }
            return Ok(Transformed::no(node));
        };
        let cached = cached?;
        let mem = Arc::new(MemTable::try_new(
            Arc::clone(&snap.schema),
            vec![vec![cached]],
        )?);
        let input = Arc::unwrap_or_clone(Arc::clone(&on.input)).transform_up(|n| match n {
            LogicalPlan::TableScan(scan) => Ok(Transformed::yes(LogicalPlan::TableScan(
                TableScanBuilder::new(scan.table_name.clone(), provider_as_source(mem.clone()))
                    .with_projection(scan.projection.clone())
                    .with_filters(scan.filters.clone())
                    .with_fetch(scan.fetch)
                    .build()?,
            ))),
            other => Ok(Transformed::no(other)),
        })?;
        let sort = on.sort_expr.clone().unwrap_or_default();
        if per_group.is_some() {
            let plan = LogicalPlanBuilder::from(input.data)
                .sort(sort)?
                .project(on.select_expr.clone())?
                .build()?;
            return Ok(Transformed::yes(plan));
        }
        // `DISTINCT ON` as DataFusion plans it (an ordered `first_value` per column) costs
        // far more than the few cached rows: take the first row of each group in the
        // sort order with `row_number()` instead, which is the same definition.
        let rank = row_number()
            .partition_by(on.on_expr.clone())
            .order_by(sort.clone())
            .build()?
            .alias(RANK_COLUMN);
        let plan = LogicalPlanBuilder::from(input.data)
            .window(vec![rank])?
            .filter(ident(RANK_COLUMN).eq(lit(1u64)))?
            .sort(sort)?
            .project(on.select_expr.clone())?
            .build()?;
        Ok(Transformed::yes(plan))
    }

    /// Reads each series' latest row in the background and hands it to the cache.
    fn warm(&self, snap: &strata_engine::TableSnapshot) {
        let Ok(handle) = tokio::runtime::Handle::try_current() else {
            self.queries
                .engine()
                .last_values_abandon(&snap.db, &snap.table);
            return;
        };
        let tags: Vec<String> = snap
            .columns
            .iter()
            .filter(|c| matches!(c.kind, ColumnKind::Tag))
            .map(|c| quote(&c.name))
            .collect();
        let table = quote(&snap.table);
        let time = quote(TIME_COLUMN);
        let sql = if tags.is_empty() {
            format!("SELECT * FROM {table} ORDER BY {time} DESC LIMIT 1")
        } else {
            let tags = tags.join(", ");
            format!("SELECT DISTINCT ON ({tags}) * FROM {table} ORDER BY {tags}, {time} DESC")
        };
        let queries = self.queries.clone();
        let (db, name) = (snap.db.clone(), snap.table.clone());
        handle.spawn(async move {
            let read = async {
                let (_, stream) = queries.query(&db, &sql).await?;
                stream
                    .try_collect::<Vec<_>>()
                    .await
                    .map_err(crate::Error::Query)
            };
            match read.await {
                Ok(batches) => {
                    queries.engine().last_values_fill(&db, &name, &batches);
                    tracing::info!(db, table = name, "last-value cache ready");
                }
                Err(e) => {
                    queries.engine().last_values_abandon(&db, &name);
                    tracing::warn!(db, table = name, error = %e, "last-value cache warm-up failed");
                }
            }
        });
    }
}

impl AnalyzerRule for LastValueRule {
    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up(|node| self.rewrite(node)).map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_last_value_cache"
    }
}

/// The metric table under a `DISTINCT ON` the cache can answer, if it is one, and
/// whether every filter reads only the `DISTINCT ON` keys.
fn lastpoint_table(on: &DistinctOn) -> Option<(&MetricTable, bool)> {
    // Below: only filters, down to the metric table's scan.
    let mut node = on.input.as_ref();
    let mut predicates: Vec<&Expr> = Vec::new();
    let scan = loop {
        match node {
            LogicalPlan::Filter(f) => {
                predicates.push(&f.predicate);
                node = f.input.as_ref();
            }
            LogicalPlan::TableScan(s) => break s,
            _ => return None,
        }
    };
    if scan.fetch.is_some() {
        return None;
    }
    predicates.extend(scan.filters.iter());
    let table = metric_table(&scan.source)?;
    let tags: HashSet<&str> = table
        .snapshot()
        .columns
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Tag))
        .map(|c| c.name.as_str())
        .collect();
    let is_tag = |e: &Expr| matches!(e, Expr::Column(c) if tags.contains(c.name.as_str()));
    if on.on_expr.is_empty() || !on.on_expr.iter().all(is_tag) {
        return None;
    }
    if !predicates.iter().all(|p| {
        p.column_refs()
            .iter()
            .all(|c| tags.contains(c.name.as_str()))
    }) {
        return None;
    }
    let sort = on.sort_expr.as_ref()?;
    let keys = on.on_expr.len();
    let leading: HashSet<&Expr> = sort.iter().take(keys).map(|s| &s.expr).collect();
    let on_set: HashSet<&Expr> = on.on_expr.iter().collect();
    let time_desc = sort
        .get(keys)
        .is_some_and(|s| !s.asc && matches!(&s.expr, Expr::Column(c) if c.name == TIME_COLUMN));
    let on_keys = key_names(on);
    let filters_on_keys = predicates.iter().all(|p| {
        p.column_refs()
            .iter()
            .all(|c| on_keys.contains(&c.name.as_str()))
    });
    (leading == on_set && time_desc).then_some((table, filters_on_keys))
}

/// The column names of the `DISTINCT ON` keys.
fn key_names(on: &DistinctOn) -> Vec<&str> {
    on.on_expr
        .iter()
        .filter_map(|e| match e {
            Expr::Column(c) => Some(c.name.as_str()),
            _ => None,
        })
        .collect()
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}
