//! A PostgreSQL connection's session: a DataFusion session over the connection's database
//! with `pg_catalog` (for psql's `\d`, psycopg and Grafana's PostgreSQL data source),
//! PostgreSQL's functions, and the connection's settings (`SET`/`SHOW`).

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{CatalogProvider, CatalogProviderList, SchemaProvider};
use datafusion::common::{Result as DfResult, ScalarValue, exec_err};
use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use parking_lot::RwLock;

use datafusion::catalog::information_schema::INFORMATION_SCHEMA;

use super::information_schema::PgInformationSchema;
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

/// A connection's settings by lower-case name (what `SET` changed; the rest are defaults).
pub type Settings = Arc<RwLock<HashMap<String, String>>>;

/// The value of setting `name` for a connection.
pub fn lookup(settings: &Settings, name: &str) -> Option<String> {
    let lower = name.to_ascii_lowercase();
    settings
        .read()
        .get(&lower)
        .cloned()
        .or_else(|| default_setting(&lower))
}

/// `current_setting(name)`: Grafana's PostgreSQL data source reads `search_path` and
/// `server_version_num` through it.
fn current_setting(settings: Settings) -> datafusion::logical_expr::ScalarUDF {
    let find = move |name: &str| -> DfResult<String> {
        match lookup(&settings, name) {
            Some(v) => Ok(v),
            None => exec_err!("unrecognized configuration parameter \"{name}\""),
        }
    };
    create_udf(
        "current_setting",
        vec![DataType::Utf8],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |args: &[ColumnarValue]| match args.first() {
            Some(ColumnarValue::Scalar(v)) => match v {
                ScalarValue::Utf8(Some(n))
                | ScalarValue::Utf8View(Some(n))
                | ScalarValue::LargeUtf8(Some(n)) => {
                    Ok(ColumnarValue::Scalar(ScalarValue::from(find(n)?)))
                }
                _ => Ok(ColumnarValue::Scalar(ScalarValue::Utf8(None))),
            },
            Some(ColumnarValue::Array(a)) => {
                let names = cast(a, &DataType::Utf8)?;
                let names = names
                    .as_any()
                    .downcast_ref::<StringArray>()
                    .ok_or_else(|| {
                        datafusion::error::DataFusionError::Internal(
                            "current_setting: names did not cast to text".into(),
                        )
                    })?;
                let values = (0..names.len())
                    .map(|i| {
                        if names.is_null(i) {
                            Ok(None)
                        } else {
                            find(names.value(i)).map(Some)
                        }
                    })
                    .collect::<DfResult<StringArray>>()?;
                Ok(ColumnarValue::Array(Arc::new(values) as ArrayRef))
            }
            None => exec_err!("current_setting takes the name of a setting"),
        }),
    )
}

/// A session for a PostgreSQL connection to `db` whose settings are `settings`.
pub fn connect(query: &QueryEngine, db: &str, settings: Settings) -> Result<SessionContext, Error> {
    let catalogs = Arc::new(SessionCatalogs {
        inner: query.catalogs(),
        extra: Arc::default(),
    });
    let ctx = query.session_with(db, Arc::clone(&catalogs) as _)?;
    datafusion_pg_catalog::setup_pg_catalog(&ctx, db, EmptyContextProvider)
        .map_err(|e| Error::Query(*e))?;
    // Our information_schema (PostgreSQL type names) instead of DataFusion's built-in one.
    ctx.state_ref()
        .write()
        .config_mut()
        .options_mut()
        .catalog
        .information_schema = false;
    if let Some(catalog) = ctx.catalog(db) {
        catalog.register_schema(
            INFORMATION_SCHEMA,
            Arc::new(PgInformationSchema::new(catalogs as _)),
        )?;
    }
    let version = version_string();
    ctx.register_udf(create_udf(
        "version",
        vec![],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_| Ok(ColumnarValue::Scalar(ScalarValue::from(version.as_str())))),
    ));
    ctx.register_udf(current_setting(settings));
    Ok(ctx)
}

/// Grafana's PostgreSQL data source finds the schemas on the `search_path` with a
/// subquery DataFusion cannot plan (a scalar function and a column-aliased
/// `generate_series` in `FROM`). `datafusion-pg-catalog` replaces it with `''`, which
/// matches nothing, so Grafana's column lookup came back empty and its table list
/// qualified every name. We first replace `IN (subquery)` with an equivalent DataFusion
/// plans: membership in the `search_path` entries (spaces dropped, `"$user"` mapped to
/// the user).
pub fn rewrite_grafana_search_path(sql: &str) -> std::borrow::Cow<'_, str> {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::tokenizer::{Token, Tokenizer};
    const PATTERN: &str = r#"IN (SELECT CASE WHEN trim(s[i]) = '"$user"' THEN user ELSE trim(s[i]) END
        FROM generate_series(
            array_lower(string_to_array(current_setting('search_path'),','),1),
            array_upper(string_to_array(current_setting('search_path'),','),1)
        ) as i, string_to_array(current_setting('search_path'),',') s)"#;
    // An array comparison rather than a subquery: Grafana also sorts by this condition,
    // and DataFusion plans no subqueries in ORDER BY.
    const REPLACEMENT: &str = r#"= ANY(string_to_array(replace(replace(
        current_setting('search_path'), ' ', ''), '"$user"', session_user), ','))"#;
    let dialect = PostgreSqlDialect {};
    let tokens = |s: &str| -> Option<Vec<Token>> {
        Tokenizer::new(&dialect, s).tokenize().ok().map(|t| {
            t.into_iter()
                .filter(|t| !matches!(t, Token::Whitespace(_)))
                .collect()
        })
    };
    let same = |a: &Token, b: &Token| match (a, b) {
        (Token::Word(x), Token::Word(y)) => {
            x.quote_style == y.quote_style && x.value.eq_ignore_ascii_case(&y.value)
        }
        _ => a == b,
    };
    if !sql.contains("search_path") {
        return sql.into();
    }
    let (Some(input), Some(pattern)) = (tokens(sql), tokens(PATTERN)) else {
        return sql.into();
    };
    let mut out: Vec<String> = Vec::with_capacity(input.len());
    let mut i = 0;
    let mut replaced = false;
    while i < input.len() {
        let end = i + pattern.len();
        if end <= input.len() && input[i..end].iter().zip(&pattern).all(|(a, b)| same(a, b)) {
            out.push(REPLACEMENT.to_string());
            i = end;
            replaced = true;
        } else {
            out.push(input[i].to_string());
            i += 1;
        }
    }
    if replaced {
        out.join(" ").into()
    } else {
        sql.into()
    }
}
