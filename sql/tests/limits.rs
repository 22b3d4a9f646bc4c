//! Query limits give clear errors instead of running forever.

use std::sync::Arc;
use std::time::Duration;

use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{Error, QueryConfig, QueryEngine};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn long_query_is_cancelled_at_the_time_limit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
        .await
        .expect("engine");
    let p = Point {
        table: "t".into(),
        tags: vec![].into(),
        fields: vec![("v".into(), FieldValue::F64(1.0))],
        time: SystemClock.now_ns(),
        line: 1,
    };
    engine
        .write("metrics", vec![p], WriteOptions::default())
        .await
        .expect("write");
    let q = QueryEngine::new(
        engine,
        QueryConfig {
            timeout: Duration::from_millis(300),
            ..QueryConfig::default()
        },
    )
    .expect("query engine");
    let started = std::time::Instant::now();
    let result = async {
        let (_, stream) = q
            .query(
                "metrics",
                "SELECT count(*) FROM generate_series(1, 1000000000000)",
            )
            .await?;
        stream.try_collect::<Vec<_>>().await.map_err(Error::Query)
    }
    .await;
    let err = result.expect_err("must time out");
    assert!(err.to_string().contains("time limit of 300ms"), "{err}");
    assert!(started.elapsed() < Duration::from_secs(30));
    // The engine still answers.
    let (_, stream) = q
        .query("metrics", "SELECT count(*) AS n FROM t")
        .await
        .expect("query");
    let batches: Vec<_> = stream.try_collect().await.expect("collect");
    assert_eq!(batches[0].num_rows(), 1);
}
