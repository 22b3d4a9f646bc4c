//! What the consumer is doing, per partition: the `system.kafka_partitions` table and the
//! `strata_kafka_*` gauges in `/metrics`.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, Int32Array, Int64Array, StringArray,
    TimestampNanosecondArray, UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow::error::ArrowError;
use arrow::record_batch::RecordBatch;
use parking_lot::Mutex;
use strata_engine::system::SystemTable;

/// Live consumer state, shared by the consumer thread and queries.
#[derive(Debug)]
pub struct KafkaStatus {
    group: String,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    partitions: BTreeMap<(String, i32), Partition>,
    paused: bool,
}

#[derive(Debug)]
struct Partition {
    database: String,
    format: &'static str,
    assigned: bool,
    /// Next offset to consume (last consumed + 1).
    position: Option<i64>,
    /// Next offset the group will resume from.
    committed: Option<i64>,
    high_watermark: Option<i64>,
    messages: u64,
    points: u64,
    bad_messages: u64,
    last_commit_ns: Option<i64>,
    rate_since: Instant,
    rate_messages: u64,
    rate_points: u64,
    messages_per_second: f64,
    points_per_second: f64,
}

impl Partition {
    fn new(database: &str, format: &'static str) -> Self {
        Self {
            database: database.to_string(),
            format,
            assigned: false,
            position: None,
            committed: None,
            high_watermark: None,
            messages: 0,
            points: 0,
            bad_messages: 0,
            last_commit_ns: None,
            rate_since: Instant::now(),
            rate_messages: 0,
            rate_points: 0,
            messages_per_second: 0.0,
            points_per_second: 0.0,
        }
    }

    /// Messages the group has not committed yet: what `kafka-consumer-groups` shows.
    fn lag(&self) -> Option<i64> {
        let hw = self.high_watermark?;
        let from = self.committed.or(self.position)?;
        Some((hw - from).max(0))
    }
}

/// Where a partition's rows come from, for the status table.
#[derive(Debug, Clone, Copy)]
pub struct Destination<'a> {
    pub database: &'a str,
    pub format: &'static str,
}

impl KafkaStatus {
    pub fn new(group: &str) -> Arc<Self> {
        Arc::new(Self {
            group: group.to_string(),
            inner: Mutex::new(Inner::default()),
        })
    }

    fn with<R>(
        &self,
        topic: &str,
        partition: i32,
        dest: Destination<'_>,
        f: impl FnOnce(&mut Partition) -> R,
    ) -> R {
        let mut inner = self.inner.lock();
        let p = inner
            .partitions
            .entry((topic.to_string(), partition))
            .or_insert_with(|| Partition::new(dest.database, dest.format));
        f(p)
    }

    pub(crate) fn assigned(&self, topic: &str, partition: i32, dest: Destination<'_>, yes: bool) {
        self.with(topic, partition, dest, |p| p.assigned = yes);
    }

    pub(crate) fn consumed(
        &self,
        topic: &str,
        partition: i32,
        dest: Destination<'_>,
        offset: i64,
        points: usize,
        bad: bool,
    ) {
        self.with(topic, partition, dest, |p| {
            p.position = Some(offset + 1);
            p.messages += 1;
            p.points += points as u64;
            p.bad_messages += u64::from(bad);
        });
    }

    /// A consumed message turned out bad after decoding (the engine refused points).
    pub(crate) fn bad(&self, topic: &str, partition: i32, dest: Destination<'_>) {
        self.with(topic, partition, dest, |p| p.bad_messages += 1);
    }

    /// `offset` is the next offset to consume, as committed.
    pub(crate) fn committed(
        &self,
        topic: &str,
        partition: i32,
        dest: Destination<'_>,
        offset: i64,
        at_ns: i64,
    ) {
        self.with(topic, partition, dest, |p| {
            p.committed = Some(p.committed.map_or(offset, |c| c.max(offset)));
            p.last_commit_ns = Some(at_ns);
        });
        metrics::gauge!("strata_kafka_committed_offset", "topic" => topic.to_string(), "partition" => partition.to_string())
            .set(offset as f64);
        metrics::gauge!("strata_kafka_last_commit_seconds").set(at_ns as f64 / 1e9);
    }

