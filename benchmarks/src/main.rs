//! `strata-benchmarks`: the side-by-side benchmark harness (`tsbs`). See
//! `benchmarks/README.md`.

use clap::{Parser, Subcommand};
use strata_benchmarks::{alert_backtest, alert_latency, tsbs};

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
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    match cli.command {
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
