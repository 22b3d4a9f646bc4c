//! Kafka ingestion end to end: a real Kafka-protocol broker (tansu), real rdkafka
//! producers, the real `strata` binary consuming in a group. Exact counts and sums after
//! dead letters, `kill -9` and group membership changes.

use std::path::Path;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::topic_partition_list::{Offset, TopicPartitionList};
use serde_json::Value;
use strata_benchmarks::kafka::{Broker, Producer1};

use super::server::{Server, f64_of, i64_of, poll_until};

const PARTITIONS: i32 = 6;
/// Points per JSON message.
const PER_MESSAGE: i64 = 100;

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_millis() as i64
}

fn broker(dir: &Path) -> Broker {
    Broker::start(&dir.join("broker.log")).unwrap_or_else(|e| panic!("{e}"))
}

/// A config file for one Strata group member.
fn config(dir: &Path, name: &str, broker: &Broker, group: &str, topics: &str) -> String {
    let path = dir.join(format!("{name}.toml"));
    let text = format!(
        r#"[kafka]
brokers = "{addr}"
group = "{group}"
dead_letter_topic = "dead-letters"
max_batch_points = 5000
max_batch_delay = "50ms"

[kafka.properties]
"session.timeout.ms" = "6000"
"heartbeat.interval.ms" = "500"
"topic.metadata.refresh.interval.ms" = "1000"

{topics}"#,
        addr = broker.addr
    );
    std::fs::write(&path, text).expect("write config");
    path.display().to_string()
}

const JSON_TOPIC: &str = r#"[[kafka.topics]]
name = "points"
database = "fleet"
format = "json"
"#;

/// The JSON message `m`: `PER_MESSAGE` points with distinct (series, time).
fn json_message(base_ms: i64, m: i64) -> String {
    let items: Vec<String> = (0..PER_MESSAGE)
        .map(|j| {
            let i = m * PER_MESSAGE + j;
            format!(
                r#"{{"metric_name":"cpu_usage","timestamp":{},"value":{},"labels":{{"host":"h{}","pool":"p{}"}}}}"#,
                base_ms + i,
                i % 997,
                i % 1000,
                i % 10
            )
        })
        .collect();
    format!("[{}]", items.join(","))
}

/// Count and sum of messages `0..n`.
fn expected(n: i64) -> (i64, f64) {
    let points = n * PER_MESSAGE;
    let sum: i64 = (0..points).map(|i| i % 997).sum();
    (points, sum as f64)
}

fn produce_json(p: &Producer1, base_ms: i64, range: std::ops::Range<i64>) {
    for m in range {
        let partition = (m % i64::from(PARTITIONS)) as i32;
        p.send("points", partition, json_message(base_ms, m).as_bytes())
            .expect("produce");
    }
    p.flush().expect("flush");
}

async fn count_sum(s: &Server, db: &str, table: &str) -> (i64, f64) {
    let (status, body) = s
        .query_raw(
            db,
            &format!("SELECT count(*) AS n, sum(value) AS total FROM {table}"),
            "json",
        )
        .await;
    if status != 200 {
        // The table does not exist until the first point arrives.
        return (0, 0.0);
    }
    let rows: Vec<Value> = serde_json::from_str(&body).expect("json");
    let total = rows[0]["total"].as_f64().unwrap_or(0.0);
    (i64_of(&rows[0]["n"]), total)
}

/// The group's committed offsets and the high watermarks of `topic`, per partition.
fn committed_and_high(broker: &Broker, group: &str, topic: &str, n: i32) -> Vec<(i64, i64)> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", group)
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..n {
        tpl.add_partition(topic, p);
    }
    let committed = c
        .committed_offsets(tpl, Duration::from_secs(10))
        .expect("committed offsets");
    (0..n)
        .map(|p| {
            let off = match committed.find_partition(topic, p).map(|e| e.offset()) {
                Some(Offset::Offset(o)) => o,
                _ => -1,
            };
            let (_, high) = c
                .fetch_watermarks(topic, p, Duration::from_secs(10))
                .expect("watermarks");
            (off, high)
        })
        .collect()
}

