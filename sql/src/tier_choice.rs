//! Tier choice for aggregates over time buckets. A query such as
//!
//! ```sql
//! SELECT date_bin(INTERVAL '1 hour', time) AS hour, host, max(usage), avg(usage)
//! FROM cpu WHERE time >= '…' AND time < '…' GROUP BY 1, 2
//! ```
//!
//! is answered exactly from the coarsest rollup tier whose buckets tile the query's
//! buckets, rather than from raw rows: `min` from `<f>_min`, `max` from `<f>_max`, `sum`
//! from `<f>_sum`, `count` from Σ`<f>_count`, `avg` as Σ`<f>_sum` / Σ`<f>_count`,
//! `first_value(f ORDER BY time) IGNORE NULLS` (and `last_value`) as the first (last)
//! non-null `<f>_first` (`<f>_last`) by bucket time. The
//! time range is cut into segments, oldest first: the cold tier (1-hour buckets) where it
//! has rolled up and nothing is dirty, then the warm tier (1-minute), then raw rows for
//! the rest (the newest data and any edge not aligned to a tier's buckets). Raw rows enter
//! the same final aggregate as one-row "buckets" (`min = max = sum = f`, `count = 1`), so
//! the answer equals the one from raw data.
//!
//! Applies when the aggregate reads one metric table directly, groups by tags and one
//! bucket of `time` (`date_bin` with a fixed width and origin, or `date_trunc`), every
//! aggregate is `min`, `max`, `sum`, `count` or `avg` of a numeric field (no `DISTINCT`,
//! `FILTER` or `ORDER BY`) or `first_value`/`last_value` of any field ordered by `time`
//! alone with `IGNORE NULLS` (the rollups keep the first and last non-null value: with
//! nulls respected the answer could be a null they do not record), and every filter is
//! on tags or `time`. Otherwise the query
//! runs as written over the logical table (raw rows where they exist, bucket averages
//! from rollups for older ranges).
//!
//! Fewer rows are not always cheaper. Files are sorted by series, so a query of a few
//! series reads a page or two of every file it opens, whichever the tier, and a union of
//! tiers costs a scan per tier to plan and run. Where raw rows hold the whole range, the
//! rule estimates both plans from the files' cached page indexes
//! ([`strata_engine::read_cost`]) and leaves the query to raw rows when they cost less:
//! for TSBS's `single-groupby-*` and `cpu-max-all-*` (1 to 8 hosts, 1 to 12 hours) that
//! is 25–40% faster than the rollups; for every host over hours the rollups still win,
//! three to one. [`TierChoiceRule::coarsest`] always uses the rollups.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::tree_node::{Transformed, TreeNode};
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::datasource::provider_as_source;
use datafusion::execution::cache::cache_manager::FileMetadataCache;
use datafusion::functions::expr_fn::nullif;
use datafusion::functions_aggregate::expr_fn::{max, min, sum};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::utils::{conjunction, disjunction, split_conjunction};
use datafusion::logical_expr::{
    Aggregate, Expr, ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, Operator, TableScan, cast,
    lit, when,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::prelude::ident;
use strata_catalog::RangeSet;
use strata_catalog::{ColumnKind, FieldType, Tier};
use strata_engine::TableSnapshot;
use strata_engine::read_cost::{self, ReadEstimate, TagFilter};
use strata_engine::rollup::{RollupAgg, ceil_to, floor_to, rollup_column_name, rollup_fields};
use strata_engine::scan::cached_metadata;
use strata_engine::schema::TIME_COLUMN;

use crate::table::{MetricTable, TimeRange, metric_table};

const SECOND: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SECOND;

/// The optimizer rule (see the module docs).
#[derive(Debug, Default)]
pub struct TierChoiceRule {
    /// Where files' footers and page indexes are cached: with it, raw rows answer a
    /// query the rollups could when reading them is estimated to cost less
    /// ([`raw_is_cheaper`]); without it, the rollups always do.
    costs: Option<Arc<FileMetadataCache>>,
}

impl TierChoiceRule {
    /// Chooses between rollups and raw rows by estimated cost, from `cache`'s metadata.
    pub fn by_cost(cache: Arc<FileMetadataCache>) -> Self {
        Self { costs: Some(cache) }
    }

    /// Always the coarsest exact tiers.
    pub fn coarsest() -> Self {
        Self { costs: None }
    }
}

impl OptimizerRule for TierChoiceRule {
    fn name(&self) -> &str {
        "strata_tier_choice"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_up(|node| {
            let LogicalPlan::Aggregate(agg) = &node else {
                return Ok(Transformed::no(node));
            };
            match rewrite_aggregate(agg, self.costs.as_deref())? {
                Some(p) => Ok(Transformed::yes(p)),
                None => Ok(Transformed::no(node)),
            }
        })
    }
}

/// An aggregate the rollups can answer: which function of which field.
struct Wanted {
    func: &'static str,
    field: String,
}

impl Wanted {
    /// The rollup columns this aggregate is computed from.
    fn needs(&self) -> &'static [RollupAgg] {
        match self.func {
            "min" => &[RollupAgg::Min],
            "max" => &[RollupAgg::Max],
            "sum" => &[RollupAgg::Sum],
            "count" => &[RollupAgg::Count],
            "first" => &[RollupAgg::First],
            "last" => &[RollupAgg::Last],
            _ => &[RollupAgg::Sum, RollupAgg::Count],
        }
    }
}

