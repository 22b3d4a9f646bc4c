//! The consumer thread: poll → decode into the pending batch → write when due → commit.
//! Rebalance callbacks run on this same thread (inside `poll`), so the batch is behind a
//! mutex only to be reachable from them.

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use rdkafka::client::ClientContext;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext, Rebalance};
use rdkafka::error::{KafkaError as RdError, KafkaResult};
use rdkafka::message::{BorrowedMessage, Header, Message, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use strata_engine::{Engine, Error as EngineError, Rows, WriteOptions};

use super::status::{Destination, KafkaStatus};
use super::{KafkaConfig, TopicConfig};
use crate::format::PayloadError;

/// How long a dead-letter produce may take before the message is given up (and logged).
const DEAD_LETTER_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest one `poll` blocks, so stop requests and pressure changes are seen quickly.
const MAX_POLL: Duration = Duration::from_millis(100);
const SEEK_TIMEOUT: Duration = Duration::from_secs(5);
/// Messages taken from the consumer queue before decoding them together.
const MAX_BURST: usize = 512;
/// Below this many messages per thread, decoding stays on the consumer thread.
const MIN_MESSAGES_PER_THREAD: usize = 16;

/// Why a message is bad; the label of `strata_kafka_bad_messages_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Bad {
    Empty,
    TooLarge,
    NotUtf8,
    TooManyPoints,
    /// Nothing in it decoded.
    Undecodable,
    /// Some lines or elements did not decode; the others are stored.
    InvalidLines,
    /// The engine refused points (schema conflict, limits, retention).
    Rejected,
}

impl Bad {
    fn label(self) -> &'static str {
        match self {
            Self::Empty => "empty",
            Self::TooLarge => "too_large",
            Self::NotUtf8 => "not_utf8",
            Self::TooManyPoints => "too_many_points",
            Self::Undecodable => "undecodable",
            Self::InvalidLines => "invalid_lines",
            Self::Rejected => "rejected",
        }
    }
}

/// One consumed message, as much as a dead letter needs.
#[derive(Debug)]
struct Consumed {
    topic: String,
    partition: i32,
    offset: i64,
    key: Option<Vec<u8>>,
    /// Kept only while a dead-letter topic is configured.
    payload: Option<Vec<u8>>,
    bad: Option<Bad>,
    errors: Vec<String>,
}

/// A message decoded off the consumer thread's lock, ready to join the batch.
#[derive(Debug)]
struct Decoded {
    consumed: Consumed,
    points: Rows,
    bytes: usize,
}

#[derive(Debug, Default)]
struct DbRows {
    rows: Rows,
    /// For row `i`: (index in `Batch::messages`, line or element number in it).
    owners: Vec<(usize, u32)>,
}

/// What was consumed and not yet written.
#[derive(Debug, Default)]
struct Batch {
    dbs: BTreeMap<String, DbRows>,
    messages: Vec<Consumed>,
    /// Per partition: (first, last) offset in this batch.
    offsets: BTreeMap<(String, i32), (i64, i64)>,
    points: usize,
    bytes: usize,
    started: Option<Instant>,
}

/// Where a flush was asked for; decides the commit mode and what a failure means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Flush {
    /// The batch is full or old enough: on failure, rewind and read it again.
    Due,
    /// Partitions are being revoked, or the consumer is stopping: on failure, leave the
    /// uncommitted messages to whoever owns the partitions next.
    Handover,
}

pub(super) struct Context {
    engine: Arc<Engine>,
    runtime: tokio::runtime::Handle,
    topics: HashMap<String, TopicConfig>,
    config: KafkaConfig,
    status: Arc<KafkaStatus>,
    batch: Mutex<Batch>,
    dead_letters: Option<BaseProducer<DeadLetterContext>>,
    /// Per owned partition: the next offset whose points are not yet durable. A
    /// handover commits all of it synchronously, so an asynchronous commit still on its
    /// way can never leave the group behind what this member stored.
    durable: Mutex<BTreeMap<(String, i32), i64>>,
    /// Bumped on each assignment, so a paused consumer pauses new partitions too.
    assignments: AtomicU64,
    /// Partitions revoked since the consumer loop last looked: messages of theirs it
    /// holds undecoded are stale (not committed; their next owner reads them again).
    revoked: Mutex<Vec<(String, i32)>>,
    /// Threads a burst may be decoded on (the CPUs available, read once).
    decode_threads: usize,
}

