//! The Kafka consumer: topics (one database and payload format each) read by a consumer
//! group with `rdkafka`, decoded by the same decoders as the HTTP endpoints, batched
//! across messages into one engine write per database, and committed only once durable.
//!
//! Delivery: offsets are committed to the group (so standard lag tools work) only after
//! the points of every message up to that offset are in the WAL (fsynced). A crash
//! replays from the last commit; the replayed points carry the same series and time
//! (line-protocol lines without a timestamp take the message's timestamp, not the
//! arrival time), so last-write-wins makes the replay invisible in query results.
//! Offsets are not stored beside the data: the group's committed offsets are the only
//! record, so `kafka-consumer-groups --reset-offsets` works as users expect.
//!
//! Rebalances: before partitions are revoked, what was consumed is written and committed
//! (revoke → flush → commit → release); if that write fails, nothing is committed and the
//! next owner re-reads it. Bad messages never stop consumption: they are counted by
//! reason, logged with topic/partition/offset, and produced to the dead-letter topic when
//! one is configured (the error in the `strata-error` header); the valid points of a
//! partly bad message are stored. Over the engine's memory budget every assigned partition
//! is paused until the hot table drains, then resumed.

mod consumer;
mod status;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::BaseProducer;
use strata_engine::Engine;

pub use self::status::KafkaStatus;
use crate::format::Format;
use crate::lp::Precision;

/// One consumed topic and where its points go.
#[derive(Debug, Clone)]
pub struct TopicConfig {
    pub name: String,
    pub database: String,
    pub format: Format,
    /// Timestamp precision of line protocol (`auto` guesses from the magnitude).
    pub precision: Precision,
}

/// Consumer settings; see `strata serve --help` and the README for the file form.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port[,host:port…]`.
    pub brokers: String,
    pub group: String,
    pub topics: Vec<TopicConfig>,
    /// librdkafka properties passed through (SASL, TLS, timeouts …), applied to the
    /// consumer and the dead-letter producer.
    pub properties: BTreeMap<String, String>,
    pub dead_letter_topic: Option<String>,
    /// A batch is written once it holds this many points …
    pub max_batch_points: usize,
    /// … or this many payload bytes …
    pub max_batch_bytes: usize,
    /// … or its first message is this old.
    pub max_batch_delay: Duration,
    /// Larger messages are bad (`too_large`).
    pub max_message_bytes: usize,
    /// Messages with more points (or lines) are bad (`too_many_points`).
    pub max_points_per_message: usize,
}

impl KafkaConfig {
    pub fn new(brokers: impl Into<String>, group: impl Into<String>) -> Self {
        Self {
            brokers: brokers.into(),
            group: group.into(),
            topics: Vec::new(),
            properties: BTreeMap::new(),
            dead_letter_topic: None,
            max_batch_points: 100_000,
            max_batch_bytes: 32 << 20,
            max_batch_delay: Duration::from_millis(200),
            max_message_bytes: 16 << 20,
            max_points_per_message: 1_000_000,
        }
    }
}

/// Properties Strata owns: delivery guarantees depend on them.
const OWNED_PROPERTIES: [&str; 4] = [
    "enable.auto.commit",
    "enable.auto.offset.store",
    "bootstrap.servers",
    "group.id",
];

#[derive(Debug, thiserror::Error)]
pub enum KafkaError {
    #[error("Kafka: {0}")]
    Config(String),
    #[error("Kafka client: {0}")]
    Client(#[from] rdkafka::error::KafkaError),
    #[error("Kafka: could not start the consumer thread: {0}")]
    Thread(std::io::Error),
}

/// A running consumer. Stop it with [`KafkaIngest::stop`] before the engine shuts down.
#[derive(Debug)]
pub struct KafkaIngest {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    status: Arc<KafkaStatus>,
}

impl KafkaIngest {
    /// Validates the settings, joins the group and starts consuming on a thread of its
    /// own; engine writes run on `runtime`.
    pub fn start(
        engine: Arc<Engine>,
        config: KafkaConfig,
        runtime: tokio::runtime::Handle,
    ) -> Result<Self, KafkaError> {
        validate(&config)?;
        let status = KafkaStatus::new(&config.group);
        let mut client = ClientConfig::new();
        for (k, v) in &config.properties {
            client.set(k, v);
        }
        client
            .set("bootstrap.servers", &config.brokers)
            .set("client.id", client_id(&config));
        let producer: Option<BaseProducer<consumer::DeadLetterContext>> =
            match &config.dead_letter_topic {
                Some(_) => Some(
                    client
                        .clone()
                        .set("linger.ms", "0")
                        .create_with_context(consumer::DeadLetterContext)?,
                ),
                None => None,
            };
        for (key, default) in [
            ("auto.offset.reset", "earliest"),
            ("statistics.interval.ms", "1000"),
            // librdkafka waits up to 500 ms for a fetch to fill; with brokers that hold
            // a fetch for its whole wait (tansu does), that caps throughput at a third.
            ("fetch.wait.max.ms", "50"),
        ] {
            if client.get(key).is_none() {
                client.set(key, default);
            }
        }
        client
            .set("group.id", &config.group)
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false");
        let context =
            consumer::Context::new(engine, &config, runtime, Arc::clone(&status), producer);
        let c: BaseConsumer<consumer::Context> = client.create_with_context(context)?;
        let topics: Vec<&str> = config.topics.iter().map(|t| t.name.as_str()).collect();
        c.subscribe(&topics)?;
        tracing::info!(
            brokers = %config.brokers,
            group = %config.group,
            topics = ?topics,
            dead_letter_topic = ?config.dead_letter_topic,
            "Kafka consumer joined"
        );
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("strata-kafka".into())
            .spawn(move || consumer::run(c, &stop2))
            .map_err(KafkaError::Thread)?;
        Ok(Self {
            stop,
            thread: Some(thread),
            status,
        })
    }

