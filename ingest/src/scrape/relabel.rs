//! Prometheus-style relabelling: `replace`, `keep`, `drop`, `labelkeep`, `labeldrop`
//! and `labelmap`, applied to a target's labels before it is scraped (`relabel`) and to
//! each scraped sample, with its metric name as `__name__` (`metric_relabel`).
//! Regexes are anchored at both ends, as in Prometheus.

use std::collections::BTreeMap;

use regex::Regex;
use serde::Deserialize;

/// One rule as written in the config file (`[[scrape.relabel]]`).
#[derive(Debug, Clone, Default, Deserialize, serde::Serialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct RelabelConfig {
    /// `replace` (default), `keep`, `drop`, `labelkeep`, `labeldrop` or `labelmap`.
    #[serde(default)]
    pub action: Option<String>,
    #[serde(default)]
    pub source_labels: Vec<String>,
    /// Joins the source label values; default `;`.
    #[serde(default)]
    pub separator: Option<String>,
    /// Default `(.*)`.
    #[serde(default)]
    pub regex: Option<String>,
    #[serde(default)]
    pub target_label: Option<String>,
    /// Default `$1`.
    #[serde(default)]
    pub replacement: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Action {
    Replace,
    Keep,
    Drop,
    LabelKeep,
    LabelDrop,
    LabelMap,
}

/// A checked, compiled rule.
#[derive(Debug, Clone)]
pub struct Rule {
    action: Action,
    source_labels: Vec<String>,
    separator: String,
    regex: Regex,
    target_label: String,
    replacement: String,
}

impl Rule {
    pub fn compile(c: &RelabelConfig) -> Result<Self, String> {
        let action = match c.action.as_deref().unwrap_or("replace") {
            "replace" => Action::Replace,
            "keep" => Action::Keep,
            "drop" => Action::Drop,
            "labelkeep" => Action::LabelKeep,
            "labeldrop" => Action::LabelDrop,
            "labelmap" => Action::LabelMap,
            other => {
                return Err(format!(
                    "unknown relabel action `{other}` (use replace, keep, drop, labelkeep, labeldrop or labelmap)"
                ));
            }
        };
        let pattern = c.regex.as_deref().unwrap_or("(.*)");
        let regex = Regex::new(&format!("^(?:{pattern})$"))
            .map_err(|e| format!("relabel regex `{pattern}` is invalid: {e}"))?;
        let target_label = c.target_label.clone().unwrap_or_default();
        if action == Action::Replace && target_label.is_empty() {
            return Err("a `replace` relabel rule needs `target_label`".into());
        }
        if matches!(action, Action::Keep | Action::Drop | Action::Replace)
            && c.source_labels.is_empty()
        {
            return Err(format!(
                "a `{}` relabel rule needs `source_labels`",
                c.action.as_deref().unwrap_or("replace")
            ));
        }
        Ok(Self {
            action,
            source_labels: c.source_labels.clone(),
            separator: c.separator.clone().unwrap_or_else(|| ";".into()),
            regex,
            target_label,
            replacement: c.replacement.clone().unwrap_or_else(|| "$1".into()),
        })
    }

    /// Applies the rule; `false` means the target or sample is dropped.
    fn apply(&self, labels: &mut BTreeMap<String, String>) -> bool {
        let source = || {
            self.source_labels
                .iter()
                .map(|n| labels.get(n).map(String::as_str).unwrap_or(""))
                .collect::<Vec<_>>()
                .join(&self.separator)
        };
        match self.action {
            Action::Keep => self.regex.is_match(&source()),
            Action::Drop => !self.regex.is_match(&source()),
            Action::Replace => {
                let value = source();
                if let Some(caps) = self.regex.captures(&value) {
                    let mut out = String::new();
                    caps.expand(&self.replacement, &mut out);
                    if out.is_empty() {
                        labels.remove(&self.target_label);
                    } else {
                        labels.insert(self.target_label.clone(), out);
                    }
                }
                true
            }
            Action::LabelKeep => {
                labels.retain(|k, _| self.regex.is_match(k));
                true
            }
            Action::LabelDrop => {
                labels.retain(|k, _| !self.regex.is_match(k));
                true
            }
            Action::LabelMap => {
                let mapped: Vec<(String, String)> = labels
                    .iter()
                    .filter_map(|(k, v)| {
                        let caps = self.regex.captures(k)?;
                        let mut name = String::new();
                        caps.expand(&self.replacement, &mut name);
                        Some((name, v.clone()))
                    })
                    .collect();
                labels.extend(mapped);
                true
            }
        }
    }
}