impl Context {
    pub(super) fn new(
        engine: Arc<Engine>,
        config: &KafkaConfig,
        runtime: tokio::runtime::Handle,
        status: Arc<KafkaStatus>,
        dead_letters: Option<BaseProducer<DeadLetterContext>>,
    ) -> Self {
        Self {
            engine,
            runtime,
            topics: config
                .topics
                .iter()
                .map(|t| (t.name.clone(), t.clone()))
                .collect(),
            config: config.clone(),
            status,
            batch: Mutex::new(Batch::default()),
            dead_letters,
            durable: Mutex::new(BTreeMap::new()),
            assignments: AtomicU64::new(0),
            revoked: Mutex::new(Vec::new()),
            decode_threads: std::thread::available_parallelism().map_or(1, usize::from),
        }
    }

    fn destination<'a>(&'a self, topic: &str) -> Destination<'a> {
        match self.topics.get(topic) {
            Some(t) => Destination {
                database: &t.database,
                format: t.format.name(),
            },
            None => Destination {
                database: "",
                format: "",
            },
        }
    }

    fn due(&self) -> bool {
        let b = self.batch.lock();
        b.points >= self.config.max_batch_points
            || b.bytes >= self.config.max_batch_bytes
            || b.started
                .is_some_and(|s| s.elapsed() >= self.config.max_batch_delay)
    }

    /// How long `poll` may block before the batch is due.
    fn poll_timeout(&self) -> Duration {
        match self.batch.lock().started {
            Some(s) => self
                .config
                .max_batch_delay
                .saturating_sub(s.elapsed())
                .min(MAX_POLL),
            None => MAX_POLL,
        }
    }

    /// Decodes messages (in parallel when there are many) and adds them, in order, to
    /// the pending batch.
    fn add(&self, messages: &[BorrowedMessage<'_>]) {
        let threads = self
            .decode_threads
            .min(messages.len() / MIN_MESSAGES_PER_THREAD)
            .max(1);
        if threads == 1 {
            for m in messages {
                if let Some(d) = self.decode(m) {
                    self.push(d);
                }
            }
            return;
        }
        let per = messages.len().div_ceil(threads);
        let decoded: Vec<Vec<Decoded>> = std::thread::scope(|scope| {
            let workers: Vec<_> = messages
                .chunks(per)
                .map(|chunk| {
                    scope.spawn(move || chunk.iter().filter_map(|m| self.decode(m)).collect())
                })
                .collect();
            workers
                .into_iter()
                .map(|w| w.join().unwrap_or_default())
                .collect()
        });
        for d in decoded.into_iter().flatten() {
            self.push(d);
        }
    }

    /// Decodes one message; `None` for a topic Strata was not asked to consume.
    fn decode(&self, m: &BorrowedMessage<'_>) -> Option<Decoded> {
        let topic = m.topic();
        let Some(tc) = self.topics.get(topic) else {
            tracing::warn!(
                topic,
                "message from a topic Strata was not asked to consume"
            );
            return None;
        };
        let payload = m.payload().unwrap_or_default();
        let mut consumed = Consumed {
            topic: topic.to_string(),
            partition: m.partition(),
            offset: m.offset(),
            key: m.key().map(<[u8]>::to_vec),
            payload: self.dead_letters.as_ref().map(|_| payload.to_vec()),
            bad: None,
            errors: Vec::new(),
        };
        // Lines without a timestamp take the message's, so a replay after a crash
        // produces the very same points (and last-write-wins hides it).
        let default_time = m
            .timestamp()
            .to_millis()
            .and_then(|ms| ms.checked_mul(1_000_000))
            .unwrap_or_else(|| self.engine.clock().now_ns());
        let mut points = Rows::new();
        if payload.is_empty() {
            consumed.bad = Some(Bad::Empty);
            consumed.errors.push("the message has no payload".into());
        } else if payload.len() > self.config.max_message_bytes {
            consumed.bad = Some(Bad::TooLarge);
            consumed.errors.push(format!(
                "the message is {} bytes, over the limit of {} bytes",
                payload.len(),
                self.config.max_message_bytes
            ));
        } else {
            match tc.format.decode_bytes(
                payload,
                tc.precision,
                default_time,
                self.config.max_message_bytes,
                self.config.max_points_per_message,
            ) {
                Err(PayloadError::NotUtf8(at)) => {
                    consumed.bad = Some(Bad::NotUtf8);
                    consumed
                        .errors
                        .push(format!("the payload is not valid UTF-8 (at byte {at})"));
                }
                Err(PayloadError::Undecodable(why)) => {
                    consumed.bad = Some(Bad::Undecodable);
                    consumed.errors.push(why);
                }
                Ok((decoded, errors)) => {
                    if decoded.len() + errors.len() > self.config.max_points_per_message {
                        consumed.bad = Some(Bad::TooManyPoints);
                        consumed.errors.push(format!(
                            "the message has {} points, over the limit of {} per message",
                            decoded.len() + errors.len(),
                            self.config.max_points_per_message
                        ));
                    } else {
                        if !errors.is_empty() {
                            consumed.bad = Some(if decoded.is_empty() {
                                Bad::Undecodable
                            } else {
                                Bad::InvalidLines
                            });
                            consumed.errors.extend(
                                errors.into_iter().map(|e| {
                                    format!("line {}: {}", e.line_number, e.error_message)
                                }),
                            );
                        }
                        points = decoded;
                    }
                }
            }
        }
        Some(Decoded {
            consumed,
            points,
            bytes: payload.len(),
        })
    }

    /// Adds a decoded message to the pending batch.
    fn push(&self, d: Decoded) {
        let Decoded {
            consumed,
            points,
            bytes,
        } = d;
        let topic = consumed.topic.as_str();
        let Some(tc) = self.topics.get(topic) else {
            return;
        };
        self.status.consumed(
            topic,
            consumed.partition,
            self.destination(topic),
            consumed.offset,
            points.len(),
            consumed.bad.is_some(),
        );
        let mut b = self.batch.lock();
        let index = b.messages.len();
        b.started.get_or_insert_with(Instant::now);
        b.bytes += bytes;
        b.points += points.len();
        b.offsets
            .entry((consumed.topic.clone(), consumed.partition))
            .and_modify(|(_, last)| *last = consumed.offset)
            .or_insert((consumed.offset, consumed.offset));
        let db = b.dbs.entry(tc.database.clone()).or_default();
        // Rows are numbered on through the batch: engine rejections name this number,
        // which leads back to the message.
        let lines = db.rows.append(points);
        db.owners
            .extend(lines.into_iter().map(|line| (index, line)));
        b.messages.push(consumed);
    }

    /// Writes the pending batch, dead-letters its bad messages and commits its offsets.
    /// Returns false if the batch could not be made durable (nothing was committed).
    fn flush(&self, c: &BaseConsumer<Self>, why: Flush) -> bool {
        let batch = std::mem::take(&mut *self.batch.lock());
        if batch.messages.is_empty() {
            if why == Flush::Handover {
                self.commit(c, why, &BTreeMap::new());
            }
            return true;
        }
        let Batch {
            dbs,
            mut messages,
            offsets,
            ..
        } = batch;
        let started = Instant::now();
        let mut accepted: HashMap<String, usize> = HashMap::new();
        for (db, part) in dbs {
            if part.rows.is_empty() {
                continue;
            }
            let DbRows { rows, owners } = part;
            let write = self.engine.write(&db, rows, WriteOptions::default());
            match self.runtime.block_on(write) {
                Ok(outcome) => {
                    for r in outcome.rejected {
                        if let Some(&(msg, line)) = owners.get(r.line.wrapping_sub(1)) {
                            let m = &mut messages[msg];
                            if m.bad.is_none() {
                                m.bad = Some(Bad::Rejected);
                                self.status
                                    .bad(&m.topic, m.partition, self.destination(&m.topic));
                            }
                            m.errors.push(format!("line {line}: {}", r.reason));
                        }
                    }
                    *accepted.entry(db).or_default() += outcome.accepted;
                }
                Err(e) => {
                    self.abandon(c, &offsets, why, &e);
                    return false;
                }
            }
        }
        for m in &messages {
            if let Some(bad) = m.bad {
                self.dead_letter(m, bad);
            }
        }
        if let Some(p) = &self.dead_letters
            && let Err(e) = p.flush(DEAD_LETTER_TIMEOUT)
        {
            metrics::counter!("strata_kafka_dead_letters_total", "outcome" => "failed")
                .increment(1);
            tracing::error!(error = %e, "dead-letter messages were not all delivered in time");
        }
        self.commit(c, why, &offsets);
        for (topic, n) in messages
            .iter()
            .fold(HashMap::<&str, u64>::new(), |mut acc, m| {
                *acc.entry(m.topic.as_str()).or_default() += 1;
                acc
            })
        {
            metrics::counter!("strata_kafka_messages_total", "topic" => topic.to_string())
                .increment(n);
        }
        for (db, n) in accepted {
            metrics::counter!("strata_kafka_points_total", "database" => db).increment(n as u64);
            metrics::counter!("strata_ingest_points_total", "path" => "kafka", "outcome" => "accepted")
                .increment(n as u64);
        }
        metrics::histogram!("strata_kafka_flush_seconds").record(started.elapsed().as_secs_f64());
        true
    }

    /// Commits after a successful write: the batch's offsets asynchronously when due;
    /// everything durable synchronously at a handover.
    fn commit(
        &self,
        c: &BaseConsumer<Self>,
        why: Flush,
        offsets: &BTreeMap<(String, i32), (i64, i64)>,
    ) {
        let committable: Vec<((String, i32), i64)> = {
            let mut durable = self.durable.lock();
            for (tp, (_, last)) in offsets {
                durable.insert(tp.clone(), last + 1);
            }
            match why {
                Flush::Due => offsets
                    .iter()
                    .map(|(tp, (_, last))| (tp.clone(), last + 1))
                    .collect(),
                Flush::Handover => durable.iter().map(|(tp, o)| (tp.clone(), *o)).collect(),
            }
        };
        let mut tpl = TopicPartitionList::new();
        for ((topic, partition), next) in &committable {
            if let Err(e) = tpl.add_partition_offset(topic, *partition, Offset::Offset(*next)) {
                tracing::error!(topic, partition, error = %e, "could not list an offset to commit");
            }
        }
        if tpl.count() == 0 {
            return;
        }
        let mode = match why {
            Flush::Due => CommitMode::Async,
            Flush::Handover => CommitMode::Sync,
        };
        match c.commit(&tpl, mode) {
            Ok(()) => {
                if why == Flush::Handover {
                    self.record_commits(&tpl);
                }
            }
            // Durable but not committed: a restart re-reads these messages and
            // last-write-wins hides the repeat; the next commit covers them anyway.
            Err(e) => tracing::warn!(error = %e, "committing Kafka offsets failed"),
        }
    }

    /// A write failed, so nothing of the batch may be committed.
    fn abandon(
        &self,
        c: &BaseConsumer<Self>,
        offsets: &BTreeMap<(String, i32), (i64, i64)>,
        why: Flush,
        e: &EngineError,
    ) {
        match e {
            EngineError::MemoryPressure { .. } | EngineError::ShuttingDown => {
                tracing::info!(error = %e, "Kafka batch not written; it will be read again")
            }
            _ => tracing::error!(error = %e, "Kafka batch not written; it will be read again"),
        }
        metrics::counter!("strata_kafka_write_failures_total").increment(1);
        if why == Flush::Handover {
            // What earlier batches made durable is still handed over.
            self.commit(c, why, &BTreeMap::new());
            return;
        }
        for ((topic, partition), (first, _)) in offsets {
            if let Err(err) = c.seek(topic, *partition, Offset::Offset(*first), SEEK_TIMEOUT) {
                // Never commit past what was not written: rejoin, which restarts every
                // partition from its committed offset.
                tracing::error!(topic, partition, error = %err, "rewinding failed; rejoining the group");
                let topics: Vec<&str> = self.topics.keys().map(String::as_str).collect();
                c.unsubscribe();
                if let Err(err) = c.subscribe(&topics) {
                    tracing::error!(error = %err, "re-subscribing failed");
                }
                return;
            }
        }
    }

    fn dead_letter(&self, m: &Consumed, bad: Bad) {
        metrics::counter!("strata_kafka_bad_messages_total", "topic" => m.topic.clone(), "reason" => bad.label())
            .increment(1);
        let error = m.errors.join("; ");
        tracing::warn!(
            topic = %m.topic,
            partition = m.partition,
            offset = m.offset,
            reason = bad.label(),
            error = %cut(&error, 1024),
            "bad Kafka message"
        );
        let (Some(producer), Some(topic)) = (&self.dead_letters, &self.config.dead_letter_topic)
        else {
            return;
        };
        let partition = m.partition.to_string();
        let offset = m.offset.to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "strata-error",
                value: Some(cut(&error, 8192)),
            })
            .insert(Header {
                key: "strata-reason",
                value: Some(bad.label()),
            })
            .insert(Header {
                key: "strata-source-topic",
                value: Some(m.topic.as_str()),
            })
            .insert(Header {
                key: "strata-source-partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "strata-source-offset",
                value: Some(offset.as_str()),
            });
        let payload = m.payload.as_deref().unwrap_or_default();
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).payload(payload).headers(headers);
        if let Some(k) = &m.key {
            record = record.key(k.as_slice());
        }
        if let Err((e, _)) = producer.send(record) {
            metrics::counter!("strata_kafka_dead_letters_total", "outcome" => "failed")
                .increment(1);
            tracing::error!(topic, error = %e, "could not queue a dead-letter message");
        }
    }

    fn record_commits(&self, offsets: &TopicPartitionList) {
        let now = self.engine.clock().now_ns();
        for e in offsets.elements() {
            if let Offset::Offset(o) = e.offset() {
                self.status.committed(
                    e.topic(),
                    e.partition(),
                    self.destination(e.topic()),
                    o,
                    now,
                );
            }
        }
    }

    fn mark(&self, tpl: &TopicPartitionList, assigned: bool) {
        for e in tpl.elements() {
            self.status.assigned(
                e.topic(),
                e.partition(),
                self.destination(e.topic()),
                assigned,
            );
        }
    }
}

