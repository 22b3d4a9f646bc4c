//! Rollup tiers: per series and bucket, `min`, `max`, `sum`, `count`, `first`, `last` of
//! every numeric field (`first`, `last`, `count` of string and boolean fields).
//!
//! # Schema (`rollup_1m.<table>`, `rollup_1h.<table>`)
//! The table's tags, `time` (the bucket start), then for each field `f` in table order:
//! `f_min`, `f_max`, `f_sum`, `f_count`, `f_first`, `f_last`. `f_count` is `Int64`;
//! `f_sum` is `Float64`, `Int64` or `UInt64` as `f` is; the others have `f`'s type.
//! String and boolean fields have only `f_count`, `f_first`, `f_last`. `first` and `last`
//! are the first and last non-null values in time order within the bucket.
//!
//! # Files
//! The warm tier (1-minute buckets) is computed from raw data (persisted files and hot
//! chunks, after last-write-wins) one window (`EngineConfig::warm_window`, default an hour)
//! at a time; the cold tier (1-hour buckets) from the warm tier, one `cold_window` (a day)
//! at a time. Each file covers its window (`chunk_start..chunk_end`), is sorted by (tags,
//! time), and carries as `max_seq` the newest WAL sequence among its inputs. Late data
//! makes a range of buckets dirty; it is recomputed into a new file covering just that
//! range, which overlaps the older one and wins last-write-wins by its higher `max_seq`
//! (it was computed from a superset of the raw rows).

use datafusion::common::{Result, ScalarValue};
use datafusion::functions::expr_fn::date_bin;
use datafusion::functions_aggregate::expr_fn::{count, max, min, sum};
use datafusion::functions_aggregate::first_last::{first_value_udaf, last_value_udaf};
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, lit};
use datafusion::prelude::{Expr, ident};
use strata_catalog::{ColumnDef, ColumnKind, FieldType, Tier};

use crate::dedup::project_to_table;
use crate::schema::TIME_COLUMN;

/// The aggregates a rollup keeps of one field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RollupAgg {
    Min,
    Max,
    Sum,
    Count,
    First,
    Last,
}

impl RollupAgg {
    pub const ALL: [Self; 6] = [
        Self::Min,
        Self::Max,
        Self::Sum,
        Self::Count,
        Self::First,
        Self::Last,
    ];

    pub fn suffix(self) -> &'static str {
        match self {
            Self::Min => "min",
            Self::Max => "max",
            Self::Sum => "sum",
            Self::Count => "count",
            Self::First => "first",
            Self::Last => "last",
        }
    }

    /// Whether a field of type `t` has this aggregate.
    pub fn applies_to(self, t: FieldType) -> bool {
        match t {
            FieldType::Float | FieldType::Integer | FieldType::UInteger => true,
            FieldType::Boolean | FieldType::String => {
                matches!(self, Self::Count | Self::First | Self::Last)
            }
        }
    }

    /// The column type of this aggregate of a field of type `t`.
    pub fn output_type(self, t: FieldType) -> FieldType {
        match self {
            Self::Count => FieldType::Integer,
            _ => t,
        }
    }
}

/// The rollup column of `field`'s aggregate `agg`.
pub fn rollup_column_name(field: &str, agg: RollupAgg) -> String {
    format!("{field}_{}", agg.suffix())
}

/// One rollup column: `agg` of raw field `field` (of type `ty`), named `name`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RollupField {
    pub field: String,
    pub ty: FieldType,
    pub agg: RollupAgg,
    pub name: String,
}

/// The rollup columns of a raw table's fields, in table order. A name already taken (a
/// tag called `x_min`, or a field `x_min` next to a field `x`) is skipped: the tag or the
/// earlier column keeps it.
pub fn rollup_fields(raw: &[ColumnDef]) -> Vec<RollupField> {
    let mut taken: std::collections::HashSet<&str> = raw
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| c.name.as_str())
        .collect();
    let mut out: Vec<RollupField> = Vec::new();
    for c in raw {
        let ColumnKind::Field(ty) = c.kind else {
            continue;
        };
        for agg in RollupAgg::ALL.into_iter().filter(|a| a.applies_to(ty)) {
            let name = rollup_column_name(&c.name, agg);
            if taken.contains(name.as_str()) || out.iter().any(|o| o.name == name) {
                continue;
            }
            out.push(RollupField {
                field: c.name.clone(),
                ty,
                agg,
                name,
            });
        }
        taken.insert(c.name.as_str());
    }
    out
}

