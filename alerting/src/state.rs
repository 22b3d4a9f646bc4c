//! The alert state machine of one rule's instances, as pure functions of (previous
//! instances, this evaluation's rows, now). No I/O and no clock here: the evaluator
//! passes the time in, so every transition is testable in microseconds.
//!
//! ```text
//! (absent) ─active─▶ pending ─FOR elapsed─▶ firing ─inactive for KEEP FIRING FOR─▶ resolved
//!     ▲                 │ inactive                     │ no data (ON NO DATA ALERT)
//!     └─────────────────┘                              ▼
//!                                                   nodata ─data again─▶ firing / resolved
//! ```
//! An instance whose firing/resolved state changes more than `threshold` times within
//! `window` is *flapping*: its notifications are held back until it has settled (at most
//! half as many changes within the window), then its current state is notified.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use strata_catalog::alerts::{AlertRuleDef, NoData};

use crate::rows::{Row, fingerprint, render};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Firing,
    NoData,
    Resolved,
}

impl State {
    pub fn name(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Firing => "firing",
            Self::NoData => "nodata",
            Self::Resolved => "resolved",
        }
    }

    /// Whether receivers are told it is firing.
    pub fn notifies_firing(self) -> bool {
        matches!(self, Self::Firing | Self::NoData)
    }
}

/// One alert instance of a rule.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Instance {
    pub fingerprint: String,
    pub labels: BTreeMap<String, String>,
    pub values: BTreeMap<String, f64>,
    pub annotations: BTreeMap<String, String>,
    pub state: State,
    /// When it last became pending (ns).
    pub active_at: i64,
    pub fired_at: Option<i64>,
    pub resolved_at: Option<i64>,
    /// The last evaluation that saw it active.
    pub last_active: i64,
    /// Times of firing/resolved changes within the flapping window.
    pub changes: Vec<i64>,
    pub flapping: bool,
}

/// Flapping detection settings.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Flapping {
    pub window_ns: i64,
    /// More changes than this within the window is flapping (0 turns detection off).
    pub threshold: usize,
}

impl Default for Flapping {
    fn default() -> Self {
        Self {
            window_ns: 10 * 60 * 1_000_000_000,
            threshold: 4,
        }
    }
}

/// How long resolved instances stay listed (and available to late group flushes).
pub const RESOLVED_RETENTION_NS: i64 = 15 * 60 * 1_000_000_000;

const MS: i64 = 1_000_000;

