//! Pull collection: Prometheus-style scrape jobs (`[[scrape]]` in the config file).
//!
//! Each job has static targets and/or target files (Prometheus' `file_sd` shape in JSON
//! or YAML: `[{"targets": ["host:port"], "labels": {…}}]`, re-read when a file changes,
//! `*`/`?` patterns in file names re-expanded; a file's
//! labels may set `__scheme__`, `__metrics_path__` and `__param_<name>`). Every target
//! runs in its own task at a fixed phase of the interval (hashed from job and URL against
//! the wall clock, so targets are spread and keep their phase across restarts); a scrape
//! times out on its own, so a slow or dead target never delays the others, and pages are
//! decoded off the I/O threads.
//!
//! A scrape's samples are decoded by [`crate::exposition`], labelled with the target's
//! labels (`job`, `instance`, the job's and file's labels; a clashing scraped label
//! becomes `exported_<name>` unless `honor_labels`), filtered by `metric_relabel`, and
//! written to the job's database together with the health series Prometheus users rely
//! on: `up`, `scrape_duration_seconds`, `scrape_samples_scraped` and
//! `scrape_samples_post_metric_relabeling`. `up` is 0 when the page could not be fetched
//! or used (HTTP error, timeout, not text, no valid line, over `sample_limit`). Valid
//! samples of a page with some bad lines are kept (Prometheus would drop the whole
//! page); the bad lines are reported in `system.scrape_targets.last_error`.

mod coalesce;
pub mod relabel;
mod status;