fn rewrite_aggregate(
    agg: &Aggregate,
    costs: Option<&FileMetadataCache>,
) -> Result<Option<LogicalPlan>> {
    // Aggregate → [Projection of columns] → [Filter] → TableScan of a metric table.
    let mut node = agg.input.as_ref();
    let mut conjuncts: Vec<Expr> = Vec::new();
    let scan: &TableScan = loop {
        match node {
            LogicalPlan::Projection(p) if p.expr.iter().all(|e| matches!(e, Expr::Column(_))) => {
                node = p.input.as_ref();
            }
            LogicalPlan::Filter(f) => {
                conjuncts.extend(split_conjunction(&f.predicate).into_iter().cloned());
                node = f.input.as_ref();
            }
            LogicalPlan::TableScan(s) => break s,
            _ => return Ok(None),
        }
    };
    let Some(table) = metric_table(&scan.source) else {
        return Ok(None);
    };
    if scan.fetch.is_some() {
        return Ok(None);
    }
    conjuncts.extend(scan.filters.iter().cloned());
    let snap = table.snapshot();
    let is_tag = |name: &str| {
        snap.columns
            .iter()
            .any(|c| c.name == name && c.kind == ColumnKind::Tag)
    };
    // Filters on tags and time only: rollup rows cannot be filtered by raw field values.
    // A filter on time must be a bound the range below understands (`time >= …`,
    // `BETWEEN`): anything else (`OR`, `<>`, functions of time) would be applied to bucket
    // starts, not to points.
    for c in &conjuncts {
        let cols = c.column_refs();
        let on_time = cols.iter().any(|col| col.name == TIME_COLUMN);
        if cols.is_empty()
            || !cols
                .iter()
                .all(|col| col.name == TIME_COLUMN || is_tag(&col.name))
            || on_time
                && (cols.len() != 1
                    || TimeRange::from_filters(std::slice::from_ref(c)) == TimeRange::ALL)
        {
            return Ok(None);
        }
    }
    // Group by tags and exactly one bucket of time.
    let mut granularity = None;
    for g in &agg.group_expr {
        match g {
            Expr::Column(c) if is_tag(&c.name) => {}
            e => match bucket_granularity(e) {
                Some(w) if granularity.is_none() => granularity = Some(w),
                _ => return Ok(None),
            },
        }
    }
    let Some(granularity) = granularity else {
        return Ok(None);
    };
    let mut wanted = Vec::new();
    for e in &agg.aggr_expr {
        match wanted_aggregate(e, snap) {
            Some(w) => wanted.push(w),
            None => return Ok(None),
        }
    }
    let range = TimeRange::from_filters(&conjuncts);
    let segments = segments(snap, granularity, range);
    if !segments.iter().any(|s| s.0 != Tier::Hot) {
        return Ok(None);
    }
    // Each segment's tier must hold all of it: where a segment starts before its tier's
    // oldest data (expired by retention) while another tier still has rows there, the
    // answer would miss them (or, for raw rows, get bucket averages), so the query runs
    // as written.
    let (raw_from, _) = table.boundaries();
    if segments
        .iter()
        .any(|&(tier, lo, hi)| misses_older_data(snap, tier, lo, hi, raw_from))
    {
        return Ok(None);
    }
    // One scan per tier: a tier's segments (raw rows at both edges of the range, a finer
    // rollup either side of a coarser one) are read together, as one inner plan that
    // opens each file once.
    let mut per_tier: Vec<(Tier, Vec<(i64, i64)>)> = Vec::new();
    for &(tier, lo, hi) in &segments {
        match per_tier.iter_mut().find(|(t, _)| *t == tier) {
            Some((_, ranges)) => ranges.push((lo, hi)),
            None => per_tier.push((tier, vec![(lo, hi)])),
        }
    }
    // Raw rows alone, when they hold the whole range and cost less: the query as written.
    if let Some(cache) = costs
        && !misses_older_data(snap, Tier::Hot, range.lo, range.end(), raw_from)
        && raw_is_cheaper(snap, cache, &tag_filters(&conjuncts), &per_tier, range)
    {
        return Ok(None);
    }
    // Per field, the rollup columns the wanted aggregates read.
    let mut fields: Vec<(&str, Vec<RollupAgg>)> = Vec::new();
    for w in &wanted {
        let i = match fields.iter().position(|(f, _)| *f == w.field) {
            Some(i) => i,
            None => {
                fields.push((w.field.as_str(), Vec::new()));
                fields.len() - 1
            }
        };
        for a in w.needs() {
            if !fields[i].1.contains(a) {
                fields[i].1.push(*a);
            }
        }
    }
    let tags: Vec<&str> = snap
        .columns
        .iter()
        .filter(|c| c.kind == ColumnKind::Tag)
        .map(|c| c.name.as_str())
        .collect();
    let ts = |v: i64| lit(ScalarValue::TimestampNanosecond(Some(v), None));
    let mut parts = Vec::new();
    for (tier, ranges) in &per_tier {
        let provider = Arc::new(MetricTable::of_tier(snap.clone(), *tier));
        // The query's own time bounds are left out: every segment lies inside them, so
        // they would only be compared again on every row read.
        let mut filters: Vec<Expr> = conjuncts
            .iter()
            .filter(|c| !c.column_refs().iter().any(|col| col.name == TIME_COLUMN))
            .map(unqualify)
            .collect();
        let in_range = |&(lo, hi): &(i64, i64)| {
            let from = (lo != i64::MIN).then(|| ident(TIME_COLUMN).gt_eq(ts(lo)));
            let to = (hi != i64::MAX).then(|| ident(TIME_COLUMN).lt(ts(hi)));
            conjunction(from.into_iter().chain(to))
        };
        let ranges: Option<Vec<Expr>> = ranges.iter().map(in_range).collect();
        // (A range open at both ends is all time: no filter.)
        filters.extend(ranges.and_then(disjunction));
        let mut exprs: Vec<Expr> = tags.iter().map(|t| ident(*t)).collect();
        exprs.push(ident(TIME_COLUMN));
        for (f, aggs) in &fields {
            for a in aggs {
                let name = rollup_column_name(f, *a);
                exprs.push(match (*tier, a) {
                    // A raw row is a one-row bucket: its value is min, max, sum, first
                    // and last; its count is 1 unless the field is null.
                    (Tier::Hot, RollupAgg::Count) => when(ident(*f).is_null(), lit(0i64))
                        .otherwise(lit(1i64))?
                        .alias(name),
                    (Tier::Hot, _) => ident(*f).alias(name),
                    _ => ident(name),
                });
            }
        }
        let mut b = LogicalPlanBuilder::scan(
            format!("{}_{}", scan.table_name.table(), tier.name()),
            provider_as_source(provider),
            None,
        )?;
        if let Some(p) = conjunction(filters) {
            b = b.filter(p)?;
        }
        parts.push(b.project(exprs)?.build()?);
    }
    let mut b = LogicalPlanBuilder::from(parts.remove(0));
    for p in parts {
        b = b.union(p)?;
    }
    let b = b.alias(scan.table_name.clone())?;
    let q = |name: String| Expr::Column(Column::new(Some(scan.table_name.clone()), name));
    // One aggregate per distinct (function, field), then a projection that builds each
    // wanted value (avg = Σsum / Σcount) under the original output name.
    let mut partial: Vec<(String, Expr)> = Vec::new();
    let mut partial_col = |key: String, make: &dyn Fn() -> Expr| -> Expr {
        if !partial.iter().any(|(k, _)| *k == key) {
            partial.push((key.clone(), make().alias(&key)));
        }
        Expr::Column(Column::new_unqualified(key))
    };
    let n_group = agg.group_expr.len();
    let mut outputs = Vec::new();
    for (i, w) in wanted.iter().enumerate() {
        let col = |a| q(rollup_column_name(&w.field, a));
        let key = |what: &str| format!("__strata_{what}_{}", w.field);
        // The first (last) non-null value of the earliest (latest) bucket that has one.
        let first_last = |a: RollupAgg| -> Result<Expr> {
            let udaf = if a == RollupAgg::First {
                first_value_udaf()
            } else {
                last_value_udaf()
            };
            udaf.call(vec![col(a)])
                .order_by(vec![q(TIME_COLUMN.to_string()).sort(true, false)])
                .null_treatment(NullTreatment::IgnoreNulls)
                .build()
        };
        let e = match w.func {
            "first" => {
                let e = first_last(RollupAgg::First)?;
                partial_col(key("first"), &|| e.clone())
            }
            "last" => {
                let e = first_last(RollupAgg::Last)?;
                partial_col(key("last"), &|| e.clone())
            }
            "min" => partial_col(key("min"), &|| min(col(RollupAgg::Min))),
            "max" => partial_col(key("max"), &|| max(col(RollupAgg::Max))),
            "sum" => partial_col(key("sum"), &|| sum(col(RollupAgg::Sum))),
            "count" => partial_col(key("count"), &|| sum(col(RollupAgg::Count))),
            // Sums cast before adding up, as `avg` of raw integers does per value.
            _ => {
                let total = partial_col(key("fsum"), &|| {
                    sum(cast(col(RollupAgg::Sum), DataType::Float64))
                });
                let n = partial_col(key("count"), &|| sum(col(RollupAgg::Count)));
                total / cast(nullif(n, lit(0i64)), DataType::Float64)
            }
        };
        let (qualifier, field) = agg.schema.qualified_field(n_group + i);
        outputs.push(e.alias_qualified(qualifier.cloned(), field.name()));
    }
    let aggregated = b
        .aggregate(
            agg.group_expr.clone(),
            partial.into_iter().map(|(_, e)| e).collect::<Vec<_>>(),
        )?
        .build()?;
    let mut exprs: Vec<Expr> = (0..n_group)
        .map(|i| {
            let (qualifier, field) = aggregated.schema().qualified_field(i);
            Expr::Column(Column::new(qualifier.cloned(), field.name()))
        })
        .collect();
    exprs.extend(outputs);
    let plan = LogicalPlanBuilder::from(aggregated)
        .project(exprs)?
        .build()?;
    Ok(Some(plan))
}

