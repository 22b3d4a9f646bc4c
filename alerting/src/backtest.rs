//! Backtesting: a rule evaluated over past data at its interval, as if it had been running
//! then. Each evaluation runs the rule's query as of its moment (`now()` is that moment and
//! tables end there, see `strata_sql::as_of`), through the same SQL engine and tiers as
//! live queries; the instances move through the same state machine, and their alerts go
//! through a scratch copy of the notification pipeline (routes, grouping, timers,
//! escalation without acknowledgements, silences as they were at the time). Nothing is
//! sent and nothing live changes. The report says when each instance would have been
//! pending, firing and resolved, and which notifications would have gone out.
//!
//! Known differences from a live run: instances start unknown at `from` (one already
//! firing then is first pending); only this rule's alerts are in the scratch pipeline,
//! so other rules' alerts cannot inhibit it; data that arrived late is visible to
//! evaluations before its arrival (arrival times are not kept).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use futures::StreamExt;
use serde::Serialize;
use strata_catalog::alerts::AlertRuleDef;
use strata_catalog::units::{format_duration, parse_time};

use crate::notify::channels::rfc3339;
use crate::notify::{Pipeline, channels};
use crate::query::rule_sql;
use crate::state::{self, Instance, State};
use crate::{Alerting, Error, Result, ns_of, rows};

/// At most this many evaluations per backtest (a week at 10 s is 60,480).
pub const MAX_EVALUATIONS: u64 = 100_000;
/// At most this many events are listed (counts stay exact).
pub const MAX_EVENTS: usize = 10_000;
/// Evaluation queries in flight at once.
const PARALLEL_QUERIES: usize = 4;

/// What a backtest reports.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub rule: String,
    pub database: String,
    /// ns since the epoch (RFC 3339 in JSON, as every time here).
    #[serde(serialize_with = "time")]
    pub from: i64,
    #[serde(serialize_with = "time")]
    pub to: i64,
    pub every_ms: u64,
    pub evaluations: u64,
    /// Evaluations whose query failed (states did not move then, as live).
    pub failed_evaluations: u64,
    pub first_error: Option<String>,
    /// Firing periods, per instance, in order of start.
    pub episodes: Vec<Episode>,
    /// Notifications the pipeline would have sent (one per receiver and group flush).
    pub notifications: Vec<Sent>,
    /// Notifications per receiver.
    pub notifications_by_receiver: BTreeMap<String, u64>,
    /// Deliveries (one per channel of each notification).
    pub deliveries: u64,
    /// State changes, errors and notifications in time order (at most [`MAX_EVENTS`]).
    pub events: Vec<Event>,
    pub events_truncated: bool,
    pub took_ms: u64,
}

impl Report {
    /// One line: `1440 evaluations (0 failed) every 1m from … to …: 2 firing episodes (1
    /// still firing), 3 notifications (oncall 3), 3 deliveries`.
    pub fn summary(&self) -> String {
        let still = self
            .episodes
            .iter()
            .filter(|e| e.ended_at.is_none())
            .count();
        let by: Vec<String> = self
            .notifications_by_receiver
            .iter()
            .map(|(r, n)| format!("{r} {n}"))
            .collect();
        let mut s = format!(
            "{} evaluations ({} failed) every {} from {} to {}: {} firing episodes",
            self.evaluations,
            self.failed_evaluations,
            format_duration(Duration::from_millis(self.every_ms)),
            rfc3339(self.from),
            rfc3339(self.to),
            self.episodes.len(),
        );
        if still > 0 {
            s.push_str(&format!(" ({still} still firing at the end)"));
        }
        s.push_str(&format!(", {} notifications", self.notifications.len()));
        if !by.is_empty() {
            s.push_str(&format!(" ({})", by.join(", ")));
        }
        s.push_str(&format!(", {} deliveries", self.deliveries));
        if let Some(e) = &self.first_error {
            s.push_str(&format!("; first error: {e}"));
        }
        s
    }
}

