//! `strata-alerting` owns alert rules written as SQL: their schedule, the alert state
//! machine ([`state`]), and the notification pipeline ([`notify`]: routing, grouping,
//! silences, inhibition, escalation, retries) with its channels (SMTP via `lettre`,
//! webhooks, PagerDuty and SMS/voice via `reqwest`). It also serves the alerting SQL
//! statements ([`ddl`], through `strata_sql::commands`), the HTTP API ([`http`], with an
//! Alertmanager v2 subset) and the rows of `system.alert_rules`, `system.alerts`,
//! `system.notifications` and `system.silences` ([`tables`]).
//!
//! It must not touch the engine: rules run through the [`query::RuleQuery`] trait (the
//! same SQL engine as every query), definitions live in the catalog, time comes from the
//! injected clock. Start with [`Alerting`]: [`Alerting::evaluate_due`] and
//! [`Alerting::notify_due`] are one step each, [`Alerting::start`] runs them in the
//! background.
//!
//! # Persisted state
//! Rule definitions and silences are in the catalog. Instance states, groups (what was
//! notified when) and the outbox of undelivered notifications are one JSON object,
//! `alerting/state.json` in the data store, rewritten after every step that changed them,
//! so a restart neither forgets a firing alert nor sends a notification twice (except
//! one that was in flight: delivery is at-least-once, receivers dedupe on `groupKey` /
//! `dedup_key`).

pub mod backtest;
pub mod config;
pub mod ddl;
pub mod http;
pub mod matcher;
pub mod notify;
pub mod query;
pub mod rows;
pub mod state;
pub mod tables;

mod commands;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::StreamExt;
use object_store::{ObjectStore, ObjectStoreExt};
use parking_lot::Mutex;
use serde::{Deserialize, Serialize};
use strata_catalog::Catalog;
use strata_catalog::alerts::{AlertRuleDef, NoData, Owner, SilenceDef};
use strata_catalog::clock::Clock;
use strata_catalog::units::parse_duration;

use crate::config::{AlertingConfig, ReceiverConfig, RuleConfig};
use crate::matcher::{Matcher, all_match};
use crate::notify::route::Route;
use crate::notify::{Alert, EscalationPolicy, Inhibit, Pipeline, Setup, Status};
use crate::query::{RuleQuery, is_missing_table, rule_sql};
use crate::state::{Flapping, Instance, State};

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("alerting configuration: {0}")]
    Config(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("could not store alerting state: {0}")]
    Catalog(#[from] strata_catalog::Error),
    #[error("alerting state in {path} is unreadable: {reason}")]
    State { path: String, reason: String },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Rules evaluate every minute unless they say otherwise.
pub const DEFAULT_EVERY: Duration = Duration::from_secs(60);
/// Shortest evaluation interval a rule may ask for.
pub const MIN_EVERY: Duration = Duration::from_millis(100);
/// Posted alerts without an end resolve after this long unless posted again
/// (Alertmanager's `resolve_timeout`).
pub const RESOLVE_TIMEOUT_NS: i64 = 5 * 60 * 1_000_000_000;

const STATE_PATH: &str = "alerting/state.json";

/// Expired silences are kept this long for the record, then deleted (Alertmanager's
/// default retention).
pub const SILENCE_RETENTION_NS: i64 = 120 * 3600 * 1_000_000_000;

/// A rule's evaluation health and its instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RuleRuntime {
    pub next_eval: i64,
    pub last_eval: Option<i64>,
    pub last_success: Option<i64>,
    pub last_error: Option<String>,
    pub last_duration_ms: f64,
    pub evaluations: u64,
    pub instances: BTreeMap<String, Instance>,
}

impl RuleRuntime {
    /// `ok`, `error` (the last evaluation failed) or `unknown` (never evaluated).
    pub fn health(rt: Option<&Self>) -> &'static str {
        match rt {
            None => "unknown",
            Some(x) if x.last_error.is_some() => "error",
            Some(_) => "ok",
        }
    }
}

#[derive(Debug, Default, Serialize, Deserialize)]
struct Persisted {
    rules: BTreeMap<String, RuleRuntime>,
    pipeline: Pipeline,
}

#[derive(Debug, Default)]
struct Runtime {
    rules: BTreeMap<String, RuleRuntime>,
    pipeline: Pipeline,
    /// Bumped on every change; saves skip versions already written.
    version: u64,
}

