//! Rollups, late data and retention over 40 days of data, with an injected clock.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{Array, AsArray, Float64Array, Int64Array, RecordBatch};
use arrow::datatypes::{Float64Type, Int32Type, TimestampNanosecondType};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use strata_catalog::{ParquetFileMeta, Tier};
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, Error, FieldValue, Point, WriteOptions};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const SEC: i64 = 1_000_000_000;
const MIN: i64 = 60 * SEC;
const HOUR: i64 = 60 * MIN;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 40;
const HOSTS: [&str; 2] = ["a", "b"];

/// Aggregates of one field in one bucket, computed here from the raw points.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Agg {
    min: f64,
    max: f64,
    sum: f64,
    count: i64,
    first: f64,
    last: f64,
}

impl Agg {
    fn add(a: Option<Self>, v: f64) -> Self {
        match a {
            None => Self {
                min: v,
                max: v,
                sum: v,
                count: 1,
                first: v,
                last: v,
            },
            Some(a) => Self {
                min: a.min.min(v),
                max: a.max.max(v),
                sum: a.sum + v,
                count: a.count + 1,
                first: a.first,
                last: v,
            },
        }
    }
}

/// The raw points as the test wrote them (last write wins), by (host, time).
type Raw = BTreeMap<(String, i64), f64>;

fn usage(host: usize, t: i64) -> f64 {
    // Integers plus a half: every sum stays exact in f64.
    ((t / (10 * SEC)) * 7 + host as i64 * 13).rem_euclid(100) as f64 + 0.5
}

fn point(host: &str, v: f64, t: i64) -> Point {
    Point {
        table: "cpu".into(),
        tags: vec![("host".into(), host.into())].into(),
        fields: vec![("usage".into(), FieldValue::F64(v))],
        time: t,
        line: 1,
    }
}

fn expected(raw: &Raw, res: i64, from: i64, to: i64) -> BTreeMap<(String, i64), Agg> {
    let mut out: BTreeMap<(String, i64), Agg> = BTreeMap::new();
    for ((h, t), v) in raw.range((String::new(), i64::MIN)..) {
        if *t < from || *t >= to {
            continue;
        }
        let key = (h.clone(), t.div_euclid(res) * res);
        let prev = out.get(&key).copied();
        out.insert(key, Agg::add(prev, *v));
    }
    out
}

fn tier_dir(data: &Path, tier: Tier) -> PathBuf {
    match tier {
        Tier::Cold => data.join("cold"),
        _ => data.to_path_buf(),
    }
}

/// Every batch of a Parquet file.
fn read_batches(path: &Path) -> Vec<RecordBatch> {
    let file = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    ParquetRecordBatchReaderBuilder::try_new(file)
        .expect("parquet")
        .build()
        .expect("reader")
        .map(|b| b.expect("batch"))
        .collect()
}

/// The host and time of each row of `b`.
fn hosts_and_times(b: &RecordBatch) -> Vec<(String, i64)> {
    let host = b
        .column_by_name("host")
        .expect("host")
        .as_dictionary::<Int32Type>();
    let hosts = host.values().as_string::<i32>();
    let time = b
        .column_by_name("time")
        .expect("time")
        .as_primitive::<TimestampNanosecondType>();
    (0..b.num_rows())
        .map(|i| {
            let h = hosts.value(host.keys().value(i) as usize).to_string();
            (h, time.value(i))
        })
        .collect()
}

/// A rollup tier's rows as its files hold them, overlapping files merged last-write-wins
/// (higher `max_seq` wins the whole row: a recomputation covers every raw row).
fn read_tier(e: &Engine, data: &Path, tier: Tier) -> BTreeMap<(String, i64), Agg> {
    let cat = e.catalog_snapshot();
    let mut files: Vec<ParquetFileMeta> = cat
        .table("metrics", "cpu")
        .expect("table")
        .files
        .iter()
        .filter(|f| f.tier == tier)
        .cloned()
        .collect();
    files.sort_by_key(|f| (f.max_seq, f.id));
    let mut out = BTreeMap::new();
    for f in files {
        for b in read_batches(&tier_dir(data, tier).join(&f.path)) {
            let keys = hosts_and_times(&b);
            let f64col = |n: &str| -> Float64Array {
                b.column_by_name(n)
                    .unwrap_or_else(|| panic!("{n}"))
                    .as_primitive()
                    .clone()
            };
            let (mn, mx, sm, fi, la) = (
                f64col("usage_min"),
                f64col("usage_max"),
                f64col("usage_sum"),
                f64col("usage_first"),
                f64col("usage_last"),
            );
            let cnt: Int64Array = b
                .column_by_name("usage_count")
                .expect("count")
                .as_primitive()
                .clone();
            for (i, key) in keys.into_iter().enumerate() {
                assert!(!mn.is_null(i), "null min in {}", f.path);
                out.insert(
                    key,
                    Agg {
                        min: mn.value(i),
                        max: mx.value(i),
                        sum: sm.value(i),
                        count: cnt.value(i),
                        first: fi.value(i),
                        last: la.value(i),
                    },
                );
            }
        }
    }
    out
}

