//! `strata-ingest` turns wire formats into points and hands them to the engine: Influx
//! line protocol ([`lp`]), the seed JSON model ([`json`]), chosen by [`format::Format`],
//! and the transports that carry them: the HTTP write endpoints ([`http`]) and the Kafka
//! consumer ([`kafka`]); Prometheus remote_write ([`remote_write`]), OTLP metrics
//! ([`otlp`]) and the text exposition format ([`exposition`]) read by the scraper
//! ([`scrape`]); and the push agent ([`agent`]) that `strata agent` runs.
//!
//! It must not store anything itself: validation against table schemas, durability and
//! the memory budget are the engine's. Start with [`http::router`].

pub mod agent;
pub mod exposition;
pub mod format;
pub mod http;
pub mod json;
pub mod kafka;
pub mod lp;
pub mod otlp;
pub mod remote_write;
pub mod scrape;

/// One rejected line (or JSON element), in InfluxDB 3's partial-write error shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub original_line: String,
    pub line_number: usize,
    pub error_message: String,
}

/// Longest accepted label (tag) value, in bytes, in the Prometheus decoders.
pub const MAX_LABEL_VALUE_BYTES: usize = 16 * 1024;

/// Lines quoted back in errors are cut to this many bytes.
const MAX_QUOTED_LINE: usize = 256;

impl LineError {
    pub fn new(line_number: usize, original: &str, message: impl Into<String>) -> Self {
        let cut = original.floor_char_boundary(MAX_QUOTED_LINE);
        let original_line = if cut < original.len() {
            format!("{}…", &original[..cut])
        } else {
            original.to_string()
        };
        Self {
            original_line,
            line_number,
            error_message: message.into(),
        }
    }
}
