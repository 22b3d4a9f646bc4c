//! Alerting against a real `strata serve`: a rule created with SQL over HTTP, listed over
//! the PostgreSQL wire, fired by written data, delivered to a local webhook receiver and,
//! by email through `lettre`, to a real SMTP server (aiosmtpd, from the test virtualenv);
//! a config-file rule; the Alertmanager v2 API (alerts posted by another system, silences);
//! firing state kept across a restart. Waits poll with a deadline; nothing sleeps blindly.

use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use serde_json::{Value, json};

use super::clients::python;
use super::server::Server;

/// A local webhook receiver recording every JSON body.
async fn webhook() -> (String, Arc<Mutex<Vec<Value>>>) {
    let got: Arc<Mutex<Vec<Value>>> = Arc::default();
    let sink = Arc::clone(&got);
    let app = axum::Router::new().route(
        "/hook",
        axum::routing::post(move |body: axum::body::Bytes| {
            let sink = Arc::clone(&sink);
            async move {
                sink.lock()
                    .push(serde_json::from_slice(&body).expect("webhook JSON"));
                "ok"
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/hook"), got)
}

/// aiosmtpd storing each mail as a file in `dir/new`; killed on drop.
struct Smtp(Child);

impl Drop for Smtp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn smtp(dir: &Path) -> (Smtp, u16) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let child = Command::new(python())
        .args(["-m", "aiosmtpd", "-n", "-c", "aiosmtpd.handlers.Mailbox"])
        .arg(dir)
        .args(["-l", &format!("127.0.0.1:{port}")])
        .stdout(Stdio::null())
        .spawn()
        .expect("start aiosmtpd");
    let smtp = Smtp(child);
    wait_for("the SMTP server to listen", || {
        std::net::TcpStream::connect(("127.0.0.1", port)).is_ok()
    });
    (smtp, port)
}

fn wait_for(what: &str, mut ready: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

async fn wait_async<F, Fut>(what: &str, mut ready: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready().await {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn now_ns() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock");
    i64::try_from(d.as_nanos()).expect("ns")
}

fn received(got: &Mutex<Vec<Value>>, alertname: &str) -> Vec<Value> {
    got.lock()
        .iter()
        .filter(|n| n["groupLabels"]["alertname"] == alertname)
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rules_fire_to_a_webhook_and_real_smtp_and_the_alertmanager_api_works() {
    let dir = tempfile::tempdir().expect("tempdir");
    let mail = dir.path().join("mail");
    let (_smtp, smtp_port) = smtp(&mail);
    let (hook, got) = webhook().await;
    let config = dir.path().join("strata.toml");
    std::fs::write(
        &config,
        format!(
            r#"
            [alerting]
            external_url = "http://strata.example"
            [alerting.route]
            receiver = "team"
            group_by = ["alertname"]
            group_wait = "0s"
            group_interval = "1s"
            [[alerting.receivers]]
            name = "team"
            [[alerting.receivers.webhook]]
            url = "{hook}"
            [[alerting.receivers.email]]
            to = ["oncall@example.com", "lead@example.com"]
            from = "Strata <strata@example.com>"
            smarthost = "127.0.0.1:{smtp_port}"
            tls = "none"
            [[alerting.rules]]
            name = "too_many_hosts"
            every = "1s"
            query = "SELECT count(DISTINCT host) AS hosts FROM cpu HAVING count(DISTINCT host) > 1000"
            labels = {{ severity = "ticket" }}
            "#
        ),
    )
    .expect("config");
    let data = dir.path().join("data");
    let mut server = Server::start(&data, &["--config", config.to_str().expect("path")]).await;

    let now = now_ns();
    let r = server
        .write_lp(
            "metrics",
            format!("cpu,host=a usage_user=95 {now}\ncpu,host=b usage_user=20 {now}\n"),
        )
        .await;
    assert!(r.status().is_success());
    let created = server
        .query(
            "metrics",
            "CREATE ALERT high_cpu EVERY '1s' FOR '0s' \
             LABELS (severity = 'page') ANNOTATIONS (summary = 'CPU {{ value }}% on {{ host }}') \
             AS SELECT host, max(usage_user) AS value FROM cpu \
             WHERE time > now() - interval '1 hour' GROUP BY host HAVING max(usage_user) > 90",
        )
        .await;
    assert_eq!(created[0]["result"], "alert `high_cpu` created");

    // Over the PostgreSQL wire too.
    let (pg, conn) = tokio_postgres::connect(
        &format!(
            "host=127.0.0.1 port={} user=strata dbname=metrics",
            server.pg.rsplit(':').next().expect("port")
        ),
        tokio_postgres::NoTls,
    )
    .await
    .expect("pg connect");
    tokio::spawn(conn);
    let shown = pg
        .simple_query("SHOW ALERTS")
        .await
        .map_err(|e| format!("{e:?}"))
        .expect("SHOW ALERTS");
    let names: Vec<String> = shown
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => r.get("name").map(str::to_string),
            _ => None,
        })
        .collect();
    assert_eq!(names, ["high_cpu", "too_many_hosts"]);
    let err = pg
        .simple_query("DROP ALERT too_many_hosts")
        .await
        .expect_err("config-owned");
    let message = err
        .as_db_error()
        .map(|e| e.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("defined in the config file"), "{err:?}");

    wait_async("the webhook", || {
        let got = Arc::clone(&got);
        async move { !received(&got, "high_cpu").is_empty() }
    })
    .await;
    let n = &received(&got, "high_cpu")[0];
    assert_eq!(n["version"], "4");
    assert_eq!(n["status"], "firing");
    assert_eq!(n["alerts"].as_array().map(Vec::len), Some(1));
    assert_eq!(n["alerts"][0]["labels"]["host"], "a");
    assert_eq!(n["alerts"][0]["annotations"]["summary"], "CPU 95% on a");

    let inbox = mail.join("new");
    wait_for("the email", || {
        std::fs::read_dir(&inbox).is_ok_and(|d| d.count() > 0)
    });
    let file = std::fs::read_dir(&inbox)
        .expect("maildir")
        .next()
        .expect("one mail")
        .expect("entry")
        .path();
    let message = std::fs::read_to_string(file).expect("mail");
    assert!(
        message.contains("Subject: [FIRING:1] high_cpu"),
        "{message}"
    );
    assert!(
        message.contains("To: oncall@example.com, lead@example.com"),
        "{message}"
    );
    assert!(
        message.contains("From: Strata <strata@example.com>"),
        "{message}"
    );
    assert!(message.contains("CPU 95% on a"), "{message}");
    assert!(
        message.contains("http://strata.example/api/v1/alerts/"),
        "the acknowledge link: {message}"
    );
    assert!(message.contains("Content-Type: text/html"), "{message}");

    // Another system's alerts through the Alertmanager v2 API.
    let r = server
        .client
        .post(server.url("/api/v2/alerts"))
        .json(
            &json!([{"labels": {"alertname": "ExternalDown", "host": "b"},
                        "annotations": {"summary": "from Prometheus"}}]),
        )
        .send()
        .await
        .expect("post alerts");
    assert_eq!(r.status(), 200);
    wait_async("the posted alert's notification", || {
        let got = Arc::clone(&got);
        async move { !received(&got, "ExternalDown").is_empty() }
    })
    .await;
    let listed: Vec<Value> = server
        .client
        .get(server.url("/api/v2/alerts"))
        .send()
        .await
        .expect("get alerts")
        .json()
        .await
        .expect("json");
    let mut names: Vec<&str> = listed
        .iter()
        .filter_map(|a| a["labels"]["alertname"].as_str())
        .collect();
    names.sort_unstable();
    assert_eq!(names, ["ExternalDown", "high_cpu"]);
    let bad = server
        .client
        .post(server.url("/api/v2/alerts"))
        .body("[{\"labels\": 3}]")
        .send()
        .await
        .expect("post bad alerts");
    assert_eq!(bad.status(), 400);
    assert!(bad.text().await.expect("body").contains("request body"));

    // An amtool-style silence.
    let r: Value = server
        .client
        .post(server.url("/api/v2/silences"))
        .json(&json!({
            "matchers": [{"name": "host", "value": "b", "isRegex": false, "isEqual": true}],
            "startsAt": "2020-01-01T00:00:00Z", "endsAt": "2099-01-01T00:00:00Z",
            "createdBy": "amtool", "comment": "maintenance"}))
        .send()
        .await
        .expect("post silence")
        .json()
        .await
        .expect("json");
    let id = r["silenceID"].as_str().expect("silence id").to_string();
    let silences = server
        .query("metrics", "SELECT id, state FROM system.silences")
        .await;
    assert_eq!(silences, vec![json!({"id": id, "state": "active"})]);

    // The firing state survives a restart.
    server.stop();
    server.restart().await;
    let alerts = server
        .query(
            "metrics",
            "SELECT rule, state FROM system.alerts WHERE rule IS NOT NULL",
        )
        .await;
    assert_eq!(alerts, vec![json!({"rule": "high_cpu", "state": "firing"})]);
    let rules = server
        .query(
            "metrics",
            "SELECT name, owner, health FROM system.alert_rules ORDER BY name",
        )
        .await;
    assert_eq!(rules[0]["name"], "high_cpu");
    assert_eq!(rules[0]["owner"], "api");
    assert_eq!(rules[1]["owner"], "config");
    let log = server
        .query(
            "metrics",
            "SELECT count(*) AS sent FROM system.notifications WHERE status = 'sent'",
        )
        .await;
    assert!(log[0]["sent"].as_i64().unwrap_or(0) >= 3, "{log:?}");
}
