//! `system.queries`: the most recent queries of the server, newest first, with what
//! their scans chose (the tiers that answered, files read of those registered, hot
//! chunks). The same facts `EXPLAIN` prints, for queries that already ran, e.g. a
//! Grafana panel's.

use std::collections::VecDeque;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::physical_plan::ExecutionPlan;
use parking_lot::Mutex;
use strata_engine::system::SystemTable;

use crate::table::TierScanExec;

/// Queries kept.
const CAPACITY: usize = 1000;
/// Longest query text kept, in bytes.
const MAX_TEXT: usize = 4096;

/// One planned query.
#[derive(Debug, Clone)]
pub struct QueryRecord {
    pub started_ns: i64,
    pub database: String,
    pub query: String,
    /// `scan`, or `newest buckets` for a top-k over time buckets answered from windows.
    pub plan: &'static str,
    pub planning_ms: f64,
    /// Tiers that supplied rows, in the order the plan reads them.
    pub tiers: Vec<String>,
    pub files_read: u64,
    pub files_registered: u64,
    pub hot_chunks: u64,
}

impl QueryRecord {
    pub fn new(started_ns: i64, database: &str, query: &str, plan: &'static str) -> Self {
        let cut = query.floor_char_boundary(MAX_TEXT);
        Self {
            started_ns,
            database: database.to_string(),
            query: query[..cut].to_string(),
            plan,
            planning_ms: 0.0,
            tiers: Vec::new(),
            files_read: 0,
            files_registered: 0,
            hot_chunks: 0,
        }
    }

    /// Adds what every tier scan of `plan` chose.
    pub fn add_scans(&mut self, plan: &Arc<dyn ExecutionPlan>) {
        let _ = plan.apply(|node| {
            if let Some(scan) = node.downcast_ref::<TierScanExec>() {
                let s = scan.summary();
                for t in s.tiers_used() {
                    let name = t.name().to_string();
                    if !self.tiers.contains(&name) {
                        self.tiers.push(name);
                    }
                }
                for (_, registered, read) in &s.tiers {
                    self.files_registered += *registered as u64;
                    self.files_read += *read as u64;
                }
                self.hot_chunks += s.hot_chunks as u64;
            }
            Ok(TreeNodeRecursion::Continue)
        });
    }
}

/// The ring of recent queries; registered as `system.queries`.
#[derive(Debug, Default)]
pub struct QueryLog {
    entries: Mutex<VecDeque<QueryRecord>>,
}

impl QueryLog {
    pub fn record(&self, r: QueryRecord) {
        let mut e = self.entries.lock();
        if e.len() == CAPACITY {
            e.pop_front();
        }
        e.push_back(r);
    }
}

impl SystemTable for QueryLog {
    fn name(&self) -> &str {
        "queries"
    }

    fn snapshot(&self) -> Result<RecordBatch, ArrowError> {
        let rows: Vec<QueryRecord> = self.entries.lock().iter().rev().cloned().collect();
        let text = |f: &dyn Fn(&QueryRecord) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let num = |f: &dyn Fn(&QueryRecord) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
        };
        let schema = Schema::new(vec![
            Field::new(
                "started",
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
                false,
            ),
            Field::new("database", DataType::Utf8, false),
            Field::new("query", DataType::Utf8, false),
            Field::new("plan", DataType::Utf8, false),
            Field::new("planning_ms", DataType::Float64, false),
            Field::new("tiers", DataType::Utf8, false),
            Field::new("files_read", DataType::UInt64, false),
            Field::new("files_pruned", DataType::UInt64, false),
            Field::new("hot_chunks", DataType::UInt64, false),
        ]);
        let columns: Vec<ArrayRef> = vec![
            Arc::new(
                TimestampNanosecondArray::from_iter_values(rows.iter().map(|r| r.started_ns))
                    .with_timezone("UTC"),
            ),
            text(&|r| r.database.clone()),
            text(&|r| r.query.clone()),
            text(&|r| r.plan.to_string()),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|r| r.planning_ms),
            )),
            text(&|r| r.tiers.join(",")),
            num(&|r| r.files_read),
            num(&|r| r.files_registered.saturating_sub(r.files_read)),
            num(&|r| r.hot_chunks),
        ];
        RecordBatch::try_new(Arc::new(schema), columns)
    }
}
