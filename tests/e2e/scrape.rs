//! Collection from real Prometheus programs: Strata scrapes Debian's unmodified
//! `prometheus-node-exporter`, and Debian's `prometheus` server remote-writes to Strata
//! while scraping the same exporter; the samples are compared between Prometheus' HTTP
//! API and Strata's SQL. `scripts/test.sh` installs both packages; `STRATA_NODE_EXPORTER`
//! and `STRATA_PROMETHEUS` override the binaries. Waits poll with a deadline.

use std::net::TcpListener;
use std::path::Path;
use std::process::{Child, Command, Stdio};

use serde_json::Value;
use strata_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

use super::server::{Server, f64_of, i64_of, poll_until};

/// A child process killed when the test ends.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port()
}

fn program(env: &str, default: &str) -> String {
    std::env::var(env).unwrap_or_else(|_| default.to_string())
}

/// Starts node_exporter on a free port; returns it and its `host:port`.
async fn node_exporter(dir: &Path) -> (Proc, String) {
    let port = free_port();
    let addr = format!("127.0.0.1:{port}");
    let bin = program("STRATA_NODE_EXPORTER", "prometheus-node-exporter");
    let child = Command::new(&bin)
        .arg(format!("--web.listen-address={addr}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.join("node_exporter.log")).expect("log"))
        .spawn()
        .unwrap_or_else(|e| {
            panic!("could not start `{bin}` ({e}): run scripts/test.sh, which installs Debian's prometheus-node-exporter")
        });
    let proc = Proc(child);
    let url = format!("http://{addr}/metrics");
    poll_until(30, "node_exporter to serve /metrics", || async {
        reqwest::get(&url)
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;
    (proc, addr)
}

async fn start_with_config(dir: &Path, config: &str) -> Server {
    let path = dir.join("strata.toml");
    std::fs::write(&path, config).expect("config");
    let data = dir.join("data");
    Server::start(&data, &["--config", path.to_str().expect("utf-8 path")]).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scrapes_node_exporter_with_health_series_relabelling_and_target_files() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_exporter, node) = node_exporter(dir.path()).await;
    let dead = format!("127.0.0.1:{}", free_port());
    let targets = dir.path().join("targets.json");
    std::fs::write(
        &targets,
        format!(r#"[{{"targets": ["{node}"], "labels": {{"rack": "r1"}}}}]"#),
    )
    .expect("targets file");
    let s = start_with_config(
        dir.path(),
        &format!(
            r#"
[[scrape]]
job = "node"
targets = ["{node}", "{dead}"]
interval = "2s"
timeout = "2s"
labels = {{ pool = "p1" }}
[[scrape.metric_relabel]]
action = "drop"
source_labels = ["__name__"]
regex = "go_.*"

[[scrape]]
job = "files"
files = ["targets.json"]
interval = "2s"
file_refresh = "200ms"
"#
        ),
    )
    .await;

    let health = |job: &'static str, instance: String| {
        let sql = format!(
            "SELECT health FROM system.scrape_targets WHERE job = '{job}' AND instance = '{instance}'"
        );
        let s = &s;
        async move {
            s.try_query("metrics", &sql).await.and_then(|r| {
                r.first()
                    .and_then(|x| x["health"].as_str().map(String::from))
            })
        }
    };
    poll_until(60, "every target scraped", || async {
        health("node", node.clone()).await.as_deref() == Some("up")
            && health("node", dead.clone()).await.as_deref() == Some("down")
            && health("files", node.clone()).await.as_deref() == Some("up")
    })
    .await;
    let up = s
        .query(
            "metrics",
            "SELECT instance, pool, max(value) AS hi FROM up \
             WHERE job = 'node' GROUP BY instance, pool ORDER BY instance",
        )
        .await;
    let by_instance = |addr: &str| {
        up.iter()
            .find(|r| r["instance"] == addr)
            .unwrap_or_else(|| panic!("no `up` for {addr}: {up:?}"))
            .clone()
    };
    let live = by_instance(&node);
    assert_eq!(f64_of(&live["hi"]), 1.0);
    assert_eq!(live["pool"], "p1");
    let gone = by_instance(&dead);
    assert_eq!(f64_of(&gone["hi"]), 0.0);

    // The exporter's own series, with its labels and the target's.
    let cpu = s
        .query(
            "metrics",
            &format!(
                "SELECT cpu, mode, job, instance, pool, value FROM node_cpu_seconds_total \
                 WHERE job = 'node' AND instance = '{node}' AND mode = 'idle'"
            ),
        )
        .await;
    assert!(!cpu.is_empty(), "no node_cpu_seconds_total rows");
    assert!(
        cpu.iter()
            .all(|r| r["cpu"].is_string() && f64_of(&r["value"]) > 0.0)
    );
    for health in [
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
    ] {
        let rows = s
            .query(
                "metrics",
                &format!("SELECT max(value) AS v FROM {health} WHERE job = 'node' AND instance = '{node}'"),
            )
            .await;
        assert!(f64_of(&rows[0]["v"]) > 0.0, "{health}: {rows:?}");
    }
    // Labels from the target file.
    let racks = s
        .query(
            "metrics",
            "SELECT DISTINCT rack FROM up WHERE job = 'files'",
        )
        .await;
    assert_eq!(racks.len(), 1, "{racks:?}");
    assert_eq!(racks[0]["rack"], "r1");

    // metric_relabel dropped go_* for job `node`; the `files` job keeps them.
    let go = s
        .query(
            "metrics",
            "SELECT job, count(*) AS n FROM go_goroutines GROUP BY job ORDER BY job",
        )
        .await;
    let jobs: Vec<&str> = go.iter().filter_map(|r| r["job"].as_str()).collect();
    assert_eq!(jobs, ["files"], "{go:?}");
    // system.scrape_targets: health, error, duration, source.
    let rows = s
        .query(
            "metrics",
            "SELECT job, instance, health, last_error, last_duration_seconds, source, scrapes \
             FROM system.scrape_targets ORDER BY job, instance",
        )
        .await;
    assert_eq!(rows.len(), 3, "{rows:?}");
    let row = |job: &str, inst: &str| {
        rows.iter()
            .find(|r| r["job"] == job && r["instance"] == inst)
            .unwrap_or_else(|| panic!("no target {job}/{inst}: {rows:?}"))
    };
    let dead_row = row("node", &dead);
    assert_eq!(dead_row["health"], "down");
    let err = dead_row["last_error"]
        .as_str()
        .unwrap_or("")
        .to_ascii_lowercase();
    assert!(err.contains("refused"), "last_error: {err}");
    let live_row = row("node", &node);
    assert_eq!(live_row["health"], "up");
    assert!(live_row["last_error"].is_null(), "{live_row:?}");
    assert!(f64_of(&live_row["last_duration_seconds"]) > 0.0);
    assert!(i64_of(&live_row["scrapes"]) >= 1);
    let file_row = row("files", &node);
    assert!(
        file_row["source"]
            .as_str()
            .is_some_and(|p| p.ends_with("targets.json"))
    );

    // Emptying the target file stops its target.
    let next = dir.path().join("targets.json.new");
    std::fs::write(&next, "[]").expect("new targets");
    std::fs::rename(&next, &targets).expect("replace targets");
    poll_until(30, "the file target to go away", || async {
        s.query(
            "metrics",
            "SELECT job FROM system.scrape_targets WHERE job = 'files'",
        )
        .await
        .is_empty()
    })
    .await;

    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("strata_ingest_points_total")
                && l.contains("path=\"scrape\"")
                && l.contains("outcome=\"accepted\"")),
        "no scrape counter in /metrics"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_answers_with_the_codes_senders_expect() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64;
    let series = |name: &str, labels: &[(&str, &str)], value: f64, age_ms: i64| TimeSeries {
        labels: std::iter::once(("__name__", name))
            .chain(labels.iter().copied())
            .map(|(n, v)| Label {
                name: n.into(),
                value: v.into(),
            })
            .collect(),
        samples: vec![Sample {
            value,
            timestamp: now_ms - age_ms,
        }],
        histograms: vec![],
    };
    let post = |body: Vec<u8>, content_type: &'static str| {
        let client = s.client.clone();
        let url = s.url("/api/v1/write?db=rw");
        async move {
            let r = client
                .post(url)
                .header("Content-Type", content_type)
                .header("Content-Encoding", "snappy")
                .header("X-Prometheus-Remote-Write-Version", "0.1.0")
                .body(body)
                .send()
                .await
                .expect("request");
            (r.status().as_u16(), r.text().await.expect("body"))
        }
    };
    let ok = encode(&WriteRequest {
        timeseries: vec![series("temp", &[("room", "a")], 21.5, 0)],
    });
    assert_eq!(
        post(ok, "application/x-protobuf").await,
        (204, String::new())
    );
    let rows = s.query("rw", "SELECT room, value FROM temp").await;
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0]["room"].as_str(), f64_of(&rows[0]["value"])),
        (Some("a"), 21.5)
    );

    // A series the store refuses (older than the hot tier's retention) is a permanent
    // error; the other series of the request are stored.
    let mixed = encode(&WriteRequest {
        timeseries: vec![
            series("temp", &[("room", "old")], 1.0, 30 * 86_400_000),
            series("temp", &[("room", "b")], 19.0, 0),
        ],
    });
    let (status, body) = post(mixed, "application/x-protobuf").await;
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("series 1"), "{body}");
    let rows = s.query("rw", "SELECT room FROM temp ORDER BY room").await;
    assert_eq!(rows.len(), 2, "the valid series was stored: {rows:?}");

    let (status, body) = post(b"not snappy at all".to_vec(), "application/x-protobuf").await;
    assert_eq!(status, 400);
    assert!(body.contains("snappy"), "{body}");
    let (status, body) = post(
        encode(&WriteRequest::default()),
        "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    )
    .await;
    assert_eq!(status, 415, "{body}");
    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("path=\"remote_write\"") && l.contains("outcome=\"accepted\""))
    );
}

