//! The HTTP query API, shaped like InfluxDB 3's:
//! `GET|POST /api/v3/query_sql?db=&q=&format=json|jsonl|csv|parquet|pretty`
//! (POST also takes a JSON body `{"db", "q", "format"}`). The database defaults to
//! `metrics`; an unknown one is 404, a query error is 400 with DataFusion's message.

use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures::TryStreamExt;
use serde::Deserialize;

use crate::commands::CommandErrorKind;
use crate::{DEFAULT_DATABASE, Error, QueryEngine};

/// The query routes. The binary merges this router with the others.
pub fn router(q: QueryEngine) -> Router {
    Router::new()
        .route("/api/v3/query_sql", get(query_get).post(query_post))
        .with_state(Arc::new(q))
}

#[derive(Debug, Default, Deserialize)]
struct QueryParams {
    db: Option<String>,
    q: Option<String>,
    format: Option<String>,
}

async fn query_get(State(q): State<Arc<QueryEngine>>, Query(p): Query<QueryParams>) -> Response {
    run(&q, p).await
}

async fn query_post(
    State(q): State<Arc<QueryEngine>>,
    Query(mut p): Query<QueryParams>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let is_json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if is_json && !body.is_empty() {
        match serde_json::from_slice::<QueryParams>(&body) {
            Ok(b) => {
                p.db = b.db.or(p.db);
                p.q = b.q.or(p.q);
                p.format = b.format.or(p.format);
            }
            Err(e) => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!("request body is not valid JSON: {e}"),
                );
            }
        }
    } else if p.q.is_none() && !body.is_empty() {
        p.q = Some(String::from_utf8_lossy(&body).into_owned());
    }
    run(&q, p).await
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

#[derive(Debug, Clone, Copy)]
pub enum Format {
    Json,
    JsonLines,
    Csv,
    Parquet,
    Pretty,
}

async fn run(q: &QueryEngine, p: QueryParams) -> Response {
    let Some(sql) = p.q.filter(|s| !s.trim().is_empty()) else {
        return error(StatusCode::BAD_REQUEST, "missing query: pass it as `q`");
    };
    let format = match p.format.as_deref().unwrap_or("json") {
        "json" => Format::Json,
        "jsonl" => Format::JsonLines,
        "csv" => Format::Csv,
        "parquet" => Format::Parquet,
        "pretty" => Format::Pretty,
        other => {
            return error(
                StatusCode::BAD_REQUEST,
                format!("unknown format `{other}`: use json, jsonl, csv, parquet or pretty"),
            );
        }
    };
    let db =
        p.db.filter(|d| !d.is_empty())
            .unwrap_or_else(|| DEFAULT_DATABASE.to_string());
    let started = std::time::Instant::now();
    let (schema, stream) = match q.query(&db, &sql).await {
        Ok(x) => x,
        Err(e) => return query_error(e),
    };
    let batches: Vec<RecordBatch> = match stream.try_collect().await {
        Ok(b) => b,
        Err(e) => return query_error(Error::Query(e)),
    };
    metrics::histogram!("strata_query_duration_seconds").record(started.elapsed().as_secs_f64());
    match encode(format, &schema, &batches) {
        Ok((ctype, body)) => ([(header::CONTENT_TYPE, ctype)], body).into_response(),
        Err(e) => error(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("could not encode the result: {e}"),
        ),
    }
}

fn query_error(e: Error) -> Response {
    match &e {
        Error::UnknownDatabase(_) => error(StatusCode::NOT_FOUND, e.to_string()),
        Error::Query(datafusion::error::DataFusionError::ResourcesExhausted(_))
        | Error::Timeout(_) => error(StatusCode::UNPROCESSABLE_ENTITY, e.to_string()),
        Error::Query(_) => error(StatusCode::BAD_REQUEST, e.to_string()),
        Error::Runtime(_) => error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()),
        Error::Command(c) => {
            let code = match c.kind {
                CommandErrorKind::Invalid => StatusCode::BAD_REQUEST,
                CommandErrorKind::NotFound => StatusCode::NOT_FOUND,
                CommandErrorKind::Conflict => StatusCode::CONFLICT,
                CommandErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(code, e.to_string())
        }
    }
}

/// Encodes a result in one of the API's formats.
pub fn encode(
    format: Format,
    schema: &SchemaRef,
    batches: &[RecordBatch],
) -> Result<(&'static str, Vec<u8>), Box<dyn std::error::Error + Send + Sync>> {
    let refs: Vec<&RecordBatch> = batches.iter().collect();
    Ok(match format {
        Format::Json => {
            let mut w = arrow::json::ArrayWriter::new(Vec::new());
            w.write_batches(&refs)?;
            w.finish()?;
            let mut out = w.into_inner();
            if out.is_empty() {
                out = b"[]".to_vec();
            }
            ("application/json", out)
        }
        Format::JsonLines => {
            let mut w = arrow::json::LineDelimitedWriter::new(Vec::new());
            w.write_batches(&refs)?;
            w.finish()?;
            ("application/jsonl", w.into_inner())
        }
        Format::Csv => {
            let mut out = Vec::new();
            {
                let mut w = arrow::csv::WriterBuilder::new()
                    .with_header(true)
                    .build(&mut out);
                if batches.is_empty() {
                    w.write(&RecordBatch::new_empty(schema.clone()))?;
                }
                for b in batches {
                    w.write(b)?;
                }
            }
            ("text/csv; charset=utf-8", out)
        }
        Format::Parquet => {
            let mut out = Vec::new();
            let mut w = parquet::arrow::ArrowWriter::try_new(&mut out, schema.clone(), None)?;
            for b in batches {
                w.write(b)?;
            }
            w.close()?;
            ("application/vnd.apache.parquet", out)
        }
        Format::Pretty => {
            let s = arrow::util::pretty::pretty_format_batches(batches)?.to_string();
            ("text/plain; charset=utf-8", s.into_bytes())
        }
    })
}
