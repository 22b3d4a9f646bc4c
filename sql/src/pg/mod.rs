//! The PostgreSQL wire protocol (`pgwire`), for psql, psycopg, JDBC's PostgreSQL driver
//! and Grafana's PostgreSQL data source. Same [`QueryEngine`] as the other frontends.
//!
//! - The connection's database name selects the Strata database (unknown: `FATAL 3D000`
//!   at startup, as PostgreSQL does); metric tables are in schema `public`.
//! - SQL is parsed in PostgreSQL's dialect and rewritten for what DataFusion lacks
//!   (`OPERATOR(pg_catalog.~)`, `COLLATE`, `::regclass`, …) by `datafusion-pg-catalog`,
//!   which also provides `pg_catalog` and PostgreSQL's catalog functions ([`session`]).
//! - Simple and extended protocols; `BEGIN`/`COMMIT`/`ROLLBACK` are accepted no-ops,
//!   `SET` is kept per connection and echoed with `ParameterStatus`, `SHOW` answers.
//! - Results go through [`crate::normalize`], then `arrow-pg` maps Arrow types to
//!   PostgreSQL OIDs (timestamps 1114/1184, text, float8, int8, bool, numeric for u64) in
//!   text or binary format as the client asks.
//! - Errors carry a SQLSTATE ([`sqlstate`]) and DataFusion's message; the connection
//!   stays usable.

pub mod information_schema;
pub mod session;

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, SchemaRef};
use arrow_pg::datatypes::df::deserialize_parameters_with_server_types;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::error::DataFusionError;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use datafusion::sql::sqlparser::ast::{Expr, Set, Statement, Value};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use futures::{Sink, SinkExt, StreamExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::PortalStore;
use pgwire::api::{
    ClientInfo, ClientPortalStore, METADATA_DATABASE, METADATA_USER, PgWireServerHandlers,
    PidSecretKeyGenerator, RandomPidSecretKeyGenerator, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::ParameterStatus;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pgwire::types::format::FormatOptions;
use strata_catalog::auth::Identity;
use tokio::net::TcpListener;

use crate::commands::CommandErrorKind;
use crate::{DEFAULT_DATABASE, Error, QueryEngine, normalize};

/// Accepts PostgreSQL connections on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    query: QueryEngine,
    shutdown: impl std::future::Future<Output = ()>,
) {
    let handlers = Arc::new(Handlers {
        backend: Arc::new(Backend {
            query,
            parser: Arc::new(StatementParser {
                sql: PostgresCompatibilityParser::new(),
            }),
        }),
    });
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            accepted = listener.accept() => match accepted {
                Ok((socket, peer)) => {
                    let _ = socket.set_nodelay(true);
                    let handlers = Arc::clone(&handlers);
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, None, handlers).await {
                            tracing::debug!(%peer, error = %e, "PostgreSQL connection ended");
                        }
                    });
                }
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!(error = %e, "accepting a PostgreSQL connection failed");
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
            }
        }
    }
}

struct Handlers {
    backend: Arc<Backend>,
}

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.backend)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.backend)
    }
}

struct Backend {
    query: QueryEngine,
    parser: Arc<StatementParser>,
}

/// A connection's state, kept in the client's session extensions.
struct Connection {
    ctx: SessionContext,
    settings: session::Settings,
    #[allow(dead_code)] // read once authentication lands
    identity: Identity,
}

fn connection<C: ClientInfo + ?Sized>(client: &C) -> PgWireResult<Arc<Connection>> {
    client
        .session_extensions()
        .get::<Connection>()
        .ok_or_else(|| user_error("08003", "the connection has no session; reconnect"))
}

struct StartupParameters;

