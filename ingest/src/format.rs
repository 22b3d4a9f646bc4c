//! The payload formats every transport shares (HTTP bodies, Kafka messages): one decoder
//! per format, chosen by name.

use strata_engine::Point;

use crate::LineError;
use crate::lp::{self, Precision};

/// A payload format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// Influx line protocol, one or many lines.
    LineProtocol,
    /// The seed JSON model: one object, an array of objects, or NDJSON.
    SeedJson,
}

impl Format {
    /// Accepts `json`, `line_protocol` and their usual spellings.
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "json" | "seed_json" | "seed-json" => Some(Self::SeedJson),
            "lp" | "line_protocol" | "line-protocol" | "influx" | "influx_lp" => {
                Some(Self::LineProtocol)
            }
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::LineProtocol => "line_protocol",
            Self::SeedJson => "json",
        }
    }

    /// Decodes `text`. Line-protocol lines without a timestamp get `default_time`
    /// (nanoseconds); `precision` applies to line protocol only (JSON is milliseconds).
    pub fn decode(
        self,
        text: &str,
        precision: Precision,
        default_time: i64,
    ) -> (Vec<Point>, Vec<LineError>) {
        match self {
            Self::LineProtocol => lp::parse(text, precision, default_time),
            Self::SeedJson => crate::json::parse(text),
        }
    }
}
