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
use super::pg::connect;
use super::server::{Server, poll_until};

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
    let pg = connect(&server.pg, "metrics").await.expect("pg connect");
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

    poll_until(30, "the webhook", || {
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
    poll_until(30, "the posted alert's notification", || {
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

    // Every notification so far (two webhooks, one email) is in the log before the
    // restart: the email can land in the maildir a moment before its log entry.
    poll_until(30, "three sent notifications in the log", || {
        let server = &server;
        async move {
            server
                .try_query(
                    "metrics",
                    "SELECT count(*) AS sent FROM system.notifications WHERE status = 'sent'",
                )
                .await
                .is_some_and(|r| r[0]["sent"].as_i64().unwrap_or(0) >= 3)
        }
    })
    .await;

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

/// `tests/python/smtp_sink.py` in `mode` (`starttls` or `tls`, with a throwaway CA in
/// `dir/ca.pem`), requiring `auth` (`user:password`); mails land in `dir/maildir/new`.
fn smtp_sink(dir: &Path, mode: &str, auth: &str) -> (Smtp, u16) {
    use std::io::BufRead;
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .expect("free port")
        .local_addr()
        .expect("addr")
        .port();
    let mut child = Command::new(python())
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/tests/python/smtp_sink.py"
        ))
        .arg(dir)
        .arg(port.to_string())
        .arg(mode)
        .args(["--auth", auth])
        .stdout(Stdio::piped())
        .spawn()
        .expect("start the SMTP sink");
    let mut line = String::new();
    let out = child.stdout.take().expect("stdout");
    std::io::BufReader::new(out)
        .read_line(&mut line)
        .expect("read the SMTP sink");
    assert_eq!(line.trim(), "ready", "the SMTP sink did not start");
    (Smtp(child), port)
}

fn mails(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir.join("maildir/new"))
        .map(|d| {
            d.filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Runs `strata alert <args>` against `server`; returns (success, stdout, stderr).
async fn cli(server: &Server, args: &[&str]) -> (bool, String, String) {
    let out = tokio::process::Command::new(env!("CARGO_BIN_EXE_strata"))
        .args(["alert", "--server", &server.url("")])
        .args(args)
        .output()
        .await
        .expect("run strata alert");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn email_over_starttls_and_tls_with_auth_and_test_notifications_from_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (starttls_dir, tls_dir) = (dir.path().join("starttls"), dir.path().join("tls"));
    let (_a, starttls_port) = smtp_sink(&starttls_dir, "starttls", "strata:s3cret");
    let (_b, tls_port) = smtp_sink(&tls_dir, "tls", "strata:s3cret");
    let config = dir.path().join("strata.toml");
    let email = |port: u16, tls: &str, ca: &Path, password: &str| {
        format!(
            r#"
            [[alerting.receivers.email]]
            to = ["oncall@example.com"]
            from = "strata@example.com"
            smarthost = "127.0.0.1:{port}"
            tls = "{tls}"
            username = "strata"
            password = "{password}"
            ca_file = "{}"
            "#,
            ca.join("ca.pem").display()
        )
    };
    std::fs::write(
        &config,
        format!(
            r#"
            [alerting.route]
            receiver = "secure"
            [[alerting.receivers]]
            name = "secure"
            {}
            {}
            [[alerting.receivers]]
            name = "wrong_password"
            {}
            "#,
            email(starttls_port, "starttls", &starttls_dir, "s3cret"),
            email(tls_port, "tls", &tls_dir, "s3cret"),
            email(starttls_port, "starttls", &starttls_dir, "guess"),
        ),
    )
    .expect("config");
    let server = Server::start(
        &dir.path().join("data"),
        &["--config", config.to_str().expect("path")],
    )
    .await;

    let (ok, out, err) = cli(&server, &["test", "secure"]).await;
    assert!(ok, "{out}{err}");
    assert_eq!(out, "email[0]: sent\nemail[1]: sent\n");
    for d in [&starttls_dir, &tls_dir] {
        let got = mails(d);
        assert_eq!(got.len(), 1, "{}", d.display());
        assert!(
            got[0].contains("Subject: [FIRING:1] StrataTestNotification (receiver=secure)"),
            "{}",
            got[0]
        );
        assert!(got[0].contains("To: oncall@example.com"), "{}", got[0]);
    }

    // A refused login is the channel's failure, reported by the CLI's exit status.
    let (ok, out, err) = cli(&server, &["test", "wrong_password"]).await;
    assert!(!ok, "{out}");
    assert!(
        out.starts_with("email[0]: FAILED: email via 127.0.0.1:"),
        "{out}"
    );
    assert!(err.contains("1 of 1 channels failed"), "{err}");
    assert_eq!(mails(&starttls_dir).len(), 1);

    let (ok, _, err) = cli(&server, &["test", "nobody"]).await;
    assert!(!ok);
    assert!(err.contains("receiver `nobody` is not configured"), "{err}");

    // amtool's `config show`: the configuration, passwords redacted.
    let status: Value = server
        .client
        .get(server.url("/api/v2/status"))
        .send()
        .await
        .expect("status")
        .json()
        .await
        .expect("json");
    let original = status["config"]["original"].as_str().expect("config");
    assert!(
        original.contains("\"smarthost\": \"127.0.0.1:"),
        "{original}"
    );
    assert!(
        original.contains("\"password\": \"<secret>\""),
        "{original}"
    );
    assert!(
        !original.contains("s3cret") && !original.contains("guess"),
        "{original}"
    );
    assert_eq!(status["cluster"]["status"], "disabled");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backtests_over_sql_http_postgres_and_the_cli() {
    let dir = tempfile::tempdir().expect("tempdir");
    let server = Server::start(&dir.path().join("data"), &[]).await;
    // The last 30 minutes at 10 s: `a` at 95 from 20 to 10 minutes ago, else 10.
    let now = now_ns();
    let minute = 60_000_000_000i64;
    let mut lp = String::new();
    let mut t = now - 30 * minute;
    while t <= now {
        let a = if (now - 20 * minute..now - 10 * minute).contains(&t) {
            95
        } else {
            10
        };
        lp.push_str(&format!(
            "cpu,host=a usage_user={a} {t}\ncpu,host=b usage_user=10 {t}\n"
        ));
        t += 10_000_000_000;
    }
    assert!(server.write_lp("metrics", lp).await.status().is_success());
    let rule = "SELECT host, avg(usage_user) AS value FROM cpu \
                WHERE time > now() - interval '1 minute' GROUP BY host HAVING avg(usage_user) > 90";
    server
        .query(
            "metrics",
            &format!("CREATE ALERT hot EVERY '1m' FOR '1m' AS {rule}"),
        )
        .await;

    let (ok, out, err) = cli(
        &server,
        &["backtest", "hot", "--from", "now-30m", "--every", "1m"],
    )
    .await;
    assert!(ok, "{out}{err}");
    assert!(
        out.starts_with("hot: 31 evaluations (0 failed) every 1m from "),
        "{out}"
    );
    assert!(
        out.contains(": 1 firing episodes, 0 notifications"),
        "{out}"
    );
    assert!(out.contains("alertname=hot, host=a"), "{out}");

    let (ok, out, err) = cli(&server, &["backtest", "hot", "--from", "now-30m", "--json"]).await;
    assert!(ok, "{err}");
    let report: Value = serde_json::from_str(&out).expect("JSON report");
    let episodes = report["episodes"].as_array().expect("episodes");
    assert_eq!(episodes.len(), 1, "{report}");
    assert_eq!(episodes[0]["labels"]["host"], "a");
    assert!(episodes[0]["ended_at"].is_string(), "{report}");

    let (ok, _, err) = cli(&server, &["backtest", "cold", "--from", "now-1h"]).await;
    assert!(!ok);
    assert!(
        err.contains("404") && err.contains("alert `cold` does not exist"),
        "{err}"
    );

    // A rule not created yet, over HTTP: without FOR it fires at the first hot minute.
    let r = server
        .client
        .post(server.url("/api/v1/backtest"))
        .json(&json!({"from": "now-30m", "every": "1m",
                      "rule": {"name": "try", "query": rule, "labels": {"team": "db"}}}))
        .send()
        .await
        .expect("backtest");
    assert_eq!(r.status(), 200);
    let report: Value = r.json().await.expect("json");
    assert_eq!(
        report["episodes"].as_array().map(Vec::len),
        Some(1),
        "{report}"
    );
    assert_eq!(report["episodes"][0]["labels"]["team"], "db");
    assert!(
        report["summary"]
            .as_str()
            .is_some_and(|s| s.starts_with("31 evaluations"))
    );
    let r = server
        .client
        .post(server.url("/api/v1/backtest"))
        .json(&json!({"from": "a week ago", "rule": {"name": "try", "query": rule}}))
        .send()
        .await
        .expect("bad backtest");
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .expect("body")
            .contains("from: `a week ago` is not a time")
    );

    // The SQL form over the PostgreSQL wire: a summary row, then the events.
    let pg = connect(&server.pg, "metrics").await.expect("pg connect");
    let rows: Vec<(String, String)> = pg
        .simple_query("BACKTEST ALERT hot FROM 'now-30m'")
        .await
        .expect("BACKTEST over pg")
        .iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(r) => Some((
                r.get("event")?.to_string(),
                r.get("labels").unwrap_or("").to_string(),
            )),
            _ => None,
        })
        .collect();
    let kinds: Vec<&str> = rows.iter().map(|(k, _)| k.as_str()).collect();
    assert_eq!(
        kinds,
        ["summary", "pending", "firing", "resolved"],
        "{rows:?}"
    );
    assert!(rows[2].1.contains("\"host\":\"a\""), "{rows:?}");
}
