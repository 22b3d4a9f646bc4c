//! `strata-engine` owns the write path and the data at rest: the WAL, the hot in-memory
//! table, persistence to Parquet, rollups into the warm and cold tiers, and retention
//! ([`tiers`]). Every path it writes is built in [`paths`]; the WAL format is documented
//! in [`wal`], the Parquet layout in [`persist`], the rollup format in [`rollup`].
//!
//! It must not parse wire protocols (that is `strata-ingest`) or plan user SQL (that is
//! `strata-sql`); it uses DataFusion only to deduplicate and sort what it persists, and
//! exposes [`dedup`] so the SQL layer applies exactly the same last-write-wins rule.
//!
//! Start with [`Engine::open`], [`Engine::write`] and [`Engine::table_snapshot`].
//!
//! Durability: [`Engine::write`] resolves only after the write is fsynced in the WAL
//! (group commit: writes queued while one fsync runs share the next), then applied to
//! the hot table in sequence order. WAL segments are deleted only once every write in
//! them is in a Parquet file registered in the catalog.

pub mod buffer;
pub mod chunk_sort;
pub use strata_catalog::clock;
pub mod dedup;
pub mod last_values;
pub mod paths;
pub mod persist;
pub mod read_cost;
pub mod rollup;
pub mod rows;
pub mod scan;
pub mod schema;
pub mod system;
pub mod tiers;
pub mod time_blocks;
pub mod time_filter;
pub mod wal;
pub mod write;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use arrow::array::{Array, BooleanArray, TimestampNanosecondArray};
use arrow::compute::filter_record_batch;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use datafusion::prelude::SessionContext;
use object_store::local::LocalFileSystem;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::RwLock;
use std::sync::mpsc::TryRecvError;
use strata_catalog::{Catalog, CatalogState, ColumnDef, ParquetFileMeta, Tier};

use tokio::sync::{Notify, oneshot};

use crate::buffer::{FrozenChunk, SeqBatch, TableBuffer, apply_batch};
use crate::clock::Clock;
use crate::paths::{ParquetFilePath, wal_dir};
pub use crate::rows::{Block, FieldValues, Rows};
use crate::schema::{TIME_COLUMN, arrow_schema};
pub use crate::tiers::TierReport;
use crate::wal::{SegmentWriter, WalRecord};
pub use crate::write::{FieldValue, Interner, Point, PointLimits, RejectedPoint, Tags};

