//! Newest-k-buckets queries (`… GROUP BY <bucket of time> ORDER BY 1 DESC LIMIT k`) run
//! over growing windows of the newest data; every answer must equal the first k rows of
//! the same query without `LIMIT` (which always runs as written).

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine, newest_buckets};

async fn text(q: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, stream) = q.query("fleet", sql).await.expect("query");
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    pretty_format_batches(&batches)
        .expect("print")
        .to_string()
        .lines()
        .filter(|l| l.starts_with("| ") && !l.contains("| m "))
        // Cells without the padding, which depends on the widest row.
        .map(|l| l.split('|').map(str::trim).collect::<Vec<_>>().join("|"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn newest_buckets_from_a_window_equal_the_full_answer() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut config = EngineConfig::for_test(dir.path());
    config.chunk_duration = std::time::Duration::from_secs(600);
    let (engine, _) = Engine::open(config, Arc::new(SystemClock))
        .await
        .expect("engine");
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    let s = 1_000_000_000i64;
    let hour = 3600 * s;
    let t0 = SystemClock.now_ns() / hour * hour - 3 * hour;
    // Two hosts every 7 s for 3 hours, with no data from 1:00 to 1:40.
    let mut points = Vec::new();
    let mut t = t0;
    let mut i = 0i64;
    while t < t0 + 3 * hour {
        if !(t0 + hour..t0 + hour + 40 * 60 * s).contains(&t) {
            for host in ["a", "b"] {
                points.push(Point {
                    table: "cpu".into(),
                    tags: vec![("host".into(), host.into())].into(),
                    fields: vec![("usage".into(), FieldValue::F64(((i * 37) % 101) as f64))],
                    time: t,
                    line: 1,
                });
            }
        }
        t += 7 * s;
        i += 1;
    }
    engine
        .write("fleet", points, WriteOptions::default())
        .await
        .expect("write");
    // Most of it persisted, the newest hour hot: both kinds of source are windowed.
    engine.persist(true).await.expect("persist");
    let ts = |ns: i64| {
        chrono::DateTime::from_timestamp(ns / s, 0)
            .expect("time")
            .format("%Y-%m-%dT%H:%M:%S")
            .to_string()
    };
    let cases = [
        // Right after the gap: the window must grow past 40 empty minutes.
        (
            format!(
                "SELECT date_trunc('minute', time) AS minute, max(usage) AS m FROM cpu \
                 WHERE time < TIMESTAMP '{}' GROUP BY 1 ORDER BY 1 DESC",
                ts(t0 + hour + 42 * 60 * s)
            ),
            5,
            true,
        ),
        (
            "SELECT date_bin(INTERVAL '5 minutes', time) AS b, avg(usage) AS m FROM cpu \
             WHERE host = 'a' GROUP BY 1 ORDER BY 1 DESC"
                .to_string(),
            3,
            true,
        ),
        // A bound inside a minute: the newest bucket is partial.
        (
            format!(
                "SELECT date_trunc('minute', time) AS minute, max(usage) AS m FROM cpu \
                 WHERE time < TIMESTAMP '{}' GROUP BY 1 ORDER BY 1 DESC",
                ts(t0 + 2 * hour + 17 * 60 * s + 23 * s)
            ),
            5,
            true,
        ),
        // Bins from an origin off the epoch's multiples: windows cannot start on a bin.
        (
            format!(
                "SELECT date_bin(INTERVAL '10 minutes', time, TIMESTAMP '2000-01-01 00:03:00') \
                 AS b, min(usage) AS m FROM cpu WHERE time <= TIMESTAMP '{}' \
                 GROUP BY 1 ORDER BY 1 DESC",
                ts(t0 + 2 * hour + 50 * 60 * s + 41 * s)
            ),
            4,
            true,
        ),
        (
            "SELECT date_trunc('hour', time) AS h, count(*) AS m FROM cpu GROUP BY 1 ORDER BY h DESC"
                .to_string(),
            1,
            true,
        ),
        // A lower bound leaving fewer than k buckets: the window stops at the query's own
        // bound, and its answer is the query's (not grown until it reaches the oldest data).
        (
            format!(
                "SELECT date_trunc('minute', time) AS minute, max(usage) AS m FROM cpu \
                 WHERE time >= TIMESTAMP '{}' AND time < TIMESTAMP '{}' \
                 GROUP BY 1 ORDER BY 1 DESC",
                ts(t0 + 2 * hour + 10 * 60 * s + 30 * s),
                ts(t0 + 2 * hour + 12 * 60 * s + 43 * s)
            ),
            5,
            true,
        ),
        // More buckets than exist: no window is enough, the query runs as written.
        (
            "SELECT date_trunc('hour', time) AS h, min(usage) AS m FROM cpu GROUP BY 1 ORDER BY 1 DESC"
                .to_string(),
            10,
            false,
        ),
    ];
    let check = async |cases: &[(String, usize, bool)]| {
        for (sql, k, windowed) in cases {
            let limited = format!("{sql} LIMIT {k}");
            let full = text(&q, sql).await;
            let want: Vec<String> = full.into_iter().take(*k).collect();
            assert_eq!(text(&q, &limited).await, want, "{limited}");

            let ctx = q.session("fleet").expect("session");
            let df = ctx.sql(&limited).await.expect("plan");
            let plan = newest_buckets::analyze(&ctx.state(), df.logical_plan()).expect("analyze");
            let shape = newest_buckets::shape(&plan).expect("a newest-buckets query");
            let answer = newest_buckets::run(&ctx, &plan, &shape).await.expect("run");
            assert_eq!(answer.is_some(), *windowed, "{limited}");
        }
    };
    check(&cases).await;
    // With the older hours rolled up, tier choice could answer these from rollups over
    // all time; they are still windowed (each window reading the coarsest exact tier).
    engine.maintain_tiers().await.expect("maintain");
    let tiers = text(&q, "SELECT tier, files > 0 AS has FROM system.tiers").await;
    assert!(
        tiers
            .iter()
            .any(|l| l.contains("warm") && l.contains("true")),
        "{tiers:?}"
    );
    check(&cases).await;

    // Not this shape: ascending, or a second grouping key.
    for sql in [
        "SELECT date_trunc('minute', time) AS m, max(usage) FROM cpu GROUP BY 1 ORDER BY 1 LIMIT 5",
        "SELECT date_trunc('minute', time) AS m, host, max(usage) FROM cpu GROUP BY 1, 2 ORDER BY 1 DESC LIMIT 5",
    ] {
        let ctx = q.session("fleet").expect("session");
        let df = ctx.sql(sql).await.expect("plan");
        let plan = newest_buckets::analyze(&ctx.state(), df.logical_plan()).expect("analyze");
        assert!(newest_buckets::shape(&plan).is_none(), "{sql}");
    }
}
