//! `strata-sql` answers SQL over the engine's data with Apache DataFusion: every database
//! is a DataFusion catalog (schemas `public`, `system`, `information_schema`), every
//! metric a [`table::MetricTable`] over hot chunks and Parquet files. It serves the HTTP
//! query API ([`http`]), Arrow Flight SQL ([`flight`]) and the PostgreSQL wire protocol
//! ([`pg`]) on the same [`QueryEngine`];
//! results leave through one type normalisation ([`normalize`]).
//!
//! It must not write data, and SQL must never reach the server's filesystem or network:
//! DDL, DML, `COPY` and statements are refused for callers (see [`QueryEngine::query`]).
//! Start with [`QueryEngine`].

pub mod as_of;
pub mod catalog;
pub mod commands;
pub mod flight;
pub mod functions;
pub mod http;
pub mod last_values;
pub mod newest_buckets;
pub mod normalize;
pub mod pg;
pub mod query_log;
pub mod retention;
pub mod table;
pub mod tier_choice;
mod warm;

use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::RecordBatch;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use tokio::sync::{mpsc, oneshot};

use arrow::datatypes::{DataType, Field, SchemaRef};
use datafusion::common::ScalarValue;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use strata_engine::Engine;

use crate::catalog::{DatabaseList, PUBLIC_SCHEMA};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database `{0}` not found")]
    UnknownDatabase(String),
    #[error("{0}")]
    Query(#[from] DataFusionError),
    #[error("query exceeded the time limit of {0:?}")]
    Timeout(Duration),
    #[error("could not start the query runtime: {0}")]
    Runtime(std::io::Error),
    #[error("{0}")]
    Command(#[from] commands::CommandError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Whether a DataFusion planning error says a table does not exist (DataFusion has no
/// variant for it; the frontends map it to gRPC NotFound and SQLSTATE 42P01).
pub(crate) fn is_missing_table(plan_error: &str) -> bool {
    plan_error.starts_with("table '") && plan_error.ends_with("not found")
}

/// The database a request without one goes to. It always exists (empty until written
/// to), so clients that connect before the first write can run `SELECT 1` and list tables.
pub const DEFAULT_DATABASE: &str = "metrics";

/// What planning a statement tells before it runs.
#[derive(Debug, Clone)]
pub struct Described {
    /// The result schema, as DataFusion plans it (see [`normalize`] for the wire form).
    pub schema: SchemaRef,
    /// The placeholders `$1, $2, …` in order, with the type inferred from their use;
    /// a placeholder whose type cannot be inferred is text.
    pub parameters: Vec<Field>,
}

/// A query planned against the data as it is now, ready to run once
/// ([`QueryEngine::prepare`], [`QueryEngine::run_prepared`]). Its tables are the snapshot
/// taken when it was planned: a frontend that runs it later answers as of that moment,
/// unless it [refreshes](QueryEngine::refresh) it first.
#[derive(Clone)]
pub struct Prepared {
    pub described: Described,
    db: String,
    sql: String,
    ctx: SessionContext,
    frame: datafusion::dataframe::DataFrame,
}

impl Prepared {
    pub fn db(&self) -> &str {
        &self.db
    }

    pub fn sql(&self) -> &str {
        &self.sql
    }
}

/// Query limits and resources.
#[derive(Debug, Clone)]
pub struct QueryConfig {
    /// Memory all running queries may use together (sorts, aggregates, joins); a query
    /// needing more fails with a "Resources exhausted" error.
    pub memory_limit_bytes: usize,
    /// A query (planning and streaming its result) running longer is cancelled.
    pub timeout: Duration,
    /// Threads of the dedicated query runtime.
    pub threads: usize,
    /// Whether an aggregate the rollups can answer reads raw rows instead when that is
    /// estimated to cost less (see [`tier_choice`]); otherwise the coarsest exact tiers
    /// always answer.
    pub tier_costs: bool,
}

impl Default for QueryConfig {
    fn default() -> Self {
        Self {
            memory_limit_bytes: 4 << 30,
            timeout: Duration::from_secs(300),
            threads: std::thread::available_parallelism().map_or(2, |n| n.get()),
            tier_costs: true,
        }
    }
}

/// The runtime CPU-heavy query plans run on, apart from network and I/O tasks, so a big
/// query cannot stall ingest. Shut down in the background when dropped (dropping a
/// runtime from inside another would panic).
#[derive(Debug)]
struct QueryRuntime(Option<tokio::runtime::Runtime>);

impl Drop for QueryRuntime {
    fn drop(&mut self) {
        if let Some(rt) = self.0.take() {
            rt.shutdown_background();
        }
    }
}

/// SQL over the engine. One per process; sessions are made per request.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    runtime: Arc<RuntimeEnv>,
    databases: Arc<DatabaseList>,
    config: QueryConfig,
    cpu: Arc<QueryRuntime>,
    commands: Arc<std::sync::OnceLock<Arc<dyn commands::Commands>>>,
    log: Arc<query_log::QueryLog>,
    scans: Arc<table::ScanPlanner>,
    /// Where scans read local files in place.
    local_stores: Arc<strata_engine::scan::LocalStores>,
    /// The catalog version whose files metadata warming last went through.
    warmed: tokio::sync::watch::Receiver<u64>,
}

impl QueryEngine {
    pub fn new(engine: Arc<Engine>, config: QueryConfig) -> Result<Self> {
        let runtime = Arc::new(
            RuntimeEnvBuilder::new()
                .with_memory_limit(config.memory_limit_bytes, 1.0)
                .build()?,
        );
        for tier in strata_catalog::Tier::ALL {
            let url = url_of(strata_engine::scan::store_url(tier))?;
            runtime.register_object_store(&url, engine.tier_store(tier));
        }
        let cpu = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.threads.max(1))
            .thread_name("strata-query")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let log = Arc::new(query_log::QueryLog::default());
        engine.register_system_table(Arc::clone(&log) as _);
        let local_stores = Arc::new(engine.local_stores());
        let scans = Arc::new(table::ScanPlanner::new(
            SessionConfig::new().with_extension(Arc::clone(&local_stores)),
            Arc::clone(&runtime),
        ));
        let (warmed_tx, warmed) = tokio::sync::watch::channel(0);
        cpu.spawn(warm::warm_metadata(
            Arc::clone(&engine),
            Arc::clone(&runtime),
            warmed_tx,
        ));
        Ok(Self {
            log,
            scans,
            local_stores,
            databases: Arc::new(DatabaseList::new(Arc::clone(&engine))),
            engine,
            runtime,
            config,
            cpu: Arc::new(QueryRuntime(Some(cpu))),
            commands: Arc::default(),
            warmed,
        })
    }

    /// Whether the Parquet file at `path` (relative to its store) has its footer in the
    /// metadata cache, e.g. read there by metadata warming.
    pub fn file_metadata_cached(&self, path: &str) -> bool {
        self.runtime
            .cache_manager
            .get_file_metadata_cache()
            .contains_key(&object_store::path::Path::from(path))
    }

    /// Waits until metadata warming has gone through the files of catalog `version` or a
    /// later one.
    pub async fn metadata_warmed(&self, version: u64) {
        let mut warmed = self.warmed.clone();
        // The sender lives as long as the query runtime; if it is gone, so is warming.
        let _ = warmed.wait_for(|v| *v >= version).await;
    }

    /// Installs the handler of non-query statements (see [`commands`]); once per process,
    /// later calls are ignored. Clones of this engine share it.
    pub fn set_commands(&self, handler: Arc<dyn commands::Commands>) {
        let _ = self.commands.set(handler);
    }

    /// Adds a table to every database's `system` schema (one of the same name is
    /// replaced).
    pub fn register_system_table(&self, table: Arc<dyn commands::SystemTable>) {
        self.engine.register_system_table(table);
    }

    /// The command handler's result schema for `sql`, if it is one of its statements.
    pub fn command_schema(&self, sql: &str) -> Option<SchemaRef> {
        if retention::parse(sql).is_some() {
            return Some(retention::schema());
        }
        self.commands.get()?.recognise(sql)
    }

    /// Runs `sql` as a command if the handler recognises it; `None` if it is not one.
    pub async fn run_command(
        &self,
        db: &str,
        sql: &str,
    ) -> Option<Result<(SchemaRef, SendableRecordBatchStream)>> {
        let (schema, result) = match retention::parse(sql) {
            Some(parsed) => {
                let result = match parsed {
                    Ok(st) => retention::run(&self.engine, st).await,
                    Err(e) => Err(e),
                };
                (retention::schema(), result)
            }
            None => {
                let handler = self.commands.get()?;
                let schema = handler.recognise(sql)?;
                (schema, handler.run(db, sql).await)
            }
        };
        metrics::counter!("strata_commands_total", "outcome" => if result.is_ok() { "ok" } else { "error" })
            .increment(1);
        Some(result.map_err(Error::from).and_then(|batch| {
            let stream = datafusion::physical_plan::memory::MemoryStream::try_new(
                vec![batch],
                Arc::clone(&schema),
                None,
            )?;
            Ok((schema, Box::pin(stream) as SendableRecordBatchStream))
        }))
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Every database, the default one included, sorted.
    pub fn database_names(&self) -> Vec<String> {
        use datafusion::catalog::CatalogProviderList as _;
        self.databases.catalog_names()
    }

    /// Every database as DataFusion catalogs (looked up live).
    pub fn catalogs(&self) -> Arc<DatabaseList> {
        Arc::clone(&self.databases)
    }

    /// A session whose default catalog is `db` and default schema `public`.
    pub fn session(&self, db: &str) -> Result<SessionContext> {
        self.session_with(db, Arc::clone(&self.databases) as _)
    }

    /// [`Self::session`] over `catalogs`, a view of [`Self::catalogs`] that a frontend
    /// extends (the PostgreSQL wire adds `pg_catalog`).
    pub fn session_with(
        &self,
        db: &str,
        catalogs: Arc<dyn datafusion::catalog::CatalogProviderList>,
    ) -> Result<SessionContext> {
        self.build_session(db, catalogs, None)
    }

    /// A session of `db` as of `moment_ns` (see [`as_of`]): `now()` is that moment and
    /// metric tables end there. The last-value cache is not used (it holds today's rows).
    pub fn session_as_of(&self, db: &str, moment_ns: i64) -> Result<SessionContext> {
        self.build_session(db, Arc::clone(&self.databases) as _, Some(moment_ns))
    }

    fn build_session(
        &self,
        db: &str,
        catalogs: Arc<dyn datafusion::catalog::CatalogProviderList>,
        as_of: Option<i64>,
    ) -> Result<SessionContext> {
        if !self.engine.has_database(db) && db != DEFAULT_DATABASE {
            return Err(Error::UnknownDatabase(db.to_string()));
        }
        let config = SessionConfig::new()
            .with_extension(Arc::clone(&self.scans))
            .with_extension(Arc::clone(&self.local_stores))
            .with_default_catalog_and_schema(db, PUBLIC_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let analyzer: Arc<dyn datafusion::optimizer::AnalyzerRule + Send + Sync> = match as_of {
            None => Arc::new(last_values::LastValueRule::new(self.clone())),
            Some(moment) => Arc::new(as_of::AsOfRule::new(moment)),
        };
        let tier_rule = if self.config.tier_costs {
            let cache = self.runtime.cache_manager.get_file_metadata_cache();
            tier_choice::TierChoiceRule::by_cost(cache)
        } else {
            tier_choice::TierChoiceRule::coarsest()
        };
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_catalog_list(catalogs)
            .with_default_features()
            .with_analyzer_rule(analyzer)
            .with_optimizer_rule(Arc::new(tier_rule))
            .build();
        let tz = state.config().options().execution.time_zone.clone();
        let ctx = SessionContext::new_with_state(state);
        let clock: Arc<dyn strata_engine::clock::Clock> = match as_of {
            None => self.engine.clock(),
            Some(moment) => strata_engine::clock::ManualClock::new(moment),
        };
        ctx.register_udf(functions::ClockNow::udf(clock, tz.as_deref()));
        Ok(ctx)
    }

    /// Plans and runs `sql` against database `db` on the query runtime; the returned
    /// stream can be consumed anywhere. Only queries (and `EXPLAIN`) are allowed: DDL,
    /// DML (including `COPY … TO`) and statements are refused. The time limit covers
    /// planning and streaming.
    pub async fn query(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        self.query_with_params(db, sql, Vec::new()).await
    }

    /// [`Self::query`] with values for the placeholders `$1, $2, …` (none: no placeholders).
    pub async fn query_with_params(
        &self,
        db: &str,
        sql: &str,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        if let Some(result) = self.run_command(db, sql).await {
            return result;
        }
        let started = Instant::now();
        let result = match self.session(db) {
            Ok(ctx) => {
                let logged = self.logged(db, sql);
                self.start(ctx, Work::Sql(sql.to_string(), params), logged)
                    .await
            }
            Err(e) => Err(e),
        };
        Self::count(started, &result);
        result
    }

    /// [`Self::query`] as of a past moment (see [`as_of`]), for backtesting alert rules.
    /// Alerting commands are not run here.
    pub async fn query_as_of(
        &self,
        db: &str,
        sql: &str,
        moment_ns: i64,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        // Not counted in the live query metrics: a backtest runs thousands.
        match self.session_as_of(db, moment_ns) {
            Ok(ctx) => {
                self.start(ctx, Work::Sql(sql.to_string(), Vec::new()), None)
                    .await
            }
            Err(e) => Err(e),
        }
    }

    /// Runs an already planned statement in `ctx` (a session made by
    /// [`Self::session_with`]) under the same rules, runtime and limits as
    /// [`Self::query`]. For frontends that parse SQL in their own dialect.
    pub async fn execute_plan(
        &self,
        ctx: SessionContext,
        plan: datafusion::logical_expr::LogicalPlan,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let started = Instant::now();
        let db = ctx.state().config_options().catalog.default_catalog.clone();
        let logged = self.logged(&db, &format!("{}", plan.display()));
        let result = self.start(ctx, Work::Plan(Box::new(plan)), logged).await;
        Self::count(started, &result);
        result
    }

    fn count<T>(started: Instant, result: &Result<T>) {
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("strata_queries_total", "outcome" => outcome).increment(1);
        metrics::histogram!("strata_query_planning_seconds")
            .record(started.elapsed().as_secs_f64());
    }

    /// Plans `sql` without running it: its result schema and parameters. Refuses what
    /// [`Self::query`] refuses.
    pub async fn describe(&self, db: &str, sql: &str) -> Result<Described> {
        if let Some(schema) = self.command_schema(sql) {
            return Ok(Described {
                schema,
                parameters: Vec::new(),
            });
        }
        Ok(self.plan_statement(db, sql).await?.described)
    }

    /// Plans `sql` to run later with [`Self::run_prepared`]; `None` for a command (see
    /// [`commands`]), which only runs through [`Self::query`]. Refuses what
    /// [`Self::query`] refuses.
    pub async fn prepare(&self, db: &str, sql: &str) -> Result<Option<Prepared>> {
        if self.command_schema(sql).is_some() {
            return Ok(None);
        }
        self.plan_statement(db, sql).await.map(Some)
    }

    async fn plan_statement(&self, db: &str, sql: &str) -> Result<Prepared> {
        let ctx = self.session(db)?;
        let frame = ctx.sql_with_options(sql, sql_options()).await?;
        let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
        let found = ordered_parameters(frame.logical_plan())?;
        let parameters = found
            .into_iter()
            .map(|(id, f)| {
                let dt = f.map_or(DataType::Utf8, |f| f.data_type().clone());
                Field::new(id, dt, true)
            })
            .collect();
        Ok(Prepared {
            described: Described { schema, parameters },
            db: db.to_string(),
            sql: sql.to_string(),
            ctx,
            frame,
        })
    }

    /// `prepared` over the data as it is now, without planning its SQL again: the same
    /// plan with a new snapshot of each table. `None` when only planning again will do: a
    /// table's columns changed or it went away, or the plan reads something other than
    /// metric tables (system and information-schema tables are copies made at planning).
    pub fn refresh(&self, prepared: &Prepared) -> Option<Prepared> {
        use datafusion::common::tree_node::{Transformed, TreeNodeRecursion};
        use datafusion::logical_expr::LogicalPlan;
        let mut stale = false;
        let plan = prepared
            .frame
            .logical_plan()
            .clone()
            .transform_up_with_subqueries(|node| {
                let LogicalPlan::TableScan(mut scan) = node else {
                    return Ok(Transformed::no(node));
                };
                match table::any_metric_table(&scan.source).and_then(|t| t.refreshed(&self.engine))
                {
                    Some(fresh) => {
                        scan.source = datafusion::datasource::provider_as_source(Arc::new(fresh));
                        Ok(Transformed::yes(LogicalPlan::TableScan(scan)))
                    }
                    None => {
                        stale = true;
                        let node = LogicalPlan::TableScan(scan);
                        Ok(Transformed::new(node, false, TreeNodeRecursion::Stop))
                    }
                }
            })
            .ok()?
            .data;
        if stale {
            return None;
        }
        Some(Prepared {
            described: prepared.described.clone(),
            db: prepared.db.clone(),
            sql: prepared.sql.clone(),
            ctx: prepared.ctx.clone(),
            frame: datafusion::dataframe::DataFrame::new(prepared.ctx.state(), plan),
        })
    }

    /// Runs a [`Prepared`] query with values for its placeholders, like
    /// [`Self::query_with_params`] without planning the SQL again.
    pub async fn run_prepared(
        &self,
        prepared: Prepared,
        params: Vec<ScalarValue>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let started = Instant::now();
        let logged = self.logged(&prepared.db, &prepared.sql);
        let work = Work::Frame(Box::new(prepared.frame), params);
        let result = self.start(prepared.ctx, work, logged).await;
        Self::count(started, &result);
        result
    }

    /// A `system.queries` entry for a query starting now.
    fn logged(&self, db: &str, text: &str) -> Option<Logged> {
        let started_ns = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
        Some(Logged {
            log: Arc::clone(&self.log),
            record: query_log::QueryRecord::new(started_ns, db, text, "scan"),
            started: Instant::now(),
        })
    }

    async fn start(
        &self,
        ctx: SessionContext,
        work: Work,
        logged: Option<Logged>,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let limit = self.config.timeout;
        let (schema_tx, schema_rx) = oneshot::channel::<Result<SchemaRef>>();
        let (tx, rx) = mpsc::channel::<datafusion::error::Result<RecordBatch>>(2);
        let Some(rt) = self.cpu.0.as_ref() else {
            return Err(Error::Runtime(std::io::Error::other(
                "query runtime is shut down",
            )));
        };
        rt.spawn(async move {
            let deadline = tokio::time::Instant::now() + limit;
            let planned = plan(&ctx, work, logged);
            let mut stream = match tokio::time::timeout_at(deadline, planned).await {
                Err(_) => {
                    let _ = schema_tx.send(Err(Error::Timeout(limit)));
                    return;
                }
                Ok(Err(e)) => {
                    let _ = schema_tx.send(Err(e));
                    return;
                }
                Ok(Ok((schema, stream))) => {
                    if schema_tx.send(Ok(schema)).is_err() {
                        return;
                    }
                    stream
                }
            };
            loop {
                let next = match tokio::time::timeout_at(deadline, stream.next()).await {
                    Err(_) => Some(Err(DataFusionError::ResourcesExhausted(
                        Error::Timeout(limit).to_string(),
                    ))),
                    Ok(next) => next,
                };
                let Some(batch) = next else { return };
                let stop = batch.is_err();
                // A closed channel means the client went away: stop working for it.
                if tx.send(batch).await.is_err() || stop {
                    return;
                }
            }
        });
        let schema = schema_rx.await.map_err(|_| {
            Error::Runtime(std::io::Error::other("the query task ended unexpectedly"))
        })??;
        let batches =
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|b| (b, rx)) });
        Ok((
            Arc::clone(&schema),
            Box::pin(RecordBatchStreamAdapter::new(schema, batches)),
        ))
    }
}

