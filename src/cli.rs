//! `strata alert …`: client commands that talk to a running server's HTTP API.

use std::time::Duration;

use clap::{Args, Subcommand};
use serde_json::Value;

#[derive(Debug, Args)]
pub struct AlertArgs {
    /// The server's HTTP API.
    #[arg(
        long,
        env = "STRATA_SERVER",
        default_value = "http://127.0.0.1:7070",
        global = true
    )]
    pub server: String,
    #[command(subcommand)]
    pub command: AlertCommand,
}

#[derive(Debug, Subcommand)]
pub enum AlertCommand {
    /// Evaluate a stored rule over past data: when it would have fired and resolved, and
    /// which notifications it would have sent (nothing is sent).
    Backtest {
        /// The rule's name (see SHOW ALERTS).
        rule: String,
        /// Start: RFC 3339 or relative (now-7d).
        #[arg(long)]
        from: String,
        /// End [default: now].
        #[arg(long)]
        to: Option<String>,
        /// Evaluation interval [default: the rule's].
        #[arg(long)]
        every: Option<String>,
        /// Print the server's JSON report instead of a summary.
        #[arg(long)]
        json: bool,
    },
    /// Send a test notification through every channel of a receiver.
    Test {
        /// The receiver's name (from the `[alerting]` configuration).
        receiver: String,
    },
}

pub async fn alert(args: AlertArgs) -> Result<(), Box<dyn std::error::Error>> {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(3600))
        .build()?;
    let base = args.server.trim_end_matches('/');
    match args.command {
        AlertCommand::Backtest {
            rule,
            from,
            to,
            every,
            json,
        } => {
            let body = serde_json::json!({"from": from, "to": to, "every": every});
            let url = endpoint(base, &["api", "v1", "alert_rules", &rule, "backtest"])?;
            let report = call(client.post(&url).json(&body), &url).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&report)?);
            } else {
                print!("{}", backtest_text(&report));
            }
            Ok(())
        }
        AlertCommand::Test { receiver } => {
            let url = endpoint(base, &["api", "v1", "receivers", &receiver, "test"])?;
            let resp = client
                .post(&url)
                .send()
                .await
                .map_err(|e| unreachable(&url, &e))?;
            let status = resp.status();
            let body: Value = resp.json().await.unwrap_or(Value::Null);
            let Some(channels) = body.as_array() else {
                return Err(server_error(&url, status, &body).into());
            };
            let mut failed = 0;
            for c in channels {
                let name = c["channel"].as_str().unwrap_or("?");
                match c["error"].as_str() {
                    None => println!("{name}: sent"),
                    Some(e) => {
                        failed += 1;
                        println!("{name}: FAILED: {e}");
                    }
                }
            }
            if failed > 0 {
                return Err(format!("{failed} of {} channels failed", channels.len()).into());
            }
            Ok(())
        }
    }
}

/// `base` with `segments` appended, each percent-encoded (names may hold `/`, `?`, `#`).
fn endpoint(base: &str, segments: &[&str]) -> Result<String, String> {
    let mut url = reqwest::Url::parse(base).map_err(|e| format!("--server `{base}`: {e}"))?;
    url.path_segments_mut()
        .map_err(|()| format!("--server `{base}` cannot take a path"))?
        .pop_if_empty()
        .extend(segments);
    Ok(url.to_string())
}

async fn call(req: reqwest::RequestBuilder, url: &str) -> Result<Value, String> {
    let resp = req.send().await.map_err(|e| unreachable(url, &e))?;
    let status = resp.status();
    let body: Value = resp
        .json()
        .await
        .map_err(|e| format!("{url}: unreadable answer ({status}): {e}"))?;
    if !status.is_success() {
        return Err(server_error(url, status, &body));
    }
    Ok(body)
}

fn unreachable(url: &str, e: &reqwest::Error) -> String {
    format!("could not reach {url}: {e} (is `strata serve` running there? see --server)")
}

fn server_error(url: &str, status: reqwest::StatusCode, body: &Value) -> String {
    let msg = body["error"]
        .as_str()
        .map_or_else(|| body.to_string(), str::to_string);
    format!("{url}: {status}: {msg}")
}

