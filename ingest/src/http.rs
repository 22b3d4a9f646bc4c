//! HTTP write endpoints, compatible with InfluxDB 3's write API:
//! `POST /api/v3/write_lp?db=`, `POST /api/v2/write?bucket=`, `POST /write?db=` (line
//! protocol), `POST /api/v1/push` (seed JSON, array or NDJSON) and `POST /api/v1/write`
//! (Prometheus remote_write 1.0) and `POST /v1/metrics` (OTLP metrics, protobuf or JSON).
//!
//! Status codes: 204 all stored; 400 with the partial-write body when any line was
//! rejected (the valid ones are stored unless `accept_partial=false`); 413 over the body
//! size limit; 503 with `Retry-After` over the engine's memory budget or while shutting
//! down; 500 if the WAL failed (nothing acknowledged).

use std::io::Read;
use std::sync::Arc;

use axum::Router;
use axum::body::Body;
use axum::extract::{Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serde::Deserialize;
use strata_engine::{Engine, Point, Rows, WriteOptions};

use crate::LineError;
use crate::format::Format;
use crate::lp::Precision;

/// The database a write that names none goes to.
pub const DEFAULT_DATABASE: &str = "metrics";

#[derive(Debug, Clone)]
pub struct IngestConfig {
    /// Largest accepted request body, compressed or not, in bytes.
    pub max_body_bytes: usize,
    /// Most lines (or JSON elements) in one request.
    pub max_lines_per_request: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: 64 << 20,
            max_lines_per_request: 1_000_000,
        }
    }
}

#[derive(Clone)]
struct IngestState {
    engine: Arc<Engine>,
    config: Arc<IngestConfig>,
    buffers: Arc<BodyBuffers>,
}

/// Request bodies' buffers, kept for the next requests. A write's body is often megabytes,
/// and a fresh buffer for each request faulted its pages in again: a fifth of the page
/// faults of a TSBS load (in a virtual machine a page fault costs microseconds). At most
/// [`Self::KEEP`] buffers are kept, none larger than [`Self::MAX_KEPT`] bytes.
#[derive(Default)]
struct BodyBuffers(parking_lot::Mutex<Vec<Vec<u8>>>);

impl BodyBuffers {
    const KEEP: usize = 8;
    const MAX_KEPT: usize = 16 << 20;

    fn take(self: &Arc<Self>) -> BodyBuffer {
        let bytes = self.0.lock().pop().unwrap_or_default();
        BodyBuffer {
            bytes,
            home: Arc::clone(self),
        }
    }
}

/// A request body, read into a buffer that goes back to its [`BodyBuffers`] when dropped.
struct BodyBuffer {
    bytes: Vec<u8>,
    home: Arc<BodyBuffers>,
}

impl std::ops::Deref for BodyBuffer {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        &self.bytes
    }
}

impl Drop for BodyBuffer {
    fn drop(&mut self) {
        if self.bytes.capacity() <= BodyBuffers::MAX_KEPT {
            let mut bytes = std::mem::take(&mut self.bytes);
            bytes.clear();
            let mut kept = self.home.0.lock();
            if kept.len() < BodyBuffers::KEEP {
                kept.push(bytes);
            }
        }
    }
}

/// The write routes. The binary merges this router with the others.
pub fn router(engine: Arc<Engine>, config: IngestConfig) -> Router {
    let state = IngestState {
        engine,
        config: Arc::new(config),
        buffers: Arc::default(),
    };
    Router::new()
        .route("/api/v3/write_lp", post(write_v3))
        .route("/api/v2/write", post(write_v2))
        .route("/write", post(write_v1))
        .route("/api/v1/push", post(push_json))
        .route("/api/v1/write", post(remote_write))
        .route("/v1/metrics", post(otlp_metrics))
        .with_state(state)
}

#[derive(Debug, Default, Deserialize)]
struct WriteParams {
    db: Option<String>,
    bucket: Option<String>,
    precision: Option<String>,
    accept_partial: Option<bool>,
    no_sync: Option<bool>,
}

