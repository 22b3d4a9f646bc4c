//! OTLP metrics (OpenTelemetry's protocol) over HTTP: an `ExportMetricsServiceRequest`
//! as protobuf or JSON, decoded with the OpenTelemetry project's `opentelemetry-proto`.
//!
//! Mapping (the Prometheus-compatible one, without unit suffixes):
//! - table: the metric name with every character outside `[a-zA-Z0-9_:]` turned into
//!   `_` (`http.server.duration` → `http_server_duration`), so names need no quoting;
//! - tags: resource attributes, then the data point's attributes (they win on a clash),
//!   keys sanitised the same way (`service.name` → `service_name`) and then mapped as
//!   Prometheus labels are ([`crate::exposition::tag_name`]), non-string values as text,
//!   values over [`MAX_LABEL_VALUE_BYTES`] left out (counted); the instrumentation scope's name as `otel_scope_name`;
//! - gauges and sums: the f64 field `value` at the point's time. Cumulative sums store
//!   the running total; delta sums the increment over their interval (`sum(value)`
//!   over a range is the total);
//! - histograms: `<name>_bucket` with a cumulative count per `le` (the last `+Inf`),
//!   `<name>_sum` and `<name>_count`, the shape of a Prometheus classic histogram (a
//!   delta histogram's counts are those of its interval, as with delta sums);
//!   summaries: `<name>` per `quantile`, `<name>_sum`, `<name>_count`;
//! - exponential histograms are refused per metric with a clear error; points flagged
//!   "no recorded value" are skipped, as Prometheus' staleness markers are.

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;
use opentelemetry_proto::tonic::common::v1::{AnyValue, KeyValue, any_value};
use opentelemetry_proto::tonic::metrics::v1::{
    AggregationTemporality, Gauge, Metric, Sum, metric::Data, number_data_point,
};
use prost::Message;
use strata_engine::{FieldValue, Point};

use crate::MAX_LABEL_VALUE_BYTES;
use crate::exposition::{VALUE_FIELD, tag_name};

/// OTLP's `DataPointFlags.FLAG_NO_RECORDED_VALUE`.
const NO_RECORDED_VALUE: u32 = 1;

/// The body's encoding, from `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    Protobuf,
    Json,
}

impl Encoding {
    pub fn from_content_type(content_type: &str) -> Option<Self> {
        let base = content_type
            .split(';')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match base.as_str() {
            "application/x-protobuf" | "application/protobuf" => Some(Self::Protobuf),
            "application/json" => Some(Self::Json),
            _ => None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("the body is not a valid OTLP ExportMetricsServiceRequest protobuf: {0}")]
    Protobuf(String),
    #[error("the body is not a valid OTLP ExportMetricsServiceRequest in JSON: {0}")]
    Json(String),
    #[error("the request would make {points} points, over the limit of {limit}")]
    TooManyPoints { points: usize, limit: usize },
}

/// What one request decoded to. A point's `line` is the position of its metric in the
/// request (1-based), so refusals name the metric.
#[derive(Debug, Default)]
pub struct Decoded {
    pub points: Vec<Point>,
    /// Metric names by position, for error messages.
    pub metrics: Vec<String>,
    /// (metric position, what is wrong, data points lost).
    pub errors: Vec<(usize, String, usize)>,
    pub data_points: usize,
    pub skipped_no_value: usize,
    /// Attributes left out for being longer than [`MAX_LABEL_VALUE_BYTES`].
    pub dropped_attributes: usize,
}

/// Decodes a request. `max_points` bounds the points it may make, checked before any is
/// built (a histogram bucket is a few bytes on the wire but a whole point here).
pub fn decode(
    body: &[u8],
    encoding: Encoding,
    now: i64,
    max_points: usize,
) -> Result<Decoded, DecodeError> {
    let request = match encoding {
        Encoding::Protobuf => ExportMetricsServiceRequest::decode(body)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))?,
        Encoding::Json => {
            serde_json::from_slice(body).map_err(|e| DecodeError::Json(e.to_string()))?
        }
    };
    let points: usize = request
        .resource_metrics
        .iter()
        .flat_map(|r| &r.scope_metrics)
        .flat_map(|s| &s.metrics)
        .map(points_of)
        .fold(0, usize::saturating_add);
    if points > max_points {
        return Err(DecodeError::TooManyPoints {
            points,
            limit: max_points,
        });
    }
    Ok(to_points(request, now))
}

