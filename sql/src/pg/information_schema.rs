//! `information_schema` as PostgreSQL clients read it: DataFusion's views, except that
//! `columns.data_type` holds PostgreSQL type names (`text`, `double precision`,
//! `timestamp without time zone`, …) instead of Arrow's, because Grafana's query builder
//! and BI tools decide what a column is (time, number, text) from that name.

use std::sync::Arc;

use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatch, StringArray, UInt64Array, new_null_array};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::information_schema::{INFORMATION_SCHEMA, InformationSchemaProvider};
use datafusion::catalog::{CatalogProviderList, SchemaProvider};
use datafusion::datasource::TableProvider;
use datafusion::datasource::memory::MemTable;
use datafusion::error::Result;
use pgwire::api::Type;

const PG_CATALOG: &str = "pg_catalog";

/// The SQL name PostgreSQL's `information_schema.columns.data_type` shows for `t`.
pub fn sql_type_name(t: &Type) -> String {
    // PostgreSQL names array types `_<element>` (`_int4`, `_text`).
    if t.name().starts_with('_') {
        return "ARRAY".to_string();
    }
    let name = match t.oid() {
        16 => "boolean",
        21 => "smallint",
        23 => "integer",
        20 => "bigint",
        700 => "real",
        701 => "double precision",
        1700 => "numeric",
        25 => "text",
        1043 => "character varying",
        17 => "bytea",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        _ => return t.name().to_string(),
    };
    name.to_string()
}

/// One row of `information_schema.columns`.
struct ColumnRow {
    catalog: String,
    schema: String,
    table: String,
    column: String,
    ordinal: u64,
    nullable: bool,
    data_type: String,
}

#[derive(Debug)]
pub struct PgInformationSchema {
    catalogs: Arc<dyn CatalogProviderList>,
    inner: InformationSchemaProvider,
}

impl PgInformationSchema {
    pub fn new(catalogs: Arc<dyn CatalogProviderList>) -> Self {
        Self {
            inner: InformationSchemaProvider::new(Arc::clone(&catalogs)),
            catalogs,
        }
    }

    /// `information_schema.columns` of every user-visible table, PostgreSQL type names.
    async fn columns(&self, schema: SchemaRef) -> Result<Arc<dyn TableProvider>> {
        let mut rows: Vec<ColumnRow> = Vec::new();
        for catalog_name in self.catalogs.catalog_names() {
            let Some(catalog) = self.catalogs.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                if schema_name == INFORMATION_SCHEMA || schema_name == PG_CATALOG {
                    continue;
                }
                let Some(s) = catalog.schema(&schema_name) else {
                    continue;
                };
                for table_name in s.table_names() {
                    let Some(t) = s.table(&table_name).await? else {
                        continue;
                    };
                    for (i, f) in t.schema().fields().iter().enumerate() {
                        let pg = into_pg_type(f.data_type())
                            .map_or_else(|_| f.data_type().to_string(), |t| sql_type_name(&t));
                        rows.push(ColumnRow {
                            catalog: catalog_name.clone(),
                            schema: schema_name.clone(),
                            table: table_name.clone(),
                            column: f.name().clone(),
                            ordinal: i as u64 + 1,
                            nullable: f.is_nullable(),
                            data_type: pg,
                        });
                    }
                }
            }
        }
        let text = |get: fn(&ColumnRow) -> &str| {
            Arc::new(StringArray::from_iter_values(rows.iter().map(get))) as ArrayRef
        };
        let columns: Vec<ArrayRef> = schema
            .fields()
            .iter()
            .map(|f| match f.name().as_str() {
                "table_catalog" => text(|r| &r.catalog),
                "table_schema" => text(|r| &r.schema),
                "table_name" => text(|r| &r.table),
                "column_name" => text(|r| &r.column),
                "ordinal_position" => Arc::new(UInt64Array::from_iter_values(
                    rows.iter().map(|r| r.ordinal),
                )) as ArrayRef,
                "is_nullable" => text(|r| if r.nullable { "YES" } else { "NO" }),
                "data_type" => text(|r| &r.data_type),
                _ => new_null_array(f.data_type(), rows.len()),
            })
            .collect();
        let batch = RecordBatch::try_new(Arc::clone(&schema), columns)?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }
}

#[async_trait]
impl SchemaProvider for PgInformationSchema {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(t) = self.inner.table(name).await? else {
            return Ok(None);
        };
        if name.eq_ignore_ascii_case("columns") && t.schema().field_with_name("data_type").is_ok() {
            return self.columns(t.schema()).await.map(Some);
        }
        Ok(Some(t))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.inner.table_exist(name)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::DataType;

    #[test]
    fn postgres_type_names() {
        let name = |dt: DataType| sql_type_name(&into_pg_type(&dt).expect("type"));
        assert_eq!(name(DataType::Float64), "double precision");
        assert_eq!(name(DataType::Int64), "bigint");
        assert_eq!(name(DataType::UInt64), "numeric");
        assert_eq!(name(DataType::Utf8), "text");
        assert_eq!(
            name(DataType::Timestamp(
                datafusion::arrow::datatypes::TimeUnit::Nanosecond,
                None
            )),
            "timestamp without time zone"
        );
        assert_eq!(name(DataType::Boolean), "boolean");
    }
}
