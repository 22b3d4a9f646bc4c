//! Configuration: flags > `STRATA_*` environment variables > TOML file > defaults.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::{Args, Parser, Subcommand};
use serde::Deserialize;

#[derive(Debug, Parser)]
#[command(
    name = "strata",
    version,
    about = "Metrics monitoring and alerting on Arrow, Parquet and DataFusion"
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server: ingest, storage and queries.
    Serve(Box<ServeArgs>),
    /// Alerting from the command line, against a running server: backtest a rule, send a
    /// test notification.
    Alert(crate::cli::AlertArgs),
    /// Push this host's metrics (and local /metrics endpoints) to a server or Kafka,
    /// buffering on disk while they are unreachable.
    Agent(Box<crate::cli::AgentArgs>),
}

#[derive(Debug, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "STRATA_CONFIG")]
    pub config: Option<PathBuf>,
    /// Where WAL, catalog and Parquet files live [default: ./strata-data].
    #[arg(long, env = "STRATA_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// HTTP API address; port 0 picks a free port [default: 127.0.0.1:7070].
    #[arg(long, env = "STRATA_HTTP_ADDR")]
    pub http_addr: Option<SocketAddr>,
    /// Arrow Flight SQL address [default: 127.0.0.1:7071].
    #[arg(long, env = "STRATA_FLIGHT_ADDR")]
    pub flight_addr: Option<SocketAddr>,
    /// PostgreSQL wire address [default: 127.0.0.1:7072].
    #[arg(long, env = "STRATA_PG_ADDR")]
    pub pg_addr: Option<SocketAddr>,
    /// Hot-table memory budget, e.g. `2GiB` [default: 2GiB].
    #[arg(long, env = "STRATA_MEMORY_BUDGET")]
    pub memory_budget: Option<String>,
    /// Age after which hot chunks are persisted, e.g. `10m` [default: 10m].
    #[arg(long, env = "STRATA_PERSIST_AGE")]
    pub persist_age: Option<String>,
    /// Event-time span of a hot chunk, e.g. `10m` [default: 10m].
    #[arg(long, env = "STRATA_CHUNK_DURATION")]
    pub chunk_duration: Option<String>,
    /// Largest accepted HTTP request body, e.g. `64MiB` [default: 64MiB].
    #[arg(long, env = "STRATA_MAX_BODY_SIZE")]
    pub max_body_size: Option<String>,
    /// Memory all running queries may use together, e.g. `4GiB` [default: 4GiB].
    #[arg(long, env = "STRATA_QUERY_MEMORY_LIMIT")]
    pub query_memory_limit: Option<String>,
    /// Longest a query may run, e.g. `5m` [default: 5m].
    #[arg(long, env = "STRATA_QUERY_TIMEOUT")]
    pub query_timeout: Option<String>,
    /// Kafka brokers to consume from, `host:port[,…]`; without it nothing Kafka-related
    /// starts.
    #[arg(long, env = "STRATA_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// Topics to consume, comma-separated (they replace `[[kafka.topics]]` of the file).
    #[arg(long, env = "STRATA_KAFKA_TOPICS", value_delimiter = ',')]
    pub kafka_topics: Vec<String>,
    /// Consumer group [default: strata].
    #[arg(long, env = "STRATA_KAFKA_GROUP")]
    pub kafka_group: Option<String>,
    /// Message format of the `--kafka-topics`: `json` or `line_protocol` [default: json].
    #[arg(long, env = "STRATA_KAFKA_FORMAT")]
    pub kafka_format: Option<String>,
    /// Database the `--kafka-topics` write to [default: metrics].
    #[arg(long, env = "STRATA_KAFKA_DATABASE")]
    pub kafka_database: Option<String>,
    /// Topic that receives bad messages, with the error in the `strata-error` header.
    #[arg(long, env = "STRATA_KAFKA_DEAD_LETTER_TOPIC")]
    pub kafka_dead_letter_topic: Option<String>,
    /// A librdkafka property, `key=value` (SASL, TLS, timeouts); repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
}

