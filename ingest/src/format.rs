//! The payload formats every transport shares (HTTP bodies, Kafka messages): one decoder
//! per format, chosen by name.

use strata_engine::Rows;

use crate::LineError;
use crate::lp::{self, Precision};

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Influx line protocol, one or many lines.
    LineProtocol,
    /// The seed JSON model: one object, an array of objects, or NDJSON.
    SeedJson,
    /// Prometheus text exposition (a `/metrics` page).
    PrometheusText,
    /// A Prometheus remote_write 1.0 body (snappy-compressed protobuf).
    RemoteWrite,
    /// An OTLP `ExportMetricsServiceRequest` in protobuf (the OpenTelemetry Collector's
    /// Kafka exporter's `otlp_proto` encoding).
    OtlpProto,
    /// The same in OTLP's JSON encoding (`otlp_json`).
    OtlpJson,
}

/// Why a whole payload could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PayloadError {
    /// A text format whose payload is not UTF-8 (the byte where it stops being).
    NotUtf8(usize),
    /// A binary format that did not decode.
    Undecodable(String),
}

/// The names [`Format::parse`] accepts, for error messages.
pub const FORMAT_NAMES: &str =
    "json, line_protocol, prometheus, remote_write, otlp_proto or otlp_json";

impl Format {
    /// Accepts the names in [`FORMAT_NAMES`] and their usual spellings.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "seed_json" | "seed-json" => Some(Self::SeedJson),
            "lp" | "line_protocol" | "line-protocol" | "influx" | "influx_lp" => {
                Some(Self::LineProtocol)
            }
            "prometheus" | "prometheus_text" | "exposition" => Some(Self::PrometheusText),
            "remote_write" | "prometheus_remote_write" => Some(Self::RemoteWrite),
            "otlp" | "otlp_proto" => Some(Self::OtlpProto),
            "otlp_json" => Some(Self::OtlpJson),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LineProtocol => "line_protocol",
            Self::SeedJson => "json",
            Self::PrometheusText => "prometheus",
            Self::RemoteWrite => "remote_write",
            Self::OtlpProto => "otlp_proto",
            Self::OtlpJson => "otlp_json",
        }
    }

    /// Decodes a payload of any format. Items refused by the decoder come back as
    /// [`LineError`]s numbered by line (text), series (remote_write) or metric (OTLP);
    /// `max_bytes` bounds what a compressed payload may expand to, `max_points` what an
    /// OTLP request may make (checked before the points are built).
    pub fn decode_bytes(
        self,
        payload: &[u8],
        precision: Precision,
        default_time: i64,
        max_bytes: usize,
        max_points: usize,
    ) -> Result<(Rows, Vec<LineError>), PayloadError> {
        let text =
            || std::str::from_utf8(payload).map_err(|e| PayloadError::NotUtf8(e.valid_up_to()));
        match self {
            Self::LineProtocol | Self::SeedJson | Self::PrometheusText => {
                Ok(self.decode(text()?, precision, default_time))
            }
            Self::RemoteWrite => {
                let d = crate::remote_write::decode(payload, max_bytes)
                    .map_err(|e| PayloadError::Undecodable(e.to_string()))?;
                let errors = d
                    .errors
                    .into_iter()
                    .map(|e| LineError::new(e.series, "", e.message))
                    .collect();
                Ok((d.points.into(), errors))
            }
            Self::OtlpProto | Self::OtlpJson => {
                let encoding = if self == Self::OtlpProto {
                    crate::otlp::Encoding::Protobuf
                } else {
                    crate::otlp::Encoding::Json
                };
                let d = crate::otlp::decode(payload, encoding, default_time, max_points)
                    .map_err(|e| PayloadError::Undecodable(e.to_string()))?;
                let errors = d
                    .errors
                    .into_iter()
                    .map(|(metric, msg, _)| LineError::new(metric, "", msg))
                    .collect();
                Ok((d.points.into(), errors))
            }
        }
    }

    /// Decodes `text` of a text format (line protocol, seed JSON, exposition; see
    /// [`Format::decode_bytes`] for every format). Lines without a timestamp get `default_time`
    /// (nanoseconds); `precision` applies to line protocol only (JSON is milliseconds).
    pub fn decode(
        self,
        text: &str,
        precision: Precision,
        default_time: i64,
    ) -> (Rows, Vec<LineError>) {
        match self {
            Self::LineProtocol => lp::parse_rows(text, precision, default_time),
            Self::SeedJson => {
                let (points, errors) = crate::json::parse(text);
                (points.into(), errors)
            }
            Self::PrometheusText => {
                let e = crate::exposition::parse(
                    text,
                    crate::exposition::Dialect::Prometheus,
                    default_time,
                    true,
                );
                (e.points.into(), e.errors)
            }
            Self::RemoteWrite | Self::OtlpProto | Self::OtlpJson => (
                Rows::new(),
                vec![LineError::new(
                    1,
                    "",
                    format!(
                        "`{}` is a binary format: decode it with decode_bytes",
                        self.name()
                    ),
                )],
            ),
        }
    }
}
