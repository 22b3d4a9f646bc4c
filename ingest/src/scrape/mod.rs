//! Pull collection: Prometheus-style scrape jobs (`[[scrape]]` in the config file).
//!
//! Each job has static targets and/or target files (Prometheus' `file_sd` JSON shape:
//! `[{"targets": ["host:port"], "labels": {…}}]`, re-read when the file changes). Every
//! target runs in its own task, first scraped at an offset spread over the interval
//! (hashed from job and URL, so restarts keep the spread) and then every interval; a
//! scrape times out on its own, so a slow or dead target never delays the others.
//!
//! A scrape's samples are decoded by [`crate::exposition`], filtered by
//! `metric_relabel`, labelled with the target's labels (`job`, `instance`, the job's and
//! file's labels; a clashing scraped label becomes `exported_<name>` unless
//! `honor_labels`) and written to the job's database together with the health series
//! Prometheus users rely on: `up`, `scrape_duration_seconds`, `scrape_samples_scraped`
//! and `scrape_samples_post_metric_relabeling`. Valid samples of a page with bad lines
//! are kept; the bad lines are reported in `system.scrape_targets.last_error`.

pub mod relabel;
mod status;

use std::collections::{BTreeMap, HashMap};
use std::hash::{Hash, Hasher};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use strata_catalog::units::parse_duration;
use strata_engine::{Engine, FieldValue, Point, WriteOptions};
use tokio::task::JoinHandle;

use crate::exposition::{self, Dialect, VALUE_FIELD};
use crate::http::DEFAULT_DATABASE;
pub use relabel::RelabelConfig;
use relabel::Rule;
pub use status::{ScrapeStatus, TargetState};

/// What Prometheus 2.x asks for: OpenMetrics first, then the classic text format.
const ACCEPT: &str = "application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1";

