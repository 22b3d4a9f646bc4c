//! The PostgreSQL wire protocol against the real binary: tokio-postgres (simple and
//! extended protocol), psql (`\dt`, `\d cpu`, a query) and psycopg 3.

use std::process::Command;

use tokio_postgres::types::Type;
use tokio_postgres::{Client, NoTls, SimpleQueryMessage};

use super::clients::run_script;
use super::flight::write_fleet;
use super::server::Server;

/// A tokio-postgres client of database `db` at `addr` (`host:port`).
pub(super) async fn connect(addr: &str, db: &str) -> Result<Client, tokio_postgres::Error> {
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let (client, conn) = tokio_postgres::connect(
        &format!("host={host} port={port} user=strata dbname={db} connect_timeout=10"),
        NoTls,
    )
    .await?;
    tokio::spawn(async move {
        let _ = conn.await;
    });
    Ok(client)
}

/// The text rows of a simple query.
async fn simple(c: &Client, sql: &str) -> Vec<Vec<Option<String>>> {
    c.simple_query(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"))
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(r) => {
                Some((0..r.len()).map(|i| r.get(i).map(str::to_string)).collect())
            }
            _ => None,
        })
        .collect()
}

fn code(e: &tokio_postgres::Error) -> String {
    e.as_db_error()
        .map(|d| d.code().code().to_string())
        .unwrap_or_else(|| panic!("not a server error: {e}"))
}

#[tokio::test]
async fn tokio_postgres_simple_and_extended() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await;
    let c = connect(&s.pg, "fleet").await.expect("connect");

    // Simple protocol.
    let rows = simple(
        &c,
        "SELECT host, avg(usage) AS a FROM cpu GROUP BY host ORDER BY host",
    )
    .await;
    assert_eq!(
        rows,
        [
            [Some("a".to_string()), Some("4.5".to_string())],
            [Some("b".to_string()), Some("14.5".to_string())]
        ]
    );
    // Empty queries, transactions as no-ops, SET echoed and SHOW answered.
    c.batch_execute(";").await.expect("empty query");
    c.batch_execute("-- ping").await.expect("comment only");
    c.batch_execute("BEGIN; SELECT 1; COMMIT")
        .await
        .expect("transaction");
    c.batch_execute("BEGIN; ROLLBACK").await.expect("rollback");
    c.batch_execute("SET application_name = 'dashboards'")
        .await
        .expect("set");
    assert_eq!(
        simple(&c, "SHOW application_name").await,
        [[Some("dashboards".to_string())]]
    );
    let v = simple(&c, "SHOW server_version").await;
    assert!(
        v[0][0].as_deref().is_some_and(|v| v.starts_with("15.")),
        "{v:?}"
    );
    assert_eq!(
        simple(&c, "SHOW DateStyle").await,
        [[Some("ISO, MDY".to_string())]]
    );
    let v = simple(&c, "SELECT version()").await;
    assert!(
        v[0][0]
            .as_deref()
            .is_some_and(|v| v.starts_with("PostgreSQL 15.")),
        "{v:?}"
    );

    // Extended protocol: types, a bound parameter, timestamps as `timestamp` (1114).
    let stmt = c
        .prepare(
            "SELECT host, avg(usage) AS a, max(time) AS t, count(*) AS n, max(cores) AS cores, \
             true AS ok, arrow_cast(5, 'UInt64') AS big FROM cpu WHERE host = $1 GROUP BY host",
        )
        .await
        .expect("prepare");
    let types: Vec<&Type> = stmt.columns().iter().map(|c| c.type_()).collect();
    assert_eq!(
        types,
        [
            &Type::TEXT,
            &Type::FLOAT8,
            &Type::TIMESTAMP,
            &Type::INT8,
            &Type::INT8,
            &Type::BOOL,
            &Type::NUMERIC
        ]
    );
    assert_eq!(stmt.params(), [Type::TEXT]);
    let row = c
        .query_one(
            "SELECT host, avg(usage) AS a, max(time) AS t, count(*) AS n FROM cpu \
             WHERE host = $1 GROUP BY host",
            &[&"b"],
        )
        .await
        .expect("query");
    assert_eq!(row.get::<_, String>(0), "b");
    assert_eq!(row.get::<_, f64>(1), 14.5);
    let t: chrono::NaiveDateTime = row.get(2);
    assert_eq!(
        t.and_utc().timestamp_nanos_opt(),
        Some(start + 9_000_000_000)
    );
    assert_eq!(row.get::<_, i64>(3), 10);

    // Grafana's PostgreSQL macros ($__timeFilter, $__timeGroup) as they expand.
    let from = chrono::DateTime::from_timestamp_nanos(start).to_rfc3339();
    let to = chrono::DateTime::from_timestamp_nanos(start + 9_000_000_000).to_rfc3339();
    let rows = simple(
        &c,
        &format!(
            "SELECT floor(extract(epoch from time)/5)*5 AS \"time\", avg(usage) AS usage \
             FROM cpu WHERE time BETWEEN '{from}' AND '{to}' AND host = 'a' GROUP BY 1 ORDER BY 1"
        ),
    )
    .await;
    let avgs: Vec<f64> = rows
        .iter()
        .map(|r| r[1].as_deref().and_then(|v| v.parse().ok()).expect("float"))
        .collect();
    assert_eq!(avgs, [2.0, 7.0]);

    // A placeholder whose type nothing tells is text, as in PostgreSQL.
    let stmt = c.prepare("SELECT $1 AS x").await.expect("prepare untyped");
    assert_eq!(stmt.params(), [Type::TEXT]);
    let row = c
        .query_one(&stmt, &[&"hello"])
        .await
        .expect("untyped param");
    assert_eq!(row.get::<_, String>(0), "hello");

    // Grafana's PostgreSQL data source: version probe and query-builder metadata.
    assert_eq!(
        simple(
            &c,
            "SELECT current_setting('server_version_num')::int/100 AS version"
        )
        .await,
        [[Some("1510".to_string())]]
    );
    let search_path = "quote_ident(table_schema) IN (SELECT CASE WHEN trim(s[i]) = '\"$user\"' \
        THEN user ELSE trim(s[i]) END FROM generate_series(\
        array_lower(string_to_array(current_setting('search_path'),','),1), \
        array_upper(string_to_array(current_setting('search_path'),','),1)) AS i, \
        string_to_array(current_setting('search_path'),',') s)";
    let tables = simple(
        &c,
        &format!(
            "SELECT CASE WHEN {search_path} THEN quote_ident(table_name) \
             ELSE quote_ident(table_schema) || '.' || quote_ident(table_name) END AS \"table\" \
             FROM information_schema.tables \
             WHERE quote_ident(table_schema) NOT IN ('information_schema', 'pg_catalog') \
             ORDER BY CASE WHEN {search_path} THEN 0 ELSE 1 END, 1"
        ),
    )
    .await;
    assert_eq!(tables[0][0].as_deref(), Some("cpu"), "{tables:?}");
    let columns = simple(
        &c,
        &format!(
            "SELECT quote_ident(column_name) AS \"column\", data_type AS \"type\" \
             FROM information_schema.columns WHERE \
             CASE WHEN array_length(parse_ident('cpu'),1) = 2 \
               THEN quote_ident(table_schema) = (parse_ident('cpu'))[1] \
                 AND quote_ident(table_name) = (parse_ident('cpu'))[2] \
               ELSE quote_ident(table_name) = 'cpu' AND {search_path} END"
        ),
    )
    .await;
    let names: Vec<&str> = columns.iter().filter_map(|r| r[0].as_deref()).collect();
    assert_eq!(names, ["host", "time", "usage", "cores"], "{columns:?}");
    let types: Vec<&str> = columns.iter().filter_map(|r| r[1].as_deref()).collect();
    assert_eq!(
        types,
        [
            "text",
            "timestamp without time zone",
            "double precision",
            "bigint"
        ]
    );

    // Errors carry a SQLSTATE; the connection survives them.
    let e = c.simple_query("SELEC 1").await.expect_err("syntax");
    assert_eq!(code(&e), "42601");
    let e = c
        .query("SELECT * FROM nope", &[])
        .await
        .expect_err("no table");
    assert_eq!(code(&e), "42P01");
    let e = c
        .simple_query("DROP TABLE cpu")
        .await
        .expect_err("read-only");
    assert!(
        ["25006", "0A000", "42000"].contains(&code(&e).as_str()),
        "{e}"
    );
    assert_eq!(
        simple(&c, "SELECT count(*) FROM cpu").await,
        [[Some("20".to_string())]]
    );

    // The database must exist.
    let Err(e) = connect(&s.pg, "nowhere").await else {
        panic!("connecting to an unknown database must fail");
    };
    assert_eq!(code(&e), "3D000");
}

