//! The static answers to `GetSqlInfo` and `GetXdbcTypeInfo`: what JDBC's
//! `DatabaseMetaData`, ADBC's `GetInfo` and BI tools ask before they send SQL.
//! Function lists come from the live DataFusion registry (grouped by the section of each
//! function's documentation), keywords from the SQL parser, so they never go stale.

use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{
    SqlInfoData, SqlInfoDataBuilder, XdbcTypeInfo, XdbcTypeInfoData, XdbcTypeInfoDataBuilder,
};
use arrow_flight::sql::{
    Nullable, Searchable, SqlInfo, SqlNullOrdering, SqlOuterJoinsSupportLevel,
    SqlSupportedCaseSensitivity, SqlSupportedTransaction, SupportedSqlGrammar, XdbcDataType,
    XdbcDatetimeSubcode,
};
use arrow_flight::sql::{SqlSupportedSubqueries, SqlSupportedUnions};
use datafusion::prelude::SessionContext;

/// The server name clients show (JDBC `getDatabaseProductName`).
pub const SERVER_NAME: &str = "Strata";

fn bits(values: &[i32]) -> i32 {
    values.iter().fold(0, |acc, v| acc | (1 << v))
}

/// Function names of `ctx`'s registry whose documentation is in one of `sections`.
fn functions(ctx: &SessionContext, sections: &[&str]) -> Vec<String> {
    let state = ctx.state();
    let mut names: Vec<String> = state
        .scalar_functions()
        .values()
        .filter(|f| {
            f.documentation()
                .is_some_and(|d| sections.contains(&d.doc_section.label))
        })
        .map(|f| f.name().to_string())
        .collect();
    names.sort();
    names.dedup();
    names
}

