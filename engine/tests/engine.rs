use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::array::{Array, DictionaryArray, Float64Array, StringArray, TimestampNanosecondArray};
use arrow::datatypes::Int32Type;
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::basic::{Compression, Encoding};
use parquet::file::reader::{FileReader, SerializedFileReader};
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, Error, FieldValue, Point, WriteOptions};

const NOW: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const SEC: i64 = 1_000_000_000;

fn point(host: &str, v: f64, t: i64) -> Point {
    Point {
        table: "cpu".into(),
        tags: vec![("host".into(), host.into())].into(),
        fields: vec![
            ("usage".into(), FieldValue::F64(v)),
            ("procs".into(), FieldValue::I64(v as i64)),
        ],
        time: t,
        line: 1,
    }
}

async fn open(dir: &std::path::Path, cfg: impl FnOnce(&mut EngineConfig)) -> Arc<Engine> {
    let mut c = EngineConfig::for_test(dir);
    c.persist_interval = Duration::from_secs(3600); // tests persist explicitly
    cfg(&mut c);
    Engine::open(c, ManualClock::new(NOW))
        .await
        .expect("open")
        .0
}

fn hot_rows(e: &Engine) -> usize {
    e.table_snapshot("metrics", "cpu")
        .map(|s| s.hot.iter().map(|h| h.rows).sum())
        .unwrap_or(0)
}

/// The rows of a Parquet file (of its row groups `groups`, all if `None`).
fn read_rows(path: &std::path::Path, groups: Option<Vec<usize>>) -> Vec<RecordBatch> {
    let mut b = ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(path).expect("file"))
        .expect("reader");
    if let Some(g) = groups {
        b = b.with_row_groups(g);
    }
    b.build()
        .expect("build")
        .collect::<Result<_, _>>()
        .expect("read")
}

/// The path of the table's only Parquet file.
fn the_one_file(e: &Engine, dir: &std::path::Path) -> std::path::PathBuf {
    let cat = e.catalog_snapshot();
    let files = &cat.table("metrics", "cpu").expect("table").files;
    assert_eq!(files.len(), 1);
    dir.join(&files[0].path)
}

/// (host, time) of each row of `b`.
fn hosts_and_times(b: &RecordBatch) -> Vec<(String, i64)> {
    let host = b
        .column_by_name("host")
        .expect("host")
        .as_any()
        .downcast_ref::<DictionaryArray<Int32Type>>()
        .expect("tags are dictionaries");
    let hosts = host
        .values()
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8");
    let t = b
        .column_by_name("time")
        .expect("time")
        .as_any()
        .downcast_ref::<TimestampNanosecondArray>()
        .expect("ts");
    (0..b.num_rows())
        .map(|i| {
            (
                hosts.value(host.keys().value(i) as usize).to_string(),
                t.value(i),
            )
        })
        .collect()
}

/// Pages hold a few series' runs, not DataFusion's default 20,000 rows: the page index then
/// finds one series without decoding those of many others.
#[tokio::test]
async fn persisted_pages_hold_a_few_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open(dir.path(), |_| {}).await;
    let base = NOW - 3600 * SEC;
    // 40 series × 600 points: 24,000 rows, one row group.
    let pts: Vec<Point> = (0..40)
        .flat_map(|h| (0..600).map(move |i| point(&format!("h{h:02}"), 1.0, base + i * SEC)))
        .collect();
    e.write("metrics", pts, WriteOptions::default())
        .await
        .expect("write");
    assert_eq!(e.persist(true).await.expect("persist"), 1);
    let file = std::fs::File::open(the_one_file(&e, dir.path())).expect("file");
    let options = parquet::file::serialized_reader::ReadOptionsBuilder::new()
        .with_page_index()
        .build();
    let reader = SerializedFileReader::new_with_options(file, options).expect("parquet");
    let meta = reader.metadata();
    assert_eq!(meta.num_row_groups(), 1);
    let index = meta.offset_index().expect("offset index");
    for (c, column) in index[0].iter().enumerate() {
        let starts: Vec<i64> = column
            .page_locations()
            .iter()
            .map(|p| p.first_row_index)
            .chain([24_000])
            .collect();
        let rows: Vec<i64> = starts.windows(2).map(|w| w[1] - w[0]).collect();
        assert!(rows.len() >= 3, "column {c}: pages of {rows:?} rows");
        assert!(
            rows.iter()
                .all(|&n| n as usize <= strata_engine::persist::PAGE_ROWS),
            "column {c}: pages of {rows:?} rows"
        );
    }
}