/// One `[[scrape]]` job as written in the config file.
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ScrapeJobConfig {
    /// The `job` label of every series the job writes.
    pub job: String,
    /// `host:port` of each target.
    #[serde(default)]
    pub targets: Vec<String>,
    /// Target files (JSON, Prometheus `file_sd` shape), re-read when they change.
    #[serde(default)]
    pub files: Vec<PathBuf>,
    /// Default `10s`.
    #[serde(default)]
    pub interval: Option<String>,
    /// Default the smaller of `10s` and the interval; at most the interval.
    #[serde(default)]
    pub timeout: Option<String>,
    /// Default `/metrics`.
    #[serde(default)]
    pub path: Option<String>,
    /// `http` (default) or `https`.
    #[serde(default)]
    pub scheme: Option<String>,
    /// Default `metrics`.
    #[serde(default)]
    pub database: Option<String>,
    /// Added to every target of the job (a target file's labels win).
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub honor_labels: bool,
    /// Use timestamps the target exposes (default true); otherwise the scrape time.
    #[serde(default)]
    pub honor_timestamps: Option<bool>,
    /// Rules on target labels (`__address__`, `__scheme__`, `__metrics_path__`, `job`, …)
    /// before scraping.
    #[serde(default)]
    pub relabel: Vec<RelabelConfig>,
    /// Rules on each scraped sample (its name is `__name__`) before it is stored.
    #[serde(default)]
    pub metric_relabel: Vec<RelabelConfig>,
    /// Largest accepted page in bytes, default 64 MiB; a larger one fails the scrape.
    #[serde(default)]
    pub body_size_limit: Option<u64>,
    /// Most samples kept from one scrape after relabelling (0 = no limit, the default);
    /// over it the scrape fails and stores nothing but the health series.
    #[serde(default)]
    pub sample_limit: Option<usize>,
    /// How often target files are checked for changes, default `5s`.
    #[serde(default)]
    pub file_refresh: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum ScrapeError {
    #[error("scrape job `{job}`: {message}")]
    Config { job: String, message: String },
    #[error("could not build the HTTP client for scraping: {0}")]
    Client(String),
}

/// A checked job.
#[derive(Debug)]
struct Job {
    name: String,
    database: String,
    interval: Duration,
    timeout: Duration,
    path: String,
    scheme: String,
    labels: BTreeMap<String, String>,
    honor_labels: bool,
    honor_timestamps: bool,
    relabel: Vec<Rule>,
    metric_relabel: Vec<Rule>,
    body_limit: usize,
    sample_limit: usize,
    targets: Vec<String>,
    files: Vec<PathBuf>,
    file_refresh: Duration,
}

impl Job {
    fn check(c: &ScrapeJobConfig) -> Result<Self, ScrapeError> {
        let err = |message: String| ScrapeError::Config {
            job: c.job.clone(),
            message,
        };
        if c.job.trim().is_empty() {
            return Err(err("`job` (the job's name) is empty".into()));
        }
        if c.targets.is_empty() && c.files.is_empty() {
            return Err(err("has neither `targets` nor `files`".into()));
        }
        let dur = |key: &str, v: &Option<String>, default: Duration| match v {
            None => Ok(default),
            Some(s) => match parse_duration(s) {
                Ok(d) if !d.is_zero() => Ok(d),
                Ok(_) => Err(err(format!("`{key}` must be longer than zero"))),
                Err(e) => Err(err(format!("`{key}`: {e}"))),
            },
        };
        let interval = dur("interval", &c.interval, Duration::from_secs(10))?;
        let timeout = dur("timeout", &c.timeout, interval.min(Duration::from_secs(10)))?;
        if timeout > interval {
            return Err(err(format!(
                "timeout {} is longer than the interval {}",
                strata_catalog::units::format_duration(timeout),
                strata_catalog::units::format_duration(interval)
            )));
        }
        let scheme = c.scheme.clone().unwrap_or_else(|| "http".into());
        if scheme != "http" && scheme != "https" {
            return Err(err(format!("scheme `{scheme}` is not http or https")));
        }
        let path = c.path.clone().unwrap_or_else(|| "/metrics".into());
        if !path.starts_with('/') {
            return Err(err(format!("path `{path}` must start with `/`")));
        }
        for t in &c.targets {
            check_address(t).map_err(err)?;
        }
        Ok(Self {
            name: c.job.clone(),
            database: c
                .database
                .clone()
                .filter(|d| !d.is_empty())
                .unwrap_or_else(|| DEFAULT_DATABASE.into()),
            interval,
            timeout,
            path,
            scheme,
            labels: c.labels.clone(),
            honor_labels: c.honor_labels,
            honor_timestamps: c.honor_timestamps.unwrap_or(true),
            relabel: relabel::compile_all(&c.relabel).map_err(|e| err(format!("relabel {e}")))?,
            metric_relabel: relabel::compile_all(&c.metric_relabel)
                .map_err(|e| err(format!("metric_relabel {e}")))?,
            body_limit: c.body_size_limit.unwrap_or(64 << 20) as usize,
            sample_limit: c.sample_limit.unwrap_or(0),
            targets: c.targets.clone(),
            files: c.files.clone(),
            file_refresh: dur("file_refresh", &c.file_refresh, Duration::from_secs(5))?,
        })
    }
}

fn check_address(t: &str) -> Result<(), String> {
    if t.is_empty() || t.contains('/') || t.contains(char::is_whitespace) {
        return Err(format!(
            "target `{t}` is not `host:port` (the scheme and path are set per job)"
        ));
    }
    Ok(())
}

/// A target after relabelling: where to scrape and the labels its series get.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    url: String,
    /// `job`, `instance` and the other non-`__` labels.
    labels: BTreeMap<String, String>,
    source: String,
}

impl Target {
    fn key(&self, job: &str) -> String {
        format!(
            "{job}\u{0}{}\u{0}{}",
            self.url,
            serde_json::to_string(&self.labels).unwrap_or_default()
        )
    }

    fn instance(&self) -> &str {
        self.labels
            .get("instance")
            .map(String::as_str)
            .unwrap_or("")
    }
}