/// What planning and running one more scan (a branch of the union of tiers) costs, in ns.
const BRANCH_COST: f64 = 400_000.0;
/// What reading one more file costs beyond its rows: its readers, codecs and page reads.
const FILE_COST: f64 = 150_000.0;
/// Decoding a row of a kept page (or decoding it to skip it).
const DECODED_ROW_COST: f64 = 1.0;
/// Filtering and aggregating a selected row.
const SELECTED_ROW_COST: f64 = 20.0;

/// Whether reading the query's whole range from raw rows (one scan) is estimated to cost
/// less than the tiers' plan `per_tier` (a scan per tier). Files are sorted by series, so
/// a query of a few series reads a page or two of each file whatever its tier: the rollups'
/// fewer rows then save less than their extra files and scans cost, and raw rows win. A
/// query of every series over hours reads far more raw rows than rollup rows: rollups
/// win. Costs are calibrated on the TSBS queries (`benchmarks/`); see [`read_cost`].
fn raw_is_cheaper(
    snap: &TableSnapshot,
    cache: &FileMetadataCache,
    tags: &[TagFilter],
    per_tier: &[(Tier, Vec<(i64, i64)>)],
    range: TimeRange,
) -> bool {
    if per_tier.iter().all(|(t, _)| *t == Tier::Hot) {
        return false;
    }
    let cost = |tier: Tier, ranges: &[(i64, i64)]| {
        let mut e = ReadEstimate::default();
        // Files outside the ranges first, before looking up their metadata.
        let overlapping = snap
            .files
            .iter()
            .filter(|f| f.tier == tier && read_cost::overlaps(f, ranges));
        for f in overlapping {
            let meta = cached_metadata(f, cache);
            if let Some(x) = read_cost::estimate(f, meta.as_deref(), tags, ranges) {
                e.add(x);
            }
        }
        e.files as f64 * FILE_COST
            + e.decoded_rows * DECODED_ROW_COST
            + e.selected_rows * SELECTED_ROW_COST
    };
    let tiers: f64 = per_tier
        .iter()
        .map(|(tier, ranges)| BRANCH_COST + cost(*tier, ranges))
        .sum();
    let raw = BRANCH_COST + cost(Tier::Hot, &[(range.lo, range.end())]);
    raw < tiers
}

