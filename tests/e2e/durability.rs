//! Acknowledged data survives `kill -9`, before and after persistence to Parquet.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::server::{Server, f64_of, i64_of};

const SEC: i64 = 1_000_000_000;

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn acknowledged_writes_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(dir.path(), &[]).await;
    let base = now_ns() - 3600 * SEC;
    // 8 concurrent writers, 25 requests each; every 204 is an acknowledgement.
    let mut handles = Vec::new();
    for w in 0..8i64 {
        let client = s.client.clone();
        let url = s.url("/api/v3/write_lp?db=d&precision=ns");
        handles.push(tokio::spawn(async move {
            let mut acked = 0;
            for r in 0..25i64 {
                let body: String = (0..200i64)
                    .map(|i| {
                        format!(
                            "m,w=w{w} v={} {}\n",
                            r * 1000 + i,
                            base + (r * 200 + i) * SEC
                        )
                    })
                    .collect();
                let resp = client.post(&url).body(body).send().await.expect("send");
                assert_eq!(resp.status().as_u16(), 204);
                acked += 200;
            }
            acked
        }));
    }
    let mut acked = 0;
    for h in handles {
        acked += h.await.expect("writer");
    }
    s.kill9();
    s.restart().await;
    let rows = s
        .query("d", "SELECT count(*) AS n, sum(v) AS total FROM m")
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), acked);
    let expected: i64 = 8
        * (0..25i64)
            .map(|r| (0..200i64).map(|i| r * 1000 + i).sum::<i64>())
            .sum::<i64>();
    assert_eq!(f64_of(&rows[0]["total"]), expected as f64);
}

async fn wait_until_persisted(s: &Server, db: &str, table: &str) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rows = s
            .query(
                db,
                &format!(
                    "SELECT hot_rows, parquet_files FROM system.tables WHERE table_name = '{table}'"
                ),
            )
            .await;
        if i64_of(&rows[0]["hot_rows"]) == 0 && i64_of(&rows[0]["parquet_files"]) > 0 {
            return;
        }
        assert!(Instant::now() < deadline, "nothing persisted: {rows:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Data persisted to Parquet, then updated late, then the process killed: after the
/// restart every point is there exactly once with its latest value.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn persisted_data_and_late_updates_survive_kill_9() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(
        dir.path(),
        &["--chunk-duration", "1m", "--persist-age", "1s"],
    )
    .await;
    let base = (now_ns() - 2 * 3600 * SEC) / (60 * SEC) * (60 * SEC);
    // 5 minutes × 10 hosts at 1 s: 3,000 points over 5 chunks.
    let body: String = (0..300i64)
        .flat_map(|i| {
            (0..10i64).map(move |h| format!("cpu,host=h{h} v={} {}\n", i, base + i * SEC))
        })
        .collect();
    assert_eq!(s.write_lp("db1", body).await.status().as_u16(), 204);
    wait_until_persisted(&s, "db1", "cpu").await;

    let rows = s
        .query("db1", "SELECT count(*) AS n, sum(v) AS total FROM cpu")
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), 3000);
    let files = s
        .query(
            "db1",
            "SELECT count(*) AS n, sum(row_count) AS r FROM system.parquet_files",
        )
        .await;
    assert_eq!(i64_of(&files[0]["n"]), 5);
    assert_eq!(i64_of(&files[0]["r"]), 3000);
    let (_, explain) = s
        .query_raw("db1", &format!("EXPLAIN SELECT * FROM cpu WHERE time >= arrow_cast({}, 'Timestamp(Nanosecond, None)')", base + 240 * SEC), "pretty")
        .await;
    assert!(explain.contains("files=1 of 5 (pruned 4"), "{explain}");

    // A late write into a persisted chunk: it must win over the file's value.
    let r = s
        .write_lp("db1", format!("cpu,host=h3 v=-5 {}\n", base + 10 * SEC))
        .await;
    assert_eq!(r.status().as_u16(), 204);
    let check = |rows: Vec<serde_json::Value>| {
        assert_eq!(i64_of(&rows[0]["n"]), 3000, "{rows:?}");
        assert_eq!(f64_of(&rows[0]["lo"]), -5.0);
    };
    check(
        s.query("db1", "SELECT count(*) AS n, min(v) AS lo FROM cpu")
            .await,
    );

    s.kill9();
    s.restart().await;
    check(
        s.query("db1", "SELECT count(*) AS n, min(v) AS lo FROM cpu")
            .await,
    );
    // Persist the late point too, restart again: still exactly once, still the latest.
    wait_until_persisted(&s, "db1", "cpu").await;
    check(
        s.query("db1", "SELECT count(*) AS n, min(v) AS lo FROM cpu")
            .await,
    );
    s.kill9();
    s.restart().await;
    check(
        s.query("db1", "SELECT count(*) AS n, min(v) AS lo FROM cpu")
            .await,
    );
    let rows = s
        .query("db1", "SELECT v FROM cpu WHERE host = 'h3' AND v < 0")
        .await;
    assert_eq!(rows.len(), 1);
}
