//! Backtesting over data written with past timestamps: the report's states, episodes and
//! notifications follow from the data and the rule; rows after each evaluation's moment
//! are invisible to it; nothing is sent and no live state changes.

use serde_json::Value;
use strata_engine::{FieldValue, Point, WriteOptions};

use super::{Harness, S, T0, receiver, webhook_config};

const M: i64 = 60 * S;

/// avg over the last minute above 90, for two minutes.
const RULE: &str = "CREATE ALERT hot EVERY '1m' FOR '2m' LABELS (severity = 'page') \
    AS SELECT host, avg(usage_user) AS value FROM cpu \
       WHERE time > now() - interval '1 minute' GROUP BY host HAVING avg(usage_user) > 90";

/// Every 10 s from T0 to T0 + 150 min: host `a` at 95 during [30 min, 50 min), `b` at 95
/// during [70 min, 72 min) (shorter than FOR), both 10 otherwise; `c` at 99 but only
/// after T0 + 120 min (after the backtest's end).
async fn history(h: &Harness) {
    let mut points = Vec::new();
    let mut t = T0;
    while t <= T0 + 150 * M {
        let at = t - T0;
        let mut push = |host: &str, v: f64| {
            points.push(Point {
                table: "cpu".into(),
                tags: vec![("host".into(), host.into())].into(),
                fields: vec![("usage_user".into(), FieldValue::F64(v))],
                time: t,
                line: 1,
            });
        };
        push(
            "a",
            if (30 * M..50 * M).contains(&at) {
                95.0
            } else {
                10.0
            },
        );
        push(
            "b",
            if (70 * M..72 * M).contains(&at) {
                95.0
            } else {
                10.0
            },
        );
        if at > 120 * M {
            push("c", 99.0);
        }
        t += 10 * S;
    }
    h.engine
        .write("metrics", points, WriteOptions::default())
        .await
        .expect("write history");
}

fn events(batches: &[arrow::array::RecordBatch]) -> Vec<(i64, String, String)> {
    let mut out = Vec::new();
    for b in batches {
        let time = b
            .column(0)
            .as_any()
            .downcast_ref::<arrow::array::TimestampNanosecondArray>()
            .expect("time");
        let kind = b
            .column(1)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("event");
        let labels = b
            .column(3)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("labels");
        for i in 0..b.num_rows() {
            let host = serde_json::from_str::<Value>(labels.value(i))
                .ok()
                .and_then(|l| l["host"].as_str().map(str::to_string))
                .unwrap_or_default();
            out.push(((time.value(i) - T0) / S, kind.value(i).to_string(), host));
        }
    }
    out
}

