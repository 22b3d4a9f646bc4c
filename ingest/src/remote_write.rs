//! Prometheus remote_write 1.0: a snappy-compressed (block format) protobuf
//! `prometheus.WriteRequest`. The messages are declared here with `prost` (only the
//! fields Strata reads; unknown fields are skipped by protobuf's rules).
//!
//! Each series' `__name__` is the table, its other labels are tags (an empty value is a
//! missing tag), each sample is a point with the f64 field `value` at its millisecond
//! timestamp. Staleness markers (Prometheus' special NaN written when a series
//! disappears) are not data and are dropped; native histograms are refused per series.

use prost::Message;
use strata_engine::{FieldValue, Point};

use crate::MAX_LABEL_VALUE_BYTES;
use crate::exposition::{VALUE_FIELD, tag_name};

/// The bit pattern of Prometheus' staleness marker (`value.StaleNaN`).
pub const STALE_NAN_BITS: u64 = 0x7ff0_0000_0000_0002;

#[derive(Clone, PartialEq, Message)]
pub struct WriteRequest {
    #[prost(message, repeated, tag = "1")]
    pub timeseries: Vec<TimeSeries>,
}

#[derive(Clone, PartialEq, Message)]
pub struct TimeSeries {
    #[prost(message, repeated, tag = "1")]
    pub labels: Vec<Label>,
    #[prost(message, repeated, tag = "2")]
    pub samples: Vec<Sample>,
    /// Native histograms, kept undecoded: only counted (and refused).
    #[prost(bytes = "vec", repeated, tag = "4")]
    pub histograms: Vec<Vec<u8>>,
}

#[derive(Clone, PartialEq, Message)]
pub struct Label {
    #[prost(string, tag = "1")]
    pub name: String,
    #[prost(string, tag = "2")]
    pub value: String,
}

#[derive(Clone, PartialEq, Message)]
pub struct Sample {
    #[prost(double, tag = "1")]
    pub value: f64,
    /// Milliseconds since the Unix epoch.
    #[prost(int64, tag = "2")]
    pub timestamp: i64,
}

/// Why a whole request was refused.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("the body is not valid snappy (block format, as remote_write requires): {0}")]
    Snappy(String),
    #[error("the body decompresses to {size} bytes, over the limit of {limit} bytes")]
    TooLarge { size: usize, limit: usize },
    #[error("the body is not a valid prometheus.WriteRequest protobuf: {0}")]
    Protobuf(String),
}

/// One series the decoder refused, with why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SeriesError {
    /// 1-based position of the series in the request.
    pub series: usize,
    pub message: String,
}

/// What one request decoded to. A point's `line` is its series' position (1-based), so
/// engine rejections name the series.
#[derive(Debug, Default)]
pub struct Decoded {
    pub points: Vec<Point>,
    pub errors: Vec<SeriesError>,
    pub series: usize,
    pub stale_markers: usize,
}

/// Decompresses and decodes a request body; `limit` bounds the decompressed size.
pub fn decode(body: &[u8], limit: usize) -> Result<Decoded, DecodeError> {
    let size = snap::raw::decompress_len(body).map_err(|e| DecodeError::Snappy(e.to_string()))?;
    if size > limit {
        return Err(DecodeError::TooLarge { size, limit });
    }
    let raw = snap::raw::Decoder::new()
        .decompress_vec(body)
        .map_err(|e| DecodeError::Snappy(e.to_string()))?;
    let request =
        WriteRequest::decode(raw.as_slice()).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    Ok(to_points(request))
}

fn to_points(request: WriteRequest) -> Decoded {
    let mut out = Decoded {
        series: request.timeseries.len(),
        ..Decoded::default()
    };
    for (i, ts) in request.timeseries.into_iter().enumerate() {
        let series = i + 1;
        match series_points(ts, series, &mut out) {
            Ok(()) => {}
            Err(message) => out.errors.push(SeriesError { series, message }),
        }
    }
    out
}

