//! The last-value cache through SQL: `DISTINCT ON (tags) … ORDER BY tags, time DESC` is
//! answered from the cache once it is warm, and every answer equals the same question
//! answered by a scan (the same query with a time predicate, which the cache never serves),
//! across newer points, same-time partial writes, late points and persistence.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

async fn rows(q: &QueryEngine, sql: &str) -> String {
    let (_, stream) = q.query("fleet", sql).await.expect("query");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    pretty_format_batches(&batches).expect("print").to_string()
}

async fn hits(q: &QueryEngine) -> (String, u64) {
    let (_, stream) = q
        .query("fleet", "SELECT state, hits FROM system.last_value_caches")
        .await
        .expect("query");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    let Some(b) = batches.iter().find(|b| b.num_rows() > 0) else {
        return ("none".into(), 0);
    };
    let state = b
        .column(0)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .expect("state")
        .value(0)
        .to_string();
    let hits = b
        .column(1)
        .as_any()
        .downcast_ref::<arrow::array::UInt64Array>()
        .expect("hits")
        .value(0);
    (state, hits)
}

fn point(host: &str, pool: &str, time: i64, fields: Vec<(&str, FieldValue)>) -> Point {
    Point {
        table: "cpu".into(),
        tags: vec![("host".into(), host.into()), ("pool".into(), pool.into())].into(),
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        time,
        line: 1,
    }
}

async fn write(e: &Engine, points: Vec<Point>) {
    e.write("fleet", points, WriteOptions::default())
        .await
        .expect("write");
}

/// The cached answer and the scanned answer of one question must be equal; returns the
/// cached one.
async fn same_as_scan(q: &QueryEngine, on: &str, filter: &str) -> String {
    let and = if filter.is_empty() {
        String::new()
    } else {
        format!("{filter} AND ")
    };
    let cached = format!(
        "SELECT DISTINCT ON ({on}) * FROM cpu {} ORDER BY {on}, time DESC",
        if filter.is_empty() {
            String::new()
        } else {
            format!("WHERE {filter}")
        }
    );
    let scanned = format!(
        "SELECT DISTINCT ON ({on}) * FROM cpu WHERE {and}time > TIMESTAMP '2000-01-01T00:00:00' \
         ORDER BY {on}, time DESC"
    );
    let (a, b) = (rows(q, &cached).await, rows(q, &scanned).await);
    assert_eq!(a, b, "cache and scan differ for {cached}");
    a
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn distinct_on_latest_row_comes_from_the_cache_and_equals_a_scan() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
        .await
        .expect("engine");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    let t0 = SystemClock.now_ns() / 1_000_000_000 * 1_000_000_000 - 3_600_000_000_000;
    let s = 1_000_000_000;
    let mut points = Vec::new();
    for i in 0..5 {
        for (host, pool) in [("a", "p1"), ("b", "p1"), ("c", "p2")] {
            if host == "c" && i > 2 {
                continue;
            }
            points.push(point(
                host,
                pool,
                t0 + i * s,
                vec![
                    ("usage", FieldValue::F64(i as f64 + host.len() as f64)),
                    ("cores", FieldValue::I64(4 + i)),
                ],
            ));
        }
    }
    write(&engine, points).await;

    // A table created by a write has its cache from its first row: no warm-up.
    let (state, before) = hits(&q).await;
    assert_eq!(state, "ready");
    let first = same_as_scan(&q, "host", "").await;
    assert!(first.contains("| a    | p1   |"), "{first}");
    assert_eq!(hits(&q).await.1, before + 1, "answered from the cache");
    let before = before + 1;

    // A newer point with one field: the row is replaced, the other field is null.
    write(
        &engine,
        vec![point(
            "a",
            "p1",
            t0 + 10 * s,
            vec![("usage", FieldValue::F64(99.0))],
        )],
    )
    .await;
    let newer = same_as_scan(&q, "host", "").await;
    assert!(newer.contains("99.0"), "{newer}");
    // The same time again with the other field: merged field by field.
    write(
        &engine,
        vec![point(
            "a",
            "p1",
            t0 + 10 * s,
            vec![("cores", FieldValue::I64(64))],
        )],
    )
    .await;
    let merged = same_as_scan(&q, "host", "").await;
    assert!(merged.contains("99.0") && merged.contains("64"), "{merged}");
    // A late point changes nothing; a new series appears; a new field column too.
    write(
        &engine,
        vec![
            point("b", "p1", t0, vec![("usage", FieldValue::F64(-1.0))]),
            point("d", "p2", t0 + s, vec![("load", FieldValue::F64(0.5))]),
        ],
    )
    .await;
    let later = same_as_scan(&q, "host", "").await;
    assert!(!later.contains("-1.0") && later.contains("| d "), "{later}");
    // Groups of series, with a tag predicate.
    same_as_scan(&q, "pool", "").await;
    same_as_scan(&q, "pool", "host <> 'a'").await;
    same_as_scan(&q, "pool, host", "host IN ('a', 'c')").await;

    // Persisted data: the cache is unchanged and still agrees.
    engine.persist(true).await.expect("persist");
    assert_eq!(same_as_scan(&q, "host", "").await, later);
    let (state, after) = hits(&q).await;
    assert_eq!(state, "ready");
    assert_eq!(after, before + 7, "{after} hits");

    // After a restart the table comes from the catalog and the WAL: the first query
    // starts the cache, is answered by a scan, and the warm-up read fills it.
    write(
        &engine,
        vec![point(
            "e",
            "p3",
            t0 + 2 * s,
            vec![("usage", FieldValue::F64(7.0))],
        )],
    )
    .await;
    let before_restart = same_as_scan(&q, "host", "").await;
    drop(q);
    engine.shutdown().await;
    drop(engine);
    let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
        .await
        .expect("engine reopened");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    assert_eq!(hits(&q).await.0, "none");
    assert_eq!(same_as_scan(&q, "host", "").await, before_restart);
    for _ in 0..200 {
        if hits(&q).await.0 == "ready" {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await; // polling the warm-up
    }
    let (state, warmed) = hits(&q).await;
    assert_eq!(state, "ready");
    assert_eq!(same_as_scan(&q, "host", "").await, before_restart);
    assert_eq!(
        hits(&q).await.1,
        warmed + 1,
        "answered from the warmed cache"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn other_shapes_are_not_served_from_the_cache() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
        .await
        .expect("engine");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    let t0 = SystemClock.now_ns() - 3_600_000_000_000;
    write(
        &engine,
        vec![
            point("a", "p1", t0, vec![("usage", FieldValue::F64(1.0))]),
            point("a", "p1", t0 + 1, vec![("usage", FieldValue::F64(2.0))]),
        ],
    )
    .await;
    // A field predicate, ascending time, a non-tag key: none may use the cache (which
    // the table has from its first write).
    for sql in [
        "SELECT DISTINCT ON (host) * FROM cpu WHERE usage < 2 ORDER BY host, time DESC",
        "SELECT DISTINCT ON (host) * FROM cpu ORDER BY host, time ASC",
        "SELECT DISTINCT ON (usage) * FROM cpu ORDER BY usage, time DESC",
    ] {
        let out = rows(&q, sql).await;
        assert!(out.contains("1.0"), "{sql}: {out}");
    }
    assert_eq!(hits(&q).await, ("ready".to_string(), 0));
}
