//! Per-database retention at run time, as statements every frontend accepts:
//!
//! ```sql
//! ALTER DATABASE metrics SET RETENTION hot = '3d', warm = '14d', cold = '400d'
//! ALTER DATABASE metrics RESET RETENTION            -- every tier back to the server's
//! ALTER DATABASE metrics RESET RETENTION cold
//! ```
//!
//! The change is stored in the catalog; the next maintenance pass applies it. The result
//! is the database's policy after the change (as `system.tiers` shows it).

use std::sync::Arc;
use std::time::Duration;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use strata_catalog::Tier;
use strata_catalog::units::{format_duration, parse_duration};
use strata_engine::Engine;

use crate::commands::CommandError;

/// A parsed retention statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RetentionStatement {
    Set {
        db: String,
        values: Vec<(Tier, Duration)>,
    },
    Reset {
        db: String,
        tiers: Vec<Tier>,
    },
}

/// The result schema: one row per tier.
pub fn schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("database", DataType::Utf8, false),
        Field::new("tier", DataType::Utf8, false),
        Field::new("retention", DataType::Utf8, false),
        Field::new("retention_set_by", DataType::Utf8, false),
    ]))
}

/// `None` if `sql` is not a retention statement; otherwise the statement or what is wrong
/// with it.
pub fn parse(sql: &str) -> Option<Result<RetentionStatement, CommandError>> {
    let text = sql.trim().trim_end_matches(';').trim();
    let spaced = text.replace(',', " , ").replace('=', " = ");
    let tokens: Vec<&str> = spaced.split_whitespace().collect();
    let kw = |i: usize, w: &str| tokens.get(i).is_some_and(|t| t.eq_ignore_ascii_case(w));
    if !(kw(0, "alter") && kw(1, "database")) {
        return None;
    }
    let usage = "write ALTER DATABASE <name> SET RETENTION hot = '3d', warm = '30d', cold = '365d' \
                 or ALTER DATABASE <name> RESET RETENTION [hot|warm|cold]";
    let bad = |m: String| Some(Err(CommandError::invalid(format!("{m}; {usage}"))));
    let Some(db) = tokens.get(2).map(|t| t.trim_matches('"').to_string()) else {
        return bad("the database name is missing".into());
    };
    let set = kw(3, "set");
    if !(set || kw(3, "reset")) || !kw(4, "retention") {
        return bad("only SET RETENTION and RESET RETENTION are supported".into());
    }
    let tier = |t: &str| {
        Tier::ALL
            .into_iter()
            .find(|x| x.name().eq_ignore_ascii_case(t))
            .ok_or_else(|| format!("`{t}` is not a tier (hot, warm or cold)"))
    };
    let rest = &tokens[5..];
    if !set {
        let mut tiers = Vec::new();
        for t in rest.iter().filter(|t| **t != ",") {
            match tier(t) {
                Ok(x) => tiers.push(x),
                Err(e) => return bad(e),
            }
        }
        if tiers.is_empty() {
            tiers = Tier::ALL.to_vec();
        }
        return Some(Ok(RetentionStatement::Reset { db, tiers }));
    }
    let mut values = Vec::new();
    for part in rest.split(|t| *t == ",") {
        let [name, "=", value] = part else {
            return bad(format!(
                "`{}` is not `<tier> = '<duration>'`",
                part.join(" ")
            ));
        };
        let t = match tier(name) {
            Ok(t) => t,
            Err(e) => return bad(e),
        };
        let d = match parse_duration(value.trim_matches('\'')) {
            Ok(d) if !d.is_zero() => d,
            Ok(_) => {
                return bad(format!(
                    "the {} tier's retention must be longer than 0",
                    t.name()
                ));
            }
            Err(e) => return bad(e),
        };
        values.push((t, d));
    }
    if values.is_empty() {
        return bad("no tier given".into());
    }
    Some(Ok(RetentionStatement::Set { db, values }))
}

/// Applies the statement and returns the database's policy after it.
pub async fn run(engine: &Engine, st: RetentionStatement) -> Result<RecordBatch, CommandError> {
    let unavailable = |e: strata_engine::Error| match e {
        strata_engine::Error::InvalidDatabase { .. }
        | strata_engine::Error::InvalidRetention(_) => CommandError::invalid(e.to_string()),
        e => CommandError::new(
            crate::commands::CommandErrorKind::Unavailable,
            e.to_string(),
        ),
    };
    let db = match &st {
        RetentionStatement::Set { db, values } => {
            let changes: Vec<_> = values.iter().map(|(t, d)| (*t, Some(*d))).collect();
            engine
                .set_retention(db, &changes)
                .await
                .map_err(unavailable)?;
            db.clone()
        }
        RetentionStatement::Reset { db, tiers } => {
            let changes: Vec<_> = tiers.iter().map(|t| (*t, None)).collect();
            engine
                .set_retention(db, &changes)
                .await
                .map_err(unavailable)?;
            db.clone()
        }
    };
    let cat = engine.catalog_snapshot();
    let overrides = cat.database(&db).map(|d| d.retention).unwrap_or_default();
    let mut tier = Vec::new();
    let mut retention = Vec::new();
    let mut by = Vec::new();
    for t in Tier::ALL {
        tier.push(t.name());
        let ns = engine.retention_ns(&db, t).max(0) as u64;
        retention.push(format_duration(Duration::from_nanos(ns)));
        by.push(if overrides.get(t).is_some() {
            "database"
        } else {
            "server"
        });
    }
    RecordBatch::try_new(
        schema(),
        vec![
            Arc::new(StringArray::from(vec![db.as_str(); 3])),
            Arc::new(StringArray::from(tier)),
            Arc::new(StringArray::from(retention)),
            Arc::new(StringArray::from(by)),
        ],
    )
    .map_err(|e| CommandError::invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_set_and_reset() {
        assert_eq!(parse("SELECT 1"), None);
        assert_eq!(
            parse("alter database metrics set retention hot='3d', cold = '400d';"),
            Some(Ok(RetentionStatement::Set {
                db: "metrics".into(),
                values: vec![
                    (Tier::Hot, Duration::from_secs(3 * 86400)),
                    (Tier::Cold, Duration::from_secs(400 * 86400))
                ]
            }))
        );
        assert_eq!(
            parse("ALTER DATABASE \"m\" RESET RETENTION"),
            Some(Ok(RetentionStatement::Reset {
                db: "m".into(),
                tiers: Tier::ALL.to_vec()
            }))
        );
        let err = parse("ALTER DATABASE m SET RETENTION tepid = '1d'")
            .expect("recognised")
            .expect_err("bad tier");
        assert!(err.message.contains("`tepid` is not a tier"), "{err}");
        let err = parse("ALTER DATABASE m SET RETENTION hot = 'soon'")
            .expect("recognised")
            .expect_err("bad duration");
        assert!(err.message.contains("soon"), "{err}");
    }
}
