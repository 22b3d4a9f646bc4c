//! Arrow Flight SQL against the real binary with arrow-rs's `FlightSqlServiceClient`:
//! handshake, statements, prepared statements with a bound parameter, every metadata
//! command, InfluxDB 3's JSON ticket, gRPC on the HTTP port, error codes.

use std::sync::Arc;

use arrow::array::{
    Array, BinaryArray, Float64Array, Int64Array, RecordBatch, StringArray, UInt32Array,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use arrow_flight::decode::FlightRecordBatchStream;
use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{CommandGetDbSchemas, CommandGetTables, SqlInfo};
use arrow_flight::{FlightInfo, HandshakeRequest, Ticket};
use futures::TryStreamExt;
use tonic::transport::Channel;

use super::server::Server;

async fn client(addr: &str, database: &str) -> FlightSqlServiceClient<Channel> {
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut c = FlightSqlServiceClient::new(channel);
    c.set_header("database", database);
    c
}

/// Every batch of every endpoint, checking each against the advertised schema.
async fn fetch(c: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    assert_eq!(info.endpoint.len(), 1, "exactly one endpoint");
    let advertised = info
        .clone()
        .try_decode_schema()
        .expect("schema in FlightInfo");
    let mut out = Vec::new();
    for ep in info.endpoint {
        let ticket = ep.ticket.expect("ticket");
        let batches: Vec<RecordBatch> = c
            .do_get(ticket)
            .await
            .expect("do_get")
            .try_collect()
            .await
            .expect("stream");
        for b in &batches {
            assert_eq!(
                b.schema().as_ref(),
                &advertised,
                "batch schema = advertised"
            );
        }
        out.extend(batches);
    }
    out
}

async fn sql(c: &mut FlightSqlServiceClient<Channel>, q: &str) -> Vec<RecordBatch> {
    let info = c.execute(q.to_string(), None).await.expect(q);
    fetch(c, info).await
}

fn strings(b: &RecordBatch, col: usize) -> Vec<String> {
    let a = b
        .column(col)
        .as_any()
        .downcast_ref::<StringArray>()
        .expect("utf8 column");
    (0..a.len()).map(|i| a.value(i).to_string()).collect()
}

fn floats(b: &RecordBatch, col: usize) -> Vec<f64> {
    let a = b
        .column(col)
        .as_any()
        .downcast_ref::<Float64Array>()
        .expect("f64 column");
    a.values().to_vec()
}

fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(RecordBatch::num_rows).sum()
}

fn code_of(e: arrow_flight::error::FlightError) -> tonic::Code {
    match e {
        arrow_flight::error::FlightError::Tonic(status) => {
            assert!(!status.message().is_empty(), "a message with the code");
            status.code()
        }
        other => panic!("not a gRPC status: {other}"),
    }
}

/// `cpu` in database `fleet`: hosts a and b, 10 points one second apart from the
/// returned start (an hour ago, a multiple of 10 s), usage = i (a) and 10 + i (b).
pub(super) async fn write_fleet(s: &Server) -> i64 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .expect("clock")
        .as_secs() as i64;
    let start = (now - 3600) / 10 * 10 * 1_000_000_000;
    let mut lp = String::new();
    for i in 0..10i64 {
        let t = start + i * 1_000_000_000;
        lp.push_str(&format!("cpu,host=a usage={i}.0,cores=4i {t}\n"));
        lp.push_str(&format!("cpu,host=b usage={}.0,cores=8i {t}\n", 10 + i));
    }
    write(s, lp).await;
    start
}

/// Writes line protocol to database `fleet`, which must accept it.
async fn write(s: &Server, lp: String) {
    let r = s.write_lp("fleet", lp).await;
    assert!(r.status().is_success(), "{:?}", r.text().await);
}

fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