    /// The live state behind `system.kafka_partitions`.
    pub fn status(&self) -> Arc<KafkaStatus> {
        Arc::clone(&self.status)
    }

    /// Writes and commits what was consumed, leaves the group and waits for the thread.
    /// Blocks: call it from a blocking context.
    pub fn stop(mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take()
            && t.join().is_err()
        {
            tracing::error!("the Kafka consumer thread panicked");
        }
    }
}

impl Drop for KafkaIngest {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
    }
}

fn client_id(config: &KafkaConfig) -> String {
    config
        .properties
        .get("client.id")
        .cloned()
        .unwrap_or_else(|| format!("strata-{}", std::process::id()))
}

fn validate(config: &KafkaConfig) -> Result<(), KafkaError> {
    let bad = |m: String| Err(KafkaError::Config(m));
    if config.brokers.trim().is_empty() {
        return bad("no brokers given (`--kafka-brokers host:port[,…]`)".into());
    }
    if config.group.trim().is_empty() {
        return bad("the consumer group name is empty (`--kafka-group`)".into());
    }
    if config.topics.is_empty() {
        return bad("no topics to consume (`--kafka-topics t1,t2` or `[[kafka.topics]]`)".into());
    }
    let mut seen = std::collections::HashSet::new();
    for t in &config.topics {
        if t.name.trim().is_empty() {
            return bad("a topic name is empty".into());
        }
        if !seen.insert(t.name.as_str()) {
            return bad(format!("topic `{}` is listed twice", t.name));
        }
        if let Err(e) = strata_engine::check_database_name(&t.database) {
            return bad(format!("topic `{}`: {e}", t.name));
        }
    }
    if let Some(d) = &config.dead_letter_topic
        && seen.contains(d.as_str())
    {
        return bad(format!(
            "the dead-letter topic `{d}` is also consumed; bad messages would loop"
        ));
    }
    for k in config.properties.keys() {
        if OWNED_PROPERTIES.contains(&k.as_str()) {
            return bad(format!(
                "property `{k}` is set by Strata (exactly-once delivery depends on it); \
                 use the dedicated setting or leave it out"
            ));
        }
    }
    if config.max_batch_points == 0 || config.max_batch_bytes == 0 {
        return bad("batch limits must be positive".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, db: &str) -> TopicConfig {
        TopicConfig {
            name: name.into(),
            database: db.into(),
            format: Format::SeedJson,
            precision: Precision::Auto,
        }
    }

    #[test]
    fn settings_that_would_break_delivery_are_refused() {
        let mut c = KafkaConfig::new("127.0.0.1:9092", "g");
        assert!(
            validate(&c)
                .expect_err("no topics")
                .to_string()
                .contains("no topics")
        );
        c.topics.push(topic("cpu", "metrics"));
        validate(&c).expect("valid");
        c.properties
            .insert("enable.auto.commit".into(), "true".into());
        let e = validate(&c).expect_err("owned property").to_string();
        assert!(e.contains("enable.auto.commit"), "{e}");
        c.properties.clear();
        c.dead_letter_topic = Some("cpu".into());
        let e = validate(&c).expect_err("loop").to_string();
        assert!(e.contains("loop"), "{e}");
        c.dead_letter_topic = None;
        c.topics.push(topic("mem", "system"));
        let e = validate(&c).expect_err("reserved db").to_string();
        assert!(e.contains("topic `mem`") && e.contains("reserved"), "{e}");
        c.topics.pop();
        c.topics.push(topic("cpu", "metrics"));
        let e = validate(&c).expect_err("twice").to_string();
        assert!(e.contains("twice"), "{e}");
    }
}