#[tokio::test]
async fn psql_and_psycopg() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await;
    let (host, port) = s.pg.rsplit_once(':').expect("host:port");
    let psql = |cmd: &str| {
        let out = Command::new("psql")
            .args([
                "-X",
                "-v",
                "ON_ERROR_STOP=1",
                "-h",
                host,
                "-p",
                port,
                "-U",
                "strata",
            ])
            .args(["-d", "fleet", "-c", cmd])
            .env("PGCONNECT_TIMEOUT", "10")
            .output()
            .expect("psql (the postgresql-client package) must be installed");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert!(out.status.success(), "psql {cmd}: {stdout}\n{stderr}");
        assert!(!stderr.contains("WARNING"), "psql {cmd}: {stderr}");
        stdout
    };
    let dt = psql("\\dt");
    assert!(
        dt.contains("public") && dt.contains("cpu") && dt.contains("table"),
        "{dt}"
    );
    let d = psql("\\d cpu");
    for needle in [
        "Table \"public.cpu\"",
        "host",
        "text",
        "time",
        "timestamp without time zone",
        "usage",
        "double precision",
        "cores",
        "bigint",
    ] {
        assert!(d.contains(needle), "missing {needle:?} in:\n{d}");
    }
    let q = psql("SELECT host, sum(usage) AS s FROM cpu GROUP BY host ORDER BY host");
    assert!(
        q.contains(" a    |  45") && q.contains(" b    | 145"),
        "{q}"
    );

    run_script("pg_clients.py", &[&s.pg, &start.to_string()]);
}
