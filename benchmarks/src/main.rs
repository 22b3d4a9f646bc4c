//! `strata-benchmarks`: the side-by-side benchmark harness (`tsbs`). See
//! `benchmarks/README.md`.

use clap::{Parser, Subcommand};
use strata_benchmarks::tsbs;

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
    }
}
