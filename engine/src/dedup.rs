//! Last-write-wins on (series, time), field by field, as a DataFusion logical plan.
//!
//! Rows that may overlap (hot chunks, and files sharing a time chunk with other files or
//! with hot data) carry two ranking columns: `__seq` (the WAL sequence of the write; for a
//! persisted file, the file's `max_seq`) and `__row` (position within the write). The plan
//! groups by tags and `time` and keeps, for every field, the last non-null value in
//! (`__seq`, `__row`) order: a later write that sets only some fields leaves the others as
//! they were (InfluxDB semantics). Only tag and time predicates may be applied below this
//! step; a field predicate there could let a stale duplicate win.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, UInt32Array, UInt64Array, new_null_array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::functions_aggregate::first_last::last_value_udaf;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, cast};
use datafusion::prelude::{Expr, ident};
use strata_catalog::{ColumnDef, ColumnKind};

use crate::buffer::SeqBatch;
use crate::schema::{ROW_COLUMN, SEQ_COLUMN};

/// The table schema plus the two ranking columns.
pub fn ranked_schema(table: &SchemaRef) -> SchemaRef {
    let mut fields: Vec<Field> = table.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields.push(Field::new(SEQ_COLUMN, DataType::UInt64, false));
    fields.push(Field::new(ROW_COLUMN, DataType::UInt32, false));
    Arc::new(Schema::new(fields))
}

/// Pads a batch written with an older subset of the table's columns to the table schema.
pub fn to_table_schema(batch: &RecordBatch, table: &SchemaRef) -> Result<RecordBatch> {
    let n = batch.num_rows();
    let cols: Vec<ArrayRef> = table
        .fields()
        .iter()
        .map(|f| {
            batch
                .column_by_name(f.name())
                .cloned()
                .unwrap_or_else(|| new_null_array(f.data_type(), n))
        })
        .collect();
    Ok(RecordBatch::try_new(Arc::clone(table), cols)?)
}

/// Hot batches in the ranked schema, ready for [`dedup_plan`].
pub fn ranked_batches(batches: &[SeqBatch], table: &SchemaRef) -> Result<Vec<RecordBatch>> {
    let ranked = ranked_schema(table);
    batches
        .iter()
        .map(|sb| {
            let b = to_table_schema(&sb.batch, table)?;
            let n = b.num_rows();
            let mut cols = b.columns().to_vec();
            cols.push(Arc::new(UInt64Array::from(vec![sb.seq; n])));
            cols.push(Arc::new(UInt32Array::from_iter_values(0..n as u32)));
            Ok(RecordBatch::try_new(Arc::clone(&ranked), cols)?)
        })
        .collect()
}

/// Last-write-wins over `input`, whose rows have the table's columns plus `__seq` and
/// `__row`. The output has exactly the table's columns, in order, with the table's types.
pub fn dedup_plan(input: LogicalPlanBuilder, columns: &[ColumnDef]) -> Result<LogicalPlan> {
    let order = vec![
        ident(SEQ_COLUMN).sort(true, false),
        ident(ROW_COLUMN).sort(true, false),
    ];
    let group: Vec<Expr> = columns
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| ident(&c.name))
        .collect();
    let aggs: Vec<Expr> = columns
        .iter()
        .filter(|c| matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| {
            // One builder for ORDER BY and IGNORE NULLS: rebuilding an aggregate expression
            // with `ExprFunctionExt` resets the parts it is not given.
            last_value_udaf()
                .call(vec![ident(&c.name)])
                .order_by(order.clone())
                .null_treatment(NullTreatment::IgnoreNulls)
                .build()
                .map(|e| e.alias(&c.name))
        })
        .collect::<Result<_>>()?;
    let plan = input.aggregate(group, aggs)?.build()?;
    project_to_table(plan, columns)
}

/// Projects `plan` to the table's columns in order, casting where a step changed a type.
pub fn project_to_table(plan: LogicalPlan, columns: &[ColumnDef]) -> Result<LogicalPlan> {
    let schema = Arc::clone(plan.schema());
    let exprs: Vec<Expr> = columns
        .iter()
        .map(|c| {
            let want = crate::schema::arrow_field(c);
            let have = schema
                .field_with_unqualified_name(&c.name)
                .map(|f| f.data_type().clone())?;
            Ok(if &have == want.data_type() {
                ident(&c.name)
            } else {
                cast(ident(&c.name), want.data_type().clone()).alias(&c.name)
            })
        })
        .collect::<Result<_>>()?;
    LogicalPlanBuilder::from(plan).project(exprs)?.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::buffer::SeqBatch;
    use crate::schema::arrow_schema;
    use crate::write::{FieldValue, Point, build_batch};
    use arrow::util::pretty::pretty_format_batches;
    use datafusion::datasource::{MemTable, provider_as_source};
    use datafusion::prelude::SessionContext;
    use strata_catalog::FieldType;

    fn cols() -> Vec<ColumnDef> {
        crate::schema::test_columns(&[("a", FieldType::Integer), ("b", FieldType::Integer)])
    }

    fn batch(fields: Vec<(&str, i64)>, t: i64) -> RecordBatch {
        let p = Point {
            table: "m".into(),
            tags: vec![("host".into(), "x".into())],
            fields: fields
                .into_iter()
                .map(|(k, v)| (k.into(), FieldValue::I64(v)))
                .collect(),
            time: t,
            line: 1,
        };
        build_batch(&[&p], &cols()).expect("batch")
    }

    async fn run(batches: Vec<SeqBatch>) -> String {
        let schema = arrow_schema(&cols());
        let ranked = ranked_batches(&batches, &schema).expect("ranked");
        let mem = MemTable::try_new(ranked_schema(&schema), vec![ranked]).expect("mem");
        let scan =
            LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(mem)), None).expect("scan");
        let plan = dedup_plan(scan, &cols()).expect("plan");
        let out = SessionContext::new()
            .execute_logical_plan(plan)
            .await
            .expect("exec")
            .collect()
            .await
            .expect("collect");
        pretty_format_batches(&out).expect("fmt").to_string()
    }

    #[tokio::test]
    async fn later_write_wins_field_by_field() {
        let out = run(vec![
            SeqBatch {
                seq: 2,
                batch: batch(vec![("a", 20)], 5),
            },
            SeqBatch {
                seq: 1,
                batch: batch(vec![("a", 1), ("b", 2)], 5),
            },
            SeqBatch {
                seq: 3,
                batch: batch(vec![("b", 30)], 6),
            },
        ])
        .await;
        let expected = "\
+------+-------------------------------+----+----+
| host | time                          | a  | b  |
+------+-------------------------------+----+----+
| x    | 1970-01-01T00:00:00.000000005 | 20 | 2  |
| x    | 1970-01-01T00:00:00.000000006 |    | 30 |
+------+-------------------------------+----+----+";
        let mut lines: Vec<&str> = out.lines().collect();
        lines[3..5].sort();
        assert_eq!(lines.join("\n"), expected);
    }
}