fn files(e: &Engine, tier: Tier) -> Vec<ParquetFileMeta> {
    e.catalog_snapshot()
        .table("metrics", "cpu")
        .map(|t| t.files.iter().filter(|f| f.tier == tier).cloned().collect())
        .unwrap_or_default()
}

fn config(dir: &Path) -> EngineConfig {
    let mut c = EngineConfig::for_test(dir);
    c.persist_interval = Duration::from_secs(3600); // the test persists explicitly
    c.rollup_interval = Duration::from_secs(3600); // and maintains the tiers explicitly
    c.chunk_duration = Duration::from_secs(6 * 3600);
    c.warm_window = Duration::from_secs(6 * 3600);
    c.rollup_settle = Duration::from_secs(3600);
    c.compaction_windows = [
        // Two levels: 6-hour chunks become 12-hour files, those become day files.
        vec![
            Duration::from_secs(12 * 3600),
            Duration::from_secs(24 * 3600),
        ],
        vec![Duration::from_secs(2 * 24 * 3600)],
        vec![Duration::from_secs(10 * 24 * 3600)],
    ];
    c
}

async fn write(e: &Engine, pts: Vec<Point>) {
    let out = e
        .write("metrics", pts, WriteOptions::default())
        .await
        .expect("write");
    assert!(out.rejected.is_empty(), "{:?}", out.rejected);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn forty_days_fill_every_tier_as_retention_says_and_late_data_updates_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0);
    let e = Engine::open(config(dir.path()), Arc::clone(&clock) as _)
        .await
        .expect("open")
        .0;
    let mut raw: Raw = BTreeMap::new();
    for d in 0..DAYS {
        clock.set(T0 + (d + 1) * DAY);
        let mut pts = Vec::new();
        for (hi, h) in HOSTS.iter().enumerate() {
            let mut t = T0 + d * DAY;
            while t < T0 + (d + 1) * DAY {
                let v = usage(hi, t);
                raw.insert((h.to_string(), t), v);
                pts.push(point(h, v, t));
                t += 10 * SEC;
            }
        }
        write(&e, pts).await;
        e.persist(true).await.expect("persist");
        e.maintain_tiers().await.expect("maintain");
    }
    let now = T0 + DAYS * DAY;
    // The last day's rollups: the warm tier up to `now - settle`, the cold tier to the day.
    clock.set(now + 2 * HOUR);
    e.maintain_tiers().await.expect("maintain");
    clock.set(now + 2 * HOUR + 10 * MIN); // past the grace period of the last expiries
    e.maintain_tiers().await.expect("maintain");
    let now = now + 2 * HOUR + 10 * MIN;

    // Each tier covers one contiguous range, from the retention cutoff (rounded down to
    // a whole file) to its newest data, and compaction keeps its file count small.
    let chunk = 6 * HOUR;
    let warm_to = (now - HOUR).div_euclid(chunk) * chunk;
    let check = |tier: Tier, retention: i64, compaction: i64, end: i64, max_files: usize| {
        let mut fs = files(&e, tier);
        fs.sort_by_key(|f| f.chunk_start);
        let cut = now - retention;
        assert!(fs.len() <= max_files, "{tier:?}: {} files", fs.len());
        assert!(
            fs.iter().all(|f| f.chunk_end > cut),
            "{tier:?} keeps expired files"
        );
        let start = fs[0].chunk_start;
        assert!(
            start <= cut.max(T0) && start > cut - compaction,
            "{tier:?} starts at {start}"
        );
        for w in fs.windows(2) {
            assert_eq!(
                w[0].chunk_end, w[1].chunk_start,
                "{tier:?} has a gap or overlap"
            );
        }
        assert_eq!(fs.last().map(|f| f.chunk_end), Some(end), "{tier:?} ends");
        start
    };
    check(Tier::Hot, 7 * DAY, DAY, T0 + DAYS * DAY, 9);
    let warm_from = check(Tier::Warm, 30 * DAY, 2 * DAY, warm_to, 17);
    // Complete 10-day windows, then the days of the window still filling.
    check(Tier::Cold, 365 * DAY, 10 * DAY, T0 + DAYS * DAY, 14);
    // Expired and compacted files are gone from disk too, once the grace period is over.
    clock.set(now + 20 * MIN);
    let report = e.maintain_tiers().await.expect("maintain");
    assert_eq!(report.files_compacted, 0, "{report:?}");
    let now = now + 20 * MIN;
    let on_disk = |sub: &str| -> usize { walk(&dir.path().join(sub)) };
    assert_eq!(on_disk("dbs"), files(&e, Tier::Hot).len());
    assert_eq!(on_disk("rollup_1m"), files(&e, Tier::Warm).len());
    assert_eq!(on_disk("cold/rollup_1h"), files(&e, Tier::Cold).len());

    // Rollup values equal the aggregates of the raw points.
    assert_eq!(
        read_tier(&e, dir.path(), Tier::Warm),
        expected(&raw, MIN, warm_from, warm_to),
        "warm tier"
    );
    assert_eq!(
        read_tier(&e, dir.path(), Tier::Cold),
        expected(&raw, HOUR, T0, T0 + DAYS * DAY),
        "cold tier"
    );

    // Late data two days back: one point overwritten (last write wins before
    // aggregation), one new. It updates the warm and the cold tier.
    let late_t = T0 + (DAYS - 2) * DAY + 5 * HOUR + 17 * MIN + 30 * SEC;
    let new_t = late_t + 5 * SEC;
    write(
        &e,
        vec![point("a", 1000.5, late_t), point("a", -3.5, new_t)],
    )
    .await;
    raw.insert(("a".into(), late_t), 1000.5);
    raw.insert(("a".into(), new_t), -3.5);
    // Older than the raw tier's retention: refused with a clear error.
    let out = e
        .write(
            "metrics",
            vec![point("a", 1.0, now - 8 * DAY)],
            WriteOptions::default(),
        )
        .await;
    match out {
        Ok(o) => {
            assert_eq!(o.rejected.len(), 1);
            assert!(
                o.rejected[0].reason.contains("retention"),
                "{}",
                o.rejected[0].reason
            );
        }
        Err(err @ Error::AllOrNothing { .. }) => panic!("{err}"),
        Err(err) => panic!("{err}"),
    }
    e.persist(true).await.expect("persist");
    let report = e.maintain_tiers().await.expect("maintain");
    assert_eq!(report.windows, 0, "{report:?}");
    assert!(report.dirty_recomputed >= 2, "warm and cold: {report:?}");
    let warm = read_tier(&e, dir.path(), Tier::Warm);
    let cold = read_tier(&e, dir.path(), Tier::Cold);
    assert_eq!(
        warm,
        expected(&raw, MIN, warm_from, warm_to),
        "warm after late data"
    );
    assert_eq!(
        cold,
        expected(&raw, HOUR, T0, T0 + DAYS * DAY),
        "cold after late data"
    );
    let bucket = late_t.div_euclid(HOUR) * HOUR;
    assert_eq!(cold[&("a".to_string(), bucket)].max, 1000.5);
    assert_eq!(cold[&("a".to_string(), bucket)].min, -3.5);

    // A restart resumes from the catalog: nothing left to roll up.
    e.shutdown().await;
    drop(e);
    let e = Engine::open(config(dir.path()), Arc::clone(&clock) as _)
        .await
        .expect("reopen")
        .0;
    let report = e.maintain_tiers().await.expect("maintain");
    assert_eq!(
        (report.windows, report.dirty_recomputed),
        (0, 0),
        "{report:?}"
    );
    // The recomputed windows replaced (or were compacted with) the files they updated:
    // no two files of a rollup tier overlap, so queries need no deduplication.
    let snap = e.table_snapshot("metrics", "cpu").expect("table");
    for tier in [Tier::Warm, Tier::Cold] {
        let mut spans: Vec<(i64, i64)> = snap
            .files
            .iter()
            .filter(|f| f.tier == tier)
            .map(|f| (f.chunk_start, f.chunk_end))
            .collect();
        spans.sort_unstable();
        for pair in spans.windows(2) {
            assert!(pair[0].1 <= pair[1].0, "{tier:?} files overlap: {spans:?}");
        }
    }
}