/// Names no database may have: they are schemas of every database.
pub const RESERVED_DATABASES: [&str; 2] = ["system", "information_schema"];

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid database name `{name}`: {reason}")]
    InvalidDatabase { name: String, reason: String },
    #[error(
        "the hot table holds {hot_bytes} bytes, over the memory budget of {budget} bytes; \
         retry after persistence catches up"
    )]
    MemoryPressure { hot_bytes: usize, budget: usize },
    #[error("{} point(s) rejected and the request asked for all-or-nothing; nothing was written", rejected.len())]
    AllOrNothing { rejected: Vec<RejectedPoint> },
    #[error("the WAL could not store the write: {0}")]
    Wal(String),
    #[error("invalid retention: {0}")]
    InvalidRetention(String),
    #[error("invalid engine setting: {0}")]
    InvalidConfig(String),
    #[error("the engine is shutting down")]
    ShuttingDown,
    #[error("catalog: {0}")]
    Catalog(#[from] strata_catalog::Error),
    #[error("WAL: {0}")]
    WalOpen(#[from] wal::WalError),
    #[error("data store: {0}")]
    Store(#[from] object_store::Error),
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    #[error("parquet: {0}")]
    Parquet(#[from] parquet::errors::ParquetError),
    #[error("I/O on {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Engine settings; every one has a default fit for a single server.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    pub data_dir: PathBuf,
    /// Event-time span of one hot chunk (and so of one persisted file).
    pub chunk_duration: Duration,
    /// A chunk is persisted once it has been in memory this long and its time range
    /// has passed.
    pub persist_age: Duration,
    /// How often the persister looks for due chunks.
    pub persist_interval: Duration,
    /// Hot-table bytes at which writes are refused (503). From 70% of it, chunks are
    /// persisted early, oldest first.
    pub memory_budget_bytes: usize,
    /// A WAL segment is closed and a new one started past this size.
    pub wal_segment_bytes: u64,
    /// Upper bound on the bytes of one group commit.
    pub wal_max_group_bytes: usize,
    /// Longest the WAL waits to add writes that are already on their way to a group
    /// commit. A maximum, not a tick: a lone write is written and fsynced at once.
    pub wal_max_batch_delay: Duration,
    /// Points older than this (relative to the clock) are rejected, and raw files whose
    /// chunk ended this long ago are removed (once rolled up).
    pub hot_retention: Duration,
    /// Warm-tier (1-minute rollup) files are removed this long after their window ends.
    pub warm_retention: Duration,
    /// Cold-tier (1-hour rollup) files are removed this long after their window ends.
    pub cold_retention: Duration,
    /// A file leaving the catalog (retention) is deleted from its store this much later,
    /// so queries already reading it finish.
    pub retention_grace: Duration,
    /// How often rollups and retention run.
    pub rollup_interval: Duration,
    /// A window is rolled up once it ended this long ago (late data after that makes its
    /// buckets dirty and they are recomputed).
    pub rollup_settle: Duration,
    /// Time span of one warm-tier rollup file.
    pub warm_window: Duration,
    /// Time span of one cold-tier rollup file.
    pub cold_window: Duration,
    /// Where the cold tier lives; `None` is `cold/` under the data directory.
    pub cold_store: Option<Arc<dyn ObjectStore>>,
    /// Compaction merges each tier's files (hot, warm, cold) into one sorted file per
    /// window, level by level: first per window of the first span, then those files per
    /// window of the next. File counts stay bounded, and longer runs of each series per
    /// file compress better (delta encoding restarts at every series boundary). By
    /// default raw chunks become hour files, then 6-hour files; warm windows become day
    /// files; cold ones 30-day files.
    pub compaction_windows: [Vec<Duration>; 3],
    /// Rollup files larger than this are uploaded in parts of this size (multipart; at
    /// least 5 MiB, S3's smallest part).
    pub upload_part_bytes: usize,
    pub max_columns_per_table: usize,
    pub max_name_bytes: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("strata-data"),
            chunk_duration: Duration::from_secs(600),
            persist_age: Duration::from_secs(600),
            persist_interval: Duration::from_secs(1),
            memory_budget_bytes: 2 << 30,
            wal_segment_bytes: 64 << 20,
            wal_max_group_bytes: 32 << 20,
            wal_max_batch_delay: Duration::from_millis(2),
            hot_retention: Duration::from_secs(7 * 24 * 3600),
            warm_retention: Duration::from_secs(30 * 24 * 3600),
            cold_retention: Duration::from_secs(365 * 24 * 3600),
            retention_grace: Duration::from_secs(300),
            rollup_interval: Duration::from_secs(30),
            rollup_settle: Duration::from_secs(1200),
            warm_window: Duration::from_secs(3600),
            cold_window: Duration::from_secs(24 * 3600),
            cold_store: None,
            upload_part_bytes: 8 << 20,
            compaction_windows: [
                vec![Duration::from_secs(3600), Duration::from_secs(6 * 3600)],
                vec![Duration::from_secs(24 * 3600)],
                vec![Duration::from_secs(30 * 24 * 3600)],
            ],
            max_columns_per_table: 1000,
            max_name_bytes: 512,
        }
    }
}

impl EngineConfig {
    /// Settings for tests: everything under `dir`.
    pub fn for_test(dir: impl Into<PathBuf>) -> Self {
        Self {
            data_dir: dir.into(),
            persist_interval: Duration::from_millis(50),
            ..Self::default()
        }
    }
}

/// How a write wants to be treated.
#[derive(Debug, Clone, Copy)]
pub struct WriteOptions {
    /// Acknowledge once queued for the WAL, before the fsync (InfluxDB 3's `no_sync`).
    pub no_sync: bool,
    /// Store the valid points of a request even if some are rejected (the default).
    pub accept_partial: bool,
}

impl Default for WriteOptions {
    fn default() -> Self {
        Self {
            no_sync: false,
            accept_partial: true,
        }
    }
}

/// What happened to a write.
#[derive(Debug, Clone, Default)]
pub struct WriteOutcome {
    pub accepted: usize,
    pub rejected: Vec<RejectedPoint>,
    /// The WAL sequence of the write once durable (`None` with `no_sync` or if nothing
    /// was written).
    pub durable_seq: Option<u64>,
}

/// A consistent view of one table for a query: hot data and registered files.
#[derive(Debug, Clone)]
pub struct TableSnapshot {
    pub db: String,
    pub table: String,
    pub columns: Vec<ColumnDef>,
    pub schema: SchemaRef,
    pub hot: Vec<HotPiece>,
    /// Files of every tier.
    pub files: Vec<ParquetFileMeta>,
    /// How far the rollup tiers have got, as of the same catalog version as `files`.
    pub rollup: strata_catalog::RollupProgress,
}

/// The hot batches of one chunk (active or being persisted).
#[derive(Debug, Clone)]
pub struct HotPiece {
    pub chunk_start: i64,
    pub chunk_end: i64,
    pub min_time: i64,
    pub max_time: i64,
    pub rows: usize,
    /// Memory the piece's Arrow buffers hold (what counts against the memory budget).
    pub bytes: usize,
    /// Rows may share (series, time): last-write-wins must run over this piece.
    pub may_overlap: bool,
    pub batches: Vec<SeqBatch>,
}

/// One table's last-value cache, as `system.last_value_caches` shows it.
#[derive(Debug, Clone)]
pub struct LastValuesStatus {
    pub db: String,
    pub table: String,
    pub state: &'static str,
    pub reason: Option<String>,
    pub series: u64,
    pub bytes: u64,
    pub hits: u64,
    pub started_at: i64,
    pub ready_at: Option<i64>,
}

#[derive(Debug, Default)]
struct State {
    dbs: BTreeMap<String, BTreeMap<String, TableBuffer>>,
    /// Highest WAL sequence applied to the hot table.
    applied_seq: u64,
}

struct Shared {
    config: EngineConfig,
    clock: Arc<dyn Clock>,
    state: RwLock<State>,
    catalog: Arc<Catalog>,
    store: Arc<dyn ObjectStore>,
    /// The same store as `store`, for what only a local directory has (fsync).
    local: Arc<LocalFileSystem>,
    /// The cold tier's store.
    cold: Arc<dyn ObjectStore>,
    /// The same store as `cold` when it is a local directory (for fsync).
    cold_local: Option<Arc<LocalFileSystem>>,
    hot_bytes: AtomicUsize,
    next_file_id: AtomicU64,
    closed: AtomicBool,
    persist_wanted: Notify,
    /// Synced writes queued or about to be queued for the WAL and not yet answered.
    sync_writes_in_flight: AtomicUsize,
    wal_fsyncs: AtomicU64,
}

impl Shared {
    fn local_stores(&self) -> scan::LocalStores {
        scan::LocalStores {
            data: Some(Arc::clone(&self.local)),
            cold: self.cold_local.clone(),
        }
    }
}

impl Shared {
    fn chunk_ns(&self) -> i64 {
        i64::try_from(self.config.chunk_duration.as_nanos())
            .unwrap_or(i64::MAX)
            .max(1)
    }

    fn apply(&self, seq: u64, db: &str, tables: Vec<(String, RecordBatch)>) {
        let chunk_ns = self.chunk_ns();
        let now = self.clock.now_ns();
        let mut st = self.state.write();
        let mut added = 0;
        let dbs = st.dbs.entry(db.to_string()).or_default();
        for (name, batch) in tables {
            let t = dbs.entry(name).or_default();
            if let Some(lv) = t.last_values.as_mut() {
                lv.apply_write(&batch);
            }
            added += apply_batch(t, seq, batch, chunk_ns, now);
        }
        st.applied_seq = st.applied_seq.max(seq);
        let total = if added >= 0 {
            self.hot_bytes
                .fetch_add(added.unsigned_abs(), Ordering::Relaxed)
                + added.unsigned_abs()
        } else {
            let saved = added.unsigned_abs();
            self.hot_bytes
                .fetch_sub(saved, Ordering::Relaxed)
                .saturating_sub(saved)
        };
        metrics::gauge!("strata_hot_bytes").set(total as f64);
        if total * 10 >= self.config.memory_budget_bytes * 7 {
            self.persist_wanted.notify_one();
        }
    }
}

enum WalMsg {
    Write {
        db: String,
        tables: Vec<(String, RecordBatch)>,
        reply: Option<oneshot::Sender<Result<u64, String>>>,
    },
    /// Delete segments holding only sequences below `below` (rotating first).
    Truncate { below: u64 },
    /// Fsync and stop.
    Close { reply: oneshot::Sender<()> },
}

impl WalMsg {
    fn is_sync_write(&self) -> bool {
        matches!(self, Self::Write { reply: Some(_), .. })
    }
}

/// Aborts a task when dropped.
struct AbortOnDrop(tokio::task::JoinHandle<()>);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The thread tier maintenance runs on (its name, as `/proc` and `perf` show it).
pub const MAINTENANCE_THREAD: &str = "strata-maint";

/// Tier maintenance on a runtime of its own, one worker thread: rollups and compaction
/// never take more than one core from writes and queries, and their CPU time can be
/// told apart from the ingest path's.
struct Maintainer {
    _task: AbortOnDrop,
    runtime: Option<tokio::runtime::Runtime>,
}

impl Drop for Maintainer {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            // Without waiting: a pass in flight stops at its next await, and everything
            // it committed is consistent (each step commits with its progress).
            rt.shutdown_background();
        }
    }
}

