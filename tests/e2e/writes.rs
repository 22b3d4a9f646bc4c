//! Bulk line-protocol ingest checked against values computed here, across a restart;
//! partial writes, conflicts, limits and the other write endpoints.

use std::collections::BTreeMap;
use std::io::Write;
use std::time::{SystemTime, UNIX_EPOCH};

use super::server::{Server, f64_of, i64_of};

const HOSTS: i64 = 100;
const STEPS: i64 = 10_000;
const SEC: i64 = 1_000_000_000;

fn usage(h: i64, i: i64) -> f64 {
    ((h * 31 + i * 17) % 1000) as f64 / 10.0
}

fn reqs(h: i64, i: i64) -> i64 {
    (h + i) % 50
}

fn now_ns() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_nanos() as i64
}

/// 1,000,000 points (100 hosts × 10,000 seconds), checked for count, per-host
/// min/max/avg/sum and 10-minute `date_bin` buckets, before and after a restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn million_points_aggregate_correctly_and_survive_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mut s = Server::start(dir.path(), &[]).await;
    // Bucket-aligned start, three hours ago: inside the hot tier's retention.
    let base = (now_ns() - 3 * 3600 * SEC) / (600 * SEC) * (600 * SEC);

    let mut bodies = Vec::new();
    let per_request = 1000; // steps per request → 100k lines
    for chunk in 0..(STEPS / per_request) {
        let mut body = String::with_capacity(6_000_000);
        for i in chunk * per_request..(chunk + 1) * per_request {
            for h in 0..HOSTS {
                body.push_str(&format!(
                    "cpu,host=host-{h:02},region={} usage={},reqs={}i {}\n",
                    if h % 2 == 0 { "eu" } else { "us" },
                    usage(h, i),
                    reqs(h, i),
                    base + i * SEC
                ));
            }
        }
        bodies.push(body);
    }
    let started = std::time::Instant::now();
    let mut handles = Vec::new();
    for group in bodies.chunks(3) {
        let group: Vec<String> = group.to_vec();
        let client = s.client.clone();
        let url = s.url("/api/v3/write_lp?db=bench&precision=ns");
        handles.push(tokio::spawn(async move {
            for body in group {
                let r = client.post(&url).body(body).send().await.expect("send");
                assert_eq!(
                    r.status().as_u16(),
                    204,
                    "{}",
                    r.text().await.unwrap_or_default()
                );
            }
        }));
    }
    for h in handles {
        h.await.expect("writer");
    }
    let elapsed = started.elapsed();
    eprintln!(
        "ingested 1,000,000 points in {:.2?} ({:.0} points/s, debug build)",
        elapsed,
        1e6 / elapsed.as_secs_f64()
    );

    verify(&s, base).await;
    s.stop();
    s.restart().await;
    verify(&s, base).await;

    // Rewriting a point replaces it (last write wins), it does not add a row.
    let r = s
        .write_lp(
            "bench",
            format!("cpu,host=host-07,region=us usage=-1 {}\n", base + 5 * SEC),
        )
        .await;
    assert_eq!(r.status().as_u16(), 204);
    let rows = s
        .query(
            "bench",
            "SELECT count(*) AS n, min(usage) AS lo FROM cpu WHERE host = 'host-07'",
        )
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), STEPS);
    assert_eq!(f64_of(&rows[0]["lo"]), -1.0);
    // Only `usage` was rewritten: `reqs` of that point keeps its value.
    let rows = s
        .query(
            "bench",
            &format!(
                "SELECT reqs FROM cpu WHERE host = 'host-07' AND time = arrow_cast({}, 'Timestamp(Nanosecond, None)')",
                base + 5 * SEC
            ),
        )
        .await;
    assert_eq!(i64_of(&rows[0]["reqs"]), reqs(7, 5));
}

