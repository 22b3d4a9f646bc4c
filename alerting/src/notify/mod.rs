//! The notification pipeline (Alertmanager semantics): alerts are routed to groups; a
//! group is notified `group_wait` after it appears, then every `group_interval` when its
//! set of firing or resolved alerts changed, and every `repeat_interval` while it keeps
//! firing. Silenced and inhibited alerts are left out. Groups routed to an escalation
//! policy walk its steps until someone acknowledges. Every notification becomes one
//! delivery per channel in an outbox that is retried with backoff until it succeeds (or
//! gives up after a day) and survives restarts, so delivery is at-least-once.
//!
//! Everything here is plain state and pure functions of `now`; the caller ([`crate::Alerting`])
//! owns the lock, the clock, persistence and the network.

pub mod channels;
pub mod route;

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::matcher::{Matcher, all_match};
use route::Route;

/// The status of an alert as receivers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Firing,
    Resolved,
}

impl Status {
    pub fn name(self) -> &'static str {
        match self {
            Self::Firing => "firing",
            Self::Resolved => "resolved",
        }
    }
}

/// One alert in the pipeline (from a rule, or posted through the Alertmanager API).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Alert {
    pub fingerprint: String,
    pub status: Status,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    /// ns since the epoch.
    pub starts_at: i64,
    pub ends_at: Option<i64>,
    pub generator_url: String,
    /// The rule that made it, or `None` for alerts posted through the API.
    pub rule: Option<String>,
    /// For posted alerts without an end: resolved automatically at this time.
    pub expires_at: Option<i64>,
}

/// One notification: a group's alerts at a moment, for one receiver.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Notification {
    pub receiver: String,
    pub group_key: String,
    pub group_labels: BTreeMap<String, String>,
    pub status: Status,
    pub alerts: Vec<Alert>,
    pub external_url: String,
    /// The escalation step this notification belongs to, if the route escalates.
    pub escalation_step: Option<usize>,
}

impl Notification {
    pub fn firing(&self) -> usize {
        self.alerts
            .iter()
            .filter(|a| a.status == Status::Firing)
            .count()
    }

    pub fn resolved(&self) -> usize {
        self.alerts.len() - self.firing()
    }

    /// Labels every alert shares.
    pub fn common_labels(&self) -> BTreeMap<String, String> {
        common(self.alerts.iter().map(|a| &a.labels))
    }

    pub fn common_annotations(&self) -> BTreeMap<String, String> {
        common(self.alerts.iter().map(|a| &a.annotations))
    }

    /// `[FIRING:2] high_cpu (host=a)`, the subject line of every channel.
    pub fn title(&self) -> String {
        let mut s = match self.status {
            Status::Firing => format!("[FIRING:{}]", self.firing()),
            Status::Resolved => "[RESOLVED]".to_string(),
        };
        let common = self.common_labels();
        if let Some(name) = common
            .get("alertname")
            .or_else(|| self.group_labels.get("alertname"))
        {
            s.push(' ');
            s.push_str(name);
        }
        let rest: Vec<String> = self
            .group_labels
            .iter()
            .filter(|(k, _)| k.as_str() != "alertname")
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        if !rest.is_empty() {
            s.push_str(&format!(" ({})", rest.join(" ")));
        }
        s
    }

    /// The link that acknowledges an alert of this notification.
    pub fn ack_url(&self, fingerprint: &str) -> String {
        format!(
            "{}/api/v1/alerts/{fingerprint}/ack",
            self.external_url.trim_end_matches('/')
        )
    }
}

fn common<'a>(
    mut maps: impl Iterator<Item = &'a BTreeMap<String, String>>,
) -> BTreeMap<String, String> {
    let Some(first) = maps.next() else {
        return BTreeMap::new();
    };
    let mut out = first.clone();
    for m in maps {
        out.retain(|k, v| m.get(k) == Some(v));
    }
    out
}