/// The configuration, compiled.
#[derive(Debug)]
struct Compiled {
    route: Route,
    receivers: BTreeMap<String, ReceiverConfig>,
    policies: BTreeMap<String, EscalationPolicy>,
    inhibits: Vec<Inhibit>,
    flapping: Flapping,
    external_url: String,
    rules: Vec<AlertRuleDef>,
    max_concurrent: usize,
    /// The configuration as JSON with secrets redacted, for `GET /api/v2/status`.
    redacted: String,
}

/// Rule queries running at once unless the configuration says otherwise.
pub const DEFAULT_MAX_CONCURRENT_EVALUATIONS: usize = 16;

/// `c` as pretty JSON with every secret (passwords, tokens, routing keys, and endpoint
/// URLs, which often carry a token) replaced by `<secret>`, as Alertmanager shows its
/// configuration.
fn redacted(c: &AlertingConfig) -> String {
    fn walk(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                for (k, x) in m.iter_mut() {
                    let secret = [
                        "password",
                        "auth_token",
                        "routing_key",
                        "bearer_token",
                        "url",
                    ]
                    .contains(&k.as_str());
                    if secret && !x.is_null() {
                        *x = serde_json::Value::String("<secret>".into());
                    } else {
                        walk(x);
                    }
                }
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(walk),
            _ => {}
        }
    }
    let mut v = serde_json::to_value(c).unwrap_or_default();
    walk(&mut v);
    serde_json::to_string_pretty(&v).unwrap_or_default()
}

fn ns_of(d: Duration) -> i64 {
    i64::try_from(d.as_nanos()).unwrap_or(i64::MAX)
}

fn ms_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Compiled {
    fn new(c: &AlertingConfig) -> Result<Self> {
        let cfg = |e: String| Error::Config(e);
        let mut receivers = BTreeMap::new();
        for r in &c.receivers {
            notify::channels::validate(r).map_err(cfg)?;
            if receivers.insert(r.name.clone(), r.clone()).is_some() {
                return Err(cfg(format!("receiver `{}` is defined twice", r.name)));
            }
        }
        let mut policies = BTreeMap::new();
        for p in &c.escalations {
            if receivers.contains_key(&p.name) {
                return Err(cfg(format!(
                    "escalation `{}` has the name of a receiver",
                    p.name
                )));
            }
            let mut steps = Vec::new();
            for (i, s) in p.steps.iter().enumerate() {
                for r in &s.receivers {
                    if !receivers.contains_key(r) {
                        return Err(cfg(format!(
                            "escalation `{}` step {i}: unknown receiver `{r}`",
                            p.name
                        )));
                    }
                }
                let after = match &s.after {
                    None => 0,
                    Some(a) => ns_of(parse_duration(a).map_err(|e| {
                        cfg(format!("escalation `{}` step {i} after: {e}", p.name))
                    })?),
                };
                steps.push((s.receivers.clone(), after));
            }
            if steps.is_empty() {
                return Err(cfg(format!("escalation `{}` has no steps", p.name)));
            }
            policies.insert(
                p.name.clone(),
                EscalationPolicy {
                    name: p.name.clone(),
                    steps,
                },
            );
        }
        let route = Route::compile(c.route.as_ref(), "default").map_err(cfg)?;
        if c.route.is_some() {
            for r in route.receivers() {
                if !receivers.contains_key(r) && !policies.contains_key(r) {
                    return Err(cfg(format!(
                        "route refers to `{r}`, which is neither a receiver nor an escalation"
                    )));
                }
            }
        }
        let mut inhibits = Vec::new();
        for (i, r) in c.inhibit_rules.iter().enumerate() {
            let m = |list: &[String]| {
                matcher::parse_all(list).map_err(|e| cfg(format!("inhibit rule {i}: {e}")))
            };
            inhibits.push(Inhibit {
                source: m(&r.source_matchers)?,
                target: m(&r.target_matchers)?,
                equal: r.equal.clone(),
            });
        }
        let mut flapping = Flapping::default();
        if let Some(w) = &c.flap_window {
            flapping.window_ns =
                ns_of(parse_duration(w).map_err(|e| cfg(format!("flap_window: {e}")))?);
        }
        if let Some(t) = c.flap_threshold {
            flapping.threshold = t;
        }
        let mut rules = Vec::new();
        let mut names = BTreeSet::new();
        for r in &c.rules {
            let def = rule_from_config(r).map_err(|e| cfg(format!("rule `{}`: {e}", r.name)))?;
            if !names.insert(def.name.clone()) {
                return Err(cfg(format!("rule `{}` is defined twice", def.name)));
            }
            rules.push(def);
        }
        Ok(Self {
            route,
            receivers,
            policies,
            inhibits,
            flapping,
            external_url: c
                .external_url
                .clone()
                .unwrap_or_else(|| "http://127.0.0.1:7070".into()),
            rules,
            max_concurrent: match c.max_concurrent_evaluations {
                None => DEFAULT_MAX_CONCURRENT_EVALUATIONS,
                Some(0) => return Err(cfg("max_concurrent_evaluations must be at least 1".into())),
                Some(n) => n,
            },
            redacted: redacted(c),
        })
    }
}

