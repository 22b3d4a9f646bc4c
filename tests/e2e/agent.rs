//! `strata agent` against a real `strata serve`: its host metrics arrive, and stopping
//! the server for a while and starting it again loses nothing the agent buffered. Waits
//! poll with a deadline.

use std::path::Path;
use std::process::{Child, Command, Stdio};

use strata_benchmarks::kafka::Broker;

use super::server::{Server, f64_of, i64_of, poll_until};

struct Agent(Child);

impl Agent {
    /// Collects every 300 ms as host `agent-test` with tag `pool=p7`; `to` says where to.
    fn start(to: &[&str], buffer: &Path, log: &Path) -> Self {
        let child = Command::new(env!("CARGO_BIN_EXE_strata"))
            .arg("agent")
            .args(to)
            .args(["--interval", "300ms", "--timeout", "10s"])
            .args(["--host", "agent-test", "--tag", "pool=p7", "--buffer-dir"])
            .arg(buffer)
            .env("STRATA_LOG", "info")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).expect("agent log"))
            .spawn()
            .expect("start strata agent");
        Self(child)
    }

    /// SIGTERM: the agent delivers what it can and exits.
    fn stop(&mut self) {
        let pid = self.0.id().to_string();
        let status = Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .expect("kill");
        assert!(status.success());
        let status = self.0.wait().expect("wait");
        assert!(status.success(), "agent exited with {status}");
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The sequence numbers of the batches in the agent's buffer.
fn batch_seqs(dir: &Path) -> Vec<u64> {
    std::fs::read_dir(dir).map_or_else(
        |_| Vec::new(),
        |d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().to_str()?.strip_suffix(".lp")?.parse().ok())
                .collect()
        },
    )
}

fn batches(dir: &Path) -> usize {
    batch_seqs(dir).len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_metrics_arrive_and_a_server_outage_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let addr = format!("127.0.0.1:{port}");
    let mut s = Server::start(&dir.path().join("data"), &["--http-addr", &addr]).await;
    let buffer = dir.path().join("buffer");
    let server = format!("http://{addr}");
    let mut agent = Agent::start(
        &["--server", server.as_str()],
        &buffer,
        &dir.path().join("agent.log"),
    );

    poll_until(60, "the agent's first collections", || async {
        s.try_query(
            "metrics",
            "SELECT count(*) AS n FROM mem WHERE host = 'agent-test'",
        )
        .await
        .is_some_and(|r| i64_of(&r[0]["n"]) >= 2)
    })
    .await;
    for (table, filter) in [
        ("cpu", "cpu = 'cpu-total'"),
        ("cpu", "cpu = 'cpu0'"),
        ("mem", "total > 0"),
        ("swap", "true"),
        ("disk", "total > 0"),
        ("net", "interface IS NOT NULL"),
        ("system", "n_cpus > 0 AND uptime > 0"),
    ] {
        let rows = s
            .query(
                "metrics",
                &format!("SELECT count(*) AS n FROM {table} WHERE host = 'agent-test' AND pool = 'p7' AND {filter}"),
            )
            .await;
        assert!(i64_of(&rows[0]["n"]) >= 1, "no {table} rows with {filter}");
    }

    // The server goes away; the agent keeps collecting into its buffer.
    s.stop();
    let before = batches(&buffer);
    poll_until(60, "the agent to buffer 5 collections", || async {
        batches(&buffer) >= before + 5
    })
    .await;
    s.restart().await;
    // Everything buffered during the outage is delivered (new collections keep coming).
    let buffered = batch_seqs(&buffer).into_iter().max().unwrap_or(0);
    poll_until(90, "the agent to deliver its buffer", || async {
        batch_seqs(&buffer).iter().all(|&seq| seq > buffered)
    })
    .await;
    agent.stop();
    assert_eq!(
        batches(&buffer),
        0,
        "the last collection was delivered on stop"
    );
    let failures = s
        .query(
            "metrics",
            "SELECT max(send_failures) AS f FROM strata_agent",
        )
        .await;
    assert!(
        f64_of(&failures[0]["f"]) >= 1.0,
        "the outage was noticed: {failures:?}"
    );
    assert_everything_stored(&s).await;
}

/// Every collection the agent counted is stored: one `mem` row per collection.
async fn assert_everything_stored(s: &Server) {
    let counted = s
        .query(
            "metrics",
            "SELECT max(collections) AS c FROM strata_agent WHERE host = 'agent-test'",
        )
        .await;
    let stored = s
        .query(
            "metrics",
            "SELECT count(DISTINCT time) AS n FROM mem WHERE host = 'agent-test'",
        )
        .await;
    assert_eq!(i64_of(&stored[0]["n"]), i64_of(&counted[0]["c"]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agent_pushes_through_kafka() {
    let dir = tempfile::tempdir().expect("tempdir");
    let broker = Broker::start(&dir.path().join("broker.log")).unwrap_or_else(|e| panic!("{e}"));
    broker.create_topics(&[("agent", 1)]).await.expect("topic");
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            "[kafka]\nbrokers = \"{}\"\ngroup = \"strata\"\nmax_batch_delay = \"50ms\"\n\
             [[kafka.topics]]\nname = \"agent\"\nformat = \"line_protocol\"\nprecision = \"ns\"\n",
            broker.addr
        ),
    )
    .expect("config");
    let s = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("utf-8")],
    )
    .await;
    let buffer = dir.path().join("buffer");
    let mut agent = Agent::start(
        &[
            "--kafka-brokers",
            broker.addr.as_str(),
            "--kafka-topic",
            "agent",
        ],
        &buffer,
        &dir.path().join("agent.log"),
    );
    poll_until(60, "the agent's collections through Kafka", || async {
        s.try_query(
            "metrics",
            "SELECT count(*) AS n FROM mem WHERE host = 'agent-test'",
        )
        .await
        .is_some_and(|r| i64_of(&r[0]["n"]) >= 3)
    })
    .await;
    agent.stop();
    assert_eq!(
        batches(&buffer),
        0,
        "everything was acknowledged by the broker"
    );
    poll_until(60, "Strata to consume the last messages", || async {
        let c = s
            .query("metrics", "SELECT max(collections) AS c FROM strata_agent")
            .await;
        let n = s
            .query("metrics", "SELECT count(DISTINCT time) AS n FROM mem")
            .await;
        i64_of(&c[0]["c"]) == i64_of(&n[0]["n"])
    })
    .await;
}