/// How many points a metric makes (at most).
fn points_of(m: &Metric) -> usize {
    match &m.data {
        None | Some(Data::ExponentialHistogram(_)) => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h
            .data_points
            .iter()
            .map(|p| p.bucket_counts.len().saturating_add(2))
            .fold(0, usize::saturating_add),
        Some(Data::Summary(s)) => s
            .data_points
            .iter()
            .map(|p| p.quantile_values.len().saturating_add(2))
            .fold(0, usize::saturating_add),
    }
}

/// `[a-zA-Z0-9_:]` kept, everything else `_`; a leading digit gets a `_` before it.
pub fn sanitize(name: &str) -> String {
    let mut out = String::with_capacity(name.len() + 1);
    if name.starts_with(|c: char| c.is_ascii_digit()) {
        out.push('_');
    }
    out.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() || c == '_' || c == ':' {
            c
        } else {
            '_'
        }
    }));
    out
}

fn any_value_text(v: &AnyValue) -> String {
    match &v.value {
        None => String::new(),
        Some(any_value::Value::StringValue(s)) => s.clone(),
        // An index into a dictionary that only the profiles signal carries.
        Some(any_value::Value::StringValueStrindex(i)) => i.to_string(),
        Some(any_value::Value::BoolValue(b)) => b.to_string(),
        Some(any_value::Value::IntValue(i)) => i.to_string(),
        Some(any_value::Value::DoubleValue(d)) => d.to_string(),
        Some(any_value::Value::BytesValue(b)) => {
            b.iter().map(|x| format!("{x:02x}")).collect::<String>()
        }
        Some(any_value::Value::ArrayValue(a)) => {
            let items: Vec<String> = a.values.iter().map(any_value_text).collect();
            serde_json::to_string(&items).unwrap_or_default()
        }
        Some(any_value::Value::KvlistValue(kv)) => {
            let map: std::collections::BTreeMap<&str, String> = kv
                .values
                .iter()
                .map(|k| {
                    (
                        k.key.as_str(),
                        k.value.as_ref().map(any_value_text).unwrap_or_default(),
                    )
                })
                .collect();
            serde_json::to_string(&map).unwrap_or_default()
        }
    }
}

/// Adds `attrs` to `tags` (replacing same-named ones). An attribute longer than
/// [`MAX_LABEL_VALUE_BYTES`] (a Java `process.command_line`, say) is left out rather
/// than costing the metric; returns how many were.
fn add_attributes(tags: &mut Vec<(String, String)>, attrs: &[KeyValue]) -> usize {
    let mut dropped = 0;
    for kv in attrs {
        let Some(key) = tag_name(sanitize(&kv.key)) else {
            continue;
        };
        let value = kv.value.as_ref().map(any_value_text).unwrap_or_default();
        if value.len() > MAX_LABEL_VALUE_BYTES {
            dropped += 1;
            continue;
        }
        tags.retain(|(k, _)| *k != key);
        if !value.is_empty() {
            tags.push((key, value));
        }
    }
    dropped
}

fn to_points(request: ExportMetricsServiceRequest, now: i64) -> Decoded {
    let mut out = Decoded::default();
    for rm in &request.resource_metrics {
        let mut resource_tags = Vec::new();
        if let Some(r) = &rm.resource {
            out.dropped_attributes += add_attributes(&mut resource_tags, &r.attributes);
        }
        for sm in &rm.scope_metrics {
            let mut scope_tags = resource_tags.clone();
            if let Some(scope) = sm.scope.as_ref().filter(|s| !s.name.is_empty()) {
                scope_tags.retain(|(k, _)| k != "otel_scope_name");
                scope_tags.push(("otel_scope_name".into(), scope.name.clone()));
            }
            for metric in &sm.metrics {
                out.metrics.push(metric.name.clone());
                let position = out.metrics.len();
                let before = out.points.len();
                let n = data_point_count(metric);
                out.data_points += n;
                if let Err(e) = metric_points(metric, &scope_tags, position, now, &mut out) {
                    out.points.truncate(before);
                    out.errors.push((position, e, n));
                }
            }
        }
    }
    out
}

fn data_point_count(m: &Metric) -> usize {
    match &m.data {
        None => 0,
        Some(Data::Gauge(g)) => g.data_points.len(),
        Some(Data::Sum(s)) => s.data_points.len(),
        Some(Data::Histogram(h)) => h.data_points.len(),
        Some(Data::ExponentialHistogram(h)) => h.data_points.len(),
        Some(Data::Summary(s)) => s.data_points.len(),
    }
}