fn series_points(ts: TimeSeries, series: usize, out: &mut Decoded) -> Result<(), String> {
    let mut name = None;
    let mut tags = Vec::with_capacity(ts.labels.len());
    for l in ts.labels {
        if l.value.len() > MAX_LABEL_VALUE_BYTES {
            return Err(format!(
                "the value of label `{}` is {} bytes, over the limit of {MAX_LABEL_VALUE_BYTES}",
                l.name,
                l.value.len()
            ));
        }
        if l.name == "__name__" {
            name = Some(l.value);
        } else if !l.value.is_empty()
            && let Some(tag) = tag_name(l.name)
        {
            tags.push((
                std::sync::Arc::<str>::from(tag),
                std::sync::Arc::<str>::from(l.value),
            ));
        }
    }
    let table = name
        .filter(|n| !n.is_empty())
        .ok_or("the series has no `__name__` label (the metric name)")?;
    if !ts.histograms.is_empty() {
        return Err(format!(
            "series `{table}` carries {} native histogram samples, which Strata does not store; \
             send classic histograms (`_bucket`/`_sum`/`_count`)",
            ts.histograms.len()
        ));
    }
    // Checked first, so a refused series stores none of its samples.
    if let Some(s) = ts
        .samples
        .iter()
        .find(|s| s.timestamp.checked_mul(1_000_000).is_none())
    {
        return Err(format!(
            "series `{table}`: timestamp {} ms is out of range",
            s.timestamp
        ));
    }
    let table: std::sync::Arc<str> = table.into();
    let tags: strata_engine::Tags = tags.into();
    let value_field: std::sync::Arc<str> = VALUE_FIELD.into();
    for s in ts.samples {
        if s.value.to_bits() == STALE_NAN_BITS {
            out.stale_markers += 1;
            continue;
        }
        let time = s.timestamp.saturating_mul(1_000_000);
        out.points.push(Point {
            table: table.clone(),
            tags: tags.clone(),
            fields: vec![(
                std::sync::Arc::clone(&value_field),
                FieldValue::F64(s.value),
            )],
            time,
            line: series,
        });
    }
    Ok(())
}

