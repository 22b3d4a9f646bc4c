//! Rules through the whole pipeline: states, grouping, silences, inhibition, escalation,
//! flapping, restarts, receiver outages and every HTTP channel's payload.

use std::sync::atomic::Ordering;

use serde_json::Value;

use super::{HIGH_CPU, Harness, S, T0, receiver, webhook_config};

impl Harness {
    /// Moves the clock, writes the values at the new time, evaluates and notifies.
    async fn tick(&self, secs: i64, values: &[(&str, f64)]) {
        self.clock.advance(std::time::Duration::from_secs(
            u64::try_from(secs).expect("secs"),
        ));
        if !values.is_empty() {
            self.cpu(values).await;
        }
        self.alerting.evaluate_due().await;
        self.alerting.notify_due().await;
    }
}

/// [`HIGH_CPU`] firing at the first evaluation over the threshold.
fn high_cpu_at_once() -> String {
    HIGH_CPU.replace("FOR '20s'", "FOR '0s'")
}

fn alerts(n: &Value) -> Vec<(String, String)> {
    let mut v: Vec<(String, String)> = n["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .map(|a| {
            (
                a["labels"]["host"].as_str().unwrap_or("").to_string(),
                a["status"].as_str().expect("status").to_string(),
            )
        })
        .collect();
    v.sort();
    v
}

fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
    p.iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect()
}

