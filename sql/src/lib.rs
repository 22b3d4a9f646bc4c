//! `strata-sql` answers SQL over the engine's data with Apache DataFusion: every database
//! is a DataFusion catalog (schemas `public`, `system`, `information_schema`), every
//! metric a [`table::MetricTable`] over hot chunks and Parquet files. It serves the HTTP
//! query API ([`http`]); Flight SQL and PostgreSQL wire come next, on the same
//! [`QueryEngine`].
//!
//! It must not write data, and SQL must never reach the server's filesystem or network:
//! DDL, DML, `COPY` and statements are refused for callers (see [`QueryEngine::query`]).
//! Start with [`QueryEngine`].

pub mod catalog;
pub mod http;
pub mod table;

use std::sync::Arc;
use std::time::Instant;

use arrow::datatypes::SchemaRef;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::prelude::{SQLOptions, SessionConfig, SessionContext};
use strata_engine::Engine;

use crate::catalog::{DatabaseList, PUBLIC_SCHEMA};
use crate::table::DATA_STORE_URL;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("database `{0}` not found")]
    UnknownDatabase(String),
    #[error("{0}")]
    Query(#[from] DataFusionError),
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// SQL over the engine. One per process; sessions are made per request.
#[derive(Debug, Clone)]
pub struct QueryEngine {
    engine: Arc<Engine>,
    runtime: Arc<RuntimeEnv>,
    databases: Arc<DatabaseList>,
}

impl QueryEngine {
    pub fn new(engine: Arc<Engine>) -> Result<Self> {
        let runtime = Arc::new(RuntimeEnvBuilder::new().build()?);
        let url = url_of(DATA_STORE_URL)?;
        runtime.register_object_store(&url, engine.data_store());
        Ok(Self {
            databases: Arc::new(DatabaseList::new(Arc::clone(&engine))),
            engine,
            runtime,
        })
    }

    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// A session whose default catalog is `db` and default schema `public`.
    pub fn session(&self, db: &str) -> Result<SessionContext> {
        if !self.engine.has_database(db) {
            return Err(Error::UnknownDatabase(db.to_string()));
        }
        let config = SessionConfig::new()
            .with_default_catalog_and_schema(db, PUBLIC_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(true);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_catalog_list(Arc::clone(&self.databases) as _)
            .with_default_features()
            .build();
        Ok(SessionContext::new_with_state(state))
    }

    /// Plans and starts `sql` against database `db`. Only queries (and `EXPLAIN`) are
    /// allowed: DDL, DML (including `COPY … TO`) and statements are refused.
    pub async fn query(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let started = Instant::now();
        let result = self.query_inner(db, sql).await;
        let outcome = if result.is_ok() { "ok" } else { "error" };
        metrics::counter!("strata_queries_total", "outcome" => outcome).increment(1);
        metrics::histogram!("strata_query_planning_seconds")
            .record(started.elapsed().as_secs_f64());
        result
    }

    async fn query_inner(
        &self,
        db: &str,
        sql: &str,
    ) -> Result<(SchemaRef, SendableRecordBatchStream)> {
        let ctx = self.session(db)?;
        let options = SQLOptions::new()
            .with_allow_ddl(false)
            .with_allow_dml(false)
            .with_allow_statements(false);
        let df = ctx.sql_with_options(sql, options).await?;
        let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        Ok((schema, stream))
    }
}

fn url_of(s: &str) -> Result<url::Url> {
    url::Url::parse(s).map_err(|e| Error::Query(DataFusionError::External(Box::new(e))))
}