/// The conjuncts `tag = 'v'` and `tag IN ('v', …)` (either side, through casts) as
/// filters of the values a tag can take.
fn tag_filters(conjuncts: &[Expr]) -> Vec<TagFilter> {
    fn column(e: &Expr) -> Option<&str> {
        match e {
            Expr::Column(c) => Some(&c.name),
            Expr::Cast(c) => column(&c.expr),
            Expr::TryCast(c) => column(&c.expr),
            _ => None,
        }
    }
    fn text(e: &Expr) -> Option<String> {
        fn of(v: &ScalarValue) -> Option<String> {
            match v {
                ScalarValue::Utf8(Some(s))
                | ScalarValue::Utf8View(Some(s))
                | ScalarValue::LargeUtf8(Some(s)) => Some(s.clone()),
                ScalarValue::Dictionary(_, v) => of(v),
                _ => None,
            }
        }
        match e {
            Expr::Literal(v, _) => of(v),
            Expr::Cast(c) => text(&c.expr),
            _ => None,
        }
    }
    let mut out = Vec::new();
    for c in conjuncts {
        let found = match c {
            Expr::BinaryExpr(b) if b.op == Operator::Eq => {
                match (column(&b.left), column(&b.right)) {
                    (Some(col), None) => text(&b.right).map(|v| (col, vec![v])),
                    (None, Some(col)) => text(&b.left).map(|v| (col, vec![v])),
                    _ => None,
                }
            }
            Expr::InList(l) if !l.negated => column(&l.expr).and_then(|col| {
                let values: Option<Vec<String>> = l.list.iter().map(text).collect();
                values.map(|v| (col, v))
            }),
            _ => None,
        };
        if let Some((column, values)) = found {
            out.push(TagFilter {
                column: column.to_string(),
                values,
            });
        }
    }
    out
}