/// A message's payload and its headers as (key, value) pairs.
type Received = (Vec<u8>, Vec<(String, String)>);

/// Waits until `group` has committed every partition of `points` up to its (non-empty)
/// end: what lag tools read from the broker.
async fn wait_committed_to_end(broker: &Broker, group: &str) {
    poll_until(30, "offsets committed to the end", || async {
        committed_and_high(broker, group, "points", PARTITIONS)
            .iter()
            .all(|(c, h)| c == h && *h > 0)
    })
    .await;
}

/// Every message of `topic` partition 0, with its headers.
fn read_all(broker: &Broker, topic: &str, want: usize) -> Vec<Received> {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", &broker.addr)
        .set("group.id", "dead-letter-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition");
    c.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    while out.len() < want && Instant::now() < deadline {
        if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
            let headers = m
                .headers()
                .map(|h| {
                    h.iter()
                        .map(|x| {
                            (
                                x.key.to_string(),
                                String::from_utf8_lossy(x.value.unwrap_or_default()).into_owned(),
                            )
                        })
                        .collect()
                })
                .unwrap_or_default();
            out.push((m.payload().unwrap_or_default().to_vec(), headers));
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn json_and_line_protocol_topics_store_everything_once_and_dead_letter_the_rest() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    broker
        .create_topics(&[("points", PARTITIONS), ("lines", 3), ("dead-letters", 1)])
        .await
        .expect("topics");
    let topics = format!(
        "{JSON_TOPIC}\n[[kafka.topics]]\nname = \"lines\"\ndatabase = \"fleet\"\nformat = \"line_protocol\"\nprecision = \"ms\"\n"
    );
    let cfg = config(dir.path(), "a", &broker, "g1", &topics);
    let s = Server::start(&dir.path().join("data"), &["--config", &cfg]).await;

    let p = broker.producer().expect("producer");
    let base = now_ms() - 3_600_000;
    let messages = 2_000; // 200,000 points
    produce_json(&p, base, 0..messages);
    // Bad messages, each alone in its message: not JSON, a wrong type, and one with two
    // good points around a bad one (the good ones are stored).
    p.send("points", 1, b"this is not json").expect("produce");
    p.send(
        "points",
        2,
        br#"{"metric_name":"cpu_usage","timestamp":1,"value":"high","labels":{}}"#,
    )
    .expect("produce");
    let partly = format!(
        r#"[{{"metric_name":"partly","timestamp":{b},"value":1}},{{"metric_name":"partly"}},{{"metric_name":"partly","timestamp":{b2},"value":2}}]"#,
        b = base,
        b2 = base + 1
    );
    p.send("points", 3, partly.as_bytes()).expect("produce");
    // Line protocol: 90 messages of 50 lines, then a field of the wrong type (the engine
    // rejects it: schema conflict).
    let mut lp_sum = 0i64;
    for m in 0..90i64 {
        let body: String = (0..50i64)
            .map(|j| {
                let i = m * 50 + j;
                lp_sum += i;
                format!("disk,host=h{} used={}i {}\n", i % 20, i, base + i)
            })
            .collect();
        p.send("lines", (m % 3) as i32, body.as_bytes())
            .expect("produce");
    }
    p.send(
        "lines",
        0,
        format!("disk,host=h1 used=\"full\" {}\n", base + 999_999).as_bytes(),
    )
    .expect("produce");
    p.flush().expect("flush");

    let (want_n, want_sum) = expected(messages);
    poll_until(120, "all JSON points", || async {
        count_sum(&s, "fleet", "cpu_usage").await.0 >= want_n
    })
    .await;
    poll_until(60, "all line-protocol points", || async {
        s.query_raw("fleet", "SELECT count(*) AS n FROM disk", "json")
            .await
            .1
            .contains("\"n\":4500")
    })
    .await;
    assert_eq!(
        count_sum(&s, "fleet", "cpu_usage").await,
        (want_n, want_sum)
    );
    let rows = s
        .query(
            "fleet",
            "SELECT count(*) AS n, sum(used) AS total FROM disk",
        )
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), 4500);
    assert_eq!(f64_of(&rows[0]["total"]), lp_sum as f64);
    let rows = s
        .query("fleet", "SELECT value FROM partly ORDER BY time")
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");

    // Three bad messages from `points`, one from `lines`, each a dead letter with the
    // error and its origin in headers.
    let dead = read_all(&broker, "dead-letters", 4);
    assert_eq!(dead.len(), 4, "dead letters: {dead:?}");
    let reasons: Vec<String> = dead
        .iter()
        .map(|(_, h)| {
            let get = |k: &str| {
                h.iter()
                    .find(|(key, _)| key == k)
                    .map(|(_, v)| v.clone())
                    .unwrap_or_default()
            };
            assert!(!get("strata-error").is_empty(), "{h:?}");
            assert!(!get("strata-source-offset").is_empty(), "{h:?}");
            format!("{}:{}", get("strata-source-topic"), get("strata-reason"))
        })
        .collect();
    for want in [
        "points:undecodable",
        "points:invalid_lines",
        "lines:rejected",
    ] {
        assert!(reasons.iter().any(|r| r == want), "{want} in {reasons:?}");
    }
    assert!(
        dead.iter()
            .any(|(payload, _)| payload.as_slice() == b"this is not json"),
        "the poison message is forwarded unchanged"
    );

    // The group's committed offsets reach the end of every partition (lag tools agree),
    // and the status table says the same.
    wait_committed_to_end(&broker, "g1").await;
    let rows = s
        .query(
            "fleet",
            "SELECT topic, count(*) AS partitions, sum(messages) AS messages, \
             sum(bad_messages) AS bad, bool_and(assigned) AS assigned \
             FROM system.kafka_partitions GROUP BY topic ORDER BY topic",
        )
        .await;
    assert_eq!(rows.len(), 2, "{rows:?}");
    assert_eq!(rows[0]["topic"], "lines");
    assert_eq!(i64_of(&rows[0]["partitions"]), 3);
    assert_eq!(i64_of(&rows[0]["messages"]), 91);
    assert_eq!(i64_of(&rows[0]["bad"]), 1);
    assert_eq!(rows[1]["topic"], "points");
    assert_eq!(i64_of(&rows[1]["partitions"]), 6);
    assert_eq!(i64_of(&rows[1]["messages"]), messages + 3);
    assert_eq!(i64_of(&rows[1]["bad"]), 3);
    assert_eq!(rows[1]["assigned"], true);
    let metrics = s.metrics().await;
    assert!(
        metrics
            .contains("strata_kafka_bad_messages_total{topic=\"points\",reason=\"undecodable\"} 2"),
        "{metrics}"
    );
    assert!(metrics.contains("strata_kafka_consumer_lag{"), "{metrics}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_in_the_middle_of_consumption_loses_and_duplicates_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    broker
        .create_topics(&[("points", PARTITIONS), ("dead-letters", 1)])
        .await
        .expect("topics");
    let cfg = config(dir.path(), "a", &broker, "g2", JSON_TOPIC);
    let mut s = Server::start(&dir.path().join("data"), &["--config", &cfg]).await;
    let base = now_ms() - 3_600_000;
    let messages = 2_000;
    // Produce while Strata consumes, so the kill lands mid-stream.
    let addr = broker.addr.clone();
    let producer = std::thread::spawn(move || {
        let p = strata_benchmarks::kafka::Broker::producer_for(&addr).expect("producer");
        for chunk in 0..20 {
            produce_json(&p, base, chunk * 100..(chunk + 1) * 100);
        }
    });
    poll_until(120, "some points consumed", || async {
        count_sum(&s, "fleet", "cpu_usage").await.0 >= 30_000
    })
    .await;
    let at_kill = count_sum(&s, "fleet", "cpu_usage").await.0;
    s.kill9();
    let (want_n, want_sum) = expected(messages);
    assert!(
        at_kill < want_n,
        "the kill came after everything was consumed"
    );
    s.restart().await;
    producer.join().expect("producer thread");
    poll_until(120, "all points after the restart", || async {
        count_sum(&s, "fleet", "cpu_usage").await.0 >= want_n
    })
    .await;
    wait_committed_to_end(&broker, "g2").await;
    assert_eq!(
        count_sum(&s, "fleet", "cpu_usage").await,
        (want_n, want_sum)
    );
    // Replayed messages were consumed twice but stored once.
    let rows = s
        .query(
            "fleet",
            "SELECT count(*) AS n, count(DISTINCT host) AS hosts FROM cpu_usage",
        )
        .await;
    assert_eq!(i64_of(&rows[0]["n"]), want_n);
    assert_eq!(i64_of(&rows[0]["hosts"]), 1000);
}