/// The TOML file. Every key is optional; unknown keys are an error.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    pub data_dir: Option<PathBuf>,
    pub http_addr: Option<SocketAddr>,
    pub flight_addr: Option<SocketAddr>,
    pub pg_addr: Option<SocketAddr>,
    #[serde(default)]
    pub storage: StorageFile,
    #[serde(default)]
    pub http: HttpFile,
    #[serde(default)]
    pub query: QueryFile,
    pub kafka: Option<KafkaFile>,
    /// `[alerting]`: receivers, routes, inhibition, escalations and config-owned rules.
    #[serde(default)]
    pub alerting: strata_alerting::config::AlertingConfig,
    /// `[[scrape]]`: Prometheus-style scrape jobs.
    #[serde(default)]
    pub scrape: Vec<strata_ingest::scrape::ScrapeJobConfig>,
    /// `[cold_store]`: where the cold tier (1-hour rollups) lives.
    #[serde(default)]
    pub cold_store: ColdStoreFile,
    /// `[databases.<name>]`: per-database settings (retention per tier).
    #[serde(default)]
    pub databases: std::collections::BTreeMap<String, DatabaseFile>,
}

/// `[cold_store]`: `type = "local"` (a directory, `cold/` under the data directory by
/// default) or `type = "s3"` (any S3-API service).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ColdStoreFile {
    #[serde(rename = "type")]
    pub kind: Option<String>,
    /// `local`: the directory.
    pub path: Option<PathBuf>,
    /// `s3`: the service URL (`http://127.0.0.1:9000`); AWS when unset.
    pub endpoint: Option<String>,
    pub region: Option<String>,
    pub bucket: Option<String>,
    /// Objects go under this prefix of the bucket.
    pub prefix: Option<String>,
    /// Credentials; the `AWS_*` environment variables are used when unset.
    pub access_key_id: Option<String>,
    pub secret_access_key: Option<String>,
    /// Allow a plain-HTTP endpoint (default false).
    pub allow_http: Option<bool>,
    /// Virtual-hosted-style requests (`bucket.host`); default false: path style.
    pub virtual_hosted_style: Option<bool>,
    /// Retries of a failed request, with exponential backoff (default 10).
    pub max_retries: Option<usize>,
    /// Longest a request is retried (default 3m).
    pub retry_timeout: Option<String>,
}

/// `[databases.<name>]`: retention of this database's tiers, applied at start (a run-time
/// `ALTER DATABASE … SET RETENTION` lasts until the next start).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DatabaseFile {
    pub hot_retention: Option<String>,
    pub warm_retention: Option<String>,
    pub cold_retention: Option<String>,
}

