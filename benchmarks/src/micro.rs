//! criterion micro-benchmarks of the hot paths, on TSBS cpu-only rows (1000 hosts, ten
//! tags, ten integer fields; 10,000 rows a request, as the TSBS load sends them):
//!
//! - `line_protocol/parse`: decoding one request body into rows;
//! - `engine/write`: the engine's whole write (validate → Arrow → WAL group commit with
//!   fsync → hot table) of one decoded request;
//! - `wal/append`: encoding one request's batch as a WAL record, appending and fsyncing it;
//! - `persist/chunk`: persisting 100,000 hot rows (sort, last-write-wins, Parquet, file,
//!   catalog);
//! - `scan`: SQL over one persisted hour of 1000 hosts (a single-host max per minute, and
//!   a max per minute over all hosts);
//! - `query`: what a query costs apart from its scan, over the same hour: `SELECT 1`, the
//!   last row of every host (TSBS `lastpoint`, from the last-value cache), and the newest
//!   5 minutes' max (TSBS `groupby-orderby-limit`, from a window of the newest rows).
//!
//! `strata-benchmarks micro` runs them from the release build of the binaries, so nothing
//! is compiled again; `cargo bench --bench micro` runs the same, but resolves features with
//! the dev-dependencies and rebuilds DataFusion for them.

use std::sync::Arc;
use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput};
use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::wal::{self, SegmentWriter, WalRecord};
use strata_engine::{Engine, EngineConfig, Rows, WriteOptions};
use strata_ingest::lp::{self, Precision};
use strata_sql::{QueryConfig, QueryEngine};

use crate::tsbs::data::{Generator, Values};

const HOSTS: usize = 1000;
/// Ten 10-s steps of every host: the 10,000 rows of one TSBS request.
const STEPS: u64 = 10;
const DB: &str = "bench";

/// Options of `strata-benchmarks micro`.
#[derive(Debug, clap::Args)]
pub struct Options {
    /// Runs only the benchmarks whose id (`group/name`) matches this regular expression.
    #[arg(long)]
    pub filter: Option<String>,
    /// Saves the results as this baseline (under the target directory's `criterion/`).
    #[arg(long)]
    pub save_baseline: Option<String>,
    /// Compares with this saved baseline instead of the last run.
    #[arg(long, conflicts_with = "save_baseline")]
    pub baseline: Option<String>,
}

type Group = fn(&mut Criterion);

/// Every group with the ids of its benchmarks, in the order of the write path.
const GROUPS: [(Group, &[&str]); 6] = [
    (decode, &["line_protocol/parse"]),
    (write, &["engine/write"]),
    (wal_append, &["wal/append"]),
    (persist, &["persist/chunk"]),
    (
        scan,
        &[
            "scan/max_per_minute_one_host",
            "scan/max_per_minute_all_hosts",
        ],
    ),
    (
        query,
        &["query/select_1", "query/lastpoint", "query/newest_minutes"],
    ),
];

/// Runs every benchmark `opts` selects; a group none of whose ids match the filter is
/// skipped whole, with its setup.
pub fn run(opts: &Options) -> Result<(), regex::Error> {
    let filter = opts.filter.as_deref().map(regex::Regex::new).transpose()?;
    let mut c = Criterion::default();
    if let Some(f) = &opts.filter {
        c = c.with_filter(f.clone());
    }
    if let Some(b) = &opts.save_baseline {
        c = c.save_baseline(b.clone());
    }
    if let Some(b) = &opts.baseline {
        c = c.retain_baseline(b.clone(), true);
    }
    for (group, ids) in GROUPS {
        if filter
            .as_ref()
            .is_none_or(|f| ids.iter().any(|id| f.is_match(id)))
        {
            group(&mut c);
        }
    }
    c.final_summary();
    Ok(())
}

/// Every group (what `cargo bench` runs; it filters by itself).
pub fn all(c: &mut Criterion) {
    for (group, _) in GROUPS {
        group(c);
    }
}