/// One firing period of one instance.
#[derive(Debug, Clone, Serialize)]
pub struct Episode {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    /// When it started firing (or reported no data).
    #[serde(serialize_with = "time")]
    pub started_at: i64,
    /// When it resolved; `None`: still firing at the end of the range.
    #[serde(serialize_with = "maybe_time")]
    pub ended_at: Option<i64>,
    /// The highest value of each value column while firing.
    pub max_values: BTreeMap<String, f64>,
}

/// One notification that would have been sent.
#[derive(Debug, Clone, Serialize)]
pub struct Sent {
    #[serde(serialize_with = "time")]
    pub at: i64,
    pub receiver: String,
    pub title: String,
    pub status: &'static str,
    pub firing: usize,
    pub resolved: usize,
    pub channels: usize,
    pub escalation_step: Option<usize>,
}

/// One thing that happened at an evaluation.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    #[serde(serialize_with = "time")]
    pub at: i64,
    /// `pending`, `firing`, `nodata`, `resolved`, `inactive` (pending, then recovered
    /// before `FOR` elapsed), `flapping`, `settled`, `notification`, `error` or
    /// `recovered` (the query works again).
    pub kind: &'static str,
    pub fingerprint: Option<String>,
    pub labels: BTreeMap<String, String>,
    /// Values for state changes, receiver and title for notifications, the message for
    /// errors.
    pub detail: String,
}

fn time<S: serde::Serializer>(ns: &i64, s: S) -> std::result::Result<S::Ok, S::Error> {
    s.serialize_str(&rfc3339(*ns))
}

fn maybe_time<S: serde::Serializer>(
    ns: &Option<i64>,
    s: S,
) -> std::result::Result<S::Ok, S::Error> {
    match ns {
        Some(ns) => s.serialize_str(&rfc3339(*ns)),
        None => s.serialize_none(),
    }
}

/// A backtest in progress: the scratch state and what has been seen.
struct Run<'a> {
    alerting: &'a Alerting,
    rule: &'a AlertRuleDef,
    instances: BTreeMap<String, Instance>,
    pipeline: Pipeline,
    report: Report,
    open: BTreeMap<String, usize>,
    failing: bool,
}

/// A backtest's range as written: `from` and `to` as RFC 3339 or relative to now
/// (`now-7d`), `to` defaulting to now; `names` are how the caller spells the two (`FROM`
/// in SQL, `from` in JSON) for errors.
pub fn range(now: i64, from: &str, to: Option<&str>, names: (&str, &str)) -> Result<(i64, i64)> {
    let time = |name: &str, s: &str| {
        parse_time(s, now).map_err(|e| Error::Invalid(format!("{name}: {e}")))
    };
    Ok((
        time(names.0, from)?,
        to.map_or(Ok(now), |t| time(names.1, t))?,
    ))
}

