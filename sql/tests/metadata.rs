//! Flight SQL metadata answers, snapshotted: what JDBC, ADBC and Grafana see before they
//! send SQL. The service runs in-process on a free port; arrow-rs's Flight SQL client
//! asks. Review snapshot changes in the diff (`cargo insta review` or `INSTA_UPDATE`).

use std::sync::Arc;

use arrow::array::{BinaryArray, RecordBatch};
use arrow::util::pretty::pretty_format_batches;
use arrow_flight::FlightInfo;
use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::{
    CommandGetDbSchemas, CommandGetPrimaryKeys, CommandGetTables, CommandGetXdbcTypeInfo, SqlInfo,
};
use futures::TryStreamExt;
use strata_engine::clock::{Clock, SystemClock};
use strata_engine::{Engine, EngineConfig, FieldValue, Point, WriteOptions};
use strata_sql::{QueryConfig, QueryEngine};
use tonic::transport::Channel;

async fn fetch(c: &mut FlightSqlServiceClient<Channel>, info: FlightInfo) -> Vec<RecordBatch> {
    let mut out = Vec::new();
    for ep in info.endpoint {
        let stream = c.do_get(ep.ticket.expect("ticket")).await.expect("do_get");
        out.extend(stream.try_collect::<Vec<_>>().await.expect("batches"));
    }
    out
}

fn print(batches: &[RecordBatch]) -> String {
    pretty_format_batches(batches).expect("print").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metadata_commands_snapshot() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), Arc::new(SystemClock))
        .await
        .expect("engine");
    let now = SystemClock.now_ns();
    let point = |table: &str, tag: &str, fields: Vec<(&str, FieldValue)>| Point {
        table: table.into(),
        tags: vec![(tag.into(), "x".into())].into(),
        fields: fields.into_iter().map(|(k, v)| (k.into(), v)).collect(),
        time: now,
        line: 1,
    };
    engine
        .write(
            "fleet",
            vec![
                point(
                    "cpu",
                    "host",
                    vec![
                        ("usage", FieldValue::F64(1.0)),
                        ("cores", FieldValue::I64(4)),
                    ],
                ),
                point("disk", "device", vec![("used", FieldValue::U64(7))]),
            ],
            WriteOptions::default(),
        )
        .await
        .expect("write");
    let q = QueryEngine::new(engine, QueryConfig::default()).expect("query engine");
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let addr = listener.local_addr().expect("addr");
    let svc = strata_sql::flight::service(q).expect("service");
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(svc)
            .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener)),
    );
    let channel = Channel::from_shared(format!("http://{addr}"))
        .expect("uri")
        .connect()
        .await
        .expect("connect");
    let mut c = FlightSqlServiceClient::new(channel);

    let info = c.get_catalogs().await.expect("catalogs");
    insta::assert_snapshot!("catalogs", print(&fetch(&mut c, info).await));

    let info = c
        .get_db_schemas(CommandGetDbSchemas {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: None,
        })
        .await
        .expect("schemas");
    insta::assert_snapshot!("db_schemas", print(&fetch(&mut c, info).await));

    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: None,
            table_name_filter_pattern: None,
            table_types: vec![],
            include_schema: false,
        })
        .await
        .expect("tables");
    let tables = fetch(&mut c, info).await;
    insta::assert_snapshot!("tables", print(&tables));

    // With schemas: decode each table's IPC schema into "name: type" lines.
    let info = c
        .get_tables(CommandGetTables {
            catalog: Some("fleet".into()),
            db_schema_filter_pattern: Some("public".into()),
            table_name_filter_pattern: None,
            table_types: vec!["TABLE".into()],
            include_schema: true,
        })
        .await
        .expect("tables with schemas");
    let b = fetch(&mut c, info).await;
    let mut described = String::new();
    for batch in &b {
        let schemas = batch
            .column(4)
            .as_any()
            .downcast_ref::<BinaryArray>()
            .expect("binary table_schema");
        let names = batch
            .column(2)
            .as_any()
            .downcast_ref::<arrow::array::StringArray>()
            .expect("table_name");
        for i in 0..batch.num_rows() {
            let schema = arrow::ipc::convert::try_schema_from_ipc_buffer(schemas.value(i))
                .expect("ipc schema");
            described.push_str(&format!("{}\n", names.value(i)));
            for f in schema.fields() {
                described.push_str(&format!(
                    "  {}: {} (nullable: {})\n",
                    f.name(),
                    f.data_type(),
                    f.is_nullable()
                ));
            }
        }
    }
    insta::assert_snapshot!("tables_with_schemas", described);

    let info = c.get_table_types().await.expect("table types");
    insta::assert_snapshot!("table_types", print(&fetch(&mut c, info).await));

    let info = c
        .get_sql_info(vec![
            SqlInfo::FlightSqlServerName,
            SqlInfo::FlightSqlServerReadOnly,
            SqlInfo::FlightSqlServerSql,
            SqlInfo::FlightSqlServerSubstrait,
            SqlInfo::FlightSqlServerTransaction,
            SqlInfo::SqlDdlTable,
            SqlInfo::SqlIdentifierCase,
            SqlInfo::SqlIdentifierQuoteChar,
            SqlInfo::SqlQuotedIdentifierCase,
            SqlInfo::SqlNullOrdering,
            SqlInfo::SqlSearchStringEscape,
            SqlInfo::SqlCatalogTerm,
            SqlInfo::SqlSchemaTerm,
            SqlInfo::SqlTransactionsSupported,
            SqlInfo::SqlSupportedUnions,
        ])
        .await
        .expect("sql info");
    insta::assert_snapshot!("sql_info", print(&fetch(&mut c, info).await));

    // The full set answers too (keywords and function lists from the live registry).
    let info = c.get_sql_info(vec![]).await.expect("all sql info");
    let all = fetch(&mut c, info).await;
    let n: usize = all.iter().map(RecordBatch::num_rows).sum();
    assert!(n >= 80, "only {n} SqlInfo entries");
    let printed = print(&all);
    for expected in ["date_bin", "abs", "upper", "SELECT"] {
        assert!(
            printed.contains(expected),
            "{expected} missing from SqlInfo"
        );
    }

    let info = c
        .get_xdbc_type_info(CommandGetXdbcTypeInfo { data_type: None })
        .await
        .expect("xdbc");
    insta::assert_snapshot!("xdbc_type_info", print(&fetch(&mut c, info).await));

    let info = c
        .get_primary_keys(CommandGetPrimaryKeys {
            catalog: Some("fleet".into()),
            db_schema: Some("public".into()),
            table: "cpu".into(),
        })
        .await
        .expect("primary keys");
    let schema = info.clone().try_decode_schema().expect("schema");
    let keys = fetch(&mut c, info).await;
    assert_eq!(keys.iter().map(RecordBatch::num_rows).sum::<usize>(), 0);
    let fields: Vec<String> = schema
        .fields()
        .iter()
        .map(|f| {
            format!(
                "{}: {} (nullable: {})",
                f.name(),
                f.data_type(),
                f.is_nullable()
            )
        })
        .collect();
    insta::assert_snapshot!("primary_keys_schema", fields.join("\n"));
}
