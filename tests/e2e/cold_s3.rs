//! The cold tier on a real S3-API server (s3s-fs from `scripts/s3.sh`): upload (multipart
//! for large files), listing, reading back through SQL, deletion by retention, and an
//! outage of the store that delays the cold tier without losing data or blocking writes.
//! Time is an injected clock; the engine and query engine run in-process.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use strata_benchmarks::s3::{ACCESS_KEY, S3Server, SECRET_KEY};
use strata_catalog::Tier;
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;
const HOSTS: usize = 1000;
const PART: usize = 5 << 20;

fn day_of_points(day: i64) -> Vec<Point> {
    let mut out = Vec::new();
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ day as u64;
    for h in 0..HOSTS {
        let mut t = T0 + day * DAY;
        while t < T0 + (day + 1) * DAY {
            let fields = (0..10)
                .map(|f| {
                    x = x
                        .wrapping_mul(6364136223846793005)
                        .wrapping_add(1442695040888963407);
                    (
                        format!("f{f}").into(),
                        FieldValue::F64((x >> 40) as f64 / 64.0),
                    )
                })
                .collect();
            out.push(Point {
                table: "cpu".into(),
                tags: vec![("host".into(), format!("host_{h}").into())].into(),
                fields,
                time: t,
                line: 1,
            });
            t += 1200 * SEC;
        }
    }
    out
}

async fn rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, stream) = q.query("metrics", sql).await.expect(sql);
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    pretty_format_batches(&batches)
        .expect("print")
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

fn cold_files(e: &Engine) -> Vec<strata_catalog::ParquetFileMeta> {
    e.catalog_snapshot()
        .table("metrics", "cpu")
        .map(|t| {
            t.files
                .iter()
                .filter(|f| f.tier == Tier::Cold)
                .cloned()
                .collect()
        })
        .unwrap_or_default()
}

/// Parquet objects in the bucket's directory.
fn objects(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                objects(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

fn by_hour(from: i64, to: i64) -> String {
    let ts = |ns: i64| {
        let d = chrono::DateTime::from_timestamp(ns / SEC, 0).expect("time");
        format!("TIMESTAMP '{}'", d.format("%Y-%m-%dT%H:%M:%S"))
    };
    format!(
        "SELECT date_trunc('hour', time) AS h, max(f0) AS a, min(f3) AS b, avg(f9) AS c, \
         count(f5) AS n FROM cpu WHERE time >= {} AND time < {} GROUP BY 1 ORDER BY 1",
        ts(from),
        ts(to)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_tier_lives_on_s3_and_survives_an_outage() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s3 = S3Server::start(&dir.path().join("s3"), &dir.path().join("s3s.log"))
        .expect("start s3s-fs (scripts/s3.sh install)");
    let bucket_dir = s3.create_bucket("cold").expect("bucket");
    let store: Arc<dyn ObjectStore> = Arc::new(
        AmazonS3Builder::new()
            .with_endpoint(s3.endpoint())
            .with_bucket_name("cold")
            .with_region("us-east-1")
            .with_access_key_id(ACCESS_KEY)
            .with_secret_access_key(SECRET_KEY)
            .with_allow_http(true)
            .with_retry(object_store::RetryConfig {
                max_retries: 2,
                retry_timeout: Duration::from_secs(2),
                ..Default::default()
            })
            .build()
            .expect("s3 store"),
    );
    let clock = ManualClock::new(T0 + 2 * DAY + 2 * HOUR);
    let mut c = EngineConfig::for_test(dir.path().join("data"));
    c.persist_interval = Duration::from_secs(3600);
    c.rollup_interval = Duration::from_secs(3600);
    c.chunk_duration = Duration::from_secs(6 * 3600);
    c.warm_window = Duration::from_secs(6 * 3600);
    c.rollup_settle = Duration::from_secs(3600);
    c.cold_store = Some(store);
    c.upload_part_bytes = PART;
    let engine = Engine::open(c, Arc::clone(&clock) as _)
        .await
        .expect("open")
        .0;
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    let write = |day: i64| {
        let engine = Arc::clone(&engine);
        async move {
            let out = engine
                .write("metrics", day_of_points(day), WriteOptions::default())
                .await
                .expect("write");
            assert!(out.rejected.is_empty());
        }
    };

    // Two days, their raw answer, then the rollups: two cold files uploaded.
    write(0).await;
    write(1).await;
    engine.persist(true).await.expect("persist");
    let two_days = by_hour(T0, T0 + 2 * DAY);
    let raw = rows(&q, &two_days).await;
    assert_eq!(raw.len(), 48 + 4, "{raw:?}");
    engine.maintain_tiers().await.expect("maintain");
    let files = cold_files(&engine);
    assert_eq!(files.len(), 2, "{files:?}");
    assert_eq!(objects(&bucket_dir), 2);
    // Large enough to have gone up in parts.
    assert!(
        files.iter().all(|f| f.size_bytes as usize > PART),
        "{files:?}"
    );
    // Read back from S3: the planner answers hourly buckets from the cold tier.
    let plan = rows(&q, &format!("EXPLAIN {two_days}")).await.join("\n");
    assert!(plan.contains("tiers=[cold]"), "{plan}");
    assert_eq!(rows(&q, &two_days).await, raw);

    // An outage: writes go on, the warm tier goes on, the cold tier waits.
    s3.stop();
    clock.set(T0 + 3 * DAY + 2 * HOUR);
    write(2).await;
    engine
        .persist(true)
        .await
        .expect("persist during the outage");
    let third = by_hour(T0 + 2 * DAY, T0 + 3 * DAY);
    let raw_third = rows(&q, &third).await;
    assert!(
        engine.maintain_tiers().await.is_err(),
        "the cold upload must fail while the store is down"
    );
    assert_eq!(cold_files(&engine).len(), 2);
    s3.restart().expect("restart s3s-fs");
    engine
        .maintain_tiers()
        .await
        .expect("maintain after the outage");
    assert_eq!(cold_files(&engine).len(), 3);
    assert_eq!(objects(&bucket_dir), 3);
    let plan = rows(&q, &format!("EXPLAIN {third}")).await.join("\n");
    assert!(plan.contains("tiers=[cold]"), "{plan}");
    assert_eq!(rows(&q, &third).await, raw_third);

    // Retention: the cold tier keeps two days here; the older files leave the catalog at
    // once and the bucket after the grace period.
    let r = rows(
        &q,
        "ALTER DATABASE metrics SET RETENTION hot = '1d', warm = '2d', cold = '2d'",
    )
    .await;
    assert!(r.iter().any(|l| l.contains("cold")), "{r:?}");
    let report = engine.maintain_tiers().await.expect("maintain");
    assert!(report.files_expired >= 1, "{report:?}");
    assert_eq!(cold_files(&engine).len(), 2);
    assert_eq!(
        objects(&bucket_dir),
        3,
        "deleted only after the grace period"
    );
    clock.set(T0 + 3 * DAY + 2 * HOUR + 10 * 60 * SEC);
    let report = engine.maintain_tiers().await.expect("maintain");
    assert!(report.files_deleted >= 1, "{report:?}");
    assert_eq!(objects(&bucket_dir), 2);
}
