//! Alerting end to end inside one process, with an injected clock: a real engine and SQL
//! engine hold the data, rules are created with SQL, and local HTTP receivers stand in
//! for webhooks, PagerDuty and the SMS/voice provider, checking the exact payloads.
//! Each step moves the clock and runs one evaluation and one notification round, so
//! nothing sleeps.

mod backtest;
mod pipeline;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use futures::TryStreamExt;
use parking_lot::Mutex;
use strata_alerting::Alerting;
use strata_alerting::config::AlertingConfig;
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

/// 2026-11-22T00:00:00Z.
pub const T0: i64 = 1_795_305_600 * 1_000_000_000;
pub const S: i64 = 1_000_000_000;

/// What a local receiver got: (path, body as JSON or form fields as JSON).
#[derive(Debug, Default)]
pub struct Inbox {
    pub requests: Mutex<Vec<(String, serde_json::Value)>>,
    pub down: AtomicBool,
}

impl Inbox {
    pub fn take(&self, path: &str) -> Vec<serde_json::Value> {
        let mut all = self.requests.lock();
        let (hit, rest): (Vec<_>, Vec<_>) = all.drain(..).partition(|(p, _)| p.starts_with(path));
        *all = rest;
        hit.into_iter().map(|(_, b)| b).collect()
    }

    pub fn is_empty(&self) -> bool {
        self.requests.lock().is_empty()
    }
}

async fn receive(
    State(inbox): State<Arc<Inbox>>,
    Path(path): Path<String>,
    headers: axum::http::HeaderMap,
    body: axum::body::Bytes,
) -> StatusCode {
    if inbox.down.load(Ordering::SeqCst) {
        return StatusCode::SERVICE_UNAVAILABLE;
    }
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    let value = if form {
        let pairs: BTreeMap<String, String> =
            url::form_urlencoded::parse(&body).into_owned().collect();
        serde_json::to_value(pairs).expect("form")
    } else {
        serde_json::from_slice(&body).expect("json body")
    };
    inbox.requests.lock().push((format!("/{path}"), value));
    StatusCode::ACCEPTED
}

/// A local HTTP server recording every POST; returns its base URL.
pub async fn receiver() -> (String, Arc<Inbox>) {
    let inbox = Arc::new(Inbox::default());
    let app = axum::Router::new()
        .route("/{*path}", axum::routing::post(receive))
        .with_state(Arc::clone(&inbox));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}"), inbox)
}

pub struct Harness {
    pub _dir: tempfile::TempDir,
    pub clock: Arc<ManualClock>,
    pub engine: Arc<Engine>,
    pub query: QueryEngine,
    pub alerting: Arc<Alerting>,
    pub config: AlertingConfig,
}

impl Harness {
    pub async fn new(config_toml: &str) -> Self {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(T0);
        let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), clock.clone())
            .await
            .expect("engine");
        let config: AlertingConfig = toml::from_str(config_toml).expect("config");
        let query = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("query");
        let alerting = Self::alerting(&engine, &query, &config).await;
        Self {
            _dir: dir,
            clock,
            engine,
            query,
            alerting,
            config,
        }
    }

    async fn alerting(
        engine: &Arc<Engine>,
        query: &QueryEngine,
        config: &AlertingConfig,
    ) -> Arc<Alerting> {
        let alerting = Alerting::new(
            engine.shared_catalog(),
            Arc::new(query.clone()),
            engine.clock(),
            engine.data_store(),
            config,
        )
        .await
        .expect("alerting");
        alerting.install(query);
        alerting
    }

    /// A new `Alerting` over the same catalog and store, as after a restart (its system
    /// tables replace the old ones; SQL statements keep going to the first one, which
    /// tests do not use afterwards).
    pub async fn restart(&mut self) {
        self.alerting = Self::alerting(&self.engine, &self.query, &self.config).await;
    }

    pub fn now(&self) -> i64 {
        use strata_engine::clock::Clock;
        self.clock.now_ns()
    }

    /// Writes `usage_user` per host at the clock's time.
    pub async fn cpu(&self, values: &[(&str, f64)]) {
        let now = self.now();
        let points: Vec<Point> = values
            .iter()
            .map(|(host, v)| Point {
                table: "cpu".into(),
                tags: vec![("host".into(), (*host).into())].into(),
                fields: vec![("usage_user".into(), FieldValue::F64(*v))],
                time: now,
                line: 1,
            })
            .collect();
        self.engine
            .write("metrics", points, WriteOptions::default())
            .await
            .expect("write");
    }

    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let (_, stream) = self
            .query
            .query("metrics", sql)
            .await
            .map_err(|e| e.to_string())?;
        stream.try_collect().await.map_err(|e| e.to_string())
    }

    pub async fn table(&self, sql: &str) -> String {
        let batches = self.sql(sql).await.expect("query");
        pretty_format_batches(&batches).expect("print").to_string()
    }

    /// Moves the clock by `secs` and runs one evaluation and one notification round.
    pub async fn step(&self, secs: i64) {
        self.clock
            .advance(Duration::from_secs(u64::try_from(secs).expect("secs")));
        self.alerting.evaluate_due().await;
        self.alerting.notify_due().await;
    }
}

/// The rule most tests use: max CPU per host over the last 5 s above 90, FOR 20 s.
pub const HIGH_CPU: &str = "CREATE ALERT high_cpu EVERY '10s' FOR '20s' \
    LABELS (severity = 'page') \
    ANNOTATIONS (summary = 'CPU {{ value }}% on {{ host }}') \
    AS SELECT host, max(usage_user) AS value FROM cpu \
       WHERE time > now() - interval '5 seconds' GROUP BY host HAVING max(usage_user) > 90";

pub fn webhook_config(base: &str) -> String {
    format!(
        r#"
        external_url = "http://strata.test"
        [route]
        receiver = "team"
        group_by = ["alertname"]
        group_wait = "0s"
        group_interval = "10s"
        repeat_interval = "1h"
        [[receivers]]
        name = "team"
        [[receivers.webhook]]
        url = "{base}/team"
        "#
    )
}