#[tokio::test]
async fn statements_prepared_statements_and_errors() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await;
    let mut c = client(&s.flight, "fleet").await;

    // Handshake with Basic credentials: one response message and a bearer token.
    let payload = c.handshake("alice", "secret").await.expect("handshake");
    let token = c
        .token()
        .cloned()
        .expect("bearer token in the authorization header");
    assert_eq!(payload, token.as_bytes());

    // A statement: schema normalised (tags are Utf8, not dictionaries), values right.
    let b = sql(
        &mut c,
        "SELECT host, count(*) AS n, avg(usage) AS avg, max(time) AS last \
         FROM cpu GROUP BY host ORDER BY host",
    )
    .await;
    assert_eq!(rows(&b), 2);
    let schema = b[0].schema();
    assert_eq!(schema.field(0).data_type(), &DataType::Utf8);
    assert_eq!(
        schema.field(3).data_type(),
        &DataType::Timestamp(TimeUnit::Nanosecond, None)
    );
    assert!(schema.fields().iter().all(|f| f.is_nullable()));
    assert_eq!(strings(&b[0], 0), ["a", "b"]);
    assert_eq!(floats(&b[0], 2), [4.5, 14.5]);

    // SELECT 1 without FROM, on the default database before anything was written to it.
    let mut m = client(&s.flight, "metrics").await;
    let b = sql(&mut m, "SELECT 1 AS one").await;
    assert_eq!(rows(&b), 1);

    // Prepared statement with a bound parameter.
    let mut p = c
        .prepare(
            "SELECT avg(usage) AS avg, count(*) AS n FROM cpu WHERE host = $1".to_string(),
            None,
        )
        .await
        .expect("prepare");
    let ds = p.dataset_schema().expect("dataset schema").clone();
    assert_eq!(ds.fields().len(), 2, "real dataset schema: {ds:?}");
    assert_eq!(ds.field(0).name(), "avg");
    let ps = p.parameter_schema().expect("parameter schema").clone();
    assert_eq!(ps.fields().len(), 1);
    assert_eq!(ps.field(0).data_type(), &DataType::Utf8);
    let param = RecordBatch::try_new(
        Arc::new(Schema::new(vec![Field::new("$1", DataType::Utf8, true)])),
        vec![Arc::new(StringArray::from(vec!["b"]))],
    )
    .expect("param batch");
    p.set_parameters(param).expect("bind");
    let info = p.execute().await.expect("execute prepared");
    let b = fetch(&mut c, info).await;
    assert_eq!(floats(&b[0], 0), [14.5]);
    p.close().await.expect("close");

    // Without parameters too (JDBC prepares every statement).
    let mut p = c
        .prepare("SELECT count(*) AS n FROM cpu".to_string(), None)
        .await
        .expect("prepare");
    let info = p.execute().await.expect("execute");
    let b = fetch(&mut c, info).await;
    let n = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("count");
    assert_eq!(n.value(0), 20);

    // Grafana FlightSQL macros, expanded as the plugin does.
    let q = format!(
        "SELECT date_bin(interval '5 second', time, timestamp '1970-01-01T00:00:00Z') AS time, \
         avg(usage) AS usage FROM cpu \
         WHERE time >= '{}' AND time <= '{}' AND host = 'a' GROUP BY 1 ORDER BY 1",
        rfc3339(start),
        rfc3339(start + 9_000_000_000)
    );
    let b = sql(&mut c, &q).await;
    assert_eq!(floats(&b[0], 1), [2.0, 7.0]);
    let b = sql(
        &mut c,
        "SELECT datepart('year', time) AS y, datepart('month', time) AS mo, \
         datepart('day', time) AS d, datepart('hour', time) AS h, count(*) AS n \
         FROM cpu GROUP BY 1, 2, 3, 4",
    )
    .await;
    assert_eq!(rows(&b), 1);

    // Large results are cut into messages under the clients' 4 MiB limit.
    let b = sql(
        &mut c,
        "SELECT value, repeat('x', 1000) AS pad FROM generate_series(1, 20000)",
    )
    .await;
    assert_eq!(rows(&b), 20000);

    // Errors carry proper codes and DataFusion's message.
    let e = c
        .execute("SELEC 1".to_string(), None)
        .await
        .expect_err("bad SQL");
    assert_eq!(code_of(e), tonic::Code::InvalidArgument);
    let e = c
        .execute("SELECT * FROM nope".to_string(), None)
        .await
        .expect_err("unknown table");
    assert_eq!(code_of(e), tonic::Code::NotFound);
    let mut nowhere = client(&s.flight, "nowhere").await;
    let e = nowhere
        .execute("SELECT 1".to_string(), None)
        .await
        .expect_err("unknown database");
    assert_eq!(code_of(e), tonic::Code::NotFound);
    let e = c
        .execute("CREATE TABLE t (a INT)".to_string(), None)
        .await
        .expect_err("DDL");
    assert_eq!(code_of(e), tonic::Code::InvalidArgument);
    // The connection survives errors.
    assert_eq!(rows(&sql(&mut c, "SELECT 2").await), 1);
}

