use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow::array::RecordBatch;
use arrow::datatypes::DataType;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use futures::TryStreamExt;
use sqllogictest::{DBOutput, DefaultColumnType};
use strata_engine::clock::ManualClock;
use strata_engine::{Engine, EngineConfig, WriteOptions};
use strata_sql::QueryEngine;

/// The clock of every slt run: six days after the epoch, so the small timestamps the
/// files use are inside the hot tier's retention (7 days) and readable in results.
const NOW: i64 = 6 * 86_400 * 1_000_000_000;

#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct SltError(String);

#[derive(Clone)]
struct StrataDb {
    engine: Arc<Engine>,
    query: QueryEngine,
}

#[async_trait::async_trait]
impl sqllogictest::AsyncDB for StrataDb {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, SltError> {
        if let Some(rest) = sql.trim_start().strip_prefix("write_lp") {
            let (db, body) = rest.split_once('\n').unwrap_or((rest, ""));
            let (points, errors) =
                strata_ingest::lp::parse(body, strata_ingest::lp::Precision::Nanosecond, NOW);
            if let Some(e) = errors.first() {
                return Err(SltError(format!(
                    "line {}: {}",
                    e.line_number, e.error_message
                )));
            }
            let out = self
                .engine
                .write(db.trim(), points, WriteOptions::default())
                .await
                .map_err(|e| SltError(e.to_string()))?;
            if let Some(r) = out.rejected.first() {
                return Err(SltError(format!("line {}: {}", r.line, r.reason)));
            }
            return Ok(DBOutput::StatementComplete(out.accepted as u64));
        }
        if sql.trim() == "persist" {
            let n = self
                .engine
                .persist(true)
                .await
                .map_err(|e| SltError(e.to_string()))?;
            return Ok(DBOutput::StatementComplete(n as u64));
        }
        let (schema, stream) = self
            .query
            .query("metrics", sql)
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let batches: Vec<RecordBatch> = stream
            .try_collect()
            .await
            .map_err(|e| SltError(e.to_string()))?;
        let types = schema
            .fields()
            .iter()
            .map(|f| match f.data_type() {
                DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => {
                    DefaultColumnType::Integer
                }
                DataType::UInt8 | DataType::UInt16 | DataType::UInt32 | DataType::UInt64 => {
                    DefaultColumnType::Integer
                }
                DataType::Float32 | DataType::Float64 => DefaultColumnType::FloatingPoint,
                DataType::Utf8
                | DataType::LargeUtf8
                | DataType::Utf8View
                | DataType::Dictionary(_, _) => DefaultColumnType::Text,
                _ => DefaultColumnType::Any,
            })
            .collect();
        let opts = FormatOptions::default().with_null("NULL");
        let mut rows = Vec::new();
        for b in &batches {
            let fmts: Vec<ArrayFormatter> = b
                .columns()
                .iter()
                .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
                .collect::<Result<_, _>>()
                .map_err(|e| SltError(e.to_string()))?;
            for r in 0..b.num_rows() {
                rows.push(fmts.iter().map(|f| f.value(r).to_string()).collect());
            }
        }
        Ok(DBOutput::Rows { types, rows })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        "strata"
    }

    async fn sleep(dur: std::time::Duration) {
        tokio::time::sleep(dur).await;
    }
}

fn slt_files() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/slt");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("slt dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "slt"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "no .slt files in {}", dir.display());
    files
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slt() {
    let complete = std::env::var_os("STRATA_SLT_COMPLETE").is_some();
    let mut failures = Vec::new();
    for file in slt_files() {
        let dir = tempfile::tempdir().expect("tempdir");
        let clock = ManualClock::new(NOW);
        let (engine, _) = Engine::open(EngineConfig::for_test(dir.path()), clock)
            .await
            .expect("engine");
        let query = QueryEngine::new(Arc::clone(&engine), strata_sql::QueryConfig::default())
            .expect("query engine");
        let db = StrataDb { engine, query };
        let mut runner = sqllogictest::Runner::new(move || {
            let db = db.clone();
            async move { Ok::<_, SltError>(db) }
        });
        if complete {
            runner
                .update_test_file(
                    &file,
                    " ",
                    sqllogictest::default_validator,
                    sqllogictest::default_normalizer,
                    sqllogictest::default_column_validator,
                )
                .await
                .expect("complete");
        } else if let Err(e) = runner.run_file_async(&file).await {
            failures.push(format!("{}: {e}", file.display()));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}