impl ServerParameterProvider for StartupParameters {
    fn server_parameters<C: ClientInfo>(&self, client: &C) -> Option<HashMap<String, String>> {
        let settings = connection(client).ok()?.settings.clone();
        let mut params = HashMap::new();
        for name in session::REPORTED {
            params.insert(name.to_string(), session::lookup(&settings, name)?);
        }
        params.insert("is_superuser".into(), "off".into());
        params.insert("in_hot_standby".into(), "off".into());
        params.insert("default_transaction_read_only".into(), "on".into());
        params.insert(
            "application_name".into(),
            session::lookup(&settings, "application_name")?,
        );
        if let Some(user) = client.metadata().get(METADATA_USER) {
            params.insert("session_authorization".into(), user.clone());
        }
        Some(params)
    }
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let PgWireFrontendMessage::Startup(startup) = message else {
            return Ok(());
        };
        protocol_negotiation(client, &startup).await?;
        save_startup_parameters_to_metadata(client, &startup);
        let user = client.metadata().get(METADATA_USER).cloned();
        // The one place PostgreSQL callers are resolved; passwords are checked here once
        // authentication lands.
        let identity = user.map_or(Identity::Anonymous, Identity::User);
        let db = client
            .metadata()
            .get(METADATA_DATABASE)
            .filter(|d| !d.is_empty())
            .cloned()
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
        // The connection's settings, by lower-case name: startup parameters, then `SET`.
        let settings: session::Settings = Arc::default();
        settings.write().extend(
            client
                .metadata()
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone())),
        );
        let ctx =
            session::connect(&self.query, &db, Arc::clone(&settings)).map_err(|e| match e {
                Error::UnknownDatabase(_) => PgWireError::UserError(Box::new(ErrorInfo::new(
                    "FATAL".into(),
                    "3D000".into(),
                    format!("database \"{db}\" does not exist"),
                ))),
                other => pg_error(&other),
            })?;
        client.session_extensions().insert(Connection {
            ctx,
            settings,
            identity,
        });
        let (pid, key) = RandomPidSecretKeyGenerator::default().generate(client);
        client.set_pid_and_secret_key(pid, key);
        finish_authentication(client, &StartupParameters).await
    }
}