/// A group's notification history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Group {
    pub key: String,
    pub route: String,
    pub receiver: String,
    pub labels: BTreeMap<String, String>,
    pub alerts: BTreeSet<String>,
    pub next_flush: i64,
    /// When it was last notified and which alerts were firing then.
    pub notified_at: Option<i64>,
    pub notified_firing: BTreeSet<String>,
    pub escalation: Option<Escalation>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Escalation {
    pub started_at: i64,
    /// The last step notified.
    pub step: usize,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
}

/// A notification to one channel of one receiver, until it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    pub id: u64,
    pub channel: ChannelRef,
    pub notification: Notification,
    pub created_at: i64,
    pub attempts: u32,
    pub next_attempt: i64,
    pub last_error: Option<String>,
}

/// Which channel of which receiver.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChannelRef {
    pub receiver: String,
    pub kind: channels::Kind,
    pub index: usize,
}

impl ChannelRef {
    pub fn name(&self) -> String {
        format!("{}/{}[{}]", self.receiver, self.kind.name(), self.index)
    }
}

/// The delivery log entry of one delivery (`system.notifications`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogEntry {
    pub id: u64,
    pub receiver: String,
    pub channel: String,
    pub group_key: String,
    pub title: String,
    pub status: DeliveryStatus,
    pub firing: usize,
    pub resolved: usize,
    pub attempts: u32,
    pub created_at: i64,
    pub finished_at: Option<i64>,
    pub last_error: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryStatus {
    Pending,
    Retrying,
    Sent,
    Failed,
}

impl DeliveryStatus {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Retrying => "retrying",
            Self::Sent => "sent",
            Self::Failed => "failed",
        }
    }
}

/// An inhibition rule: a firing source alert mutes matching targets that share the
/// `equal` labels.
#[derive(Debug, Clone)]
pub struct Inhibit {
    pub source: Vec<Matcher>,
    pub target: Vec<Matcher>,
    pub equal: Vec<String>,
}

/// An escalation policy: steps notified in order until acknowledged.
#[derive(Debug, Clone)]
pub struct EscalationPolicy {
    pub name: String,
    pub steps: Vec<(Vec<String>, i64)>,
}

/// The receivers that hear about a group: itself, or the reached steps of its policy.
fn targets<'a>(
    receiver: &'a str,
    policies: &'a BTreeMap<String, EscalationPolicy>,
    reached: usize,
) -> Vec<(&'a str, Option<usize>)> {
    match policies.get(receiver) {
        None => vec![(receiver, None)],
        Some(p) => p
            .steps
            .iter()
            .enumerate()
            .take(reached + 1)
            .flat_map(|(i, (rs, _))| rs.iter().map(move |r| (r.as_str(), Some(i))))
            .collect(),
    }
}

/// Give up on a delivery after this long (ns).
pub const DELIVERY_MAX_AGE_NS: i64 = 24 * 3600 * 1_000_000_000;
/// Kept delivery log entries.
pub const LOG_CAPACITY: usize = 10_000;

/// Retry delay after `attempts` failures: 1 s doubling up to 5 minutes.
pub fn backoff_ns(attempts: u32) -> i64 {
    let secs = 1i64 << attempts.saturating_sub(1).min(9);
    secs.min(300) * 1_000_000_000
}

/// The pipeline's state, persisted as a whole.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Pipeline {
    pub alerts: BTreeMap<String, Alert>,
    pub groups: BTreeMap<String, Group>,
    pub outbox: BTreeMap<u64, Delivery>,
    pub log: BTreeMap<u64, LogEntry>,
    pub next_id: u64,
}

/// The channels of a receiver: kind, index among that kind, `send_resolved`.
pub type ChannelList = Vec<(channels::Kind, usize, bool)>;

/// What the pipeline needs to know about the configuration.
pub struct Setup<'a> {
    pub route: &'a Route,
    pub policies: &'a BTreeMap<String, EscalationPolicy>,
    pub inhibits: &'a [Inhibit],
    /// The channels of each receiver, for fanning a notification out.
    pub channels: &'a dyn Fn(&str) -> ChannelList,
    pub silenced: &'a dyn Fn(&BTreeMap<String, String>, i64) -> bool,
    pub external_url: &'a str,
}