#[tokio::test]
async fn persisted_file_is_sorted_deduplicated_and_encoded_for_time_series() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open(dir.path(), |_| {}).await;
    let base = NOW - 3600 * SEC;
    // Out of order, with a duplicate whose later write must win.
    let pts = vec![
        point("b", 2.0, base + SEC),
        point("a", 1.0, base + 2 * SEC),
        point("a", 9.0, base + SEC),
        point("b", 3.0, base),
    ];
    e.write("metrics", pts, WriteOptions::default())
        .await
        .expect("write");
    e.write(
        "metrics",
        vec![point("a", 5.0, base + SEC)],
        WriteOptions::default(),
    )
    .await
    .expect("write");
    assert_eq!(e.persist(true).await.expect("persist"), 1);
    assert_eq!(hot_rows(&e), 0);

    let cat = e.catalog_snapshot();
    let f = &cat.table("metrics", "cpu").expect("table").files[0];
    assert_eq!(f.row_count, 4);
    assert_eq!((f.min_time, f.max_time), (base, base + 2 * SEC));
    let file = std::fs::File::open(dir.path().join(&f.path)).expect("file");
    assert_eq!(file.metadata().expect("meta").len(), f.size_bytes);
    let reader = SerializedFileReader::new(file).expect("parquet");
    let rg = reader.metadata().row_group(0);
    let col = |name: &str| {
        (0..rg.num_columns())
            .map(|i| rg.column(i))
            .find(|c| c.column_path().string() == name)
            .unwrap_or_else(|| panic!("column {name}"))
    };
    for c in rg.columns() {
        assert!(
            matches!(c.compression(), Compression::ZSTD(_)),
            "{}",
            c.column_path()
        );
        assert!(
            c.statistics().is_some(),
            "no statistics for {}",
            c.column_path()
        );
    }
    let encodings = |name: &str| col(name).encodings().collect::<Vec<Encoding>>();
    assert!(
        encodings("time").contains(&Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        encodings("time")
    );
    assert!(!encodings("time").contains(&Encoding::RLE_DICTIONARY));
    assert!(
        encodings("procs").contains(&Encoding::DELTA_BINARY_PACKED),
        "{:?}",
        encodings("procs")
    );
    assert!(
        encodings("host").contains(&Encoding::RLE_DICTIONARY),
        "{:?}",
        encodings("host")
    );
    let sorting = rg.sorting_columns().expect("sorting columns");
    assert_eq!(sorting.len(), 2); // host, time

    // Rows: sorted by (host, time), the duplicate resolved to the last write.
    let batches = read_rows(&dir.path().join(&f.path), None);
    let b = &batches[0];
    let u = b
        .column_by_name("usage")
        .expect("usage")
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("f64")
        .clone();
    let rows: Vec<(String, i64, f64)> = hosts_and_times(b)
        .into_iter()
        .enumerate()
        .map(|(i, (host, t))| (host, t - base, u.value(i)))
        .collect();
    assert_eq!(
        rows,
        vec![
            ("a".into(), SEC, 5.0),
            ("a".into(), 2 * SEC, 1.0),
            ("b".into(), 0, 3.0),
            ("b".into(), SEC, 2.0),
        ]
    );
}