#[tokio::test]
async fn threshold_pending_firing_one_grouped_notification_then_resolved() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&webhook_config(&base)).await;
    let created = h.table(HIGH_CPU).await;
    assert!(created.contains("alert `high_cpu` created"), "{created}");

    h.tick(0, &[("a", 95.0), ("b", 97.5), ("c", 10.0)]).await;
    assert_eq!(
        h.table("SELECT rule, state FROM system.alerts ORDER BY labels")
            .await,
        "+----------+---------+\n\
         | rule     | state   |\n\
         +----------+---------+\n\
         | high_cpu | pending |\n\
         | high_cpu | pending |\n\
         +----------+---------+"
    );
    h.tick(10, &[("a", 95.0), ("b", 97.5), ("c", 10.0)]).await;
    assert!(inbox.is_empty(), "nothing before FOR has elapsed");

    h.tick(10, &[("a", 95.0), ("b", 97.5), ("c", 10.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "one notification for the group: {sent:?}");
    let n = &sent[0];
    assert_eq!(n["version"], "4");
    assert_eq!(n["status"], "firing");
    assert_eq!(n["receiver"], "team");
    assert_eq!(n["groupLabels"]["alertname"], "high_cpu");
    assert_eq!(n["commonLabels"]["severity"], "page");
    assert_eq!(n["externalURL"], "http://strata.test");
    assert_eq!(alerts(n), pairs(&[("a", "firing"), ("b", "firing")]));
    let a = n["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|x| x["labels"]["host"] == "a")
        .expect("a");
    assert_eq!(a["annotations"]["summary"], "CPU 95% on a");
    assert_eq!(a["startsAt"], "2026-11-22T00:00:20Z");
    assert_eq!(a["endsAt"], "0001-01-01T00:00:00Z");
    assert_eq!(a["fingerprint"].as_str().map(str::len), Some(16));

    // Unchanged: nothing more (repeat_interval is an hour).
    h.tick(10, &[("a", 96.0), ("b", 97.5)]).await;
    assert!(inbox.is_empty());

    // a recovers: the group is notified with a resolved and b still firing.
    h.tick(10, &[("a", 10.0), ("b", 97.5)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status"], "firing");
    assert_eq!(
        alerts(&sent[0]),
        pairs(&[("a", "resolved"), ("b", "firing")])
    );
    let resolved = sent[0]["alerts"]
        .as_array()
        .expect("alerts")
        .iter()
        .find(|x| x["labels"]["host"] == "a")
        .expect("a");
    assert_eq!(resolved["endsAt"], "2026-11-22T00:00:40Z");

    h.tick(10, &[("a", 10.0), ("b", 10.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status"], "resolved");
    assert_eq!(alerts(&sent[0]), pairs(&[("b", "resolved")]));

    h.tick(10, &[("a", 10.0), ("b", 10.0)]).await;
    h.tick(10, &[("a", 10.0), ("b", 10.0)]).await;
    assert!(inbox.is_empty());
    assert_eq!(
        h.table("SELECT status, firing, resolved, attempts FROM system.notifications ORDER BY id")
            .await,
        "+--------+--------+----------+----------+\n\
         | status | firing | resolved | attempts |\n\
         +--------+--------+----------+----------+\n\
         | sent   | 2      | 0        | 1        |\n\
         | sent   | 1      | 1        | 1        |\n\
         | sent   | 0      | 1        | 1        |\n\
         +--------+--------+----------+----------+"
    );
    let show = h.table("SHOW ALERTS").await;
    assert!(
        show.contains("| high_cpu | metrics  | inactive | ok "),
        "{show}"
    );
    let dropped = h.table("DROP ALERT high_cpu").await;
    assert!(dropped.contains("alert `high_cpu` dropped"), "{dropped}");
    let err = h.sql("DROP ALERT high_cpu").await.expect_err("gone");
    assert!(err.contains("alert `high_cpu` does not exist"), "{err}");
}

#[tokio::test]
async fn a_silence_suppresses_until_it_is_expired() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&webhook_config(&base)).await;
    h.table(&high_cpu_at_once()).await;
    let id = h
        .table("CREATE SILENCE FOR '1h' MATCHING (host = 'a') BY 'ann' COMMENT 'maintenance'")
        .await;
    let id = id
        .lines()
        .nth(3)
        .expect("id row")
        .trim_matches(|c| c == '|' || c == ' ')
        .to_string();
    assert_eq!(id.len(), 36, "{id}");

    h.tick(0, &[("a", 95.0), ("b", 97.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1);
    assert_eq!(alerts(&sent[0]), pairs(&[("b", "firing")]));
    let muted = h
        .table("SELECT muted FROM system.alerts WHERE labels LIKE '%\"host\":\"a\"%'")
        .await;
    assert!(muted.contains("silenced"), "{muted}");
    let listed = h
        .table("SELECT state, matchers, created_by FROM system.silences")
        .await;
    assert!(listed.contains("| active | host=\"a\" | ann "), "{listed}");

    h.table(&format!("DROP SILENCE '{id}'")).await;
    h.tick(10, &[("a", 95.0), ("b", 97.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "a joins once the silence is gone");
    assert_eq!(alerts(&sent[0]), pairs(&[("a", "firing"), ("b", "firing")]));
    let listed = h.table("SELECT state FROM system.silences").await;
    assert!(listed.contains("expired"), "{listed}");
    // Kept for five days after it ended, then gone.
    h.tick(120 * 3600 - 20, &[]).await;
    assert!(h.table("SHOW SILENCES").await.contains("expired"));
    h.tick(30, &[]).await;
    let listed = h.table("SELECT count(*) AS n FROM system.silences").await;
    assert!(listed.contains("| 0 |"), "{listed}");
    let err = h
        .sql("CREATE SILENCE FOR '1h' MATCHING (host =~ '(')")
        .await
        .expect_err("bad regex");
    assert!(err.contains("bad regular expression"), "{err}");
}

#[tokio::test]
async fn an_inhibiting_alert_mutes_its_targets_with_equal_labels() {
    let (base, inbox) = receiver().await;
    let config = format!(
        "{}\n[[inhibit_rules]]\nsource_matchers = [\"alertname = node_down\"]\n\
         target_matchers = [\"alertname = high_cpu\"]\nequal = [\"host\"]\n",
        webhook_config(&base)
    );
    let h = Harness::new(&config).await;
    h.table(&high_cpu_at_once()).await;
    h.alerting
        .post_alerts(vec![strata_alerting::PostedAlert {
            labels: [
                ("alertname".to_string(), "node_down".to_string()),
                ("host".to_string(), "a".to_string()),
            ]
            .into(),
            ..Default::default()
        }])
        .expect("post");
    h.tick(0, &[("a", 95.0), ("b", 97.0)]).await;
    let mut sent = inbox.take("/team");
    sent.sort_by_key(|n| {
        n["groupLabels"]["alertname"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    assert_eq!(sent.len(), 2, "{sent:?}");
    assert_eq!(sent[0]["groupLabels"]["alertname"], "high_cpu");
    assert_eq!(alerts(&sent[0]), pairs(&[("b", "firing")]));
    assert_eq!(sent[1]["groupLabels"]["alertname"], "node_down");
}

fn escalation_config(base: &str) -> String {
    format!(
        r#"
        external_url = "http://strata.test"
        [route]
        receiver = "oncall"
        group_by = ["host"]
        group_wait = "0s"
        group_interval = "10s"
        repeat_interval = "1h"
        [[receivers]]
        name = "first"
        [[receivers.webhook]]
        url = "{base}/first"
        [[receivers]]
        name = "second"
        [[receivers.webhook]]
        url = "{base}/second"
        [[escalations]]
        name = "oncall"
        steps = [{{ receivers = ["first"], after = "0s" }}, {{ receivers = ["second"], after = "1m" }}]
        "#
    )
}

#[tokio::test]
async fn escalation_reaches_step_two_unless_acknowledged() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&escalation_config(&base)).await;
    h.table(&high_cpu_at_once()).await;
    h.tick(0, &[("a", 95.0), ("b", 97.0)]).await;
    let first = inbox.take("/first");
    assert_eq!(first.len(), 2, "one group per host: {first:?}");
    assert!(inbox.take("/second").is_empty());

    // Acknowledge a's alert (the link in the notification).
    let fp = first
        .iter()
        .flat_map(|n| n["alerts"].as_array().expect("alerts").clone())
        .find(|a| a["labels"]["host"] == "a")
        .expect("a")["fingerprint"]
        .as_str()
        .expect("fp")
        .to_string();
    assert_eq!(h.alerting.acknowledge(&fp, "ann").expect("ack"), 1);

    for _ in 0..5 {
        h.tick(10, &[("a", 95.0), ("b", 97.0)]).await;
    }
    assert!(inbox.take("/second").is_empty(), "not yet a minute");
    h.tick(10, &[("a", 95.0), ("b", 97.0)]).await;
    let second = inbox.take("/second");
    assert_eq!(second.len(), 1, "{second:?}");
    assert_eq!(alerts(&second[0]), pairs(&[("b", "firing")]));
    assert!(
        inbox.take("/first").is_empty(),
        "step one is not told again"
    );
    let acked = h
        .table("SELECT acknowledged_by FROM system.alerts WHERE labels LIKE '%\"host\":\"a\"%'")
        .await;
    assert!(acked.contains("ann"), "{acked}");

    // Recovery reaches every step that was notified.
    h.tick(10, &[("a", 10.0), ("b", 10.0)]).await;
    assert_eq!(inbox.take("/first").len(), 2);
    let second = inbox.take("/second");
    assert_eq!(second.len(), 1);
    assert_eq!(second[0]["status"], "resolved");
}

#[tokio::test]
async fn flapping_holds_notifications_back() {
    let (base, inbox) = receiver().await;
    let config = format!(
        "flap_window = \"10m\"\nflap_threshold = 2\n{}",
        webhook_config(&base)
    );
    let h = Harness::new(&config).await;
    h.table(&high_cpu_at_once()).await;
    h.tick(0, &[("a", 95.0)]).await;
    h.tick(10, &[("a", 10.0)]).await;
    assert_eq!(inbox.take("/team").len(), 2, "firing, then resolved");
    h.tick(10, &[("a", 95.0)]).await;
    h.tick(10, &[("a", 10.0)]).await;
    h.tick(10, &[("a", 95.0)]).await;
    assert!(inbox.take("/team").is_empty(), "flapping: held back");
    let flapping = h.table("SELECT state, flapping FROM system.alerts").await;
    assert!(flapping.contains("| firing | true     |"), "{flapping}");
    // Settled (no changes for the window): its current state is notified.
    for _ in 0..60 {
        h.tick(10, &[("a", 95.0)]).await;
    }
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["status"], "firing");
}

#[tokio::test]
async fn a_restart_while_firing_sends_no_duplicate_and_still_resolves() {
    let (base, inbox) = receiver().await;
    let mut h = Harness::new(&webhook_config(&base)).await;
    h.table(&high_cpu_at_once()).await;
    h.tick(0, &[("a", 95.0)]).await;
    assert_eq!(inbox.take("/team").len(), 1);
    h.restart().await;
    for _ in 0..3 {
        h.tick(10, &[("a", 95.0)]).await;
    }
    assert!(inbox.is_empty(), "the restart remembered what was sent");
    h.tick(10, &[("a", 10.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["status"], "resolved");
    assert_eq!(alerts(&sent[0]), pairs(&[("a", "resolved")]));
}

#[tokio::test]
async fn a_receiver_outage_is_retried_until_delivered() {
    let (base, inbox) = receiver().await;
    let mut h = Harness::new(&webhook_config(&base)).await;
    h.table(&high_cpu_at_once()).await;
    inbox.down.store(true, Ordering::SeqCst);
    h.tick(0, &[("a", 95.0)]).await;
    h.tick(1, &[]).await;
    h.tick(2, &[]).await;
    let log = h
        .table("SELECT status, attempts, last_error FROM system.notifications")
        .await;
    assert!(log.contains("| retrying | 3 "), "{log}");
    assert!(log.contains("503 Service Unavailable"), "{log}");
    // Still down across a restart: the outbox survives it.
    h.restart().await;
    inbox.down.store(false, Ordering::SeqCst);
    h.tick(4, &[]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(alerts(&sent[0]), pairs(&[("a", "firing")]));
    let log = h
        .table("SELECT status, attempts FROM system.notifications")
        .await;
    assert!(log.contains("| sent   | 4 "), "{log}");
}

#[tokio::test]
async fn a_failing_rule_is_visible_and_does_not_stop_others() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&webhook_config(&base)).await;
    // Planning errors other than a missing table are refused at once.
    let err = h.sql("CREATE ALERT typo AS SELECT nosuch FROM cpu").await;
    assert!(
        err.is_ok(),
        "cpu does not exist yet, so the rule is accepted: {err:?}"
    );
    h.cpu(&[("a", 1.0)]).await;
    let err = h
        .sql("CREATE ALERT typo2 AS SELECT nosuch FROM cpu")
        .await
        .expect_err("unknown column");
    assert!(err.contains("nosuch"), "{err}");
    let err = h
        .sql("CREATE ALERT x EVERY '10ms' AS SELECT 1")
        .await
        .expect_err("too often");
    assert!(err.contains("below the minimum"), "{err}");

    h.table(&high_cpu_at_once()).await;
    h.tick(1, &[("a", 95.0)]).await;
    assert_eq!(inbox.take("/team").len(), 1, "the good rule fired");
    let rules = h
        .table("SELECT name, health, state, last_error IS NOT NULL AS has_error FROM system.alert_rules ORDER BY name")
        .await;
    assert_eq!(
        rules,
        "+----------+--------+----------+-----------+\n\
         | name     | health | state    | has_error |\n\
         +----------+--------+----------+-----------+\n\
         | high_cpu | ok     | firing   | false     |\n\
         | typo     | error  | inactive | true      |\n\
         +----------+--------+----------+-----------+"
    );
    let err = h
        .table("SELECT last_error FROM system.alert_rules WHERE name = 'typo'")
        .await;
    assert!(err.contains("nosuch"), "{err}");
}

#[tokio::test]
async fn dead_mans_switch_and_no_data() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&webhook_config(&base)).await;
    h.cpu(&[("a", 1.0)]).await;
    h.table(
        "CREATE ALERT heartbeat EVERY '10s' ON EMPTY ALERT \
         AS SELECT host FROM cpu WHERE time > now() - interval '5 seconds'",
    )
    .await;
    h.table(
        "CREATE ALERT gone EVERY '10s' WHEN value > 90 ON NO DATA ALERT \
         AS SELECT host, max(usage_user) AS value FROM cpu \
         WHERE time > now() - interval '5 seconds' GROUP BY host",
    )
    .await;
    h.tick(0, &[("a", 95.0)]).await;
    let sent = inbox.take("/team");
    assert_eq!(sent.len(), 1, "gone fires, heartbeat is alive: {sent:?}");
    assert_eq!(sent[0]["groupLabels"]["alertname"], "gone");
    h.tick(10, &[]).await;
    let mut sent = inbox.take("/team");
    sent.sort_by_key(|n| {
        n["groupLabels"]["alertname"]
            .as_str()
            .unwrap_or("")
            .to_string()
    });
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["groupLabels"]["alertname"], "heartbeat");
    let states = h
        .table("SELECT rule, state FROM system.alerts ORDER BY rule")
        .await;
    assert!(states.contains("| gone      | nodata |"), "{states}");
    assert!(states.contains("| heartbeat | firing |"), "{states}");
    let err = h
        .sql("CREATE ALERT bad ON NO DATA KEEP AS SELECT 1")
        .await
        .expect_err("needs WHEN");
    assert!(err.contains("ON NO DATA needs WHEN"), "{err}");
}

#[tokio::test]
async fn pagerduty_sms_and_voice_payloads() {
    let (base, inbox) = receiver().await;
    let config = format!(
        r#"
        external_url = "http://strata.test"
        [route]
        receiver = "all"
        group_wait = "0s"
        group_interval = "10s"
        [[receivers]]
        name = "all"
        [[receivers.pagerduty]]
        routing_key = "R123"
        url = "{base}/pd/v2/enqueue"
        [[receivers.sms]]
        url = "{base}/twilio/Accounts/AC1"
        account_sid = "AC1"
        auth_token = "secret"
        from = "+15550000"
        to = ["+15551111", "+15552222"]
        [[receivers.voice]]
        url = "{base}/twilio/Accounts/AC1"
        account_sid = "AC1"
        auth_token = "secret"
        from = "+15550000"
        to = ["+15551111"]
        "#
    );
    let h = Harness::new(&config).await;
    h.table(&high_cpu_at_once()).await;
    h.tick(0, &[("a", 95.0)]).await;
    let pd = inbox.take("/pd/v2/enqueue");
    assert_eq!(pd.len(), 1);
    let e = &pd[0];
    assert_eq!(e["routing_key"], "R123");
    assert_eq!(e["event_action"], "trigger");
    assert_eq!(e["dedup_key"].as_str().map(str::len), Some(16));
    assert_eq!(e["payload"]["source"], "a");
    assert_eq!(
        e["payload"]["severity"], "error",
        "`page` is not a PagerDuty severity"
    );
    assert_eq!(e["payload"]["custom_details"]["summary"], "CPU 95% on a");
    assert_eq!(
        e["links"][0]["href"],
        format!(
            "http://strata.test/api/v1/alerts/{}/ack",
            e["dedup_key"].as_str().expect("key")
        )
    );
    let sms = inbox.take("/twilio/Accounts/AC1/Messages.json");
    assert_eq!(sms.len(), 2, "one per number");
    assert_eq!(sms[0]["To"], "+15551111");
    assert_eq!(sms[1]["To"], "+15552222");
    assert_eq!(sms[0]["From"], "+15550000");
    assert_eq!(sms[0]["Body"], "[FIRING:1] high_cpu; CPU 95% on a");
    let calls = inbox.take("/twilio/Accounts/AC1/Calls.json");
    assert_eq!(calls.len(), 1);
    assert_eq!(
        calls[0]["Twiml"],
        "<Response><Say>[FIRING:1] high_cpu; CPU 95% on a</Say></Response>"
    );
    h.tick(10, &[("a", 10.0)]).await;
    let pd = inbox.take("/pd/v2/enqueue");
    assert_eq!(pd.len(), 1);
    assert_eq!(pd[0]["event_action"], "resolve");
    assert_eq!(pd[0]["dedup_key"], e["dedup_key"]);
    assert!(
        inbox.is_empty(),
        "SMS and calls do not send resolved by default"
    );
    assert!(h.now() > T0 && S > 0);
}