/// Applies target relabelling to one discovered address; `None` if a rule dropped it.
fn target(
    job: &Job,
    address: &str,
    group_labels: &BTreeMap<String, String>,
    source: &str,
) -> Option<Target> {
    let mut labels = job.labels.clone();
    labels.extend(group_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("job".into(), job.name.clone());
    labels.insert("__address__".into(), address.to_string());
    labels.insert("__scheme__".into(), job.scheme.clone());
    labels.insert("__metrics_path__".into(), job.path.clone());
    if !relabel::apply(&job.relabel, &mut labels) {
        return None;
    }
    let address = labels.get("__address__").cloned().unwrap_or_default();
    if address.is_empty() {
        return None;
    }
    let scheme = labels.get("__scheme__").cloned().unwrap_or_default();
    let path = labels.get("__metrics_path__").cloned().unwrap_or_default();
    let url = format!("{scheme}://{address}{path}");
    labels.entry("instance".into()).or_insert(address);
    labels.retain(|k, v| !k.starts_with("__") && !v.is_empty());
    Some(Target {
        url,
        labels,
        source: source.to_string(),
    })
}

/// A target group of a target file.
#[derive(Debug, Deserialize)]
struct TargetGroup {
    targets: Vec<String>,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn read_target_file(path: &std::path::Path) -> Result<Vec<TargetGroup>, String> {
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    if matches!(ext, "yml" | "yaml") {
        return Err(
            "YAML target files are not supported yet; write the same groups as JSON".into(),
        );
    }
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let groups: Vec<TargetGroup> = serde_json::from_str(&text).map_err(|e| {
        format!("not a JSON list of {{\"targets\": [...], \"labels\": {{...}}}} groups: {e}")
    })?;
    for g in &groups {
        for t in &g.targets {
            check_address(t)?;
        }
    }
    Ok(groups)
}

/// The running scrape jobs. Dropping it stops every scrape.
pub struct Scraper {
    status: Arc<ScrapeStatus>,
    jobs: Vec<JoinHandle<()>>,
}

impl Drop for Scraper {
    fn drop(&mut self) {
        for j in &self.jobs {
            j.abort();
        }
    }
}

impl Scraper {
    /// Checks every job and starts them on the current runtime.
    pub fn start(engine: Arc<Engine>, configs: &[ScrapeJobConfig]) -> Result<Self, ScrapeError> {
        let mut names = std::collections::HashSet::new();
        let mut jobs = Vec::new();
        for c in configs {
            let job = Job::check(c)?;
            if !names.insert(job.name.clone()) {
                return Err(ScrapeError::Config {
                    job: job.name,
                    message: "two jobs have this name".into(),
                });
            }
            jobs.push(Arc::new(job));
        }
        let client = reqwest::Client::builder()
            .user_agent(concat!("Strata/", env!("CARGO_PKG_VERSION")))
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| ScrapeError::Client(e.to_string()))?;
        let status = Arc::new(ScrapeStatus::default());
        let handles = jobs
            .into_iter()
            .map(|job| {
                tokio::spawn(supervise(
                    Arc::clone(&engine),
                    job,
                    client.clone(),
                    Arc::clone(&status),
                ))
            })
            .collect();
        Ok(Self {
            status,
            jobs: handles,
        })
    }

    /// The table behind `system.scrape_targets`.
    pub fn status(&self) -> Arc<ScrapeStatus> {
        Arc::clone(&self.status)
    }
}

/// A running target task, aborted when dropped (the target went away).
struct Running(JoinHandle<()>);

impl Drop for Running {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Keeps a job's target tasks in line with its static targets and target files.
async fn supervise(
    engine: Arc<Engine>,
    job: Arc<Job>,
    client: reqwest::Client,
    status: Arc<ScrapeStatus>,
) {
    let mut running: HashMap<Target, Running> = HashMap::new();
    // Last good groups and modification time of each file.
    let mut files: HashMap<PathBuf, (Option<SystemTime>, Vec<TargetGroup>)> = HashMap::new();
    loop {
        for path in &job.files {
            let mtime = std::fs::metadata(path).and_then(|m| m.modified()).ok();
            if files.get(path).is_some_and(|(seen, _)| *seen == mtime) {
                continue;
            }
            match read_target_file(path) {
                Ok(groups) => {
                    files.insert(path.clone(), (mtime, groups));
                }
                Err(e) => {
                    metrics::counter!("strata_scrape_target_file_errors_total", "job" => job.name.clone())
                        .increment(1);
                    tracing::warn!(job = %job.name, file = %path.display(), error = %e,
                        "target file could not be read; keeping its previous targets");
                    let previous = files.remove(path).map(|(_, g)| g).unwrap_or_default();
                    files.insert(path.clone(), (mtime, previous));
                }
            }
        }
        let mut wanted = Vec::new();
        let none = BTreeMap::new();
        for t in &job.targets {
            wanted.extend(target(&job, t, &none, "static"));
        }
        for (path, (_, groups)) in &files {
            let source = path.display().to_string();
            for g in groups {
                for t in &g.targets {
                    wanted.extend(target(&job, t, &g.labels, &source));
                }
            }
        }
        running.retain(|t, _| {
            let keep = wanted.contains(t);
            if !keep {
                status.remove(&t.key(&job.name));
            }
            keep
        });
        for t in wanted {
            if running.contains_key(&t) {
                continue;
            }
            let key = t.key(&job.name);
            status.insert(
                &key,
                TargetState {
                    job: job.name.clone(),
                    instance: t.instance().to_string(),
                    url: t.url.clone(),
                    labels: t.labels.clone(),
                    database: job.database.clone(),
                    interval: job.interval,
                    timeout: job.timeout,
                    source: t.source.clone(),
                    health: "unknown",
                    last_scrape: None,
                    last_duration: None,
                    last_error: None,
                    last_samples: 0,
                    scrapes: 0,
                    failures: 0,
                },
            );
            let task = tokio::spawn(run_target(
                Arc::clone(&engine),
                Arc::clone(&job),
                Arc::new(t.clone()),
                client.clone(),
                Arc::clone(&status),
                key,
            ));
            running.insert(t, Running(task));
        }
        if job.files.is_empty() {
            // Static targets never change: keep the tasks alive until the job stops.
            std::future::pending::<()>().await;
        }
        tokio::time::sleep(job.file_refresh).await;
    }
}

/// Where in the interval a target is scraped: stable for a job and URL.
fn offset(job: &str, url: &str, interval: Duration) -> Duration {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    (job, url).hash(&mut h);
    let nanos = interval.as_nanos().max(1);
    Duration::from_nanos((u128::from(h.finish()) % nanos) as u64)
}

async fn run_target(
    engine: Arc<Engine>,
    job: Arc<Job>,
    target: Arc<Target>,
    client: reqwest::Client,
    status: Arc<ScrapeStatus>,
    key: String,
) {
    let start = tokio::time::Instant::now() + offset(&job.name, &target.url, job.interval);
    let mut ticks = tokio::time::interval_at(start, job.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        scrape_once(&engine, &job, &target, &client, &status, &key).await;
    }
}

/// The outcome of fetching and decoding one page.
struct Page {
    points: Vec<Point>,
    scraped: usize,
    error: Option<String>,
}

async fn fetch(
    client: &reqwest::Client,
    job: &Job,
    url: &str,
) -> Result<(Vec<u8>, String), String> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", job.timeout.as_secs_f64()),
        )
        .timeout(job.timeout)
        .send()
        .await
        .map_err(|e| describe(&e, job.timeout))?;
    if !resp.status().is_success() {
        return Err(format!("server returned HTTP status {}", resp.status()));
    }
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("text/plain")
        .to_string();
    let mut body = Vec::new();
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, job.timeout))? {
        if body.len() + chunk.len() > job.body_limit {
            return Err(format!(
                "page is larger than the body_size_limit of {} bytes",
                job.body_limit
            ));
        }
        body.extend_from_slice(&chunk);
    }
    Ok((body, content_type))
}