fn time_of(ns: u64, now: i64) -> Result<i64, String> {
    if ns == 0 {
        return Ok(now);
    }
    i64::try_from(ns).map_err(|_| format!("time {ns} ns is out of range"))
}

fn metric_points(
    metric: &Metric,
    base: &[(String, String)],
    line: usize,
    now: i64,
    out: &mut Decoded,
) -> Result<(), String> {
    let name = sanitize(&metric.name);
    if metric.name.is_empty() {
        return Err("a metric has no name".into());
    }
    let value_field: std::sync::Arc<str> = VALUE_FIELD.into();
    let mut push = |table: String, tags: Vec<(String, String)>, value: f64, time: i64| {
        out.points.push(Point {
            table: table.into(),
            tags: tags
                .into_iter()
                .map(|(k, v)| (k.into(), v.into()))
                .collect(),
            fields: vec![(std::sync::Arc::clone(&value_field), FieldValue::F64(value))],
            time,
            line,
        });
    };
    let mut dropped = 0;
    let mut tags_with = |attrs: &[KeyValue]| {
        let mut tags = base.to_vec();
        dropped += add_attributes(&mut tags, attrs);
        tags
    };
    let temporality_known = |kind: &str, t: i32| {
        if t == AggregationTemporality::Unspecified as i32 {
            Err(format!(
                "{kind} `{}` has no aggregation temporality (cumulative or delta)",
                metric.name
            ))
        } else {
            Ok(())
        }
    };
    let mut skipped = 0;
    match &metric.data {
        None => {
            return Err(format!(
                "metric `{}` has no data (gauge, sum, histogram or summary)",
                metric.name
            ));
        }
        Some(Data::Gauge(Gauge { data_points, .. }) | Data::Sum(Sum { data_points, .. })) => {
            if let Some(Data::Sum(s)) = &metric.data {
                temporality_known("sum", s.aggregation_temporality)?;
            }
            for p in data_points {
                if p.flags & NO_RECORDED_VALUE != 0 {
                    skipped += 1;
                    continue;
                }
                push(
                    name.clone(),
                    tags_with(&p.attributes),
                    number(p.value.as_ref())?,
                    time_of(p.time_unix_nano, now)?,
                );
            }
        }
        Some(Data::Histogram(h)) => {
            temporality_known("histogram", h.aggregation_temporality)?;
            for p in &h.data_points {
                if p.flags & NO_RECORDED_VALUE != 0 {
                    skipped += 1;
                    continue;
                }
                if !p.bucket_counts.is_empty()
                    && p.bucket_counts.len() != p.explicit_bounds.len() + 1
                {
                    return Err(format!(
                        "histogram `{}` has {} bucket counts for {} bounds (want bounds + 1)",
                        metric.name,
                        p.bucket_counts.len(),
                        p.explicit_bounds.len()
                    ));
                }
                let tags = tags_with(&p.attributes);
                let time = time_of(p.time_unix_nano, now)?;
                let mut cumulative: u64 = 0;
                for (i, c) in p.bucket_counts.iter().enumerate() {
                    cumulative = cumulative.saturating_add(*c);
                    let le = match p.explicit_bounds.get(i) {
                        Some(b) => crate::exposition::float_label(*b),
                        None => "+Inf".to_string(),
                    };
                    let mut t = tags.clone();
                    t.push(("le".into(), le));
                    push(format!("{name}_bucket"), t, cumulative as f64, time);
                }
                if let Some(sum) = p.sum {
                    push(format!("{name}_sum"), tags.clone(), sum, time);
                }
                push(format!("{name}_count"), tags, p.count as f64, time);
            }
        }
        Some(Data::Summary(s)) => {
            for p in &s.data_points {
                if p.flags & NO_RECORDED_VALUE != 0 {
                    skipped += 1;
                    continue;
                }
                let tags = tags_with(&p.attributes);
                let time = time_of(p.time_unix_nano, now)?;
                for q in &p.quantile_values {
                    let mut t = tags.clone();
                    t.push((
                        "quantile".into(),
                        crate::exposition::float_label(q.quantile),
                    ));
                    push(name.clone(), t, q.value, time);
                }
                push(format!("{name}_sum"), tags.clone(), p.sum, time);
                push(format!("{name}_count"), tags, p.count as f64, time);
            }
        }
        Some(Data::ExponentialHistogram(_)) => {
            return Err(format!(
                "metric `{}` is an exponential histogram, which Strata does not store yet; \
                 configure the SDK's view for explicit-bucket histograms",
                metric.name
            ));
        }
    }
    out.skipped_no_value += skipped;
    out.dropped_attributes += dropped;
    Ok(())
}

