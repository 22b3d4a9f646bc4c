//! `strata-benchmarks`: macro-benchmarks that drive a real `strata` binary over its
//! public interfaces and report figures: `tsbs` (the TSBS cpu-only workload side by side
//! with DuckDB, chDB and InfluxDB 1.x), `spine` (HTTP ingest rate, Parquet bytes per
//! value, aggregate latency), `kafka` (consumption throughput) and `collect`
//! (remote_write throughput, scrape overhead).
//! `micro` holds the criterion micro-benchmarks of the hot paths; timing never belongs in
//! tests.

pub mod alert_backtest;
pub mod alert_latency;
pub mod collect;
pub mod data;
pub mod kafka;
pub mod micro;
pub mod s3;
pub mod server;
pub mod tsbs;