#[tokio::test]
async fn a_file_holds_one_row_group_per_time_slice_each_sorted_by_series_and_time() {
    let dir = tempfile::tempdir().expect("tempdir");
    let slice = strata_engine::persist::slice_ns(strata_catalog::Tier::Hot);
    let e = open(dir.path(), |c| {
        c.chunk_duration = Duration::from_nanos(4 * slice as u64)
    })
    .await;
    let base = NOW - 4 * slice;
    let step = slice / 3600;
    // Three hosts, 3,600 points each in each of three slices (10,800 rows a slice),
    // newest first.
    for h in (0..3).rev() {
        let pts: Vec<Point> = (0..3600)
            .rev()
            .flat_map(|s| {
                let t = base + h * slice + s * step;
                ["c", "a", "b"].map(|host| point(host, s as f64, t))
            })
            .collect();
        e.write("metrics", pts, WriteOptions::default())
            .await
            .expect("write");
    }
    assert_eq!(e.persist(true).await.expect("persist"), 1);
    let path = the_one_file(&e, dir.path());

    let groups =
        ParquetRecordBatchReaderBuilder::try_new(std::fs::File::open(&path).expect("file"))
            .expect("reader")
            .metadata()
            .num_row_groups();
    assert_eq!(groups, 3, "one row group per slice");
    for g in 0..groups {
        let rows: Vec<(String, i64)> = read_rows(&path, Some(vec![g]))
            .iter()
            .flat_map(hosts_and_times)
            .collect();
        assert_eq!(rows.len(), 3 * 3600, "row group {g}");
        let start = base + g as i64 * slice;
        assert!(
            rows.iter().all(|(_, t)| (start..start + slice).contains(t)),
            "row group {g} holds one slice"
        );
        let mut sorted = rows.clone();
        sorted.sort();
        assert_eq!(rows, sorted, "row group {g} is sorted by (host, time)");
    }
}

#[tokio::test]
async fn over_the_memory_budget_writes_are_refused_until_persisted() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open(dir.path(), |c| c.memory_budget_bytes = 16 * 1024).await;
    let base = NOW - 3600 * SEC;
    let pts: Vec<Point> = (0..2000)
        .map(|i| point("a", i as f64, base + i * SEC))
        .collect();
    e.write("metrics", pts, WriteOptions::default())
        .await
        .expect("first write fits");
    assert!(e.memory_pressure(), "hot bytes {}", e.hot_bytes());
    let err = e
        .write(
            "metrics",
            vec![point("a", 1.0, base)],
            WriteOptions::default(),
        )
        .await
        .expect_err("over budget");
    assert!(matches!(err, Error::MemoryPressure { .. }), "{err}");
    assert!(
        err.to_string().contains("memory budget of 16384 bytes"),
        "{err}"
    );
    // Pressure alone (no chunk is old yet) makes chunks persist: the background persister
    // is woken by it, and an explicit run finishes whatever it has not.
    e.persist(false).await.expect("persist");
    assert!(!e.memory_pressure(), "hot bytes {}", e.hot_bytes());
    assert!(
        !e.catalog_snapshot()
            .table("metrics", "cpu")
            .expect("table")
            .files
            .is_empty()
    );
    e.write(
        "metrics",
        vec![point("a", 1.0, base)],
        WriteOptions::default(),
    )
    .await
    .expect("accepted again");
}