/// Encodes a request the way Prometheus sends it (tests, benchmarks and the agent).
pub fn encode(request: &WriteRequest) -> Vec<u8> {
    let raw = request.encode_to_vec();
    // Compressing a byte slice into a fresh buffer cannot fail.
    snap::raw::Encoder::new()
        .compress_vec(&raw)
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    const RECORDED: &[u8] = include_bytes!("../tests/data/prometheus_2.42_remote_write.bin");

    fn series(name: &str, labels: &[(&str, &str)], samples: &[(f64, i64)]) -> TimeSeries {
        let mut all = vec![Label {
            name: "__name__".into(),
            value: name.into(),
        }];
        all.extend(labels.iter().map(|(n, v)| Label {
            name: (*n).into(),
            value: (*v).into(),
        }));
        TimeSeries {
            labels: all,
            samples: samples
                .iter()
                .map(|&(value, timestamp)| Sample { value, timestamp })
                .collect(),
            histograms: vec![],
        }
    }

    #[test]
    fn a_request_recorded_from_prometheus_decodes() {
        let d = decode(RECORDED, 64 << 20).expect("decodes");
        assert!(d.errors.is_empty(), "{:?}", d.errors);
        assert_eq!(d.series, 500, "Prometheus' default max_samples_per_send");
        assert!(d.points.len() >= d.series - d.stale_markers);
        let up: Vec<&Point> = d.points.iter().filter(|p| &*p.table == "up").collect();
        assert!(!up.is_empty(), "Prometheus forwards its `up` series");
        let tags: Vec<&str> = up[0].tags.iter().map(|(k, _)| &**k).collect();
        assert_eq!(tags, ["instance", "job"]);
        assert_eq!(up[0].field_pairs(), [("value", &FieldValue::F64(1.0))]);
        // Recorded on 2026-12-01: millisecond timestamps scaled to nanoseconds.
        assert!(up[0].time > 1_796_000_000_000_000_000 && up[0].time % 1_000_000 == 0);
        assert!(
            d.points
                .iter()
                .any(|p| &*p.table == "node_cpu_seconds_total"
                    && p.tags.iter().any(|(k, _)| &**k == "mode"))
        );
    }

    #[test]
    fn round_trip_with_stale_markers_empty_labels_and_bad_series() {
        let req = WriteRequest {
            timeseries: vec![
                series(
                    "cpu",
                    &[
                        ("host", "a"),
                        ("empty", ""),
                        ("__replica__", "r1"),
                        ("value", "v"),
                    ],
                    &[(1.5, 1_000), (f64::from_bits(STALE_NAN_BITS), 2_000)],
                ),
                series("", &[("host", "b")], &[(1.0, 1_000)]),
                TimeSeries {
                    labels: vec![],
                    samples: vec![Sample {
                        value: 1.0,
                        timestamp: 1,
                    }],
                    histograms: vec![],
                },
                TimeSeries {
                    histograms: vec![vec![8, 1]],
                    ..series("hist", &[], &[])
                },
                series(
                    "big",
                    &[("v", &"x".repeat(MAX_LABEL_VALUE_BYTES + 1))],
                    &[(1.0, 1)],
                ),
                series("overflow", &[], &[(1.0, 5), (1.0, i64::MAX)]),
                series("mem", &[], &[(2.0, 3_000)]),
            ],
        };
        let d = decode(&encode(&req), 1 << 20).expect("decodes");
        assert_eq!(d.series, 7);
        assert_eq!(d.stale_markers, 1);
        let got: Vec<(&str, usize, i64)> = d
            .points
            .iter()
            .map(|p| (&*p.table, p.line, p.time))
            .collect();
        assert_eq!(got, [("cpu", 1, 1_000_000_000), ("mem", 7, 3_000_000_000)]);
        assert_eq!(
            d.points[0].tag_pairs(),
            [("host", "a"), ("exported_value", "v")]
        );
        let errs: Vec<(usize, &str)> = d
            .errors
            .iter()
            .map(|e| (e.series, e.message.as_str()))
            .collect();
        assert_eq!(errs.len(), 5);
        assert!(errs[0].0 == 2 && errs[0].1.contains("no `__name__`"));
        assert!(errs[1].0 == 3 && errs[1].1.contains("no `__name__`"));
        assert!(errs[2].0 == 4 && errs[2].1.contains("native histogram"));
        assert!(errs[3].0 == 5 && errs[3].1.contains("over the limit"));
        assert!(errs[4].0 == 6 && errs[4].1.contains("out of range"));
    }

    #[test]
    fn malformed_bodies_are_clear_errors() {
        // Truncated snappy: every cut of a real request.
        for cut in [0, 1, 5, RECORDED.len() / 2, RECORDED.len() - 1] {
            let err = decode(&RECORDED[..cut], 64 << 20).expect_err("truncated");
            assert!(matches!(err, DecodeError::Snappy(_)), "cut {cut}: {err}");
        }
        // Valid snappy around bytes that are not a WriteRequest.
        let junk = snap::raw::Encoder::new()
            .compress_vec(&[0x0a, 0xff, 0xff, 0xff, 0x0f, 1, 2])
            .expect("compress");
        let err = decode(&junk, 1 << 20).expect_err("bad protobuf");
        assert!(matches!(err, DecodeError::Protobuf(_)), "{err}");
        assert!(err.to_string().contains("prometheus.WriteRequest"));
        // The size claimed in the header is checked before anything is allocated.
        let err = decode(RECORDED, 1_000).expect_err("too large");
        assert!(
            matches!(err, DecodeError::TooLarge { limit: 1_000, .. }),
            "{err}"
        );
    }
}
