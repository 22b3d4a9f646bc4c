//! The micro-benchmarks of `strata_benchmarks::micro` under `cargo bench`.

use criterion::{criterion_group, criterion_main};

criterion_group!(benches, strata_benchmarks::micro::all);
criterion_main!(benches);
