//! The rows of the alerting system tables, computed on demand from live state:
//! `system.alert_rules` (definitions and evaluation health), `system.alerts` (instances
//! and their states, plus alerts posted through the API), `system.notifications` (the
//! delivery log) and `system.silences`.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanArray, Float64Array, RecordBatch, StringArray, TimestampNanosecondArray,
    UInt64Array,
};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use arrow::error::ArrowError;
use strata_catalog::units::format_duration;

use crate::notify::Status;
use crate::{Alerting, RuleRuntime};

/// The names of the tables, inside `system`.
pub const TABLES: [&str; 4] = ["alert_rules", "alerts", "notifications", "silences"];

fn ts() -> DataType {
    DataType::Timestamp(TimeUnit::Nanosecond, None)
}

fn schema(fields: &[(&str, DataType)]) -> SchemaRef {
    Arc::new(Schema::new(
        fields
            .iter()
            .map(|(n, t)| Field::new(*n, t.clone(), true))
            .collect::<Vec<_>>(),
    ))
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

fn strings<I: IntoIterator<Item = S>, S: Into<String>>(v: I) -> ArrayRef {
    Arc::new(StringArray::from_iter_values(v.into_iter().map(Into::into)))
}

fn opt_strings<I: IntoIterator<Item = Option<String>>>(v: I) -> ArrayRef {
    Arc::new(StringArray::from_iter(v))
}

fn times<I: IntoIterator<Item = Option<i64>>>(v: I) -> ArrayRef {
    Arc::new(TimestampNanosecondArray::from_iter(v))
}

fn ms(v: u64) -> String {
    format_duration(std::time::Duration::from_millis(v))
}

pub fn alert_rules_schema() -> SchemaRef {
    schema(&[
        ("name", DataType::Utf8),
        ("database", DataType::Utf8),
        ("state", DataType::Utf8),
        ("health", DataType::Utf8),
        ("last_error", DataType::Utf8),
        ("firing", DataType::UInt64),
        ("pending", DataType::UInt64),
        ("every", DataType::Utf8),
        ("for", DataType::Utf8),
        ("keep_firing_for", DataType::Utf8),
        ("query", DataType::Utf8),
        ("condition", DataType::Utf8),
        ("no_data", DataType::Utf8),
        ("alert_on_empty", DataType::Boolean),
        ("labels", DataType::Utf8),
        ("annotations", DataType::Utf8),
        ("owner", DataType::Utf8),
        ("last_evaluation", ts()),
        ("last_success", ts()),
        ("evaluation_ms", DataType::Float64),
        ("evaluations", DataType::UInt64),
    ])
}

pub fn silences_schema() -> SchemaRef {
    schema(&[
        ("id", DataType::Utf8),
        ("state", DataType::Utf8),
        ("matchers", DataType::Utf8),
        ("starts_at", ts()),
        ("ends_at", ts()),
        ("created_by", DataType::Utf8),
        ("comment", DataType::Utf8),
    ])
}

impl Alerting {
    /// One of [`TABLES`]; `None` for another name.
    pub fn table(&self, name: &str) -> Option<Result<RecordBatch, ArrowError>> {
        Some(match name {
            "alert_rules" => self.alert_rules_batch(),
            "alerts" => self.alerts_batch(),
            "notifications" => self.notifications_batch(),
            "silences" => self.silences_batch(),
            _ => return None,
        })
    }

    pub fn alert_rules_batch(&self) -> Result<RecordBatch, ArrowError> {
        let defs = self.catalog.snapshot();
        let (runtime, _) = self.snapshot_runtime();
        let rules: Vec<_> = defs.alert_rules.values().collect();
        let rt = |name: &str| runtime.get(name);
        let count = |name: &str, pred: fn(&crate::state::Instance) -> bool| {
            rt(name).map_or(0, |r| {
                r.instances.values().filter(|i| pred(i)).count() as u64
            })
        };
        let firing: Vec<u64> = rules
            .iter()
            .map(|r| count(&r.name, |i| i.state.notifies_firing()))
            .collect();
        let pending: Vec<u64> = rules
            .iter()
            .map(|r| count(&r.name, |i| i.state == crate::state::State::Pending))
            .collect();
        let state = firing.iter().zip(&pending).map(|(f, p)| {
            if *f > 0 {
                "firing"
            } else if *p > 0 {
                "pending"
            } else {
                "inactive"
            }
        });
        let health = rules.iter().map(|r| RuleRuntime::health(rt(&r.name)));
        let cols: Vec<ArrayRef> = vec![
            strings(rules.iter().map(|r| r.name.clone())),
            strings(rules.iter().map(|r| r.database.clone())),
            strings(state),
            strings(health),
            opt_strings(
                rules
                    .iter()
                    .map(|r| rt(&r.name).and_then(|x| x.last_error.clone())),
            ),
            Arc::new(UInt64Array::from(firing)),
            Arc::new(UInt64Array::from(pending)),
            strings(rules.iter().map(|r| ms(r.every_ms))),
            strings(rules.iter().map(|r| ms(r.for_ms))),
            strings(rules.iter().map(|r| ms(r.keep_firing_for_ms))),
            strings(rules.iter().map(|r| r.query.clone())),
            opt_strings(rules.iter().map(|r| r.condition.clone())),
            strings(rules.iter().map(|r| r.no_data.name())),
            Arc::new(BooleanArray::from_iter(
                rules.iter().map(|r| Some(r.alert_on_empty)),
            )),
            strings(rules.iter().map(|r| json(&r.labels))),
            strings(rules.iter().map(|r| json(&r.annotations))),
            strings(rules.iter().map(|r| r.owner.name())),
            times(rules.iter().map(|r| rt(&r.name).and_then(|x| x.last_eval))),
            times(
                rules
                    .iter()
                    .map(|r| rt(&r.name).and_then(|x| x.last_success)),
            ),
            Arc::new(Float64Array::from_iter(
                rules
                    .iter()
                    .map(|r| rt(&r.name).map(|x| x.last_duration_ms)),
            )),
            Arc::new(UInt64Array::from_iter_values(
                rules
                    .iter()
                    .map(|r| rt(&r.name).map_or(0, |x| x.evaluations)),
            )),
        ];
        RecordBatch::try_new(alert_rules_schema(), cols)
    }

    pub fn alerts_batch(&self) -> Result<RecordBatch, ArrowError> {
        let now = self.now();
        let (runtime, pipeline) = self.snapshot_runtime();
        struct Row {
            rule: Option<String>,
            fingerprint: String,
            state: String,
            labels: String,
            values: String,
            annotations: String,
            active_at: Option<i64>,
            fired_at: Option<i64>,
            resolved_at: Option<i64>,
            flapping: bool,
            muted: Option<String>,
            acknowledged_by: Option<String>,
        }
        let ack = |fp: &str| {
            pipeline
                .groups
                .values()
                .filter(|g| g.alerts.contains(fp))
                .find_map(|g| {
                    g.escalation
                        .as_ref()
                        .and_then(|e| e.acknowledged_by.clone())
                })
        };
        let muted = |fp: &str| {
            pipeline.alerts.get(fp).and_then(|a| {
                self.with_setup(|setup| pipeline.muted(setup, a, now))
                    .name()
                    .map(str::to_string)
            })
        };
        let mut rows = Vec::new();
        for (rule, r) in &runtime {
            for i in r.instances.values() {
                rows.push(Row {
                    rule: Some(rule.clone()),
                    fingerprint: i.fingerprint.clone(),
                    state: i.state.name().to_string(),
                    labels: json(&i.labels),
                    values: json(&i.values),
                    annotations: json(&i.annotations),
                    active_at: Some(i.active_at),
                    fired_at: i.fired_at,
                    resolved_at: i.resolved_at,
                    flapping: i.flapping,
                    muted: muted(&i.fingerprint),
                    acknowledged_by: ack(&i.fingerprint),
                });
            }
        }
        for a in pipeline.alerts.values().filter(|a| a.rule.is_none()) {
            rows.push(Row {
                rule: None,
                fingerprint: a.fingerprint.clone(),
                state: a.status.name().to_string(),
                labels: json(&a.labels),
                values: "{}".into(),
                annotations: json(&a.annotations),
                active_at: Some(a.starts_at),
                fired_at: Some(a.starts_at),
                resolved_at: if a.status == Status::Resolved {
                    a.ends_at
                } else {
                    None
                },
                flapping: false,
                muted: if a.status == Status::Firing {
                    muted(&a.fingerprint)
                } else {
                    None
                },
                acknowledged_by: ack(&a.fingerprint),
            });
        }
        let cols: Vec<ArrayRef> = vec![
            opt_strings(rows.iter().map(|r| r.rule.clone())),
            strings(rows.iter().map(|r| r.fingerprint.clone())),
            strings(rows.iter().map(|r| r.state.clone())),
            strings(rows.iter().map(|r| r.labels.clone())),
            strings(rows.iter().map(|r| r.values.clone())),
            strings(rows.iter().map(|r| r.annotations.clone())),
            times(rows.iter().map(|r| r.active_at)),
            times(rows.iter().map(|r| r.fired_at)),
            times(rows.iter().map(|r| r.resolved_at)),
            Arc::new(BooleanArray::from_iter(
                rows.iter().map(|r| Some(r.flapping)),
            )),
            opt_strings(rows.iter().map(|r| r.muted.clone())),
            opt_strings(rows.iter().map(|r| r.acknowledged_by.clone())),
        ];
        RecordBatch::try_new(
            schema(&[
                ("rule", DataType::Utf8),
                ("fingerprint", DataType::Utf8),
                ("state", DataType::Utf8),
                ("labels", DataType::Utf8),
                ("values", DataType::Utf8),
                ("annotations", DataType::Utf8),
                ("active_at", ts()),
                ("fired_at", ts()),
                ("resolved_at", ts()),
                ("flapping", DataType::Boolean),
                ("muted", DataType::Utf8),
                ("acknowledged_by", DataType::Utf8),
            ]),
            cols,
        )
    }

    pub fn notifications_batch(&self) -> Result<RecordBatch, ArrowError> {
        let (_, pipeline) = self.snapshot_runtime();
        let log: Vec<_> = pipeline.log.values().collect();
        let cols: Vec<ArrayRef> = vec![
            Arc::new(UInt64Array::from_iter_values(log.iter().map(|e| e.id))),
            strings(log.iter().map(|e| e.receiver.clone())),
            strings(log.iter().map(|e| e.channel.clone())),
            strings(log.iter().map(|e| e.group_key.clone())),
            strings(log.iter().map(|e| e.title.clone())),
            strings(log.iter().map(|e| e.status.name())),
            Arc::new(UInt64Array::from_iter_values(
                log.iter().map(|e| e.firing as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                log.iter().map(|e| e.resolved as u64),
            )),
            Arc::new(UInt64Array::from_iter_values(
                log.iter().map(|e| u64::from(e.attempts)),
            )),
            times(log.iter().map(|e| Some(e.created_at))),
            times(log.iter().map(|e| e.finished_at)),
            opt_strings(log.iter().map(|e| e.last_error.clone())),
        ];
        RecordBatch::try_new(
            schema(&[
                ("id", DataType::UInt64),
                ("receiver", DataType::Utf8),
                ("channel", DataType::Utf8),
                ("group_key", DataType::Utf8),
                ("title", DataType::Utf8),
                ("status", DataType::Utf8),
                ("firing", DataType::UInt64),
                ("resolved", DataType::UInt64),
                ("attempts", DataType::UInt64),
                ("created_at", ts()),
                ("finished_at", ts()),
                ("last_error", DataType::Utf8),
            ]),
            cols,
        )
    }

    pub fn silences_batch(&self) -> Result<RecordBatch, ArrowError> {
        let now = self.now();
        let snap = self.catalog.snapshot();
        let s: Vec<_> = snap.silences.values().collect();
        let matchers = |x: &strata_catalog::alerts::SilenceDef| {
            x.matchers
                .iter()
                .filter_map(|m| crate::matcher::Matcher::new(m.clone()).ok())
                .map(|m| m.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        let cols: Vec<ArrayRef> = vec![
            strings(s.iter().map(|x| x.id.clone())),
            strings(s.iter().map(|x| x.state(now))),
            strings(s.iter().map(|x| matchers(x))),
            times(s.iter().map(|x| Some(x.starts_at))),
            times(s.iter().map(|x| Some(x.ends_at))),
            strings(s.iter().map(|x| x.created_by.clone())),
            strings(s.iter().map(|x| x.comment.clone())),
        ];
        RecordBatch::try_new(silences_schema(), cols)
    }
}

/// One alerting table as a `system` table.
#[derive(Debug)]
struct Table {
    name: &'static str,
    alerting: Arc<Alerting>,
}

impl strata_sql::commands::SystemTable for Table {
    fn name(&self) -> &str {
        self.name
    }

    fn snapshot(&self) -> Result<RecordBatch, ArrowError> {
        self.alerting.table(self.name).unwrap_or_else(|| {
            Err(ArrowError::InvalidArgumentError(format!(
                "no alerting table `{}`",
                self.name
            )))
        })
    }
}

impl Alerting {
    /// Serves the statements and the `system` tables of alerting through `query`.
    pub fn install(self: &Arc<Self>, query: &strata_sql::QueryEngine) {
        query.set_commands(Arc::clone(self) as _);
        for name in TABLES {
            query.register_system_table(Arc::new(Table {
                name,
                alerting: Arc::clone(self),
            }));
        }
    }
}
