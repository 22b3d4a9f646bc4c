//! Parquet pruning under the metric table: the scan's time and tag filters reach the
//! Parquet reader, which skips row groups whose statistics rule them out.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, Int64Array, RecordBatch, StringArray};
use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

async fn collect(q: &QueryEngine, sql: &str) -> Vec<RecordBatch> {
    let (_, stream) = q.query("fleet", sql).await.expect("query");
    stream.try_collect().await.expect("batches")
}

/// `name=N total → M matched` from an `EXPLAIN ANALYZE` plan, summed over its scans.
fn pruning(plan: &str, name: &str) -> (usize, usize) {
    let mut sum = (0, 0);
    for part in plan.split(&format!("{name}=")).skip(1) {
        let numbers: Vec<usize> = part
            .split(',')
            .next()
            .unwrap_or("")
            .split(|c: char| !c.is_ascii_digit())
            .filter_map(|n| n.parse().ok())
            .collect();
        if let [total, matched] = numbers[..] {
            sum = (sum.0 + total, sum.1 + matched);
        }
    }
    sum
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn time_filters_skip_row_groups_of_a_persisted_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3_600_000_000_000i64;
    let mut config = EngineConfig::for_test(dir.path());
    config.chunk_duration = Duration::from_secs(6 * 3600);
    let (engine, _) = Engine::open(config, Arc::new(SystemClock))
        .await
        .expect("engine");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    // Two hosts every second for 6 hours: one file, one row group per 3-hour slice.
    let t0 = SystemClock.now_ns() / (6 * hour) * (6 * hour) - 12 * hour;
    let points: Vec<Point> = (0..6 * 3600i64)
        .flat_map(|i| {
            ["a", "b"].map(|host| Point {
                table: "cpu".into(),
                tags: vec![("host".into(), host.into())].into(),
                fields: vec![("usage".into(), FieldValue::I64(i % 100))],
                time: t0 + i * 1_000_000_000,
                line: 1,
            })
        })
        .collect();
    engine
        .write("fleet", points, WriteOptions::default())
        .await
        .expect("write");
    engine.persist(true).await.expect("persist");
    let from = chrono::DateTime::from_timestamp_nanos(t0 + 3 * hour + hour / 2)
        .format("%Y-%m-%dT%H:%M:%S")
        .to_string();
    let sql = format!("SELECT count(*) AS n FROM cpu WHERE time >= TIMESTAMP '{from}'");
    let batches = collect(&q, &sql).await;
    let n = batches[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("count")
        .value(0);
    assert_eq!(n, 2 * 9000, "2.5 hours of two hosts");
    let batches = collect(&q, &format!("EXPLAIN ANALYZE {sql}")).await;
    let plans = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("plan");
    let plan: String = (0..plans.len()).map(|i| plans.value(i)).collect();
    assert_eq!(
        pruning(&plan, "row_groups_pruned_statistics"),
        (2, 1),
        "the first slice's row group is skipped: {plan}"
    );
}
