//! OTLP metrics from the real OpenTelemetry Python SDK (`tests/python/otlp_push.py`,
//! OTLP/HTTP protobuf) and hand-written OTLP JSON, read back with SQL.

use serde_json::Value;

use super::clients::run_script;
use super::server::{Server, f64_of};

fn one(rows: &[Value]) -> f64 {
    assert_eq!(rows.len(), 1, "{rows:?}");
    f64_of(&rows[0]["v"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opentelemetry_sdk_exports_land_in_tables() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let out = run_script("otlp_push.py", &[&s.url("/v1/metrics?db=otel")]);
    let sent: Value = serde_json::from_str(out.trim()).expect("script output");
    assert_eq!(
        sent["flushed"], true,
        "the SDK reported a failed export: {out}"
    );

    // Cumulative counter: one row per attribute set (one export: the script checks
    // that each export succeeded), resource attributes as tags.
    let rows = s
        .query(
            "otel",
            "SELECT code, service_name, host_name, otel_scope_name, value AS v FROM http_requests ORDER BY code",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    for r in &rows {
        let code = r["code"].as_str().expect("code");
        assert_eq!(
            f64_of(&r["v"]),
            sent["requests"][code].as_f64().expect("sent")
        );
        assert_eq!(
            (r["service_name"].as_str(), r["host_name"].as_str()),
            (Some("checkout"), Some("h1"))
        );
        assert_eq!(r["otel_scope_name"], "strata.test");
    }
    // Histogram: Prometheus-style cumulative buckets, _sum and _count.
    let buckets = s
        .query(
            "otel",
            "SELECT le, value AS v FROM request_duration_bucket WHERE route = '/pay' ORDER BY value",
        )
        .await;
    let got: Vec<(String, f64)> = buckets
        .iter()
        .map(|r| (r["le"].as_str().unwrap_or("").to_string(), f64_of(&r["v"])))
        .collect();
    let mut cumulative = 0.0;
    let want: Vec<(String, f64)> = ["0.1", "0.5", "1", "+Inf"]
        .iter()
        .zip(sent["duration"]["buckets"].as_array().expect("buckets"))
        .map(|(le, n)| {
            cumulative += n.as_f64().expect("n");
            (le.to_string(), cumulative)
        })
        .collect();
    assert_eq!(got, want);
    let sum = one(&s
        .query("otel", "SELECT value AS v FROM request_duration_sum")
        .await);
    assert!((sum - sent["duration"]["sum"].as_f64().expect("sum")).abs() < 1e-9);
    let count = one(&s
        .query("otel", "SELECT value AS v FROM request_duration_count")
        .await);
    assert_eq!(count, sent["duration"]["count"].as_f64().expect("count"));
    // Observable gauge and a delta counter.
    let gauge = one(&s
        .query(
            "otel",
            "SELECT value AS v FROM queue_depth WHERE queue = 'q1'",
        )
        .await);
    assert_eq!(gauge, sent["queue_depth"].as_f64().expect("gauge"));
    let jobs = one(&s
        .query("otel", "SELECT sum(value) AS v FROM jobs_done")
        .await);
    assert_eq!(jobs, sent["jobs_done"].as_f64().expect("jobs"));

    let metrics = s.metrics().await;
    assert!(
        metrics
            .lines()
            .any(|l| l.contains("path=\"otlp\"") && l.contains("outcome=\"accepted\""))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn otlp_json_partial_success_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let post = |body: String, content_type: &'static str| {
        let req = s
            .client
            .post(s.url("/v1/metrics"))
            .header("Content-Type", content_type)
            .body(body);
        async move {
            let r = req.send().await.expect("request");
            let status = r.status().as_u16();
            (status, r.text().await.expect("body"))
        }
    };
    let now_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_nanos();
    let body = r#"{"resourceMetrics":[{"resource":{"attributes":[{"key":"service.name","value":{"stringValue":"api"}}]},
      "scopeMetrics":[{"metrics":[
        {"name":"temp","gauge":{"dataPoints":[{"asDouble":21.5,"timeUnixNano":"NOW"}]}},
        {"name":"lat","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"count":"2"}]}}]}]}]}"#
        .replace("NOW", &now_ns.to_string());
    let (status, text) = post(body, "application/json").await;
    assert_eq!(status, 200, "{text}");
    let reply: Value = serde_json::from_str(&text).expect("json reply");
    assert_eq!(reply["partialSuccess"]["rejectedDataPoints"], 1, "{reply}");
    assert!(
        reply["partialSuccess"]["errorMessage"]
            .as_str()
            .is_some_and(|m| m.contains("exponential histogram"))
    );
    let rows = s
        .query("metrics", "SELECT service_name, value AS v FROM temp")
        .await;
    assert_eq!(
        (rows[0]["service_name"].as_str(), f64_of(&rows[0]["v"])),
        (Some("api"), 21.5)
    );

    let (status, text) = post("{not json".into(), "application/json").await;
    assert_eq!(status, 400);
    assert!(text.contains("not a valid OTLP"), "{text}");
    let (status, _) = post("x".into(), "text/plain").await;
    assert_eq!(status, 415);
}