/// The columns of a rollup table of a raw table with `raw` columns (see the module docs):
/// tags and time in table order, then the rollup columns.
pub fn rollup_columns(raw: &[ColumnDef]) -> Vec<ColumnDef> {
    let mut out: Vec<ColumnDef> = raw
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
        .cloned()
        .collect();
    out.extend(rollup_fields(raw).into_iter().map(|f| ColumnDef {
        kind: ColumnKind::Field(f.agg.output_type(f.ty)),
        name: f.name,
    }));
    out
}

/// The columns a tier's files hold for a table with `raw` columns.
pub fn tier_columns(tier: Tier, raw: &[ColumnDef]) -> Vec<ColumnDef> {
    match tier {
        Tier::Hot => raw.to_vec(),
        Tier::Warm | Tier::Cold => rollup_columns(raw),
    }
}

/// `date_bin(<resolution>, time, epoch)`: the bucket start of `time` in `tier`.
pub fn bucket_expr(res_ns: i64) -> Expr {
    date_bin(
        lit(ScalarValue::new_interval_mdn(0, 0, res_ns)),
        ident(TIME_COLUMN),
        lit(ScalarValue::TimestampNanosecond(Some(0), None)),
    )
}

/// Aggregates `input` (rows of the tier below `tier`, in that tier's columns) into
/// `tier`'s buckets, sorted in [`crate::persist::file_order`], in `tier`'s columns for a table with `raw`
/// columns.
pub fn rollup_plan(input: LogicalPlan, raw: &[ColumnDef], tier: Tier) -> Result<LogicalPlan> {
    let from_raw = tier.source() == Some(Tier::Hot);
    let out_columns = rollup_columns(raw);
    let mut group: Vec<Expr> = raw
        .iter()
        .filter(|c| c.kind == ColumnKind::Tag)
        .map(|c| ident(&c.name))
        .collect();
    group.push(bucket_expr(tier.resolution_ns()).alias(TIME_COLUMN));
    let by_time = vec![ident(TIME_COLUMN).sort(true, false)];
    let mut aggs = Vec::new();
    for f in rollup_fields(raw) {
        // From raw rows aggregate the field; from a finer rollup, its own column.
        let arg = if from_raw {
            ident(&f.field)
        } else {
            ident(&f.name)
        };
        let e = match f.agg {
            RollupAgg::Min => min(arg),
            RollupAgg::Max => max(arg),
            RollupAgg::Sum => sum(arg),
            RollupAgg::Count if from_raw => count(arg),
            RollupAgg::Count => sum(arg),
            RollupAgg::First => first_value_udaf()
                .call(vec![arg])
                .order_by(by_time.clone())
                .null_treatment(NullTreatment::IgnoreNulls)
                .build()?,
            RollupAgg::Last => last_value_udaf()
                .call(vec![arg])
                .order_by(by_time.clone())
                .null_treatment(NullTreatment::IgnoreNulls)
                .build()?,
        };
        aggs.push(e.alias(f.name));
    }
    let plan = LogicalPlanBuilder::from(input)
        .aggregate(group, aggs)?
        .build()?;
    let plan = LogicalPlanBuilder::from(project_to_table(plan, &out_columns)?)
        .sort(crate::persist::file_order(tier, &out_columns))?
        .build()?;
    Ok(plan)
}

/// Rounds `t` down to a multiple of `step`.
pub fn floor_to(t: i64, step: i64) -> i64 {
    t.div_euclid(step) * step
}

/// Rounds `t` up to a multiple of `step`.
pub fn ceil_to(t: i64, step: i64) -> i64 {
    let f = floor_to(t, step);
    if f == t { t } else { f.saturating_add(step) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rollup_columns_follow_field_types() {
        let raw = vec![
            ColumnDef {
                name: "host".into(),
                kind: ColumnKind::Tag,
            },
            ColumnDef {
                name: "time".into(),
                kind: ColumnKind::Time,
            },
            ColumnDef {
                name: "usage".into(),
                kind: ColumnKind::Field(FieldType::Float),
            },
            ColumnDef {
                name: "state".into(),
                kind: ColumnKind::Field(FieldType::String),
            },
        ];
        let names: Vec<String> = rollup_columns(&raw)
            .iter()
            .map(|c| format!("{}:{:?}", c.name, c.kind))
            .collect();
        assert_eq!(
            names,
            [
                "host:Tag",
                "time:Time",
                "usage_min:Field(Float)",
                "usage_max:Field(Float)",
                "usage_sum:Field(Float)",
                "usage_count:Field(Integer)",
                "usage_first:Field(Float)",
                "usage_last:Field(Float)",
                "state_count:Field(Integer)",
                "state_first:Field(String)",
                "state_last:Field(String)",
            ]
        );
        assert_eq!(floor_to(-1, 10), -10);
        assert_eq!(ceil_to(11, 10), 20);
        assert_eq!(ceil_to(20, 10), 20);
    }
}
