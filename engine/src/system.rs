//! Introspection tables other crates contribute to every database's `system` schema
//! (`system.kafka_partitions` from the Kafka consumer, later the scraper's targets and
//! the alert state). The engine only keeps the list; `strata-sql` serves them, so crates
//! below `sql/` can offer tables without depending on it.

use std::fmt::Debug;

use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;

/// A table computed on demand from live state. It is server-wide: every database's
/// `system` schema shows the same rows.
pub trait SystemTable: Send + Sync + Debug {
    /// The table name inside `system`, e.g. `kafka_partitions`.
    fn name(&self) -> &str;
    /// The current rows, in one batch.
    fn snapshot(&self) -> Result<RecordBatch, ArrowError>;
}
