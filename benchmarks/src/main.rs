//! `strata-benchmarks`: the side-by-side benchmark harness (`tsbs`). See
//! `benchmarks/README.md`.

use clap::{Parser, Subcommand};
use strata_benchmarks::{alert_latency, tsbs};

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
    }
}