/// `GetFlightInfo` plans; the first `DoGet` of its ticket runs that plan, as of the
/// `GetFlightInfo`; a ticket used again plans its SQL again and sees later writes.
#[tokio::test]
async fn a_ticket_runs_the_plan_made_for_it_once() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    let start = write_fleet(&s).await;
    let mut c = client(&s.flight, "fleet").await;
    let count = |b: &[RecordBatch]| {
        b[0].column(0)
            .as_any()
            .downcast_ref::<Int64Array>()
            .expect("count")
            .value(0)
    };
    let info = c
        .execute("SELECT count(*) AS n FROM cpu".to_string(), None)
        .await
        .expect("execute");
    write(&s, format!("cpu,host=c usage=1.0 {start}\n")).await;
    assert_eq!(
        count(&fetch(&mut c, info.clone()).await),
        20,
        "as of GetFlightInfo"
    );
    assert_eq!(count(&fetch(&mut c, info).await), 21, "planned again");

    // Prepared statements: planned once when prepared; each execution runs that plan over
    // the data as of its GetFlightInfo, so a write after preparing is in the answer.
    let mut p = c
        .prepare("SELECT count(*) AS n FROM cpu".to_string(), None)
        .await
        .expect("prepare");
    write(&s, format!("cpu,host=d usage=1.0 {start}\n")).await;
    let info = p.execute().await.expect("execute");
    write(&s, format!("cpu,host=e usage=1.0 {start}\n")).await;
    assert_eq!(count(&fetch(&mut c, info).await), 22, "as of GetFlightInfo");
    let info = p.execute().await.expect("execute");
    assert_eq!(count(&fetch(&mut c, info).await), 23);
    p.close().await.expect("close");

    // A table that gained a column since preparing: its SQL is planned again.
    let mut p = c
        .prepare("SELECT * FROM cpu WHERE host = 'f'".to_string(), None)
        .await
        .expect("prepare");
    write(&s, format!("cpu,host=f usage=1.0,load=3i {start}\n")).await;
    let b = fetch(&mut c, p.execute().await.expect("execute")).await;
    assert_eq!(rows(&b), 1);
    let load = b[0].schema().index_of("load").expect("the new column");
    let load = b[0]
        .column(load)
        .as_any()
        .downcast_ref::<Int64Array>()
        .expect("integer field");
    assert_eq!(load.values().to_vec(), [3]);

    // So is a statement over what is not a metric table (copied at planning).
    let tables = "SELECT count(*) AS n FROM information_schema.tables \
                  WHERE table_schema = 'public'";
    let mut p = c.prepare(tables.to_string(), None).await.expect("prepare");
    let before = count(&fetch(&mut c, p.execute().await.expect("execute")).await);
    write(&s, format!("mem,host=a used=1i {start}\n")).await;
    let after = count(&fetch(&mut c, p.execute().await.expect("execute")).await);
    assert_eq!(after, before + 1, "the new table is listed");
}

