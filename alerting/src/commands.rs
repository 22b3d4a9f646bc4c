//! The alerting statements on every SQL frontend (see [`crate::ddl`] for the grammar).

use std::sync::Arc;

use arrow::array::{RecordBatch, StringArray};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use async_trait::async_trait;
use strata_catalog::alerts::{AlertRuleDef, Owner, SilenceDef};
use strata_sql::commands::{CommandError, CommandErrorKind, Commands};

use crate::ddl::{self, Kind, SilenceEnd, Statement};
use crate::tables::{alert_rules_schema, silences_schema};
use crate::{Alerting, Error, ms_of, ns_of};

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
                let def = AlertRuleDef {
                    name: rule.name,
                    database: db.to_string(),
                    query: rule.query,
                    condition: rule.condition,
                    every_ms: ms_of(rule.every.unwrap_or(crate::DEFAULT_EVERY)),
                    for_ms: ms_of(rule.for_),
                    keep_firing_for_ms: ms_of(rule.keep_firing_for),
                    labels: rule.labels,
                    annotations: rule.annotations,
                    no_data: rule.no_data,
                    alert_on_empty: rule.alert_on_empty,
                    owner: Owner::Api,
                    created_at: 0,
                };
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
        }
    }
}