/// The storage engine. Cheap to share behind an `Arc`.
pub struct Engine {
    shared: Arc<Shared>,
    wal_tx: std::sync::mpsc::Sender<WalMsg>,
    persist_lock: tokio::sync::Mutex<()>,
    maintenance_lock: tokio::sync::Mutex<()>,
    df: SessionContext,
    /// Runs rollups on one partition, so they take one core at most from queries.
    rollup_df: SessionContext,
    persister: parking_lot::Mutex<Option<AbortOnDrop>>,
    maintainer: parking_lot::Mutex<Option<Maintainer>>,
    system_tables: RwLock<Vec<Arc<dyn system::SystemTable>>>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("data_dir", &self.shared.config.data_dir)
            .finish_non_exhaustive()
    }
}

/// What start-up found, for the log.
#[derive(Debug, Clone, Default)]
pub struct OpenReport {
    pub catalog_version: u64,
    pub wal: wal::ReplayStats,
    pub replayed_rows: usize,
    pub skipped_persisted_rows: usize,
}

impl Engine {
    /// Opens (or creates) the data directory: loads the catalog, replays the WAL, starts
    /// the WAL thread and the persister.
    pub async fn open(
        config: EngineConfig,
        clock: Arc<dyn Clock>,
    ) -> Result<(Arc<Self>, OpenReport)> {
        let minute = Duration::from_secs(60);
        if config.chunk_duration.is_zero()
            || !config
                .chunk_duration
                .as_nanos()
                .is_multiple_of(minute.as_nanos())
        {
            return Err(Error::InvalidConfig(format!(
                "chunk_duration must be a whole number of minutes (rollup buckets must not \
                 straddle chunks), got {:?}",
                config.chunk_duration
            )));
        }
        std::fs::create_dir_all(&config.data_dir).map_err(|source| Error::Io {
            path: config.data_dir.clone(),
            source,
        })?;
        let local = Arc::new(LocalFileSystem::new_with_prefix(&config.data_dir)?);
        let store: Arc<dyn ObjectStore> = Arc::clone(&local) as _;
        let (cold, cold_local) = match &config.cold_store {
            Some(s) => (Arc::clone(s), None),
            None => {
                let dir = config.data_dir.join("cold");
                std::fs::create_dir_all(&dir).map_err(|source| Error::Io {
                    path: dir.clone(),
                    source,
                })?;
                let l = Arc::new(LocalFileSystem::new_with_prefix(&dir)?);
                (Arc::clone(&l) as Arc<dyn ObjectStore>, Some(l))
            }
        };
        let catalog = Catalog::load(Arc::clone(&store)).await?;
        let cat = catalog.snapshot();
        let mut state = State::default();
        let mut max_file_seq = 0;
        for (db, def) in &cat.databases {
            let tables = state.dbs.entry(db.clone()).or_default();
            for (name, t) in &def.tables {
                tables.entry(name.clone()).or_default().columns = t.columns.clone();
                // Rollup files carry the newest WAL sequence they saw: new writes must
                // rank after them even when the raw files are gone.
                max_file_seq = t
                    .files
                    .iter()
                    .map(|f| f.max_seq)
                    .fold(max_file_seq, u64::max);
            }
        }
        let shared = Arc::new(Shared {
            next_file_id: AtomicU64::new(cat.next_file_id),
            config,
            clock,
            state: RwLock::new(state),
            catalog: Arc::new(catalog),
            store,
            local,
            cold,
            cold_local,
            hot_bytes: AtomicUsize::new(0),
            closed: AtomicBool::new(false),
            persist_wanted: Notify::new(),
            sync_writes_in_flight: AtomicUsize::new(0),
            wal_fsyncs: AtomicU64::new(0),
        });

        let mut report = OpenReport {
            catalog_version: cat.version,
            ..Default::default()
        };
        let dir = wal_dir(&shared.config.data_dir);
        let replay_shared = Arc::clone(&shared);
        let (stats, rows, skipped) = tokio::task::spawn_blocking(move || {
            let mut rows = 0;
            let mut skipped = 0;
            let stats = wal::replay(&dir, |rec| {
                let (r, s) = replay_record(&replay_shared, &cat, rec);
                rows += r;
                skipped += s;
            });
            stats.map(|s| (s, rows, skipped))
        })
        .await
        .map_err(|e| Error::Wal(e.to_string()))??;
        for t in &stats.torn {
            tracing::warn!(detail = %t, "WAL replay stopped at a torn or corrupt record");
        }
        report.replayed_rows = rows;
        report.skipped_persisted_rows = skipped;
        let next_seq = stats.last_seq.max(max_file_seq) + 1;
        report.wal = stats;
        shared.state.write().applied_seq = next_seq - 1;

        let segment = SegmentWriter::create(&wal_dir(&shared.config.data_dir), next_seq)?;
        let (wal_tx, wal_rx) = std::sync::mpsc::channel();
        let wal_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("strata-wal".into())
            .spawn(move || wal_thread(wal_shared, segment, next_seq, wal_rx))
            .map_err(|source| Error::Io {
                path: wal_dir(&shared.config.data_dir),
                source,
            })?;

        let locals = Arc::new(shared.local_stores());
        let df = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_extension(Arc::clone(&locals)),
        );
        let rollup_df = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new()
                .with_target_partitions(1)
                .with_extension(locals),
        );
        for ctx in [&df, &rollup_df] {
            for (url, s) in [
                (scan::DATA_STORE_URL, &shared.store),
                (scan::COLD_STORE_URL, &shared.cold),
            ] {
                let url = url::Url::parse(url).map_err(|e| Error::Wal(e.to_string()))?;
                ctx.register_object_store(&url, Arc::clone(s));
            }
        }
        let engine = Arc::new(Self {
            shared,
            wal_tx,
            persist_lock: tokio::sync::Mutex::new(()),
            maintenance_lock: tokio::sync::Mutex::new(()),
            df,
            rollup_df,
            persister: parking_lot::Mutex::new(None),
            maintainer: parking_lot::Mutex::new(None),
            system_tables: RwLock::new(Vec::new()),
        });
        let weak = Arc::downgrade(&engine);
        let interval = engine.shared.config.persist_interval;
        let shared = Arc::clone(&engine.shared);
        let handle = tokio::spawn(async move {
            loop {
                let _ = tokio::time::timeout(interval, shared.persist_wanted.notified()).await;
                let Some(e) = weak.upgrade() else { return };
                if let Err(err) = e.persist(false).await {
                    metrics::counter!("strata_persist_errors_total").increment(1);
                    tracing::error!(error = %err, "persisting hot data failed; will retry");
                }
            }
        });
        *engine.persister.lock() = Some(AbortOnDrop(handle));
        let weak = Arc::downgrade(&engine);
        let interval = engine.shared.config.rollup_interval;
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name(MAINTENANCE_THREAD)
            // Its blocking threads (Parquet encoding) live as long as the server, so
            // their CPU time stays countable per thread.
            .thread_keep_alive(Duration::from_secs(24 * 3600))
            .enable_all()
            .build()
            .map_err(|e| Error::Wal(format!("could not start the maintenance thread: {e}")))?;
        let handle = runtime.spawn(async move {
            loop {
                tokio::time::sleep(interval).await;
                let Some(e) = weak.upgrade() else { return };
                if let Err(err) = e.maintain_tiers().await {
                    metrics::counter!("strata_rollup_errors_total").increment(1);
                    tracing::warn!(error = %err, "tier maintenance failed; will retry");
                }
            }
        });
        *engine.maintainer.lock() = Some(Maintainer {
            _task: AbortOnDrop(handle),
            runtime: Some(runtime),
        });
        Ok((engine, report))
    }

    pub fn config(&self) -> &EngineConfig {
        &self.shared.config
    }

    pub fn clock(&self) -> Arc<dyn Clock> {
        Arc::clone(&self.shared.clock)
    }

    pub fn catalog(&self) -> &Catalog {
        &self.shared.catalog
    }

    /// The catalog, shared with crates that keep their own definitions in it (alerting).
    pub fn shared_catalog(&self) -> Arc<Catalog> {
        Arc::clone(&self.shared.catalog)
    }

    /// The object store holding persisted files; paths in the catalog are relative to it.
    pub fn data_store(&self) -> Arc<dyn ObjectStore> {
        Arc::clone(&self.shared.store)
    }

    /// WAL fsyncs since start (one per group commit).
    pub fn wal_fsyncs(&self) -> u64 {
        self.shared.wal_fsyncs.load(Ordering::Relaxed)
    }

    /// Adds a table to every database's `system` schema; one of the same name is
    /// replaced.
    pub fn register_system_table(&self, table: Arc<dyn system::SystemTable>) {
        let mut tables = self.system_tables.write();
        tables.retain(|t| t.name() != table.name());
        tables.push(table);
    }

    /// The tables registered with [`Engine::register_system_table`].
    pub fn system_tables(&self) -> Vec<Arc<dyn system::SystemTable>> {
        self.system_tables.read().clone()
    }

    pub fn hot_bytes(&self) -> usize {
        self.shared.hot_bytes.load(Ordering::Relaxed)
    }

    /// True while writes are refused for memory: HTTP answers 503, Kafka pauses.
    pub fn memory_pressure(&self) -> bool {
        self.hot_bytes() >= self.shared.config.memory_budget_bytes
    }

    /// Validates and writes rows (or points) to database `db`. Resolves once the write is
    /// durable (unless `no_sync`). Rejected rows are listed with their line and reason;
    /// with `accept_partial`, the valid ones are written anyway.
    pub async fn write(
        &self,
        db: &str,
        rows: impl Into<Rows>,
        opts: WriteOptions,
    ) -> Result<WriteOutcome> {
        check_database_name(db)?;
        if self.shared.closed.load(Ordering::Acquire) {
            return Err(Error::ShuttingDown);
        }
        if self.memory_pressure() {
            self.shared.persist_wanted.notify_one();
            return Err(Error::MemoryPressure {
                hot_bytes: self.hot_bytes(),
                budget: self.shared.config.memory_budget_bytes,
            });
        }
        let rows: Rows = rows.into();
        let retention = self.retention_ns(db, Tier::Hot);
        let limits = PointLimits {
            max_columns_per_table: self.shared.config.max_columns_per_table,
            max_name_bytes: self.shared.config.max_name_bytes,
            oldest_time: self.shared.clock.now_ns().saturating_sub(retention),
        };
        let mut rejected = Vec::new();
        let mut valid: BTreeMap<&str, Vec<(&Block, write::Accepted)>> = BTreeMap::new();
        let mut scratch: datafusion::common::HashMap<&str, Vec<ColumnDef>> =
            datafusion::common::HashMap::default();
        {
            // Validation and the schema change it implies are one atomic step, so two
            // concurrent writes cannot give one field two types.
            let mut st = self.shared.state.write();
            for b in rows.blocks() {
                let cols = scratch.entry(b.table()).or_insert_with(|| {
                    st.dbs
                        .get(db)
                        .and_then(|t| t.get(b.table()))
                        .map(|t| t.columns.clone())
                        .unwrap_or_default()
                });
                match write::validate_block(b, cols, &limits, &mut rejected) {
                    write::Accepted::None => {}
                    accepted => valid.entry(b.table()).or_default().push((b, accepted)),
                }
            }
            if !opts.accept_partial && !rejected.is_empty() {
                return Err(Error::AllOrNothing { rejected });
            }
            if !valid.is_empty() {
                let now = self.shared.clock.now_ns();
                let tables = st.dbs.entry(db.to_string()).or_default();
                for name in valid.keys() {
                    if let Some(cols) = scratch.get(*name) {
                        let t = tables.entry((*name).to_string()).or_insert_with(|| {
                            // A new table: every row it will ever have passes the write
                            // path, so its last-value cache needs no warm-up read.
                            TableBuffer {
                                last_values: Some(last_values::LastValues::ready(now)),
                                ..TableBuffer::default()
                            }
                        });
                        t.columns = cols.clone();
                    }
                }
            }
        }
        let accepted: usize = valid.values().flatten().map(|(b, a)| a.count(b)).sum();
        metrics::counter!("strata_points_rejected_total").increment(rejected.len() as u64);
        if accepted == 0 {
            return Ok(WriteOutcome {
                accepted,
                rejected,
                durable_seq: None,
            });
        }
        let mut tables = Vec::with_capacity(valid.len());
        let mut series_keys = vec![None; rows.series.len()];
        for (name, blocks) in &valid {
            let cols = scratch.get(*name).map(Vec::as_slice).unwrap_or_default();
            let batch = write::build_rows_batch(&rows.series, blocks, cols, &mut series_keys)
                .map_err(|e| Error::Wal(format!("building the batch for `{name}`: {e}")))?;
            tables.push(((*name).to_string(), batch));
        }
        // The rows are freed before the first await, on the thread that (most often) has
        // just parsed them, where the allocator reuses their memory for the next request's
        // rows. Freed after the WAL's answer, often on another thread, their pages were
        // faulted in afresh: a sixth of the page faults of a TSBS load.
        drop((valid, scratch, series_keys));
        drop(rows);
        let (reply, rx) = if opts.no_sync {
            (None, None)
        } else {
            let (tx, rx) = oneshot::channel();
            (Some(tx), Some(rx))
        };
        let sync = reply.is_some();
        if sync {
            self.shared
                .sync_writes_in_flight
                .fetch_add(1, Ordering::AcqRel);
        }
        if self
            .wal_tx
            .send(WalMsg::Write {
                db: db.to_string(),
                tables,
                reply,
            })
            .is_err()
        {
            if sync {
                self.shared
                    .sync_writes_in_flight
                    .fetch_sub(1, Ordering::AcqRel);
            }
            return Err(Error::ShuttingDown);
        }
        let durable_seq = match rx {
            None => None,
            Some(rx) => Some(
                rx.await
                    .map_err(|_| Error::ShuttingDown)?
                    .map_err(Error::Wal)?,
            ),
        };
        metrics::counter!("strata_points_written_total").increment(accepted as u64);
        Ok(WriteOutcome {
            accepted,
            rejected,
            durable_seq,
        })
    }

    /// Every database: those in the catalog and those only in the hot table.
    pub fn databases(&self) -> Vec<String> {
        let st = self.shared.state.read();
        let cat = self.shared.catalog.snapshot();
        let mut out: Vec<String> = st.dbs.keys().chain(cat.databases.keys()).cloned().collect();
        out.sort();
        out.dedup();
        out
    }

    pub fn has_database(&self, db: &str) -> bool {
        self.shared.state.read().dbs.contains_key(db)
            || self.shared.catalog.snapshot().databases.contains_key(db)
    }

    /// The tables of `db`, sorted.
    pub fn tables(&self, db: &str) -> Vec<String> {
        let st = self.shared.state.read();
        st.dbs
            .get(db)
            .map(|t| t.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts `table`'s last-value cache if it has none (or a failed warm-up left none):
    /// from now on writes update it. Returns true when the caller must now read each
    /// series' latest row from the table and hand it to [`Self::last_values_fill`]
    /// (or [`Self::last_values_abandon`]).
    pub fn last_values_start(&self, db: &str, table: &str) -> bool {
        let now = self.shared.clock.now_ns();
        let mut st = self.shared.state.write();
        let Some(t) = st.dbs.get_mut(db).and_then(|d| d.get_mut(table)) else {
            return false;
        };
        if t.last_values.is_some() {
            return false;
        }
        t.last_values = Some(last_values::LastValues::warming(now));
        true
    }

    /// Completes a warm-up with the latest row of every series as read from the table
    /// (a read that started after [`Self::last_values_start`]).
    pub fn last_values_fill(&self, db: &str, table: &str, batches: &[RecordBatch]) {
        let now = self.shared.clock.now_ns();
        let mut st = self.shared.state.write();
        let Some(t) = st.dbs.get_mut(db).and_then(|d| d.get_mut(table)) else {
            return;
        };
        let columns = t.columns.clone();
        if let Some(lv) = t.last_values.as_mut() {
            lv.merge_scan(batches, &columns, now);
        }
    }

    /// Drops a cache whose warm-up failed, so a later query tries again.
    pub fn last_values_abandon(&self, db: &str, table: &str) {
        let mut st = self.shared.state.write();
        if let Some(t) = st.dbs.get_mut(db).and_then(|d| d.get_mut(table))
            && t.last_values
                .as_ref()
                .is_some_and(|lv| lv.state == last_values::CacheState::Warming)
        {
            t.last_values = None;
        }
    }

    /// The latest row of every series of `table` in `schema` (the table's schema as a
    /// query planned it; columns added since are left out, missing ones are null), when
    /// its cache is ready (counted as a hit); `None` otherwise. With `per_group`, only
    /// the latest row of each group of series with equal values of those tags.
    pub fn last_values(
        &self,
        db: &str,
        table: &str,
        schema: &SchemaRef,
        per_group: Option<&[&str]>,
    ) -> Option<Result<RecordBatch, arrow::error::ArrowError>> {
        let st = self.shared.state.read();
        let t = st.dbs.get(db)?.get(table)?;
        let lv = t.last_values.as_ref()?;
        if lv.state != last_values::CacheState::Ready {
            return None;
        }
        lv.hits.fetch_add(1, Ordering::Relaxed);
        Some(lv.to_batch(schema, &t.columns, i64::MIN, per_group))
    }

    /// Every table's last-value cache, for `system.last_value_caches`.
    pub fn last_values_status(&self) -> Vec<LastValuesStatus> {
        let st = self.shared.state.read();
        let mut out = Vec::new();
        for (db, tables) in &st.dbs {
            for (table, t) in tables {
                if let Some(lv) = &t.last_values {
                    out.push(LastValuesStatus {
                        db: db.clone(),
                        table: table.clone(),
                        state: lv.state.name(),
                        reason: match &lv.state {
                            last_values::CacheState::Off(why) => Some(why.clone()),
                            _ => None,
                        },
                        series: lv.series() as u64,
                        bytes: lv.bytes() as u64,
                        hits: lv.hits.load(Ordering::Relaxed),
                        started_at: lv.started_at,
                        ready_at: lv.ready_at,
                    });
                }
            }
        }
        out
    }

    /// A consistent snapshot of one table: hot pieces and files, each row visible once
    /// or (for a chunk being persisted right now) twice with equal values, which the
    /// dedup step of a query merges.
    pub fn table_snapshot(&self, db: &str, table: &str) -> Option<TableSnapshot> {
        let st = self.shared.state.read();
        let t = st.dbs.get(db)?.get(table)?;
        // Read the catalog while holding the state lock: a persist removes a frozen chunk
        // only after its file is in the catalog, so we see the chunk, the file, or both.
        let cat = self.shared.catalog.snapshot();
        let mut hot: Vec<HotPiece> = t
            .active
            .values()
            .map(|c| HotPiece {
                chunk_start: c.start,
                chunk_end: c.end,
                min_time: c.stats.min_time,
                max_time: c.stats.max_time,
                rows: c.stats.rows,
                bytes: c.stats.bytes,
                may_overlap: c.stats.may_overlap,
                batches: c.batches.clone(),
            })
            .collect();
        hot.extend(t.frozen.iter().map(|c| HotPiece {
            chunk_start: c.start,
            chunk_end: c.end,
            min_time: c.stats.min_time,
            max_time: c.stats.max_time,
            rows: c.stats.rows,
            bytes: c.stats.bytes,
            may_overlap: c.stats.may_overlap,
            batches: c.batches.clone(),
        }));
        let (files, rollup) = cat
            .table(db, table)
            .map(|t| (t.files.clone(), t.rollup.clone()))
            .unwrap_or_default();
        Some(TableSnapshot {
            db: db.to_string(),
            table: table.to_string(),
            schema: arrow_schema(&t.columns),
            columns: t.columns.clone(),
            hot,
            files,
            rollup,
        })
    }

    /// The current catalog state (files, schemas).
    pub fn catalog_snapshot(&self) -> Arc<CatalogState> {
        self.shared.catalog.snapshot()
    }

    /// The local directories behind the tiers' stores, for sessions' scans to read in place.
    pub fn local_stores(&self) -> scan::LocalStores {
        self.shared.local_stores()
    }

    /// The store a tier's files live in.
    pub fn tier_store(&self, tier: Tier) -> Arc<dyn ObjectStore> {
        match tier {
            Tier::Hot | Tier::Warm => Arc::clone(&self.shared.store),
            Tier::Cold => Arc::clone(&self.shared.cold),
        }
    }

    fn allocate_file_id(&self) -> u64 {
        self.shared.next_file_id.fetch_add(1, Ordering::SeqCst)
    }

    fn next_file_id(&self) -> u64 {
        self.shared.next_file_id.load(Ordering::SeqCst)
    }

    /// Persists due chunks (or, with `all`, every hot chunk) to Parquet, registers them in
    /// the catalog, and lets the WAL drop what is now persisted. Returns files written.
    pub async fn persist(&self, all: bool) -> Result<usize> {
        let _only_one = self.persist_lock.lock().await;
        let now = self.shared.clock.now_ns();
        let work = self.freeze(all, now);
        if work.is_empty() {
            return Ok(0);
        }
        let mut done: Vec<(Arc<FrozenChunk>, Vec<ColumnDef>, ParquetFileMeta)> = Vec::new();
        for (chunk, columns) in work {
            match self.write_file(&chunk, &columns, now).await {
                Ok(meta) => done.push((chunk, columns, meta)),
                Err(e) => {
                    metrics::counter!("strata_persist_errors_total").increment(1);
                    tracing::error!(db = %chunk.db, table = %chunk.table, chunk = chunk.start,
                        error = %e, "could not persist a chunk; it stays in memory and will be retried");
                }
            }
        }
        if done.is_empty() {
            return Ok(0);
        }
        let next_id = self.next_file_id();
        let committed = self
            .shared
            .catalog
            .commit(|s| {
                for (chunk, columns, meta) in &done {
                    let t = s.database_mut(&chunk.db).table_mut(&chunk.table);
                    t.merge_columns(columns);
                    t.files.push(meta.clone());
                    // Late data for buckets already rolled up.
                    t.rollup
                        .mark_dirty(Tier::Warm, meta.min_time, meta.max_time.saturating_add(1));
                }
                s.next_file_id = s.next_file_id.max(next_id);
            })
            .await?;
        // The WAL may drop these writes below, so the file and the catalog version that
        // registers it must survive a power loss, not just a process crash.
        let version_path = strata_catalog::CatalogPath::version(committed.version).to_object_path();
        self.fsync_data_file(version_path.as_ref()).await?;
        let below = {
            let mut st = self.shared.state.write();
            for (chunk, _, _) in &done {
                if let Some(t) = st
                    .dbs
                    .get_mut(&chunk.db)
                    .and_then(|d| d.get_mut(&chunk.table))
                {
                    t.frozen.retain(|c| !Arc::ptr_eq(c, chunk));
                }
                self.shared
                    .hot_bytes
                    .fetch_sub(chunk.stats.bytes, Ordering::Relaxed);
            }
            let min_hot = st
                .dbs
                .values()
                .flat_map(|d| d.values())
                .flat_map(|t| {
                    t.active
                        .values()
                        .map(|c| c.stats.min_seq)
                        .chain(t.frozen.iter().map(|c| c.stats.min_seq))
                })
                .min();
            min_hot.unwrap_or(st.applied_seq + 1)
        };
        metrics::gauge!("strata_hot_bytes").set(self.hot_bytes() as f64);
        metrics::counter!("strata_persisted_files_total").increment(done.len() as u64);
        let _ = self.wal_tx.send(WalMsg::Truncate { below });
        Ok(done.len())
    }

    /// Moves due chunks from active to frozen; returns every frozen chunk (including
    /// ones a failed earlier attempt left) with the columns its file gets.
    fn freeze(&self, all: bool, now: i64) -> Vec<(Arc<FrozenChunk>, Vec<ColumnDef>)> {
        let cfg = &self.shared.config;
        let age = i64::try_from(cfg.persist_age.as_nanos()).unwrap_or(i64::MAX);
        let mut st = self.shared.state.write();
        let mut candidates: Vec<(String, String, i64, i64, usize)> = Vec::new();
        for (db, tables) in &st.dbs {
            for (name, t) in tables {
                for c in t.active.values() {
                    candidates.push((
                        db.clone(),
                        name.clone(),
                        c.start,
                        c.created_at,
                        c.stats.bytes,
                    ));
                }
            }
        }
        // Oldest first, so memory pressure evicts what is least likely to change.
        candidates.sort_by_key(|c| (c.3, c.2));
        let mut projected = self.shared.hot_bytes.load(Ordering::Relaxed);
        let soft = cfg.memory_budget_bytes / 10 * 7;
        let mut due = Vec::new();
        for (db, table, start, created, bytes) in candidates {
            let end = start.saturating_add(self.shared.chunk_ns());
            let by_age = now.saturating_sub(created) >= age && end <= now;
            let by_memory =
                projected >= soft / 2 && self.shared.hot_bytes.load(Ordering::Relaxed) >= soft;
            if all || by_age || by_memory {
                projected = projected.saturating_sub(bytes);
                due.push((db, table, start));
            }
        }
        for (db, table, start) in due {
            if let Some(t) = st.dbs.get_mut(&db).and_then(|d| d.get_mut(&table))
                && let Some(c) = t.active.remove(&start)
            {
                t.frozen.push(Arc::new(FrozenChunk {
                    db: db.clone(),
                    table: table.clone(),
                    start: c.start,
                    end: c.end,
                    batches: c.batches,
                    stats: c.stats,
                }));
            }
        }
        let mut out = Vec::new();
        for tables in st.dbs.values() {
            for t in tables.values() {
                for c in &t.frozen {
                    out.push((Arc::clone(c), file_columns(&t.columns, c)));
                }
            }
        }
        out
    }

    async fn write_file(
        &self,
        chunk: &FrozenChunk,
        columns: &[ColumnDef],
        now: i64,
    ) -> Result<ParquetFileMeta> {
        let (schema, batches) = persist::dedup_sorted(&self.df, chunk, columns).await?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let (min_time, max_time) =
            time_range(&batches).unwrap_or((chunk.stats.min_time, chunk.stats.max_time));
        let cols = columns.to_vec();
        let bytes = tokio::task::spawn_blocking(move || {
            persist::encode_parquet(&schema, &batches, &cols, persist::slice_ns(Tier::Hot))
        })
        .await
        .map_err(|e| Error::Wal(format!("parquet encoder task failed: {e}")))??;
        let id = strata_catalog::FileId(self.allocate_file_id());
        let path = ParquetFilePath {
            tier: Tier::Hot,
            db: chunk.db.clone(),
            table: chunk.table.clone(),
            chunk_start: chunk.start,
            file_id: id,
        }
        .to_object_path();
        let size = bytes.len() as u64;
        self.shared.store.put(&path, bytes.into()).await?;
        self.fsync_data_file(path.as_ref()).await?;
        metrics::counter!("strata_persisted_bytes_total").increment(size);
        Ok(ParquetFileMeta {
            id,
            path: path.to_string(),
            tier: Tier::Hot,
            min_time,
            max_time,
            chunk_start: chunk.start,
            chunk_end: chunk.end,
            row_count: rows as u64,
            size_bytes: size,
            max_seq: chunk.stats.max_seq,
            created_at: now,
        })
    }

    /// Fsyncs a file of the local data store (and its directory), given its object path.
    /// `object_store`'s local store renames files into place but does not fsync them.
    async fn fsync_data_file(&self, rel: &str) -> Result<()> {
        self.fsync_tier_file(Tier::Hot, rel).await
    }

    /// Fsyncs a file of a tier's store if that store is a local directory.
    async fn fsync_tier_file(&self, tier: Tier, rel: &str) -> Result<()> {
        let local = match tier {
            Tier::Hot | Tier::Warm => &self.shared.local,
            Tier::Cold => match &self.shared.cold_local {
                Some(l) => l,
                None => return Ok(()),
            },
        };
        let path = local.path_to_filesystem(&object_store::path::Path::from(rel))?;
        tokio::task::spawn_blocking(move || -> Result<()> {
            let sync = |p: &std::path::Path| {
                std::fs::File::open(p)
                    .and_then(|f| f.sync_all())
                    .map_err(|source| Error::Io {
                        path: p.to_path_buf(),
                        source,
                    })
            };
            sync(&path)?;
            if let Some(dir) = path.parent() {
                sync(dir)?;
            }
            Ok(())
        })
        .await
        .map_err(|e| Error::Wal(format!("fsync task failed: {e}")))?
    }

    /// Stops intake and makes everything acknowledged durable (fsync the WAL). Hot data
    /// stays in the WAL and is replayed on the next start.
    pub async fn shutdown(&self) {
        self.shared.closed.store(true, Ordering::Release);
        self.persister.lock().take();
        self.maintainer.lock().take();
        let (tx, rx) = oneshot::channel();
        if self.wal_tx.send(WalMsg::Close { reply: tx }).is_ok() {
            let _ = rx.await;
        }
    }
}

/// Refuses names no database may have (empty, reserved, over 64 bytes, odd characters).
pub fn check_database_name(db: &str) -> Result<()> {
    let bad = |reason: &str| {
        Err(Error::InvalidDatabase {
            name: db.to_string(),
            reason: reason.to_string(),
        })
    };
    if db.is_empty() {
        return bad("it is empty");
    }
    if db.len() > 64 {
        return bad("it is longer than 64 bytes");
    }
    if RESERVED_DATABASES.contains(&db) {
        return bad("the name is reserved");
    }
    if !db
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return bad("use letters, digits, `_`, `-` and `.` only");
    }
    Ok(())
}

