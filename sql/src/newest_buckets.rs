//! "The newest k time buckets": queries like
//!
//! ```sql
//! SELECT date_trunc('minute', time) AS minute, max(usage_user) FROM cpu
//! WHERE time < '…' GROUP BY 1 ORDER BY 1 DESC LIMIT 5
//! ```
//!
//! need only the newest few minutes before the bound, yet planned as written they
//! aggregate every row of the table before the top-k sort. This runs them over a time
//! window that ends at the bound (or the newest data) and starts `k` buckets back (on a
//! bucket's start where buckets are multiples of their width from the epoch, else
//! `k + 1` widths back), growing ×4 until the window holds `k` complete buckets; the
//! table prunes every file and hot chunk outside the window. A windowed answer is used
//! only when it has `k` rows and its oldest bucket starts at or after the window's start,
//! i.e. no bucket in it lost rows to the window. A window reaching the query's own lower
//! time bound is the whole query: its answer is used as it is, however few rows it has.
//! Otherwise (windows reaching past the oldest data) the query runs as written. Buckets must be `date_trunc`/`date_bin` of
//! `time` (never later than `time`), the only grouping key, and the first sort key,
//! descending.

use std::sync::Arc;

use arrow::array::{Array, Int64Array, RecordBatch};
use arrow::compute::cast;
use arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Result, ScalarValue};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::prelude::{SessionContext, ident, lit};
use strata_engine::schema::TIME_COLUMN;

use datafusion::common::DFSchemaRef;
use datafusion::execution::session_state::SessionState;
use datafusion::logical_expr::simplify::SimplifyContext;
use datafusion::optimizer::simplify_expressions::ExprSimplifier;

use crate::table::{TimeRange, metric_table};

const MINUTE: i64 = 60_000_000_000;

/// `plan` analyzed (types coerced), not optimized: the form [`shape`] recognises and
/// [`run`] windows. Each window is then optimized once, with every rule, so tier choice
/// picks its tiers. (Optimizing here as well, without tier choice, which would turn
/// the scan under the aggregate into a union of tiers over all time, planned every such
/// query twice.)
pub fn analyze(state: &SessionState, plan: &LogicalPlan) -> Result<LogicalPlan> {
    state
        .analyzer()
        .execute_and_check(plan.clone(), state.config().options(), |_, _| {})
}

/// What the windows are built from.
#[derive(Debug)]
pub struct Shape {
    k: usize,
    /// The output column holding the bucket.
    bucket_column: String,
    /// Nanoseconds of one bucket (an estimate for calendar units).
    width: i64,
    /// Whether buckets start at multiples of `width`: windows then start on a bucket.
    aligned: bool,
    /// Newest data and the query's own upper time bound, whichever is lower.
    anchor: i64,
    /// The query's own lower time bound (inclusive; `i64::MIN` when it has none).
    lower: i64,
    oldest: i64,
}

/// The shape of `plan` ([`analyze`]d or optimized) if it is a newest-buckets query over
/// one metric table.
pub fn shape(plan: &LogicalPlan) -> Option<Shape> {
    let mut node = plan;
    let mut k: Option<usize> = None;
    let mut sort_column: Option<String> = None;
    // Aliases from projections between the sort and the aggregate: output → input name.
    let mut renames: Vec<(String, String)> = Vec::new();
    let agg = loop {
        match node {
            LogicalPlan::Limit(l) => {
                if !matches!(
                    l.get_skip_type().ok()?,
                    datafusion::logical_expr::SkipType::Literal(0)
                ) {
                    return None;
                }
                if let datafusion::logical_expr::FetchType::Literal(Some(n)) =
                    l.get_fetch_type().ok()?
                {
                    k = Some(k.map_or(n, |k| k.min(n)));
                }
                node = l.input.as_ref();
            }
            LogicalPlan::Sort(s) => {
                if let Some(n) = s.fetch {
                    k = Some(k.map_or(n, |k| k.min(n)));
                }
                let first = s.expr.first()?;
                let Expr::Column(c) = &first.expr else {
                    return None;
                };
                if first.asc || sort_column.is_some() {
                    return None;
                }
                sort_column = Some(c.name.clone());
                node = s.input.as_ref();
            }
            LogicalPlan::Projection(p) => {
                for e in &p.expr {
                    if let Expr::Alias(a) = e
                        && let Expr::Column(c) = a.expr.as_ref()
                    {
                        renames.push((a.name.clone(), c.name.clone()));
                    }
                }
                node = p.input.as_ref();
            }
            LogicalPlan::Aggregate(a) => break a,
            _ => return None,
        }
    };
    let (k, sort_column) = (k?, sort_column?);
    if agg.group_expr.len() != 1 {
        return None;
    }
    // The sort key must be the aggregate's bucket, through any renames.
    let mut name = sort_column.clone();
    for (to, from) in renames.iter() {
        if *to == name {
            name = from.clone();
        }
    }
    let group = &agg.group_expr[0];
    let group_name = agg.schema.field(0).name();
    if name != *group_name {
        return None;
    }
    let (width, aligned) = bucket_width(group)?;
    // Below the aggregate: projections and filters down to one metric table.
    let mut node = agg.input.as_ref();
    let mut filters: Vec<Expr> = Vec::new();
    let table = loop {
        match node {
            LogicalPlan::Projection(p) => node = p.input.as_ref(),
            LogicalPlan::Filter(f) => {
                filters.push(folded(&f.predicate, f.input.schema()));
                node = f.input.as_ref();
            }
            LogicalPlan::TableScan(s) => {
                filters.extend(s.filters.iter().cloned());
                break metric_table(&s.source)?;
            }
            _ => return None,
        }
    };
    let snap = table.snapshot();
    let (oldest, newest) = snap
        .files
        .iter()
        .map(|f| (f.min_time, f.max_time))
        .chain(
            snap.hot
                .iter()
                .filter(|h| h.rows > 0)
                .map(|h| (h.min_time, h.max_time)),
        )
        .fold(None, |acc: Option<(i64, i64)>, (lo, hi)| {
            Some(acc.map_or((lo, hi), |(a, b)| (a.min(lo), b.max(hi))))
        })?;
    let range = TimeRange::from_filters(&filters);
    Some(Shape {
        k,
        bucket_column: sort_column,
        width,
        aligned,
        anchor: range.hi.min(newest).saturating_add(1),
        lower: range.lo,
        oldest,
    })
}