/// The labels of an instance: the row's, then the rule's (which win), then `alertname`.
pub fn instance_labels(
    rule: &AlertRuleDef,
    row: &BTreeMap<String, String>,
) -> BTreeMap<String, String> {
    let mut labels = row.clone();
    labels.extend(rule.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
    labels.insert("alertname".into(), rule.name.clone());
    labels
}

/// Advances `instances` by one evaluation at `now` that returned `rows`.
pub fn advance(
    rule: &AlertRuleDef,
    instances: &mut BTreeMap<String, Instance>,
    rows: &[Row],
    now: i64,
    flapping: Flapping,
) {
    let for_ns = i64::try_from(rule.for_ms)
        .unwrap_or(i64::MAX / MS)
        .saturating_mul(MS);
    let keep_ns = i64::try_from(rule.keep_firing_for_ms)
        .unwrap_or(i64::MAX / MS)
        .saturating_mul(MS);
    // A dead man's switch without a condition: rows mean alive.
    let deadman_only = rule.alert_on_empty && rule.condition.is_none();
    let mut seen = std::collections::BTreeSet::new();

    let mut observe = |labels: BTreeMap<String, String>, row: Option<&Row>, active: bool| {
        let fp = fingerprint(&labels);
        seen.insert(fp.clone());
        let inst = instances.entry(fp.clone()).or_insert_with(|| Instance {
            fingerprint: fp,
            labels: labels.clone(),
            values: BTreeMap::new(),
            annotations: BTreeMap::new(),
            state: State::Resolved,
            active_at: now,
            fired_at: None,
            resolved_at: None,
            last_active: now,
            changes: Vec::new(),
            flapping: false,
        });
        if let Some(row) = row {
            inst.values = row.values.clone();
            inst.annotations = rule
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), render(t, &labels, &row.values, &row.text)))
                .collect();
        } else if inst.annotations.is_empty() {
            let (no_values, no_text) = (BTreeMap::new(), BTreeMap::new());
            inst.annotations = rule
                .annotations
                .iter()
                .map(|(k, t)| (k.clone(), render(t, &labels, &no_values, &no_text)))
                .collect();
        }
        if active {
            inst.last_active = now;
            match inst.state {
                State::Resolved => {
                    inst.state = State::Pending;
                    inst.active_at = now;
                    inst.resolved_at = None;
                    // A new episode: it has not fired (yet).
                    inst.fired_at = None;
                    if for_ns == 0 {
                        fire(inst, now);
                    }
                }
                State::Pending => {
                    if now.saturating_sub(inst.active_at) >= for_ns {
                        fire(inst, now);
                    }
                }
                State::NoData => inst.state = State::Firing,
                State::Firing => {}
            }
        } else {
            recover(inst, now, keep_ns);
        }
    };

    if deadman_only {
        observe(
            instance_labels(rule, &BTreeMap::new()),
            None,
            rows.is_empty(),
        );
    } else {
        for row in rows {
            observe(instance_labels(rule, &row.labels), Some(row), row.active);
        }
        if rule.alert_on_empty {
            observe(
                instance_labels(rule, &BTreeMap::new()),
                None,
                rows.is_empty(),
            );
        }
    }

    // Instances this evaluation did not return.
    for inst in instances
        .values_mut()
        .filter(|i| !seen.contains(&i.fingerprint))
    {
        if inst.state == State::Resolved {
            continue;
        }
        let policy = if rule.condition.is_some() {
            rule.no_data
        } else {
            NoData::Resolve
        };
        match policy {
            NoData::Resolve => recover(inst, now, keep_ns),
            NoData::Keep => {}
            NoData::Alert => match inst.state {
                State::Pending => {
                    inst.state = State::Resolved;
                    inst.resolved_at = Some(now);
                }
                State::Firing => inst.state = State::NoData,
                State::NoData | State::Resolved => {}
            },
        }
    }

    for inst in instances.values_mut() {
        track_flapping(inst, now, flapping);
    }
    // Forget what was resolved long ago, and pending instances that never fired.
    instances.retain(|_, i| {
        !(i.state == State::Resolved
            && (i.fired_at.is_none()
                || i.resolved_at
                    .is_some_and(|r| now.saturating_sub(r) > RESOLVED_RETENTION_NS)))
    });
}

fn fire(inst: &mut Instance, now: i64) {
    inst.state = State::Firing;
    inst.fired_at = Some(now);
    inst.changes.push(now);
}

fn recover(inst: &mut Instance, now: i64, keep_ns: i64) {
    match inst.state {
        State::Pending => {
            inst.state = State::Resolved;
            inst.resolved_at = Some(now);
        }
        State::Firing | State::NoData => {
            if now.saturating_sub(inst.last_active) >= keep_ns {
                inst.state = State::Resolved;
                inst.resolved_at = Some(now);
                inst.changes.push(now);
            }
        }
        State::Resolved => {}
    }
}