fn describe(e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!(
            "scrape timed out after {}",
            strata_catalog::units::format_duration(timeout)
        );
    }
    // The causes say what happened (connection refused, DNS, TLS).
    let mut msg = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        msg.push_str(": ");
        msg.push_str(&c.to_string());
        cause = c.source();
    }
    msg
}

/// Decodes a page and applies relabelling, target labels and the sample limit.
fn decode_page(job: &Job, target: &Target, body: &[u8], content_type: &str, now: i64) -> Page {
    let text = match std::str::from_utf8(body) {
        Ok(t) => t,
        Err(e) => {
            return Page {
                points: vec![],
                scraped: 0,
                error: Some(format!("page is not UTF-8 (at byte {})", e.valid_up_to())),
            };
        }
    };
    let decoded = exposition::parse(
        text,
        Dialect::from_content_type(content_type),
        now,
        job.honor_timestamps,
    );
    let scraped = decoded.points.len();
    let mut error = decoded.errors.first().map(|e| {
        format!(
            "{} line(s) could not be parsed and were skipped; first: line {}: {}",
            decoded.errors.len(),
            e.line_number,
            e.error_message
        )
    });
    let mut points = Vec::with_capacity(scraped);
    for mut p in decoded.points {
        if !job.metric_relabel.is_empty() {
            let mut labels: BTreeMap<String, String> = p.tags.drain(..).collect();
            labels.insert("__name__".into(), std::mem::take(&mut p.table));
            if !relabel::apply(&job.metric_relabel, &mut labels) {
                continue;
            }
            p.table = labels.remove("__name__").unwrap_or_default();
            if p.table.is_empty() {
                continue;
            }
            p.tags = labels.into_iter().filter(|(_, v)| !v.is_empty()).collect();
        }
        attach_target_labels(&mut p.tags, &target.labels, job.honor_labels);
        points.push(p);
    }
    if job.sample_limit > 0 && points.len() > job.sample_limit {
        error = Some(format!(
            "{} samples after relabelling exceed the sample_limit of {}; none were stored",
            points.len(),
            job.sample_limit
        ));
        points.clear();
    }
    Page {
        points,
        scraped,
        error,
    }
}