fn number(v: Option<&number_data_point::Value>) -> Result<f64, String> {
    match v {
        Some(number_data_point::Value::AsDouble(d)) => Ok(*d),
        Some(number_data_point::Value::AsInt(i)) => Ok(*i as f64),
        None => Err("a data point has no value (asDouble or asInt)".into()),
    }
}

/// `google.rpc.Status`, the body of an OTLP/HTTP error response.
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// An error response body in the request's encoding; `code` is a gRPC status code
/// (3 invalid argument, 8 resource exhausted, 14 unavailable).
pub fn error_body(encoding: Encoding, code: i32, message: &str) -> Vec<u8> {
    match encoding {
        Encoding::Protobuf => RpcStatus {
            code,
            message: message.to_string(),
        }
        .encode_to_vec(),
        Encoding::Json => {
            serde_json::to_vec(&serde_json::json!({"code": code, "message": message}))
                .unwrap_or_default()
        }
    }
}

/// The response body: an `ExportMetricsServiceResponse` with `partial_success` when
/// points were refused, in the request's encoding.
pub fn response(encoding: Encoding, rejected: usize, message: &str) -> Vec<u8> {
    use opentelemetry_proto::tonic::collector::metrics::v1::{
        ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
    };
    let r = ExportMetricsServiceResponse {
        partial_success: (rejected > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: rejected as i64,
            error_message: message.to_string(),
        }),
    };
    match encoding {
        Encoding::Protobuf => r.encode_to_vec(),
        Encoding::Json => serde_json::to_vec(&r).unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag<'a>(p: &'a Point, k: &str) -> Option<&'a str> {
        p.tags.iter().find(|(n, _)| **n == *k).map(|(_, v)| &**v)
    }

    fn value(p: &Point) -> f64 {
        match p.fields[0].1 {
            FieldValue::F64(v) => v,
            ref other => panic!("not f64: {other:?}"),
        }
    }

    /// The JSON an OpenTelemetry SDK's OTLP/HTTP JSON exporter sends (int64s as strings).
    const JSON: &str = r#"{"resourceMetrics":[{"resource":{"attributes":[
        {"key":"service.name","value":{"stringValue":"checkout"}},
        {"key":"host.cpu.count","value":{"intValue":"8"}}]},
      "scopeMetrics":[{"scope":{"name":"io.opentelemetry.runtime","version":"1.0"},"metrics":[
        {"name":"process.cpu.utilization","unit":"1","gauge":{"dataPoints":[
          {"attributes":[{"key":"state","value":{"stringValue":"user"}}],"timeUnixNano":"1700000000000000000","asDouble":0.25},
          {"timeUnixNano":"1700000000000000000","asDouble":0.5,"flags":1}]}},
        {"name":"http.server.requests","sum":{"aggregationTemporality":1,"isMonotonic":true,"dataPoints":[
          {"attributes":[{"key":"service.name","value":{"stringValue":"override"}}],"startTimeUnixNano":"1699999990000000000","timeUnixNano":"1700000000000000000","asInt":"42"}]}},
        {"name":"http.server.duration","histogram":{"aggregationTemporality":2,"dataPoints":[
          {"timeUnixNano":"1700000000000000000","count":"6","sum":3.5,"bucketCounts":["1","2","3"],"explicitBounds":[0.5,1]}]}},
        {"name":"latency","exponentialHistogram":{"aggregationTemporality":2,"dataPoints":[{"count":"1"}]}},
        {"name":"rpc.duration","summary":{"dataPoints":[
          {"timeUnixNano":"1700000000000000000","count":"10","sum":5,"quantileValues":[{"quantile":0.5,"value":0.4},{"quantile":0.99,"value":0.9}]}]}}
      ]}]}]}"#;

    #[test]
    fn json_request_maps_every_kind() {
        let d = decode(JSON.as_bytes(), Encoding::Json, 7, 1000).expect("decodes");
        assert_eq!(d.data_points, 6);
        assert_eq!(d.skipped_no_value, 1);
        assert_eq!(d.errors.len(), 1);
        assert_eq!(d.errors[0].0, 4);
        assert!(
            d.errors[0].1.contains("exponential histogram"),
            "{:?}",
            d.errors
        );
        let tables: Vec<&str> = d.points.iter().map(|p| &*p.table).collect();
        assert_eq!(
            tables,
            [
                "process_cpu_utilization",
                "http_server_requests",
                "http_server_duration_bucket",
                "http_server_duration_bucket",
                "http_server_duration_bucket",
                "http_server_duration_sum",
                "http_server_duration_count",
                "rpc_duration",
                "rpc_duration",
                "rpc_duration_sum",
                "rpc_duration_count",
            ]
        );
        let g = &d.points[0];
        assert_eq!(tag(g, "service_name"), Some("checkout"));
        assert_eq!(tag(g, "host_cpu_count"), Some("8"));
        assert_eq!(tag(g, "otel_scope_name"), Some("io.opentelemetry.runtime"));
        assert_eq!(tag(g, "state"), Some("user"));
        assert_eq!((value(g), g.time), (0.25, 1_700_000_000_000_000_000));
        let s = &d.points[1];
        assert_eq!(
            tag(s, "service_name"),
            Some("override"),
            "point attributes win"
        );
        assert_eq!(value(s), 42.0);
        let buckets: Vec<(Option<&str>, f64)> = d.points[2..5]
            .iter()
            .map(|p| (tag(p, "le"), value(p)))
            .collect();
        assert_eq!(
            buckets,
            [(Some("0.5"), 1.0), (Some("1"), 3.0), (Some("+Inf"), 6.0)]
        );
        assert_eq!((value(&d.points[5]), value(&d.points[6])), (3.5, 6.0));
        assert_eq!(tag(&d.points[8], "quantile"), Some("0.99"));
        assert!(d.points.iter().all(|p| p.line != 4));
    }

    #[test]
    fn protobuf_round_trip_and_bad_bodies() {
        let req: ExportMetricsServiceRequest = serde_json::from_str(JSON).expect("json");
        let d = decode(&req.encode_to_vec(), Encoding::Protobuf, 7, 1000).expect("protobuf");
        assert_eq!(d.points.len(), 11);
        // The limit is checked before anything is built, on an upper bound (here 12: the
        // gauge point without a value is counted too).
        let e = decode(&req.encode_to_vec(), Encoding::Protobuf, 7, 10).expect_err("limit");
        assert!(
            e.to_string().contains("12 points, over the limit of 10"),
            "{e}"
        );
        let e = decode(b"\x0a\xff\xff\xff\xff\x0f", Encoding::Protobuf, 0, 1000).expect_err("bad");
        assert!(
            e.to_string()
                .contains("ExportMetricsServiceRequest protobuf"),
            "{e}"
        );
        let e = decode(b"{\"resourceMetrics\": 5}", Encoding::Json, 0, 1000).expect_err("bad");
        assert!(e.to_string().contains("in JSON"), "{e}");
        // A histogram whose counts do not fit its bounds is refused, alone.
        let bad = r#"{"resourceMetrics":[{"scopeMetrics":[{"metrics":[
            {"name":"h","histogram":{"aggregationTemporality":2,"dataPoints":[{"bucketCounts":["1"],"explicitBounds":[1,2]}]}},
            {"name":"s","sum":{"dataPoints":[{"asInt":"1"}]}},
            {"name":"g","gauge":{"dataPoints":[{"asInt":"3"}]}}]}]}]}"#;
        let d = decode(bad.as_bytes(), Encoding::Json, 99, 1000).expect("decodes");
        let errs: Vec<&str> = d.errors.iter().map(|e| e.1.as_str()).collect();
        assert!(errs[0].contains("1 bucket counts for 2 bounds"), "{errs:?}");
        assert!(errs[1].contains("no aggregation temporality"), "{errs:?}");
        assert_eq!(d.points.len(), 1);
        assert_eq!(
            (&*d.points[0].table, d.points[0].time),
            ("g", 99),
            "no time: now"
        );
    }

    #[test]
    fn names_are_sanitised() {
        assert_eq!(sanitize("http.server.duration"), "http_server_duration");
        assert_eq!(sanitize("k8s.pod/cpu-usage"), "k8s_pod_cpu_usage");
        assert_eq!(sanitize("2xx"), "_2xx");
        assert_eq!(sanitize("job:rate5m"), "job:rate5m");
    }
}
