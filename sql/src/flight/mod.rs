//! Arrow Flight SQL: what Grafana's FlightSQL data source, the Flight SQL JDBC driver,
//! ADBC and the InfluxDB 3 client libraries speak. Same [`QueryEngine`] as the HTTP API.
//!
//! - The database comes from the `database` header (aliases `bucket`, `bucket-name`),
//!   default [`DEFAULT_DATABASE`], and travels inside every ticket and handle
//!   ([`handle`]), so `DoGet` and prepared statements are stateless.
//! - `GetFlightInfo` plans the statement and holds the plan for its ticket's `DoGet`
//!   ([`plans`]); a ticket whose plan is gone plans its SQL again. A prepared statement
//!   is planned once, by `CreatePreparedStatement`, and each `GetFlightInfo` of it runs
//!   that plan over a new snapshot of its tables.
//! - Results go through [`crate::normalize`], the advertised schema and every batch alike.
//! - `DoGet` also takes InfluxDB 3's JSON ticket `{"database","sql_query","query_type"}`.
//! - The handshake accepts zero or one message, Basic (padded or not) or Bearer
//!   credentials in the `authorization` header (or Flight's `BasicAuth` payload), and
//!   answers with a bearer token that never expires. The caller's identity is resolved in
//!   [`Caller::of`], the one place where authentication will be enforced.
//!
//! Serve [`service`] on a port of its own and on the HTTP port (routed by content type).

mod handle;
mod info;
mod plans;

use std::pin::Pin;
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use arrow::ipc::writer::IpcWriteOptions;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::flight_service_server::{FlightService, FlightServiceServer};
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginSavepointRequest, ActionBeginSavepointResult, ActionBeginTransactionRequest,
    ActionBeginTransactionResult, ActionClosePreparedStatementRequest,
    ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult, CommandGetCatalogs,
    CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys, CommandGetImportedKeys,
    CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables,
    CommandGetXdbcTypeInfo, CommandPreparedStatementQuery, CommandPreparedStatementUpdate,
    CommandStatementQuery, CommandStatementUpdate, DoPutPreparedStatementResult, ProstMessageExt,
    SqlInfo, TicketStatementQuery,
};
use arrow_flight::{
    Action, ActionType, BasicAuth, Criteria, Empty, FlightData, FlightDescriptor, FlightEndpoint,
    FlightInfo, HandshakeRequest, HandshakeResponse, IpcMessage, PollInfo, PutResult, SchemaAsIpc,
    SchemaResult, Ticket,
};
use base64::Engine as _;
use datafusion::catalog::information_schema::INFORMATION_SCHEMA_TABLES;
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use futures::{Stream, StreamExt, TryStreamExt};
use prost::Message;
use strata_catalog::auth::Identity;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::catalog::{PUBLIC_SCHEMA, SYSTEM_SCHEMA};
use crate::commands::CommandErrorKind;
use crate::{DEFAULT_DATABASE, Error, QueryEngine, normalize};
use handle::{InfluxTicket, StatementHandle};

/// Largest gRPC message we send or accept (clients default to 4 MiB; batches are split
/// below it by the encoder).
pub const MAX_MESSAGE_BYTES: usize = 4 << 20;
/// Result batches are cut into Flight messages of about this size.
const TARGET_MESSAGE_BYTES: usize = 2 << 20;

const INFORMATION_SCHEMA: &str = "information_schema";
const TABLE_TYPES: [&str; 3] = ["TABLE", "SYSTEM TABLE", "VIEW"];

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// The gRPC service to serve (on the Flight port and, by content type, the HTTP port).
pub fn service(query: QueryEngine) -> Result<FlightServiceServer<Frontend>, Error> {
    let server = FlightSqlServer::new(query)?;
    Ok(FlightServiceServer::new(Frontend(Arc::new(server)))
        .max_decoding_message_size(MAX_MESSAGE_BYTES)
        .max_encoding_message_size(MAX_MESSAGE_BYTES))
}