fn cut(s: &str, max: usize) -> &str {
    &s[..s.floor_char_boundary(max)]
}

impl ClientContext for Context {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(error = %error, reason, "Kafka client");
    }

    /// Reads the high watermark of each partition from librdkafka's statistics.
    fn stats_raw(&self, statistics: &[u8]) {
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else {
            return;
        };
        let Some(topics) = v.get("topics").and_then(|t| t.as_object()) else {
            return;
        };
        for (topic, t) in topics {
            let Some(parts) = t.get("partitions").and_then(|p| p.as_object()) else {
                continue;
            };
            for p in parts.values() {
                let partition = p.get("partition").and_then(|x| x.as_i64()).unwrap_or(-1);
                let hw = p.get("hi_offset").and_then(|x| x.as_i64()).unwrap_or(-1);
                if let (Ok(partition), true) = (i32::try_from(partition), hw >= 0)
                    && partition >= 0
                {
                    self.status.high_watermark(topic, partition, hw);
                }
            }
        }
    }
}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(tpl) = rebalance {
            // Release nothing that is consumed but not durable and committed.
            self.flush(c, Flush::Handover);
            let mut durable = self.durable.lock();
            let mut revoked = self.revoked.lock();
            for e in tpl.elements() {
                durable.remove(&(e.topic().to_string(), e.partition()));
                revoked.push((e.topic().to_string(), e.partition()));
            }
            drop((durable, revoked));
            self.mark(tpl, false);
            tracing::info!(partitions = tpl.count(), "Kafka partitions revoked");
        }
    }

    fn post_rebalance(&self, _c: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        match rebalance {
            Rebalance::Assign(tpl) => {
                self.mark(tpl, true);
                self.assignments.fetch_add(1, Ordering::AcqRel);
                let list: Vec<String> = tpl
                    .elements()
                    .iter()
                    .map(|e| format!("{}/{}", e.topic(), e.partition()))
                    .collect();
                tracing::info!(partitions = ?list, "Kafka partitions assigned");
            }
            Rebalance::Revoke(_) => {}
            Rebalance::Error(e) => tracing::warn!(error = %e, "Kafka rebalance failed"),
        }
    }

    fn commit_callback(&self, result: KafkaResult<()>, offsets: &TopicPartitionList) {
        match result {
            Ok(()) => self.record_commits(offsets),
            Err(e) => tracing::warn!(error = %e, "Kafka offset commit failed"),
        }
    }
}