async fn verify(s: &Server, base: i64) {
    let rows = s.query("bench", "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(i64_of(&rows[0]["n"]), HOSTS * STEPS);

    let rows = s
        .query(
            "bench",
            "SELECT host, min(usage) AS lo, max(usage) AS hi, avg(usage) AS mean, sum(reqs) AS total \
             FROM cpu GROUP BY host ORDER BY host",
        )
        .await;
    assert_eq!(rows.len(), HOSTS as usize);
    for (h, row) in rows.iter().enumerate() {
        let h = h as i64;
        let vals: Vec<f64> = (0..STEPS).map(|i| usage(h, i)).collect();
        let lo = vals.iter().copied().fold(f64::INFINITY, f64::min);
        let hi = vals.iter().copied().fold(f64::NEG_INFINITY, f64::max);
        let mean = vals.iter().sum::<f64>() / vals.len() as f64;
        let total: i64 = (0..STEPS).map(|i| reqs(h, i)).sum();
        assert_eq!(row["host"], format!("host-{h:02}"));
        assert_eq!(f64_of(&row["lo"]), lo);
        assert_eq!(f64_of(&row["hi"]), hi);
        assert!(
            (f64_of(&row["mean"]) - mean).abs() < 1e-9,
            "{row} vs {mean}"
        );
        assert_eq!(i64_of(&row["total"]), total);
    }

    let rows = s
        .query(
            "bench",
            "SELECT CAST(date_bin(INTERVAL '10 minutes', time) AS BIGINT) AS bucket, count(*) AS n, avg(usage) AS mean \
             FROM cpu WHERE region = 'eu' GROUP BY 1 ORDER BY 1",
        )
        .await;
    let mut expected: BTreeMap<i64, (i64, f64)> = BTreeMap::new();
    for h in (0..HOSTS).filter(|h| h % 2 == 0) {
        for i in 0..STEPS {
            let b = (base + i * SEC) / (600 * SEC) * (600 * SEC);
            let e = expected.entry(b).or_default();
            e.0 += 1;
            e.1 += usage(h, i);
        }
    }
    assert_eq!(rows.len(), expected.len());
    for (row, (b, (n, sum))) in rows.iter().zip(expected) {
        assert_eq!(i64_of(&row["bucket"]), b);
        assert_eq!(i64_of(&row["n"]), n);
        assert!((f64_of(&row["mean"]) - sum / n as f64).abs() < 1e-9);
    }
}

#[tokio::test]
async fn bad_lines_are_reported_and_good_ones_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let t = now_ns();
    let body = format!(
        "cpu,host=a v=1 {t}\ncpu,host=a\ncpu,host=b v=2 {t}\ncpu,host=c v=\"text\" {t}\nmem free=3i {t}\n"
    );
    let r = s.write_lp("metrics", body).await;
    assert_eq!(r.status().as_u16(), 400);
    let err: serde_json::Value = r.json().await.expect("json");
    assert_eq!(err["error"], "partial write of line protocol occurred");
    let data = err["data"].as_array().expect("data");
    assert_eq!(data.len(), 2, "{err}");
    assert_eq!(data[0]["line_number"], 2);
    assert_eq!(data[0]["original_line"], "cpu,host=a");
    assert_eq!(data[1]["line_number"], 4);
    assert!(
        data[1]["error_message"]
            .as_str()
            .expect("msg")
            .contains("field `v` is float in table `cpu`, got string"),
        "{err}"
    );
    let rows = s
        .query("metrics", "SELECT host, v FROM cpu ORDER BY host")
        .await;
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["host"], "b");
    let rows = s.query("metrics", "SELECT free FROM mem").await;
    assert_eq!(i64_of(&rows[0]["free"]), 3);

    // All-or-nothing: one bad line and nothing is written.
    let r = s
        .client
        .post(s.url("/api/v3/write_lp?db=metrics&accept_partial=false"))
        .body(format!("cpu,host=z v=5 {t}\ncpu,host=z v=oops {t}\n"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let rows = s
        .query("metrics", "SELECT count(*) AS n FROM cpu WHERE host = 'z'")
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), 0);
}

