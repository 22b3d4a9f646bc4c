//! Tier choice over 40 days of data with an injected clock: answers from the rollup tiers
//! equal the answers computed from raw data while it still existed, and `EXPLAIN` names
//! the tier that answered.

use std::sync::Arc;
use std::time::Duration;

use arrow::array::RecordBatch;
use arrow::util::pretty::pretty_format_batches;
use futures::TryStreamExt;
use strata_catalog::Tier;
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};

const T0: i64 = 1_767_225_600_000_000_000; // 2026-01-01T00:00:00Z
const SEC: i64 = 1_000_000_000;
const HOUR: i64 = 3600 * SEC;
const DAY: i64 = 24 * HOUR;
const DAYS: i64 = 40;

async fn rows(q: &QueryEngine, sql: &str) -> Vec<String> {
    let (_, stream) = q.query("metrics", sql).await.expect(sql);
    let batches: Vec<RecordBatch> = stream.try_collect().await.expect("batches");
    pretty_format_batches(&batches)
        .expect("print")
        .to_string()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The `TierScanExec` lines of the physical plan.
async fn tiers_of(q: &QueryEngine, sql: &str) -> String {
    rows(q, &format!("EXPLAIN {sql}"))
        .await
        .iter()
        .filter_map(|l| {
            let i = l.find("TierScanExec")?;
            Some(l[i..].trim_end_matches('|').trim().to_string())
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn ts(ns: i64) -> String {
    let d = chrono::DateTime::from_timestamp(ns.div_euclid(SEC), 0).expect("time");
    format!("TIMESTAMP '{}'", d.format("%Y-%m-%dT%H:%M:%S"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bucketed_aggregates_come_from_the_coarsest_exact_tier() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = ManualClock::new(T0 + DAYS * DAY);
    let mut c = EngineConfig::for_test(dir.path());
    c.persist_interval = Duration::from_secs(3600);
    c.rollup_interval = Duration::from_secs(3600);
    c.chunk_duration = Duration::from_secs(6 * 3600);
    c.warm_window = Duration::from_secs(6 * 3600);
    c.rollup_settle = Duration::from_secs(3600);
    // Raw data kept for a year at first, so the raw answers can be computed.
    c.hot_retention = Duration::from_secs(365 * 24 * 3600);
    let engine = Engine::open(c, Arc::clone(&clock) as _)
        .await
        .expect("open")
        .0;
    // The coarsest exact tiers always answer here, so each shape below is answered from
    // the rollups it names; choosing by cost comes last.
    let coarsest = QueryConfig {
        tier_costs: false,
        ..QueryConfig::default()
    };
    let q = QueryEngine::new(Arc::clone(&engine), coarsest).expect("queries");
    let mut points = Vec::new();
    for (hi, host) in ["a", "b"].into_iter().enumerate() {
        let mut t = T0;
        let mut i = hi as i64 * 17;
        while t < T0 + DAYS * DAY {
            points.push(Point {
                table: "cpu".into(),
                tags: vec![("host".into(), host.into())].into(),
                fields: vec![
                    (
                        "usage".into(),
                        FieldValue::F64((i * 37 % 101) as f64 + 0.25),
                    ),
                    ("procs".into(), FieldValue::I64(i * 13 % 50)),
                ],
                time: t,
                line: 1,
            });
            t += 10 * SEC;
            i += 1;
        }
    }
    engine
        .write("metrics", points, WriteOptions::default())
        .await
        .expect("write");
    engine.persist(true).await.expect("persist");
    let now = T0 + DAYS * DAY + 2 * HOUR;
    clock.set(now);

    let aggs = "min(usage) AS lo, max(usage) AS hi, avg(usage) AS mean, sum(usage) AS total, \
                count(usage) AS n, max(procs) AS p, sum(procs) AS ps";
    let queries = [
        (
            "1-hour range by minute",
            format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS t, host, {aggs} FROM cpu \
                 WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
                ts(T0 + 39 * DAY + 10 * HOUR),
                ts(T0 + 39 * DAY + 11 * HOUR)
            ),
            vec![Tier::Warm],
        ),
        (
            "30-day range by hour",
            format!(
                "SELECT date_trunc('hour', time) AS t, host, {aggs} FROM cpu \
                 WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
                ts(now - 30 * DAY),
                ts(now)
            ),
            vec![Tier::Cold],
        ),
        (
            "1-year range by day",
            format!(
                "SELECT date_trunc('day', time) AS t, {aggs} FROM cpu \
                 WHERE time >= {} AND host = 'a' GROUP BY 1 ORDER BY 1",
                ts(now - 365 * DAY)
            ),
            vec![Tier::Cold],
        ),
        (
            "unaligned edge",
            format!(
                "SELECT date_bin(INTERVAL '1 minute', time) AS t, host, {aggs} FROM cpu \
                 WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
                ts(T0 + 36 * DAY + 30 * SEC),
                ts(T0 + 37 * DAY)
            ),
            vec![Tier::Hot, Tier::Warm],
        ),
        (
            "minute buckets over 40 days: raw edge, warm, cold middle",
            format!(
                "SELECT date_trunc('hour', time) AS t, count(usage) AS n, avg(procs) AS p FROM cpu \
                 WHERE time >= {} GROUP BY 1 ORDER BY 1",
                ts(T0 + 35 * DAY + 30 * 60 * SEC + 10 * SEC)
            ),
            vec![Tier::Hot, Tier::Warm, Tier::Cold],
        ),
        (
            "an end inside a minute: warm up to the minute, raw rows after",
            format!(
                "SELECT date_trunc('hour', time) AS t, host, {aggs} FROM cpu \
                 WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
                ts(T0 + 38 * DAY + 10 * HOUR + 5 * 60 * SEC),
                ts(T0 + 38 * DAY + 10 * HOUR + 30 * 60 * SEC + 30 * SEC)
            ),
            vec![Tier::Warm, Tier::Hot],
        ),
        (
            "first and last by hour over 40 days: raw edge, warm, cold",
            format!(
                "SELECT date_trunc('hour', time) AS t, host, \
                 first_value(usage ORDER BY time) IGNORE NULLS AS first, \
                 last_value(usage ORDER BY time) IGNORE NULLS AS last, \
                 first_value(procs ORDER BY time DESC) IGNORE NULLS AS newest, \
                 max(usage) AS hi FROM cpu \
                 WHERE time >= {} GROUP BY 1, 2 ORDER BY 1, 2",
                ts(T0 + 35 * DAY + 30 * 60 * SEC + 10 * SEC)
            ),
            vec![Tier::Hot, Tier::Warm, Tier::Cold],
        ),
        (
            "first with nulls respected: the rollups cannot tell, raw rows only",
            format!(
                "SELECT date_trunc('hour', time) AS t, first_value(usage ORDER BY time) AS first \
                 FROM cpu WHERE time >= {} AND time < {} AND host = 'a' GROUP BY 1 ORDER BY 1",
                ts(T0 + 38 * DAY),
                ts(T0 + 39 * DAY)
            ),
            vec![Tier::Hot],
        ),
        (
            "a time filter the rollups cannot apply (OR): raw rows only",
            format!(
                "SELECT date_trunc('hour', time) AS t, {aggs} FROM cpu \
                 WHERE (time < {} OR time >= {}) AND time >= {} AND time < {} \
                 GROUP BY 1 ORDER BY 1",
                ts(T0 + 38 * DAY + 10 * HOUR + 30 * 60 * SEC),
                ts(T0 + 38 * DAY + 11 * HOUR + 15 * 60 * SEC),
                ts(T0 + 38 * DAY + 9 * HOUR),
                ts(T0 + 38 * DAY + 13 * HOUR)
            ),
            vec![Tier::Hot],
        ),
    ];
    // Raw answers, before any rollup exists.
    let mut raw = Vec::new();
    for (name, sql, _) in &queries {
        let r = rows(&q, sql).await;
        assert!(r.len() > 5, "{name}: {r:?}");
        let plan = tiers_of(&q, sql).await;
        assert!(plan.contains("tiers=[hot]"), "{name}: {plan}");
        raw.push(r);
    }

    // Roll everything up, then shorten the raw tier's retention at run time: raw data
    // older than 7 days leaves.
    loop {
        let r = engine.maintain_tiers().await.expect("maintain");
        if r.windows == 0 {
            break;
        }
    }
    let r = rows(&q, "ALTER DATABASE metrics SET RETENTION hot = '7d'").await;
    assert!(
        r.iter()
            .any(|l| l.contains("| hot  | 7d        | database ")),
        "{r:?}"
    );
    let r = engine.maintain_tiers().await.expect("maintain");
    assert!(r.files_expired > 100, "{r:?}");

    let mut plans = Vec::new();
    for ((name, sql, want), raw) in queries.iter().zip(&raw) {
        let got = rows(&q, sql).await;
        if &got != raw {
            let diff: Vec<_> = got
                .iter()
                .zip(raw)
                .filter(|(a, b)| a != b)
                .take(3)
                .collect();
            panic!(
                "{name}: {} vs {} rows; first differences {diff:?}",
                got.len(),
                raw.len()
            );
        }
        let plan = tiers_of(&q, sql).await;
        if want == &[Tier::Hot] {
            assert!(
                !plan.contains("tiers=[warm]") && !plan.contains("tiers=[cold]"),
                "{name} must not read rollups: {plan}"
            );
        }
        for tier in want {
            assert!(
                plan.contains(&format!("tiers=[{}]", tier.name())),
                "{name} should read {}: {plan}",
                tier.name()
            );
        }
        plans.push(format!("-- {name}\n{plan}"));
    }
    insta::assert_snapshot!("tier_plans", plans.join("\n"));

    // system.queries keeps what each query's scans chose.
    let by_day = format!(
        "SELECT date_trunc('day', time) AS d, max(usage) AS m FROM cpu \
         WHERE time >= {} AND host = 'a' GROUP BY 1 -- the log check",
        ts(now - 365 * DAY)
    );
    rows(&q, &by_day).await;
    let r = rows(
        &q,
        "SELECT plan, tiers, files_read, files_pruned, hot_chunks FROM system.queries \
         WHERE query LIKE '%-- the log check' ORDER BY started DESC LIMIT 1",
    )
    .await;
    assert_eq!(
        r.get(3)
            .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" ")),
        Some("| scan | cold | 6 | 28 | 0 |".to_string()),
        "{r:?}"
    );

    // The rollup tiers are tables of their own, and system.tiers shows the policy.
    let r = rows(
        &q,
        &format!(
            "SELECT host, usage_min, usage_max, usage_count FROM rollup_1h.cpu \
             WHERE time = {} ORDER BY host",
            ts(T0 + 3 * DAY)
        ),
    )
    .await;
    assert_eq!(r.len(), 6, "{r:?}");
    assert!(r[3].contains("| 360 "), "{r:?}");
    let r = rows(
        &q,
        "SELECT tier, resolution, retention, retention_set_by, files > 0 AS has_files \
         FROM system.tiers ORDER BY tier",
    )
    .await;
    insta::assert_snapshot!("system_tiers", r.join("\n"));

    // By cost (a second query engine, so last: `system.queries` is now its log). Raw rows
    // are kept for the last 7 days, so they could answer both queries below alone.
    let by_cost = QueryEngine::new(Arc::clone(&engine), QueryConfig::default()).expect("queries");
    let version = engine.catalog_snapshot().version;
    tokio::time::timeout(Duration::from_secs(20), by_cost.metadata_warmed(version))
        .await
        .expect("warming went through the catalog");
    // 25 minutes: raw rows alone (one scan and fewer files than warm and raw edges).
    let short = &queries[5].1;
    let plan = tiers_of(&by_cost, short).await;
    assert!(
        plan.contains("tiers=[hot]") && !plan.contains("tiers=[warm]"),
        "{short}: {plan}"
    );
    // Six days by hour: the cold tier (a 360th of the rows) and raw edges.
    let long = format!(
        "SELECT date_trunc('hour', time) AS t, host, {aggs} FROM cpu \
         WHERE time >= {} AND time < {} GROUP BY 1, 2 ORDER BY 1, 2",
        ts(T0 + 33 * DAY + 7 * HOUR + 30 * SEC),
        ts(T0 + 39 * DAY + 7 * HOUR)
    );
    let plan = tiers_of(&by_cost, &long).await;
    assert!(plan.contains("tiers=[cold]"), "{long}: {plan}");
    for sql in [short, &long] {
        let want = rows(&q, sql).await;
        assert!(want.len() > 5, "{want:?}");
        assert_eq!(rows(&by_cost, sql).await, want, "{sql}");
    }
}