impl WriteParams {
    /// `db`, else `bucket`, else [`DEFAULT_DATABASE`].
    fn database(&self) -> &str {
        self.db
            .as_deref()
            .or(self.bucket.as_deref())
            .filter(|d| !d.is_empty())
            .unwrap_or(DEFAULT_DATABASE)
    }

    /// The valid points are stored whatever else the request holds.
    fn partial_options(&self) -> WriteOptions {
        WriteOptions {
            no_sync: self.no_sync.unwrap_or(false),
            accept_partial: true,
        }
    }
}

async fn write_v3(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        s,
        p,
        headers,
        body,
        Format::LineProtocol,
        Precision::Auto,
        "write_lp",
    )
    .await
}

async fn write_v2(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        s,
        p,
        headers,
        body,
        Format::LineProtocol,
        Precision::Nanosecond,
        "v2_write",
    )
    .await
}

async fn write_v1(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        s,
        p,
        headers,
        body,
        Format::LineProtocol,
        Precision::Nanosecond,
        "v1_write",
    )
    .await
}

async fn push_json(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    handle(
        s,
        p,
        headers,
        body,
        Format::SeedJson,
        Precision::Millisecond,
        "json_push",
    )
    .await
}

/// Prometheus remote_write. Senders retry 5xx and 429 and drop other 4xx, so: 204 all
/// stored; 400 for what retrying cannot fix (bad snappy or protobuf, refused series — the
/// valid series of the request are stored); 413 over the size limit; 415 for
/// remote_write 2.0 (Prometheus then falls back to 1.0); 503 + `Retry-After` over the
/// memory budget; 500 when the WAL failed (nothing acknowledged, a retry is safe: writes
/// of the same point are idempotent).
async fn remote_write(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    const PATH: &str = "remote_write";
    let header_str = |name| {
        headers
            .get(name)
            .and_then(|v: &HeaderValue| v.to_str().ok())
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase()
    };
    let content_type = header_str(header::CONTENT_TYPE);
    if content_type.contains("io.prometheus.write.v2") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "remote_write 2.0 (io.prometheus.write.v2.Request) is not supported yet; send 1.0 \
             (prometheus.WriteRequest)",
        );
    }
    let encoding = header_str(header::CONTENT_ENCODING);
    if !matches!(encoding.as_str(), "" | "snappy") {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Encoding `{encoding}` is not supported: remote_write bodies are snappy"
            ),
        );
    }
    let limit = s.config.max_body_bytes;
    let raw = match collect_body(body, &headers, limit, &s.buffers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let decoded = match crate::remote_write::decode(&raw, limit) {
        Ok(d) => d,
        Err(e) => {
            count(PATH, "rejected", 1);
            let status = match e {
                crate::remote_write::DecodeError::TooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
                crate::remote_write::DecodeError::Snappy(_)
                | crate::remote_write::DecodeError::Protobuf(_) => StatusCode::BAD_REQUEST,
            };
            return error(status, e.to_string());
        }
    };
    if decoded.points.len() > s.config.max_lines_per_request {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request has {} samples, over the limit of {} per request",
                decoded.points.len(),
                s.config.max_lines_per_request
            ),
        );
    }
    count(PATH, "stale_marker", decoded.stale_markers);
    let mut errors: Vec<(usize, String)> = decoded
        .errors
        .into_iter()
        .map(|e| (e.series, e.message))
        .collect();
    if !decoded.points.is_empty() {
        match store(&s, &p, decoded.points, PATH).await {
            Ok(o) => {
                errors.extend(o.rejected.into_iter().map(|r| (r.line, r.reason)));
            }
            Err(e) => return engine_error(e, "", PATH),
        }
    }
    if errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    errors.sort();
    let first = &errors[0];
    let data: Vec<serde_json::Value> = errors
        .iter()
        .take(100)
        .map(|(series, msg)| serde_json::json!({ "series": series, "error_message": msg }))
        .collect();
    (
        StatusCode::BAD_REQUEST,
        axum::Json(serde_json::json!({
            "error": format!(
                "{} sample(s) or series of {} refused; the others were stored; first: series {}: {}",
                errors.len(), decoded.series, first.0, first.1
            ),
            "data": data,
        })),
    )
        .into_response()
}