impl Pipeline {
    /// Adds or updates an alert and puts it in the groups its labels route to.
    pub fn upsert(&mut self, setup: &Setup<'_>, alert: Alert, now: i64) {
        let changed = self.alerts.get(&alert.fingerprint) != Some(&alert);
        if !changed {
            return;
        }
        for route in setup.route.matching(&alert.labels) {
            let labels = route.group_labels(&alert.labels);
            let key = format!(
                "{}:{{{}}}",
                route.id,
                labels
                    .iter()
                    .map(|(k, v)| format!("{k}={v:?}"))
                    .collect::<Vec<_>>()
                    .join(",")
            );
            let group = self.groups.entry(key.clone()).or_insert_with(|| Group {
                key,
                route: route.id.clone(),
                receiver: route.receiver.clone(),
                labels,
                alerts: BTreeSet::new(),
                next_flush: now + route.group_wait_ns,
                notified_at: None,
                notified_firing: BTreeSet::new(),
                escalation: None,
            });
            group.alerts.insert(alert.fingerprint.clone());
        }
        self.alerts.insert(alert.fingerprint.clone(), alert);
    }

    /// Whether an alert is muted now: silenced, or inhibited by another firing alert.
    pub fn muted(&self, setup: &Setup<'_>, alert: &Alert, now: i64) -> Mute {
        if (setup.silenced)(&alert.labels, now) {
            return Mute::Silenced;
        }
        for rule in setup.inhibits {
            if !all_match(&rule.target, &alert.labels) {
                continue;
            }
            let inhibited = self.alerts.values().any(|src| {
                src.fingerprint != alert.fingerprint
                    && src.status == Status::Firing
                    && all_match(&rule.source, &src.labels)
                    && rule
                        .equal
                        .iter()
                        .all(|l| src.labels.get(l) == alert.labels.get(l))
            });
            if inhibited {
                return Mute::Inhibited;
            }
        }
        Mute::No
    }

    /// Expires posted alerts whose time is up, flushes due groups and walks escalations;
    /// new deliveries go to the outbox.
    pub fn flush(&mut self, setup: &Setup<'_>, now: i64) {
        for a in self.alerts.values_mut() {
            if a.status == Status::Firing && a.expires_at.is_some_and(|t| t <= now) {
                a.status = Status::Resolved;
                a.ends_at = a.expires_at;
            }
        }
        let keys: Vec<String> = self.groups.keys().cloned().collect();
        for key in keys {
            self.flush_group(setup, &key, now);
        }
        // Alerts no group holds any more (resolved and notified) are forgotten.
        let held: BTreeSet<&String> = self.groups.values().flat_map(|g| &g.alerts).collect();
        let unheld: Vec<String> = self
            .alerts
            .keys()
            .filter(|fp| !held.contains(fp))
            .cloned()
            .collect();
        for fp in unheld {
            if self
                .alerts
                .get(&fp)
                .is_some_and(|a| a.status == Status::Resolved)
            {
                self.alerts.remove(&fp);
            }
        }
    }