/// `e` with its constants folded (`TIMESTAMP '…' - INTERVAL '1 hour'`, `now()`), so the
/// time range sees literal bounds; `e` as it is when it cannot be simplified.
fn folded(e: &Expr, schema: &DFSchemaRef) -> Expr {
    let context = SimplifyContext::builder()
        .with_schema(Arc::clone(schema))
        .with_current_time()
        .build();
    ExprSimplifier::new(context)
        .simplify(e.clone())
        .unwrap_or_else(|_| e.clone())
}

/// The bucket width of `date_trunc('<unit>', time)` or `date_bin(<interval>, time[, …])`,
/// and whether buckets start at multiples of it (from 1970-01-01, UTC).
fn bucket_width(e: &Expr) -> Option<(i64, bool)> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    let is_time = |e: &Expr| matches!(e, Expr::Column(c) if c.name == TIME_COLUMN);
    match (f.name(), f.args.as_slice()) {
        ("date_trunc", [Expr::Literal(ScalarValue::Utf8(Some(unit)), _), t]) if is_time(t) => {
            Some(match unit.to_ascii_lowercase().as_str() {
                "second" => (1_000_000_000, true),
                "minute" => (MINUTE, true),
                "hour" => (60 * MINUTE, true),
                "day" => (24 * 60 * MINUTE, true),
                "week" => (7 * 24 * 60 * MINUTE, false),
                "month" => (31 * 24 * 60 * MINUTE, false),
                "quarter" => (92 * 24 * 60 * MINUTE, false),
                "year" => (366 * 24 * 60 * MINUTE, false),
                _ => return None,
            })
        }
        ("date_bin", [Expr::Literal(interval, _), t, rest @ ..]) if is_time(t) => {
            let ns = match interval {
                ScalarValue::IntervalMonthDayNano(Some(v)) if v.months == 0 => {
                    i64::from(v.days) * 24 * 60 * MINUTE + v.nanoseconds
                }
                ScalarValue::IntervalDayTime(Some(v)) => {
                    i64::from(v.days) * 24 * 60 * MINUTE + i64::from(v.milliseconds) * 1_000_000
                }
                _ => return None,
            };
            // Without an origin, bins start at multiples of the width from the epoch.
            (ns > 0).then_some((ns, rest.is_empty()))
        }
        _ => None,
    }
}

/// Runs `plan` over growing windows; `None` when no window proved enough (run it as is).
pub async fn run(
    ctx: &SessionContext,
    plan: &LogicalPlan,
    shape: &Shape,
) -> Result<Option<(SchemaRef, Vec<RecordBatch>)>> {
    // A window starting on a bucket holds whole buckets only: k of them may be enough.
    // Otherwise its oldest bucket is cut, so it spans one more.
    let mut buckets = shape.k as i64 + i64::from(!shape.aligned);
    loop {
        let mut start = if shape.aligned {
            let newest = shape.anchor.saturating_sub(1).div_euclid(shape.width) * shape.width;
            newest.saturating_sub(shape.width.saturating_mul(buckets - 1))
        } else {
            shape
                .anchor
                .saturating_sub(shape.width.saturating_mul(buckets))
        };
        // Reaching the query's own bound, the window holds every row the query can see.
        let whole = start <= shape.lower;
        if whole {
            start = shape.lower;
        } else if start <= shape.oldest {
            return Ok(None);
        }
        let windowed = with_window(plan, start)?;
        let df = ctx.execute_logical_plan(windowed).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let batches = df.collect().await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if whole || rows >= shape.k && oldest_bucket(&batches, &shape.bucket_column)? >= Some(start)
        {
            return Ok(Some((schema, batches)));
        }
        buckets = buckets.saturating_mul(4);
    }
}

/// `plan` with `time >= start` right above its table scan.
fn with_window(plan: &LogicalPlan, start: i64) -> Result<LogicalPlan> {
    let bound = lit(ScalarValue::TimestampNanosecond(Some(start), None));
    plan.clone()
        .transform_up(|n| match n {
            LogicalPlan::TableScan(_) => {
                let scan = LogicalPlanBuilder::from(n)
                    .filter(ident(TIME_COLUMN).gt_eq(bound.clone()))?
                    .build()?;
                Ok(Transformed::yes(scan))
            }
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
}

/// The smallest bucket start in the result, in ns.
fn oldest_bucket(batches: &[RecordBatch], column: &str) -> Result<Option<i64>> {
    let mut min: Option<i64> = None;
    for b in batches {
        let Some(col) = b.column_by_name(column) else {
            return Ok(None);
        };
        let ns = cast(col, &DataType::Timestamp(TimeUnit::Nanosecond, None))?;
        let ns = cast(&ns, &DataType::Int64)?;
        let Some(ns) = ns.as_any().downcast_ref::<Int64Array>() else {
            return Ok(None);
        };
        if ns.null_count() > 0 {
            return Ok(None);
        }
        if let Some(m) = arrow::compute::min(ns) {
            min = Some(min.map_or(m, |x| x.min(m)));
        }
    }
    Ok(min)
}