/// Whether the segment `[lo, hi)` of `tier` starts before the tier's oldest data while
/// another tier holds rows in that gap.
fn misses_older_data(snap: &TableSnapshot, tier: Tier, lo: i64, hi: i64, raw_from: i64) -> bool {
    let start = match tier {
        Tier::Hot => raw_from,
        t => snap
            .files
            .iter()
            .filter(|f| f.tier == t)
            .map(|f| f.chunk_start)
            .min()
            .unwrap_or(i64::MAX),
    };
    let gap_end = hi.min(start);
    lo < gap_end
        && snap
            .files
            .iter()
            .any(|f| f.tier != tier && f.min_time < gap_end && f.max_time >= lo)
}

/// The column references of `e` without their qualifier (the new scans are not `cpu`).
fn unqualify(e: &Expr) -> Expr {
    e.clone()
        .transform_up(|x| match x {
            Expr::Column(c) => Ok(Transformed::yes(Expr::Column(Column::new_unqualified(
                c.name,
            )))),
            other => Ok(Transformed::no(other)),
        })
        .map(|t| t.data)
        .unwrap_or_else(|_| e.clone())
}

/// `min|max|sum|count|avg(<numeric field>)`, plain, or
/// `first_value|last_value(<field> ORDER BY time [ASC|DESC]) IGNORE NULLS`.
fn wanted_aggregate(e: &Expr, snap: &TableSnapshot) -> Option<Wanted> {
    let e = match e {
        Expr::Alias(a) => a.expr.as_ref(),
        e => e,
    };
    let Expr::AggregateFunction(AggregateFunction { func, params }) = e else {
        return None;
    };
    if params.distinct || params.filter.is_some() || params.args.len() != 1 {
        return None;
    }
    let by_time = match params.order_by.as_slice() {
        [] => None,
        [o] if matches!(&o.expr, Expr::Column(c) if c.name == TIME_COLUMN) => Some(o.asc),
        _ => return None,
    };
    let ignore_nulls = params.null_treatment == Some(NullTreatment::IgnoreNulls);
    let func = match (func.name(), by_time) {
        ("min", None) => "min",
        ("max", None) => "max",
        ("sum", None) => "sum",
        ("count", None) => "count",
        ("avg", None) => "avg",
        ("first_value", Some(asc)) if ignore_nulls => {
            if asc {
                "first"
            } else {
                "last"
            }
        }
        ("last_value", Some(asc)) if ignore_nulls => {
            if asc {
                "last"
            } else {
                "first"
            }
        }
        _ => return None,
    };
    // `avg` of an integer field arrives as `avg(CAST(f AS Float64))`.
    let c = match &params.args[0] {
        Expr::Column(c) => c,
        Expr::Cast(cast) if func == "avg" && cast.field.data_type() == &DataType::Float64 => {
            match cast.expr.as_ref() {
                Expr::Column(c) => c,
                _ => return None,
            }
        }
        _ => return None,
    };
    let numeric = snap.columns.iter().any(|col| {
        col.name == c.name
            && matches!(
                col.kind,
                ColumnKind::Field(FieldType::Float | FieldType::Integer | FieldType::UInteger)
            )
    });
    let wanted = Wanted {
        func,
        field: c.name.clone(),
    };
    // The rollup columns must carry their usual names (a tag can take one).
    let rollup = rollup_fields(&snap.columns);
    let named = wanted.needs().iter().all(|a| {
        rollup
            .iter()
            .any(|f| f.field == c.name && f.agg == *a && f.name == rollup_column_name(&c.name, *a))
    });
    (named && (numeric || matches!(func, "first" | "last"))).then_some(wanted)
}