/// The placeholders `$1, $2, …` of `plan` in order (`$2` before `$10`), with the type
/// inferred from their use. Shared by the frontends that describe parameters.
pub(crate) fn ordered_parameters(
    plan: &datafusion::logical_expr::LogicalPlan,
) -> Result<Vec<(String, Option<arrow::datatypes::FieldRef>)>, DataFusionError> {
    let mut found: Vec<_> = plan.get_parameter_fields()?.into_iter().collect();
    found.sort_by_key(|(id, _)| {
        (
            id.trim_start_matches('$')
                .parse::<u64>()
                .unwrap_or(u64::MAX),
            id.clone(),
        )
    });
    Ok(found)
}

/// Queries only: no DDL, DML (`COPY … TO` included) or statements.
fn sql_options() -> SQLOptions {
    SQLOptions::new()
        .with_allow_ddl(false)
        .with_allow_dml(false)
        .with_allow_statements(false)
}

/// A query's pending `system.queries` entry.
struct Logged {
    log: Arc<query_log::QueryLog>,
    record: query_log::QueryRecord,
    started: Instant,
}

impl Logged {
    /// Records the query with what the scans of its physical plan chose (none given:
    /// it was answered another way, `plan` says how).
    fn finish(mut self, physical: Option<&Arc<dyn datafusion::physical_plan::ExecutionPlan>>) {
        self.record.planning_ms = self.started.elapsed().as_secs_f64() * 1000.0;
        match physical {
            Some(p) => self.record.add_scans(p),
            None => self.record.plan = "newest buckets",
        }
        self.log.record(self.record);
    }
}

