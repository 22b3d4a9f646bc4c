//! Sample-to-notification latency: a real `strata serve` with one rule evaluated every
//! second (`FOR 0s`, `group_wait 0s`) and a local webhook receiver; each trial writes one
//! sample over the threshold for a new host and times until the webhook holds that host's
//! firing alert. Each write waits a random fraction of the interval first (seeded), so
//! the trials sample every phase of the evaluation schedule instead of locking onto one.
//! Reports min / p50 / p99 / max over the trials.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;

use crate::server::Strata;

#[derive(Debug, clap::Args)]
pub struct Options {
    /// Number of trials.
    #[arg(long, default_value_t = 100)]
    pub trials: usize,
    /// The rule's evaluation interval.
    #[arg(long, default_value = "1s")]
    pub every: String,
    /// The `strata` binary (by default the one beside this harness).
    #[arg(long)]
    pub strata: Option<PathBuf>,
}

/// Latencies in milliseconds, sorted.
pub async fn run(opts: &Options) -> Result<Vec<f64>, Box<dyn std::error::Error + Send + Sync>> {
    let (tx, mut rx) = mpsc::unbounded_channel::<(String, Instant)>();
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let tx = tx.clone();
            async move {
                let at = Instant::now();
                if let Ok(v) = serde_json::from_slice::<serde_json::Value>(&body) {
                    for a in v["alerts"].as_array().into_iter().flatten() {
                        if a["status"] == "firing"
                            && let Some(h) = a["labels"]["host"].as_str()
                        {
                            let _ = tx.send((h.to_string(), at));
                        }
                    }
                }
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let hook = format!("http://{}/hook", listener.local_addr()?);
    tokio::spawn(async move { axum::serve(listener, app).await });

    let work = tempfile::tempdir()?;
    let config = work.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[alerting.route]\nreceiver = \"hook\"\ngroup_by = [\"host\"]\ngroup_wait = \"0s\"\n\
             group_interval = \"1s\"\n[[alerting.receivers]]\nname = \"hook\"\n\
             [[alerting.receivers.webhook]]\nurl = \"{hook}\"\n"
        ),
    )?;
    let binary = crate::server::strata_binary(opts.strata.as_deref())?;
    let config_arg = config.to_string_lossy().to_string();
    let strata = Strata::start(
        &binary,
        &work.path().join("data"),
        &["--config", &config_arg],
    )?;
    let client = reqwest::Client::new();
    let now = || {
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos())
    };
    let write = |host: String| {
        let client = client.clone();
        let url = strata.url("/api/v3/write_lp?db=metrics&precision=nanosecond");
        let body = format!("cpu,host={host} usage_user=95 {}", now());
        async move { client.post(url).body(body).send().await?.error_for_status() }
    };
    write("warmup".into()).await?;
    strata
        .sql(
            &client,
            "metrics",
            &format!(
                "CREATE ALERT latency EVERY '{}' FOR '0s' AS SELECT host, max(usage_user) AS value \
                 FROM cpu WHERE time > now() - interval '3 seconds' GROUP BY host \
                 HAVING max(usage_user) > 90",
                opts.every
            ),
        )
        .await?;
    let every =
        strata_catalog::units::parse_duration(&opts.every).map_err(|e| format!("--every: {e}"))?;
    let mut rng = crate::tsbs::data::Rng::new(42);
    let mut out = Vec::with_capacity(opts.trials);
    for i in 0..opts.trials {
        tokio::time::sleep(every.mul_f64(rng.unit())).await;
        let host = format!("t{i}");
        let started = Instant::now();
        write(host.clone()).await?;
        let deadline = started + Duration::from_secs(30);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let Ok(Some((h, at))) = tokio::time::timeout(left, rx.recv()).await else {
                return Err(format!("trial {i}: no notification within 30 s").into());
            };
            if h == host {
                out.push(at.duration_since(started).as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    out.sort_by(f64::total_cmp);
    Ok(out)
}

/// The value at quantile `q` of sorted `v` (nearest rank).
pub fn quantile(v: &[f64], q: f64) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    v[rank - 1]
}