/// The granularity (ns) every bucket boundary of `e` is a multiple of, if `e` is a
/// time bucket: `date_bin(<fixed interval>, time[, <origin>])` or `date_trunc(<unit>,
/// time)`.
fn bucket_granularity(e: &Expr) -> Option<i64> {
    let Expr::ScalarFunction(f) = e else {
        return None;
    };
    let is_time = |x: &Expr| matches!(x, Expr::Column(c) if c.name == TIME_COLUMN);
    match (f.name(), f.args.as_slice()) {
        ("date_bin", [stride, t, rest @ ..]) if is_time(t) && rest.len() <= 1 => {
            let width = match stride {
                Expr::Literal(ScalarValue::IntervalMonthDayNano(Some(v)), _) if v.months == 0 => {
                    i64::from(v.days)
                        .checked_mul(DAY)?
                        .checked_add(v.nanoseconds)?
                }
                Expr::Literal(ScalarValue::IntervalDayTime(Some(v)), _) => i64::from(v.days)
                    .checked_mul(DAY)?
                    .checked_add(i64::from(v.milliseconds) * 1_000_000)?,
                _ => return None,
            };
            let origin = match rest.first() {
                None => 0,
                Some(Expr::Literal(ScalarValue::TimestampNanosecond(Some(o), None), _)) => *o,
                Some(_) => return None,
            };
            (width > 0).then(|| gcd(width, origin.rem_euclid(width).max(0)))
        }
        ("date_trunc", [unit, t]) if is_time(t) => {
            let Expr::Literal(ScalarValue::Utf8(Some(u)), _) = unit else {
                return None;
            };
            match u.to_ascii_lowercase().as_str() {
                "second" => Some(SECOND),
                "minute" => Some(60 * SECOND),
                "hour" => Some(3600 * SECOND),
                "day" | "week" | "month" | "quarter" | "year" => Some(DAY),
                _ => None,
            }
        }
        _ => None,
    }
}