/// A parsed statement: a query plan, or a session command answered here.
#[derive(Debug, Clone)]
enum PgStatement {
    Query(Box<LogicalPlan>),
    Begin,
    Commit,
    Rollback,
    Set {
        name: String,
        value: Option<String>,
    },
    Show(String),
    /// Accepted and ignored (`DISCARD ALL`, `DEALLOCATE`, …), answered with this tag.
    Ignored(&'static str),
}

/// What `classify` makes of a parsed statement before planning.
enum Classified {
    Command(PgStatement),
    Plan(Box<Statement>),
}

fn classify(stmt: Statement) -> Classified {
    let cmd = match stmt {
        Statement::StartTransaction { .. } => PgStatement::Begin,
        Statement::Commit { .. } => PgStatement::Commit,
        Statement::Rollback { .. } => PgStatement::Rollback,
        Statement::Set(set) => match set {
            Set::SingleAssignment {
                variable, values, ..
            } => PgStatement::Set {
                name: session::canonical_name(&variable.to_string()),
                value: Some(
                    values
                        .iter()
                        .map(setting_value)
                        .collect::<Vec<_>>()
                        .join(", "),
                ),
            },
            Set::SetTimeZone { value, .. } => PgStatement::Set {
                name: "TimeZone".into(),
                value: Some(setting_value(&value)),
            },
            _ => PgStatement::Set {
                name: String::new(),
                value: None,
            },
        },
        Statement::ShowVariable { variable } => {
            let words: Vec<String> = variable
                .iter()
                .map(|i| i.value.to_ascii_lowercase())
                .collect();
            let name = match words.join(" ").as_str() {
                "transaction isolation level" => "transaction_isolation".to_string(),
                "time zone" => "timezone".to_string(),
                other => other.to_string(),
            };
            PgStatement::Show(name)
        }
        Statement::Discard { .. } => PgStatement::Ignored("DISCARD ALL"),
        Statement::Deallocate { .. } => PgStatement::Ignored("DEALLOCATE"),
        other => return Classified::Plan(Box::new(other)),
    };
    Classified::Command(cmd)
}

fn setting_value(e: &Expr) -> String {
    match e {
        Expr::Value(v) => match &v.value {
            Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
            other => other.to_string(),
        },
        Expr::Identifier(i) => i.value.clone(),
        other => other.to_string(),
    }
}

struct StatementParser {
    sql: PostgresCompatibilityParser,
}

impl StatementParser {
    fn parse(&self, sql: &str) -> PgWireResult<Vec<Statement>> {
        self.sql
            .parse(&session::rewrite_grafana_search_path(sql))
            .map_err(|e| user_error("42601", format!("syntax error: {e}")))
    }
}

async fn plan(ctx: &SessionContext, stmt: Box<Statement>) -> PgWireResult<PgStatement> {
    let plan = ctx
        .state()
        .statement_to_plan(datafusion::sql::parser::Statement::Statement(stmt))
        .await
        .map_err(|e| df_error(&e))?;
    Ok(PgStatement::Query(Box::new(plan)))
}

/// The placeholders `$1, $2, …` of `plan` in order, with their inferred types.
fn parameters(plan: &LogicalPlan) -> PgWireResult<Vec<Option<DataType>>> {
    Ok(crate::ordered_parameters(plan)
        .map_err(|e| df_error(&e))?
        .into_iter()
        .map(|(_, f)| f.map(|f| f.data_type().clone()))
        .collect())
}

/// Wire types of the parameters; unknown ones are text, as in PostgreSQL.
fn parameter_types(plan: &LogicalPlan) -> PgWireResult<Vec<Type>> {
    parameters(plan)?
        .iter()
        .map(|t| match t {
            Some(t) => into_pg_type(&normalize::data_type(t)),
            None => Ok(Type::TEXT),
        })
        .collect()
}

#[async_trait]
impl QueryParser for StatementParser {
    type Statement = PgStatement;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<PgStatement>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let mut statements = self.parse(sql)?;
        if statements.len() > 1 {
            return Err(user_error(
                "42601",
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(stmt) = statements.pop() else {
            return Ok(None);
        };
        match classify(stmt) {
            Classified::Command(c) => Ok(Some(c)),
            Classified::Plan(stmt) => {
                let conn = connection(client)?;
                plan(&conn.ctx, stmt).await.map(Some)
            }
        }
    }

    fn get_parameter_types(&self, stmt: &PgStatement) -> PgWireResult<Vec<Type>> {
        match stmt {
            PgStatement::Query(plan) => parameter_types(plan),
            _ => Ok(Vec::new()),
        }
    }

    fn get_result_schema(
        &self,
        stmt: &PgStatement,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        let format = column_format.unwrap_or(&Format::UnifiedText);
        match stmt {
            PgStatement::Query(plan) => {
                let schema = normalize::schema(plan.schema().as_arrow());
                arrow_schema_to_pg_fields(&schema, format, None)
            }
            PgStatement::Show(name) => Ok(show_fields(name, format)),
            _ => Ok(Vec::new()),
        }
    }
}

fn show_fields(name: &str, format: &Format) -> Vec<FieldInfo> {
    if name == "all" {
        vec![
            FieldInfo::new("name".into(), None, None, Type::TEXT, format.format_for(0)),
            FieldInfo::new(
                "setting".into(),
                None,
                None,
                Type::TEXT,
                format.format_for(1),
            ),
        ]
    } else {
        vec![FieldInfo::new(
            name.into(),
            None,
            None,
            Type::TEXT,
            format.format_for(0),
        )]
    }
}

impl Backend {
    /// Runs one statement and makes its response.
    async fn execute<C>(
        &self,
        client: &mut C,
        stmt: &PgStatement,
        params: Option<&Portal<PgStatement>>,
        format: &Format,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match stmt {
            PgStatement::Query(plan) => {
                let conn = connection(client)?;
                let mut plan = plan.as_ref().clone();
                if let Some(portal) = params {
                    let inferred = parameters(&plan)?;
                    let inferred_refs: Vec<Option<&DataType>> =
                        inferred.iter().map(Option::as_ref).collect();
                    let wire = parameter_types(&plan)?;
                    let wire_refs: Vec<Option<&Type>> = wire.iter().map(Some).collect();
                    let values = deserialize_parameters_with_server_types(
                        portal,
                        &inferred_refs,
                        &wire_refs,
                    )?;
                    plan = plan
                        .replace_params_with_values(&values)
                        .map_err(|e| df_error(&e))?;
                }
                let (schema, stream) = self
                    .query
                    .execute_plan(conn.ctx.clone(), plan)
                    .await
                    .map_err(|e| pg_error(&e))?;
                let options = Arc::new(FormatOptions::from_client_metadata(&conn.settings.read()));
                Ok(Response::Query(encode(schema, stream, format, options)?))
            }
            PgStatement::Begin => Ok(Response::TransactionStart(Tag::new("BEGIN"))),
            PgStatement::Commit => Ok(Response::TransactionEnd(Tag::new("COMMIT"))),
            PgStatement::Rollback => Ok(Response::TransactionEnd(Tag::new("ROLLBACK"))),
            PgStatement::Set { name, value } => {
                if let Some(value) = value.clone().filter(|_| !name.is_empty()) {
                    let value = if value.eq_ignore_ascii_case("default") {
                        session::default_setting(&name.to_ascii_lowercase()).unwrap_or_default()
                    } else {
                        value
                    };
                    connection(client)?
                        .settings
                        .write()
                        .insert(name.to_ascii_lowercase(), value.clone());
                    if session::REPORTED.contains(&name.as_str()) || name == "application_name" {
                        client
                            .send(PgWireBackendMessage::ParameterStatus(ParameterStatus::new(
                                name.clone(),
                                value,
                            )))
                            .await?;
                    }
                }
                Ok(Response::Execution(Tag::new("SET")))
            }
            PgStatement::Show(name) => {
                let settings = connection(client)?.settings.clone();
                let rows: Vec<Vec<String>> = if name == "all" {
                    let mut names: Vec<&str> = vec![
                        "application_name",
                        "client_encoding",
                        "datestyle",
                        "intervalstyle",
                        "search_path",
                        "server_encoding",
                        "server_version",
                        "standard_conforming_strings",
                        "timezone",
                        "transaction_isolation",
                    ];
                    names.sort_unstable();
                    names
                        .into_iter()
                        .map(|n| {
                            vec![
                                n.to_string(),
                                session::lookup(&settings, n).unwrap_or_default(),
                            ]
                        })
                        .collect()
                } else {
                    let Some(v) = session::lookup(&settings, name) else {
                        return Err(user_error(
                            "42704",
                            format!("unrecognized configuration parameter \"{name}\""),
                        ));
                    };
                    vec![vec![v]]
                };
                Ok(Response::Query(text_rows(show_fields(name, format), rows)?))
            }
            PgStatement::Ignored(tag) => Ok(Response::Execution(Tag::new(tag))),
        }
    }
}

/// A small text result (SHOW).
fn text_rows(fields: Vec<FieldInfo>, rows: Vec<Vec<String>>) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields);
    let mut encoder = pgwire::api::results::DataRowEncoder::new(Arc::clone(&fields));
    let mut out = Vec::with_capacity(rows.len());
    for row in rows {
        for v in row {
            encoder.encode_field(&v)?;
        }
        out.push(Ok(encoder.take_row()));
    }
    Ok(QueryResponse::new(fields, futures::stream::iter(out)))
}

/// Streams a result as PostgreSQL rows, normalised as on every frontend.
fn encode(
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let target = normalize::schema(&schema);
    let fields = Arc::new(arrow_schema_to_pg_fields(&target, format, Some(options))?);
    let row_fields = Arc::clone(&fields);
    let rows = stream
        .map(move |batch| {
            let batch: PgWireResult<RecordBatch> = batch.map_err(|e| df_error(&e)).and_then(|b| {
                normalize::batch(&b, &target)
                    .map_err(|e| user_error("XX000", format!("normalising a result: {e}")))
            });
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(b) => encode_recordbatch(Arc::clone(&row_fields), b),
                Err(e) => Box::new(std::iter::once(Err(e))),
            };
            futures::stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, rows))
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Statements of the command handler (alert rules, silences) are not SQL the
        // parser knows; they are one statement per simple query.
        let db = connection(client)?
            .ctx
            .state()
            .config()
            .options()
            .catalog
            .default_catalog
            .clone();
        if let Some(result) = self.query.run_command(&db, query).await {
            let response = result
                .map_err(|e| pg_error(&e))
                .and_then(|(schema, stream)| {
                    let conn = connection(client)?;
                    let options =
                        Arc::new(FormatOptions::from_client_metadata(&conn.settings.read()));
                    encode(schema, stream, &Format::UnifiedText, options)
                });
            return Ok(vec![match response {
                Ok(r) => Response::Query(r),
                Err(PgWireError::UserError(info)) => Response::Error(info),
                Err(e) => return Err(e),
            }]);
        }
        let statements = self.parser.parse(query)?;
        if statements.is_empty() {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut responses = Vec::with_capacity(statements.len());
        for stmt in statements {
            let result = match classify(stmt) {
                Classified::Command(c) => Ok(c),
                Classified::Plan(stmt) => {
                    let conn = connection(client)?;
                    plan(&conn.ctx, stmt).await
                }
            };
            let response = match result {
                Ok(stmt) => {
                    self.execute(client, &stmt, None, &Format::UnifiedText)
                        .await
                }
                Err(e) => Err(e),
            };
            match response {
                Ok(r) => responses.push(r),
                // PostgreSQL stops at the first failing statement of a simple query;
                // the results before it are still sent.
                Err(PgWireError::UserError(info)) => {
                    responses.push(Response::Error(info));
                    break;
                }
                Err(e) => return Err(e),
            }
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = PgStatement;
    type QueryParser = StatementParser;

    fn query_parser(&self) -> Arc<StatementParser> {
        Arc::clone(&self.parser)
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<PgStatement>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = PgStatement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let stmt = portal.statement.statement.clone();
        self.execute(client, &stmt, Some(portal), &portal.result_column_format)
            .await
    }
}

fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// SQLSTATE for each error, on purpose (see STYLE.md).
fn pg_error(e: &Error) -> PgWireError {
    match e {
        Error::UnknownDatabase(_) => user_error("3D000", e.to_string()),
        Error::Query(df) => df_error(df),
        Error::Timeout(_) => user_error("57014", e.to_string()),
        Error::Runtime(_) => user_error("57P03", e.to_string()),
        Error::Command(c) => match c.kind {
            CommandErrorKind::Invalid => user_error("22023", e.to_string()),
            CommandErrorKind::NotFound => user_error("42704", e.to_string()),
            CommandErrorKind::Conflict => user_error("42710", e.to_string()),
            CommandErrorKind::Unavailable => user_error("57P03", e.to_string()),
        },
    }
}

/// The SQLSTATE of a DataFusion error.
pub fn sqlstate(e: &DataFusionError) -> &'static str {
    match e.find_root() {
        DataFusionError::Plan(m) if crate::is_missing_table(m) => "42P01",
        DataFusionError::Plan(m)
            if m.starts_with("DDL not supported")
                || m.starts_with("DML not supported")
                || m.starts_with("Statement not supported") =>
        {
            "25006"
        }
        DataFusionError::SQL(..) => "42601",
        DataFusionError::SchemaError(..) => "42703",
        DataFusionError::Plan(_) => "42000",
        DataFusionError::NotImplemented(_) => "0A000",
        DataFusionError::Configuration(_) => "22023",
        DataFusionError::Execution(_) | DataFusionError::ArrowError(..) => "22000",
        DataFusionError::ResourcesExhausted(m) if m.contains("time limit") => "57014",
        DataFusionError::ResourcesExhausted(_) => "53200",
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_) => "58030",
        _ => "XX000",
    }
}

fn df_error(e: &DataFusionError) -> PgWireError {
    user_error(sqlstate(e), e.to_string())
}