pub fn sql_info(ctx: &SessionContext) -> Result<SqlInfoData, FlightError> {
    let mut b = SqlInfoDataBuilder::new();
    // Server
    b.append(SqlInfo::FlightSqlServerName, SERVER_NAME);
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "59");
    b.append(SqlInfo::FlightSqlServerReadOnly, true);
    b.append(SqlInfo::FlightSqlServerSql, true);
    b.append(SqlInfo::FlightSqlServerSubstrait, false);
    b.append(
        SqlInfo::FlightSqlServerTransaction,
        SqlSupportedTransaction::None as i32,
    );
    b.append(SqlInfo::FlightSqlServerCancel, false);
    b.append(SqlInfo::FlightSqlServerBulkIngestion, false);
    b.append(SqlInfo::FlightSqlServerIngestTransactionsSupported, false);
    b.append(SqlInfo::FlightSqlServerStatementTimeout, 0i32);
    b.append(SqlInfo::FlightSqlServerTransactionTimeout, 0i32);
    // SQL language
    b.append(SqlInfo::SqlDdlCatalog, false);
    b.append(SqlInfo::SqlDdlSchema, false);
    b.append(SqlInfo::SqlDdlTable, false);
    b.append(
        SqlInfo::SqlIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityLowercase as i32,
    );
    b.append(SqlInfo::SqlIdentifierQuoteChar, "\"");
    b.append(
        SqlInfo::SqlQuotedIdentifierCase,
        SqlSupportedCaseSensitivity::SqlCaseSensitivityCaseInsensitive as i32,
    );
    b.append(SqlInfo::SqlAllTablesAreSelectable, true);
    b.append(
        SqlInfo::SqlNullOrdering,
        SqlNullOrdering::SqlNullsSortedHigh as i32,
    );
    let keywords: Vec<String> = sqlparser::keywords::ALL_KEYWORDS
        .iter()
        .map(|k| (*k).to_string())
        .collect();
    b.append(SqlInfo::SqlKeywords, keywords);
    b.append(
        SqlInfo::SqlNumericFunctions,
        functions(ctx, &["Math Functions"]),
    );
    b.append(
        SqlInfo::SqlStringFunctions,
        functions(
            ctx,
            &[
                "String Functions",
                "Regular Expression Functions",
                "Binary String Functions",
            ],
        ),
    );
    b.append(
        SqlInfo::SqlSystemFunctions,
        functions(ctx, &["Conditional Functions", "Other Functions"]),
    );
    b.append(
        SqlInfo::SqlDatetimeFunctions,
        functions(ctx, &["Time and Date Functions"]),
    );
    b.append(SqlInfo::SqlSearchStringEscape, "\\");
    b.append(SqlInfo::SqlExtraNameCharacters, "");
    b.append(SqlInfo::SqlSupportsColumnAliasing, true);
    b.append(SqlInfo::SqlNullPlusNullIsNull, true);
    b.append(
        SqlInfo::SqlSupportsConvert,
        std::collections::BTreeMap::<i32, Vec<i32>>::new(),
    );
    b.append(SqlInfo::SqlSupportsTableCorrelationNames, true);
    b.append(SqlInfo::SqlSupportsDifferentTableCorrelationNames, false);
    b.append(SqlInfo::SqlSupportsExpressionsInOrderBy, true);
    b.append(SqlInfo::SqlSupportsOrderByUnrelated, true);
    b.append(SqlInfo::SqlSupportedGroupBy, bits(&[0, 1]));
    b.append(SqlInfo::SqlSupportsLikeEscapeClause, true);
    b.append(SqlInfo::SqlSupportsNonNullableColumns, true);
    b.append(
        SqlInfo::SqlSupportedGrammar,
        bits(&[
            SupportedSqlGrammar::SqlMinimumGrammar as i32,
            SupportedSqlGrammar::SqlCoreGrammar as i32,
        ]),
    );
    b.append(SqlInfo::SqlAnsi92SupportedLevel, bits(&[0, 1]));
    b.append(SqlInfo::SqlSupportsIntegrityEnhancementFacility, false);
    b.append(
        SqlInfo::SqlOuterJoinsSupportLevel,
        SqlOuterJoinsSupportLevel::SqlFullOuterJoins as i32,
    );
    b.append(SqlInfo::SqlSchemaTerm, "schema");
    b.append(SqlInfo::SqlProcedureTerm, "procedure");
    b.append(SqlInfo::SqlCatalogTerm, "database");
    b.append(SqlInfo::SqlCatalogAtStart, true);
    b.append(SqlInfo::SqlSchemasSupportedActions, 0i32);
    b.append(SqlInfo::SqlCatalogsSupportedActions, 0i32);
    b.append(SqlInfo::SqlSupportedPositionedCommands, 0i32);
    b.append(SqlInfo::SqlSelectForUpdateSupported, false);
    b.append(SqlInfo::SqlStoredProceduresSupported, false);
    b.append(
        SqlInfo::SqlSupportedSubqueries,
        bits(&[
            SqlSupportedSubqueries::SqlSubqueriesInComparisons as i32,
            SqlSupportedSubqueries::SqlSubqueriesInExists as i32,
            SqlSupportedSubqueries::SqlSubqueriesInIns as i32,
        ]),
    );
    b.append(SqlInfo::SqlCorrelatedSubqueriesSupported, true);
    b.append(
        SqlInfo::SqlSupportedUnions,
        bits(&[
            SqlSupportedUnions::SqlUnion as i32,
            SqlSupportedUnions::SqlUnionAll as i32,
        ]),
    );
    // Limits: 0 means "no limit or unknown" in JDBC.
    for limit in [
        SqlInfo::SqlMaxBinaryLiteralLength,
        SqlInfo::SqlMaxCharLiteralLength,
        SqlInfo::SqlMaxColumnNameLength,
        SqlInfo::SqlMaxColumnsInGroupBy,
        SqlInfo::SqlMaxColumnsInIndex,
        SqlInfo::SqlMaxColumnsInOrderBy,
        SqlInfo::SqlMaxColumnsInSelect,
        SqlInfo::SqlMaxColumnsInTable,
        SqlInfo::SqlMaxConnections,
        SqlInfo::SqlMaxCursorNameLength,
        SqlInfo::SqlMaxIndexLength,
        SqlInfo::SqlDbSchemaNameLength,
        SqlInfo::SqlMaxProcedureNameLength,
        SqlInfo::SqlMaxCatalogNameLength,
        SqlInfo::SqlMaxRowSize,
        SqlInfo::SqlMaxStatementLength,
        SqlInfo::SqlMaxStatements,
        SqlInfo::SqlMaxTableNameLength,
        SqlInfo::SqlMaxTablesInSelect,
        SqlInfo::SqlMaxUsernameLength,
    ] {
        b.append(limit, 0i64);
    }
    b.append(SqlInfo::SqlMaxRowSizeIncludesBlobs, false);
    // Transactions: none (every statement reads a consistent snapshot on its own).
    b.append(SqlInfo::SqlDefaultTransactionIsolation, 0i64);
    b.append(SqlInfo::SqlTransactionsSupported, false);
    b.append(SqlInfo::SqlSupportedTransactionsIsolationLevels, 0i32);
    b.append(SqlInfo::SqlDataDefinitionCausesTransactionCommit, false);
    b.append(SqlInfo::SqlDataDefinitionsInTransactionsIgnored, true);
    b.append(SqlInfo::SqlSupportedResultSetTypes, bits(&[1]));
    for concurrency in [
        SqlInfo::SqlSupportedConcurrenciesForResultSetUnspecified,
        SqlInfo::SqlSupportedConcurrenciesForResultSetForwardOnly,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollSensitive,
        SqlInfo::SqlSupportedConcurrenciesForResultSetScrollInsensitive,
    ] {
        b.append(concurrency, 0i32);
    }
    b.append(SqlInfo::SqlBatchUpdatesSupported, false);
    b.append(SqlInfo::SqlSavepointsSupported, false);
    b.append(SqlInfo::SqlNamedParametersSupported, false);
    b.append(SqlInfo::SqlLocatorsUpdateCopy, false);
    b.append(SqlInfo::SqlStoredFunctionsUsingCallSyntaxSupported, false);
    b.build()
}

