//! The alerting statements on every SQL frontend (see [`crate::ddl`] for the grammar).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray, TimestampNanosecondArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use async_trait::async_trait;
use strata_catalog::alerts::SilenceDef;
use strata_sql::commands::{CommandError, CommandErrorKind, Commands};

use crate::backtest::Report;
use crate::ddl::{self, BacktestTarget, Kind, SilenceEnd, Statement};
use crate::tables::{alert_rules_schema, silences_schema};
use crate::{Alerting, Error, ns_of};

fn result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![Field::new(
        "result",
        DataType::Utf8,
        false,
    )]))
}

fn message(text: String) -> Result<RecordBatch, CommandError> {
    RecordBatch::try_new(
        result_schema(),
        vec![Arc::new(StringArray::from(vec![text]))],
    )
    .map_err(|e| CommandError::new(CommandErrorKind::Unavailable, e.to_string()))
}

/// `BACKTEST`'s result: a summary row, then every event in time order.
fn backtest_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new(
            "time",
            DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into())),
            false,
        ),
        Field::new("event", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, true),
        Field::new("labels", DataType::Utf8, true),
        Field::new("detail", DataType::Utf8, false),
    ]))
}

fn backtest_batch(r: &Report) -> Result<RecordBatch, arrow::error::ArrowError> {
    let mut time = vec![r.from];
    let mut event = vec!["summary".to_string()];
    let mut fingerprint = vec![None];
    let mut labels = vec![None];
    let mut detail = vec![r.summary()];
    for e in &r.events {
        time.push(e.at);
        event.push(e.kind.to_string());
        fingerprint.push(e.fingerprint.clone());
        labels.push(
            (!e.labels.is_empty()).then(|| serde_json::to_string(&e.labels).unwrap_or_default()),
        );
        detail.push(e.detail.clone());
    }
    RecordBatch::try_new(
        backtest_schema(),
        vec![
            Arc::new(TimestampNanosecondArray::from(time).with_timezone("UTC")),
            Arc::new(StringArray::from(event)),
            Arc::new(StringArray::from(fingerprint)),
            Arc::new(StringArray::from(labels)),
            Arc::new(StringArray::from(detail)),
        ],
    )
}

impl From<Error> for CommandError {
    fn from(e: Error) -> Self {
        let kind = match &e {
            Error::Invalid(_) | Error::Config(_) => CommandErrorKind::Invalid,
            Error::NotFound(_) => CommandErrorKind::NotFound,
            Error::Conflict(_) => CommandErrorKind::Conflict,
            Error::Catalog(_) | Error::State { .. } => CommandErrorKind::Unavailable,
        };
        CommandError::new(kind, e.to_string())
    }
}

fn arrow(e: arrow::error::ArrowError) -> CommandError {
    CommandError::new(CommandErrorKind::Unavailable, e.to_string())
}

#[async_trait]
impl Commands for Alerting {
    fn recognise(&self, sql: &str) -> Option<SchemaRef> {
        Some(match ddl::recognise(sql)? {
            Kind::ShowAlerts => alert_rules_schema(),
            Kind::ShowSilences => silences_schema(),
            Kind::Backtest => backtest_schema(),
            Kind::CreateAlert | Kind::DropAlert | Kind::CreateSilence | Kind::DropSilence => {
                result_schema()
            }
        })
    }

    async fn run(&self, db: &str, sql: &str) -> Result<RecordBatch, CommandError> {
        let stmt = ddl::parse(sql).map_err(CommandError::invalid)?;
        match stmt {
            Statement::CreateAlert {
                rule,
                or_replace,
                if_not_exists,
            } => {
                let name = rule.name.clone();
                let def = rule.into_def(db);
                let created = self.create_rule(def, or_replace, if_not_exists).await?;
                message(if created {
                    format!("alert `{name}` created")
                } else {
                    format!("alert `{name}` exists already; left unchanged")
                })
            }
            Statement::DropAlert { name, if_exists } => {
                let dropped = self.drop_rule(&name, if_exists).await?;
                message(if dropped {
                    format!("alert `{name}` dropped")
                } else {
                    format!("alert `{name}` does not exist; nothing dropped")
                })
            }
            Statement::ShowAlerts => self.alert_rules_batch().map_err(arrow),
            Statement::ShowSilences => self.silences_batch().map_err(arrow),
            Statement::CreateSilence {
                matchers,
                end,
                created_by,
                comment,
            } => {
                let now = self.now();
                let ends_at = match end {
                    SilenceEnd::For(d) => now.saturating_add(ns_of(d)),
                    SilenceEnd::Until(t) => t,
                };
                let id = self
                    .put_silence(SilenceDef {
                        id: String::new(),
                        matchers,
                        starts_at: now,
                        ends_at,
                        created_by,
                        comment,
                        updated_at: now,
                    })
                    .await?;
                message(id)
            }
            Statement::DropSilence { id } => {
                self.expire_silence(&id).await?;
                message(format!("silence `{id}` expired"))
            }
            Statement::Backtest {
                target,
                from,
                to,
                every,
            } => {
                let rule = match target {
                    BacktestTarget::Rule(name) => self.rule(&name)?,
                    BacktestTarget::Spec(spec) => spec.into_def(db),
                };
                let (from, to) =
                    crate::backtest::range(self.now(), &from, to.as_deref(), ("FROM", "TO"))?;
                let report = self.backtest(&rule, from, to, every).await?;
                backtest_batch(&report).map_err(arrow)
            }
        }
    }
}
