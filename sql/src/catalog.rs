//! Databases as DataFusion catalogs: each has the schemas `public` (the metric tables,
//! each over all tiers), `rollup_1m` and `rollup_1h` (the rollup tiers as stored) and
//! `system` (introspection); DataFusion adds `information_schema`.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::datasource::TableProvider;
use datafusion::datasource::memory::MemTable;
use strata_catalog::Tier;
use strata_catalog::units::format_duration;
use strata_engine::Engine;

use crate::DEFAULT_DATABASE;
use crate::table::MetricTable;

pub const PUBLIC_SCHEMA: &str = "public";
pub const SYSTEM_SCHEMA: &str = "system";

/// Every database of the engine, looked up live.
#[derive(Debug)]
pub struct DatabaseList {
    engine: Arc<Engine>,
}

impl DatabaseList {
    pub fn new(engine: Arc<Engine>) -> Self {
        Self { engine }
    }
}

impl CatalogProviderList for DatabaseList {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        // Databases are created by writing to them, not by SQL.
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        let mut names = self.engine.databases();
        if !names.iter().any(|n| n == DEFAULT_DATABASE) {
            names.push(DEFAULT_DATABASE.to_string());
            names.sort();
        }
        names
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        (self.engine.has_database(name) || name == DEFAULT_DATABASE).then(|| {
            Arc::new(Database {
                engine: Arc::clone(&self.engine),
                db: name.to_string(),
            }) as Arc<dyn CatalogProvider>
        })
    }
}

#[derive(Debug)]
struct Database {
    engine: Arc<Engine>,
    db: String,
}

impl CatalogProvider for Database {
    fn schema_names(&self) -> Vec<String> {
        vec![
            PUBLIC_SCHEMA.to_string(),
            Tier::Warm.schema_name().to_string(),
            Tier::Cold.schema_name().to_string(),
            SYSTEM_SCHEMA.to_string(),
        ]
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let engine = Arc::clone(&self.engine);
        let db = self.db.clone();
        match name {
            PUBLIC_SCHEMA => Some(Arc::new(TierSchema {
                engine,
                db,
                tier: Tier::Hot,
            })),
            SYSTEM_SCHEMA => Some(Arc::new(SystemSchema { engine, db })),
            _ => [Tier::Warm, Tier::Cold]
                .into_iter()
                .find(|t| t.schema_name() == name)
                .map(|tier| Arc::new(TierSchema { engine, db, tier }) as Arc<dyn SchemaProvider>),
        }
    }

    fn register_schema(
        &self,
        name: &str,
        _schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        exec_err!("schemas of a Strata database are fixed; cannot create `{name}`")
    }
}

/// `public` (each metric over all tiers) or a rollup tier's schema.
#[derive(Debug)]
struct TierSchema {
    engine: Arc<Engine>,
    db: String,
    tier: Tier,
}

#[async_trait]
impl SchemaProvider for TierSchema {
    fn table_names(&self) -> Vec<String> {
        self.engine.tables(&self.db)
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        Ok(self
            .engine
            .table_snapshot(&self.db, name)
            .map(|s| Arc::new(MetricTable::of_tier(s, self.tier)) as Arc<dyn TableProvider>))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.engine.tables(&self.db).iter().any(|t| t == name)
    }
}

const SYSTEM_TABLES: [&str; 4] = ["tables", "parquet_files", "tiers", "last_value_caches"];

#[derive(Debug)]
struct SystemSchema {
    engine: Arc<Engine>,
    db: String,
}