fn duration_ms(what: &str, s: &Option<String>) -> Result<Option<u64>, String> {
    s.as_deref()
        .map(|s| {
            parse_duration(s)
                .map(ms_of)
                .map_err(|e| format!("{what}: {e}"))
        })
        .transpose()
}

/// A rule from the config file or the HTTP API.
pub fn rule_from_config(r: &RuleConfig) -> Result<AlertRuleDef, String> {
    let no_data = match r.no_data.as_deref() {
        None | Some("resolve") => NoData::Resolve,
        Some("keep") => NoData::Keep,
        Some("alert") => NoData::Alert,
        Some(other) => {
            return Err(format!("no_data `{other}`: use resolve, keep or alert"));
        }
    };
    let def = AlertRuleDef {
        name: r.name.clone(),
        database: r
            .database
            .clone()
            .unwrap_or_else(|| strata_sql::DEFAULT_DATABASE.to_string()),
        query: r.query.trim().trim_end_matches(';').to_string(),
        condition: r.when.clone(),
        every_ms: duration_ms("every", &r.every)?.unwrap_or(ms_of(DEFAULT_EVERY)),
        for_ms: duration_ms("for", &r.for_)?.unwrap_or(0),
        keep_firing_for_ms: duration_ms("keep_firing_for", &r.keep_firing_for)?.unwrap_or(0),
        labels: r.labels.clone(),
        annotations: r.annotations.clone(),
        no_data,
        alert_on_empty: r.alert_on_empty,
        owner: Owner::Config,
        created_at: 0,
    };
    check_rule_shape(&def)?;
    Ok(def)
}

/// Checks what can be checked without planning the query.
fn check_rule_shape(def: &AlertRuleDef) -> Result<(), String> {
    if def.name.is_empty()
        || !def
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-' || c == '.')
    {
        return Err(format!(
            "rule name `{}`: use letters, digits, `_`, `-` and `.`",
            def.name
        ));
    }
    if def.query.is_empty() {
        return Err("the query is empty".into());
    }
    if u128::from(def.every_ms) < MIN_EVERY.as_millis() {
        return Err(format!(
            "EVERY {}ms is below the minimum of {}ms",
            def.every_ms,
            MIN_EVERY.as_millis()
        ));
    }
    if def.no_data != NoData::Resolve && def.condition.is_none() {
        return Err(
            "ON NO DATA needs WHEN: without a condition, a row that stops appearing is how an \
             alert recovers"
                .into(),
        );
    }
    for k in def.labels.keys() {
        if !k.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || k.is_empty() {
            return Err(format!("label name `{k}`: use letters, digits and `_`"));
        }
    }
    Ok(())
}

/// Alerting: rules, states and notifications. One per server.
#[derive(Debug)]
pub struct Alerting {
    catalog: Arc<Catalog>,
    query: Arc<dyn RuleQuery>,
    clock: Arc<dyn Clock>,
    store: Arc<dyn ObjectStore>,
    setup: Compiled,
    runtime: Mutex<Runtime>,
    http: reqwest::Client,
    wake: tokio::sync::Notify,
    save_lock: tokio::sync::Mutex<u64>,
    silence_cache: Mutex<BTreeMap<String, (i64, Vec<Matcher>)>>,
    ids: AtomicU64,
    started_at: i64,
}

/// The background tasks of [`Alerting::start`]; dropping it stops them.
#[derive(Debug)]
pub struct Background(Vec<tokio::task::JoinHandle<()>>);

impl Drop for Background {
    fn drop(&mut self) {
        for t in &self.0 {
            t.abort();
        }
    }
}