/// Who is calling and which database they address.
#[derive(Debug)]
struct Caller {
    identity: Identity,
    database: String,
}

impl Caller {
    /// The one place Flight SQL callers are resolved; authentication and roles will be
    /// enforced here.
    fn of(metadata: &MetadataMap) -> Self {
        let text = |key: &str| {
            metadata
                .get(key)
                .and_then(|v| v.to_str().ok())
                .map(str::trim)
                .filter(|v| !v.is_empty())
        };
        let identity = Identity::from_authorization(text("authorization"));
        let database = ["database", "bucket", "bucket-name"]
            .into_iter()
            .find_map(text)
            .unwrap_or(DEFAULT_DATABASE)
            .to_string();
        tracing::trace!(?identity, %database, "flight sql call");
        Self { identity, database }
    }
}

/// The Flight SQL protocol implementation (see the module docs).
pub struct FlightSqlServer {
    query: QueryEngine,
    sql_info: SqlInfoData,
    xdbc: XdbcTypeInfoData,
    /// Plans made by `GetFlightInfo`, held for their ticket's `DoGet`.
    plans: plans::Plans,
    /// Plans made by `CreatePreparedStatement`, held for the statement's `GetFlightInfo`.
    statements: plans::Plans,
}

impl FlightSqlServer {
    pub fn new(query: QueryEngine) -> Result<Self, Error> {
        let ctx = query.session(DEFAULT_DATABASE)?;
        let arrow = |e: FlightError| Error::Query(DataFusionError::External(Box::new(e)));
        Ok(Self {
            sql_info: info::sql_info(&ctx).map_err(arrow)?,
            xdbc: info::xdbc_types().map_err(arrow)?,
            query,
            plans: plans::Plans::default(),
            statements: plans::Plans::default(),
        })
    }

    async fn describe(&self, h: &StatementHandle) -> Result<SchemaRef, Status> {
        let d = self.query.describe(&h.db, &h.sql).await.map_err(status)?;
        Ok(normalize::schema(&d.schema))
    }

    /// Plans a statement for `GetFlightInfo`: its FlightInfo, whose ticket runs this plan.
    /// A prepared statement whose plan is held runs that plan over the data as it is now.
    async fn planned_info(
        &self,
        mut h: StatementHandle,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let held = h
            .statement
            .and_then(|id| self.statements.take(id, &h.db, &h.sql))
            .and_then(|p| self.query.refresh(&p));
        let prepared = match held {
            Some(p) => Some(p),
            None => self.query.prepare(&h.db, &h.sql).await.map_err(status)?,
        };
        let schema = match prepared {
            Some(p) => {
                if let Some(id) = h.statement {
                    self.statements.hold_as(id, p.clone());
                }
                let schema = normalize::schema(&p.described.schema);
                h.plan = Some(self.plans.hold(p));
                schema
            }
            None => self.describe(&h).await?,
        };
        self.statement_info(&h, &schema, descriptor)
    }

    /// Runs a statement (its held plan if it has one) and streams its normalised result.
    async fn run(&self, h: StatementHandle) -> Result<BoxStream<FlightData>, Status> {
        let params = h.params()?;
        let held = h.plan.and_then(|id| self.plans.take(id, &h.db, &h.sql));
        let (schema, stream) = match held {
            Some(p) => self.query.run_prepared(p, params).await,
            None => self.query.query_with_params(&h.db, &h.sql, params).await,
        }
        .map_err(status)?;
        let schema = normalize::schema(&schema);
        let target = Arc::clone(&schema);
        let batches = stream.map(move |b| {
            let b = b.map_err(|e| FlightError::Tonic(Box::new(df_status(&e))))?;
            Ok(normalize::batch(&b, &target)?)
        });
        Ok(encode(schema, batches))
    }

