//! Starting, stopping and talking to a real `strata serve` process.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use serde_json::Value;
use strata_benchmarks::server::{Addrs, spawn as spawn_strata};

pub struct Server {
    child: Child,
    pub http: String,
    /// The Flight SQL (gRPC) address.
    pub flight: String,
    /// The PostgreSQL wire address.
    pub pg: String,
    pub data_dir: PathBuf,
    extra: Vec<String>,
    pub client: reqwest::Client,
}

impl Server {
    /// Starts `strata serve` on free ports with data in `data_dir`.
    pub async fn start(data_dir: &Path, extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let (child, addrs) = spawn(data_dir, &extra);
        Self {
            child,
            http: addrs.http,
            flight: addrs.flight,
            pg: addrs.pg,
            data_dir: data_dir.to_path_buf(),
            extra,
            client: reqwest::Client::new(),
        }
    }

    /// The server's process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// SIGKILL: no shutdown code runs.
    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(&mut self) {
        let pid = self.child.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Some(st) = self.child.try_wait().expect("wait") {
                assert!(st.success(), "strata exited with {st}");
                return;
            }
            assert!(
                Instant::now() < deadline,
                "strata did not stop after SIGTERM"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the server again on the same data directory.
    pub async fn restart(&mut self) {
        let (child, addrs) = spawn(&self.data_dir, &self.extra);
        self.child = child;
        self.http = addrs.http;
        self.flight = addrs.flight;
        self.pg = addrs.pg;
    }

    pub fn url(&self, path: &str) -> String {
        format!("http://{}{}", self.http, path)
    }

    pub async fn write_lp(&self, db: &str, body: String) -> reqwest::Response {
        self.client
            .post(self.url(&format!("/api/v3/write_lp?db={db}&precision=nanosecond")))
            .body(body)
            .send()
            .await
            .expect("write request")
    }

    /// Runs a query and returns its rows as JSON objects; panics on an error status.
    pub async fn query(&self, db: &str, sql: &str) -> Vec<Value> {
        let r = self
            .client
            .get(self.url("/api/v3/query_sql"))
            .query(&[("db", db), ("q", sql), ("format", "json")])
            .send()
            .await
            .expect("query request");
        let status = r.status();
        let text = r.text().await.expect("body");
        assert!(
            status.is_success(),
            "query {sql:?} failed with {status}: {text}"
        );
        serde_json::from_str(&text).expect("json rows")
    }

    /// Like [`Server::query`], but `None` on an error status (a table not written yet).
    pub async fn try_query(&self, db: &str, sql: &str) -> Option<Vec<Value>> {
        let (status, body) = self.query_raw(db, sql, "json").await;
        if status != 200 {
            return None;
        }
        serde_json::from_str(&body).ok()
    }

    /// The Prometheus text of `GET /metrics`.
    pub async fn metrics(&self) -> String {
        self.client
            .get(self.url("/metrics"))
            .send()
            .await
            .expect("metrics request")
            .text()
            .await
            .expect("metrics body")
    }

    /// Runs a query and returns (status, body text).
    pub async fn query_raw(&self, db: &str, sql: &str, format: &str) -> (u16, String) {
        let r = self
            .client
            .get(self.url("/api/v3/query_sql"))
            .query(&[("db", db), ("q", sql), ("format", format)])
            .send()
            .await
            .expect("query request");
        (r.status().as_u16(), r.text().await.expect("body"))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn spawn(data_dir: &Path, extra: &[String]) -> (Child, Addrs) {
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    spawn_strata(Path::new(env!("CARGO_BIN_EXE_strata")), data_dir, &extra).expect("start strata")
}

/// Polls `check` until it returns true; panics naming `what` after `secs` seconds.
pub async fn poll_until<F, Fut>(secs: u64, what: &str, mut check: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !check().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

pub fn f64_of(v: &Value) -> f64 {
    v.as_f64().unwrap_or_else(|| panic!("not a number: {v}"))
}

pub fn i64_of(v: &Value) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("not an integer: {v}"))
}