/// Partitions this member owns, per its `system.kafka_partitions` (asked in `metrics`,
/// which exists before any point arrives).
async fn assigned(s: &Server) -> i64 {
    let (status, body) = s
        .query_raw(
            "metrics",
            "SELECT count(*) AS n FROM system.kafka_partitions WHERE assigned",
            "json",
        )
        .await;
    if status != 200 {
        return 0;
    }
    let rows: Vec<Value> = serde_json::from_str(&body).expect("json");
    i64_of(&rows[0]["n"])
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_members_split_partitions_and_hand_over_cleanly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    broker
        .create_topics(&[("points", PARTITIONS), ("dead-letters", 1)])
        .await
        .expect("topics");
    let cfg = config(dir.path(), "member", &broker, "g3", JSON_TOPIC);
    let a = Server::start(&dir.path().join("a"), &["--config", &cfg]).await;
    let p = broker.producer().expect("producer");
    let base = now_ms() - 3_600_000;
    produce_json(&p, base, 0..600);
    poll_until(120, "A consumed the first third", || async {
        count_sum(&a, "fleet", "cpu_usage").await.0 >= 60_000
    })
    .await;

    // B joins: the group splits the partitions between A and B.
    let mut b = Server::start(&dir.path().join("b"), &["--config", &cfg]).await;
    poll_until(60, "the partitions split between A and B", || async {
        let (na, nb) = (assigned(&a).await, assigned(&b).await);
        na > 0 && nb > 0 && na + nb == i64::from(PARTITIONS)
    })
    .await;
    produce_json(&p, base, 600..1_200);
    poll_until(120, "A and B consumed the second third", || async {
        count_sum(&a, "fleet", "cpu_usage").await.0 + count_sum(&b, "fleet", "cpu_usage").await.0
            >= 120_000
    })
    .await;
    let b_second = count_sum(&b, "fleet", "cpu_usage").await.0;
    assert!(b_second > 0, "B stored part of the second third");

    // B leaves cleanly: it commits what it stored, A takes every partition back.
    b.stop();
    poll_until(60, "A owns every partition again", || async {
        assigned(&a).await == i64::from(PARTITIONS)
    })
    .await;
    produce_json(&p, base, 1_200..1_800);
    let b_data = dir.path().join("b");
    // B's final data, read by a Strata without Kafka on B's directory.
    let b_final = Server::start(&b_data, &[]).await;
    let b_total = count_sum(&b_final, "fleet", "cpu_usage").await;
    let (want_n, want_sum) = expected(1_800);
    poll_until(120, "everything stored once across A and B", || async {
        count_sum(&a, "fleet", "cpu_usage").await.0 + b_total.0 >= want_n
    })
    .await;
    let a_total = count_sum(&a, "fleet", "cpu_usage").await;
    assert_eq!(
        a_total.0 + b_total.0,
        want_n,
        "A {a_total:?} + B {b_total:?}"
    );
    assert_eq!(a_total.1 + b_total.1, want_sum);
    wait_committed_to_end(&broker, "g3").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn over_the_memory_budget_consumption_pauses_and_resumes_by_itself() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    broker
        .create_topics(&[("points", PARTITIONS), ("dead-letters", 1)])
        .await
        .expect("topics");
    let p = broker.producer().expect("producer");
    let base = now_ms() - 3_600_000;
    let messages = 2_000;
    produce_json(&p, base, 0..messages);
    // One batch of 5,000 points takes more than the whole 128 KiB budget, so after each
    // write the consumer must pause until chunks are persisted early, then resume.
    let cfg = config(dir.path(), "a", &broker, "g4", JSON_TOPIC);
    let s = Server::start(
        &dir.path().join("data"),
        &["--config", &cfg, "--memory-budget", "128KiB"],
    )
    .await;
    let (want_n, want_sum) = expected(messages);
    poll_until(180, "all points through the pauses", || async {
        count_sum(&s, "fleet", "cpu_usage").await.0 >= want_n
    })
    .await;
    assert_eq!(
        count_sum(&s, "fleet", "cpu_usage").await,
        (want_n, want_sum)
    );
    let metrics = s.metrics().await;
    let pauses = metrics
        .lines()
        .find_map(|l| l.strip_prefix("strata_kafka_pauses_total "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(pauses >= 1.0, "consumption never paused:\n{metrics}");
    let rows = s
        .query(
            "fleet",
            "SELECT count(*) AS files FROM system.parquet_files WHERE table_name = 'cpu_usage'",
        )
        .await;
    assert!(
        i64_of(&rows[0]["files"]) >= 1,
        "hot data was persisted to make room"
    );
}

/// The Prometheus and OpenTelemetry decoders on Kafka: a remote_write body, an OTLP JSON
/// request and a `/metrics` page, each a message of a topic of that format; a message
/// that does not decode is a dead letter.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remote_write_otlp_and_exposition_topics() {
    use strata_ingest::remote_write::{Label, Sample, TimeSeries, WriteRequest, encode};
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = broker(dir.path());
    broker
        .create_topics(&[("rw", 1), ("otel", 1), ("prom", 1), ("dead-letters", 1)])
        .await
        .expect("topics");
    let topics = "[[kafka.topics]]\nname = \"rw\"\nformat = \"remote_write\"\n\
                  [[kafka.topics]]\nname = \"otel\"\nformat = \"otlp_json\"\n\
                  [[kafka.topics]]\nname = \"prom\"\nformat = \"prometheus\"\n";
    let cfg = config(dir.path(), "a", &broker, "g-formats", topics);
    let s = Server::start(&dir.path().join("data"), &["--config", &cfg]).await;
    let p = broker.producer().expect("producer");
    let now = now_ms();
    let rw = encode(&WriteRequest {
        timeseries: (0..3)
            .map(|i| TimeSeries {
                labels: vec![
                    Label {
                        name: "__name__".into(),
                        value: "rw_temp".into(),
                    },
                    Label {
                        name: "room".into(),
                        value: format!("r{i}"),
                    },
                ],
                samples: vec![Sample {
                    value: f64::from(i),
                    timestamp: now,
                }],
                histograms: vec![],
            })
            .collect(),
    });
    p.send("rw", 0, &rw).expect("produce");
    p.send("rw", 0, b"not snappy").expect("produce");
    let otlp = format!(
        r#"{{"resourceMetrics":[{{"resource":{{"attributes":[{{"key":"service.name","value":{{"stringValue":"api"}}}}]}},
        "scopeMetrics":[{{"metrics":[{{"name":"otel.queue","gauge":{{"dataPoints":[{{"asInt":"5","timeUnixNano":"{}"}}]}}}}]}}]}}]}}"#,
        now * 1_000_000
    );
    p.send("otel", 0, otlp.as_bytes()).expect("produce");
    p.send(
        "prom",
        0,
        format!("page_up{{job=\"x\"}} 1 {now}\npage_load 0.5 {now}\n").as_bytes(),
    )
    .expect("produce");

    poll_until(60, "every format's points", || async {
        count_sum(&s, "metrics", "rw_temp").await.0 == 3
            && count_sum(&s, "metrics", "otel_queue").await.0 == 1
            && count_sum(&s, "metrics", "page_load").await.0 == 1
    })
    .await;
    assert_eq!(count_sum(&s, "metrics", "rw_temp").await.1, 3.0);
    let rows = s
        .query("metrics", "SELECT service_name, value FROM otel_queue")
        .await;
    assert_eq!(rows[0]["service_name"], "api");
    assert_eq!(f64_of(&rows[0]["value"]), 5.0);
    let dead = read_all(&broker, "dead-letters", 1);
    assert_eq!(dead.len(), 1);
    assert_eq!(dead[0].0.as_slice(), b"not snappy");
}