    pub(crate) fn high_watermark(&self, topic: &str, partition: i32, hw: i64) {
        if let Some(p) = self
            .inner
            .lock()
            .partitions
            .get_mut(&(topic.to_string(), partition))
        {
            p.high_watermark = Some(hw);
        }
    }

    pub(crate) fn set_paused(&self, paused: bool) {
        self.inner.lock().paused = paused;
        metrics::gauge!("strata_kafka_paused").set(f64::from(u8::from(paused)));
    }

    /// Recomputes rates and publishes lag gauges; called about once a second.
    pub(crate) fn tick(&self) {
        let mut inner = self.inner.lock();
        let now = Instant::now();
        for ((topic, partition), p) in &mut inner.partitions {
            let secs = now.duration_since(p.rate_since).as_secs_f64();
            if secs > 0.0 {
                p.messages_per_second = (p.messages - p.rate_messages) as f64 / secs;
                p.points_per_second = (p.points - p.rate_points) as f64 / secs;
            }
            p.rate_since = now;
            p.rate_messages = p.messages;
            p.rate_points = p.points;
            if let Some(lag) = p.lag() {
                metrics::gauge!("strata_kafka_consumer_lag", "topic" => topic.clone(), "partition" => partition.to_string())
                    .set(lag as f64);
            }
        }
    }

    /// Messages consumed so far by this process, over all partitions.
    pub fn messages(&self) -> u64 {
        self.inner
            .lock()
            .partitions
            .values()
            .map(|p| p.messages)
            .sum()
    }
}

impl SystemTable for KafkaStatus {
    fn name(&self) -> &str {
        "kafka_partitions"
    }

    fn snapshot(&self) -> Result<RecordBatch, ArrowError> {
        let inner = self.inner.lock();
        let rows: Vec<(&(String, i32), &Partition)> = inner.partitions.iter().collect();
        let utc: Arc<str> = Arc::from("UTC");
        let schema = Arc::new(Schema::new(vec![
            Field::new("group_id", DataType::Utf8, false),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("database", DataType::Utf8, false),
            Field::new("format", DataType::Utf8, false),
            Field::new("assigned", DataType::Boolean, false),
            Field::new("paused", DataType::Boolean, false),
            Field::new("position", DataType::Int64, true),
            Field::new("committed_offset", DataType::Int64, true),
            Field::new("high_watermark", DataType::Int64, true),
            Field::new("lag", DataType::Int64, true),
            Field::new("messages", DataType::UInt64, false),
            Field::new("points", DataType::UInt64, false),
            Field::new("bad_messages", DataType::UInt64, false),
            Field::new("messages_per_second", DataType::Float64, false),
            Field::new("points_per_second", DataType::Float64, false),
            Field::new(
                "last_commit",
                DataType::Timestamp(TimeUnit::Nanosecond, Some(Arc::clone(&utc))),
                true,
            ),
        ]));
        let paused = inner.paused;
        let columns: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|_| self.group.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|((t, _), _)| t.as_str()),
            )),
            Arc::new(Int32Array::from_iter_values(
                rows.iter().map(|((_, n), _)| *n),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, p)| p.database.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                rows.iter().map(|(_, p)| p.format),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|(_, p)| Some(p.assigned)),
            )),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|(_, p)| Some(paused && p.assigned)),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, p)| p.position))),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, p)| p.committed))),
            Arc::new(Int64Array::from_iter(
                rows.iter().map(|(_, p)| p.high_watermark),
            )),
            Arc::new(Int64Array::from_iter(rows.iter().map(|(_, p)| p.lag()))),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(_, p)| p.messages),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(_, p)| p.points),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rows.iter().map(|(_, p)| p.bad_messages),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(_, p)| p.messages_per_second),
            )),
            Arc::new(Float64Array::from_iter_values(
                rows.iter().map(|(_, p)| p.points_per_second),
            )),
            Arc::new(
                TimestampNanosecondArray::from_iter(rows.iter().map(|(_, p)| p.last_commit_ns))
                    .with_timezone(utc),
            ),
        ];
        RecordBatch::try_new(schema, columns)
    }
}
