//! A PostgreSQL connection's session: a DataFusion session over the connection's database
//! with `pg_catalog` (for psql's `\d`, psycopg and Grafana's PostgreSQL data source),
//! PostgreSQL's functions, and the connection's settings (`SET`/`SHOW`).

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{Result as DfResult, ScalarValue};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use parking_lot::RwLock;

use crate::catalog::DatabaseList;
use crate::{Error, QueryEngine};

/// The PostgreSQL version clients see. psql (15 on our machines) warns when the server's
/// major version is newer than its own.
pub const SERVER_VERSION: &str = "15.10";

/// What `SELECT version()` answers (clients parse the leading `PostgreSQL N.N`).
pub fn version_string() -> String {
    format!(
        "PostgreSQL {SERVER_VERSION} (Strata {}) on x86_64-pc-linux-gnu, compiled by rustc, 64-bit",
        env!("CARGO_PKG_VERSION")
    )
}

/// Settings reported at startup and on change (PostgreSQL's `GUC_REPORT` set).
pub const REPORTED: [&str; 8] = [
    "server_version",
    "server_encoding",
    "client_encoding",
    "DateStyle",
    "IntervalStyle",
    "TimeZone",
    "integer_datetimes",
    "standard_conforming_strings",
];

/// Default values of the settings `SHOW` knows, by lower-case name.
pub fn default_setting(name: &str) -> Option<String> {
    let v = match name {
        "server_version" => SERVER_VERSION,
        "server_version_num" => "151000",
        "server_encoding" | "client_encoding" => "UTF8",
        "datestyle" => "ISO, MDY",
        "intervalstyle" => "postgres",
        "timezone" => "UTC",
        "integer_datetimes" | "standard_conforming_strings" => "on",
        "search_path" => "\"$user\", public",
        "transaction_isolation" | "default_transaction_isolation" => "read committed",
        "transaction_read_only" | "default_transaction_read_only" => "on",
        "max_identifier_length" => "63",
        "statement_timeout" | "lock_timeout" | "idle_in_transaction_session_timeout" => "0",
        "application_name" => "",
        "is_superuser" => "off",
        "in_hot_standby" => "off",
        _ => return None,
    };
    Some(v.to_string())
}

/// The canonical spelling of a setting name (PostgreSQL reports `DateStyle`, `TimeZone`).
pub fn canonical_name(name: &str) -> String {
    let lower = name.to_ascii_lowercase();
    REPORTED
        .iter()
        .find(|r| r.eq_ignore_ascii_case(&lower))
        .map_or(lower, |r| (*r).to_string())
}

/// The databases, plus the schemas a session registers on them (`pg_catalog`), visible in
/// every database of that session and nowhere else.
#[derive(Debug)]
struct SessionCatalogs {
    inner: Arc<DatabaseList>,
    extra: Arc<RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>>,
}

impl CatalogProviderList for SessionCatalogs {
    fn register_catalog(
        &self,
        _name: String,
        _catalog: Arc<dyn CatalogProvider>,
    ) -> Option<Arc<dyn CatalogProvider>> {
        None
    }

    fn catalog_names(&self) -> Vec<String> {
        self.inner.catalog_names()
    }

    fn catalog(&self, name: &str) -> Option<Arc<dyn CatalogProvider>> {
        self.inner.catalog(name).map(|inner| {
            Arc::new(WithSessionSchemas {
                inner,
                extra: Arc::clone(&self.extra),
            }) as Arc<dyn CatalogProvider>
        })
    }
}

#[derive(Debug)]
struct WithSessionSchemas {
    inner: Arc<dyn CatalogProvider>,
    extra: Arc<RwLock<BTreeMap<String, Arc<dyn SchemaProvider>>>>,
}

impl CatalogProvider for WithSessionSchemas {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.inner.schema_names();
        names.extend(self.extra.read().keys().cloned());
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if let Some(s) = self.extra.read().get(name) {
            return Some(Arc::clone(s));
        }
        self.inner.schema(name)
    }

    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> DfResult<Option<Arc<dyn SchemaProvider>>> {
        Ok(self.extra.write().insert(name.to_string(), schema))
    }
}

/// A session for a PostgreSQL connection to `db`.
pub fn connect(query: &QueryEngine, db: &str) -> Result<SessionContext, Error> {
    let catalogs = Arc::new(SessionCatalogs {
        inner: query.catalogs(),
        extra: Arc::default(),
    });
    let ctx = query.session_with(db, catalogs)?;
    datafusion_pg_catalog::setup_pg_catalog(&ctx, db, EmptyContextProvider)
        .map_err(|e| Error::Query(*e))?;
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::from(version.as_str())))),
    ));
    Ok(ctx)
}