/// The dead-letter producer's context: logs and counts deliveries.
pub(super) struct DeadLetterContext;

impl ClientContext for DeadLetterContext {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, message: &str) {
        // The producer shares the consumer's properties; consumer-only ones are expected.
        if fac == "CONFWARN" && message.contains("is a consumer property") {
            return;
        }
        log_to_tracing(level, fac, message);
    }

    fn error(&self, error: RdError, reason: &str) {
        tracing::warn!(error = %error, reason, "Kafka dead-letter producer");
    }
}

impl ProducerContext for DeadLetterContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                metrics::counter!("strata_kafka_dead_letters_total", "outcome" => "produced")
                    .increment(1);
            }
            Err((e, m)) => {
                metrics::counter!("strata_kafka_dead_letters_total", "outcome" => "failed")
                    .increment(1);
                tracing::error!(topic = m.topic(), error = %e, "dead-letter message not delivered");
            }
        }
    }
}

fn log_to_tracing(level: RDKafkaLogLevel, fac: &str, message: &str) {
    match level {
        RDKafkaLogLevel::Emerg
        | RDKafkaLogLevel::Alert
        | RDKafkaLogLevel::Critical
        | RDKafkaLogLevel::Error => tracing::error!(facility = fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Warning => tracing::warn!(facility = fac, "librdkafka: {message}"),
        RDKafkaLogLevel::Notice | RDKafkaLogLevel::Info => {
            tracing::info!(facility = fac, "librdkafka: {message}")
        }
        RDKafkaLogLevel::Debug => tracing::debug!(facility = fac, "librdkafka: {message}"),
    }
}

/// The consumer thread's loop; returns after `stop` is set, having written and committed
/// what it consumed and left the group.
pub(super) fn run(c: BaseConsumer<Context>, stop: &AtomicBool) {
    let ctx = c.context();
    let mut paused = false;
    let mut paused_at = 0;
    let mut tick = Instant::now();
    while !stop.load(Ordering::Acquire) {
        let pressure = ctx.engine.memory_pressure();
        let epoch = ctx.assignments.load(Ordering::Acquire);
        if pressure && (!paused || paused_at != epoch) {
            set_paused(&c, true);
            paused = true;
            paused_at = epoch;
        } else if !pressure && paused {
            set_paused(&c, false);
            paused = false;
        }
        // A burst: wait for one message, then take what is already queued.
        let mut burst: Vec<BorrowedMessage<'_>> = Vec::new();
        let mut timeout = ctx.poll_timeout();
        while burst.len() < MAX_BURST {
            let polled = c.poll(timeout);
            {
                // A rebalance ran inside that poll: what we hold of revoked partitions
                // was consumed before it and must not be stored or committed here.
                let mut revoked = ctx.revoked.lock();
                if !revoked.is_empty() {
                    burst.retain(|m| {
                        !revoked
                            .iter()
                            .any(|(t, p)| t == m.topic() && *p == m.partition())
                    });
                    revoked.clear();
                }
            }
            match polled {
                Some(Ok(m)) => burst.push(m),
                Some(Err(e)) => {
                    metrics::counter!("strata_kafka_errors_total").increment(1);
                    tracing::warn!(error = %e, "Kafka poll");
                    break;
                }
                None => break,
            }
            timeout = Duration::ZERO;
        }
        ctx.add(&burst);
        drop(burst);
        if !paused && ctx.due() {
            ctx.flush(&c, Flush::Due);
        }
        if tick.elapsed() >= Duration::from_secs(1) {
            ctx.status.tick();
            tick = Instant::now();
        }
    }
    ctx.flush(&c, Flush::Handover);
    // Dropping the consumer leaves the group (the revoke callback finds nothing left).
    drop(c);
    tracing::info!("Kafka consumer stopped");
}

fn set_paused(c: &BaseConsumer<Context>, pause: bool) {
    let ctx = c.context();
    let result = c
        .assignment()
        .and_then(|a| if pause { c.pause(&a) } else { c.resume(&a) });
    match result {
        Ok(()) => {
            ctx.status.set_paused(pause);
            if pause {
                metrics::counter!("strata_kafka_pauses_total").increment(1);
                tracing::warn!(
                    hot_bytes = ctx.engine.hot_bytes(),
                    "over the memory budget: Kafka consumption paused until persistence catches up"
                );
            } else {
                tracing::info!("Kafka consumption resumed");
            }
        }
        Err(e) => tracing::error!(error = %e, pause, "pausing/resuming Kafka partitions failed"),
    }
}