    fn info(
        &self,
        schema: &Schema,
        ticket: Vec<u8>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(format!("encoding the schema: {e}")))?
            .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(ticket)))
            .with_descriptor(descriptor);
        Ok(Response::new(info))
    }

    /// FlightInfo for a metadata command: the command itself is the ticket.
    fn command_info(
        &self,
        schema: &Schema,
        cmd: &impl ProstMessageExt,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.info(schema, cmd.as_any().encode_to_vec(), request.into_inner())
    }

    fn statement_info(
        &self,
        h: &StatementHandle,
        schema: &Schema,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let ticket = TicketStatementQuery {
            statement_handle: h.encode(),
        };
        self.info(schema, ticket.as_any().encode_to_vec(), descriptor)
    }

    /// The tables of every database `catalog` names (all when `None`), with schemas when
    /// asked. Filters by pattern and type are applied by the builder.
    async fn tables(&self, cmd: CommandGetTables) -> Result<RecordBatch, Status> {
        let include_schema = cmd.include_schema;
        let catalog_filter = cmd.catalog.clone();
        let mut builder = cmd.into_builder();
        let empty = Schema::empty();
        for db in self.databases(catalog_filter.as_deref()) {
            let ctx = self.query.session(&db).map_err(status)?;
            for (schema_name, table_type, names) in schema_tables(&ctx, &db) {
                for name in names {
                    let schema = if include_schema {
                        let reference =
                            TableReference::full(db.as_str(), schema_name, name.as_str());
                        let provider = ctx
                            .table_provider(reference)
                            .await
                            .map_err(|e| df_status(&e))?;
                        normalize::schema(&provider.schema())
                    } else {
                        Arc::new(empty.clone())
                    };
                    builder
                        .append(&db, schema_name, &name, table_type, &schema)
                        .map_err(arrow_status)?;
                }
            }
        }
        builder.build().map_err(arrow_status)
    }

    fn databases(&self, catalog: Option<&str>) -> Vec<String> {
        let all = self.query.database_names();
        match catalog {
            Some(c) => all.into_iter().filter(|d| d == c).collect(),
            None => all,
        }
    }
}

/// Each schema of database `db` with its table type and table names.
fn schema_tables(
    ctx: &datafusion::prelude::SessionContext,
    db: &str,
) -> Vec<(&'static str, &'static str, Vec<String>)> {
    let names = |schema: &str| {
        ctx.catalog(db)
            .and_then(|c| c.schema(schema))
            .map(|s| {
                let mut t = s.table_names();
                t.sort();
                t
            })
            .unwrap_or_default()
    };
    vec![
        (PUBLIC_SCHEMA, TABLE_TYPES[0], names(PUBLIC_SCHEMA)),
        (SYSTEM_SCHEMA, TABLE_TYPES[1], names(SYSTEM_SCHEMA)),
        (
            INFORMATION_SCHEMA,
            TABLE_TYPES[2],
            INFORMATION_SCHEMA_TABLES
                .iter()
                .map(|t| (*t).to_string())
                .collect(),
        ),
    ]
}

/// Encodes `batches` as Flight data with `schema` first (also when there are no rows).
fn encode(
    schema: SchemaRef,
    batches: impl Stream<Item = Result<RecordBatch, FlightError>> + Send + 'static,
) -> BoxStream<FlightData> {
    let stream = FlightDataEncoderBuilder::new()
        .with_schema(schema)
        .with_max_flight_data_size(TARGET_MESSAGE_BYTES)
        .build(batches)
        .map_err(Status::from);
    Box::pin(stream)
}

fn one_batch(batch: RecordBatch) -> Response<BoxStream<FlightData>> {
    let schema = batch.schema();
    Response::new(encode(schema, futures::stream::iter([Ok(batch)])))
}

/// An empty result with `schema` (the key commands: metric tables have no keys).
fn no_rows(schema: Schema) -> Response<BoxStream<FlightData>> {
    one_batch(RecordBatch::new_empty(Arc::new(schema)))
}

fn schema_ipc(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(arrow_status)?;
    Ok(bytes)
}

fn arrow_status(e: impl std::fmt::Display) -> Status {
    Status::internal(format!("building a metadata result: {e}"))
}

