//! `system.scrape_targets`: every target's health, last scrape, error and duration.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    ArrayRef, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use parking_lot::Mutex;
use strata_catalog::units::format_duration;
use strata_engine::system::SystemTable;

/// A target's state as of its last scrape.
#[derive(Debug, Clone)]
pub struct TargetState {
    pub job: String,
    pub instance: String,
    pub url: String,
    pub labels: BTreeMap<String, String>,
    pub database: String,
    pub interval: Duration,
    pub timeout: Duration,
    /// `static` or the target file it came from.
    pub source: String,
    /// `up`, `down` or `unknown` (not scraped yet).
    pub health: &'static str,
    pub last_scrape: Option<i64>,
    pub last_duration: Option<f64>,
    pub last_error: Option<String>,
    pub last_samples: u64,
    pub scrapes: u64,
    pub failures: u64,
}

/// The live table of targets, shared by the scrape tasks.
#[derive(Debug, Default)]
pub struct ScrapeStatus {
    targets: Mutex<BTreeMap<String, TargetState>>,
}

impl ScrapeStatus {
    pub(super) fn insert(&self, key: &str, state: TargetState) {
        self.targets.lock().insert(key.to_string(), state);
    }

    pub(super) fn remove(&self, key: &str) {
        self.targets.lock().remove(key);
    }

    pub(super) fn update(&self, key: &str, f: impl FnOnce(&mut TargetState)) {
        if let Some(t) = self.targets.lock().get_mut(key) {
            f(t);
        }
    }

    /// A copy of every target's state, ordered by job and URL.
    pub fn targets(&self) -> Vec<TargetState> {
        let mut v: Vec<TargetState> = self.targets.lock().values().cloned().collect();
        v.sort_by(|a, b| (&a.job, &a.url).cmp(&(&b.job, &b.url)));
        v
    }
}

impl SystemTable for ScrapeStatus {
    fn name(&self) -> &str {
        "scrape_targets"
    }

    fn snapshot(&self) -> Result<RecordBatch, ArrowError> {
        let rows = self.targets();
        let ts = DataType::Timestamp(TimeUnit::Nanosecond, None);
        let schema = Arc::new(Schema::new(vec![
            Field::new("job", DataType::Utf8, false),
            Field::new("instance", DataType::Utf8, false),
            Field::new("url", DataType::Utf8, false),
            Field::new("labels", DataType::Utf8, false),
            Field::new("database", DataType::Utf8, false),
            Field::new("source", DataType::Utf8, false),
            Field::new("health", DataType::Utf8, false),
            Field::new("last_scrape", ts, true),
            Field::new("last_duration_seconds", DataType::Float64, true),
            Field::new("last_error", DataType::Utf8, true),
            Field::new("samples", DataType::UInt64, false),
            Field::new("scrapes", DataType::UInt64, false),
            Field::new("failures", DataType::UInt64, false),
            Field::new("interval", DataType::Utf8, false),
            Field::new("timeout", DataType::Utf8, false),
        ]));
        let text = |f: &dyn Fn(&TargetState) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let count = |f: &dyn Fn(&TargetState) -> u64| -> ArrayRef {
            Arc::new(UInt64Array::from_iter_values(rows.iter().map(f)))
        };
        let columns: Vec<ArrayRef> = vec![
            text(&|t| t.job.clone()),
            text(&|t| t.instance.clone()),
            text(&|t| t.url.clone()),
            text(&|t| serde_json::to_string(&t.labels).unwrap_or_default()),
            text(&|t| t.database.clone()),
            text(&|t| t.source.clone()),
            text(&|t| t.health.to_string()),
            Arc::new(TimestampNanosecondArray::from_iter(
                rows.iter().map(|t| t.last_scrape),
            )),
            Arc::new(Float64Array::from_iter(
                rows.iter().map(|t| t.last_duration),
            )),
            Arc::new(StringArray::from_iter(
                rows.iter().map(|t| t.last_error.clone()),
            )),
            count(&|t| t.last_samples),
            count(&|t| t.scrapes),
            count(&|t| t.failures),
            text(&|t| format_duration(t.interval)),
            text(&|t| format_duration(t.timeout)),
        ];
        RecordBatch::try_new(schema, columns)
    }
}