/// `[kafka]`: the consumer. Topics are `[[kafka.topics]]` tables.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaFile {
    pub brokers: Option<String>,
    pub group: Option<String>,
    pub dead_letter_topic: Option<String>,
    #[serde(default)]
    pub topics: Vec<KafkaTopicFile>,
    /// librdkafka properties, passed through.
    #[serde(default)]
    pub properties: std::collections::BTreeMap<String, String>,
    pub max_batch_points: Option<usize>,
    pub max_batch_size: Option<String>,
    pub max_batch_delay: Option<String>,
    pub max_message_size: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaTopicFile {
    pub name: String,
    pub database: Option<String>,
    pub format: Option<String>,
    pub precision: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueryFile {
    pub memory_limit: Option<String>,
    pub timeout: Option<String>,
    pub threads: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StorageFile {
    pub memory_budget: Option<String>,
    pub persist_age: Option<String>,
    pub chunk_duration: Option<String>,
    pub wal_segment_size: Option<String>,
    pub wal_max_batch_delay: Option<String>,
    pub hot_retention: Option<String>,
    /// Retention of the warm tier (1-minute rollups).
    pub warm_retention: Option<String>,
    /// Retention of the cold tier (1-hour rollups).
    pub cold_retention: Option<String>,
    /// How long a file leaving by retention stays in its store for running queries.
    pub retention_grace: Option<String>,
    /// How often rollups and retention run.
    pub rollup_interval: Option<String>,
    /// How long after a window ends it is rolled up and compacted (late points after
    /// that mark its buckets dirty).
    pub rollup_settle: Option<String>,
    pub max_columns_per_table: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    pub max_body_size: Option<String>,
    pub max_lines_per_request: Option<usize>,
}

/// Retention per tier of one database (`None`: the server's).
pub type RetentionChanges = Vec<(strata_catalog::Tier, Option<Duration>)>;

/// The resolved settings.
#[derive(Debug, Clone)]
pub struct Settings {
    pub http_addr: SocketAddr,
    pub flight_addr: SocketAddr,
    pub pg_addr: SocketAddr,
    pub engine: strata_engine::EngineConfig,
    pub ingest: strata_ingest::http::IngestConfig,
    pub query: strata_sql::QueryConfig,
    /// Set only when brokers are given.
    pub kafka: Option<strata_ingest::kafka::KafkaConfig>,
    pub alerting: strata_alerting::config::AlertingConfig,
    /// Scrape jobs; target files are relative to the config file's folder.
    pub scrape: Vec<strata_ingest::scrape::ScrapeJobConfig>,
    /// Per-database retention from the config file.
    pub retention: Vec<(String, RetentionChanges)>,
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("could not read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path} is invalid: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("setting `{key}`: {reason}")]
    Value { key: &'static str, reason: String },
}

impl Settings {
    pub fn resolve(args: &ServeArgs) -> Result<Self, ConfigError> {
        let file = match &args.config {
            Some(p) => load_file(p)?,
            None => FileConfig::default(),
        };
        let mut engine = strata_engine::EngineConfig::default();
        let mut ingest = strata_ingest::http::IngestConfig::default();
        engine.data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or_else(|| PathBuf::from("strata-data"));
        let s = &file.storage;
        if let Some(v) = args.memory_budget.as_ref().or(s.memory_budget.as_ref()) {
            engine.memory_budget_bytes = size("memory_budget", v)? as usize;
        }
        if let Some(v) = args.persist_age.as_ref().or(s.persist_age.as_ref()) {
            engine.persist_age = duration("persist_age", v)?;
        }
        if let Some(v) = args.chunk_duration.as_ref().or(s.chunk_duration.as_ref()) {
            engine.chunk_duration = duration("chunk_duration", v)?;
            if engine.chunk_duration.is_zero()
                || !engine.chunk_duration.as_secs().is_multiple_of(60)
            {
                return Err(ConfigError::Value {
                    key: "chunk_duration",
                    reason: "must be a whole, positive number of minutes".into(),
                });
            }
        }
        if let Some(v) = &s.wal_segment_size {
            engine.wal_segment_bytes = size("wal_segment_size", v)?;
        }
        if let Some(v) = &s.wal_max_batch_delay {
            engine.wal_max_batch_delay = duration("wal_max_batch_delay", v)?;
        }
        for (key, value, slot) in [
            ("hot_retention", &s.hot_retention, &mut engine.hot_retention),
            (
                "warm_retention",
                &s.warm_retention,
                &mut engine.warm_retention,
            ),
            (
                "cold_retention",
                &s.cold_retention,
                &mut engine.cold_retention,
            ),
            (
                "rollup_interval",
                &s.rollup_interval,
                &mut engine.rollup_interval,
            ),
        ] {
            if let Some(v) = value {
                *slot = duration(key, v)?;
                if slot.is_zero() {
                    return Err(ConfigError::Value {
                        key,
                        reason: "must be positive".into(),
                    });
                }
            }
        }
        if let Some(v) = &s.retention_grace {
            engine.retention_grace = duration("retention_grace", v)?;
        }
        if let Some(v) = &s.rollup_settle {
            engine.rollup_settle = duration("rollup_settle", v)?;
        }
        if let Some(v) = s.max_columns_per_table {
            engine.max_columns_per_table = v;
        }
        if let Some(v) = args
            .max_body_size
            .as_ref()
            .or(file.http.max_body_size.as_ref())
        {
            ingest.max_body_bytes = size("max_body_size", v)? as usize;
        }
        if let Some(v) = file.http.max_lines_per_request {
            ingest.max_lines_per_request = v;
        }
        engine.cold_store = cold_store(&file.cold_store)?;
        let mut retention = Vec::new();
        for (db, d) in &file.databases {
            strata_engine::check_database_name(db).map_err(|e| ConfigError::Value {
                key: "databases",
                reason: e.to_string(),
            })?;
            let mut changes = Vec::new();
            for (tier, key, v) in [
                (strata_catalog::Tier::Hot, "hot_retention", &d.hot_retention),
                (
                    strata_catalog::Tier::Warm,
                    "warm_retention",
                    &d.warm_retention,
                ),
                (
                    strata_catalog::Tier::Cold,
                    "cold_retention",
                    &d.cold_retention,
                ),
            ] {
                if let Some(v) = v {
                    let r = duration(key, v)?;
                    if r.is_zero() {
                        return Err(ConfigError::Value {
                            key,
                            reason: format!("database `{db}`: must be positive"),
                        });
                    }
                    changes.push((tier, Some(r)));
                }
            }
            retention.push((db.clone(), changes));
        }
        let mut query = strata_sql::QueryConfig::default();
        if let Some(v) = args
            .query_memory_limit
            .as_ref()
            .or(file.query.memory_limit.as_ref())
        {
            query.memory_limit_bytes = size("query.memory_limit", v)? as usize;
        }
        if let Some(v) = args.query_timeout.as_ref().or(file.query.timeout.as_ref()) {
            query.timeout = duration("query.timeout", v)?;
        }
        if let Some(v) = file.query.threads {
            query.threads = v;
        }
        let addr = |flag: Option<SocketAddr>, file: Option<SocketAddr>, port: u16| {
            flag.or(file)
                .unwrap_or_else(|| SocketAddr::from(([127, 0, 0, 1], port)))
        };
        let kafka = kafka(args, file.kafka.as_ref(), &ingest)?;
        let mut scrape = file.scrape;
        if let Some(dir) = args.config.as_deref().and_then(Path::parent) {
            for path in scrape.iter_mut().flat_map(|j| j.files.iter_mut()) {
                *path = dir.join(&*path);
            }
        }
        Ok(Self {
            http_addr: addr(args.http_addr, file.http_addr, 7070),
            flight_addr: addr(args.flight_addr, file.flight_addr, 7071),
            pg_addr: addr(args.pg_addr, file.pg_addr, 7072),
            engine,
            ingest,
            query,
            kafka,
            alerting: file.alerting,
            scrape,
            retention,
        })
    }
}

fn kafka(
    args: &ServeArgs,
    file: Option<&KafkaFile>,
    ingest: &strata_ingest::http::IngestConfig,
) -> Result<Option<strata_ingest::kafka::KafkaConfig>, ConfigError> {
    use strata_ingest::format::Format;
    use strata_ingest::kafka::{KafkaConfig, TopicConfig};
    use strata_ingest::lp::Precision;

    let empty = KafkaFile::default();
    let f = file.unwrap_or(&empty);
    let Some(brokers) = args.kafka_brokers.clone().or_else(|| f.brokers.clone()) else {
        return Ok(None);
    };
    let group = args
        .kafka_group
        .clone()
        .or_else(|| f.group.clone())
        .unwrap_or_else(|| "strata".into());
    let mut c = KafkaConfig::new(brokers, group);
    c.max_message_bytes = ingest.max_body_bytes;
    c.max_points_per_message = ingest.max_lines_per_request;
    let format = |key: &'static str, s: &str| {
        Format::parse(s).ok_or_else(|| ConfigError::Value {
            key,
            reason: format!(
                "unknown format `{s}` (use {})",
                strata_ingest::format::FORMAT_NAMES
            ),
        })
    };
    let precision = |s: &str| {
        Precision::parse(s).ok_or_else(|| ConfigError::Value {
            key: "kafka.topics.precision",
            reason: format!("unknown precision `{s}` (use auto, ns, us, ms or s)"),
        })
    };
    if args.kafka_topics.is_empty() {
        for t in &f.topics {
            c.topics.push(TopicConfig {
                name: t.name.clone(),
                database: t.database.clone().unwrap_or_else(|| "metrics".into()),
                format: format("kafka.topics.format", t.format.as_deref().unwrap_or("json"))?,
                precision: precision(t.precision.as_deref().unwrap_or("auto"))?,
            });
        }
    } else {
        let fmt = format(
            "kafka_format",
            args.kafka_format.as_deref().unwrap_or("json"),
        )?;
        let db = args
            .kafka_database
            .clone()
            .unwrap_or_else(|| "metrics".into());
        for name in args.kafka_topics.iter().filter(|t| !t.trim().is_empty()) {
            c.topics.push(TopicConfig {
                name: name.trim().to_string(),
                database: db.clone(),
                format: fmt,
                precision: Precision::Auto,
            });
        }
    }
    c.dead_letter_topic = args
        .kafka_dead_letter_topic
        .clone()
        .or_else(|| f.dead_letter_topic.clone());
    c.properties = f.properties.clone();
    for kv in &args.kafka_properties {
        let Some((k, v)) = kv.split_once('=') else {
            return Err(ConfigError::Value {
                key: "kafka_property",
                reason: format!("`{kv}` is not KEY=VALUE"),
            });
        };
        c.properties
            .insert(k.trim().to_string(), v.trim().to_string());
    }
    if let Some(v) = f.max_batch_points {
        c.max_batch_points = v;
    }
    if let Some(v) = &f.max_batch_size {
        c.max_batch_bytes = size("kafka.max_batch_size", v)? as usize;
    }
    if let Some(v) = &f.max_batch_delay {
        c.max_batch_delay = duration("kafka.max_batch_delay", v)?;
    }
    if let Some(v) = &f.max_message_size {
        c.max_message_bytes = size("kafka.max_message_size", v)? as usize;
    }
    Ok(Some(c))
}

fn load_file(path: &Path) -> Result<FileConfig, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    toml::from_str(&text).map_err(|source| ConfigError::Parse {
        path: path.to_path_buf(),
        source,
    })
}

/// Parses `512`, `64KiB`, `10MB`, `2GiB` (binary and decimal units).
pub fn size(key: &'static str, s: &str) -> Result<u64, ConfigError> {
    let t = s.trim();
    let split = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (num, unit) = t.split_at(split);
    let n: u64 = num.parse().map_err(|_| ConfigError::Value {
        key,
        reason: format!("`{s}` is not a size like 512MiB"),
    })?;
    let mult: u64 = match unit.trim().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kb" => 1_000,
        "kib" | "k" => 1 << 10,
        "mb" => 1_000_000,
        "mib" | "m" => 1 << 20,
        "gb" => 1_000_000_000,
        "gib" | "g" => 1 << 30,
        other => {
            return Err(ConfigError::Value {
                key,
                reason: format!(
                    "unknown size unit `{other}` in `{s}` (use B, KiB, MiB, GiB, KB, MB, GB)"
                ),
            });
        }
    };
    n.checked_mul(mult).ok_or_else(|| ConfigError::Value {
        key,
        reason: format!("`{s}` is too large"),
    })
}

/// The cold tier's store from `[cold_store]` (`None`: the default local directory).
fn cold_store(
    c: &ColdStoreFile,
) -> Result<Option<std::sync::Arc<dyn object_store::ObjectStore>>, ConfigError> {
    use object_store::aws::AmazonS3Builder;
    use std::sync::Arc;
    let bad = |key: &'static str, reason: String| ConfigError::Value { key, reason };
    match c.kind.as_deref().unwrap_or("local") {
        "local" => {
            let Some(path) = &c.path else {
                return Ok(None);
            };
            std::fs::create_dir_all(path)
                .map_err(|e| bad("cold_store.path", format!("{}: {e}", path.display())))?;
            let fs = object_store::local::LocalFileSystem::new_with_prefix(path)
                .map_err(|e| bad("cold_store.path", e.to_string()))?;
            Ok(Some(Arc::new(fs)))
        }
        "s3" => {
            let bucket = c.bucket.as_deref().ok_or_else(|| {
                bad(
                    "cold_store.bucket",
                    "an s3 cold store needs a bucket".into(),
                )
            })?;
            let mut b = AmazonS3Builder::from_env()
                .with_bucket_name(bucket)
                .with_region(c.region.as_deref().unwrap_or("us-east-1"))
                .with_allow_http(c.allow_http.unwrap_or(false))
                .with_virtual_hosted_style_request(c.virtual_hosted_style.unwrap_or(false));
            if let Some(e) = &c.endpoint {
                b = b.with_endpoint(e);
            }
            match (&c.access_key_id, &c.secret_access_key) {
                (Some(k), Some(s)) => b = b.with_access_key_id(k).with_secret_access_key(s),
                (None, None) => {}
                _ => {
                    return Err(bad(
                        "cold_store.access_key_id",
                        "give both access_key_id and secret_access_key, or neither".into(),
                    ));
                }
            }
            let mut retry = object_store::RetryConfig::default();
            if let Some(n) = c.max_retries {
                retry.max_retries = n;
            }
            if let Some(t) = &c.retry_timeout {
                retry.retry_timeout = duration("cold_store.retry_timeout", t)?;
            }
            let s3 = b
                .with_retry(retry)
                .build()
                .map_err(|e| bad("cold_store", e.to_string()))?;
            Ok(Some(match &c.prefix {
                Some(p) => Arc::new(object_store::prefix::PrefixStore::new(s3, p.as_str())),
                None => Arc::new(s3),
            }))
        }
        other => Err(bad(
            "cold_store.type",
            format!("`{other}` is not a store type (local or s3)"),
        )),
    }
}

/// Parses `500ms`, `30s`, `10m`, `2h`, `7d`.
pub fn duration(key: &'static str, s: &str) -> Result<Duration, ConfigError> {
    strata_catalog::units::parse_duration(s).map_err(|reason| ConfigError::Value { key, reason })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_and_durations() {
        assert_eq!(size("k", "2GiB").expect("size"), 2 << 30);
        assert_eq!(size("k", "10MB").expect("size"), 10_000_000);
        assert!(size("k", "10 parsecs").is_err());
        assert_eq!(duration("k", "10m").expect("d"), Duration::from_secs(600));
        assert_eq!(
            duration("k", "250ms").expect("d"),
            Duration::from_millis(250)
        );
        assert!(duration("k", "3 fortnights").is_err());
    }

    #[test]
    fn cold_store_and_database_retention() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.toml");
        let resolve = |text: &str| {
            std::fs::write(&path, text).expect("write");
            Settings::resolve(&ServeArgs {
                config: Some(path.clone()),
                ..Default::default()
            })
        };
        let s = resolve(
            "[storage]\nwarm_retention = \"40d\"\n\
             [cold_store]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\n\
             access_key_id = \"k\"\nsecret_access_key = \"s\"\nallow_http = true\n\
             [databases.fleet]\nhot_retention = \"3d\"\ncold_retention = \"2y\"\n",
        );
        // `2y` is not a duration: the error names the key.
        let err = s.expect_err("bad duration").to_string();
        assert!(err.contains("cold_retention"), "{err}");
        let s = resolve(
            "[storage]\nwarm_retention = \"40d\"\n\
             [cold_store]\ntype = \"s3\"\nendpoint = \"http://127.0.0.1:9\"\nbucket = \"b\"\n\
             access_key_id = \"k\"\nsecret_access_key = \"s\"\nallow_http = true\n\
             [databases.fleet]\nhot_retention = \"3d\"\ncold_retention = \"730d\"\n",
        )
        .expect("resolve");
        assert!(s.engine.cold_store.is_some());
        assert_eq!(s.engine.warm_retention, Duration::from_secs(40 * 86400));
        assert_eq!(s.retention.len(), 1);
        assert_eq!(s.retention[0].0, "fleet");
        assert_eq!(s.retention[0].1.len(), 2);
        for (text, key) in [
            ("[cold_store]\ntype = \"ftp\"\n", "cold_store.type"),
            ("[cold_store]\ntype = \"s3\"\n", "cold_store.bucket"),
            (
                "[cold_store]\ntype = \"s3\"\nbucket = \"b\"\naccess_key_id = \"k\"\n",
                "cold_store.access_key_id",
            ),
            ("[storage]\nchunk_duration = \"90s\"\n", "chunk_duration"),
        ] {
            let err = resolve(text).expect_err(text).to_string();
            assert!(err.contains(key), "{text}: {err}");
        }
    }

    #[test]
    fn precedence_flag_over_file_over_default() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("s.toml");
        std::fs::write(
            &path,
            "data_dir = \"/from/file\"\nhttp_addr = \"127.0.0.1:9000\"\n[storage]\npersist_age = \"1m\"\n",
        )
        .expect("write");
        let args = ServeArgs {
            config: Some(path.clone()),
            data_dir: Some(PathBuf::from("/from/flag")),
            ..Default::default()
        };
        let s = Settings::resolve(&args).expect("resolve");
        assert_eq!(s.engine.data_dir, PathBuf::from("/from/flag"));
        assert_eq!(s.http_addr.port(), 9000);
        assert_eq!(s.flight_addr.port(), 7071);
        assert_eq!(s.engine.persist_age, Duration::from_secs(60));

        assert!(s.kafka.is_none(), "no brokers, no Kafka");

        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"127.0.0.1:9\"\ndead_letter_topic = \"dlq\"\n\
             [kafka.properties]\n\"session.timeout.ms\" = \"6000\"\n\
             [[kafka.topics]]\nname = \"cpu\"\ndatabase = \"fleet\"\nformat = \"line_protocol\"\n",
        )
        .expect("write");
        let k = Settings::resolve(&args)
            .expect("resolve")
            .kafka
            .expect("kafka");
        assert_eq!(k.group, "strata");
        assert_eq!(k.topics[0].database, "fleet");
        assert_eq!(k.topics[0].format.name(), "line_protocol");
        assert_eq!(k.properties["session.timeout.ms"], "6000");
        let flags = ServeArgs {
            config: Some(path.clone()),
            kafka_topics: vec!["a".into(), "b".into()],
            kafka_properties: vec!["fetch.wait.max.ms=50".into()],
            ..Default::default()
        };
        let k = Settings::resolve(&flags)
            .expect("resolve")
            .kafka
            .expect("kafka");
        assert_eq!(k.topics.len(), 2);
        assert_eq!(k.topics[1].database, "metrics");
        assert_eq!(k.properties["fetch.wait.max.ms"], "50");
        std::fs::write(
            &path,
            "[kafka]\nbrokers = \"x:1\"\n[[kafka.topics]]\nname = \"t\"\nformat = \"xml\"\n",
        )
        .expect("write");
        let err = Settings::resolve(&args)
            .expect_err("bad format")
            .to_string();
        assert!(err.contains("xml"), "{err}");

        std::fs::write(&path, "no_such_key = 1\n").expect("write");
        let err = Settings::resolve(&args).expect_err("unknown key");
        assert!(err.to_string().contains("no_such_key"), "{err}");
    }
}
