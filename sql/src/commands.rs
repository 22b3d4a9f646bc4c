//! Statements that are not queries and belong to a crate above this one: alert rules and
//! silences (`CREATE ALERT`, `DROP ALERT`, `SHOW ALERTS`, …). This crate cannot depend on
//! their owner, so it asks a [`Commands`] handler the binary installs with
//! [`crate::QueryEngine::set_commands`]. Every frontend (HTTP, Flight SQL, PostgreSQL
//! wire) asks it before parsing a statement as SQL, so the statements work everywhere.

use std::fmt::Debug;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use async_trait::async_trait;
/// Tables that crates above this one add to every database's `system` schema.
pub use strata_engine::system::SystemTable;

/// What went wrong running a command, in the caller's terms; the kind picks the protocol
/// status (HTTP code, gRPC code, SQLSTATE).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CommandError {
    pub kind: CommandErrorKind,
    pub message: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CommandErrorKind {
    /// The statement or a value in it is wrong.
    Invalid,
    /// It names something that does not exist.
    NotFound,
    /// It would create something that already exists.
    Conflict,
    /// Storage failed; retrying later may work.
    Unavailable,
}

impl CommandError {
    pub fn new(kind: CommandErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(CommandErrorKind::Invalid, message)
    }
}

/// A handler of non-query statements.
#[async_trait]
pub trait Commands: Send + Sync + Debug {
    /// The result schema if `sql` is one of this handler's statements; `None` leaves it
    /// to the SQL planner. Cheap and without side effects (Flight SQL asks before running).
    fn recognise(&self, sql: &str) -> Option<SchemaRef>;

    /// Runs the statement on behalf of a session whose database is `db`.
    async fn run(&self, db: &str, sql: &str) -> Result<RecordBatch, CommandError>;
}
