//! Kafka consumption throughput: a real broker (tansu) is filled with N points first, then
//! a release `strata` consumes them; reports points/s until all are queryable, and points
//! per CPU-second of the Strata process (the per-core figure). JSON and line protocol.
//!
//! ```sh
//! scripts/kafka.sh install && cargo build --release --workspace
//! cargo run --release -p strata-benchmarks --bin kafka -- --strata target/release/strata
//! ```

use std::path::PathBuf;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use clap::Parser;
use serde_json::Value;
use strata_benchmarks::data::{cpu_lines, usage};
use strata_benchmarks::kafka::Broker;
use strata_benchmarks::server::Strata;

#[derive(Debug, Parser)]
struct Args {
    /// The strata binary to measure.
    #[arg(long, default_value = "target/release/strata")]
    strata: PathBuf,
    /// Hosts; points = hosts × steps.
    #[arg(long, default_value_t = 1000)]
    hosts: u64,
    #[arg(long, default_value_t = 500)]
    steps: u64,
    /// Partitions of each topic.
    #[arg(long, default_value_t = 6)]
    partitions: i32,
    /// librdkafka properties for Strata's consumer, `key=value`; repeatable.
    #[arg(long = "property")]
    properties: Vec<String>,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

/// CPU seconds (user + system) the process has used, from /proc.
fn cpu_seconds(pid: u32) -> Res<f64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks: f64 = fields[11].parse::<f64>()? + fields[12].parse::<f64>()?;
    Ok(ticks / 100.0)
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let broker = Broker::start(&dir.path().join("broker.log"))?;
    broker
        .create_topics(&[("json", a.partitions), ("lp", a.partitions)])
        .await?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_nanos() as i64;
    let base = (now - 6 * 3600 * 1_000_000_000) / 1_000_000_000 * 1_000_000_000;
    let points = a.hosts * a.steps;

    // Fill both topics before Strata starts: one message per step and partition slice.
    let p = broker.producer()?;
    for i in 0..a.steps {
        let part = (i % a.partitions as u64) as i32;
        p.send("lp", part, cpu_lines(a.hosts, i, i + 1, base).as_bytes())?;
        let items: Vec<String> = (0..a.hosts)
            .map(|h| {
                format!(
                    r#"{{"metric_name":"cpu","timestamp":{},"value":{},"labels":{{"host":"host-{h:05}","pool":"pool-{:03}"}}}}"#,
                    base / 1_000_000 + i as i64 * 1000,
                    usage(h, i),
                    h / 100
                )
            })
            .collect();
        p.send("json", part, format!("[{}]", items.join(",")).as_bytes())?;
    }
    p.flush()?;
    println!(
        "broker filled: {points} points per topic, {} partitions",
        a.partitions
    );

    for (topic, format, db) in [
        ("json", "json", "bench_json"),
        ("lp", "line_protocol", "bench_lp"),
    ] {
        let cfg = dir.path().join(format!("{topic}.toml"));
        let properties: String = a
            .properties
            .iter()
            .filter_map(|kv| kv.split_once('='))
            .map(|(k, v)| format!("\"{k}\" = \"{v}\"\n"))
            .collect();
        std::fs::write(
            &cfg,
            format!(
                "[kafka]\nbrokers = \"{}\"\ngroup = \"bench-{topic}\"\n[kafka.properties]\n{properties}[[kafka.topics]]\nname = \"{topic}\"\ndatabase = \"{db}\"\nformat = \"{format}\"\n",
                broker.addr
            ),
        )?;
        let data = dir.path().join(format!("data-{topic}"));
        let cfg_arg = cfg.display().to_string();
        let server = Strata::start(&a.strata, &data, &["--config", &cfg_arg])?;
        let client = reqwest::Client::new();
        let deadline = Instant::now() + Duration::from_secs(600);
        // The clock starts once the group has assigned the partitions: joining is not
        // consumption.
        loop {
            let r = client
                .get(server.url("/api/v3/query_sql"))
                .query(&[
                    ("db", "metrics"), // exists before the first point arrives
                    (
                        "q",
                        "SELECT count(*) AS n FROM system.kafka_partitions WHERE assigned",
                    ),
                    ("format", "json"),
                ])
                .send()
                .await?;
            let body = r.text().await?;
            let rows: Vec<Value> = serde_json::from_str(&body)
                .map_err(|e| format!("status query answered {body}: {e}"))?;
            if rows[0]["n"].as_i64() == Some(i64::from(a.partitions)) {
                break;
            }
            if Instant::now() > deadline {
                return Err(format!("{topic}: partitions never assigned").into());
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        let started = Instant::now();
        loop {
            let r = client
                .get(server.url("/api/v3/query_sql"))
                .query(&[
                    ("db", db),
                    ("q", "SELECT count(*) AS n FROM cpu"),
                    ("format", "json"),
                ])
                .send()
                .await?;
            if r.status().is_success() {
                let rows: Vec<Value> = r.json().await?;
                if rows[0]["n"].as_u64() == Some(points) {
                    break;
                }
            }
            if Instant::now() > deadline {
                return Err(format!("{topic}: not all points arrived in time").into());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let secs = started.elapsed().as_secs_f64();
        let cpu = cpu_seconds(server.child.id())?;
        // Time the consumer thread spent writing (engine write to WAL fsync, dead
        // letters, commit), the rest being polling and decoding.
        let metrics = client
            .get(server.url("/metrics"))
            .send()
            .await?
            .text()
            .await?;
        let flush_secs: f64 = metrics
            .lines()
            .find_map(|l| l.strip_prefix("strata_kafka_flush_seconds_sum "))
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(f64::NAN);
        println!(
            "{topic:>4}: {points} points in {secs:.2} s = {:.0} points/s ({:.0} field values/s); \
             strata used {cpu:.2} CPU-s = {:.0} points per CPU-second; {flush_secs:.2} s in writes",
            points as f64 / secs,
            points as f64 * if topic == "lp" { 3.0 } else { 1.0 } / secs,
            points as f64 / cpu
        );
    }
    Ok(())
}