#[async_trait]
impl SchemaProvider for SystemSchema {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = SYSTEM_TABLES.iter().map(|s| s.to_string()).collect();
        names.extend(
            self.engine
                .system_tables()
                .iter()
                .map(|t| t.name().to_string()),
        );
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let batch = match name {
            "tables" => self.tables()?,
            "parquet_files" => self.parquet_files()?,
            "tiers" => self.tiers()?,
            "last_value_caches" => self.last_value_caches()?,
            _ => match self
                .engine
                .system_tables()
                .iter()
                .find(|t| t.name() == name)
            {
                Some(t) => t.snapshot()?,
                None => return Ok(None),
            },
        };
        Ok(Some(Arc::new(MemTable::try_new(
            batch.schema(),
            vec![vec![batch]],
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        SYSTEM_TABLES.contains(&name)
            || self.engine.system_tables().iter().any(|t| t.name() == name)
    }
}

fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

impl SystemSchema {
    /// `system.tables`: one row per table with its columns, hot rows and files.
    fn tables(&self) -> Result<RecordBatch> {
        let mut names = Vec::new();
        let mut columns = Vec::new();
        let mut hot_rows = Vec::new();
        let mut hot_bytes = Vec::new();
        let mut files = Vec::new();
        let mut file_rows = Vec::new();
        let mut file_bytes = Vec::new();
        for t in self.engine.tables(&self.db) {
            let Some(s) = self.engine.table_snapshot(&self.db, &t) else {
                continue;
            };
            names.push(t);
            columns.push(
                s.columns
                    .iter()
                    .map(|c| {
                        let kind = match c.kind {
                            strata_catalog::ColumnKind::Tag => "tag".to_string(),
                            strata_catalog::ColumnKind::Time => "time".to_string(),
                            strata_catalog::ColumnKind::Field(f) => f.name().to_string(),
                        };
                        format!("{} ({kind})", c.name)
                    })
                    .collect::<Vec<_>>()
                    .join(", "),
            );
            hot_rows.push(s.hot.iter().map(|h| h.rows as u64).sum::<u64>());
            hot_bytes.push(s.hot.iter().map(|h| h.bytes as u64).sum::<u64>());
            files.push(s.files.len() as u64);
            file_rows.push(s.files.iter().map(|f| f.row_count).sum::<u64>());
            file_bytes.push(s.files.iter().map(|f| f.size_bytes).sum::<u64>());
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(vec![self.db.clone(); names.len()])),
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(columns)),
            Arc::new(UInt64Array::from(hot_rows)),
            Arc::new(UInt64Array::from(hot_bytes)),
            Arc::new(UInt64Array::from(files)),
            Arc::new(UInt64Array::from(file_rows)),
            Arc::new(UInt64Array::from(file_bytes)),
        ];
        Ok(RecordBatch::try_new(
            schema(&[
                ("database", DataType::Utf8),
                ("table_name", DataType::Utf8),
                ("columns", DataType::Utf8),
                ("hot_rows", DataType::UInt64),
                ("hot_bytes", DataType::UInt64),
                ("parquet_files", DataType::UInt64),
                ("parquet_rows", DataType::UInt64),
                ("parquet_bytes", DataType::UInt64),
            ]),
            cols,
        )?)
    }

    /// `system.parquet_files`: every registered file of this database.
    fn parquet_files(&self) -> Result<RecordBatch> {
        let cat = self.engine.catalog_snapshot();
        let mut table = Vec::new();
        let mut id = Vec::new();
        let mut path = Vec::new();
        let mut tier = Vec::new();
        let mut min_time = Vec::new();
        let mut max_time = Vec::new();
        let mut rows = Vec::new();
        let mut size = Vec::new();
        let mut max_seq = Vec::new();
        if let Some(db) = cat.database(&self.db) {
            for (name, t) in &db.tables {
                for f in &t.files {
                    table.push(name.clone());
                    id.push(f.id.0);
                    path.push(f.path.clone());
                    tier.push(f.tier.name());
                    min_time.push(f.min_time);
                    max_time.push(f.max_time);
                    rows.push(f.row_count);
                    size.push(f.size_bytes);
                    max_seq.push(f.max_seq);
                }
            }
        }
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(table)),
            Arc::new(UInt64Array::from(id)),
            Arc::new(StringArray::from(path)),
            Arc::new(StringArray::from(tier)),
            Arc::new(TimestampNanosecondArray::from(min_time)),
            Arc::new(TimestampNanosecondArray::from(max_time)),
            Arc::new(UInt64Array::from(rows)),
            Arc::new(UInt64Array::from(size)),
            Arc::new(UInt64Array::from(max_seq)),
        ];
        let ts = strata_engine::schema::time_type();
        Ok(RecordBatch::try_new(
            schema(&[
                ("table_name", DataType::Utf8),
                ("file_id", DataType::UInt64),
                ("path", DataType::Utf8),
                ("tier", DataType::Utf8),
                ("min_time", ts.clone()),
                ("max_time", ts),
                ("row_count", DataType::UInt64),
                ("size_bytes", DataType::UInt64),
                ("max_seq", DataType::UInt64),
            ]),
            cols,
        )?)
    }

    /// `system.tiers`: each tier's policy in this database and what it holds now.
    fn tiers(&self) -> Result<RecordBatch> {
        let cat = self.engine.catalog_snapshot();
        let db = cat.database(&self.db);
        let ts = strata_engine::schema::time_type();
        let mut cols: [Vec<Option<String>>; 5] = Default::default();
        let mut nums: [Vec<u64>; 3] = Default::default();
        let mut times: [Vec<Option<i64>>; 3] = Default::default();
        for tier in Tier::ALL {
            let files: Vec<_> = db
                .iter()
                .flat_map(|d| d.tables.values())
                .flat_map(|t| t.files.iter())
                .filter(|f| f.tier == tier)
                .collect();
            let retention = self.engine.retention_ns(&self.db, tier);
            let overridden = db.and_then(|d| d.retention.get(tier)).is_some();
            cols[0].push(Some(tier.name().to_string()));
            cols[1].push(Some(tier.schema_name().to_string()));
            cols[2].push(Some(match tier {
                Tier::Hot => "full".to_string(),
                t => format_duration(std::time::Duration::from_nanos(t.resolution_ns() as u64)),
            }));
            cols[3].push(Some(format_duration(std::time::Duration::from_nanos(
                retention.max(0) as u64,
            ))));
            cols[4].push(Some(
                if overridden { "database" } else { "server" }.to_string(),
            ));
            nums[0].push(files.len() as u64);
            nums[1].push(files.iter().map(|f| f.row_count).sum());
            nums[2].push(files.iter().map(|f| f.size_bytes).sum());
            times[0].push(files.iter().map(|f| f.min_time).min());
            times[1].push(files.iter().map(|f| f.max_time).max());
            times[2].push(
                db.iter()
                    .flat_map(|d| d.tables.values())
                    .filter_map(|t| t.rollup.done_to(tier))
                    .min(),
            );
        }
        let [c0, c1, c2, c3, c4] = cols;
        let [n0, n1, n2] = nums;
        let [t0, t1, t2] = times;
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from(c0)),
            Arc::new(StringArray::from(c1)),
            Arc::new(StringArray::from(c2)),
            Arc::new(StringArray::from(c3)),
            Arc::new(StringArray::from(c4)),
            Arc::new(StringArray::from(
                Tier::ALL
                    .iter()
                    .map(|t| match t {
                        Tier::Cold => "cold store",
                        _ => "data directory",
                    })
                    .collect::<Vec<_>>(),
            )),
            Arc::new(UInt64Array::from(n0)),
            Arc::new(UInt64Array::from(n1)),
            Arc::new(UInt64Array::from(n2)),
            Arc::new(TimestampNanosecondArray::from(t0)),
            Arc::new(TimestampNanosecondArray::from(t1)),
            Arc::new(TimestampNanosecondArray::from(t2)),
        ];
        Ok(RecordBatch::try_new(
            schema(&[
                ("tier", DataType::Utf8),
                ("schema_name", DataType::Utf8),
                ("resolution", DataType::Utf8),
                ("retention", DataType::Utf8),
                ("retention_set_by", DataType::Utf8),
                ("store", DataType::Utf8),
                ("files", DataType::UInt64),
                ("rows", DataType::UInt64),
                ("bytes", DataType::UInt64),
                ("min_time", ts.clone()),
                ("max_time", ts.clone()),
                ("rolled_up_to", ts),
            ]),
            cols,
        )?)
    }

    /// `system.last_value_caches`: this database's last-value caches (see
    /// `strata_sql::last_values`).
    fn last_value_caches(&self) -> Result<RecordBatch> {
        let caches: Vec<_> = self
            .engine
            .last_values_status()
            .into_iter()
            .filter(|c| c.db == self.db)
            .collect();
        let ts = strata_engine::schema::time_type();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(StringArray::from_iter_values(
                caches.iter().map(|c| c.table.as_str()),
            )),
            Arc::new(StringArray::from_iter_values(
                caches.iter().map(|c| c.state),
            )),
            Arc::new(StringArray::from_iter(
                caches.iter().map(|c| c.reason.as_deref()),
            )),
            Arc::new(UInt64Array::from_iter_values(
                caches.iter().map(|c| c.series),
            )),
            Arc::new(UInt64Array::from_iter_values(
                caches.iter().map(|c| c.bytes),
            )),
            Arc::new(UInt64Array::from_iter_values(caches.iter().map(|c| c.hits))),
            Arc::new(TimestampNanosecondArray::from_iter_values(
                caches.iter().map(|c| c.started_at),
            )),
            Arc::new(TimestampNanosecondArray::from_iter(
                caches.iter().map(|c| c.ready_at),
            )),
        ];
        Ok(RecordBatch::try_new(
            schema(&[
                ("table_name", DataType::Utf8),
                ("state", DataType::Utf8),
                ("reason", DataType::Utf8),
                ("series", DataType::UInt64),
                ("bytes", DataType::UInt64),
                ("hits", DataType::UInt64),
                ("started_at", ts.clone()),
                ("ready_at", ts),
            ]),
            cols,
        )?)
    }
}