/// Three days ago on a whole second: inside the hot tier's retention, and far enough back
/// that the steps of a benchmark (a few hundred iterations of 100 s) stay in the past.
fn start_ns() -> i64 {
    (SystemClock.now_ns() - 3 * 86_400_000_000_000) / 1_000_000_000 * 1_000_000_000
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("a tokio runtime")
}

/// A fresh engine in a temporary directory, with chunks of an hour, that persists only
/// when told to; and the runtime that drives it.
struct Fixture {
    rt: tokio::runtime::Runtime,
    engine: Arc<Engine>,
    _dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Self {
        let rt = runtime();
        let dir = tempfile::tempdir().expect("tempdir");
        let mut cfg = EngineConfig::for_test(dir.path());
        cfg.chunk_duration = Duration::from_secs(3600);
        cfg.memory_budget_bytes = 8 << 30;
        cfg.persist_interval = Duration::from_secs(3600);
        let (engine, _) = rt
            .block_on(Engine::open(cfg, Arc::new(SystemClock)))
            .expect("an engine");
        Self {
            rt,
            engine,
            _dir: dir,
        }
    }

    fn write(&self, rows: Rows) {
        self.rt
            .block_on(self.engine.write(DB, rows, WriteOptions::default()))
            .expect("write");
    }
}

/// TSBS rows of 1000 hosts from `start_ns`, `steps` steps at a time, as line protocol.
struct Requests(Generator);

impl Requests {
    fn new(start_ns: i64) -> Self {
        // Two days of 10-s steps: more than any benchmark takes.
        Self(Generator::new(7, HOSTS, start_ns, 17_280, Values::Int))
    }

    fn body(&mut self, steps: u64) -> String {
        let body = self.0.next_steps(steps).expect("TSBS rows").0;
        assert!(!body.is_empty(), "the generator ran out of steps");
        body
    }

    fn rows(&mut self, steps: u64) -> Rows {
        let (rows, errors) = lp::parse_rows(&self.body(steps), Precision::Nanosecond, 0);
        assert!(errors.is_empty(), "{errors:?}");
        rows
    }
}

fn decode(c: &mut Criterion) {
    let body = Requests::new(start_ns()).body(STEPS);
    let mut g = c.benchmark_group("line_protocol");
    g.throughput(Throughput::Elements(HOSTS as u64 * STEPS));
    g.bench_function("parse", |b| {
        b.iter(|| lp::parse_rows(&body, Precision::Nanosecond, 0));
    });
    g.finish();
}

fn write(c: &mut Criterion) {
    let f = Fixture::new();
    let mut rows = Requests::new(start_ns());
    let mut g = c.benchmark_group("engine");
    g.throughput(Throughput::Elements(HOSTS as u64 * STEPS));
    g.sample_size(20);
    g.bench_function("write", |b| {
        b.iter_batched(|| rows.rows(STEPS), |r| f.write(r), BatchSize::PerIteration);
    });
    g.finish();
}

fn wal_append(c: &mut Criterion) {
    let f = Fixture::new();
    f.write(Requests::new(start_ns()).rows(STEPS));
    let snapshot = f.engine.table_snapshot(DB, "cpu").expect("the cpu table");
    let batch = snapshot.hot[0].batches[0].batch.clone();
    assert_eq!(batch.num_rows(), HOSTS * STEPS as usize);
    let wal_dir = tempfile::tempdir().expect("tempdir");
    let mut seq = 0u64;
    let mut segment = SegmentWriter::create(wal_dir.path(), 1).expect("a WAL segment");
    let mut framed = Vec::new();
    let mut g = c.benchmark_group("wal");
    g.throughput(Throughput::Elements(batch.num_rows() as u64));
    g.sample_size(20);
    g.bench_function("append", |b| {
        b.iter(|| {
            seq += 1;
            // A new segment every 100 records keeps the files small.
            if seq.is_multiple_of(100) {
                segment = SegmentWriter::create(wal_dir.path(), seq).expect("a WAL segment");
            }
            let rec = WalRecord {
                seq,
                db: DB.into(),
                tables: vec![("cpu".into(), batch.clone())],
            };
            framed.clear();
            wal::encode_framed(&rec, &mut framed).expect("encode");
            segment.append(&framed).expect("append");
            segment.sync().expect("fsync");
        });
    });
    g.finish();
}

