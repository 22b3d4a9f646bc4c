//! The TSBS harness's smoke configuration (a few hosts, one hour, no peers timed), so the
//! benchmark never rots: the real binary is loaded over HTTP, every query type runs through
//! the ADBC Flight SQL driver, and every answer must equal DuckDB's on the same data.

use strata_benchmarks::tsbs::{self, Compare, Options, data::Values};

use super::clients::python;

fn smoke(dir: &std::path::Path, values: Values, hosts: usize) -> Options {
    Options {
        hosts,
        hours: 1,
        seed: 11,
        values,
        batch_size: 1000,
        workers: 2,
        runs: 2,
        compare: Compare::default(),
        strata: Some(env!("CARGO_BIN_EXE_strata").into()),
        persist_age: "1s".into(),
        python: Some(python()),
        work_dir: Some(dir.join("work")),
        report: Some(dir.join("report.md")),
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn tsbs_smoke_every_query_type_equals_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (outcome, report) = tsbs::run(&smoke(dir.path(), Values::Int, 8))
        .await
        .expect("the smoke run");
    assert_eq!(outcome.rows, 8 * 360);
    assert!(
        outcome.strata_persisted.0 >= 6,
        "{:?}",
        outcome.strata_persisted
    );
    // At rest: the hour's six chunk files are one file, and the hour is rolled up into
    // one row per host and minute (the cold tier rolls up whole days).
    let tier = |name: &str| {
        outcome
            .strata_tiers
            .iter()
            .find(|t| t.0 == name)
            .map(|t| (t.1, t.2))
    };
    assert_eq!(
        tier("hot"),
        Some((1, 8 * 360)),
        "{:?}",
        outcome.strata_tiers
    );
    assert_eq!(tier("warm").map(|t| t.1), Some(8 * 60));
    let names: Vec<&str> = outcome.queries.iter().map(|q| q.name.as_str()).collect();
    assert_eq!(names, tsbs::queries::NAMES, "every query type ran");
    for q in &outcome.queries {
        assert_eq!(q.checked, 2, "{}: both runs equal to DuckDB", q.name);
        let strata = &q.engines["strata"];
        assert!(strata.error.is_none(), "{}: {:?}", q.name, strata.error);
        let flight = &q.engines[tsbs::STRATA_FLIGHT];
        assert!(flight.error.is_none(), "{}: {:?}", q.name, flight.error);
        assert_eq!(
            flight.rows, strata.rows,
            "{}: the same answer both ways",
            q.name
        );
    }
    let lastpoint = outcome
        .queries
        .iter()
        .find(|q| q.name == "lastpoint")
        .expect("lastpoint");
    assert_eq!(lastpoint.engines["strata"].rows, 8, "one row per host");
    let text = std::fs::read_to_string(report).expect("report");
    assert!(text.contains("| `double-groupby-all` |"), "{text}");
    assert!(text.contains("## Ingest"), "{text}");
    assert!(
        text.contains("| query | Strata | Strata, 2 RPCs |"),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn tsbs_smoke_float_values_equal_duckdb() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (outcome, _) = tsbs::run(&smoke(dir.path(), Values::Float, 3))
        .await
        .expect("the smoke run");
    assert_eq!(outcome.rows, 3 * 360);
    assert!(
        outcome.queries.iter().all(|q| q.checked == 2),
        "{:?}",
        outcome.queries
    );
}