#[tokio::test]
async fn other_endpoints_formats_and_limits() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &["--max-body-size", "64KiB"]).await;
    let ms = now_ns() / 1_000_000;

    // Seed JSON, array and NDJSON, into the default database.
    let obj = |v: f64, host: &str| {
        format!(
            r#"{{"metric_name":"cpu_usage_percent","timestamp":{ms},"value":{v},"labels":{{"host":"{host}"}}}}"#
        )
    };
    let r = s
        .client
        .post(s.url("/api/v1/push"))
        .body(format!("[{},{}]", obj(75.5, "a"), obj(10.0, "b")))
        .send()
        .await
        .expect("send");
    assert_eq!(
        r.status().as_u16(),
        204,
        "{}",
        r.text().await.unwrap_or_default()
    );
    let r = s
        .client
        .post(s.url("/api/v1/push"))
        .body(format!("{}\n{}\n", obj(1.0, "c"), r#"{"metric_name":"x"}"#))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 400);
    let rows = s
        .query(
            "metrics",
            "SELECT host, value FROM cpu_usage_percent ORDER BY host",
        )
        .await;
    assert_eq!(rows.len(), 3);
    assert_eq!(f64_of(&rows[0]["value"]), 75.5);

    // v1 and v2 endpoints with precision, gzip body.
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    gz.write_all(format!("disk,dev=sda used=1i {}\n", ms / 1000).as_bytes())
        .expect("gz");
    let r = s
        .client
        .post(s.url("/write?db=other&precision=s"))
        .header("Content-Encoding", "gzip")
        .body(gz.finish().expect("gz"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 204);
    let r = s
        .client
        .post(s.url("/api/v2/write?bucket=other&precision=ms"))
        .body(format!("disk,dev=sdb used=2i {ms}\n"))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status().as_u16(), 204);
    let rows = s
        .query("other", "SELECT dev, used FROM disk ORDER BY dev")
        .await;
    assert_eq!(rows.len(), 2);
    // Cross-database reference.
    let rows = s
        .query("metrics", "SELECT count(*) AS n FROM other.public.disk")
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), 2);

    // Over the body limit: 413, clear message.
    let big = "x".repeat(70 * 1024);
    let r = s.write_lp("metrics", big).await;
    assert_eq!(r.status().as_u16(), 413);
    assert!(r.text().await.expect("body").contains("65536"));

    // Output formats.
    let (code, csv) = s
        .query_raw("other", "SELECT dev, used FROM disk ORDER BY dev", "csv")
        .await;
    assert_eq!(code, 200);
    assert_eq!(csv, "dev,used\nsda,1\nsdb,2\n");
    let (code, jsonl) = s
        .query_raw("other", "SELECT dev FROM disk ORDER BY dev", "jsonl")
        .await;
    assert_eq!(code, 200);
    assert_eq!(jsonl, "{\"dev\":\"sda\"}\n{\"dev\":\"sdb\"}\n");

    // Errors: unknown database 404; bad SQL 400; filesystem access refused.
    let (code, body) = s.query_raw("nope", "SELECT 1", "json").await;
    assert_eq!(code, 404, "{body}");
    let (code, body) = s.query_raw("other", "SELEC 1", "json").await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s
        .query_raw(
            "other",
            "CREATE EXTERNAL TABLE t STORED AS CSV LOCATION '/etc/passwd'",
            "json",
        )
        .await;
    assert_eq!(code, 400, "{body}");
    let (code, body) = s
        .query_raw("other", "COPY (SELECT 1) TO '/tmp/x.csv'", "json")
        .await;
    assert_eq!(code, 400, "{body}");

    // Introspection and self metrics.
    let rows = s.query("other", "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' AND table_catalog = 'other'").await;
    assert_eq!(rows.len(), 1);
    let rows = s
        .query("other", "SELECT table_name, hot_rows FROM system.tables")
        .await;
    assert_eq!(i64_of(&rows[0]["hot_rows"]), 2);
    let (code, explain) = s
        .query_raw("other", "EXPLAIN SELECT * FROM disk", "pretty")
        .await;
    assert_eq!(code, 200);
    assert!(explain.contains("TierScanExec: table=disk"), "{explain}");
    let metrics = s.metrics().await;
    assert!(metrics.contains("strata_points_written_total"), "{metrics}");
    assert!(metrics.contains("strata_wal_fsyncs_total"), "{metrics}");
}

/// The server runs with mimalloc's purge delay in its environment (it restarts itself
/// with it, in the same process, with the same arguments) and serves as usual.
#[tokio::test]
async fn the_server_keeps_freed_memory_for_the_allocators_purge_delay() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(&dir.path().join("data"), &[]).await;
    let want = std::env::var("MIMALLOC_PURGE_DELAY").unwrap_or_else(|_| "10000".into());
    let environ = std::fs::read(format!("/proc/{}/environ", s.pid())).expect("environ");
    let vars: Vec<&[u8]> = environ.split(|b| *b == 0).collect();
    let set = format!("MIMALLOC_PURGE_DELAY={want}");
    assert!(
        vars.contains(&set.as_bytes()),
        "{set} is not in the server's environment"
    );
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", s.pid())).expect("cmdline");
    let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
    assert_eq!(
        args.get(1).copied(),
        Some(&b"serve"[..]),
        "the same arguments"
    );
    let r = s
        .client
        .post(s.url("/api/v3/write_lp?db=m"))
        .body(format!("cpu,host=a v=1i {}", now_ns()))
        .send()
        .await
        .expect("write");
    assert_eq!(r.status(), 204);
}