/// Applies `rules` in order; `false` as soon as one drops.
pub fn apply(rules: &[Rule], labels: &mut BTreeMap<String, String>) -> bool {
    rules.iter().all(|r| r.apply(labels))
}

pub fn compile_all(rules: &[RelabelConfig]) -> Result<Vec<Rule>, String> {
    rules
        .iter()
        .enumerate()
        .map(|(i, c)| Rule::compile(c).map_err(|e| format!("rule {}: {e}", i + 1)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rule(action: &str, src: &[&str], regex: &str, target: &str, repl: &str) -> Rule {
        Rule::compile(&RelabelConfig {
            action: Some(action.into()),
            source_labels: src.iter().map(|s| s.to_string()).collect(),
            regex: (!regex.is_empty()).then(|| regex.into()),
            target_label: (!target.is_empty()).then(|| target.into()),
            replacement: (!repl.is_empty()).then(|| repl.into()),
            separator: None,
        })
        .expect("compiles")
    }

    fn labels(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
        kv.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn replace_keep_drop_and_label_rules() {
        let mut l = labels(&[("__address__", "10.0.0.1:9100"), ("pool", "web")]);
        let host = rule("replace", &["__address__"], "([^:]+):.*", "host", "");
        assert!(apply(&[host], &mut l));
        assert_eq!(l["host"], "10.0.0.1");
        let join = rule("replace", &["pool", "host"], "(.*);(.*)", "id", "${1}-${2}");
        assert!(apply(&[join], &mut l));
        assert_eq!(l["id"], "web-10.0.0.1");
        // Anchored: `web` does not match `we`.
        assert!(!apply(
            &[rule("keep", &["pool"], "we", "", "")],
            &mut l.clone()
        ));
        assert!(apply(
            &[rule("keep", &["pool"], "web|db", "", "")],
            &mut l.clone()
        ));
        assert!(
            !apply(&[rule("drop", &["__name__"], "", "", "")], &mut l.clone()),
            "a missing label is the empty string, which `(.*)` matches"
        );
        assert!(apply(
            &[rule("drop", &["__name__"], "go_.*", "", "")],
            &mut l.clone()
        ));
        let mut m = l.clone();
        assert!(apply(&[rule("labeldrop", &[], "__.*|id", "", "")], &mut m));
        assert_eq!(m.keys().collect::<Vec<_>>(), ["host", "pool"]);
        let mut m = labels(&[("__meta_rack", "r1")]);
        assert!(apply(
            &[rule("labelmap", &[], "__meta_(.*)", "", "")],
            &mut m
        ));
        assert_eq!(m["rack"], "r1");
        // A replacement that comes out empty removes the label.
        let mut m = labels(&[("a", "x")]);
        assert!(apply(&[rule("replace", &["b"], "(.*)", "a", "")], &mut m));
        assert!(!m.contains_key("a"));
    }

    #[test]
    fn bad_rules_are_refused_with_the_reason() {
        let err = |c: RelabelConfig| Rule::compile(&c).expect_err("refused");
        assert!(
            err(RelabelConfig {
                action: Some("hashmod".into()),
                ..Default::default()
            })
            .contains("unknown relabel action `hashmod`")
        );
        assert!(
            err(RelabelConfig {
                source_labels: vec!["a".into()],
                ..Default::default()
            })
            .contains("needs `target_label`")
        );
        assert!(
            err(RelabelConfig {
                action: Some("keep".into()),
                ..Default::default()
            })
            .contains("needs `source_labels`")
        );
        assert!(
            err(RelabelConfig {
                action: Some("keep".into()),
                source_labels: vec!["a".into()],
                regex: Some("(".into()),
                ..Default::default()
            })
            .contains("is invalid")
        );
    }
}
