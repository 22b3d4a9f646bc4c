//! The routing tree (Alertmanager semantics): an alert walks down from the root; at each
//! node the first matching child takes it (and later siblings too when that child has
//! `continue`); a node none of whose children match keeps the alert itself. Children
//! inherit their parent's receiver and grouping settings.

use std::collections::BTreeMap;

use strata_catalog::units::parse_duration;

use crate::config::RouteConfig;
use crate::matcher::{Matcher, all_match, parse_all};

/// Which labels split alerts into groups.
#[derive(Debug, Clone, PartialEq)]
pub enum GroupBy {
    Labels(Vec<String>),
    /// `group_by = ["..."]`: every label, so each alert is its own group.
    All,
}

#[derive(Debug, Clone)]
pub struct Route {
    /// Position in the tree, e.g. `0.1`, part of group keys.
    pub id: String,
    pub receiver: String,
    pub matchers: Vec<Matcher>,
    pub group_by: GroupBy,
    pub group_wait_ns: i64,
    pub group_interval_ns: i64,
    pub repeat_interval_ns: i64,
    pub continue_: bool,
    pub children: Vec<Route>,
}

fn ns(key: &str, s: &Option<String>, inherited: i64) -> Result<i64, String> {
    match s {
        None => Ok(inherited),
        Some(s) => parse_duration(s)
            .map(|d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
            .map_err(|e| format!("route {key}: {e}")),
    }
}

impl Route {
    /// Compiles the tree; without a config, everything goes to `default_receiver`.
    pub fn compile(config: Option<&RouteConfig>, default_receiver: &str) -> Result<Self, String> {
        let root = Self {
            id: "0".into(),
            receiver: default_receiver.to_string(),
            matchers: Vec::new(),
            group_by: GroupBy::Labels(Vec::new()),
            group_wait_ns: 30_000_000_000,
            group_interval_ns: 300_000_000_000,
            repeat_interval_ns: 4 * 3600 * 1_000_000_000,
            continue_: false,
            children: Vec::new(),
        };
        match config {
            None => Ok(root),
            Some(c) => Self::build(c, &root, "0".into()),
        }
    }

    fn build(c: &RouteConfig, parent: &Route, id: String) -> Result<Self, String> {
        let group_by = match &c.group_by {
            None => parent.group_by.clone(),
            Some(g) if g.iter().any(|l| l == "...") => GroupBy::All,
            Some(g) => GroupBy::Labels(g.clone()),
        };
        let mut route = Self {
            receiver: c
                .receiver
                .clone()
                .unwrap_or_else(|| parent.receiver.clone()),
            matchers: parse_all(&c.matchers).map_err(|e| format!("route {id}: {e}"))?,
            group_by,
            group_wait_ns: ns("group_wait", &c.group_wait, parent.group_wait_ns)?,
            group_interval_ns: ns(
                "group_interval",
                &c.group_interval,
                parent.group_interval_ns,
            )?,
            repeat_interval_ns: ns(
                "repeat_interval",
                &c.repeat_interval,
                parent.repeat_interval_ns,
            )?,
            continue_: c.continue_,
            children: Vec::new(),
            id: id.clone(),
        };
        if route.group_interval_ns <= 0 || route.repeat_interval_ns <= 0 {
            return Err(format!(
                "route {id}: group_interval and repeat_interval must be > 0"
            ));
        }
        for (i, child) in c.routes.iter().enumerate() {
            let built = Self::build(child, &route, format!("{id}.{i}"))?;
            route.children.push(built);
        }
        Ok(route)
    }

    /// Every route node that takes an alert with `labels`.
    pub fn matching(&self, labels: &BTreeMap<String, String>) -> Vec<&Route> {
        if !all_match(&self.matchers, labels) {
            return Vec::new();
        }
        let mut out = Vec::new();
        for child in &self.children {
            let found = child.matching(labels);
            if !found.is_empty() {
                out.extend(found);
                if !child.continue_ {
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(self);
        }
        out
    }

    /// Every receiver name the tree refers to.
    pub fn receivers(&self) -> Vec<&str> {
        let mut out = vec![self.receiver.as_str()];
        for c in &self.children {
            out.extend(c.receivers());
        }
        out
    }

    /// The group labels of an alert on this route.
    pub fn group_labels(&self, labels: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        match &self.group_by {
            GroupBy::All => labels.clone(),
            GroupBy::Labels(names) => names
                .iter()
                .filter_map(|n| labels.get(n).map(|v| (n.clone(), v.clone())))
                .collect(),
        }
    }

    /// Finds a node by id.
    pub fn find(&self, id: &str) -> Option<&Route> {
        if self.id == id {
            return Some(self);
        }
        self.children.iter().find_map(|c| c.find(id))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn first_match_continue_and_inheritance() {
        let config: RouteConfig = toml::from_str(
            r#"
            receiver = "default"
            group_by = ["alertname"]
            group_wait = "10s"
            [[routes]]
            matchers = ["severity = page"]
            receiver = "pager"
            continue = true
            [[routes]]
            matchers = ["team =~ infra|db"]
            receiver = "infra"
            group_by = ["..."]
            [[routes]]
            matchers = ["team = infra"]
            receiver = "never"
            "#,
        )
        .expect("toml");
        let root = Route::compile(Some(&config), "x").expect("compile");
        let r = |l: &[(&str, &str)]| -> Vec<String> {
            root.matching(&labels(l))
                .iter()
                .map(|r| r.receiver.clone())
                .collect()
        };
        assert_eq!(
            r(&[("severity", "page"), ("team", "infra")]),
            ["pager", "infra"]
        );
        assert_eq!(r(&[("team", "infra")]), ["infra"]);
        assert_eq!(r(&[("team", "web")]), ["default"]);
        let pager = root.find("0.0").expect("child");
        assert_eq!(pager.group_wait_ns, 10_000_000_000);
        assert_eq!(pager.group_by, GroupBy::Labels(vec!["alertname".into()]));
        assert_eq!(root.find("0.1").expect("child").group_by, GroupBy::All);
    }
}