#[tokio::test]
async fn metadata_commands() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    write_fleet(&s).await;
    let mut c = client(&s.flight, "fleet").await;

    let info = c.get_catalogs().await.expect("catalogs");
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b[0], 0), ["fleet", "metrics"]);

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .expect("schemas");
    let b = fetch(&mut c, info).await;
    assert_eq!(
        strings(&b[0], 1),
        ["information_schema", "public", "system"]
    );

    // Tables with their Arrow schemas, exactly as queries return them.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: Some("cp%".into()),
            table_types: vec![],
            include_schema: true,
        })
        .await
        .expect("tables");
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 1);
    assert_eq!(strings(&b[0], 2), ["cpu"]);
    assert_eq!(strings(&b[0], 3), ["TABLE"]);
    let ipc = b[0]
        .column(4)
        .as_any()
        .downcast_ref::<BinaryArray>()
        .expect("table_schema is Binary")
        .value(0)
        .to_vec();
    let table_schema = arrow::ipc::convert::try_schema_from_ipc_buffer(&ipc).expect("ipc schema");
    let types: Vec<(String, DataType)> = table_schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert!(
        types.contains(&("host".into(), DataType::Utf8)),
        "{types:?}"
    );
    assert!(
        types.contains(&("usage".into(), DataType::Float64)),
        "{types:?}"
    );
    assert!(
        types.contains(&(
            "time".into(),
            DataType::Timestamp(TimeUnit::Nanosecond, None)
        )),
        "{types:?}"
    );

    // Without schemas: four Utf8 columns; all schemas of the database.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec!["TABLE".into(), "SYSTEM TABLE".into()],
            include_schema: false,
        })
        .await
        .expect("tables");
    let b = fetch(&mut c, info).await;
    assert_eq!(b[0].num_columns(), 4);
    assert!(
        b[0].schema()
            .fields()
            .iter()
            .all(|f| f.data_type() == &DataType::Utf8)
    );
    let names = strings(&b[0], 2);
    assert!(names.contains(&"cpu".to_string()) && names.contains(&"tables".to_string()));

    let info = c.get_table_types().await.expect("table types");
    let b = fetch(&mut c, info).await;
    assert_eq!(strings(&b[0], 0), ["SYSTEM TABLE", "TABLE", "VIEW"]);

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::SqlIdentifierQuoteChar,
            SqlInfo::SqlKeywords,
            SqlInfo::SqlNumericFunctions,
            SqlInfo::SqlTransactionsSupported,
        ])
        .await
        .expect("sql info");
    let b = fetch(&mut c, info).await;
    assert_eq!(rows(&b), 6);
    let ids = b[0]
        .column(0)
        .as_any()
        .downcast_ref::<UInt32Array>()
        .expect("info_name");
    assert!(
        ids.values()
            .contains(&(SqlInfo::FlightSqlServerName as u32))
    );
    let printed = arrow::util::pretty::pretty_format_batches(&b)
        .expect("print")
        .to_string();
    assert!(printed.contains("Strata"), "{printed}");
    assert!(
        printed.contains("SELECT") && printed.contains("abs"),
        "{printed}"
    );

    let info = c
        .get_xdbc_type_info(Default::default())
        .await
        .expect("xdbc");
    let b = fetch(&mut c, info).await;
    assert!(strings(&b[0], 0).contains(&"TIMESTAMP".to_string()));

    for info in [
        c.get_primary_keys(arrow_flight::sql::CommandGetPrimaryKeys {
            table: "cpu".into(),
            ..Default::default()
        })
        .await
        .expect("primary keys"),
        c.get_exported_keys(arrow_flight::sql::CommandGetExportedKeys {
            table: "cpu".into(),
            ..Default::default()
        })
        .await
        .expect("exported keys"),
        c.get_imported_keys(arrow_flight::sql::CommandGetImportedKeys {
            table: "cpu".into(),
            ..Default::default()
        })
        .await
        .expect("imported keys"),
        c.get_cross_reference(arrow_flight::sql::CommandGetCrossReference {
            pk_table: "cpu".into(),
            fk_table: "cpu".into(),
            ..Default::default()
        })
        .await
        .expect("cross reference"),
    ] {
        assert_eq!(rows(&fetch(&mut c, info).await), 0);
    }
}

/// What InfluxDB 3 clients do: one address for writes and queries (gRPC on the HTTP
/// port), a JSON ticket straight to `DoGet`, a handshake with zero messages.
#[tokio::test]
async fn influxdb3_clients_on_the_http_port() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = Server::start(dir.path(), &[]).await;
    write_fleet(&s).await;

    let channel = Channel::from_shared(format!("http://{}", s.http))
        .expect("uri")
        .connect()
        .await
        .expect("connect to the HTTP port");
    let mut raw = FlightServiceClient::new(channel.clone());
    let ticket = Ticket::new(
        r#"{"database":"fleet","sql_query":"SELECT host, sum(usage) AS s FROM cpu GROUP BY host ORDER BY host","query_type":"sql"}"#,
    );
    let stream = raw.do_get(ticket).await.expect("do_get json ticket");
    let b: Vec<RecordBatch> =
        FlightRecordBatchStream::new_from_flight_data(stream.into_inner().map_err(Into::into))
            .try_collect()
            .await
            .expect("batches");
    assert_eq!(strings(&b[0], 0), ["a", "b"]);
    assert_eq!(floats(&b[0], 1), [45.0, 145.0]);

    let bad = Ticket::new(r#"{"database":"fleet","sql_query":"SELECT 1","query_type":"influxql"}"#);
    let e = raw.do_get(bad).await.expect_err("influxql");
    assert_eq!(e.code(), tonic::Code::Unimplemented);

    // Handshake with no message and a bearer token: the token comes back.
    let mut req = tonic::Request::new(futures::stream::iter(Vec::<HandshakeRequest>::new()));
    req.metadata_mut()
        .insert("authorization", "Bearer tok123".parse().expect("header"));
    let resp = raw.handshake(req).await.expect("handshake");
    assert_eq!(
        resp.metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok()),
        Some("Bearer tok123")
    );
    let msgs: Vec<_> = resp.into_inner().try_collect().await.expect("responses");
    assert_eq!(msgs.len(), 1);

    // Flight SQL proper on the HTTP port; plain HTTP still works beside it.
    let mut c = FlightSqlServiceClient::new(channel);
    c.set_header("bucket", "fleet");
    let b = sql(&mut c, "SELECT count(*) AS n FROM cpu").await;
    assert_eq!(rows(&b), 1);
    assert_eq!(
        s.query("fleet", "SELECT count(*) AS n FROM cpu")
            .await
            .len(),
        1
    );
}