/// What a query task plans: SQL text or a planned statement (with placeholder values), or
/// a ready plan.
enum Work {
    Sql(String, Vec<ScalarValue>),
    Frame(Box<datafusion::dataframe::DataFrame>, Vec<ScalarValue>),
    Plan(Box<datafusion::logical_expr::LogicalPlan>),
}

async fn plan(
    ctx: &SessionContext,
    work: Work,
    logged: Option<Logged>,
) -> Result<(SchemaRef, SendableRecordBatchStream)> {
    let with_params = |df: datafusion::dataframe::DataFrame, params: Vec<ScalarValue>| {
        if params.is_empty() {
            Ok(df)
        } else {
            df.with_param_values(params)
        }
    };
    let df = match work {
        Work::Sql(sql, params) => {
            with_params(ctx.sql_with_options(&sql, sql_options()).await?, params)?
        }
        Work::Frame(df, params) => with_params(*df, params)?,
        Work::Plan(plan) => {
            sql_options().verify_plan(&plan)?;
            ctx.execute_logical_plan(*plan).await?
        }
    };
    // Top-k over time buckets: answered from a window of the newest data when it can be.
    if matches!(
        df.logical_plan(),
        datafusion::logical_expr::LogicalPlan::Limit(_)
    ) {
        let state = ctx.state();
        let unwindowed = newest_buckets::analyze(&state, df.logical_plan())?;
        if let Some(shape) = newest_buckets::shape(&unwindowed)
            && let Some((schema, batches)) = newest_buckets::run(ctx, &unwindowed, &shape).await?
        {
            if let Some(l) = logged {
                l.finish(None);
            }
            let stream = datafusion::physical_plan::memory::MemoryStream::try_new(
                batches,
                Arc::clone(&schema),
                None,
            )?;
            return Ok((schema, Box::pin(stream)));
        }
        // Not that shape: run it as written, with every rule.
        let optimized = state.optimize(df.logical_plan())?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let physical = state
            .query_planner()
            .create_physical_plan(&optimized, &state)
            .await?;
        if let Some(l) = logged {
            l.finish(Some(&physical));
        }
        let stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
        return Ok((schema, stream));
    }
    let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
    let physical = df.create_physical_plan().await?;
    if let Some(l) = logged {
        l.finish(Some(&physical));
    }
    let stream = datafusion::physical_plan::execute_stream(physical, ctx.task_ctx())?;
    Ok((schema, stream))
}

fn url_of(s: &str) -> Result<url::Url> {
    url::Url::parse(s).map_err(|e| Error::Query(DataFusionError::External(Box::new(e))))
}
