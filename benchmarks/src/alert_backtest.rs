//! Backtest throughput: a real `strata serve` holding `hosts` series of `cpu` at 10 s
//! for the last `hours`, one rule (avg over the last minute above 90, per host), and one
//! backtest over the whole range at `every`. Reports the load time, the backtest's wall
//! time, evaluations per second and raw rows scanned per second (each evaluation reads
//! one minute of every host).

use std::path::PathBuf;
use std::time::Instant;

use crate::server::Strata;

#[derive(Debug, clap::Args)]
pub struct Options {
    #[arg(long, default_value_t = 100)]
    pub hosts: usize,
    #[arg(long, default_value_t = 24)]
    pub hours: u64,
    /// The backtest's evaluation interval.
    #[arg(long, default_value = "1m")]
    pub every: String,
    /// The `strata` binary (by default the one beside this harness).
    #[arg(long)]
    pub strata: Option<PathBuf>,
}

#[derive(Debug)]
pub struct Measured {
    pub rows: u64,
    pub load_s: f64,
    pub evaluations: u64,
    pub backtest_s: f64,
    pub episodes: usize,
    pub summary: String,
}

pub async fn run(opts: &Options) -> Result<Measured, Box<dyn std::error::Error + Send + Sync>> {
    let work = tempfile::tempdir()?;
    let binary = crate::server::strata_binary(opts.strata.as_deref())?;
    let strata = Strata::start(&binary, &work.path().join("data"), &[])?;
    let client = reqwest::Client::new();
    let now = i64::try_from(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)?
            .as_nanos(),
    )?;
    let step = 10_000_000_000i64;
    let span = i64::try_from(opts.hours)? * 3600 * 1_000_000_000;
    let url = strata.url("/api/v3/write_lp?db=metrics&precision=nanosecond");
    // Each host runs hot (95) for 10 minutes once every 6 hours, at its own phase.
    let started = Instant::now();
    let mut rows = 0u64;
    let mut t = now - span;
    let mut body = String::new();
    while t <= now {
        for h in 0..opts.hosts {
            let phase = (t / step + i64::try_from(h)? * 37) % 2160;
            let v = if phase < 60 { 95 } else { 10 + (phase % 50) };
            body.push_str(&format!("cpu,host=host_{h} usage_user={v} {t}\n"));
            rows += 1;
        }
        if body.len() > 4 << 20 {
            client
                .post(&url)
                .body(std::mem::take(&mut body))
                .send()
                .await?
                .error_for_status()?;
        }
        t += step;
    }
    if !body.is_empty() {
        client
            .post(&url)
            .body(body)
            .send()
            .await?
            .error_for_status()?;
    }
    let load_s = started.elapsed().as_secs_f64();
    strata
        .sql(
            &client,
            "metrics",
            "CREATE ALERT hot EVERY '1m' FOR '2m' AS SELECT host, avg(usage_user) AS value \
             FROM cpu WHERE time > now() - interval '1 minute' GROUP BY host \
             HAVING avg(usage_user) > 90",
        )
        .await?;
    let started = Instant::now();
    let report: serde_json::Value = client
        .post(strata.url("/api/v1/alert_rules/hot/backtest"))
        .json(&serde_json::json!({
            "from": format!("now-{}h", opts.hours), "every": opts.every}))
        .send()
        .await?
        .error_for_status()?
        .json()
        .await?;
    Ok(Measured {
        rows,
        load_s,
        evaluations: report["evaluations"].as_u64().unwrap_or(0),
        backtest_s: started.elapsed().as_secs_f64(),
        episodes: report["episodes"].as_array().map_or(0, Vec::len),
        summary: report["summary"].as_str().unwrap_or("").to_string(),
    })
}