impl Alerting {
    /// Backtests `rule` (stored or not) over `[from, to]` at `every` (default: the rule's
    /// interval).
    pub async fn backtest(
        &self,
        rule: &AlertRuleDef,
        from: i64,
        to: i64,
        every: Option<Duration>,
    ) -> Result<Report> {
        let started = Instant::now();
        crate::check_rule_shape(rule).map_err(Error::Invalid)?;
        if to <= from {
            return Err(Error::Invalid(format!(
                "backtest: the end ({}) must be after the start ({})",
                rfc3339(to),
                rfc3339(from)
            )));
        }
        let every_ns = every.map_or(
            i64::try_from(rule.every_ms)
                .unwrap_or(i64::MAX / 1_000_000)
                .saturating_mul(1_000_000),
            ns_of,
        );
        if every_ns < ns_of(crate::MIN_EVERY) {
            return Err(Error::Invalid(format!(
                "backtest: EVERY must be at least {} ms",
                crate::MIN_EVERY.as_millis()
            )));
        }
        let count = to
            .checked_sub(from)
            .and_then(|span| u64::try_from(span / every_ns).ok())
            .map_or(u64::MAX, |n| n.saturating_add(1));
        if count > MAX_EVALUATIONS {
            return Err(Error::Invalid(format!(
                "backtest: {count} evaluations from {} to {} every {} ms is more than the \
                 limit of {MAX_EVALUATIONS}; shorten the range or evaluate less often (EVERY)",
                rfc3339(from),
                rfc3339(to),
                every_ns / 1_000_000
            )));
        }
        if let Err(e) = self.query.check(&rule.database, &rule_sql(rule)).await {
            return Err(Error::Invalid(format!("alert `{}`: {e}", rule.name)));
        }
        let mut run = Run {
            alerting: self,
            rule,
            instances: BTreeMap::new(),
            pipeline: Pipeline::default(),
            report: Report {
                rule: rule.name.clone(),
                database: rule.database.clone(),
                from,
                to,
                every_ms: u64::try_from(every_ns / 1_000_000).unwrap_or(0),
                evaluations: 0,
                failed_evaluations: 0,
                first_error: None,
                episodes: Vec::new(),
                notifications: Vec::new(),
                notifications_by_receiver: BTreeMap::new(),
                deliveries: 0,
                events: Vec::new(),
                events_truncated: false,
                took_ms: 0,
            },
            open: BTreeMap::new(),
            failing: false,
        };
        let sql = rule_sql(rule);
        let moments = (0..count).map(|i| from + i64::try_from(i).unwrap_or(0) * every_ns);
        let mut results = futures::stream::iter(moments)
            .map(|at| {
                let sql = &sql;
                async move {
                    let result = self
                        .query
                        .run_at(&rule.database, sql, at)
                        .await
                        .and_then(|b| rows::rows(&b));
                    (at, result)
                }
            })
            .buffered(PARALLEL_QUERIES);
        while let Some((at, result)) = results.next().await {
            run.pipeline_until(at);
            run.evaluate(at, result);
        }
        run.pipeline_until(to.saturating_add(1));
        let mut report = run.report;
        report.took_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(report)
    }
}