/// The report as a person reads it: summary, firing episodes, notifications.
fn backtest_text(r: &Value) -> String {
    let mut out = format!(
        "{}: {}\n",
        r["rule"].as_str().unwrap_or("?"),
        r["summary"].as_str().unwrap_or("")
    );
    let labels = |v: &Value| {
        v.as_object()
            .map(|m| {
                m.iter()
                    .map(|(k, v)| format!("{k}={}", v.as_str().unwrap_or("")))
                    .collect::<Vec<_>>()
                    .join(", ")
            })
            .unwrap_or_default()
    };
    if let Some(eps) = r["episodes"].as_array().filter(|e| !e.is_empty()) {
        out.push_str("\nfiring:\n");
        for e in eps {
            out.push_str(&format!(
                "  {} → {}  {{{}}}\n",
                e["started_at"].as_str().unwrap_or("?"),
                e["ended_at"].as_str().unwrap_or("(still firing)"),
                labels(&e["labels"])
            ));
        }
    }
    if let Some(ns) = r["notifications"].as_array().filter(|n| !n.is_empty()) {
        out.push_str("\nnotifications:\n");
        for n in ns {
            out.push_str(&format!(
                "  {}  {}  {}\n",
                n["at"].as_str().unwrap_or("?"),
                n["receiver"].as_str().unwrap_or("?"),
                n["title"].as_str().unwrap_or("")
            ));
        }
    }
    out
}

/// `strata agent`: collect this host's metrics (and local `/metrics` endpoints) and push
/// them to a Strata server or a Kafka topic, buffering on disk while they are away.
#[derive(Debug, Args)]
pub struct AgentArgs {
    /// The server's HTTP API (ignored with --kafka-brokers).
    #[arg(long, env = "STRATA_SERVER", default_value = "http://127.0.0.1:7070")]
    pub server: String,
    /// Database the points go to (HTTP).
    #[arg(long, env = "STRATA_AGENT_DATABASE", default_value = "metrics")]
    pub database: String,
    /// Send to Kafka instead of HTTP: bootstrap servers.
    #[arg(long, env = "STRATA_AGENT_KAFKA_BROKERS")]
    pub kafka_brokers: Option<String>,
    /// The Kafka topic (line-protocol messages).
    #[arg(long, env = "STRATA_AGENT_KAFKA_TOPIC", default_value = "metrics")]
    pub kafka_topic: String,
    /// A librdkafka property, `key=value`; repeatable.
    #[arg(long = "kafka-property", value_name = "KEY=VALUE")]
    pub kafka_properties: Vec<String>,
    /// How often to collect.
    #[arg(long, env = "STRATA_AGENT_INTERVAL", default_value = "10s")]
    pub interval: String,
    /// A local Prometheus endpoint to scrape every interval; repeatable.
    #[arg(long = "scrape", value_name = "URL")]
    pub scrape: Vec<String>,
    /// The disk buffer's folder.
    #[arg(
        long,
        env = "STRATA_AGENT_BUFFER_DIR",
        default_value = "strata-agent-buffer"
    )]
    pub buffer_dir: std::path::PathBuf,
    /// The disk buffer's bound; past it the oldest batches are dropped (and counted).
    #[arg(long, env = "STRATA_AGENT_BUFFER_SIZE", default_value = "256MiB")]
    pub buffer_size: String,
    /// The `host` tag [default: this machine's host name].
    #[arg(long, env = "STRATA_AGENT_HOST")]
    pub host: Option<String>,
    /// An extra tag on every point, `key=value`; repeatable.
    #[arg(long = "tag", value_name = "KEY=VALUE")]
    pub tags: Vec<String>,
    /// Timeout of one delivery (and of local scrapes).
    #[arg(long, default_value = "10s")]
    pub timeout: String,
}

fn key_value(what: &str, kv: &str) -> Result<(String, String), String> {
    match kv.split_once('=') {
        Some((k, v)) if !k.is_empty() => Ok((k.to_string(), v.to_string())),
        _ => Err(format!("{what} `{kv}` is not key=value")),
    }
}

pub async fn agent(args: AgentArgs) -> Result<(), Box<dyn std::error::Error>> {
    use strata_ingest::agent::{AgentConfig, Destination};
    let destination = match args.kafka_brokers {
        Some(brokers) => Destination::Kafka {
            brokers,
            topic: args.kafka_topic,
            properties: args
                .kafka_properties
                .iter()
                .map(|kv| key_value("--kafka-property", kv))
                .collect::<Result<_, _>>()?,
        },
        None => Destination::Http {
            server: args.server,
            database: args.database,
        },
    };
    let mut config = AgentConfig::new(destination);
    config.interval = crate::config::duration("interval", &args.interval)?;
    if config.interval.is_zero() {
        return Err("--interval must be longer than zero".into());
    }
    config.timeout = crate::config::duration("timeout", &args.timeout)?;
    config.buffer_max_bytes = crate::config::size("buffer_size", &args.buffer_size)?;
    config.buffer_dir = args.buffer_dir;
    config.scrape = args.scrape;
    config.host = args.host;
    config.tags = args
        .tags
        .iter()
        .map(|kv| key_value("--tag", kv))
        .collect::<Result<_, _>>()?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        crate::shutdown_signal().await;
        let _ = stop.send(true);
    });
    strata_ingest::agent::run(config, stopped).await?;
    Ok(())
}
