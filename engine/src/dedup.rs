//! Last-write-wins on (series, time), field by field, as a DataFusion logical plan.
//!
//! Rows that may overlap (hot chunks, and files sharing a time chunk with other files or
//! with hot data) carry two ranking columns: `__seq` (the WAL sequence of the write; for a
//! persisted file, the file's `max_seq`) and `__row` (position within the write). The plan
//! groups by tags and `time` and keeps, for every field, the last non-null value in
//! (`__seq`, `__row`) order: a later write that sets only some fields leaves the others as
//! they were (InfluxDB semantics). Only tag and time predicates may be applied below this
//! step; a field predicate there could let a stale duplicate win.
//!
//! Persistence, which sorts a whole chunk anyway, applies the same rule without an
//! aggregate: [`merge_sorted_runs`] folds each run of equal (series, time) rows of the
//! sorted chunk in one linear pass.

use std::ops::Range;
use std::sync::Arc;

use arrow::array::{Array, ArrayRef, RecordBatch, UInt32Array, UInt64Array, new_null_array};
use arrow::compute::kernels::partition::partition;
use arrow::compute::{concat_batches, take};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::Result;
use datafusion::functions_aggregate::first_last::last_value_udaf;
use datafusion::logical_expr::expr::NullTreatment;
use datafusion::logical_expr::{ExprFunctionExt, LogicalPlan, LogicalPlanBuilder, SortExpr, cast};
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

/// `order` then write order (`__seq`, `__row`): the sort of ranked rows that makes the
/// repeats of a point adjacent and oldest first, for [`merge_sorted_runs`] (when `order`
/// ends with the tags and `time`).
pub fn then_write_order(mut order: Vec<SortExpr>) -> Vec<SortExpr> {
    order.push(ident(SEQ_COLUMN).sort(true, false));
    order.push(ident(ROW_COLUMN).sort(true, false));
    order
}