/// gRPC status for each error, on purpose (see STYLE.md).
fn status(e: Error) -> Status {
    match e {
        Error::UnknownDatabase(_) => Status::not_found(e.to_string()),
        Error::Query(df) => df_status(&df),
        Error::Timeout(_) => Status::deadline_exceeded(e.to_string()),
        Error::Runtime(_) => Status::unavailable(e.to_string()),
        Error::Command(c) => match c.kind {
            CommandErrorKind::Invalid => Status::invalid_argument(c.message),
            CommandErrorKind::NotFound => Status::not_found(c.message),
            CommandErrorKind::Conflict => Status::already_exists(c.message),
            CommandErrorKind::Unavailable => Status::unavailable(c.message),
        },
    }
}

fn df_status(e: &DataFusionError) -> Status {
    let message = e.to_string();
    match e.find_root() {
        DataFusionError::Plan(m) if crate::is_missing_table(m) => Status::not_found(message),
        DataFusionError::SQL(..)
        | DataFusionError::Plan(_)
        | DataFusionError::SchemaError(..)
        | DataFusionError::NotImplemented(_)
        | DataFusionError::Configuration(_)
        | DataFusionError::Execution(_)
        | DataFusionError::ArrowError(..) => Status::invalid_argument(message),
        DataFusionError::ResourcesExhausted(m) if m.contains("time limit") => {
            Status::deadline_exceeded(message)
        }
        DataFusionError::ResourcesExhausted(_) => Status::resource_exhausted(message),
        DataFusionError::IoError(_)
        | DataFusionError::ObjectStore(_)
        | DataFusionError::ParquetError(_) => Status::unavailable(message),
        _ => Status::internal(message),
    }
}

/// Mints the bearer token returned by the handshake. Until authentication lands a token
/// only carries who presented it; tokens never expire (Grafana caches them forever).
fn token_for(identity: &Identity) -> String {
    match identity {
        Identity::Token(t) => t.clone(),
        Identity::User(u) => format!(
            "user.{}",
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(u)
        ),
        Identity::Anonymous => "anonymous".to_string(),
    }
}