#[tokio::test]
async fn backtest_replays_states_and_notifications_without_sending() {
    let (base, inbox) = receiver().await;
    let h = Harness::new(&webhook_config(&base)).await;
    h.clock.set(T0 + 180 * M);
    history(&h).await;
    h.sql(RULE).await.expect("create");

    let from = "2026-11-22T00:00:00Z";
    let to = "2026-11-22T02:00:00Z";
    let batches = h
        .sql(&format!("BACKTEST ALERT hot FROM '{from}' TO '{to}'"))
        .await
        .expect("backtest");
    let got = events(&batches);
    let (summary, rest) = got.split_first().expect("a summary row");
    assert_eq!(summary.1, "summary");
    let rows: Vec<(i64, &str, &str)> = rest
        .iter()
        .map(|(t, k, h)| (*t, k.as_str(), h.as_str()))
        .collect();
    // a: pending at 31 min (the first full minute at 95), firing two minutes later,
    // resolved at 50 min (the window then holds one 10); one firing and one resolved
    // notification (group_wait 0, flushed at the evaluation). b: pending at 71 min,
    // inactive at 72 min, never firing. c: its rows lie after each moment, never seen.
    assert_eq!(
        rows,
        vec![
            (31 * 60, "pending", "a"),
            (33 * 60, "firing", "a"),
            (33 * 60, "notification", ""),
            (50 * 60, "resolved", "a"),
            (50 * 60, "notification", ""),
            (71 * 60, "pending", "b"),
            (72 * 60, "inactive", "b"),
        ],
        "{got:?}"
    );
    let detail = batches[0]
        .column(4)
        .as_any()
        .downcast_ref::<arrow::array::StringArray>()
        .expect("detail")
        .value(0)
        .to_string();
    assert!(
        detail.starts_with("121 evaluations (0 failed) every 1m from 2026-11-22T00:00:00Z to 2026-11-22T02:00:00Z: 1 firing episodes, 2 notifications (team 2), 2 deliveries"),
        "{detail}"
    );

    // The report in full, for a rule not created yet (same definition under a new name).
    let rule = h.alerting.rule("hot").expect("stored");
    let mut other = rule.clone();
    other.name = "hot_try".into();
    other.for_ms = 0;
    let report = h
        .alerting
        .backtest(&other, T0, T0 + 120 * M, None)
        .await
        .expect("backtest");
    assert_eq!(report.evaluations, 121);
    let episodes: Vec<(String, i64, Option<i64>)> = report
        .episodes
        .iter()
        .map(|e| {
            (
                e.labels["host"].clone(),
                (e.started_at - T0) / M,
                e.ended_at.map(|t| (t - T0) / M),
            )
        })
        .collect();
    // Without FOR both fire at their first active evaluation.
    assert_eq!(
        episodes,
        vec![("a".into(), 31, Some(50)), ("b".into(), 71, Some(72))]
    );
    assert_eq!(report.episodes[0].max_values["value"], 95.0);
    let titles: Vec<(&str, &str)> = report
        .notifications
        .iter()
        .map(|n| (n.status, n.title.as_str()))
        .collect();
    assert_eq!(
        titles,
        vec![
            ("firing", "[FIRING:1] hot_try"),
            ("resolved", "[RESOLVED] hot_try"),
            ("firing", "[FIRING:1] hot_try"),
            ("resolved", "[RESOLVED] hot_try"),
        ]
    );

    // Nothing was sent and nothing live moved.
    assert!(inbox.is_empty(), "{:?}", inbox.requests.lock());
    assert!(h.alerting.rule("hot_try").is_err());
    let live = h.table("SELECT count(*) AS n FROM system.alerts").await;
    assert!(live.contains("| 0 |"), "{live}");
}

#[tokio::test]
async fn backtest_errors_say_what_is_wrong() {
    let h = Harness::new("").await;
    h.clock.set(T0 + 180 * M);
    history(&h).await;
    h.sql(RULE).await.expect("create");
    let err = |sql: &str| {
        let sql = sql.to_string();
        let h = &h;
        async move { h.sql(&sql).await.expect_err("refused") }
    };
    let e = err("BACKTEST ALERT nope FROM 'now-1h'").await;
    assert!(e.contains("alert `nope` does not exist"), "{e}");
    let e = err("BACKTEST ALERT hot FROM 'now' TO 'now-1h'").await;
    assert!(e.contains("must be after the start"), "{e}");
    let e = err("BACKTEST ALERT hot FROM 'last tuesday'").await;
    assert!(e.contains("FROM: `last tuesday` is not a time"), "{e}");
    let e = err("BACKTEST ALERT hot FROM 'now-30d' EVERY '1s'").await;
    assert!(e.contains("more than the limit of 100000"), "{e}");
    let e = err("BACKTEST FROM 'now-1h' CREATE ALERT broken AS SELECT host, nope FROM cpu").await;
    assert!(e.contains("alert `broken`") && e.contains("nope"), "{e}");

    // A query that fails at run time is counted, not fatal: a division by zero only in
    // the rows of `c` (after 120 min).
    let batches = h
        .sql(
            "BACKTEST FROM '2026-11-22T01:55:00Z' TO '2026-11-22T02:10:00Z' \
             CREATE ALERT div AS SELECT host, 1 / (CASE WHEN host = 'c' THEN 0 ELSE 1 END) \
             AS v FROM cpu WHERE time > now() - interval '1 minute'",
        )
        .await
        .expect("backtest with failing evaluations");
    let got = events(&batches);
    let kinds: Vec<&str> = got.iter().map(|(_, k, _)| k.as_str()).collect();
    assert!(kinds.contains(&"error"), "{got:?}");
}