impl Alerting {
    /// Loads the persisted state, compiles `config` and stores its rules in the catalog
    /// (replacing config-owned rules the file no longer has).
    pub async fn new(
        catalog: Arc<Catalog>,
        query: Arc<dyn RuleQuery>,
        clock: Arc<dyn Clock>,
        store: Arc<dyn ObjectStore>,
        config: &AlertingConfig,
    ) -> Result<Arc<Self>> {
        let setup = Compiled::new(config)?;
        let path = object_store::path::Path::from(STATE_PATH);
        let persisted: Persisted = match store.get(&path).await {
            Ok(r) => {
                let bytes = r.bytes().await.map_err(|e| Error::State {
                    path: STATE_PATH.into(),
                    reason: e.to_string(),
                })?;
                serde_json::from_slice(&bytes).map_err(|e| Error::State {
                    path: STATE_PATH.into(),
                    reason: e.to_string(),
                })?
            }
            Err(object_store::Error::NotFound { .. }) => Persisted::default(),
            Err(e) => {
                return Err(Error::State {
                    path: STATE_PATH.into(),
                    reason: e.to_string(),
                });
            }
        };
        let config_rules = setup.rules.clone();
        let now = clock.now_ns();
        let current = catalog.snapshot();
        let stale = current
            .alert_rules
            .values()
            .any(|r| r.owner == Owner::Config && !config_rules.iter().any(|c| c.name == r.name));
        let changed = config_rules.iter().any(|c| {
            current.alert_rules.get(&c.name).is_none_or(|r| {
                let mut r = r.clone();
                r.created_at = 0;
                r != *c
            })
        });
        for c in &config_rules {
            if current
                .alert_rules
                .get(&c.name)
                .is_some_and(|r| r.owner == Owner::Api)
            {
                return Err(Error::Config(format!(
                    "rule `{}` of the config file exists already, created at run time; drop it \
                     first (DROP ALERT {})",
                    c.name, c.name
                )));
            }
        }
        if stale || changed {
            catalog
                .commit(|s| {
                    s.alert_rules.retain(|_, r| r.owner != Owner::Config);
                    for c in &config_rules {
                        let mut c = c.clone();
                        c.created_at = now;
                        s.alert_rules.insert(c.name.clone(), c);
                    }
                })
                .await?;
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("strata/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Config(format!("HTTP client: {e}")))?;
        Ok(Arc::new(Self {
            catalog,
            query,
            clock,
            store,
            setup,
            runtime: Mutex::new(Runtime {
                rules: persisted.rules,
                pipeline: persisted.pipeline,
                version: 0,
            }),
            http,
            wake: tokio::sync::Notify::new(),
            save_lock: tokio::sync::Mutex::new(0),
            silence_cache: Mutex::new(BTreeMap::new()),
            ids: AtomicU64::new(0),
            started_at: now,
        }))
    }

    pub fn now(&self) -> i64 {
        self.clock.now_ns()
    }

    /// Starts evaluating and notifying in the background.
    pub fn start(self: &Arc<Self>) -> Background {
        let eval = Arc::clone(self);
        let notify = Arc::clone(self);
        Background(vec![
            tokio::spawn(async move {
                loop {
                    eval.evaluate_due().await;
                    let next = eval.next_evaluation();
                    eval.sleep_until(next).await;
                }
            }),
            tokio::spawn(async move {
                loop {
                    notify.notify_due().await;
                    let next = notify
                        .runtime
                        .lock()
                        .pipeline
                        .next_due(&notify.setup.policies);
                    notify.sleep_until(next).await;
                }
            }),
        ])
    }

    /// Sleeps until the clock reaches `until` (rechecked at least every 250 ms, since the
    /// clock may be injected), or until woken by a change.
    async fn sleep_until(&self, until: Option<i64>) {
        let now = self.now();
        let wait = until.map_or(Duration::from_millis(250), |t| {
            Duration::from_nanos(u64::try_from(t.saturating_sub(now)).unwrap_or(0))
                .min(Duration::from_millis(250))
        });
        if wait.is_zero() {
            tokio::task::yield_now().await;
            return;
        }
        tokio::select! {
            () = tokio::time::sleep(wait) => {}
            () = self.wake.notified() => {}
        }
    }

    fn next_evaluation(&self) -> Option<i64> {
        let rules = self.catalog.snapshot();
        let rt = self.runtime.lock();
        rules
            .alert_rules
            .keys()
            .map(|name| rt.rules.get(name).map_or(i64::MIN, |r| r.next_eval))
            .min()
    }

    /// Evaluates every rule that is due at the clock's current time (at most
    /// `max_concurrent_evaluations` queries at once), moves
    /// its instances through their states and hands changes to the pipeline. Returns how
    /// many rules were evaluated.
    pub async fn evaluate_due(&self) -> usize {
        let now = self.now();
        let defs = self.catalog.snapshot();
        let due: Vec<AlertRuleDef> = {
            let mut rt = self.runtime.lock();
            // Rules dropped since the last step: their alerts resolve.
            let dropped: Vec<String> = rt
                .rules
                .keys()
                .filter(|n| !defs.alert_rules.contains_key(*n))
                .cloned()
                .collect();
            for name in dropped {
                rt.rules.remove(&name);
                let fps: Vec<String> = rt
                    .pipeline
                    .alerts
                    .values()
                    .filter(|a| a.rule.as_deref() == Some(&name) && a.status == Status::Firing)
                    .map(|a| a.fingerprint.clone())
                    .collect();
                for fp in fps {
                    if let Some(mut a) = rt.pipeline.alerts.get(&fp).cloned() {
                        a.status = Status::Resolved;
                        a.ends_at = Some(now);
                        self.with_setup(|setup| rt.pipeline.upsert(setup, a, now));
                    }
                }
                rt.version += 1;
            }
            defs.alert_rules
                .values()
                .filter(|r| rt.rules.get(&r.name).is_none_or(|x| x.next_eval <= now))
                .cloned()
                .collect()
        };
        self.forget_old_silences(now).await;
        if due.is_empty() {
            return 0;
        }
        let query = Arc::clone(&self.query);
        let runs: Vec<_> = due
            .iter()
            .map(|r| {
                let query = Arc::clone(&query);
                let (db, sql) = (r.database.clone(), rule_sql(r));
                async move {
                    let started = Instant::now();
                    let result = query.run(&db, &sql).await.and_then(|b| rows::rows(&b));
                    (result, started.elapsed())
                }
            })
            .collect();
        let results: Vec<_> = futures::stream::iter(runs)
            .buffered(self.setup.max_concurrent)
            .collect()
            .await;
        {
            let mut rt = self.runtime.lock();
            for (rule, (result, took)) in due.iter().zip(results) {
                let every = i64::try_from(rule.every_ms)
                    .unwrap_or(i64::MAX / 1_000_000)
                    .saturating_mul(1_000_000);
                let r = rt.rules.entry(rule.name.clone()).or_default();
                r.next_eval = now.saturating_add(every);
                r.last_eval = Some(now);
                r.evaluations += 1;
                r.last_duration_ms = took.as_secs_f64() * 1000.0;
                metrics::histogram!("strata_alert_evaluation_seconds").record(took.as_secs_f64());
                match result {
                    Ok(rows) => {
                        r.last_success = Some(now);
                        r.last_error = None;
                        state::advance(rule, &mut r.instances, &rows, now, self.setup.flapping);
                        metrics::counter!("strata_alert_evaluations_total", "outcome" => "ok")
                            .increment(1);
                    }
                    Err(e) => {
                        tracing::warn!(rule = %rule.name, error = %e, "alert rule failed");
                        r.last_error = Some(e);
                        metrics::counter!("strata_alert_evaluations_total", "outcome" => "error")
                            .increment(1);
                    }
                }
                let alerts: Vec<Alert> = r
                    .instances
                    .values()
                    .filter_map(|i| self.to_alert(rule, i))
                    .collect();
                for a in alerts {
                    self.with_setup(|setup| rt.pipeline.upsert(setup, a, now));
                }
            }
            rt.version += 1;
        }
        self.wake.notify_waiters();
        self.save().await;
        due.len()
    }

    /// What the pipeline sees of an instance: nothing while pending or flapping.
    fn to_alert(&self, rule: &AlertRuleDef, i: &Instance) -> Option<Alert> {
        if i.flapping {
            return None;
        }
        let status = match i.state {
            State::Pending => return None,
            State::Firing | State::NoData => Status::Firing,
            State::Resolved => {
                i.fired_at?;
                Status::Resolved
            }
        };
        let mut annotations = i.annotations.clone();
        if i.state == State::NoData {
            annotations.insert(
                "nodata".into(),
                "the rule's query stopped returning this instance".into(),
            );
        }
        Some(Alert {
            fingerprint: i.fingerprint.clone(),
            status,
            labels: i.labels.clone(),
            annotations,
            starts_at: i.fired_at.unwrap_or(i.active_at),
            ends_at: if status == Status::Resolved {
                i.resolved_at
            } else {
                None
            },
            generator_url: format!(
                "{}/api/v3/query_sql?db={}&q=SELECT+*+FROM+system.alerts+WHERE+rule+%3D+%27{}%27",
                self.setup.external_url.trim_end_matches('/'),
                rule.database,
                rule.name
            ),
            rule: Some(rule.name.clone()),
            expires_at: None,
        })
    }

    fn with_setup<T>(&self, f: impl FnOnce(&Setup<'_>) -> T) -> T {
        let channels = |r: &str| {
            self.setup
                .receivers
                .get(r)
                .map(notify::channels::list)
                .unwrap_or_default()
        };
        let silenced =
            |labels: &BTreeMap<String, String>, now: i64| self.silenced(labels, now).is_some();
        let setup = Setup {
            route: &self.setup.route,
            policies: &self.setup.policies,
            inhibits: &self.setup.inhibits,
            channels: &channels,
            silenced: &silenced,
            external_url: &self.setup.external_url,
        };
        f(&setup)
    }

    /// The id of an active silence muting `labels` at `now`.
    pub fn silenced(&self, labels: &BTreeMap<String, String>, now: i64) -> Option<String> {
        let snap = self.catalog.snapshot();
        let mut cache = self.silence_cache.lock();
        cache.retain(|id, _| snap.silences.contains_key(id));
        for s in snap.silences.values() {
            if s.state(now) != "active" {
                continue;
            }
            let compiled = match cache.get(&s.id) {
                Some((at, m)) if *at == s.updated_at => m.clone(),
                _ => {
                    let Ok(m) = s
                        .matchers
                        .iter()
                        .map(|d| Matcher::new(d.clone()))
                        .collect::<Result<Vec<_>, _>>()
                    else {
                        continue;
                    };
                    cache.insert(s.id.clone(), (s.updated_at, m.clone()));
                    m
                }
            };
            if all_match(&compiled, labels) {
                return Some(s.id.clone());
            }
        }
        None
    }

    /// Flushes due groups, walks escalations and attempts every due delivery
    /// (concurrently); failures are retried later with backoff.
    pub async fn notify_due(&self) -> usize {
        let now = self.now();
        let due = {
            let mut rt = self.runtime.lock();
            let before = (rt.pipeline.next_id, rt.pipeline.groups.len());
            self.with_setup(|setup| rt.pipeline.flush(setup, now));
            if (rt.pipeline.next_id, rt.pipeline.groups.len()) != before {
                rt.version += 1;
            }
            rt.pipeline.due(now)
        };
        if due.is_empty() {
            self.save().await;
            return 0;
        }
        let results = futures::future::join_all(due.iter().map(|d| async move {
            let Some(receiver) = self.setup.receivers.get(&d.channel.receiver) else {
                return Err(format!(
                    "receiver `{}` is not configured",
                    d.channel.receiver
                ));
            };
            notify::channels::send(
                &self.http,
                receiver,
                d.channel.kind,
                d.channel.index,
                &d.notification,
            )
            .await
        }))
        .await;
        {
            let now = self.now();
            let mut rt = self.runtime.lock();
            for (d, result) in due.iter().zip(results) {
                if let Err(e) = &result {
                    tracing::warn!(channel = %d.channel.name(), error = %e, "notification failed; will retry");
                }
                rt.pipeline.record(d.id, result, now);
            }
            rt.version += 1;
        }
        self.save().await;
        due.len()
    }

    /// Writes the state if it changed since the last write.
    async fn save(&self) {
        let mut written = self.save_lock.lock().await;
        let (version, body) = {
            let rt = self.runtime.lock();
            if rt.version == *written {
                return;
            }
            let persisted = PersistedRef {
                rules: &rt.rules,
                pipeline: &rt.pipeline,
            };
            (rt.version, serde_json::to_vec(&persisted))
        };
        let body = match body {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(error = %e, "could not encode the alerting state");
                return;
            }
        };
        let path = object_store::path::Path::from(STATE_PATH);
        match self.store.put(&path, body.into()).await {
            Ok(_) => *written = version,
            Err(e) => tracing::error!(error = %e, "could not save the alerting state"),
        }
    }

    /// Creates (or replaces) a rule after checking it plans.
    pub async fn create_rule(
        &self,
        mut def: AlertRuleDef,
        or_replace: bool,
        if_not_exists: bool,
    ) -> Result<bool> {
        check_rule_shape(&def).map_err(Error::Invalid)?;
        if let Some(existing) = self.catalog.snapshot().alert_rules.get(&def.name) {
            if existing.owner == Owner::Config {
                return Err(Error::Invalid(format!(
                    "alert `{}` is defined in the config file; change it there",
                    def.name
                )));
            }
            if if_not_exists {
                return Ok(false);
            }
            if !or_replace {
                return Err(Error::Conflict(format!(
                    "alert `{}` already exists (use CREATE OR REPLACE ALERT)",
                    def.name
                )));
            }
        }
        if let Err(e) = self.query.check(&def.database, &rule_sql(&def)).await
            && !is_missing_table(&e)
        {
            return Err(Error::Invalid(format!("alert `{}`: {e}", def.name)));
        }
        def.owner = Owner::Api;
        def.created_at = self.now();
        let name = def.name.clone();
        self.catalog
            .commit(move |s| {
                s.alert_rules.insert(name, def);
            })
            .await?;
        self.wake.notify_waiters();
        Ok(true)
    }

    /// A stored rule's definition.
    pub fn rule(&self, name: &str) -> Result<AlertRuleDef> {
        self.catalog
            .snapshot()
            .alert_rules
            .get(name)
            .cloned()
            .ok_or_else(|| Error::NotFound(format!("alert `{name}` does not exist")))
    }

    /// Drops a rule; its firing alerts resolve at the next step.
    pub async fn drop_rule(&self, name: &str, if_exists: bool) -> Result<bool> {
        match self.catalog.snapshot().alert_rules.get(name) {
            None if if_exists => return Ok(false),
            None => return Err(Error::NotFound(format!("alert `{name}` does not exist"))),
            Some(r) if r.owner == Owner::Config => {
                return Err(Error::Invalid(format!(
                    "alert `{name}` is defined in the config file; remove it there"
                )));
            }
            Some(_) => {}
        }
        let n = name.to_string();
        self.catalog
            .commit(move |s| {
                s.alert_rules.remove(&n);
            })
            .await?;
        self.wake.notify_waiters();
        Ok(true)
    }

    /// Creates or replaces a silence; returns its id.
    pub async fn put_silence(&self, mut s: SilenceDef) -> Result<String> {
        if s.matchers.is_empty() {
            return Err(Error::Invalid(
                "a silence needs at least one matcher".into(),
            ));
        }
        for m in &s.matchers {
            Matcher::new(m.clone()).map_err(Error::Invalid)?;
        }
        if s.ends_at <= s.starts_at {
            return Err(Error::Invalid("a silence must end after it starts".into()));
        }
        let now = self.now();
        if s.id.is_empty() {
            s.id = self.new_id(now);
        } else if !self.catalog.snapshot().silences.contains_key(&s.id) {
            return Err(Error::NotFound(format!(
                "silence `{}` does not exist",
                s.id
            )));
        }
        s.updated_at = now;
        let id = s.id.clone();
        self.catalog
            .commit(move |st| {
                st.silences.insert(s.id.clone(), s);
            })
            .await?;
        self.wake.notify_waiters();
        Ok(id)
    }

    /// Expires a silence now (kept for the record, as Alertmanager does).
    pub async fn expire_silence(&self, id: &str) -> Result<()> {
        if !self.catalog.snapshot().silences.contains_key(id) {
            return Err(Error::NotFound(format!("silence `{id}` does not exist")));
        }
        let now = self.now();
        let id = id.to_string();
        self.catalog
            .commit(move |st| {
                if let Some(s) = st.silences.get_mut(&id) {
                    s.ends_at = s.ends_at.min(now);
                    s.starts_at = s.starts_at.min(now);
                    s.updated_at = now;
                }
            })
            .await?;
        Ok(())
    }

    /// Deletes silences that ended more than [`SILENCE_RETENTION_NS`] ago.
    async fn forget_old_silences(&self, now: i64) {
        let old = |s: &SilenceDef| now.saturating_sub(s.ends_at) > SILENCE_RETENTION_NS;
        if !self.catalog.snapshot().silences.values().any(old) {
            return;
        }
        if let Err(e) = self
            .catalog
            .commit(|st| st.silences.retain(|_, s| !old(s)))
            .await
        {
            tracing::warn!(error = %e, "could not delete expired silences; will retry");
        }
    }

    /// A UUID-shaped id, unique within the process and random across processes.
    fn new_id(&self, now: i64) -> String {
        use std::hash::{BuildHasher, Hasher};
        let n = self.ids.fetch_add(1, Ordering::Relaxed);
        let mut parts = [0u64; 2];
        for (i, p) in parts.iter_mut().enumerate() {
            let mut h = std::collections::hash_map::RandomState::new().build_hasher();
            h.write_i64(now);
            h.write_u64(n);
            h.write_usize(i);
            *p = h.finish();
        }
        let hex = format!("{:016x}{:016x}", parts[0], parts[1]);
        format!(
            "{}-{}-{}-{}-{}",
            &hex[0..8],
            &hex[8..12],
            &hex[12..16],
            &hex[16..20],
            &hex[20..32]
        )
    }

    /// Adds alerts posted through the Alertmanager API.
    pub fn post_alerts(&self, alerts: Vec<PostedAlert>) -> Result<usize> {
        let now = self.now();
        if let Some(i) = alerts.iter().position(|a| a.labels.is_empty()) {
            return Err(Error::Invalid(format!("alert {i}: labels are empty")));
        }
        let mut rt = self.runtime.lock();
        let mut n = 0;
        for PostedAlert {
            labels,
            annotations,
            starts_at,
            ends_at,
            generator_url,
        } in alerts
        {
            let fingerprint = rows::fingerprint(&labels);
            let resolved = ends_at.is_some_and(|e| e <= now);
            let alert = Alert {
                fingerprint,
                status: if resolved {
                    Status::Resolved
                } else {
                    Status::Firing
                },
                labels,
                annotations,
                starts_at: starts_at.unwrap_or(now),
                ends_at: if resolved { ends_at } else { None },
                generator_url,
                rule: None,
                expires_at: Some(ends_at.unwrap_or(now + RESOLVE_TIMEOUT_NS)),
            };
            self.with_setup(|setup| rt.pipeline.upsert(setup, alert, now));
            n += 1;
        }
        rt.version += 1;
        drop(rt);
        self.wake.notify_waiters();
        Ok(n)
    }

    /// Acknowledges the alert with `fingerprint` (or the group with that key): its
    /// escalation stops. Returns how many groups were acknowledged.
    pub fn acknowledge(&self, fingerprint: &str, by: &str) -> Result<usize> {
        let now = self.now();
        let mut rt = self.runtime.lock();
        let n = rt.pipeline.acknowledge(fingerprint, by, now);
        if n == 0 {
            return Err(Error::NotFound(format!(
                "no notification group holds alert `{fingerprint}`"
            )));
        }
        rt.version += 1;
        Ok(n)
    }

    /// Sends a test notification to every channel of `receiver` right away; the result
    /// per channel.
    pub async fn test_receiver(&self, receiver: &str) -> Result<Vec<(String, Result<(), String>)>> {
        let r =
            self.setup.receivers.get(receiver).ok_or_else(|| {
                Error::NotFound(format!("receiver `{receiver}` is not configured"))
            })?;
        let now = self.now();
        let labels: BTreeMap<String, String> = [
            (
                "alertname".to_string(),
                "StrataTestNotification".to_string(),
            ),
            ("receiver".to_string(), receiver.to_string()),
        ]
        .into();
        let n = notify::Notification {
            receiver: receiver.to_string(),
            group_key: format!("test:{receiver}"),
            group_labels: labels.clone(),
            status: Status::Firing,
            alerts: vec![Alert {
                fingerprint: rows::fingerprint(&labels),
                status: Status::Firing,
                labels,
                annotations: [(
                    "summary".to_string(),
                    "Test notification from Strata: this receiver is configured correctly."
                        .to_string(),
                )]
                .into(),
                starts_at: now,
                ends_at: None,
                generator_url: self.setup.external_url.clone(),
                rule: None,
                expires_at: None,
            }],
            external_url: self.setup.external_url.clone(),
            escalation_step: None,
        };
        let mut out = Vec::new();
        for (kind, index, _) in notify::channels::list(r) {
            let result = notify::channels::send(&self.http, r, kind, index, &n).await;
            out.push((format!("{}[{index}]", kind.name()), result));
        }
        Ok(out)
    }

    fn snapshot_runtime(&self) -> (BTreeMap<String, RuleRuntime>, Pipeline) {
        let rt = self.runtime.lock();
        (rt.rules.clone(), rt.pipeline.clone())
    }
}

/// An alert posted by another system (Prometheus, vmalert) through the Alertmanager API.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct PostedAlert {
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub starts_at: Option<i64>,
    pub ends_at: Option<i64>,
    pub generator_url: String,
}

#[derive(Serialize)]
struct PersistedRef<'a> {
    rules: &'a BTreeMap<String, RuleRuntime>,
    pipeline: &'a Pipeline,
}