#[tokio::test]
async fn wal_is_truncated_after_persistence_and_replay_skips_persisted_rows() {
    let dir = tempfile::tempdir().expect("tempdir");
    let wal_files = || {
        std::fs::read_dir(dir.path().join("wal"))
            .expect("wal dir")
            .count()
    };
    let base = NOW - 3600 * SEC;
    {
        let e = open(dir.path(), |_| {}).await;
        for i in 0..5 {
            e.write(
                "metrics",
                vec![point("a", i as f64, base + i * SEC)],
                WriteOptions::default(),
            )
            .await
            .expect("write");
        }
        e.persist(true).await.expect("persist");
        // A late update of a persisted point, then a crash (no shutdown).
        e.write(
            "metrics",
            vec![point("a", 42.0, base + 2 * SEC)],
            WriteOptions::default(),
        )
        .await
        .expect("write");
    }
    let (e, report) = Engine::open(EngineConfig::for_test(dir.path()), ManualClock::new(NOW))
        .await
        .expect("reopen");
    assert_eq!(report.replayed_rows, 1, "{report:?}");
    assert_eq!(hot_rows(&e), 1);
    let cat = e.catalog_snapshot();
    assert_eq!(cat.table("metrics", "cpu").expect("table").files.len(), 1);
    e.persist(true).await.expect("persist");
    // Only the segment being written remains once everything is persisted. The WAL thread
    // deletes segments asynchronously: wait for that condition, with a deadline.
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while wal_files() != 1 {
        assert!(
            std::time::Instant::now() < deadline,
            "WAL segments left: {}",
            wal_files()
        );
        tokio::task::yield_now().await;
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn no_sync_acknowledges_before_the_fsync_and_still_stores() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open(dir.path(), |_| {}).await;
    let out = e
        .write(
            "metrics",
            vec![point("a", 1.0, NOW - SEC)],
            WriteOptions {
                no_sync: true,
                accept_partial: true,
            },
        )
        .await
        .expect("write");
    assert_eq!(out.durable_seq, None);
    // A following synced write is durable, and so (in order) is everything before it.
    let out = e
        .write(
            "metrics",
            vec![point("b", 1.0, NOW - SEC)],
            WriteOptions::default(),
        )
        .await
        .expect("write");
    assert!(out.durable_seq.is_some());
    assert_eq!(hot_rows(&e), 2);
}

#[tokio::test]
async fn points_older_than_retention_and_bad_names_are_rejected_per_point() {
    let dir = tempfile::tempdir().expect("tempdir");
    let e = open(dir.path(), |_| {}).await;
    let mut old = point("a", 1.0, NOW - 8 * 86_400 * SEC);
    old.line = 1;
    let mut ok = point("a", 1.0, NOW - SEC);
    ok.line = 2;
    let out = e
        .write("metrics", vec![old, ok], WriteOptions::default())
        .await
        .expect("write");
    assert_eq!(out.accepted, 1);
    assert_eq!(out.rejected[0].line, 1);
    assert!(
        out.rejected[0]
            .reason
            .contains("older than the hot tier's retention"),
        "{:?}",
        out.rejected
    );
    let err = e
        .write(
            "system",
            vec![point("a", 1.0, NOW)],
            WriteOptions::default(),
        )
        .await
        .expect_err("reserved");
    assert!(err.to_string().contains("reserved"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writes_share_fsyncs_and_a_lone_write_does_not_wait() {
    let dir = tempfile::tempdir().expect("tempdir");
    // A long batching delay: if it were a tick, the lone write below would take 5 s.
    let e = open(dir.path(), |c| {
        c.wal_max_batch_delay = Duration::from_secs(5)
    })
    .await;
    let started = std::time::Instant::now();
    e.write(
        "metrics",
        vec![point("a", 1.0, NOW - SEC)],
        WriteOptions::default(),
    )
    .await
    .expect("write");
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "lone write took {:?}",
        started.elapsed()
    );
    let before = e.wal_fsyncs();
    let mut tasks = Vec::new();
    for w in 0..64i64 {
        let e = Arc::clone(&e);
        tasks.push(tokio::spawn(async move {
            e.write(
                "metrics",
                vec![point(&format!("w{w}"), 1.0, NOW - SEC)],
                WriteOptions::default(),
            )
            .await
            .expect("write")
            .durable_seq
            .expect("durable")
        }));
    }
    let mut seqs = Vec::new();
    for t in tasks {
        seqs.push(t.await.expect("task"));
    }
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), 64, "every write has its own sequence number");
    let fsyncs = e.wal_fsyncs() - before;
    assert!(fsyncs < 64, "64 concurrent writes took {fsyncs} fsyncs");
    assert_eq!(hot_rows(&e), 65);
}