    fn flush_group(&mut self, setup: &Setup<'_>, key: &str, now: i64) {
        let Some(group) = self.groups.get(key) else {
            return;
        };
        let Some(route) = setup.route.find(&group.route) else {
            // The route no longer exists (configuration changed): drop the group.
            self.groups.remove(key);
            return;
        };
        let mut firing = BTreeSet::new();
        let mut resolved = BTreeSet::new();
        for fp in &group.alerts {
            let Some(a) = self.alerts.get(fp) else {
                continue;
            };
            match a.status {
                Status::Firing => {
                    if self.muted(setup, a, now) == Mute::No {
                        firing.insert(fp.clone());
                    }
                }
                Status::Resolved => {
                    if group.notified_firing.contains(fp) {
                        resolved.insert(fp.clone());
                    }
                }
            }
        }
        let policy = setup.policies.get(&group.receiver);
        // Escalation: a later step is due when its delay has passed unacknowledged.
        let mut escalate_to = None;
        if let (Some(p), Some(e)) = (policy, &group.escalation)
            && e.acknowledged_at.is_none()
            && !group.notified_firing.is_empty()
            && let Some((step, _)) = p
                .steps
                .iter()
                .enumerate()
                .skip(e.step + 1)
                .take_while(|(_, (_, after))| now - e.started_at >= *after)
                .last()
        {
            escalate_to = Some(step);
        }
        let due = now >= group.next_flush;
        let changed = firing != group.notified_firing || !resolved.is_empty();
        let repeat = group
            .notified_at
            .is_some_and(|t| now - t >= route.repeat_interval_ns)
            && !firing.is_empty();
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        if let Some(step) = escalate_to {
            // Only the newly reached steps hear about it now.
            let from = group.escalation.as_ref().map_or(0, |e| e.step + 1);
            if let Some(e) = group.escalation.as_mut() {
                e.step = step;
            }
            let snapshot = group.clone();
            let alerts = self.group_alerts(&snapshot.notified_firing, &BTreeSet::new());
            if let Some(p) = policy {
                for (i, (receivers, _)) in p.steps.iter().enumerate().take(step + 1).skip(from) {
                    for r in receivers {
                        self.enqueue(setup, &snapshot, r, Some(i), alerts.clone(), now);
                    }
                }
            }
        }
        if !due {
            return;
        }
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        group.next_flush = now + route.group_interval_ns;
        if changed || repeat {
            if policy.is_some() {
                if firing.is_empty() {
                    // Fully resolved: the next firing starts the policy over.
                } else if group.escalation.is_none() {
                    group.escalation = Some(Escalation {
                        started_at: now,
                        step: 0,
                        acknowledged_by: None,
                        acknowledged_at: None,
                    });
                }
            }
            let reached = group.escalation.as_ref().map_or(0, |e| e.step);
            group.notified_at = Some(now);
            group.notified_firing = firing.clone();
            if firing.is_empty() {
                group.escalation = None;
            }
            let snapshot = group.clone();
            let alerts = self.group_alerts(&firing, &resolved);
            if !alerts.is_empty() {
                for (receiver, step) in targets(&snapshot.receiver, setup.policies, reached) {
                    self.enqueue(setup, &snapshot, receiver, step, alerts.clone(), now);
                }
            }
        }
        // Resolved alerts leave the group once notified; an empty group is done.
        let Some(group) = self.groups.get_mut(key) else {
            return;
        };
        let alerts = &self.alerts;
        group
            .alerts
            .retain(|fp| alerts.get(fp).is_some_and(|a| a.status == Status::Firing));
        if group.alerts.is_empty() {
            self.groups.remove(key);
        }
    }

    fn group_alerts(&self, firing: &BTreeSet<String>, resolved: &BTreeSet<String>) -> Vec<Alert> {
        firing
            .iter()
            .chain(resolved)
            .filter_map(|fp| self.alerts.get(fp).cloned())
            .collect()
    }

