//! Queries "as of" a past moment, for backtesting alert rules: `now()` is that moment and
//! every metric table shows only rows with `time <= moment`, as a live query at that moment
//! would have seen them (the rule's own `time > now() - …` bound then selects the same
//! window). Rows written later for earlier times (late data) are visible, since what
//! arrived when is not kept. Only `now()` / `current_timestamp` are moved: `current_date`,
//! `current_time` and `today()` keep the real date, and system tables show the present.

use std::sync::Arc;

use arrow::datatypes::DataType;
use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::Transformed;
use datafusion::common::{Column, Result, ScalarValue};
use datafusion::logical_expr::{Expr, Filter, LogicalPlan, lit};
use datafusion::optimizer::AnalyzerRule;
use strata_engine::schema::TIME_COLUMN;

use crate::catalog::SYSTEM_SCHEMA;

/// Adds `time <= moment` above every scan of a table with a timestamp `time` column
/// (system tables excepted), in subqueries too.
#[derive(Debug)]
pub struct AsOfRule {
    moment_ns: i64,
}

impl AsOfRule {
    pub fn new(moment_ns: i64) -> Self {
        Self { moment_ns }
    }

    fn bound(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let LogicalPlan::TableScan(scan) = &node else {
            return Ok(Transformed::no(node));
        };
        if scan.table_name.schema() == Some(SYSTEM_SCHEMA) {
            return Ok(Transformed::no(node));
        }
        let Ok(field) = scan
            .projected_schema
            .field_with_unqualified_name(TIME_COLUMN)
        else {
            return Ok(Transformed::no(node));
        };
        let moment = match field.data_type() {
            DataType::Timestamp(unit, tz) => {
                let ns = self.moment_ns;
                let tz = tz.clone();
                match unit {
                    arrow::datatypes::TimeUnit::Nanosecond => {
                        ScalarValue::TimestampNanosecond(Some(ns), tz)
                    }
                    arrow::datatypes::TimeUnit::Microsecond => {
                        ScalarValue::TimestampMicrosecond(Some(ns.div_euclid(1_000)), tz)
                    }
                    arrow::datatypes::TimeUnit::Millisecond => {
                        ScalarValue::TimestampMillisecond(Some(ns.div_euclid(1_000_000)), tz)
                    }
                    arrow::datatypes::TimeUnit::Second => {
                        ScalarValue::TimestampSecond(Some(ns.div_euclid(1_000_000_000)), tz)
                    }
                }
            }
            _ => return Ok(Transformed::no(node)),
        };
        let time = Expr::Column(Column::new(Some(scan.table_name.clone()), TIME_COLUMN));
        let filter = Filter::try_new(time.lt_eq(lit(moment)), Arc::new(node))?;
        Ok(Transformed::yes(LogicalPlan::Filter(filter)))
    }
}

impl AnalyzerRule for AsOfRule {
    fn analyze(&self, plan: LogicalPlan, _: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|n| self.bound(n))
            .map(|t| t.data)
    }

    fn name(&self) -> &str {
        "strata_as_of"
    }
}
