//! Tier figures: rollup throughput (raw rows rolled up per second), bytes per value in each
//! tier, and the latency of a by-day query over a year answered from the cold tier versus
//! the same answer from raw data. In-process engine and query engine, injected clock.
//!
//! ```sh
//! cargo run --release -p strata-benchmarks --bin tiers -- --series 1000 --days 7
//! ```

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use clap::Parser;
use futures::TryStreamExt;
use strata_catalog::Tier;
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const SEC: i64 = 1_000_000_000;
const DAY: i64 = 86_400 * SEC;

#[derive(Debug, Parser)]
struct Args {
    /// Series (hosts).
    #[arg(long, default_value_t = 1000)]
    series: usize,
    /// Days of data.
    #[arg(long, default_value_t = 7)]
    days: i64,
    /// Seconds between points of a series.
    #[arg(long, default_value_t = 60)]
    interval: i64,
    /// Float fields per point.
    #[arg(long, default_value_t = 4)]
    fields: usize,
    /// Timed runs of each query (after one warm-up).
    #[arg(long, default_value_t = 5)]
    runs: usize,
}

type Res<T> = Result<T, Box<dyn std::error::Error>>;

async fn run(q: &QueryEngine, sql: &str) -> Res<Vec<RecordBatch>> {
    let (_, stream) = q.query("metrics", sql).await?;
    Ok(stream.try_collect().await?)
}

async fn median_ms(q: &QueryEngine, sql: &str, runs: usize) -> Res<(f64, String)> {
    let first = run(q, sql).await?;
    let text = pretty_format_batches(&first)?.to_string();
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        run(q, sql).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    times.sort_by(f64::total_cmp);
    Ok((times[times.len() / 2], text))
}

#[tokio::main]
async fn main() -> Res<()> {
    let a = Args::parse();
    let dir = tempfile::tempdir()?;
    let now = T0 + a.days * DAY + 2 * 3600 * SEC;
    let clock = ManualClock::new(now);
    let mut c = EngineConfig::for_test(dir.path());
    c.persist_interval = Duration::from_secs(3600);
    c.rollup_interval = Duration::from_secs(3600);
    c.chunk_duration = Duration::from_secs(3600);
    c.memory_budget_bytes = 8 << 30;
    // Raw data is kept for the whole run, so both answers can be timed.
    let year = Duration::from_secs(400 * 86_400);
    c.hot_retention = year;
    c.warm_retention = year;
    c.cold_retention = year;
    let (engine, _) = Engine::open(c, Arc::clone(&clock) as _).await?;
    let q = QueryEngine::new(Arc::clone(&engine), QueryConfig::default())?;

    let mut points = 0u64;
    let write_started = Instant::now();
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    for day in 0..a.days {
        let mut batch = Vec::with_capacity(100_000);
        let mut t = T0 + day * DAY;
        while t < T0 + (day + 1) * DAY {
            for s in 0..a.series {
                let fields = (0..a.fields)
                    .map(|f| {
                        x ^= x << 13;
                        x ^= x >> 7;
                        x ^= x << 17;
                        (
                            format!("f{f}").into(),
                            FieldValue::F64((x % 10_000) as f64 / 100.0),
                        )
                    })
                    .collect();
                batch.push(Point {
                    table: "cpu".into(),
                    tags: vec![
                        ("host".into(), format!("host_{s}").into()),
                        ("pool".into(), format!("pool_{}", s / 100).into()),
                    ]
                    .into(),
                    fields,
                    time: t,
                    line: 1,
                });
                if batch.len() == 100_000 {
                    points += batch.len() as u64;
                    engine
                        .write(
                            "metrics",
                            std::mem::take(&mut batch),
                            WriteOptions::default(),
                        )
                        .await?;
                }
            }
            t += a.interval * SEC;
        }
        points += batch.len() as u64;
        engine
            .write("metrics", batch, WriteOptions::default())
            .await?;
        engine.persist(true).await?;
    }
    let write_s = write_started.elapsed().as_secs_f64();

    let from = chrono::DateTime::from_timestamp((now - 365 * DAY) / SEC, 0)
        .ok_or("time")?
        .format("%Y-%m-%dT%H:%M:%S");
    let sql = format!(
        "SELECT date_trunc('day', time) AS day, host, avg(f0) AS mean, max(f1) AS peak \
         FROM cpu WHERE time >= TIMESTAMP '{from}' GROUP BY 1, 2 ORDER BY 1, 2"
    );
    let (raw_ms, raw_text) = median_ms(&q, &sql, a.runs).await?;

    let rollup_started = Instant::now();
    let mut passes = 0;
    loop {
        let r = engine.maintain_tiers().await?;
        passes += 1;
        if r.windows == 0 && r.files_compacted == 0 {
            break;
        }
    }
    let rollup_s = rollup_started.elapsed().as_secs_f64();
    let plan = pretty_format_batches(&run(&q, &format!("EXPLAIN {sql}")).await?)?.to_string();
    if !plan.contains("tiers=[cold]") {
        return Err(format!("the by-day query did not read the cold tier:\n{plan}").into());
    }
    let (cold_ms, cold_text) = median_ms(&q, &sql, a.runs).await?;
    // Cell by cell; floats may differ in the last digits (sums added in another order).
    for (c, r) in cold_text.lines().zip(raw_text.lines()) {
        for (x, y) in c.split('|').zip(r.split('|')) {
            let (x, y) = (x.trim(), y.trim());
            let close = match (x.parse::<f64>(), y.parse::<f64>()) {
                (Ok(a), Ok(b)) => (a - b).abs() <= 1e-9 * a.abs().max(b.abs()).max(1.0),
                _ => x == y,
            };
            if !close {
                return Err(format!("the cold tier's answer differs: `{c}` vs raw `{r}`").into());
            }
        }
    }
    if cold_text.lines().count() != raw_text.lines().count() {
        return Err("the cold tier's answer has a different number of rows".into());
    }

    let cat = engine.catalog_snapshot();
    let t = cat.table("metrics", "cpu").ok_or("no table")?;
    let raw_values = points as f64 * a.fields as f64;
    println!(
        "## Tiers: {} series × {} days every {} s, {} float fields",
        a.series, a.days, a.interval, a.fields
    );
    println!();
    println!(
        "{points} points written and persisted in {write_s:.1} s; rollups and compaction: {passes} passes in {rollup_s:.1} s = **{:.0} raw rows rolled up per second** (warm from raw, cold from warm, and compaction of all tiers included)",
        points as f64 / rollup_s
    );
    println!();
    println!(
        "| tier | files | rows | bytes | bytes per stored value | bytes per raw value represented |"
    );
    println!("|---|---|---|---|---|---|");
    for tier in Tier::ALL {
        let fs: Vec<_> = t.files.iter().filter(|f| f.tier == tier).collect();
        let rows: u64 = fs.iter().map(|f| f.row_count).sum();
        let bytes: u64 = fs.iter().map(|f| f.size_bytes).sum();
        let per_row = match tier {
            Tier::Hot => a.fields as f64,
            _ => a.fields as f64 * 6.0,
        };
        println!(
            "| {} | {} | {rows} | {bytes} | {:.2} | {:.3} |",
            tier.name(),
            fs.len(),
            bytes as f64 / (rows as f64 * per_row).max(1.0),
            bytes as f64 / raw_values
        );
    }
    println!();
    println!(
        "By-day query over a year (`{sql}`), median of {} runs: raw data **{raw_ms:.1} ms**, cold tier **{cold_ms:.1} ms** ({:.1}× faster); answers identical.",
        a.runs,
        raw_ms / cold_ms
    );
    Ok(())
}