    fn enqueue(
        &mut self,
        setup: &Setup<'_>,
        group: &Group,
        receiver: &str,
        step: Option<usize>,
        alerts: Vec<Alert>,
        now: i64,
    ) {
        let status = if alerts.iter().any(|a| a.status == Status::Firing) {
            Status::Firing
        } else {
            Status::Resolved
        };
        let notification = Notification {
            receiver: receiver.to_string(),
            group_key: group.key.clone(),
            group_labels: group.labels.clone(),
            status,
            alerts,
            external_url: setup.external_url.to_string(),
            escalation_step: step,
        };
        for (kind, index, send_resolved) in (setup.channels)(receiver) {
            if status == Status::Resolved && !send_resolved {
                continue;
            }
            let mut n = notification.clone();
            if !send_resolved {
                n.alerts.retain(|a| a.status == Status::Firing);
            }
            let id = self.next_id;
            self.next_id += 1;
            let channel = ChannelRef {
                receiver: receiver.to_string(),
                kind,
                index,
            };
            self.log.insert(
                id,
                LogEntry {
                    id,
                    receiver: receiver.to_string(),
                    channel: channel.name(),
                    group_key: group.key.clone(),
                    title: n.title(),
                    status: DeliveryStatus::Pending,
                    firing: n.firing(),
                    resolved: n.resolved(),
                    attempts: 0,
                    created_at: now,
                    finished_at: None,
                    last_error: None,
                },
            );
            while self.log.len() > LOG_CAPACITY {
                self.log.pop_first();
            }
            self.outbox.insert(
                id,
                Delivery {
                    id,
                    channel,
                    notification: n,
                    created_at: now,
                    attempts: 0,
                    next_attempt: now,
                    last_error: None,
                },
            );
        }
    }

    /// Deliveries whose attempt is due.
    pub fn due(&self, now: i64) -> Vec<Delivery> {
        self.outbox
            .values()
            .filter(|d| d.next_attempt <= now)
            .cloned()
            .collect()
    }

    /// Records the outcome of one attempt.
    pub fn record(&mut self, id: u64, result: Result<(), String>, now: i64) {
        let Some(d) = self.outbox.get_mut(&id) else {
            return;
        };
        d.attempts += 1;
        let (status, done) = match &result {
            Ok(()) => (DeliveryStatus::Sent, true),
            Err(_) if now - d.created_at >= DELIVERY_MAX_AGE_NS => (DeliveryStatus::Failed, true),
            Err(_) => (DeliveryStatus::Retrying, false),
        };
        if let Err(e) = &result {
            d.last_error = Some(e.clone());
            d.next_attempt = now + backoff_ns(d.attempts);
        }
        if let Some(entry) = self.log.get_mut(&id) {
            entry.status = status;
            entry.attempts = d.attempts;
            entry.last_error = d.last_error.clone();
            if done {
                entry.finished_at = Some(now);
            }
        }
        let channel = d.channel.kind.name();
        metrics::counter!("strata_notifications_total", "channel" => channel, "outcome" => status.name())
            .increment(1);
        if done {
            self.outbox.remove(&id);
        }
    }

    /// Acknowledges the groups holding alert `fingerprint` (or the group `key`): their
    /// escalation stops. Returns how many groups were acknowledged.
    pub fn acknowledge(&mut self, fingerprint_or_key: &str, by: &str, now: i64) -> usize {
        let mut n = 0;
        for g in self.groups.values_mut() {
            if g.key != fingerprint_or_key && !g.alerts.contains(fingerprint_or_key) {
                continue;
            }
            let e = g.escalation.get_or_insert(Escalation {
                started_at: now,
                step: 0,
                acknowledged_by: None,
                acknowledged_at: None,
            });
            if e.acknowledged_at.is_none() {
                e.acknowledged_at = Some(now);
                e.acknowledged_by = Some(by.to_string());
            }
            n += 1;
        }
        n
    }

    /// The earliest time something is due: a group flush, an escalation step or a retry.
    pub fn next_due(&self, policies: &BTreeMap<String, EscalationPolicy>) -> Option<i64> {
        let flush = self.groups.values().map(|g| g.next_flush);
        let steps = self.groups.values().filter_map(|g| {
            let e = g.escalation.as_ref()?;
            if e.acknowledged_at.is_some() {
                return None;
            }
            let (_, after) = policies.get(&g.receiver)?.steps.get(e.step + 1)?;
            Some(e.started_at + after)
        });
        let retries = self.outbox.values().map(|d| d.next_attempt);
        flush.chain(steps).chain(retries).min()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mute {
    No,
    Silenced,
    Inhibited,
}

impl Mute {
    pub fn name(self) -> Option<&'static str> {
        match self {
            Self::No => None,
            Self::Silenced => Some("silenced"),
            Self::Inhibited => Some("inhibited"),
        }
    }
}