/// Parquet files under `dir`, recursively.
fn walk(dir: &Path) -> usize {
    let Ok(rd) = std::fs::read_dir(dir) else {
        return 0;
    };
    rd.flatten()
        .map(|e| {
            let p = e.path();
            if p.is_dir() {
                walk(&p)
            } else {
                usize::from(p.extension().is_some_and(|x| x == "parquet"))
            }
        })
        .sum()
}

/// Raw files of one window that repeat points: the warm tier rolls each point up once,
/// and the compacted file keeps one row per point, each field from the latest write that
/// set it, in file order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rollups_and_compaction_keep_the_latest_write_of_each_field_of_a_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0 + 2 * DAY);
    let e = Engine::open(config(dir.path()), Arc::clone(&clock) as _)
        .await
        .expect("open")
        .0;
    let two = |host: &str, t: i64, usage: Option<f64>, idle: Option<f64>| Point {
        fields: usage
            .map(|v| ("usage".into(), FieldValue::F64(v)))
            .into_iter()
            .chain(idle.map(|v| ("idle".into(), FieldValue::F64(v))))
            .collect(),
        ..point(host, 0.0, t)
    };
    // Seven files in the first 12 hours: each write of the 8.3 hours of steps makes a
    // file in each of two 6-hour chunks.
    let steps: Vec<i64> = (0..3000).map(|i| T0 + i * 10 * SEC).collect();
    let first: Vec<Point> = steps
        .iter()
        .flat_map(|&t| ["a", "b"].map(|h| two(h, t, Some(1.0), Some(5.0))))
        .collect();
    write(&e, first).await;
    e.persist(true).await.expect("persist");
    // Rewrites of every third step of host a: usage only (idle stays 5), then usage again.
    for v in [10.0, 20.0] {
        let again: Vec<Point> = steps
            .iter()
            .step_by(3)
            .map(|&t| two("a", t, Some(v), None))
            .collect();
        write(&e, again).await;
        e.persist(true).await.expect("persist");
    }
    // And one of host b: idle only.
    write(&e, vec![two("b", T0 + 7 * HOUR, None, Some(7.0))]).await;
    e.persist(true).await.expect("persist");
    assert_eq!(files(&e, Tier::Hot).len(), 7);

    e.maintain_tiers().await.expect("maintain");
    // Minute 0 of host a: steps 0 to 5, of which 0 and 3 were rewritten to 20.
    let warm = read_tier(&e, dir.path(), Tier::Warm);
    let a0 = warm[&("a".to_string(), T0)];
    assert_eq!(
        (a0.min, a0.max, a0.sum, a0.count, a0.first, a0.last),
        (1.0, 20.0, 44.0, 6, 20.0, 1.0)
    );
    assert_eq!(warm.len(), 2 * 500, "one row a minute per host");

    let raw = files(&e, Tier::Hot);
    assert_eq!(raw.len(), 1, "{raw:?}");
    let mut rows = Vec::new();
    for b in read_batches(&dir.path().join(&raw[0].path)) {
        let f = |n: &str| {
            b.column_by_name(n)
                .expect(n)
                .as_primitive::<Float64Type>()
                .clone()
        };
        let (usage, idle) = (f("usage"), f("idle"));
        for (i, (host, time)) in hosts_and_times(&b).into_iter().enumerate() {
            let get = |a: &Float64Array| (!a.is_null(i)).then(|| a.value(i));
            rows.push((host, time, get(&usage), get(&idle)));
        }
    }
    let mut want: Vec<(String, i64, Option<f64>, Option<f64>)> = Vec::new();
    for h in ["a", "b"] {
        for (i, &t) in steps.iter().enumerate() {
            let usage = if h == "a" && i % 3 == 0 { 20.0 } else { 1.0 };
            let idle = if h == "b" && t == T0 + 7 * HOUR {
                7.0
            } else {
                5.0
            };
            want.push((h.to_string(), t, Some(usage), Some(idle)));
        }
    }
    // File order: 3-hour slices, then host and time.
    want.sort_by_key(|(h, t, _, _)| (t.div_euclid(3 * HOUR), h.clone(), *t));
    assert_eq!(rows.len(), want.len());
    assert!(
        rows == want,
        "first difference at {:?}",
        rows.iter().zip(&want).position(|(a, b)| a != b)
    );
}
