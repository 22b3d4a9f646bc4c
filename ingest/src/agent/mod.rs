//! `strata agent`: a small push agent for hosts that cannot be scraped.
//!
//! Every interval it reads the host's metrics ([`host`]) and, optionally, local
//! Prometheus `/metrics` endpoints, writes them as line protocol into its disk buffer
//! ([`buffer`]) and a sender delivers the buffer, oldest first, to a Strata server
//! (`POST /api/v3/write_lp`, acknowledged once in the server's WAL) or to a Kafka topic
//! (acknowledged by the broker; Strata consumes it with `format = "line_protocol"`). A
//! batch leaves the buffer only when acknowledged, so a server restart or outage loses
//! nothing as long as the buffer (bounded; the oldest batches go first, counted) holds.
//!
//! The agent reports on itself in the table `strata_agent` (tag `host`): `collections`,
//! `buffered_batches`, `buffered_bytes`, `sent_batches`, `dropped_batches`,
//! `rejected_lines`, `send_failures`.

pub mod buffer;
pub mod host;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use strata_engine::{FieldValue, Point};
use tokio::sync::{Notify, watch};

use crate::exposition::{self, Dialect};
use buffer::DiskBuffer;

/// Where batches go.
#[derive(Debug, Clone)]
pub enum Destination {
    /// A Strata server's HTTP API, e.g. `http://127.0.0.1:7070`.
    Http { server: String, database: String },
    /// A Kafka topic (line-protocol messages, keyed by host).
    Kafka {
        brokers: String,
        topic: String,
        properties: BTreeMap<String, String>,
    },
}

#[derive(Debug, Clone)]
pub struct AgentConfig {
    pub destination: Destination,
    pub interval: Duration,
    /// Local `/metrics` URLs scraped every interval (their samples get `host`).
    pub scrape: Vec<String>,
    pub buffer_dir: PathBuf,
    /// Disk buffer bound; past it the oldest batches are dropped (counted).
    pub buffer_max_bytes: u64,
    /// Most bytes sent in one request or message.
    pub batch_max_bytes: u64,
    /// Overrides the machine's host name in the `host` tag.
    pub host: Option<String>,
    /// Extra tags on every point.
    pub tags: BTreeMap<String, String>,
    /// Per request (HTTP) or delivery (Kafka).
    pub timeout: Duration,
}