#[tonic::async_trait]
impl FlightSqlService for FlightSqlServer {
    type FlightService = FlightSqlServer;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let mut identity = Caller::of(request.metadata()).identity;
        // Zero or one message: read the first (or the end of the stream), never wait for
        // more, so clients that keep their side open until our answer do not hang.
        let mut incoming = request.into_inner();
        if let Some(first) = incoming.message().await?
            && identity == Identity::Anonymous
            && !first.payload.is_empty()
            && let Ok(basic) = BasicAuth::decode(first.payload)
            && !basic.username.is_empty()
        {
            identity = Identity::User(basic.username);
        }
        let token = token_for(&identity);
        let reply = HandshakeResponse {
            protocol_version: 0,
            payload: token.clone().into(),
        };
        let mut response: Response<BoxStream<HandshakeResponse>> =
            Response::new(Box::pin(futures::stream::iter([Ok(reply)])));
        let header = format!("Bearer {token}")
            .parse()
            .map_err(|_| Status::invalid_argument("the token is not a valid header value"))?;
        response.metadata_mut().insert("authorization", header);
        Ok(response)
    }

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let caller = Caller::of(request.metadata());
        let h = StatementHandle::new(caller.database, query.query);
        self.planned_info(h, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let h = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        self.planned_info(h, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let h = StatementHandle::decode(&ticket.statement_handle)?;
        Ok(Response::new(self.run(h).await?))
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let h = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        Ok(Response::new(self.run(h).await?))
    }

    async fn do_get_fallback(
        &self,
        _request: Request<Ticket>,
        message: arrow_flight::sql::Any,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Err(Status::invalid_argument(format!(
            "unknown ticket type `{}`; get tickets from GetFlightInfo",
            message.type_url
        )))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let caller = Caller::of(request.metadata());
        let mut h = StatementHandle::new(caller.database, query.query);
        let d = match self.query.prepare(&h.db, &h.sql).await.map_err(status)? {
            Some(p) => {
                let d = p.described.clone();
                h.statement = Some(self.statements.hold(p));
                d
            }
            None => self.query.describe(&h.db, &h.sql).await.map_err(status)?,
        };
        let dataset = normalize::schema(&d.schema);
        let parameters = normalize::schema(&Schema::new(d.parameters));
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: h.encode(),
            dataset_schema: schema_ipc(&dataset)?,
            parameter_schema: schema_ipc(&parameters)?,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        query: ActionClosePreparedStatementRequest,
        _request: Request<Action>,
    ) -> Result<(), Status> {
        // The handle itself is stateless: only its held plan, if any, to drop.
        if let Ok(h) = StatementHandle::decode(&query.prepared_statement_handle)
            && let Some(id) = h.statement
        {
            self.statements.release(id);
        }
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let h = StatementHandle::decode(&cmd.prepared_statement_handle)?;
        let batches: Vec<RecordBatch> =
            arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                request.into_inner().map_err(FlightError::from),
            )
            .try_collect()
            .await
            .map_err(|e| Status::invalid_argument(format!("reading bound parameters: {e}")))?;
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        if rows > 1 {
            return Err(Status::invalid_argument(format!(
                "{rows} rows of parameters were bound; bind one row per execution"
            )));
        }
        let row = batches.iter().find(|b| b.num_rows() == 1);
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(h.with_params(row)?.encode()),
        })
    }

    async fn do_put_statement_update(
        &self,
        _ticket: CommandStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_put_prepared_statement_update(
        &self,
        _query: CommandPreparedStatementUpdate,
        _request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        Err(read_only())
    }

    async fn do_action_begin_transaction(
        &self,
        _query: ActionBeginTransactionRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        Err(Status::unimplemented(
            "transactions are not supported: every query reads a consistent snapshot",
        ))
    }

    async fn do_action_begin_savepoint(
        &self,
        _query: ActionBeginSavepointRequest,
        _request: Request<Action>,
    ) -> Result<ActionBeginSavepointResult, Status> {
        Err(Status::unimplemented("savepoints are not supported"))
    }

    // Metadata: FlightInfo carries the command itself as the ticket; DoGet answers it.

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let mut b = query.into_builder();
        for db in self.query.database_names() {
            b.append(db);
        }
        Ok(one_batch(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let dbs = self.databases(query.catalog.as_deref());
        let mut b = query.into_builder();
        for db in dbs {
            for schema in [INFORMATION_SCHEMA, PUBLIC_SCHEMA, SYSTEM_SCHEMA] {
                b.append(&db, schema);
            }
        }
        Ok(one_batch(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder().schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Ok(one_batch(self.tables(query).await?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder().schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let mut b = query.into_builder();
        for t in TABLE_TYPES {
            b.append(t);
        }
        Ok(one_batch(b.build().map_err(arrow_status)?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.clone().into_builder(&self.sql_info).schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let batch = query
            .into_builder(&self.sql_info)
            .build()
            .map_err(arrow_status)?;
        Ok(one_batch(batch))
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let schema = query.into_builder(&self.xdbc).schema();
        self.command_info(&schema, &query, request)
    }

    async fn do_get_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        let batch = query
            .into_builder(&self.xdbc)
            .build()
            .map_err(arrow_status)?;
        Ok(one_batch(batch))
    }

    // Keys: metric tables have none; the answers are empty with the schemas JDBC expects.

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(&primary_keys_schema(), &query, request)
    }

    async fn do_get_primary_keys(
        &self,
        _query: CommandGetPrimaryKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Ok(no_rows(primary_keys_schema()))
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_exported_keys(
        &self,
        _query: CommandGetExportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_imported_keys(
        &self,
        _query: CommandGetImportedKeys,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.command_info(&foreign_keys_schema(), &query, request)
    }

    async fn do_get_cross_reference(
        &self,
        _query: CommandGetCrossReference,
        _request: Request<Ticket>,
    ) -> Result<Response<BoxStream<FlightData>>, Status> {
        Ok(no_rows(foreign_keys_schema()))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn read_only() -> Status {
    Status::invalid_argument(
        "Strata's SQL is read-only: write with line protocol, JSON, remote_write or Kafka",
    )
}

fn primary_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("catalog_name", DataType::Utf8, true),
        Field::new("db_schema_name", DataType::Utf8, true),
        Field::new("table_name", DataType::Utf8, false),
        Field::new("column_name", DataType::Utf8, false),
        Field::new("key_name", DataType::Utf8, true),
        Field::new("key_sequence", DataType::Int32, false),
    ])
}

fn foreign_keys_schema() -> Schema {
    Schema::new(vec![
        Field::new("pk_catalog_name", DataType::Utf8, true),
        Field::new("pk_db_schema_name", DataType::Utf8, true),
        Field::new("pk_table_name", DataType::Utf8, false),
        Field::new("pk_column_name", DataType::Utf8, false),
        Field::new("fk_catalog_name", DataType::Utf8, true),
        Field::new("fk_db_schema_name", DataType::Utf8, true),
        Field::new("fk_table_name", DataType::Utf8, false),
        Field::new("fk_column_name", DataType::Utf8, false),
        Field::new("key_sequence", DataType::Int32, false),
        Field::new("fk_key_name", DataType::Utf8, true),
        Field::new("pk_key_name", DataType::Utf8, true),
        Field::new("update_rule", DataType::UInt8, false),
        Field::new("delete_rule", DataType::UInt8, false),
    ])
}

/// The served service: Flight SQL, plus InfluxDB 3's JSON tickets on `DoGet` (which the
/// Flight SQL dispatcher would reject before we could see them).
#[derive(Clone)]
pub struct Frontend(Arc<FlightSqlServer>);

#[tonic::async_trait]
impl FlightService for Frontend {
    type HandshakeStream = BoxStream<HandshakeResponse>;
    type ListFlightsStream = BoxStream<FlightInfo>;
    type DoGetStream = BoxStream<FlightData>;
    type DoPutStream = BoxStream<PutResult>;
    type DoActionStream = BoxStream<arrow_flight::Result>;
    type ListActionsStream = BoxStream<ActionType>;
    type DoExchangeStream = BoxStream<FlightData>;

    async fn handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Self::HandshakeStream>, Status> {
        FlightService::handshake(&*self.0, request).await
    }

    async fn list_flights(
        &self,
        request: Request<Criteria>,
    ) -> Result<Response<Self::ListFlightsStream>, Status> {
        FlightService::list_flights(&*self.0, request).await
    }

    async fn get_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        FlightService::get_flight_info(&*self.0, request).await
    }

    async fn poll_flight_info(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<PollInfo>, Status> {
        FlightService::poll_flight_info(&*self.0, request).await
    }

    async fn get_schema(
        &self,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<SchemaResult>, Status> {
        FlightService::get_schema(&*self.0, request).await
    }

    async fn do_get(
        &self,
        request: Request<Ticket>,
    ) -> Result<Response<Self::DoGetStream>, Status> {
        match InfluxTicket::parse(&request.get_ref().ticket) {
            Some(h) => Ok(Response::new(self.0.run(h?).await?)),
            None => FlightService::do_get(&*self.0, request).await,
        }
    }

    async fn do_put(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoPutStream>, Status> {
        FlightService::do_put(&*self.0, request).await
    }

    async fn do_action(
        &self,
        request: Request<Action>,
    ) -> Result<Response<Self::DoActionStream>, Status> {
        FlightService::do_action(&*self.0, request).await
    }

    async fn list_actions(
        &self,
        request: Request<Empty>,
    ) -> Result<Response<Self::ListActionsStream>, Status> {
        FlightService::list_actions(&*self.0, request).await
    }

    async fn do_exchange(
        &self,
        request: Request<Streaming<FlightData>>,
    ) -> Result<Response<Self::DoExchangeStream>, Status> {
        FlightService::do_exchange(&*self.0, request).await
    }
}