/// OTLP/HTTP metrics. Its clients retry only 429, 502, 503 and 504, so: 200 with an
/// `ExportMetricsServiceResponse` (its `partial_success` counts refused data points, the
/// rest are stored); 400 with a `google.rpc.Status` for an undecodable body; 413 over the
/// size limit; 415 for another content type; 503 + `Retry-After` over the memory budget
/// and also when the WAL failed (OTLP treats 500 as permanent, but nothing was
/// acknowledged, and a retry is safe).
async fn otlp_metrics(
    State(s): State<IngestState>,
    Query(p): Query<WriteParams>,
    headers: HeaderMap,
    body: Body,
) -> Response {
    use crate::otlp::{self, Encoding};
    const PATH: &str = "otlp";
    let content_type = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let Some(encoding) = Encoding::from_content_type(content_type) else {
        return error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "Content-Type `{content_type}` is not OTLP: use application/x-protobuf or application/json"
            ),
        );
    };
    let reply = |status: StatusCode, body: Vec<u8>| {
        let ct = match encoding {
            Encoding::Protobuf => "application/x-protobuf",
            Encoding::Json => "application/json",
        };
        (status, [(header::CONTENT_TYPE, ct)], body).into_response()
    };
    let bytes = match read_body(body, &headers, s.config.max_body_bytes, &s.buffers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let now = s.engine.clock().now_ns();
    let limit = s.config.max_lines_per_request;
    // Decoding a large request is CPU work: off the I/O threads.
    let decoded =
        tokio::task::spawn_blocking(move || otlp::decode(&bytes, encoding, now, limit)).await;
    let decoded = match decoded {
        Ok(Ok(d)) => d,
        Ok(Err(e @ otlp::DecodeError::TooManyPoints { .. })) => {
            return reply(
                StatusCode::PAYLOAD_TOO_LARGE,
                otlp::error_body(encoding, 8, &e.to_string()),
            );
        }
        Ok(Err(e)) => {
            count(PATH, "rejected", 1);
            return reply(
                StatusCode::BAD_REQUEST,
                otlp::error_body(encoding, 3, &e.to_string()),
            );
        }
        Err(e) => {
            return reply(
                StatusCode::INTERNAL_SERVER_ERROR,
                otlp::error_body(encoding, 13, &format!("decoding failed: {e}")),
            );
        }
    };
    count(PATH, "attribute_dropped", decoded.dropped_attributes);
    count(PATH, "no_recorded_value", decoded.skipped_no_value);
    let mut rejected: usize = decoded.errors.iter().map(|e| e.2).sum();
    let mut first = decoded.errors.first().map(|(_, msg, _)| msg.clone());
    if !decoded.points.is_empty() {
        match store(&s, &p, decoded.points, PATH).await {
            Ok(o) => {
                rejected += o.rejected.len();
                if first.is_none() {
                    first = o.rejected.first().map(|r| {
                        let metric = decoded.metrics.get(r.line.wrapping_sub(1));
                        format!(
                            "metric `{}`: {}",
                            metric.map(String::as_str).unwrap_or("?"),
                            r.reason
                        )
                    });
                }
            }
            Err(e) => {
                use strata_engine::Error as E;
                let retryable = !matches!(e, E::InvalidDatabase { .. } | E::AllOrNothing { .. });
                if !retryable {
                    return reply(
                        StatusCode::BAD_REQUEST,
                        otlp::error_body(encoding, 3, &e.to_string()),
                    );
                }
                count(PATH, "throttled", 1);
                let mut r = reply(
                    StatusCode::SERVICE_UNAVAILABLE,
                    otlp::error_body(encoding, 14, &e.to_string()),
                );
                r.headers_mut()
                    .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
                return r;
            }
        }
    }
    let message = first
        .map(|m| format!("{rejected} data point(s) refused; first: {m}"))
        .unwrap_or_default();
    reply(StatusCode::OK, otlp::response(encoding, rejected, &message))
}

