//! `strata-ingest` turns wire formats into points and hands them to the engine: Influx
//! line protocol ([`lp`]), the seed JSON model ([`json`]), chosen by [`format::Format`],
//! and the transports that carry them: the HTTP write endpoints ([`http`]) and the Kafka
//! consumer ([`kafka`]). Later: Prometheus remote_write and exposition, the scraper and
//! the agent, each as one decoder shared by every transport.
//!
//! It must not store anything itself: validation against table schemas, durability and
//! the memory budget are the engine's. Start with [`http::router`].

pub mod format;
pub mod http;
pub mod json;
pub mod kafka;
pub mod lp;

/// One rejected line (or JSON element), in InfluxDB 3's partial-write error shape.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LineError {
    pub original_line: String,
    pub line_number: usize,
    pub error_message: String,
}

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