/// Last-write-wins over `input`, whose rows have the table's columns plus `__seq` and
/// `__row`. The output has exactly the table's columns, in order, with the table's types.
pub fn dedup_plan(input: LogicalPlanBuilder, columns: &[ColumnDef]) -> Result<LogicalPlan> {
    let order = then_write_order(Vec::new());
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

/// Last-write-wins over `batches` (the ranked schema, sorted so that rows sharing (series,
/// time) are adjacent and in write order, by `__seq` then `__row`): one row per run of
/// such rows, holding for each field the run's last non-null value. The output has the
/// table's columns (`table`). Linear in the rows; without repeats it only drops the
/// ranking columns. A run that crosses from one batch into the next is carried over.
pub fn merge_sorted_runs(
    batches: Vec<RecordBatch>,
    columns: &[ColumnDef],
    table: &SchemaRef,
) -> Result<Vec<RecordBatch>> {
    let mut out = Vec::with_capacity(batches.len());
    let mut carried: Option<RecordBatch> = None;
    for b in batches {
        if b.num_rows() == 0 {
            continue;
        }
        let b = match carried.take() {
            Some(c) => concat_batches(&b.schema(), [&c, &b])?,
            None => b,
        };
        let runs = runs_of(&b, columns)?;
        // The last run may go on in the next batch.
        let tail = runs.last().map_or(0, |r| r.start);
        carried = Some(b.slice(tail, b.num_rows() - tail));
        if tail > 0 {
            out.push(merge_runs(&b, &runs[..runs.len() - 1], columns, table)?);
        }
    }
    if let Some(c) = carried {
        let runs = runs_of(&c, columns)?;
        out.push(merge_runs(&c, &runs, columns, table)?);
    }
    Ok(out)
}

/// The runs of rows of `batch` with equal tags and time.
fn runs_of(batch: &RecordBatch, columns: &[ColumnDef]) -> Result<Vec<Range<usize>>> {
    let keys: Vec<ArrayRef> = columns
        .iter()
        .filter(|c| !matches!(c.kind, ColumnKind::Field(_)))
        .map(|c| column_of(batch, c))
        .collect::<Result<_>>()?;
    Ok(if batch.num_rows() == 0 || keys.is_empty() {
        (0..batch.num_rows()).map(|i| i..i + 1).collect()
    } else {
        partition(&keys)?.ranges()
    })
}

/// One row per run of `batch` (`runs` cover its first rows, in order): tags and time of
/// the run, each field its last non-null value in the run.
fn merge_runs(
    batch: &RecordBatch,
    runs: &[Range<usize>],
    columns: &[ColumnDef],
    table: &SchemaRef,
) -> Result<RecordBatch> {
    let covered = runs.last().map_or(0, |r| r.end);
    let cols: Vec<ArrayRef> = if runs.len() == covered {
        columns
            .iter()
            .map(|c| Ok(column_of(batch, c)?.slice(0, covered)))
            .collect::<Result<_>>()?
    } else {
        let firsts = UInt32Array::from_iter_values(runs.iter().map(|r| r.start as u32));
        columns
            .iter()
            .map(|c| {
                let col = column_of(batch, c)?;
                if !matches!(c.kind, ColumnKind::Field(_)) {
                    return Ok(take(&col, &firsts, None)?);
                }
                let last = runs.iter().map(|r| {
                    let i = r.clone().rev().find(|&i| col.is_valid(i));
                    i.unwrap_or(r.end - 1) as u32
                });
                Ok(take(&col, &UInt32Array::from_iter_values(last), None)?)
            })
            .collect::<Result<_>>()?
    };
    Ok(RecordBatch::try_new(Arc::clone(table), cols)?)
}

fn column_of(batch: &RecordBatch, c: &ColumnDef) -> Result<ArrayRef> {
    batch.column_by_name(&c.name).cloned().ok_or_else(|| {
        datafusion::error::DataFusionError::Internal(format!(
            "column {} missing from the rows to deduplicate",
            c.name
        ))
    })
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
        rows(&[("x", fields, t)])
    }

    /// A point of a test: host, fields, time.
    type Row<'a> = (&'a str, Vec<(&'a str, i64)>, i64);

    /// One batch of points.
    fn rows(points: &[Row]) -> RecordBatch {
        let points: Vec<Point> = points
            .iter()
            .map(|(host, fields, t)| Point {
                table: "m".into(),
                tags: vec![("host".into(), (*host).into())].into(),
                fields: fields
                    .iter()
                    .map(|(k, v)| ((*k).into(), FieldValue::I64(*v)))
                    .collect(),
                time: *t,
                line: 1,
            })
            .collect();
        let refs: Vec<&Point> = points.iter().collect();
        build_batch(&refs, &cols()).expect("batch")
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

    /// Writes of several series with repeats (in one write and across writes, out of
    /// sequence order, partial fields, a run with no value for a field): the merge of
    /// sorted runs gives what the aggregate gives.
    #[tokio::test]
    async fn merging_sorted_runs_equals_the_aggregate() {
        let writes = vec![
            SeqBatch {
                seq: 4,
                batch: rows(&[
                    ("y", vec![("a", 40)], 1),
                    ("x", vec![("b", 41)], 2),
                    ("x", vec![("a", 42)], 2),
                ]),
            },
            SeqBatch {
                seq: 1,
                batch: rows(&[
                    ("x", vec![("a", 10), ("b", 11)], 2),
                    ("z", vec![("a", 12)], 9),
                    ("y", vec![("b", 13)], 1),
                    ("x", vec![("a", 14)], 1),
                ]),
            },
            SeqBatch {
                seq: 7,
                batch: rows(&[("y", vec![("a", 70)], 1), ("z", vec![("a", 71)], 3)]),
            },
        ];
        let schema = arrow_schema(&cols());
        let ranked = ranked_batches(&writes, &schema).expect("ranked");
        let scan = || {
            let mem = MemTable::try_new(ranked_schema(&schema), vec![ranked.clone()]);
            LogicalPlanBuilder::scan("t", provider_as_source(Arc::new(mem.expect("mem"))), None)
                .expect("scan")
        };
        let ctx = SessionContext::new();
        let collect = |plan: LogicalPlan| {
            let ctx = ctx.clone();
            async move {
                let df = ctx.execute_logical_plan(plan).await.expect("exec");
                df.collect().await.expect("collect")
            }
        };
        let by_series = |b: LogicalPlanBuilder, write_order: bool| {
            let mut order = vec![
                ident("host").sort(true, true),
                ident("time").sort(true, true),
            ];
            if write_order {
                order.push(ident(SEQ_COLUMN).sort(true, false));
                order.push(ident(ROW_COLUMN).sort(true, false));
            }
            b.sort(order).expect("sort").build().expect("plan")
        };
        let aggregated = dedup_plan(scan(), &cols()).expect("dedup");
        let expected = collect(by_series(LogicalPlanBuilder::from(aggregated), false)).await;
        let sorted = collect(by_series(scan(), true)).await;
        let sorted =
            arrow::compute::concat_batches(&ranked_schema(&schema), &sorted).expect("concat");
        let text = |b: &[RecordBatch]| pretty_format_batches(b).expect("fmt").to_string();
        // In one batch, and cut into batches of every size (runs cross the cuts).
        for size in 1..=sorted.num_rows() {
            let pieces: Vec<RecordBatch> = (0..sorted.num_rows())
                .step_by(size)
                .map(|at| sorted.slice(at, size.min(sorted.num_rows() - at)))
                .collect();
            let merged = merge_sorted_runs(pieces, &cols(), &schema).expect("merge");
            assert_eq!(text(&merged), text(&expected), "batches of {size} rows");
        }
        let want = "\
+------+-------------------------------+----+----+
| host | time                          | a  | b  |
+------+-------------------------------+----+----+
| x    | 1970-01-01T00:00:00.000000001 | 14 |    |
| x    | 1970-01-01T00:00:00.000000002 | 42 | 41 |
| y    | 1970-01-01T00:00:00.000000001 | 70 | 13 |
| z    | 1970-01-01T00:00:00.000000003 | 71 |    |
| z    | 1970-01-01T00:00:00.000000009 | 12 |    |
+------+-------------------------------+----+----+";
        assert_eq!(text(&expected), want);
    }
}