/// The columns of `table` that the batches of `chunk` use, in table order.
fn file_columns(table: &[ColumnDef], chunk: &FrozenChunk) -> Vec<ColumnDef> {
    table
        .iter()
        .filter(|c| {
            chunk
                .batches
                .iter()
                .any(|b| b.batch.schema().field_with_name(&c.name).is_ok())
        })
        .cloned()
        .collect()
}

pub(crate) fn time_range(batches: &[RecordBatch]) -> Option<(i64, i64)> {
    let mut out: Option<(i64, i64)> = None;
    for b in batches {
        let Some(t) = b
            .column_by_name(TIME_COLUMN)
            .and_then(|a| a.as_any().downcast_ref::<TimestampNanosecondArray>())
        else {
            continue;
        };
        for v in t.values().iter() {
            out = Some(match out {
                None => (*v, *v),
                Some((lo, hi)) => (lo.min(*v), hi.max(*v)),
            });
        }
    }
    out
}

/// Applies one replayed record, skipping rows already persisted. Returns (applied, skipped).
fn replay_record(shared: &Shared, cat: &CatalogState, rec: WalRecord) -> (usize, usize) {
    let mut applied = 0;
    let mut skipped = 0;
    let mut tables = Vec::with_capacity(rec.tables.len());
    for (name, batch) in rec.tables {
        let covering: Vec<(i64, i64)> = cat
            .table(&rec.db, &name)
            .map(|t| {
                t.files
                    .iter()
                    .filter(|f| f.tier == Tier::Hot && f.max_seq >= rec.seq)
                    .map(|f| (f.chunk_start, f.chunk_end))
                    .collect()
            })
            .unwrap_or_default();
        if covering.is_empty() {
            applied += batch.num_rows();
            tables.push((name, batch));
            continue;
        }
        let Some(times) = batch
            .column_by_name(TIME_COLUMN)
            .and_then(|a| a.as_any().downcast_ref::<TimestampNanosecondArray>())
        else {
            continue;
        };
        let keep = BooleanArray::from_iter(
            times
                .values()
                .iter()
                .map(|t| Some(!covering.iter().any(|(s, e)| s <= t && t < e))),
        );
        let kept = keep.true_count();
        skipped += batch.num_rows() - kept;
        if kept == 0 {
            continue;
        }
        match filter_record_batch(&batch, &keep) {
            Ok(b) => {
                applied += b.num_rows();
                tables.push((name, b));
            }
            Err(e) => tracing::error!(error = %e, "could not filter a replayed batch"),
        }
    }
    if !tables.is_empty() {
        shared.apply(rec.seq, &rec.db, tables);
    }
    (applied, skipped)
}