/// Prometheus' HTTP API: one query's `data.result`; `None` while it is not answering.
async fn try_prom_query(base: &str, query: &str, time: f64) -> Option<Vec<Value>> {
    let r: Value = reqwest::Client::new()
        .get(format!("{base}/api/v1/query"))
        .query(&[("query", query), ("time", &format!("{time:.3}"))])
        .send()
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    assert_eq!(r["status"], "success", "{r}");
    r["data"]["result"].as_array().cloned()
}

async fn prom_query(base: &str, query: &str, time: f64) -> Vec<Value> {
    try_prom_query(base, query, time)
        .await
        .unwrap_or_else(|| panic!("Prometheus did not answer {query}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn prometheus_remote_write_matches_what_prometheus_stored() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_exporter, node) = node_exporter(dir.path()).await;
    let s = Server::start(&dir.path().join("data"), &[]).await;
    let prom_port = free_port();
    let config = dir.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n\
             scrape_configs:\n  - job_name: node\n    static_configs:\n      - targets: ['{node}']\n\
             remote_write:\n  - url: http://{}/api/v1/write?db=prom\n    queue_config:\n      batch_send_deadline: 500ms\n",
            s.http
        ),
    )
    .expect("prometheus config");
    let bin = program("STRATA_PROMETHEUS", "prometheus");
    let child = Command::new(&bin)
        .arg(format!("--config.file={}", config.display()))
        .arg(format!("--storage.tsdb.path={}", dir.path().join("tsdb").display()))
        .arg(format!("--web.listen-address=127.0.0.1:{prom_port}"))
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(dir.path().join("prometheus.log")).expect("log"))
        .spawn()
        .unwrap_or_else(|e| panic!("could not start `{bin}` ({e}): run scripts/test.sh, which installs Debian's prometheus"));
    let _prometheus = Proc(child);
    let base = format!("http://127.0.0.1:{prom_port}");

    // Compare a closed window, everything up to `end`: 5 s back, so the scrapes that
    // started before it are long stored in Prometheus. Wait until it holds 5 scrapes.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(90);
    let end_ms = loop {
        let end_ms = (unix_now() * 1e3) as i64 - 5_000;
        let scrapes = try_prom_query(&base, "count_over_time(up[1h])", end_ms as f64 / 1e3)
            .await
            .unwrap_or_default()
            .first()
            .and_then(|r| r["value"][1].as_str().and_then(|v| v.parse::<f64>().ok()))
            .unwrap_or(0.0);
        if scrapes >= 5.0 {
            break end_ms;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not scrape 5 times"
        );
        tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    };
    let end = end_ms as f64 / 1e3;
    let end_ns = end_ms * 1_000_000;
    for metric in [
        "up",
        "node_cpu_seconds_total",
        "node_load1",
        "scrape_duration_seconds",
    ] {
        let prom = prom_query(&base, &format!("sum(count_over_time({metric}[1h]))"), end).await;
        let want: i64 = prom[0]["value"][1]
            .as_str()
            .and_then(|v| v.parse::<f64>().ok())
            .expect("count") as i64;
        assert!(want > 0, "{metric}: Prometheus has no samples");
        let sql = format!(
            "SELECT count(*) AS n FROM {metric} WHERE time > to_timestamp_nanos({}) AND time <= to_timestamp_nanos({end_ns})",
            end_ns - 3_600_000_000_000
        );
        poll_until(
            60,
            &format!("Strata to hold Prometheus' {want} {metric} samples"),
            || async {
                let rows = s.query_raw("prom", &sql, "json").await;
                rows.0 == 200
                    && serde_json::from_str::<Vec<Value>>(&rows.1)
                        .ok()
                        .and_then(|r| r.first().map(|x| i64_of(&x["n"])))
                        == Some(want)
            },
        )
        .await;
    }
    // The values of one series, sample by sample.
    let prom = prom_query(
        &base,
        "node_cpu_seconds_total{cpu=\"0\",mode=\"idle\"}[1h]",
        end,
    )
    .await;
    let want: Vec<(i64, f64)> = prom[0]["values"]
        .as_array()
        .expect("range vector")
        .iter()
        .map(|p| {
            let t = p[0].as_f64().expect("time");
            let v = p[1].as_str().and_then(|v| v.parse().ok()).expect("value");
            ((t * 1e3).round() as i64, v)
        })
        .collect();
    let rows = s
        .query(
            "prom",
            &format!(
                "SELECT CAST(time AS BIGINT) / 1000000 AS ms, value FROM node_cpu_seconds_total \
                 WHERE cpu = '0' AND mode = 'idle' AND job = 'node' AND instance = '{node}' \
                 AND time <= to_timestamp_nanos({end_ns}) ORDER BY time"
            ),
        )
        .await;
    let got: Vec<(i64, f64)> = rows
        .iter()
        .map(|r| (i64_of(&r["ms"]), f64_of(&r["value"])))
        .collect();
    assert!(want.len() >= 4, "{want:?}");
    assert_eq!(got, want);
}

fn unix_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs_f64()
}
