//! Collection benchmarks against a real `strata serve`:
//!
//! - `remote-write`: Prometheus remote_write throughput. The series of a real
//!   node_exporter page (recorded from Debian's node_exporter 1.5, ~500 per instance) ×
//!   `--instances`, one sample each per round, 10 s apart, pre-encoded into requests of
//!   500 series (Prometheus' `max_samples_per_send`) and posted with `--concurrency` in
//!   flight. Reports samples/s and samples per CPU-second of the server
//!   (`/proc/<pid>/stat`), and checks that every sample was stored.
//! - `scrape`: the cost of scraping `--targets` endpoints at `--interval`. This process
//!   serves the same recorded page on one loopback port per target; Strata scrapes them
//!   all; after the first full round, the server's CPU use over `--duration` is measured
//!   (cores busy), with the scrape durations Strata recorded (p50/p99) and whether every
//!   target was scraped on schedule.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::StreamExt;
use strata_ingest::exposition::{self, Dialect};
use strata_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};

use crate::server::Strata;
use crate::tsbs::{cpu_time, peak_rss};

type Result<T> = std::result::Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The node_exporter page every simulated target serves.
const PAGE: &str = include_str!("../../ingest/tests/data/node_exporter_1.5.txt");

#[derive(Debug, clap::Args)]
pub struct RemoteWriteOptions {
    /// Simulated node_exporter instances (~500 series each).
    #[arg(long, default_value_t = 200)]
    pub instances: usize,
    /// Samples per series (10 s apart).
    #[arg(long, default_value_t = 10)]
    pub rounds: usize,
    /// Requests in flight.
    #[arg(long, default_value_t = 8)]
    pub concurrency: usize,
    /// The `strata` binary (by default the one beside this harness).
    #[arg(long)]
    pub strata: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
pub struct ScrapeOptions {
    #[arg(long, default_value_t = 1000)]
    pub targets: usize,
    #[arg(long, default_value = "10s")]
    pub interval: String,
    /// How long the server's CPU use is measured, after the first full round.
    #[arg(long, default_value = "60s")]
    pub duration: String,
    #[arg(long)]
    pub strata: Option<PathBuf>,
}

fn binary(opt: &Option<PathBuf>) -> Result<PathBuf> {
    Ok(crate::server::strata_binary(opt.as_deref())?)
}

#[derive(Debug)]
pub struct RemoteWriteReport {
    pub samples: usize,
    pub requests: usize,
    pub wall: Duration,
    pub server_cpu: Duration,
    pub peak_rss_bytes: u64,
    /// 503 answers (over the memory budget) retried.
    pub retries: usize,
    /// The hot table's size right after the load (`system.tables.hot_bytes`).
    pub hot_bytes: u64,
}

pub async fn remote_write(opts: &RemoteWriteOptions) -> Result<RemoteWriteReport> {
    let work = tempfile::tempdir()?;
    let strata = Strata::start(&binary(&opts.strata)?, &work.path().join("data"), &[])?;
    let pid = strata.child.id();
    let page = exposition::parse(PAGE, Dialect::Prometheus, 0, false);
    let now_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_millis() as i64;
    // Every series once per round; requests of 500 series, as Prometheus sends them.
    let mut series: Vec<Vec<Label>> = Vec::new();
    for i in 0..opts.instances {
        for p in &page.points {
            let mut labels = vec![Label {
                name: "__name__".into(),
                value: p.table.to_string(),
            }];
            labels.extend(p.tags.iter().map(|(k, v)| Label {
                name: k.to_string(),
                value: v.to_string(),
            }));
            labels.push(Label {
                name: "instance".into(),
                value: format!("node-{i}:9100"),
            });
            labels.push(Label {
                name: "job".into(),
                value: "node".into(),
            });
            series.push(labels);
        }
    }
    let mut bodies = Vec::new();
    for r in 0..opts.rounds {
        let ts = now_ms - (opts.rounds - r) as i64 * 10_000;
        for chunk in series.chunks(500) {
            let req = WriteRequest {
                timeseries: chunk
                    .iter()
                    .enumerate()
                    .map(|(k, labels)| TimeSeries {
                        labels: labels.clone(),
                        samples: vec![Sample {
                            value: (r * 31 + k) as f64 * 0.5,
                            timestamp: ts,
                        }],
                        histograms: vec![],
                    })
                    .collect(),
            };
            bodies.push(encode(&req));
        }
    }
    let samples = series.len() * opts.rounds;
    let client = reqwest::Client::new();
    let url = strata.url("/api/v1/write");
    let cpu0 = cpu_time(pid).unwrap_or_default();
    let started = Instant::now();
    // Like Prometheus: a 503 (over the memory budget) is retried after Retry-After.
    let retries = std::sync::atomic::AtomicUsize::new(0);
    let results: Vec<Result<()>> = futures::stream::iter(bodies.iter().map(|b| {
        let (client, url, retries) = (&client, &url, &retries);
        async move {
            loop {
                let r = client
                    .post(url)
                    .header("Content-Type", "application/x-protobuf")
                    .header("Content-Encoding", "snappy")
                    .body(b.clone())
                    .send()
                    .await?;
                match r.status().as_u16() {
                    204 => return Ok(()),
                    503 => {
                        retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                    _ => {
                        return Err(format!(
                            "remote_write answered {}: {}",
                            r.status(),
                            r.text().await?
                        )
                        .into());
                    }
                }
            }
        }
    }))
    .buffer_unordered(opts.concurrency)
    .collect()
    .await;
    let wall = started.elapsed();
    let server_cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    results.into_iter().collect::<Result<Vec<()>>>()?;
    let hot = strata
        .sql(
            &client,
            "metrics",
            "SELECT sum(hot_bytes) AS b FROM system.tables",
        )
        .await?;
    let hot_bytes = hot[0]["b"].as_f64().unwrap_or(0.0) as u64;
    // Every sample of one metric is there.
    let per_instance = page
        .points
        .iter()
        .filter(|p| &*p.table == "node_cpu_seconds_total")
        .count();
    let rows = strata
        .sql(
            &client,
            "metrics",
            "SELECT count(*) AS n FROM node_cpu_seconds_total",
        )
        .await?;
    let stored = rows[0]["n"].as_i64().unwrap_or(-1);
    let want = (per_instance * opts.instances * opts.rounds) as i64;
    if stored != want {
        return Err(format!("stored {stored} node_cpu_seconds_total samples, sent {want}").into());
    }
    Ok(RemoteWriteReport {
        samples,
        requests: bodies.len(),
        wall,
        server_cpu,
        peak_rss_bytes: peak_rss(pid).unwrap_or(0),
        retries: retries.into_inner(),
        hot_bytes,
    })
}

#[derive(Debug)]
pub struct ScrapeReport {
    pub targets: usize,
    pub samples_per_page: usize,
    pub measured: Duration,
    pub server_cpu: Duration,
    pub scrapes: u64,
    pub expected_scrapes: u64,
    pub p50_ms: f64,
    pub p99_ms: f64,
    pub peak_rss_bytes: u64,
}

pub async fn scrape(opts: &ScrapeOptions) -> Result<ScrapeReport> {
    let interval = strata_catalog::units::parse_duration(&opts.interval)?;
    let duration = strata_catalog::units::parse_duration(&opts.duration)?;
    // One loopback listener per target, all serving the recorded page.
    let page: Arc<str> = Arc::from(PAGE);
    let mut targets = Vec::new();
    for _ in 0..opts.targets {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        targets.push(format!("\"{}\"", listener.local_addr()?));
        let page = Arc::clone(&page);
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let page = Arc::clone(&page);
                async move {
                    (
                        [("content-type", "text/plain; version=0.0.4; charset=utf-8")],
                        page.to_string(),
                    )
                }
            }),
        );
        tokio::spawn(async move { axum::serve(listener, app).await });
    }
    let work = tempfile::tempdir()?;
    let config = work.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[[scrape]]\njob = \"bench\"\ninterval = \"{}\"\ntargets = [{}]\n",
            opts.interval,
            targets.join(", ")
        ),
    )?;
    let config_arg = config.to_string_lossy().to_string();
    let strata = Strata::start(
        &binary(&opts.strata)?,
        &work.path().join("data"),
        &["--config", &config_arg],
    )?;
    let pid = strata.child.id();
    let client = reqwest::Client::new();
    let scrapes = || async {
        let rows = strata
            .sql(
                &client,
                "metrics",
                "SELECT sum(scrapes) AS n, count(*) FILTER (WHERE health = 'up') AS up FROM system.scrape_targets",
            )
            .await?;
        Ok::<_, Box<dyn std::error::Error + Send + Sync>>((
            rows[0]["n"].as_u64().unwrap_or(0),
            rows[0]["up"].as_u64().unwrap_or(0),
        ))
    };
    // Wait for one full round: every target up.
    let deadline = Instant::now() + interval * 3 + Duration::from_secs(30);
    loop {
        let (_, up) = scrapes().await?;
        if up as usize == opts.targets {
            break;
        }
        if Instant::now() > deadline {
            return Err(format!("only {up} of {} targets up", opts.targets).into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (n0, _) = scrapes().await?;
    let cpu0 = cpu_time(pid).unwrap_or_default();
    let t0 = Instant::now();
    let start_ns = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_nanos();
    tokio::time::sleep(duration).await;
    let server_cpu = cpu_time(pid).unwrap_or_default().saturating_sub(cpu0);
    let measured = t0.elapsed();
    let (n1, _) = scrapes().await?;
    let q = strata
        .sql(
            &client,
            "metrics",
            &format!(
                "SELECT approx_percentile_cont(0.5) WITHIN GROUP (ORDER BY value) AS p50, \
                 approx_percentile_cont(0.99) WITHIN GROUP (ORDER BY value) AS p99 \
                 FROM scrape_duration_seconds WHERE time >= to_timestamp_nanos({start_ns})"
            ),
        )
        .await?;
    let samples_per_page = exposition::parse(PAGE, Dialect::Prometheus, 0, true)
        .points
        .len();
    Ok(ScrapeReport {
        targets: opts.targets,
        samples_per_page,
        measured,
        server_cpu,
        scrapes: n1 - n0,
        expected_scrapes: (opts.targets as f64 * measured.as_secs_f64() / interval.as_secs_f64())
            as u64,
        p50_ms: q[0]["p50"].as_f64().unwrap_or(f64::NAN) * 1e3,
        p99_ms: q[0]["p99"].as_f64().unwrap_or(f64::NAN) * 1e3,
        peak_rss_bytes: peak_rss(pid).unwrap_or(0),
    })
}