/// The WAL thread: group commit. Everything queued while the previous fsync ran is
/// written and fsynced together; no write waits for a timer.
fn wal_thread(
    shared: Arc<Shared>,
    mut segment: SegmentWriter,
    mut next_seq: u64,
    rx: std::sync::mpsc::Receiver<WalMsg>,
) {
    let dir = wal_dir(&shared.config.data_dir);
    let max_group = shared.config.wal_max_group_bytes;
    let max_delay = shared.config.wal_max_batch_delay;
    let mut pending: Option<WalMsg> = None;
    // Each group's framed records, kept between groups: a new buffer faulted in fresh
    // memory for every write.
    let mut buf: Vec<u8> = Vec::new();
    loop {
        let first = match pending.take() {
            Some(m) => m,
            None => match rx.recv() {
                Ok(m) => m,
                Err(_) => return,
            },
        };
        let mut group = vec![first];
        let mut control = Vec::new();
        // Gather whatever else is queued, up to the group size. While more acknowledged
        // writes are on their way (validated, about to be queued), wait for them, but never
        // longer than the batching delay: a lone write does not wait at all.
        let deadline = std::time::Instant::now() + max_delay;
        let mut approx = 0usize;
        while approx < max_group {
            let next = match rx.try_recv() {
                Ok(m) => Some(m),
                Err(TryRecvError::Disconnected) => None,
                Err(TryRecvError::Empty) => {
                    let waiting_for_more = shared.sync_writes_in_flight.load(Ordering::Acquire)
                        > group.iter().filter(|m| m.is_sync_write()).count();
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    if waiting_for_more && !left.is_zero() {
                        rx.recv_timeout(left).ok()
                    } else {
                        None
                    }
                }
            };
            match next {
                Some(m @ WalMsg::Write { .. }) => {
                    if let WalMsg::Write { tables, .. } = &m {
                        approx += tables
                            .iter()
                            .map(|(_, b)| b.get_array_memory_size())
                            .sum::<usize>();
                    }
                    group.push(m);
                }
                Some(m) => {
                    control.push(m);
                    break;
                }
                None => break,
            }
        }
        metrics::histogram!("strata_wal_group_writes").record(group.len() as f64);
        let mut writes = Vec::new();
        for m in group {
            match m {
                WalMsg::Write { db, tables, reply } => writes.push((db, tables, reply)),
                other => control.insert(0, other),
            }
        }
        if !writes.is_empty() {
            buf.clear();
            let mut encoded = Vec::with_capacity(writes.len());
            for (db, tables, reply) in writes {
                let rec = WalRecord {
                    seq: next_seq,
                    db,
                    tables,
                };
                match wal::encode_framed(&rec, &mut buf) {
                    Ok(()) => {
                        next_seq += 1;
                        encoded.push((rec, reply));
                    }
                    Err(e) => {
                        if let Some(r) = reply {
                            shared.sync_writes_in_flight.fetch_sub(1, Ordering::AcqRel);
                            let _ = r.send(Err(e.to_string()));
                        }
                    }
                }
            }
            let result = segment.append(&buf).and_then(|()| segment.sync());
            shared.wal_fsyncs.fetch_add(1, Ordering::Relaxed);
            metrics::counter!("strata_wal_fsyncs_total").increment(1);
            metrics::counter!("strata_wal_bytes_total").increment(buf.len() as u64);
            match result {
                Ok(()) => {
                    for (rec, reply) in encoded {
                        let seq = rec.seq;
                        shared.apply(seq, &rec.db, rec.tables);
                        if let Some(r) = reply {
                            shared.sync_writes_in_flight.fetch_sub(1, Ordering::AcqRel);
                            let _ = r.send(Ok(seq));
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "WAL append failed; the writes in this group are refused");
                    for (_, reply) in encoded {
                        if let Some(r) = reply {
                            shared.sync_writes_in_flight.fetch_sub(1, Ordering::AcqRel);
                            let _ = r.send(Err(e.to_string()));
                        }
                    }
                    // Never append after a possibly torn record: start a new segment.
                    match SegmentWriter::create(&dir, next_seq) {
                        Ok(s) => segment = s,
                        Err(e) => tracing::error!(error = %e, "could not open a new WAL segment"),
                    }
                }
            }
            if segment.record_bytes() >= shared.config.wal_segment_bytes {
                rotate(&dir, &mut segment, next_seq);
            }
        }
        for m in control {
            match m {
                WalMsg::Truncate { below } => {
                    if segment.name().0 < below && segment.record_bytes() > 0 {
                        rotate(&dir, &mut segment, next_seq);
                    }
                    match wal::delete_segments_below(&dir, below, segment.name()) {
                        Ok(n) if n > 0 => {
                            tracing::debug!(deleted = n, below, "WAL segments removed")
                        }
                        Ok(_) => {}
                        Err(e) => tracing::warn!(error = %e, "could not remove WAL segments"),
                    }
                }
                WalMsg::Close { reply } => {
                    let _ = segment.sync();
                    let _ = reply.send(());
                    return;
                }
                WalMsg::Write { .. } => pending = Some(m),
            }
        }
    }
}

fn rotate(dir: &std::path::Path, segment: &mut SegmentWriter, next_seq: u64) {
    match SegmentWriter::create(dir, next_seq) {
        Ok(s) => *segment = s,
        Err(e) => tracing::error!(error = %e, "could not rotate the WAL segment"),
    }
}