impl Run<'_> {
    fn event(&mut self, at: i64, kind: &'static str, inst: Option<&Instance>, detail: String) {
        if self.report.events.len() >= MAX_EVENTS {
            self.report.events_truncated = true;
            return;
        }
        self.report.events.push(Event {
            at,
            kind,
            fingerprint: inst.map(|i| i.fingerprint.clone()),
            labels: inst.map(|i| i.labels.clone()).unwrap_or_default(),
            detail,
        });
    }

    /// One evaluation at `at`: states advance, changes become events and alerts.
    fn evaluate(&mut self, at: i64, result: std::result::Result<Vec<rows::Row>, String>) {
        self.report.evaluations += 1;
        let rows = match result {
            Ok(rows) => rows,
            Err(e) => {
                self.report.failed_evaluations += 1;
                if self.report.first_error.is_none() {
                    self.report.first_error = Some(e.clone());
                }
                if !self.failing {
                    self.failing = true;
                    self.event(at, "error", None, e);
                }
                return;
            }
        };
        if self.failing {
            self.failing = false;
            self.event(at, "recovered", None, String::new());
        }
        let before = self.instances.clone();
        state::advance(
            self.rule,
            &mut self.instances,
            &rows,
            at,
            self.alerting.setup.flapping,
        );
        // Pending instances that recovered before firing are forgotten by the state
        // machine: say so.
        for (fp, was) in &before {
            if was.state == State::Pending && !self.instances.contains_key(fp) {
                self.event(at, "inactive", Some(was), String::new());
            }
        }
        let now: Vec<Instance> = self.instances.values().cloned().collect();
        for inst in &now {
            let (was, was_flapping) = before
                .get(&inst.fingerprint)
                .map_or((State::Resolved, false), |i| (i.state, i.flapping));
            if inst.state != was {
                let kind = if was == State::Pending && inst.state == State::Resolved {
                    "inactive"
                } else {
                    inst.state.name()
                };
                let values = serde_json::to_string(&inst.values).unwrap_or_default();
                self.event(at, kind, Some(inst), values);
                self.track_episode(at, inst, was);
            }
            if inst.flapping != was_flapping {
                let kind = if inst.flapping { "flapping" } else { "settled" };
                self.event(at, kind, Some(inst), String::new());
            }
            if let Some(&i) = self.open.get(&inst.fingerprint) {
                let episode = &mut self.report.episodes[i];
                for (k, v) in &inst.values {
                    let m = episode.max_values.entry(k.clone()).or_insert(*v);
                    *m = m.max(*v);
                }
            }
        }
        for inst in &now {
            if let Some(alert) = self.alerting.to_alert(self.rule, inst) {
                self.alerting
                    .with_setup(|setup| self.pipeline.upsert(setup, alert, at));
            }
        }
        self.flush(at);
    }

    fn track_episode(&mut self, at: i64, inst: &Instance, was: State) {
        if inst.state.notifies_firing() && !was.notifies_firing() {
            self.open
                .insert(inst.fingerprint.clone(), self.report.episodes.len());
            self.report.episodes.push(Episode {
                fingerprint: inst.fingerprint.clone(),
                labels: inst.labels.clone(),
                started_at: at,
                ended_at: None,
                max_values: inst.values.clone(),
            });
        } else if !inst.state.notifies_firing()
            && let Some(i) = self.open.remove(&inst.fingerprint)
        {
            self.report.episodes[i].ended_at = Some(at);
        }
    }

    /// Runs the pipeline's own timers (group waits and intervals, escalation steps) that
    /// fall before `until`.
    fn pipeline_until(&mut self, until: i64) {
        while let Some(due) = self.pipeline.next_due(&self.alerting.setup.policies)
            && due < until
        {
            self.flush(due);
        }
    }

    /// Flushes the scratch pipeline at `at` and takes what it would have sent.
    fn flush(&mut self, at: i64) {
        self.alerting
            .with_setup(|setup| self.pipeline.flush(setup, at));
        let outbox = std::mem::take(&mut self.pipeline.outbox);
        self.pipeline.log.clear();
        // Deliveries in id order: one notification fans out to each channel of its
        // receiver; the same channel again for the same group is another notification
        // (an escalation step and a regular flush in one round).
        type Key = (String, String, Option<usize>);
        let mut open: BTreeMap<Key, (Sent, Vec<(channels::Kind, usize)>)> = BTreeMap::new();
        let mut sent = Vec::new();
        for d in outbox.into_values() {
            self.report.deliveries += 1;
            let n = &d.notification;
            let key = (n.receiver.clone(), n.group_key.clone(), n.escalation_step);
            let channel = (d.channel.kind, d.channel.index);
            if let Some((s, seen)) = open.get_mut(&key) {
                if !seen.contains(&channel) {
                    seen.push(channel);
                    s.channels += 1;
                    s.resolved = s.resolved.max(n.resolved());
                    continue;
                }
                if let Some((s, _)) = open.remove(&key) {
                    sent.push(s);
                }
            }
            let s = Sent {
                at,
                receiver: n.receiver.clone(),
                title: n.title(),
                status: n.status.name(),
                firing: n.firing(),
                resolved: n.resolved(),
                channels: 1,
                escalation_step: n.escalation_step,
            };
            open.insert(key, (s, vec![channel]));
        }
        sent.extend(open.into_values().map(|(s, _)| s));
        sent.sort_by_key(|s| s.receiver.clone());
        for s in sent {
            *self
                .report
                .notifications_by_receiver
                .entry(s.receiver.clone())
                .or_default() += 1;
            self.event(
                at,
                "notification",
                None,
                format!("{}: {}", s.receiver, s.title),
            );
            self.report.notifications.push(s);
        }
    }
}