/// Adds the target's labels to a sample's; a clash keeps the sample's value under
/// `exported_<name>`, or only the sample's with `honor_labels`.
fn attach_target_labels(
    tags: &mut Vec<(String, String)>,
    target: &BTreeMap<String, String>,
    honor_labels: bool,
) {
    for (k, v) in target {
        match tags.iter().position(|(n, _)| n == k) {
            None => tags.push((k.clone(), v.clone())),
            Some(_) if honor_labels => {}
            Some(i) => {
                tags[i].0 = format!("exported_{k}");
                tags.push((k.clone(), v.clone()));
            }
        }
    }
}

fn health_point(name: &str, target: &Target, value: f64, time: i64) -> Point {
    Point {
        table: name.to_string(),
        tags: target
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
        fields: vec![(VALUE_FIELD.to_string(), FieldValue::F64(value))],
        time,
        line: 0,
    }
}

async fn scrape_once(
    engine: &Engine,
    job: &Job,
    target: &Target,
    client: &reqwest::Client,
    status: &ScrapeStatus,
    key: &str,
) {
    let now = engine.clock().now_ns();
    let started = std::time::Instant::now();
    let fetched = fetch(client, job, &target.url).await;
    let (up, mut page) = match fetched {
        Ok((body, content_type)) => (true, decode_page(job, target, &body, &content_type, now)),
        Err(e) => (
            false,
            Page {
                points: vec![],
                scraped: 0,
                error: Some(e),
            },
        ),
    };
    let duration = started.elapsed().as_secs_f64();
    let kept = page.points.len();
    let mut points = std::mem::take(&mut page.points);
    for (name, value) in [
        ("up", if up { 1.0 } else { 0.0 }),
        ("scrape_duration_seconds", duration),
        ("scrape_samples_scraped", page.scraped as f64),
        ("scrape_samples_post_metric_relabeling", kept as f64),
    ] {
        points.push(health_point(name, target, value, now));
    }
    let mut error = page.error;
    match engine
        .write(&job.database, points, WriteOptions::default())
        .await
    {
        Ok(o) => {
            metrics::counter!("strata_ingest_points_total", "path" => "scrape", "outcome" => "accepted")
                .increment(o.accepted as u64);
            if let Some(first) = o.rejected.first() {
                metrics::counter!("strata_ingest_points_total", "path" => "scrape", "outcome" => "rejected")
                    .increment(o.rejected.len() as u64);
                let msg = format!(
                    "{} sample(s) refused by the store; first: line {}: {}",
                    o.rejected.len(),
                    first.line,
                    first.reason
                );
                error = Some(match error {
                    Some(e) => format!("{e}; {msg}"),
                    None => msg,
                });
            }
        }
        Err(e) => {
            let msg = format!("samples could not be stored: {e}");
            tracing::warn!(job = %job.name, target = %target.url, error = %msg, "scrape not stored");
            error = Some(match error {
                Some(x) => format!("{x}; {msg}"),
                None => msg,
            });
        }
    }
    metrics::counter!("strata_scrapes_total", "job" => job.name.clone(), "outcome" => if up { "up" } else { "down" })
        .increment(1);
    status.update(key, |s| {
        s.health = if up { "up" } else { "down" };
        s.last_scrape = Some(now);
        s.last_duration = Some(duration);
        s.last_error = error;
        s.last_samples = kept as u64;
        s.scrapes += 1;
        s.failures += u64::from(!up);
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    fn job(extra: impl FnOnce(&mut ScrapeJobConfig)) -> Job {
        let mut c = ScrapeJobConfig {
            job: "node".into(),
            targets: vec!["10.0.0.1:9100".into()],
            ..Default::default()
        };
        extra(&mut c);
        Job::check(&c).expect("valid job")
    }

    #[test]
    fn targets_get_job_instance_and_relabelled_labels() {
        let j = job(|c| {
            c.labels.insert("pool".into(), "web".into());
            c.relabel.push(RelabelConfig {
                source_labels: vec!["__address__".into()],
                regex: Some("([^:]+):.*".into()),
                target_label: Some("host".into()),
                ..Default::default()
            });
        });
        let group = BTreeMap::from([("rack".to_string(), "r7".to_string())]);
        let t = target(&j, "10.0.0.1:9100", &group, "static").expect("kept");
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        let labels: Vec<(&str, &str)> = t
            .labels
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            labels,
            [
                ("host", "10.0.0.1"),
                ("instance", "10.0.0.1:9100"),
                ("job", "node"),
                ("pool", "web"),
                ("rack", "r7")
            ]
        );
        let dropping = job(|c| {
            c.relabel.push(RelabelConfig {
                action: Some("drop".into()),
                source_labels: vec!["__address__".into()],
                regex: Some("10\\..*".into()),
                ..Default::default()
            });
        });
        assert!(target(&dropping, "10.0.0.1:9100", &BTreeMap::new(), "static").is_none());
    }

    #[test]
    fn pages_are_relabelled_labelled_and_limited() {
        let page =
            b"# TYPE a counter\na_total{job=\"app\",x=\"1\"} 3\ngo_goroutines 7\nbad line here\n";
        let j = job(|c| {
            c.metric_relabel.push(RelabelConfig {
                action: Some("drop".into()),
                source_labels: vec!["__name__".into()],
                regex: Some("go_.*".into()),
                ..Default::default()
            });
        });
        let t = target(&j, "h:1", &BTreeMap::new(), "static").expect("target");
        let p = decode_page(&j, &t, page, "text/plain; version=0.0.4", 42);
        assert_eq!(p.scraped, 2);
        assert_eq!(p.points.len(), 1);
        let tags: Vec<(&str, &str)> = p.points[0]
            .tags
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        assert_eq!(
            tags,
            [
                ("exported_job", "app"),
                ("x", "1"),
                ("instance", "h:1"),
                ("job", "node")
            ]
        );
        assert!(
            p.error.as_deref().is_some_and(|e| e.contains("line 4")),
            "{:?}",
            p.error
        );
        let honor = job(|c| c.honor_labels = true);
        let p = decode_page(&honor, &t, page, "text/plain", 42);
        assert!(p.points[0].tags.contains(&("job".into(), "app".into())));
        assert!(!p.points[0].tags.iter().any(|(k, _)| k == "exported_job"));
        let limited = job(|c| c.sample_limit = Some(1));
        let p = decode_page(&limited, &t, page, "text/plain", 42);
        assert!(p.points.is_empty());
        assert!(
            p.error
                .as_deref()
                .is_some_and(|e| e.contains("sample_limit of 1"))
        );
    }

    #[test]
    fn bad_jobs_are_refused_with_the_reason() {
        let bad = |f: fn(&mut ScrapeJobConfig)| {
            let mut c = ScrapeJobConfig {
                job: "j".into(),
                targets: vec!["h:1".into()],
                ..Default::default()
            };
            f(&mut c);
            Job::check(&c).expect_err("refused").to_string()
        };
        assert!(
            bad(|c| c.timeout = Some("20s".into()))
                .contains("timeout 20s is longer than the interval 10s")
        );
        assert!(
            bad(|c| c.targets = vec!["http://h:1/metrics".into()]).contains("is not `host:port`")
        );
        assert!(bad(|c| c.targets.clear()).contains("neither `targets` nor `files`"));
        assert!(bad(|c| c.scheme = Some("ftp".into())).contains("scheme `ftp`"));
        assert!(bad(|c| c.interval = Some("soon".into())).contains("`interval`"));
        assert!(
            bad(|c| c.metric_relabel.push(RelabelConfig::default()))
                .contains("metric_relabel rule 1")
        );
    }

    #[test]
    fn offsets_spread_and_stay_put() {
        let i = Duration::from_secs(10);
        let offs: Vec<Duration> = (0..100)
            .map(|n| offset("j", &format!("http://h{n}:1/metrics"), i))
            .collect();
        assert!(offs.iter().all(|o| *o < i));
        assert_eq!(offs[3], offset("j", "http://h3:1/metrics", i));
        let first_half = offs.iter().filter(|o| **o < i / 2).count();
        assert!(
            (25..=75).contains(&first_half),
            "{first_half} of 100 in the first half"
        );
    }
}
