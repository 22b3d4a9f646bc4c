//! Label matchers as Alertmanager writes them (`severity = page`, `host =~ "web-.*"`,
//! `env != dev`, `team !~ "db|infra"`): used by routes, silences and inhibition rules.
//! Regular expressions are anchored at both ends, as in Alertmanager.

use std::collections::BTreeMap;

use regex::Regex;
use strata_catalog::alerts::MatcherDef;

/// A compiled matcher.
#[derive(Debug, Clone)]
pub struct Matcher {
    pub def: MatcherDef,
    regex: Option<Regex>,
}

impl Matcher {
    pub fn new(def: MatcherDef) -> Result<Self, String> {
        let regex = if def.is_regex {
            Some(
                Regex::new(&format!("^(?:{})$", def.value))
                    .map_err(|e| format!("matcher `{}`: bad regular expression: {e}", def.name))?,
            )
        } else {
            None
        };
        if def.name.is_empty() {
            return Err("a matcher needs a label name".into());
        }
        Ok(Self { def, regex })
    }

    /// Parses `name op value` with op one of `=`, `!=`, `=~`, `!~`; the value may be
    /// double-quoted.
    pub fn parse(s: &str) -> Result<Self, String> {
        let ops = [
            ("=~", true, true),
            ("!~", false, true),
            ("!=", false, false),
            ("=", true, false),
        ];
        let (at, (op, is_equal, is_regex)) = ops
            .iter()
            .filter_map(|op| s.find(op.0).map(|i| (i, *op)))
            .min_by_key(|(i, op)| (*i, std::cmp::Reverse(op.0.len())))
            .ok_or_else(|| format!("matcher `{s}`: expected name=value, !=, =~ or !~"))?;
        let name = s[..at].trim();
        let raw = s[at + op.len()..].trim();
        let value = raw
            .strip_prefix('"')
            .and_then(|v| v.strip_suffix('"'))
            .map_or_else(|| raw.to_string(), |v| v.replace("\\\"", "\""));
        if !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') || name.is_empty() {
            return Err(format!("matcher `{s}`: `{name}` is not a label name"));
        }
        Self::new(MatcherDef {
            name: name.to_string(),
            value,
            is_regex,
            is_equal,
        })
    }

    /// Whether `labels` satisfy the matcher; a missing label matches as the empty string.
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        let v = labels.get(&self.def.name).map_or("", String::as_str);
        let hit = match &self.regex {
            Some(r) => r.is_match(v),
            None => v == self.def.value,
        };
        hit == self.def.is_equal
    }
}

impl std::fmt::Display for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let op = match (self.def.is_equal, self.def.is_regex) {
            (true, false) => "=",
            (false, false) => "!=",
            (true, true) => "=~",
            (false, true) => "!~",
        };
        write!(f, "{}{op}\"{}\"", self.def.name, self.def.value)
    }
}

/// Whether every matcher matches (an empty list matches everything).
pub fn all_match(matchers: &[Matcher], labels: &BTreeMap<String, String>) -> bool {
    matchers.iter().all(|m| m.matches(labels))
}

/// Compiles matcher strings, naming the bad one.
pub fn parse_all(items: &[String]) -> Result<Vec<Matcher>, String> {
    items.iter().map(|s| Matcher::parse(s)).collect()
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
    fn the_four_kinds() {
        let l = labels(&[("severity", "page"), ("host", "web-12")]);
        assert!(Matcher::parse("severity = page").expect("eq").matches(&l));
        assert!(!Matcher::parse("severity != page").expect("ne").matches(&l));
        assert!(
            Matcher::parse("host =~ \"web-[0-9]+\"")
                .expect("re")
                .matches(&l)
        );
        assert!(!Matcher::parse("host=~web").expect("anchored").matches(&l));
        assert!(Matcher::parse("host !~ db-.*").expect("nre").matches(&l));
        assert!(Matcher::parse("team = \"\"").expect("missing").matches(&l));
        assert!(Matcher::parse("x").is_err());
        assert!(Matcher::parse("host =~ (").is_err());
        assert!(Matcher::parse("a b = c").is_err());
    }
}
