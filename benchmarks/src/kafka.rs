//! A real Kafka-protocol broker for tests and benchmarks: `tansu` (installed by
//! `scripts/kafka.sh`, cached outside the clone), started on a free 127.0.0.1 port with
//! in-memory storage, plus the producer and admin helpers that talk to it with rdkafka.

use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::{BaseProducer, BaseRecord, Producer};

/// Where `scripts/kafka.sh` installs the broker, unless `STRATA_TANSU` names it.
pub fn tansu_path() -> PathBuf {
    if let Some(p) = std::env::var_os("STRATA_TANSU") {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME").unwrap_or_default();
    Path::new(&home).join(".cache/strata/tools/bin/tansu")
}

/// A running broker; killed when dropped.
pub struct Broker {
    child: Child,
    /// `127.0.0.1:port`, for `bootstrap.servers`.
    pub addr: String,
}

impl Broker {
    /// Starts a broker with in-memory storage; its output goes to `log`.
    pub fn start(log: &Path) -> std::io::Result<Self> {
        let tansu = tansu_path();
        if !tansu.exists() {
            return Err(std::io::Error::other(format!(
                "the Kafka broker is not installed at {} (run scripts/kafka.sh install, \
                 or scripts/test.sh, which does)",
                tansu.display()
            )));
        }
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let addr = format!("127.0.0.1:{port}");
        let url = format!("tcp://{addr}");
        let out = std::fs::File::create(log)?;
        let child = Command::new(&tansu)
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn")
            .stdout(Stdio::from(out.try_clone()?))
            .stderr(Stdio::from(out))
            .spawn()?;
        let mut broker = Self { child, addr };
        let deadline = Instant::now() + Duration::from_secs(30);
        while TcpStream::connect(&broker.addr).is_err() {
            if let Some(status) = broker.child.try_wait()? {
                return Err(std::io::Error::other(format!(
                    "the broker exited with {status}; see {}",
                    log.display()
                )));
            }
            if Instant::now() > deadline {
                return Err(std::io::Error::other("the broker did not start listening"));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        Ok(broker)
    }

    /// Creates topics (name, partitions) and waits until the broker confirms them.
    pub async fn create_topics(&self, topics: &[(&str, i32)]) -> Result<(), String> {
        let admin: AdminClient<DefaultClientContext> = ClientConfig::new()
            .set("bootstrap.servers", &self.addr)
            .create()
            .map_err(|e| e.to_string())?;
        let new: Vec<NewTopic<'_>> = topics
            .iter()
            .map(|(name, n)| NewTopic::new(name, *n, TopicReplication::Fixed(1)))
            .collect();
        let results = admin
            .create_topics(&new, &AdminOptions::new())
            .await
            .map_err(|e| e.to_string())?;
        for r in results {
            r.map_err(|(t, e)| format!("creating topic {t}: {e}"))?;
        }
        Ok(())
    }

    /// A producer that sends one record per batch (the broker skips the rest of a
    /// multi-record batch when a fetch starts inside it).
    pub fn producer(&self) -> Result<Producer1, String> {
        Self::producer_for(&self.addr)
    }

    /// [`Broker::producer`] for a broker at `addr`.
    pub fn producer_for(addr: &str) -> Result<Producer1, String> {
        let p: BaseProducer = ClientConfig::new()
            .set("bootstrap.servers", addr)
            .set("batch.num.messages", "1")
            .set("linger.ms", "0")
            .set("compression.type", "none")
            .create()
            .map_err(|e| e.to_string())?;
        Ok(Producer1 { p })
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A producer sending one record per request batch.
pub struct Producer1 {
    p: BaseProducer,
}

impl Producer1 {
    /// Queues one message for `partition`, waiting while the local queue is full.
    pub fn send(&self, topic: &str, partition: i32, payload: &[u8]) -> Result<(), String> {
        let mut record: BaseRecord<'_, [u8], [u8]> =
            BaseRecord::to(topic).partition(partition).payload(payload);
        loop {
            match self.p.send(record) {
                Ok(()) => return Ok(()),
                Err((
                    rdkafka::error::KafkaError::MessageProduction(
                        rdkafka::types::RDKafkaErrorCode::QueueFull,
                    ),
                    r,
                )) => {
                    record = r;
                    self.p.poll(Duration::from_millis(10));
                }
                Err((e, _)) => return Err(e.to_string()),
            }
        }
    }

    /// Waits until every queued message is acknowledged by the broker.
    pub fn flush(&self) -> Result<(), String> {
        self.p
            .flush(Duration::from_secs(60))
            .map_err(|e| e.to_string())
    }
}
