//! The storage-spine macro-benchmark: HTTP line-protocol ingest rate for N points,
//! Parquet bytes per value once persisted, and `date_bin` aggregate latency on hot and on
//! persisted data. Run against a release build:
//!
//! ```sh
//! cargo build --release && cargo run --release -p strata-benchmarks --bin spine -- --strata target/release/strata
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use futures::StreamExt;
use serde_json::Value;
use strata_benchmarks::data::cpu_lines;
use strata_benchmarks::server::Strata;

#[derive(Debug, Parser)]
struct Args {
    /// The strata binary to measure.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Hosts (series per field).
    #[arg(long, default_value_t = 1000)]
    hosts: u64,
    /// Seconds of data per host; points = hosts × steps.
    #[arg(long, default_value_t = 1000)]
    steps: u64,
    /// Steps per write request (lines per request = hosts × this).
    #[arg(long, default_value_t = 10)]
    steps_per_request: u64,
    /// Concurrent writers.
    #[arg(long, default_value_t = 4)]
    concurrency: usize,
    /// Repetitions of each query.
    #[arg(long, default_value_t = 20)]
    query_runs: usize,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

#[tokio::main]
async fn main() -> Res<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let server = Strata::start(
        &a.strata,
        dir.path(),
        &["--chunk-duration", "10m", "--persist-age", "2s"],
    )?;
    let client = reqwest::Client::new();
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let base = (now - 6 * 3600 * 1_000_000_000) / 600_000_000_000 * 600_000_000_000;

    // Bodies are generated before the clock starts: we measure Strata, not the generator.
    let bodies: Vec<String> = (0..a.steps)
        .step_by(a.steps_per_request as usize)
        .map(|from| {
            cpu_lines(
                a.hosts,
                from,
                (from + a.steps_per_request).min(a.steps),
                base,
            )
        })
        .collect();
    let points = a.hosts * a.steps;
    let bytes: usize = bodies.iter().map(String::len).sum();
    let url = server.url("/api/v3/write_lp?db=bench&precision=nanosecond");
    let started = Instant::now();
    let results: Vec<Res<()>> = futures::stream::iter(bodies)
        .map(|body| {
            let client = client.clone();
            let url = url.clone();
            async move {
                let r = client.post(&url).body(body).send().await?;
                if r.status().as_u16() != 204 {
                    return Err(format!("write failed: {} {}", r.status(), r.text().await?).into());
                }
                Ok(())
            }
        })
        .buffer_unordered(a.concurrency)
        .collect()
        .await;
    let ingest = started.elapsed();
    for r in results {
        r?;
    }
    println!(
        "ingest: {points} points ({:.1} MB of line protocol) in {:.2?}: {:.0} points/s, {:.0} field values/s",
        bytes as f64 / 1e6,
        ingest,
        points as f64 / ingest.as_secs_f64(),
        3.0 * points as f64 / ingest.as_secs_f64()
    );

    let count = query(&client, &server, "SELECT count(*) AS n FROM cpu").await?;
    println!("check: count(*) = {}", count[0]["n"]);
    let q = "SELECT date_bin(INTERVAL '1 minute', time) AS minute, pool, avg(usage) AS u, max(usage) AS m \
             FROM cpu GROUP BY 1, 2 ORDER BY 1, 2";
    let qh = "SELECT date_bin(INTERVAL '1 minute', time) AS minute, avg(usage) AS u, max(usage) AS m \
              FROM cpu WHERE host = 'host-00042' GROUP BY 1 ORDER BY 1";
    latency(
        &client,
        &server,
        "hot      date_bin 1m × pool, all hosts",
        q,
        a.query_runs,
    )
    .await?;
    latency(
        &client,
        &server,
        "hot      date_bin 1m, one host",
        qh,
        a.query_runs,
    )
    .await?;

    // Phase 2: restart with a short persist age. Start-up replays the WAL (timed), then
    // every chunk is persisted.
    drop(server);
    let started = Instant::now();
    let server = Strata::start(
        &a.strata,
        dir.path(),
        &["--chunk-duration", "10m", "--persist-age", "1s"],
    )?;
    println!(
        "restart after kill: WAL replay of {points} points and start-up in {:.2?}",
        started.elapsed()
    );
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let t = query(
            &client,
            &server,
            "SELECT hot_rows, parquet_files, parquet_bytes, parquet_rows FROM system.tables",
        )
        .await?;
        if t[0]["hot_rows"].as_u64() == Some(0) {
            let bytes = t[0]["parquet_bytes"].as_u64().unwrap_or(0);
            let rows = t[0]["parquet_rows"].as_u64().unwrap_or(0);
            println!(
                "parquet: {} files, {rows} rows, {bytes} bytes: {:.2} bytes per field value (3 fields/row), {:.2} bytes per row incl. tags and time",
                t[0]["parquet_files"],
                bytes as f64 / (3 * rows.max(1)) as f64,
                bytes as f64 / rows.max(1) as f64
            );
            break;
        }
        if Instant::now() > deadline {
            return Err("persistence did not finish in 10 minutes".into());
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    latency(
        &client,
        &server,
        "parquet  date_bin 1m × pool, all hosts",
        q,
        a.query_runs,
    )
    .await?;
    latency(
        &client,
        &server,
        "parquet  date_bin 1m, one host",
        qh,
        a.query_runs,
    )
    .await?;
    Ok(())
}

async fn query(client: &reqwest::Client, s: &Strata, sql: &str) -> Res<Vec<Value>> {
    s.sql(client, "bench", sql)
        .await
        .map_err(|e| -> Box<dyn std::error::Error> { e })
}

async fn latency(
    client: &reqwest::Client,
    s: &Strata,
    name: &str,
    sql: &str,
    runs: usize,
) -> Res<()> {
    query(client, s, sql).await?; // warm-up
    let mut times = Vec::with_capacity(runs);
    let mut rows = 0;
    for _ in 0..runs {
        let t = Instant::now();
        rows = query(client, s, sql).await?.len();
        times.push(t.elapsed());
    }
    times.sort();
    println!(
        "query {name}: {rows} rows, median {:.1?}, p95 {:.1?}, min {:.1?}",
        times[runs / 2],
        times[(runs * 95 / 100).min(runs - 1)],
        times[0]
    );
    Ok(())
}
