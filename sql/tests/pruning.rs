//! Parquet pruning under the metric table: the scan's time and tag filters reach the
//! Parquet reader, which skips row groups whose statistics rule them out, and the time
//! bounds select the rows of each file's time blocks that can hold matches.

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

/// An engine with chunks of `chunk_hours` over `dir`, and SQL over it.
async fn open(dir: &std::path::Path, chunk_hours: u64) -> (Arc<Engine>, QueryEngine) {
    let mut config = EngineConfig::for_test(dir);
    config.chunk_duration = Duration::from_secs(chunk_hours * 3600);
    let (engine, _) = Engine::open(config, Arc::new(SystemClock))
        .await
        .expect("engine");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    (engine, q)
}

/// The text of `EXPLAIN ANALYZE sql`.
async fn explain_analyze(q: &QueryEngine, sql: &str) -> String {
    let batches = collect(q, &format!("EXPLAIN ANALYZE {sql}")).await;
    let plans = batches[0]
        .column(1)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("plan");
    (0..plans.len()).map(|i| plans.value(i)).collect()
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
async fn time_filters_read_only_the_time_blocks_they_need() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3_600_000_000_000i64;
    let (engine, q) = open(dir.path(), 6).await;
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
    let plan = explain_analyze(&q, &sql).await;
    // The time blocks leave the first slice's row group out before its statistics are
    // looked at, and of the second read only the blocks from the bound on. (The scan's two
    // partitions share that row group's rows, so each looks at its statistics.)
    let (looked_at, matched) = pruning(&plan, "row_groups_pruned_statistics");
    assert!(
        looked_at == matched && (1..=2).contains(&looked_at),
        "the first slice's row group is skipped: {plan}"
    );
    let read = scan_rows(&plan);
    assert!(
        (18_000..=18_000 + 2 * 64).contains(&read),
        "{read} rows read: {plan}"
    );
}

/// Rows the plan's Parquet scans produced (`output_rows` of each `DataSourceExec`).
fn scan_rows(plan: &str) -> usize {
    plan.split("DataSourceExec")
        .skip(1)
        .map(|part| {
            let v = part
                .split("output_rows=")
                .nth(1)
                .and_then(|m| m.split(',').next())
                .unwrap_or("0");
            let (number, scale) = match v.split_once(' ') {
                Some((n, "K")) => (n, 1e3),
                Some((n, "M")) => (n, 1e6),
                _ => (v, 1.0),
            };
            (number.parse::<f64>().unwrap_or(f64::NAN) * scale).round() as usize
        })
        .sum()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_newest_seconds_of_a_slice_are_read_from_a_few_rows_of_each_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let hour = 3_600_000_000_000i64;
    let sec = 1_000_000_000i64;
    let (engine, q) = open(dir.path(), 3).await;
    // 100 hosts every 10 s for 3 hours: one slice, runs of 1080 points; host h's value
    // at step i is (i * 7 + h) % 1000.
    let t0 = SystemClock.now_ns() / (3 * hour) * (3 * hour) - 6 * hour;
    let value = |h: i64, i: i64| (i * 7 + h) % 1000;
    let points: Vec<Point> = (0..1080i64)
        .flat_map(|i| {
            (0..100i64).map(move |h| Point {
                table: "cpu".into(),
                tags: vec![("host".into(), format!("h{h:03}").into())].into(),
                fields: vec![("usage".into(), FieldValue::I64(value(h, i)))],
                time: t0 + i * 10 * sec,
                line: 1,
            })
        })
        .collect();
    engine
        .write("fleet", points, WriteOptions::default())
        .await
        .expect("write");
    engine.persist(true).await.expect("persist");
    let at = |ns: i64| {
        chrono::DateTime::from_timestamp_nanos(ns)
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    // Steps 720..=724 (2 hours in, 43 seconds), and steps 1000..=1001 as a second range.
    let (lo, hi) = (t0 + 2 * hour, t0 + 2 * hour + 43 * sec);
    let (lo2, hi2) = (t0 + 10_000 * sec, t0 + 10_015 * sec);
    let sql = format!(
        "SELECT count(*) AS n, max(usage) AS m, sum(usage) AS s FROM cpu \
         WHERE (time >= TIMESTAMP '{}' AND time < TIMESTAMP '{}') \
         OR (time >= TIMESTAMP '{}' AND time < TIMESTAMP '{}')",
        at(lo),
        at(hi),
        at(lo2),
        at(hi2)
    );
    let batches = collect(&q, &sql).await;
    let steps: Vec<i64> = (720..=724).chain(1000..=1001).collect();
    let expected: Vec<i64> = steps
        .iter()
        .flat_map(|&i| (0..100).map(move |h| value(h, i)))
        .collect();
    let column = |i: usize| {
        batches[0]
            .column(i)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("an integer")
            .value(0)
    };
    assert_eq!(column(0), expected.len() as i64);
    assert_eq!(column(1), *expected.iter().max().expect("rows"));
    assert_eq!(column(2), expected.iter().sum::<i64>());
    let plan = explain_analyze(&q, &sql).await;
    // Each range lies in one or two blocks of 64 rows of each of the 100 runs.
    let read = scan_rows(&plan);
    assert!(
        (700..=2 * 2 * 64 * 100).contains(&read),
        "{read} of 108,000 rows read: {plan}"
    );
}

/// Paths of every file the catalog lists.
fn registered(engine: &Engine) -> Vec<String> {
    engine
        .catalog_snapshot()
        .databases
        .values()
        .flat_map(|db| db.tables.values())
        .flat_map(|t| t.files.iter().map(|f| f.path.clone()))
        .collect()
}

/// Waits (at most 20 s) until metadata warming went through the catalog as it is now,
/// then lists the registered files whose metadata is not cached.
async fn cold_files(engine: &Engine, q: &QueryEngine) -> Vec<String> {
    let version = engine.catalog_snapshot().version;
    tokio::time::timeout(Duration::from_secs(20), q.metadata_warmed(version))
        .await
        .expect("warming went through the catalog");
    registered(engine)
        .into_iter()
        .filter(|p| !q.file_metadata_cached(p))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn registered_files_have_their_metadata_read_before_any_query() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = EngineConfig::for_test(dir.path());
    let (engine, _) = Engine::open(config, Arc::new(SystemClock))
        .await
        .expect("engine");
    let point = |host: &str, time: i64| Point {
        table: "cpu".into(),
        tags: vec![("host".into(), host.into())].into(),
        fields: vec![("usage".into(), FieldValue::I64(1))],
        time,
        line: 1,
    };
    let now = SystemClock.now_ns();
    engine
        .write(
            "fleet",
            vec![point("a", now - 3_600_000_000_000)],
            WriteOptions::default(),
        )
        .await
        .expect("write");
    engine.persist(true).await.expect("persist");
    assert_eq!(registered(&engine).len(), 1);
    // A file registered before the query engine started.
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    assert_eq!(
        cold_files(&engine, &q).await,
        Vec::<String>::new(),
        "warmed at start"
    );
    // And one registered while it runs.
    engine
        .write("fleet", vec![point("b", now)], WriteOptions::default())
        .await
        .expect("write");
    engine.persist(true).await.expect("persist");
    assert_eq!(registered(&engine).len(), 2);
    assert_eq!(
        cold_files(&engine, &q).await,
        Vec::<String>::new(),
        "a new file warmed"
    );
}
