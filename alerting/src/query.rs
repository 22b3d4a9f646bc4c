//! How rules reach the SQL engine: a small trait, so the state machine and pipeline can be
//! tested and the binary decides what runs the queries (today the same [`QueryEngine`]
//! that serves every frontend, with its memory and time limits).

use std::fmt::Debug;

use arrow::array::RecordBatch;
use async_trait::async_trait;
use futures::TryStreamExt;
use strata_catalog::alerts::AlertRuleDef;
use strata_sql::QueryEngine;

use crate::rows::ACTIVE_COLUMN;

#[async_trait]
pub trait RuleQuery: Send + Sync + Debug {
    /// Runs `sql` in database `db` and returns every batch.
    async fn run(&self, db: &str, sql: &str) -> Result<Vec<RecordBatch>, String>;
    /// Runs `sql` as of the past moment `at_ns`: `now()` is `at_ns` and tables end there.
    async fn run_at(&self, db: &str, sql: &str, at_ns: i64) -> Result<Vec<RecordBatch>, String>;
    /// Plans `sql` without running it.
    async fn check(&self, db: &str, sql: &str) -> Result<(), String>;
}

#[async_trait]
impl RuleQuery for QueryEngine {
    async fn run(&self, db: &str, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let (_, stream) = self.query(db, sql).await.map_err(|e| e.to_string())?;
        stream.try_collect().await.map_err(|e| e.to_string())
    }

    async fn run_at(&self, db: &str, sql: &str, at_ns: i64) -> Result<Vec<RecordBatch>, String> {
        let (_, stream) = self
            .query_as_of(db, sql, at_ns)
            .await
            .map_err(|e| e.to_string())?;
        stream.try_collect().await.map_err(|e| e.to_string())
    }

    async fn check(&self, db: &str, sql: &str) -> Result<(), String> {
        self.describe(db, sql)
            .await
            .map(|_| ())
            .map_err(|e| e.to_string())
    }
}

/// The SQL a rule runs: its query, wrapped to compute its `WHEN` condition if it has one.
pub fn rule_sql(rule: &AlertRuleDef) -> String {
    let query = rule.query.trim().trim_end_matches(';');
    match &rule.condition {
        None => query.to_string(),
        Some(cond) => {
            format!("SELECT *, ({cond}) AS \"{ACTIVE_COLUMN}\" FROM ({query}) AS \"__strata_rule\"")
        }
    }
}

/// Whether a planning error only says a table does not exist yet: rules may be created
/// before the metric they watch is first written.
pub fn is_missing_table(error: &str) -> bool {
    error.contains("table '") && error.contains("not found")
}