impl AgentConfig {
    /// Defaults: 10 s interval, 256 MiB buffer in `./strata-agent-buffer`, 1 MiB batches.
    pub fn new(destination: Destination) -> Self {
        Self {
            destination,
            interval: Duration::from_secs(10),
            scrape: Vec::new(),
            buffer_dir: PathBuf::from("strata-agent-buffer"),
            buffer_max_bytes: 256 << 20,
            batch_max_bytes: 1 << 20,
            host: None,
            tags: BTreeMap::new(),
            timeout: Duration::from_secs(10),
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    #[error("agent buffer {path}: {source}")]
    Buffer {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{0}")]
    Setup(String),
}

/// Counters the agent reports about itself.
#[derive(Debug, Default)]
struct Stats {
    collections: u64,
    sent_batches: u64,
    rejected_lines: u64,
    send_failures: u64,
}

/// The delivery side: one request or message per call.
enum Sender {
    Http {
        client: reqwest::Client,
        url: String,
    },
    Kafka {
        producer: rdkafka::producer::FutureProducer,
        topic: String,
        key: String,
        /// Largest message; a larger delivery is split at line boundaries.
        max_message: usize,
    },
}

/// What a delivery attempt came to.
enum Delivery {
    /// Stored; `rejected` lines were refused for good (bad data), the rest stored.
    Done { rejected: u64 },
    /// Refused as too large: send fewer batches at once (or drop a lone one).
    TooLarge(String),
    /// Not stored; try again later.
    Retry(String),
}

/// Kafka's default `message.max.bytes` is 1,000,000: messages stay below it.
const KAFKA_MAX_MESSAGE: usize = 900_000;

impl Sender {
    fn new(config: &AgentConfig, host: &str) -> Result<Self, AgentError> {
        match &config.destination {
            Destination::Http { server, database } => {
                let base = server.trim_end_matches('/');
                let mut url = url::Url::parse(&format!("{base}/api/v3/write_lp"))
                    .map_err(|e| AgentError::Setup(format!("server URL `{server}`: {e}")))?;
                url.query_pairs_mut()
                    .append_pair("db", database)
                    .append_pair("precision", "nanosecond");
                let client = reqwest::Client::builder()
                    .user_agent(concat!("strata-agent/", env!("CARGO_PKG_VERSION")))
                    // A redirect would turn the POST into a GET and fake an acknowledgement.
                    .redirect(reqwest::redirect::Policy::none())
                    .timeout(config.timeout)
                    .build()
                    .map_err(|e| AgentError::Setup(e.to_string()))?;
                Ok(Self::Http {
                    client,
                    url: url.to_string(),
                })
            }
            Destination::Kafka {
                brokers,
                topic,
                properties,
            } => {
                let mut c = rdkafka::ClientConfig::new();
                c.set("bootstrap.servers", brokers)
                    .set("message.timeout.ms", config.timeout.as_millis().to_string())
                    .set("enable.idempotence", "true");
                for (k, v) in properties {
                    c.set(k, v);
                }
                let producer = c
                    .create()
                    .map_err(|e| AgentError::Setup(format!("Kafka producer: {e}")))?;
                let max_message = properties
                    .get("message.max.bytes")
                    .and_then(|v| v.parse::<usize>().ok())
                    .map_or(KAFKA_MAX_MESSAGE, |m| m.saturating_sub(m / 10).max(1));
                Ok(Self::Kafka {
                    producer,
                    topic: topic.clone(),
                    key: host.to_string(),
                    max_message,
                })
            }
        }
    }

    async fn send(&self, data: Vec<u8>) -> Delivery {
        match self {
            Self::Http { client, url } => {
                let resp = match client.post(url).body(data).send().await {
                    Ok(r) => r,
                    Err(e) => return Delivery::Retry(format!("request failed: {e}")),
                };
                let status = resp.status();
                if status.is_success() {
                    return Delivery::Done { rejected: 0 };
                }
                let body = resp.text().await.unwrap_or_default();
                let short: String = body.chars().take(500).collect();
                match status.as_u16() {
                    // A partial write lists the refused lines; the others are stored and
                    // retrying cannot change the refused ones.
                    400 => match serde_json::from_str::<serde_json::Value>(&body)
                        .ok()
                        .and_then(|v| v["data"].as_array().map(|a| a.len() as u64))
                    {
                        Some(rejected) => {
                            tracing::warn!(rejected, body = %short, "the server refused some lines");
                            Delivery::Done { rejected }
                        }
                        // Anything else (a bad database name, say) stored nothing: keep it.
                        None => Delivery::Retry(format!("server answered {status}: {short}")),
                    },
                    413 => Delivery::TooLarge(format!("server answered {status}: {short}")),
                    _ => Delivery::Retry(format!("server answered {status}: {short}")),
                }
            }
            Self::Kafka {
                producer,
                topic,
                key,
                max_message,
            } => {
                // Each message whole lines, below the broker's limit. A retry after a
                // partial success resends some lines: harmless, writes are idempotent.
                let mut rest = data.as_slice();
                while !rest.is_empty() {
                    let mut cut = rest.len().min(*max_message);
                    if cut < rest.len() {
                        match rest[..cut].iter().rposition(|b| *b == b'\n') {
                            Some(nl) => cut = nl + 1,
                            None => {
                                return Delivery::TooLarge(format!(
                                    "a line is longer than the largest Kafka message ({max_message} bytes)"
                                ));
                            }
                        }
                    }
                    let record = rdkafka::producer::FutureRecord::to(topic)
                        .key(key.as_str())
                        .payload(&rest[..cut]);
                    match producer.send(record, rdkafka::util::Timeout::Never).await {
                        Ok(_) => rest = &rest[cut..],
                        Err((
                            e @ rdkafka::error::KafkaError::MessageProduction(
                                rdkafka::types::RDKafkaErrorCode::MessageSizeTooLarge,
                            ),
                            _,
                        )) => return Delivery::TooLarge(format!("Kafka refused the message: {e}")),
                        Err((e, _)) => {
                            return Delivery::Retry(format!("Kafka delivery failed: {e}"));
                        }
                    }
                }
                Delivery::Done { rejected: 0 }
            }
        }
    }
}

/// Runs the agent until `stop` turns true; then stops collecting, tries for up to the
/// timeout to deliver what is buffered, and returns (the rest stays on disk).
pub async fn run(config: AgentConfig, mut stop: watch::Receiver<bool>) -> Result<(), AgentError> {
    let buffer = DiskBuffer::open(&config.buffer_dir, config.buffer_max_bytes).map_err(|e| {
        AgentError::Buffer {
            path: config.buffer_dir.clone(),
            source: e,
        }
    })?;
    let mut host =
        host::HostCollector::new(config.host.clone(), &config.tags).map_err(AgentError::Setup)?;
    // CPU usage is the difference between two readings: let the first one age.
    tokio::time::sleep(sysinfo::MINIMUM_CPU_UPDATE_INTERVAL).await;
    let sender = Sender::new(&config, host.host())?;
    tracing::info!(host = host.host(), buffered = buffer.len(), "agent started");
    let buffer = Arc::new(Mutex::new(buffer));
    let stats = Arc::new(Mutex::new(Stats::default()));
    let wake = Arc::new(Notify::new());
    let (sender_stop, sender_stopped) = watch::channel(false);
    let delivery = tokio::spawn(deliver(
        sender,
        Arc::clone(&buffer),
        Arc::clone(&stats),
        Arc::clone(&wake),
        config.batch_max_bytes,
        sender_stopped,
    ));
    let local_timeout = config.timeout.min(config.interval);
    let scraper = reqwest::Client::builder()
        .no_proxy()
        .build()
        .map_err(|e| AgentError::Setup(e.to_string()))?;

    let mut ticks = tokio::time::interval(config.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    loop {
        tokio::select! {
            _ = ticks.tick() => {}
            _ = stop.changed() => break,
        }
        let now = now_ns();
        let mut points = host.collect(now);
        for url in &config.scrape {
            points.extend(
                scrape_local(&scraper, local_timeout, url, host.host(), &config.tags, now).await,
            );
        }
        stats.lock().collections += 1;
        // File work (fsync) off the runtime's threads, the lock held only there.
        let (b, st, name) = (
            Arc::clone(&buffer),
            Arc::clone(&stats),
            host.host().to_string(),
        );
        let appended = tokio::task::spawn_blocking(move || {
            points.push(self_point(&b, &st, &name, now));
            let mut text = String::with_capacity(points.len() * 96);
            for p in &points {
                crate::lp::write_line(&mut text, p);
            }
            b.lock().append(text.as_bytes())
        })
        .await
        .map_err(|e| std::io::Error::other(e.to_string()))
        .and_then(|r| r);
        if let Err(e) = appended {
            tracing::error!(error = %e, "could not write to the agent buffer; this collection is lost");
        }
        wake.notify_one();
    }
    // Deliver what is left, within the timeout.
    let _ = sender_stop.send(true);
    wake.notify_one();
    match tokio::time::timeout(config.timeout, delivery).await {
        Ok(_) => {}
        Err(_) => tracing::warn!("stopping with undelivered batches; they stay buffered"),
    }
    let left = buffer.lock().len();
    tracing::info!(left, "agent stopped");
    Ok(())
}

fn now_ns() -> i64 {
    use strata_catalog::clock::Clock;
    strata_catalog::clock::SystemClock.now_ns()
}

fn self_point(buffer: &Mutex<DiskBuffer>, stats: &Mutex<Stats>, host: &str, time: i64) -> Point {
    let b = buffer.lock();
    let s = stats.lock();
    let u = |k: &str, v: u64| {
        (
            k.into(),
            FieldValue::I64(i64::try_from(v).unwrap_or(i64::MAX)),
        )
    };
    Point {
        table: "strata_agent".into(),
        tags: vec![("host".into(), host.into())].into(),
        fields: vec![
            u("collections", s.collections),
            u("buffered_batches", b.len() as u64),
            u("buffered_bytes", b.bytes()),
            u("sent_batches", s.sent_batches),
            u("dropped_batches", b.dropped_batches),
            u("rejected_lines", s.rejected_lines),
            u("send_failures", s.send_failures),
        ],
        time,
        line: 0,
    }
}

/// Samples of a local endpoint, with `host` and the agent's tags (the endpoint's own
/// labels win); an unreachable endpoint is logged and skipped.
/// Largest local page read.
const LOCAL_PAGE_LIMIT: usize = 64 << 20;

async fn scrape_local(
    client: &reqwest::Client,
    timeout: Duration,
    url: &str,
    host: &str,
    tags: &BTreeMap<String, String>,
    now: i64,
) -> Vec<Point> {
    let (body, content_type) =
        match crate::scrape::fetch_page(client, url, timeout, LOCAL_PAGE_LIMIT).await {
            Ok(x) => x,
            Err(e) => {
                tracing::warn!(url, error = %e, "local scrape failed");
                return vec![];
            }
        };
    let Ok(text) = String::from_utf8(body) else {
        tracing::warn!(url, "local scrape: the page is not UTF-8");
        return vec![];
    };
    let dialect = Dialect::from_content_type(&content_type);
    let mut page = exposition::parse(&text, dialect, now, true);
    if let Some(e) = page.errors.first() {
        tracing::warn!(url, errors = page.errors.len(), first = %e.error_message, "local scrape had bad lines");
    }
    for p in &mut page.points {
        let mut all = p.tags.to_vec();
        for (k, v) in std::iter::once(("host", host))
            .chain(tags.iter().map(|(k, v)| (k.as_str(), v.as_str())))
        {
            if !all.iter().any(|(n, _)| &**n == k) {
                all.push((k.into(), v.into()));
            }
        }
        p.tags = all.into();
    }
    page.points
}

/// Sends the buffer's batches, oldest first, until told to stop (then drains what it
/// can). Failures back off from 1 s to 30 s.
async fn deliver(
    sender: Sender,
    buffer: Arc<Mutex<DiskBuffer>>,
    stats: Arc<Mutex<Stats>>,
    wake: Arc<Notify>,
    batch_max_bytes: u64,
    stop: watch::Receiver<bool>,
) {
    let mut backoff = Duration::from_secs(1);
    // Lowered while the receiver refuses deliveries as too large.
    let mut limit = batch_max_bytes;
    loop {
        let b = Arc::clone(&buffer);
        let Ok((batches, data)) = tokio::task::spawn_blocking(move || b.lock().peek(limit)).await
        else {
            return;
        };
        if batches.is_empty() {
            if *stop.borrow() {
                return;
            }
            wake.notified().await;
            continue;
        }
        let size = data.len() as u64;
        match sender.send(data).await {
            Delivery::Done { rejected } => {
                let b = Arc::clone(&buffer);
                let sent = batches.len() as u64;
                let _ = tokio::task::spawn_blocking(move || b.lock().remove(&batches)).await;
                let mut s = stats.lock();
                s.sent_batches += sent;
                s.rejected_lines += rejected;
                backoff = Duration::from_secs(1);
                limit = batch_max_bytes;
            }
            Delivery::TooLarge(why) if batches.len() > 1 => {
                limit = (size / 2).max(1);
                tracing::warn!(error = %why, limit, "delivery too large; sending fewer batches at once");
            }
            Delivery::TooLarge(why) => {
                tracing::error!(error = %why, bytes = size, "a batch is too large to deliver at all; dropped");
                let b = Arc::clone(&buffer);
                let _ = tokio::task::spawn_blocking(move || {
                    let mut b = b.lock();
                    b.remove(&batches);
                    b.dropped_batches += 1;
                    b.dropped_bytes += size;
                })
                .await;
            }
            Delivery::Retry(why) => {
                stats.lock().send_failures += 1;
                tracing::warn!(error = %why, retry_in = ?backoff, "delivery failed; kept in the buffer");
                if *stop.borrow() {
                    return;
                }
                // A new collection also retries: at most one attempt per interval
                // once the backoff is longer.
                tokio::select! {
                    () = tokio::time::sleep(backoff) => {}
                    () = wake.notified() => {}
                }
                backoff = (backoff * 2).min(Duration::from_secs(30));
            }
        }
    }
}