use std::collections::{BTreeMap, HashMap};

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use serde::Deserialize;
use strata_catalog::units::parse_duration;
use strata_engine::{Engine, FieldValue, Point};
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
    /// Target files (JSON or YAML, Prometheus `file_sd` shape), re-read when they change;
    /// `*` and `?` in a file name match several.
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
    /// Largest accepted page in bytes, default 64 MiB (0 = no limit); a larger one
    /// fails the scrape.
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
        if interval > Duration::from_secs(86_400) {
            return Err(err("`interval` is longer than a day".into()));
        }
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
        let database = c
            .database
            .clone()
            .filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE.into());
        strata_engine::check_database_name(&database).map_err(|e| err(e.to_string()))?;
        Ok(Self {
            name: c.job.clone(),
            database,
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
            body_limit: match c.body_size_limit {
                None => 64 << 20,
                Some(0) => usize::MAX,
                Some(n) => usize::try_from(n).unwrap_or(usize::MAX),
            },
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

/// A target after relabelling: where to scrape and the labels its series get. The same
/// URL and labels from two sources is one target.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
struct Target {
    url: String,
    /// `job`, `instance` and the other non-`__` labels.
    labels: BTreeMap<String, String>,
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

/// Applies target relabelling to one discovered address; `None` if a rule dropped it
/// (or left no usable address, which is logged).
fn target(job: &Job, address: &str, group_labels: &BTreeMap<String, String>) -> Option<Target> {
    let mut labels = job.labels.clone();
    labels.extend(group_labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("__address__".into(), address.to_string());
    // A target file may set these; the job's values are defaults.
    labels
        .entry("job".into())
        .or_insert_with(|| job.name.clone());
    labels
        .entry("__scheme__".into())
        .or_insert_with(|| job.scheme.clone());
    labels
        .entry("__metrics_path__".into())
        .or_insert_with(|| job.path.clone());
    if !relabel::apply(&job.relabel, &mut labels) {
        return None;
    }
    let address = labels.get("__address__").cloned().unwrap_or_default();
    let scheme = labels.get("__scheme__").cloned().unwrap_or_default();
    let path = labels.get("__metrics_path__").cloned().unwrap_or_default();
    let mut url = match url::Url::parse(&format!("{scheme}://{address}{path}")) {
        Ok(u) if !address.is_empty() && (scheme == "http" || scheme == "https") => u,
        _ => {
            tracing::warn!(job = %job.name, address, scheme, path,
                "target skipped: no usable URL after relabelling");
            return None;
        }
    };
    for (k, v) in &labels {
        if let Some(param) = k.strip_prefix("__param_") {
            url.query_pairs_mut().append_pair(param, v);
        }
    }
    labels.entry("instance".into()).or_insert(address);
    labels.retain(|k, v| !k.starts_with("__") && !v.is_empty());
    Some(Target {
        url: url.to_string(),
        labels,
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
    let text = std::fs::read_to_string(path).map_err(|e| e.to_string())?;
    let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("");
    let groups: Vec<TargetGroup> = if matches!(ext, "yml" | "yaml") {
        serde_norway::from_str(&text).map_err(|e| {
            format!("not a YAML list of groups (`- targets: [...]` with optional `labels:`): {e}")
        })?
    } else {
        serde_json::from_str(&text).map_err(|e| {
            format!("not a JSON list of {{\"targets\": [...], \"labels\": {{...}}}} groups: {e}")
        })?
    };
    for g in &groups {
        for t in &g.targets {
            check_address(t)?;
        }
    }
    Ok(groups)
}

/// The files a `files` entry names now: itself, or for a pattern with `*` or `?` in its
/// last component (`targets/*.json`, as Prometheus allows), the matching files, sorted.
fn expand(pattern: &std::path::Path) -> Vec<PathBuf> {
    let name = pattern
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or_default();
    if !name.contains(['*', '?']) {
        return vec![pattern.to_path_buf()];
    }
    let re = format!(
        "^{}$",
        regex::escape(name).replace("\\*", ".*").replace("\\?", ".")
    );
    let Ok(re) = regex::Regex::new(&re) else {
        return vec![];
    };
    let dir = pattern
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_str().is_some_and(|n| re.is_match(n)))
                .map(|e| e.path())
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
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
            // Targets are reached directly, as Prometheus does, whatever HTTP_PROXY says.
            .no_proxy()
            .redirect(reqwest::redirect::Policy::limited(5))
            .build()
            .map_err(|e| ScrapeError::Client(e.to_string()))?;
        let status = Arc::new(ScrapeStatus::default());
        let (writer, writer_task) = coalesce::Coalescer::start(Arc::clone(&engine));
        let mut handles: Vec<JoinHandle<()>> = jobs
            .into_iter()
            .map(|job| {
                tokio::spawn(supervise(
                    Arc::clone(&engine),
                    Arc::clone(&writer),
                    job,
                    client.clone(),
                    Arc::clone(&status),
                ))
            })
            .collect();
        handles.push(writer_task);
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

/// A target file's last good groups and what it looked like when read.
struct FileState {
    /// Modification time and length; `None` after a failed read, so it is retried.
    stamp: Option<(SystemTime, u64)>,
    groups: Vec<TargetGroup>,
}

/// Re-reads `path` if it changed. A deleted file has no targets; a file that cannot be
/// read or parsed keeps its previous targets (and is retried).
fn refresh_file(job: &str, path: &std::path::Path, state: &mut FileState) {
    let meta = match std::fs::metadata(path) {
        Ok(m) => m,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            state.stamp = None;
            state.groups.clear();
            return;
        }
        Err(e) => {
            tracing::warn!(job, file = %path.display(), error = %e, "target file unreadable");
            state.stamp = None;
            return;
        }
    };
    let stamp = meta.modified().ok().map(|t| (t, meta.len()));
    if stamp.is_some() && stamp == state.stamp {
        return;
    }
    match read_target_file(path) {
        Ok(groups) => {
            state.groups = groups;
            state.stamp = stamp;
        }
        Err(e) => {
            metrics::counter!("strata_scrape_target_file_errors_total", "job" => job.to_string())
                .increment(1);
            tracing::warn!(job, file = %path.display(), error = %e,
                "target file could not be read; keeping its previous targets");
            state.stamp = None;
        }
    }
}

/// Keeps a job's target tasks in line with its static targets and target files.
async fn supervise(
    engine: Arc<Engine>,
    writer: Arc<coalesce::Coalescer>,
    job: Arc<Job>,
    client: reqwest::Client,
    status: Arc<ScrapeStatus>,
) {
    let mut running: HashMap<Target, Running> = HashMap::new();
    let mut files: BTreeMap<PathBuf, FileState> = BTreeMap::new();
    loop {
        let paths: Vec<PathBuf> = job.files.iter().flat_map(|p| expand(p)).collect();
        files.retain(|p, _| paths.contains(p));
        for path in &paths {
            let state = files.entry(path.clone()).or_insert(FileState {
                stamp: None,
                groups: Vec::new(),
            });
            refresh_file(&job.name, path, state);
        }
        // Each target once, with the first source that names it.
        let mut wanted: BTreeMap<Target, String> = BTreeMap::new();
        let none = BTreeMap::new();
        for t in &job.targets {
            if let Some(t) = target(&job, t, &none) {
                wanted.entry(t).or_insert_with(|| "static".into());
            }
        }
        for (path, state) in &files {
            for g in &state.groups {
                for t in &g.targets {
                    if let Some(t) = target(&job, t, &g.labels) {
                        wanted
                            .entry(t)
                            .or_insert_with(|| path.display().to_string());
                    }
                }
            }
        }
        running.retain(|t, _| {
            let keep = wanted.contains_key(t);
            if !keep {
                status.remove(&t.key(&job.name));
            }
            keep
        });
        for (t, source) in wanted {
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
                    source,
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
                Arc::clone(&writer),
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

/// FNV-1a: a hash that stays the same across Rust releases (std's does not promise to).
fn fnv1a(parts: &[&str]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for p in parts {
        for b in p.bytes().chain([0]) {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0000_0100_0000_01b3);
        }
    }
    h
}

/// How long from `now_ns` (wall clock) until the target's phase in the interval: its
/// scrapes happen at `phase + k·interval`, the phase hashed from job and URL, so targets
/// are spread over the interval and keep their slot across restarts (as Prometheus').
fn offset(job: &str, url: &str, interval: Duration, now_ns: i64) -> Duration {
    let i = interval.as_nanos().max(1);
    let phase = u128::from(fnv1a(&[job, url])) % i;
    let now = u128::from(now_ns.unsigned_abs()) % i;
    Duration::from_nanos(((phase + i - now) % i) as u64)
}

async fn run_target(
    engine: Arc<Engine>,
    writer: Arc<coalesce::Coalescer>,
    job: Arc<Job>,
    target: Arc<Target>,
    client: reqwest::Client,
    status: Arc<ScrapeStatus>,
    key: String,
) {
    let delay = offset(
        &job.name,
        &target.url,
        job.interval,
        engine.clock().now_ns(),
    );
    let start = tokio::time::Instant::now() + delay;
    let mut ticks = tokio::time::interval_at(start, job.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        ticks.tick().await;
        scrape_once(&engine, &writer, &job, &target, &client, &status, &key).await;
    }
}

/// The outcome of fetching and decoding one page.
struct Page {
    points: Vec<Point>,
    scraped: usize,
    /// The page could not be used: `up` is 0.
    failed: bool,
    error: Option<String>,
}

impl Page {
    fn failed(error: String) -> Self {
        Self {
            points: vec![],
            scraped: 0,
            failed: true,
            error: Some(error),
        }
    }
}

/// GETs a `/metrics` page as Prometheus does (its Accept header, the scrape timeout
/// announced), at most `body_limit` bytes; returns the body and its content type.
pub(crate) async fn fetch_page(
    client: &reqwest::Client,
    url: &str,
    timeout: Duration,
    body_limit: usize,
) -> Result<(Vec<u8>, String), String> {
    let mut resp = client
        .get(url)
        .header(reqwest::header::ACCEPT, ACCEPT)
        .header(
            "X-Prometheus-Scrape-Timeout-Seconds",
            format!("{}", timeout.as_secs_f64()),
        )
        .timeout(timeout)
        .send()
        .await
        .map_err(|e| describe(&e, timeout))?;
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
    while let Some(chunk) = resp.chunk().await.map_err(|e| describe(&e, timeout))? {
        if body.len() + chunk.len() > body_limit {
            return Err(format!(
                "page is larger than the body_size_limit of {body_limit} bytes"
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
            return Page::failed(format!("page is not UTF-8 (at byte {})", e.valid_up_to()));
        }
    };
    let decoded = exposition::parse(
        text,
        Dialect::from_content_type(content_type),
        now,
        job.honor_timestamps,
    );
    let scraped = decoded.points.len();
    if scraped == 0 && !decoded.errors.is_empty() {
        let e = &decoded.errors[0];
        return Page::failed(format!(
            "no line of the page is a sample ({} bad lines); first: line {}: {}",
            decoded.errors.len(),
            e.line_number,
            e.error_message
        ));
    }
    let error = decoded.errors.first().map(|e| {
        format!(
            "{} line(s) could not be parsed and were skipped; first: line {}: {}",
            decoded.errors.len(),
            e.line_number,
            e.error_message
        )
    });
    let mut points = Vec::with_capacity(scraped);
    for mut p in decoded.points {
        let mut tags = p.tags.to_vec();
        attach_target_labels(&mut tags, &target.labels, job.honor_labels);
        p.tags = tags.into();
        if !job.metric_relabel.is_empty() {
            let mut labels: BTreeMap<String, String> = p
                .tags
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            labels.insert("__name__".into(), p.table.to_string());
            if !relabel::apply(&job.metric_relabel, &mut labels) {
                continue;
            }
            let table = labels.remove("__name__").unwrap_or_default();
            if table.is_empty() {
                continue;
            }
            p.table = table.into();
            p.tags = labels
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .filter_map(|(k, v)| Some((exposition::tag_name(k)?.into(), v.into())))
                .collect();
        }
        points.push(p);
    }
    if job.sample_limit > 0 && points.len() > job.sample_limit {
        return Page::failed(format!(
            "{} samples after relabelling exceed the sample_limit of {}; none were stored",
            points.len(),
            job.sample_limit
        ));
    }
    Page {
        points,
        scraped,
        failed: false,
        error,
    }
}

/// Adds the target's labels to a sample's; a clash keeps the sample's value under
/// `exported_<name>`, or only the sample's with `honor_labels`.
fn attach_target_labels(
    tags: &mut Vec<(Arc<str>, Arc<str>)>,
    target: &BTreeMap<String, String>,
    honor_labels: bool,
) {
    for (k, v) in target {
        match tags.iter().position(|(n, _)| **n == **k) {
            None => tags.push((k.as_str().into(), v.as_str().into())),
            Some(_) if honor_labels => {}
            Some(i) => {
                // `exported_` again until the name is free, as Prometheus does.
                let mut name = format!("exported_{k}");
                while tags.iter().any(|(n, _)| **n == *name) {
                    name.insert_str(0, "exported_");
                }
                tags[i].0 = name.into();
                tags.push((k.as_str().into(), v.as_str().into()));
            }
        }
    }
}

fn health_point(name: &str, target: &Target, value: f64, time: i64) -> Point {
    Point {
        table: name.into(),
        tags: target
            .labels
            .iter()
            .map(|(k, v)| (k.as_str().into(), v.as_str().into()))
            .collect(),
        fields: vec![(VALUE_FIELD.into(), FieldValue::F64(value))],
        time,
        line: 0,
    }
}

async fn scrape_once(
    engine: &Engine,
    writer: &coalesce::Coalescer,
    job: &Arc<Job>,
    target: &Arc<Target>,
    client: &reqwest::Client,
    status: &ScrapeStatus,
    key: &str,
) {
    let now = engine.clock().now_ns();
    let started = std::time::Instant::now();
    let mut page = match fetch_page(client, &target.url, job.timeout, job.body_limit).await {
        Ok((body, content_type)) => {
            // Parsing a large page is CPU work: off the I/O threads.
            let (job, target) = (Arc::clone(job), Arc::clone(target));
            tokio::task::spawn_blocking(move || {
                decode_page(&job, &target, &body, &content_type, now)
            })
            .await
            .unwrap_or_else(|e| Page::failed(format!("decoding the page failed: {e}")))
        }
        Err(e) => Page::failed(e),
    };
    let up = !page.failed;
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
    match writer.write(&job.database, points).await {
        Ok((accepted, rejected)) => {
            crate::http::count("scrape", "accepted", accepted);
            if let Some(first) = rejected.first() {
                crate::http::count("scrape", "rejected", rejected.len());
                let msg = format!(
                    "{} sample(s) refused by the store; first: line {}: {}",
                    rejected.len(),
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
        let t = target(&j, "10.0.0.1:9100", &group).expect("kept");
        assert_eq!(t.url, "http://10.0.0.1:9100/metrics");
        let labels: Vec<(&str, &str)> = t.labels.iter().map(|(k, v)| (&**k, &**v)).collect();
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
        assert!(target(&dropping, "10.0.0.1:9100", &BTreeMap::new()).is_none());
        // A target file may choose the path, scheme, job and URL parameters.
        let probe = BTreeMap::from(
            [
                ("__metrics_path__", "/probe"),
                ("__param_module", "http 2xx"),
                ("job", "blackbox"),
            ]
            .map(|(k, v)| (k.to_string(), v.to_string())),
        );
        let t = target(&j, "10.0.0.1:9115", &probe).expect("kept");
        assert_eq!(t.url, "http://10.0.0.1:9115/probe?module=http+2xx");
        assert_eq!(t.labels["job"], "blackbox");
        assert!(!t.labels.keys().any(|k| k.starts_with("__")));
    }

    #[test]
    fn pages_are_relabelled_labelled_and_limited() {
        let page =
            b"# TYPE a counter\na_total{job=\"app\",x=\"1\"} 3\ngo_goroutines 7\nbad line here\n";
        // metric_relabel sees the target's labels (here: drops job `node`'s go_*) and
        // can clean up exported_ labels.
        let j = job(|c| {
            c.metric_relabel.push(RelabelConfig {
                action: Some("drop".into()),
                source_labels: vec!["job".into(), "__name__".into()],
                regex: Some("node;go_.*".into()),
                ..Default::default()
            });
            c.metric_relabel.push(RelabelConfig {
                action: Some("replace".into()),
                source_labels: vec!["exported_job".into()],
                target_label: Some("app".into()),
                ..Default::default()
            });
        });
        let t = target(&j, "h:1", &BTreeMap::new()).expect("target");
        let p = decode_page(&j, &t, page, "text/plain; version=0.0.4", 42);
        assert_eq!(p.scraped, 2);
        assert_eq!(p.points.len(), 1);
        let tags: Vec<(&str, &str)> = p.points[0].tags.iter().map(|(k, v)| (&**k, &**v)).collect();
        assert_eq!(
            tags,
            [
                ("app", "app"),
                ("exported_job", "app"),
                ("instance", "h:1"),
                ("job", "node"),
                ("x", "1")
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
        assert!(!p.points[0].tags.iter().any(|(k, _)| &**k == "exported_job"));
        assert!(!p.failed);
        // exported_ again while the name is taken.
        let clash = b"m{job=\"a\",exported_job=\"b\"} 1\n";
        let p = decode_page(&honor_not(&t), &t, clash, "text/plain", 42);
        let names: Vec<&str> = p.points[0].tags.iter().map(|(k, _)| &**k).collect();
        assert_eq!(
            names,
            ["exported_exported_job", "exported_job", "instance", "job"]
        );
        // A page with no sample at all (an HTML error page served with 200) is a failure.
        let p = decode_page(&honor, &t, b"<html>oops</html>", "text/html", 42);
        assert!(p.failed && p.points.is_empty());
        assert!(
            p.error
                .as_deref()
                .is_some_and(|e| e.contains("no line of the page"))
        );
        let limited = job(|c| c.sample_limit = Some(1));
        let p = decode_page(&limited, &t, page, "text/plain", 42);
        assert!(p.points.is_empty() && p.failed, "over the limit: up = 0");
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

    fn honor_not(_t: &Target) -> Job {
        job(|_| {})
    }

    #[test]
    fn target_files_in_json_and_yaml_and_patterns() {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(
            dir.path().join("a.yml"),
            "- targets: ['h1:9100', 'h2:9100']\n  labels:\n    rack: r1\n",
        )
        .expect("yaml");
        std::fs::write(dir.path().join("b.json"), r#"[{"targets": ["h3:9100"]}]"#).expect("json");
        std::fs::write(dir.path().join("c.yaml"), "targets: nope").expect("bad");
        let groups = read_target_file(&dir.path().join("a.yml")).expect("yaml groups");
        assert_eq!(groups[0].targets, ["h1:9100", "h2:9100"]);
        assert_eq!(groups[0].labels["rack"], "r1");
        let err = read_target_file(&dir.path().join("c.yaml")).expect_err("not a list");
        assert!(err.contains("not a YAML list"), "{err}");
        let names = |v: Vec<PathBuf>| -> Vec<String> {
            v.iter()
                .filter_map(|p| p.file_name().and_then(|n| n.to_str()).map(String::from))
                .collect()
        };
        assert_eq!(
            names(expand(&dir.path().join("*.y*ml"))),
            ["a.yml", "c.yaml"]
        );
        assert_eq!(names(expand(&dir.path().join("?.json"))), ["b.json"]);
        assert_eq!(
            names(expand(&dir.path().join("missing.json"))),
            ["missing.json"]
        );
    }

    #[test]
    fn offsets_spread_and_keep_their_phase() {
        let i = Duration::from_secs(10);
        let now = 1_700_000_003_250_000_000;
        let offs: Vec<Duration> = (0..100)
            .map(|n| offset("j", &format!("http://h{n}:1/metrics"), i, now))
            .collect();
        assert!(offs.iter().all(|o| *o < i));
        // Started 2.5 s later, a target waits 2.5 s less (mod the interval): same phase.
        let later = offset("j", "http://h3:1/metrics", i, now + 2_500_000_000);
        assert_eq!(
            (offs[3].as_nanos() + 10_000_000_000 - later.as_nanos()) % 10_000_000_000,
            2_500_000_000
        );
        let first_half = offs.iter().filter(|o| **o < i / 2).count();
        assert!(
            (25..=75).contains(&first_half),
            "{first_half} of 100 in the first half"
        );
    }
}
