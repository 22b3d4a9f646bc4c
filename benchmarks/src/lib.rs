//! `strata-benchmarks`: macro-benchmarks that drive a real `strata` binary over its
//! public interfaces and report figures (the `spine` runner: HTTP ingest rate, Parquet
//! bytes per value, aggregate query latency). The TSBS-style generator, query set and
//! side-by-side runners against other systems come with the benchmarks issue.
//! Micro-benchmarks live in each crate's `benches/`; timing never belongs in tests.

pub mod data;
pub mod kafka;
pub mod server;
