//! Micro-benchmarks of the write path: line-protocol decoding, and the engine's
//! validate → Arrow → WAL (group commit, fsync) → hot table path for one request.

use std::sync::Arc;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use strata_benchmarks::data::cpu_lines;
use strata_engine::clock::SystemClock;
use strata_engine::{Engine, EngineConfig, WriteOptions};
use strata_ingest::lp::{self, Precision};

const HOSTS: u64 = 1000;
const STEPS: u64 = 10; // 10,000 lines per request

fn base() -> i64 {
    use strata_engine::clock::Clock;
    (SystemClock.now_ns() - 3_600_000_000_000) / 1_000_000_000 * 1_000_000_000
}

fn decode(c: &mut Criterion) {
    let body = cpu_lines(HOSTS, 0, STEPS, base());
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Elements(HOSTS * STEPS));
    g.bench_function("parse_10k_lines", |b| {
        b.iter(|| lp::parse(&body, Precision::Nanosecond, 0));
    });
    g.finish();
}

fn write(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::tempdir().expect("tempdir");
    let mut cfg = EngineConfig::for_test(dir.path());
    cfg.memory_budget_bytes = 8 << 30;
    cfg.persist_interval = std::time::Duration::from_secs(3600);
    let (engine, _) = rt
        .block_on(Engine::open(cfg, Arc::new(SystemClock)))
        .expect("engine");
    let base = base();
    let mut step = 0u64;
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(HOSTS * STEPS));
    g.sample_size(20);
    g.bench_function("write_10k_points_fsync", |b| {
        b.iter_batched(
            || {
                step += STEPS;
                lp::parse(
                    &cpu_lines(HOSTS, step, step + STEPS, base),
                    Precision::Nanosecond,
                    0,
                )
                .0
            },
            |points| {
                rt.block_on(engine.write("bench", points, WriteOptions::default()))
                    .expect("write")
            },
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

criterion_group!(benches, decode, write);
criterion_main!(benches);
