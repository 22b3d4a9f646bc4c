//! `strata-benchmarks`: the side-by-side benchmark harness (`tsbs`). See
//! `benchmarks/README.md`.

use clap::{Parser, Subcommand};
use strata_benchmarks::{alert_backtest, alert_latency, collect, micro, tsbs};

#[derive(Debug, Parser)]
#[command(name = "strata-benchmarks", about = "Strata's benchmark harness")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// The TSBS cpu-only workload: load, storage, every query type, side by side with
    /// DuckDB, chDB and InfluxDB 1.x; writes a Markdown report.
    Tsbs(tsbs::Options),
    /// Sample-to-notification latency of an alert rule (webhook, 1 s evaluation).
    AlertLatency(alert_latency::Options),
    /// Backtest throughput: one rule over `hosts` series for the last `hours`.
    AlertBacktest(alert_backtest::Options),
    /// Prometheus remote_write throughput (samples/s, per server CPU-second).
    RemoteWrite(collect::RemoteWriteOptions),
    /// The server's cost of scraping many node_exporter-like targets.
    Scrape(collect::ScrapeOptions),
    /// criterion micro-benchmarks of the hot paths (line protocol, engine write, WAL,
    /// persistence, scan): see `strata_benchmarks::micro`.
    Micro(micro::Options),
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
        // criterion runs its own runtimes: not from inside this one's worker threads.
        Cmd::Micro(opts) => {
            if let Err(e) = tokio::task::block_in_place(|| micro::run(&opts)) {
                eprintln!("micro: --filter: {e}");
                std::process::exit(2);
            }
        }
        Cmd::Tsbs(opts) => match tsbs::run(&opts).await {
            Ok((_, report)) => println!("{}", report.display()),
            Err(e) => {
                eprintln!("tsbs: {e}");
                std::process::exit(1);
            }
        },
        Cmd::AlertLatency(opts) => match alert_latency::run(&opts).await {
            Ok(ms) => println!(
                "alert latency over {} trials (every {}): min {:.0} ms, p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
                ms.len(),
                opts.every,
                alert_latency::quantile(&ms, 0.0),
                alert_latency::quantile(&ms, 0.5),
                alert_latency::quantile(&ms, 0.99),
                alert_latency::quantile(&ms, 1.0),
            ),
            Err(e) => {
                eprintln!("alert-latency: {e}");
                std::process::exit(1);
            }
        },
        Cmd::RemoteWrite(opts) => match collect::remote_write(&opts).await {
            Ok(r) => println!(
                "remote_write: {} samples in {} requests ({} instances × {} rounds, {} in flight) in {:.2} s = \
                 {:.0} samples/s; server CPU {:.2} s = {:.0} samples per CPU-second; peak RSS {:.0} MiB; \
                 hot table {:.0} bytes per sample; {} retries after 503",
                r.samples,
                r.requests,
                opts.instances,
                opts.rounds,
                opts.concurrency,
                r.wall.as_secs_f64(),
                r.samples as f64 / r.wall.as_secs_f64(),
                r.server_cpu.as_secs_f64(),
                r.samples as f64 / r.server_cpu.as_secs_f64(),
                r.peak_rss_bytes as f64 / 1048576.0,
                r.hot_bytes as f64 / r.samples as f64,
                r.retries
            ),
            Err(e) => {
                eprintln!("remote-write: {e}");
                std::process::exit(1);
            }
        },
        Cmd::Scrape(opts) => match collect::scrape(&opts).await {
            Ok(r) => println!(
                "scrape: {} targets × {} samples every {}: over {:.1} s the server used {:.2} CPU-s \
                 = {:.1}% of one core ({:.0} samples/s); {} scrapes of {} expected; scrape duration \
                 p50 {:.1} ms, p99 {:.1} ms; peak RSS {:.0} MiB",
                r.targets,
                r.samples_per_page,
                opts.interval,
                r.measured.as_secs_f64(),
                r.server_cpu.as_secs_f64(),
                100.0 * r.server_cpu.as_secs_f64() / r.measured.as_secs_f64(),
                r.scrapes as f64 * r.samples_per_page as f64 / r.measured.as_secs_f64(),
                r.scrapes,
                r.expected_scrapes,
                r.p50_ms,
                r.p99_ms,
                r.peak_rss_bytes as f64 / 1048576.0
            ),
            Err(e) => {
                eprintln!("scrape: {e}");
                std::process::exit(1);
            }
        },
        Cmd::AlertBacktest(opts) => match alert_backtest::run(&opts).await {
            Ok(m) => println!(
                "backtest of {} hosts × {} h ({} rows, loaded in {:.1} s): {} evaluations in \
                 {:.2} s = {:.0} evaluations/s, {:.0} raw rows/s scanned; {} firing episodes\n{}",
                opts.hosts,
                opts.hours,
                m.rows,
                m.load_s,
                m.evaluations,
                m.backtest_s,
                m.evaluations as f64 / m.backtest_s,
                (m.evaluations as f64 * opts.hosts as f64 * 6.0) / m.backtest_s,
                m.episodes,
                m.summary
            ),
            Err(e) => {
                eprintln!("alert-backtest: {e}");
                std::process::exit(1);
            }
        },
    }
}
