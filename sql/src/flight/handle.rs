//! Statement handles and tickets. They are self-contained — database, SQL and bound
//! parameters — so `DoGet` and prepared statements need no state on the server: any
//! ticket works on any Strata process, after a restart, forever (Grafana caches them).
//!
//! Format: JSON `{"db": "...", "sql": "...", "params": "<base64 Arrow IPC stream>",
//! "plan": <number>, "statement": <number>}`, `params` present only once parameters were
//! bound (one row, one column per `$n`). A ticket from `GetFlightInfo` also names the plan
//! it made (`plan`), which its first `DoGet` runs if this process still holds it; a
//! prepared statement's handle names the plan `CreatePreparedStatement` made
//! (`statement`), which its `GetFlightInfo` calls reuse while this process holds it (see
//! [`super::plans`]). Otherwise the SQL is planned again.
//!
//! Also here: InfluxDB 3's plain JSON ticket `{"database", "sql_query", "query_type"}`,
//! what `influxdb3-python` and the other InfluxDB 3 clients send to `DoGet`.

use std::io::Cursor;

use arrow::array::RecordBatch;
use arrow::ipc::reader::StreamReader;
use arrow::ipc::writer::StreamWriter;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use datafusion::common::ScalarValue;
use serde::{Deserialize, Serialize};
use tonic::Status;

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StatementHandle {
    pub db: String,
    pub sql: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    params: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plan: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<u64>,
}

impl StatementHandle {
    pub fn new(db: impl Into<String>, sql: impl Into<String>) -> Self {
        Self {
            db: db.into(),
            sql: sql.into(),
            params: None,
            plan: None,
            statement: None,
        }
    }

    pub fn encode(&self) -> Bytes {
        // Serialising strings cannot fail.
        Bytes::from(serde_json::to_vec(self).unwrap_or_default())
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, Status> {
        serde_json::from_slice(bytes).map_err(|e| {
            Status::invalid_argument(format!(
                "not a Strata statement handle or ticket ({e}); get tickets from GetFlightInfo"
            ))
        })
    }

    /// The same statement with `row` (one row; zero rows clears them) as its parameters.
    pub fn with_params(&self, row: Option<&RecordBatch>) -> Result<Self, Status> {
        let params = match row {
            None => None,
            Some(batch) => {
                let mut buf = Vec::new();
                let mut w = StreamWriter::try_new(&mut buf, &batch.schema())
                    .map_err(|e| Status::internal(format!("encoding parameters: {e}")))?;
                w.write(batch)
                    .and_then(|()| w.finish())
                    .map_err(|e| Status::internal(format!("encoding parameters: {e}")))?;
                drop(w);
                Some(STANDARD.encode(buf))
            }
        };
        Ok(Self {
            params,
            plan: None,
            ..self.clone()
        })
    }

    /// The bound parameter values, `$1` first.
    pub fn params(&self) -> Result<Vec<ScalarValue>, Status> {
        let Some(b64) = &self.params else {
            return Ok(Vec::new());
        };
        let bad = |e: &dyn std::fmt::Display| {
            Status::invalid_argument(format!("bound parameters in the handle are corrupt: {e}"))
        };
        let bytes = STANDARD.decode(b64).map_err(|e| bad(&e))?;
        let reader = StreamReader::try_new(Cursor::new(bytes), None).map_err(|e| bad(&e))?;
        let mut values = Vec::new();
        for batch in reader {
            let batch = batch.map_err(|e| bad(&e))?;
            if batch.num_rows() == 0 {
                continue;
            }
            for col in batch.columns() {
                values.push(ScalarValue::try_from_array(col, 0).map_err(|e| bad(&e))?);
            }
            break;
        }
        Ok(values)
    }
}

/// InfluxDB 3's JSON ticket.
#[derive(Debug, Deserialize)]
pub struct InfluxTicket {
    pub database: String,
    pub sql_query: String,
    #[serde(default = "sql")]
    pub query_type: String,
}

fn sql() -> String {
    "sql".to_string()
}

impl InfluxTicket {
    /// `Some` when `bytes` is a JSON object with the InfluxDB 3 ticket fields; our own
    /// tickets are protobuf `Any` messages and never start with `{`.
    pub fn parse(bytes: &[u8]) -> Option<Result<StatementHandle, Status>> {
        let first = bytes.iter().find(|b| !b.is_ascii_whitespace())?;
        if *first != b'{' {
            return None;
        }
        let ticket: InfluxTicket = match serde_json::from_slice(bytes) {
            Ok(t) => t,
            Err(e) => {
                return Some(Err(Status::invalid_argument(format!(
                    "JSON ticket must be {{\"database\", \"sql_query\", \"query_type\"}}: {e}"
                ))));
            }
        };
        Some(if ticket.query_type.eq_ignore_ascii_case("sql") {
            Ok(StatementHandle::new(ticket.database, ticket.sql_query))
        } else {
            Err(Status::unimplemented(format!(
                "query_type `{}` is not supported; Strata answers `sql`",
                ticket.query_type
            )))
        })
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;
    use arrow::array::{Int64Array, StringArray};
    use arrow::datatypes::{DataType, Field, Schema};

    #[test]
    fn handle_round_trips_with_parameters() {
        let h = StatementHandle::new("metrics", "SELECT * FROM cpu WHERE host = $1 AND v > $2");
        assert_eq!(StatementHandle::decode(&h.encode()).expect("decode"), h);
        assert!(h.params().expect("none").is_empty());
        let schema = Arc::new(Schema::new(vec![
            Field::new("$1", DataType::Utf8, true),
            Field::new("$2", DataType::Int64, true),
        ]));
        let row = RecordBatch::try_new(
            schema,
            vec![
                Arc::new(StringArray::from(vec!["a"])),
                Arc::new(Int64Array::from(vec![5])),
            ],
        )
        .expect("row");
        let bound = h.with_params(Some(&row)).expect("bind");
        let back = StatementHandle::decode(&bound.encode()).expect("decode");
        assert_eq!(
            back.params().expect("params"),
            vec![ScalarValue::from("a"), ScalarValue::Int64(Some(5))]
        );
        assert!(StatementHandle::decode(b"\x01garbage").is_err());
    }

    #[test]
    fn influx_tickets() {
        let t = br#"{"database":"db1","sql_query":"SELECT 1","query_type":"sql"}"#;
        let h = InfluxTicket::parse(t).expect("json").expect("valid");
        assert_eq!(h, StatementHandle::new("db1", "SELECT 1"));
        let t = br#"{"database":"db1","sql_query":"SELECT 1","query_type":"influxql"}"#;
        let err = InfluxTicket::parse(t).expect("json").expect_err("influxql");
        assert_eq!(err.code(), tonic::Code::Unimplemented);
        assert!(InfluxTicket::parse(b"\x0a\x05hello").is_none());
    }
}