fn track_flapping(inst: &mut Instance, now: i64, f: Flapping) {
    inst.changes
        .retain(|t| now.saturating_sub(*t) < f.window_ns);
    if f.threshold == 0 {
        inst.flapping = false;
        return;
    }
    if !inst.flapping && inst.changes.len() > f.threshold {
        inst.flapping = true;
    } else if inst.flapping && inst.changes.len() <= f.threshold / 2 {
        inst.flapping = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: i64 = 1_000_000_000;

    fn rule() -> AlertRuleDef {
        AlertRuleDef {
            name: "high_cpu".into(),
            database: "metrics".into(),
            query: "SELECT 1".into(),
            condition: None,
            every_ms: 10_000,
            for_ms: 20_000,
            keep_firing_for_ms: 0,
            labels: [("severity".to_string(), "page".to_string())].into(),
            annotations: [(
                "summary".to_string(),
                "{{ host }} at {{ value }}".to_string(),
            )]
            .into(),
            no_data: NoData::Resolve,
            alert_on_empty: false,
            owner: Default::default(),
            created_at: 0,
        }
    }

    fn row(host: &str, value: f64, active: bool) -> Row {
        Row {
            labels: [("host".to_string(), host.to_string())].into(),
            values: [("value".to_string(), value)].into(),
            text: BTreeMap::new(),
            active,
        }
    }

    fn only(i: &BTreeMap<String, Instance>) -> &Instance {
        assert_eq!(i.len(), 1, "{i:?}");
        i.values().next().expect("one")
    }

    #[test]
    fn pending_then_firing_then_resolved() {
        let r = rule();
        let mut i = BTreeMap::new();
        let f = Flapping::default();
        advance(&r, &mut i, &[row("a", 95.0, true)], 0, f);
        assert_eq!(only(&i).state, State::Pending);
        assert_eq!(only(&i).annotations["summary"], "a at 95");
        assert_eq!(only(&i).labels["alertname"], "high_cpu");
        assert_eq!(only(&i).labels["severity"], "page");
        advance(&r, &mut i, &[row("a", 96.0, true)], 10 * S, f);
        assert_eq!(only(&i).state, State::Pending);
        advance(&r, &mut i, &[row("a", 97.0, true)], 20 * S, f);
        assert_eq!(only(&i).state, State::Firing);
        assert_eq!(only(&i).fired_at, Some(20 * S));
        advance(&r, &mut i, &[], 30 * S, f);
        assert_eq!(only(&i).state, State::Resolved);
        assert_eq!(only(&i).resolved_at, Some(30 * S));
        // Forgotten once the retention has passed.
        advance(&r, &mut i, &[], 30 * S + RESOLVED_RETENTION_NS + S, f);
        assert!(i.is_empty());
    }

    #[test]
    fn pending_that_recovers_never_fires() {
        let r = rule();
        let mut i = BTreeMap::new();
        advance(&r, &mut i, &[row("a", 95.0, true)], 0, Flapping::default());
        advance(&r, &mut i, &[], 10 * S, Flapping::default());
        assert!(i.is_empty(), "{i:?}");
    }

    #[test]
    fn keep_firing_for_holds_a_recovered_alert() {
        let mut r = rule();
        r.for_ms = 0;
        r.keep_firing_for_ms = 60_000;
        let mut i = BTreeMap::new();
        let f = Flapping::default();
        advance(&r, &mut i, &[row("a", 95.0, true)], 0, f);
        assert_eq!(only(&i).state, State::Firing);
        advance(&r, &mut i, &[], 30 * S, f);
        assert_eq!(only(&i).state, State::Firing);
        advance(&r, &mut i, &[], 60 * S, f);
        assert_eq!(only(&i).state, State::Resolved);
    }

    #[test]
    fn no_data_policies_with_a_condition() {
        let mut r = rule();
        r.for_ms = 0;
        r.condition = Some("value > 90".into());
        let f = Flapping::default();
        for (policy, expected) in [
            (NoData::Resolve, State::Resolved),
            (NoData::Keep, State::Firing),
            (NoData::Alert, State::NoData),
        ] {
            r.no_data = policy;
            let mut i = BTreeMap::new();
            advance(&r, &mut i, &[row("a", 95.0, true)], 0, f);
            advance(&r, &mut i, &[], 10 * S, f);
            assert_eq!(only(&i).state, expected, "{policy:?}");
            // A returned row whose condition is false recovers whatever the policy.
            advance(&r, &mut i, &[row("a", 10.0, false)], 20 * S, f);
            assert_eq!(only(&i).state, State::Resolved, "{policy:?}");
        }
    }

    #[test]
    fn dead_mans_switch_fires_on_an_empty_result() {
        let mut r = rule();
        r.for_ms = 0;
        r.alert_on_empty = true;
        let f = Flapping::default();
        let mut i = BTreeMap::new();
        advance(&r, &mut i, &[row("a", 1.0, true)], 0, f);
        assert!(i.is_empty(), "rows mean alive: {i:?}");
        advance(&r, &mut i, &[], 10 * S, f);
        assert_eq!(only(&i).state, State::Firing);
        assert_eq!(only(&i).labels.get("host"), None);
        advance(&r, &mut i, &[row("a", 1.0, true)], 20 * S, f);
        assert_eq!(only(&i).state, State::Resolved);
    }

    #[test]
    fn flapping_is_detected_and_settles() {
        let mut r = rule();
        r.for_ms = 0;
        let f = Flapping {
            window_ns: 100 * S,
            threshold: 4,
        };
        let mut i = BTreeMap::new();
        let mut t = 0;
        for k in 0..5 {
            advance(&r, &mut i, &[row("a", 95.0, true)], t, f);
            t += S;
            advance(&r, &mut i, &[], t, f);
            t += S;
            assert_eq!(only(&i).flapping, k >= 2, "round {k}");
        }
        // Quiet for a window: settled.
        advance(&r, &mut i, &[], t + 100 * S, f);
        assert!(!only(&i).flapping);
    }
}