fn persist(c: &mut Criterion) {
    const PERSIST_STEPS: u64 = 100;
    let f = Fixture::new();
    let mut rows = Requests::new(start_ns());
    let mut g = c.benchmark_group("persist");
    g.throughput(Throughput::Elements(HOSTS as u64 * PERSIST_STEPS));
    g.sample_size(10);
    g.bench_function("chunk", |b| {
        b.iter_batched(
            || {
                for _ in 0..PERSIST_STEPS / STEPS {
                    f.write(rows.rows(STEPS));
                }
            },
            |()| f.rt.block_on(f.engine.persist(true)).expect("persist"),
            BatchSize::PerIteration,
        );
    });
    g.finish();
}

const HOUR_STEPS: u64 = 360;

/// One whole hour of 1000 hosts persisted as one file, and queries over it; returns the
/// hour's start too.
fn one_hour() -> (Fixture, QueryEngine, i64) {
    let f = Fixture::new();
    let start = start_ns() / 3_600_000_000_000 * 3_600_000_000_000;
    let mut rows = Requests::new(start);
    for _ in 0..HOUR_STEPS / STEPS {
        f.write(rows.rows(STEPS));
    }
    f.rt.block_on(f.engine.persist(true)).expect("persist");
    let snapshot = f.engine.table_snapshot(DB, "cpu").expect("the cpu table");
    assert!(snapshot.hot.is_empty(), "all of it persisted");
    assert_eq!(snapshot.files.len(), 1, "one file: {:?}", snapshot.files);
    let q = QueryEngine::new(Arc::clone(&f.engine), QueryConfig::default()).expect("queries");
    (f, q, start)
}

/// Runs `sql` to the end; its rows.
fn rows_of(f: &Fixture, q: &QueryEngine, sql: &str) -> usize {
    f.rt.block_on(async {
        let (_, stream) = q.query(DB, sql).await.expect("plan");
        let batches = stream.try_collect::<Vec<_>>().await.expect("run");
        batches.iter().map(|b| b.num_rows()).sum()
    })
}

fn scan(c: &mut Criterion) {
    let (f, q, _) = one_hour();
    let run = |sql: &str| rows_of(&f, &q, sql);
    let mut g = c.benchmark_group("scan");
    g.throughput(Throughput::Elements(HOSTS as u64 * HOUR_STEPS));
    let queries = [
        (
            "max_per_minute_one_host",
            "SELECT date_trunc('minute', time) AS minute, max(usage_user) FROM cpu \
             WHERE hostname = 'host_7' GROUP BY 1",
        ),
        (
            "max_per_minute_all_hosts",
            "SELECT date_trunc('minute', time) AS minute, max(usage_user) FROM cpu GROUP BY 1",
        ),
    ];
    for (name, sql) in queries {
        assert!(run(sql) > 0, "{name} has rows");
        g.bench_function(name, |b| b.iter(|| run(sql)));
    }
    g.finish();
}

fn query(c: &mut Criterion) {
    let (f, q, start) = one_hour();
    let run = |sql: &str| rows_of(&f, &q, sql);
    // 43 s into the hour's last minute, as TSBS draws its bounds.
    let bound = chrono::DateTime::from_timestamp_nanos(start + 3_583_000_000_000)
        .format("%Y-%m-%dT%H:%M:%S");
    let newest = format!(
        "SELECT date_trunc('minute', time) AS minute, max(usage_user) FROM cpu \
         WHERE time < TIMESTAMP '{bound}' GROUP BY 1 ORDER BY 1 DESC LIMIT 5"
    );
    let queries = [
        ("select_1", "SELECT 1".to_string(), 1),
        (
            "lastpoint",
            "SELECT DISTINCT ON (hostname) * FROM cpu ORDER BY hostname, time DESC".to_string(),
            HOSTS,
        ),
        ("newest_minutes", newest, 5),
    ];
    let mut g = c.benchmark_group("query");
    for (name, sql, want) in queries {
        assert_eq!(run(&sql), want, "{name}");
        g.bench_function(name, |b| b.iter(|| run(&sql)));
    }
    g.finish();
}