/// Writes a decoded request of a protocol whose senders cannot split it (the valid points
/// are stored) and counts the outcome under `path`.
async fn store(
    s: &IngestState,
    p: &WriteParams,
    points: Vec<Point>,
    path: &'static str,
) -> Result<strata_engine::WriteOutcome, strata_engine::Error> {
    let o = s
        .engine
        .write(p.database(), points, p.partial_options())
        .await?;
    count(path, "accepted", o.accepted);
    count(path, "rejected", o.rejected.len());
    Ok(o)
}

fn error(status: StatusCode, msg: impl Into<String>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": msg.into() })),
    )
        .into_response()
}

fn partial(status: StatusCode, what: &str, errors: Vec<LineError>) -> Response {
    (
        status,
        axum::Json(serde_json::json!({ "error": what, "data": errors })),
    )
        .into_response()
}

/// The request body as sent (up to `limit` bytes), in one of `buffers`.
async fn collect_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    buffers: &Arc<BodyBuffers>,
) -> Result<BodyBuffer, Response> {
    use axum::body::HttpBody;
    let mut raw = buffers.take();
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if let Some(n) = declared {
        raw.bytes.reserve(n.min(limit));
    }
    let mut body = body;
    while let Some(frame) =
        std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await
    {
        let frame = frame.map_err(|e| {
            error(
                StatusCode::BAD_REQUEST,
                format!("the request body could not be read: {e}"),
            )
        })?;
        if let Ok(data) = frame.into_data() {
            if raw.bytes.len() + data.len() > limit {
                return Err(too_big(limit));
            }
            raw.bytes.extend_from_slice(&data);
        }
    }
    Ok(raw)
}

fn too_big(limit: usize) -> Response {
    error(
        StatusCode::PAYLOAD_TOO_LARGE,
        format!("request body is larger than the limit of {limit} bytes"),
    )
}

/// The request body, decompressed (gzip) if need be, in one of `buffers`.
async fn read_body(
    body: Body,
    headers: &HeaderMap,
    limit: usize,
    buffers: &Arc<BodyBuffers>,
) -> Result<BodyBuffer, Response> {
    let raw = collect_body(body, headers, limit, buffers).await?;
    let encoding = headers
        .get(header::CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("identity")
        .trim()
        .to_ascii_lowercase();
    match encoding.as_str() {
        "" | "identity" => Ok(raw),
        "gzip" | "x-gzip" => {
            let mut out = buffers.take();
            let dec = flate2::read::MultiGzDecoder::new(&raw[..]);
            dec.take(limit as u64 + 1)
                .read_to_end(&mut out.bytes)
                .map_err(|e| {
                    error(
                        StatusCode::BAD_REQUEST,
                        format!("gzip body could not be decoded: {e}"),
                    )
                })?;
            if out.len() > limit {
                return Err(too_big(limit));
            }
            Ok(out)
        }
        other => Err(error(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("Content-Encoding `{other}` is not supported (use gzip or none)"),
        )),
    }
}

async fn handle(
    s: IngestState,
    p: WriteParams,
    headers: HeaderMap,
    body: Body,
    format: Format,
    default_precision: Precision,
    path: &'static str,
) -> Response {
    let db = p.database().to_string();
    let precision = match p.precision.as_deref() {
        None | Some("") => default_precision,
        Some(x) => match Precision::parse(x) {
            Some(pr) => pr,
            None => {
                return error(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "invalid precision `{x}`: use auto, ns, us, ms, s, m or h (or nanosecond, microsecond, millisecond, second)"
                    ),
                );
            }
        },
    };
    let accept_partial = p.accept_partial.unwrap_or(true);
    let opts = WriteOptions {
        no_sync: p.no_sync.unwrap_or(false),
        accept_partial,
    };
    let bytes = match read_body(body, &headers, s.config.max_body_bytes, &s.buffers).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let text = match std::str::from_utf8(&bytes) {
        Ok(t) => t,
        Err(e) => {
            return error(
                StatusCode::BAD_REQUEST,
                format!(
                    "request body is not valid UTF-8 (at byte {})",
                    e.valid_up_to()
                ),
            );
        }
    };
    let now = s.engine.clock().now_ns();
    let (rows, mut errors): (Rows, Vec<LineError>) = format.decode(text, precision, now);
    if rows.len() + errors.len() > s.config.max_lines_per_request {
        return error(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!(
                "request has {} lines, over the limit of {} per request",
                rows.len() + errors.len(),
                s.config.max_lines_per_request
            ),
        );
    }
    let parse_failed = !errors.is_empty();
    if parse_failed && !accept_partial {
        count(path, "rejected", errors.len() + rows.len());
        return partial(
            StatusCode::BAD_REQUEST,
            "parsing failed for write_lp endpoint",
            errors,
        );
    }
    let outcome = if rows.is_empty() {
        None
    } else {
        match s.engine.write(&db, rows, opts).await {
            Ok(o) => Some(o),
            Err(e) => return engine_error(e, text, path),
        }
    };
    if let Some(o) = &outcome {
        count(path, "accepted", o.accepted);
        if !o.rejected.is_empty() {
            let lines: Vec<&str> = crate::lp::split_lines(text).collect();
            errors.extend(o.rejected.iter().map(|r| {
                let original = if format == Format::LineProtocol {
                    lines
                        .get(r.line.wrapping_sub(1))
                        .copied()
                        .unwrap_or("")
                        .trim()
                } else {
                    ""
                };
                LineError::new(r.line, original, r.reason.clone())
            }));
        }
    }
    if errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    count(path, "rejected", errors.len());
    errors.sort_by_key(|e| e.line_number);
    partial(
        StatusCode::BAD_REQUEST,
        "partial write of line protocol occurred",
        errors,
    )
}