fn gcd(a: i64, b: i64) -> i64 {
    if b == 0 { a } else { gcd(b, a % b) }
}

/// Cuts `range` into (tier, from, to) segments in time order. A rollup tier takes a
/// segment only where its buckets tile the query's buckets (`granularity` is a multiple
/// of its resolution), the segment's ends are on its bucket boundaries, it has rolled the
/// segment up, and none of it is dirty. The coarsest tier takes the middle; finer tiers
/// take the edges up to the coarser tier's boundaries; raw rows take what is left (an
/// edge finer than a minute, and the newest data not rolled up yet).
fn segments(snap: &TableSnapshot, granularity: i64, range: TimeRange) -> Vec<(Tier, i64, i64)> {
    let end = range.end();
    // What a tier cannot answer yet, in its buckets: its dirty buckets; for the cold
    // tier also the warm tier's (recomputed into cold a pass later); and data still in
    // memory (late points are marked dirty only when persisted).
    let dirty_of = |tier: Tier| {
        let res = tier.resolution_ns();
        let mut d = RangeSet::default();
        let mut add = |a: i64, b: i64| d.add(floor_to(a, res), ceil_to(b, res));
        let own = match tier {
            Tier::Warm => &snap.rollup.warm_dirty,
            _ => &snap.rollup.cold_dirty,
        };
        for &(a, b) in own.ranges() {
            add(a, b);
        }
        if tier == Tier::Cold {
            for &(a, b) in snap.rollup.warm_dirty.ranges() {
                add(a, b);
            }
        }
        for h in snap.hot.iter().filter(|h| h.rows > 0) {
            add(h.min_time, h.max_time.saturating_add(1));
        }
        d
    };
    let covers = |tier: Tier, a: i64, b: i64| {
        snap.rollup.done_to(tier).is_some_and(|d| d >= b)
            && !dirty_of(tier).ranges().iter().any(|&(x, y)| x < b && y > a)
    };
    // Usable rollup tiers, finest first.
    let tiers: Vec<Tier> = [Tier::Warm, Tier::Cold]
        .into_iter()
        .filter(|t| granularity % t.resolution_ns() == 0 && snap.rollup.done_to(*t).is_some())
        .collect();
    let mut out = Vec::new();
    let mut cursor = range.lo;
    let push = |out: &mut Vec<(Tier, i64, i64)>, tier: Tier, a: i64, b: i64| match out.last_mut() {
        Some(last) if last.0 == tier && last.2 == a => last.2 = b,
        _ => out.push((tier, a, b)),
    };
    // The leading edge: up to each coarser tier's next boundary, from the finer tier.
    let mut finer = Tier::Hot;
    for &tier in &tiers {
        if cursor != i64::MIN {
            let res = tier.resolution_ns();
            let aligned = cursor.div_euclid(res) * res;
            let next = if aligned == cursor {
                cursor
            } else {
                aligned.saturating_add(res)
            };
            let next = next.min(end);
            if next > cursor {
                // The finer tier up to its last whole bucket; raw rows for the rest.
                let fres = finer.resolution_ns();
                let fin_to = floor_to(next, fres);
                if finer != Tier::Hot
                    && cursor.rem_euclid(fres) == 0
                    && fin_to > cursor
                    && covers(finer, cursor, fin_to)
                {
                    push(&mut out, finer, cursor, fin_to);
                    cursor = fin_to;
                }
                if next > cursor {
                    push(&mut out, Tier::Hot, cursor, next);
                    cursor = next;
                }
            }
        }
        finer = tier;
    }
    // The middle from the coarsest tier, then the trailing edge from finer ones.
    for &tier in tiers.iter().rev() {
        let res = tier.resolution_ns();
        let Some(done) = snap.rollup.done_to(tier) else {
            continue;
        };
        let mut to = if end == i64::MAX {
            done
        } else {
            done.min(end.div_euclid(res) * res)
        };
        let dirty = dirty_of(tier);
        for &(a, b) in dirty.ranges() {
            if b > cursor && a < to {
                to = to.min(a.max(cursor));
            }
        }
        if to > cursor && (cursor == i64::MIN || cursor.rem_euclid(res) == 0) {
            push(&mut out, tier, cursor, to);
            cursor = to;
        }
    }
    if cursor < end {
        push(&mut out, Tier::Hot, cursor, end);
    }
    out
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::col;

    use super::*;

    fn found(e: Expr) -> Vec<(String, Vec<String>)> {
        tag_filters(&[e])
            .into_iter()
            .map(|t| (t.column, t.values))
            .collect()
    }

    #[test]
    fn tag_filters_are_equalities_and_in_lists_of_strings() {
        let dict = DataType::Dictionary(Box::new(DataType::Int32), Box::new(DataType::Utf8));
        let host = |v: &[&str]| {
            vec![(
                "host".to_string(),
                v.iter().map(|s| s.to_string()).collect(),
            )]
        };
        assert_eq!(found(col("host").eq(lit("a"))), host(&["a"]));
        assert_eq!(found(lit("a").eq(col("host"))), host(&["a"]));
        // As type coercion leaves them: the column cast, or the values.
        assert_eq!(
            found(cast(col("host"), DataType::Utf8).in_list(vec![lit("a"), lit("b")], false)),
            host(&["a", "b"])
        );
        let a = lit(ScalarValue::Dictionary(
            Box::new(DataType::Int32),
            Box::new(ScalarValue::Utf8(Some("a".into()))),
        ));
        assert_eq!(found(col("host").eq(a)), host(&["a"]));
        assert_eq!(found(col("host").eq(cast(lit("a"), dict))), host(&["a"]));
        // Anything else narrows nothing.
        assert!(found(col("host").not_eq(lit("a"))).is_empty());
        assert!(found(col("host").in_list(vec![lit("a")], true)).is_empty());
        assert!(found(col("host").in_list(vec![lit("a"), col("other")], false)).is_empty());
        assert!(found(col("host").eq(col("other"))).is_empty());
        assert!(found(col("n").eq(lit(1i64))).is_empty());
    }
}
