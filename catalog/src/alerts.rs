//! Alert rule and silence definitions as the catalog keeps them. The alerting crate owns
//! what they mean (evaluation, states, notification); here they are plain data that
//! survives restarts with the rest of the catalog.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// Who owns a definition: the config file (reloaded at start, read-only at run time) or
/// the runtime APIs (SQL DDL, HTTP), which keep it until it is dropped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Owner {
    Config,
    #[default]
    Api,
}

impl Owner {
    pub fn name(self) -> &'static str {
        match self {
            Self::Config => "config",
            Self::Api => "api",
        }
    }
}

/// What an instance that stops appearing in a rule's result means (rules with a `WHEN`
/// condition, where a returned row with a false condition is how an alert recovers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NoData {
    /// Resolved, as if the condition had become false.
    #[default]
    Resolve,
    /// Keeps its last state until it appears again.
    Keep,
    /// Becomes a `nodata` alert of its own, notified like a firing one.
    Alert,
}

impl NoData {
    pub fn name(self) -> &'static str {
        match self {
            Self::Resolve => "resolve",
            Self::Keep => "keep",
            Self::Alert => "alert",
        }
    }
}

/// An alert rule: a SQL query evaluated on a schedule; each result row is an instance.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AlertRuleDef {
    pub name: String,
    /// The database the query runs in.
    pub database: String,
    pub query: String,
    /// Optional SQL condition over the result's columns: rows where it is true are active,
    /// rows where it is false are recovered, rows missing are "no data".
    #[serde(default)]
    pub condition: Option<String>,
    pub every_ms: u64,
    #[serde(default)]
    pub for_ms: u64,
    #[serde(default)]
    pub keep_firing_for_ms: u64,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    #[serde(default)]
    pub no_data: NoData,
    /// Dead man's switch: the rule fires when its query returns no rows at all.
    #[serde(default)]
    pub alert_on_empty: bool,
    #[serde(default)]
    pub owner: Owner,
    /// When it was created (ns since the epoch, injected clock).
    #[serde(default)]
    pub created_at: i64,
}

/// One label matcher of a silence, route or inhibition rule (Alertmanager's four kinds).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MatcherDef {
    pub name: String,
    pub value: String,
    #[serde(default, rename = "isRegex")]
    pub is_regex: bool,
    #[serde(default = "yes", rename = "isEqual")]
    pub is_equal: bool,
}

fn yes() -> bool {
    true
}

/// A silence: alerts matching every matcher are not notified between `starts_at` and
/// `ends_at` (ns since the epoch).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SilenceDef {
    pub id: String,
    pub matchers: Vec<MatcherDef>,
    pub starts_at: i64,
    pub ends_at: i64,
    pub created_by: String,
    pub comment: String,
    pub updated_at: i64,
}

impl SilenceDef {
    /// `pending` before it starts, `active`, then `expired` (Alertmanager's words).
    pub fn state(&self, now: i64) -> &'static str {
        if self.ends_at <= now {
            "expired"
        } else if self.starts_at > now {
            "pending"
        } else {
            "active"
        }
    }
}