pub(crate) fn count(path: &'static str, outcome: &'static str, n: usize) {
    metrics::counter!("strata_ingest_points_total", "path" => path, "outcome" => outcome)
        .increment(n as u64);
}

fn engine_error(e: strata_engine::Error, text: &str, path: &'static str) -> Response {
    use strata_engine::Error as E;
    match e {
        E::MemoryPressure { .. } | E::ShuttingDown => {
            count(path, "throttled", 1);
            let mut r = error(StatusCode::SERVICE_UNAVAILABLE, e.to_string());
            r.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            r
        }
        E::InvalidDatabase { .. } | E::InvalidRetention(_) | E::InvalidConfig(_) => {
            error(StatusCode::BAD_REQUEST, e.to_string())
        }
        E::AllOrNothing { rejected } => {
            let lines: Vec<&str> = crate::lp::split_lines(text).collect();
            let errs = rejected
                .into_iter()
                .map(|r| {
                    let original = lines
                        .get(r.line.wrapping_sub(1))
                        .copied()
                        .unwrap_or("")
                        .trim();
                    LineError::new(r.line, original, r.reason)
                })
                .collect();
            partial(
                StatusCode::BAD_REQUEST,
                "parsing failed for write_lp endpoint",
                errs,
            )
        }
        E::Wal(_)
        | E::WalOpen(_)
        | E::Catalog(_)
        | E::Store(_)
        | E::DataFusion(_)
        | E::Parquet(_)
        | E::Io { .. } => {
            tracing::error!(error = %e, "write failed");
            error(StatusCode::INTERNAL_SERVER_ERROR, e.to_string())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_buffers_are_kept_for_the_next_request_up_to_a_size_and_a_count() {
        let buffers = Arc::new(BodyBuffers::default());
        let mut b = buffers.take();
        b.bytes.extend_from_slice(&[1; 1000]);
        let kept = b.bytes.as_ptr();
        drop(b);
        let again = buffers.take();
        assert!(again.is_empty(), "a kept buffer comes back empty");
        assert_eq!(again.bytes.as_ptr(), kept, "the same memory");
        assert!(again.bytes.capacity() >= 1000);
        drop(again);

        // Larger than MAX_KEPT: not kept.
        let mut big = buffers.take();
        big.bytes.reserve(BodyBuffers::MAX_KEPT + 1);
        drop(big);
        assert!(buffers.0.lock().is_empty());

        // At most KEEP of them.
        let many: Vec<BodyBuffer> = (0..BodyBuffers::KEEP + 3)
            .map(|_| {
                let mut b = buffers.take();
                b.bytes.push(0);
                b
            })
            .collect();
        drop(many);
        assert_eq!(buffers.0.lock().len(), BodyBuffers::KEEP);
    }
}