struct Type {
    name: &'static str,
    xdbc: XdbcDataType,
    size: Option<i32>,
    prefix: Option<&'static str>,
    unsigned: Option<bool>,
    radix: Option<i32>,
    subcode: Option<XdbcDatetimeSubcode>,
}

/// The SQL types our results use, as JDBC's `getTypeInfo` lists them.
pub fn xdbc_types() -> Result<XdbcTypeInfoData, FlightError> {
    use XdbcDataType as X;
    let t = |name, xdbc, size, radix| Type {
        name,
        xdbc,
        size,
        prefix: None,
        unsigned: Some(false),
        radix,
        subcode: None,
    };
    let types = [
        Type {
            unsigned: None,
            ..t("BOOLEAN", X::XdbcBit, Some(1), None)
        },
        t("TINYINT", X::XdbcTinyint, Some(3), Some(10)),
        t("SMALLINT", X::XdbcSmallint, Some(5), Some(10)),
        t("INTEGER", X::XdbcInteger, Some(10), Some(10)),
        t("BIGINT", X::XdbcBigint, Some(19), Some(10)),
        Type {
            unsigned: Some(true),
            ..t("BIGINT UNSIGNED", X::XdbcBigint, Some(20), Some(10))
        },
        t("REAL", X::XdbcReal, Some(24), Some(2)),
        t("DOUBLE", X::XdbcDouble, Some(53), Some(2)),
        t("DECIMAL", X::XdbcDecimal, Some(38), Some(10)),
        Type {
            prefix: Some("'"),
            unsigned: None,
            ..t("VARCHAR", X::XdbcVarchar, Some(i32::MAX), None)
        },
        Type {
            prefix: Some("X'"),
            unsigned: None,
            ..t("VARBINARY", X::XdbcVarbinary, Some(i32::MAX), None)
        },
        Type {
            prefix: Some("DATE '"),
            unsigned: None,
            subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeYear),
            ..t("DATE", X::XdbcDate, Some(10), None)
        },
        Type {
            prefix: Some("TIME '"),
            unsigned: None,
            subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTime),
            ..t("TIME", X::XdbcTime, Some(18), None)
        },
        Type {
            prefix: Some("TIMESTAMP '"),
            unsigned: None,
            subcode: Some(XdbcDatetimeSubcode::XdbcSubcodeTimestamp),
            ..t("TIMESTAMP", X::XdbcTimestamp, Some(29), None)
        },
        Type {
            prefix: Some("INTERVAL '"),
            unsigned: None,
            ..t("INTERVAL", X::XdbcInterval, None, None)
        },
    ];
    let mut b = XdbcTypeInfoDataBuilder::new();
    for ty in types {
        let text = matches!(ty.xdbc, X::XdbcVarchar);
        b.append(XdbcTypeInfo {
            type_name: ty.name.to_string(),
            data_type: ty.xdbc,
            column_size: ty.size,
            literal_prefix: ty.prefix.map(str::to_string),
            literal_suffix: ty.prefix.map(|_| "'".to_string()),
            create_params: None,
            nullable: Nullable::NullabilityNullable,
            case_sensitive: text,
            searchable: Searchable::Full,
            unsigned_attribute: ty.unsigned,
            fixed_prec_scale: false,
            auto_increment: None,
            local_type_name: Some(ty.name.to_string()),
            minimum_scale: None,
            maximum_scale: None,
            sql_data_type: ty.xdbc,
            datetime_subcode: ty.subcode,
            num_prec_radix: ty.radix,
            interval_precision: None,
        });
    }
    b.build()
}
