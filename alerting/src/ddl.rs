//! The SQL statements of alerting, parsed with `sqlparser`'s tokenizer (the rule's query
//! itself is kept as text and planned by DataFusion when the rule is created):
//!
//! ```sql
//! CREATE [OR REPLACE] ALERT [IF NOT EXISTS] name
//!     [EVERY '30s'] [FOR '2m'] [KEEP FIRING FOR '5m']
//!     [WHEN <condition over the result columns>]
//!     [ON NO DATA {RESOLVE | KEEP | ALERT}]
//!     [ON EMPTY {OK | ALERT}]
//!     [LABELS (name = 'value', …)] [ANNOTATIONS (name = 'template', …)]
//! AS <query>;
//! DROP ALERT [IF EXISTS] name;
//! SHOW ALERTS;
//! CREATE SILENCE [FOR '2h' | UNTIL '2026-11-23T08:00:00Z'] MATCHING (label = 'v', label =~ 're', …)
//!     [BY 'author'] [COMMENT 'why'];
//! DROP SILENCE 'id';
//! SHOW SILENCES;
//! BACKTEST ALERT name FROM '2026-11-24T00:00:00Z' [TO 'now'] [EVERY '1m'];
//! BACKTEST FROM 'now-7d' [TO …] [EVERY …] CREATE ALERT name … AS <query>;
//! ```
//! Clauses of `CREATE ALERT` come in any order before `AS`; each at most once. Times are
//! RFC 3339 or relative to now (`now`, `now-6h`); the second form of `BACKTEST` tries a
//! rule before creating it.

use std::collections::BTreeMap;
use std::time::Duration;

use sqlparser::dialect::GenericDialect;
use sqlparser::tokenizer::{Token, TokenWithSpan, Tokenizer};
use strata_catalog::alerts::{AlertRuleDef, MatcherDef, NoData, Owner};

use crate::ms_of;
use strata_catalog::units::parse_duration;

/// A parsed alerting statement.
#[derive(Debug, Clone, PartialEq)]
pub enum Statement {
    CreateAlert {
        rule: RuleSpec,
        or_replace: bool,
        if_not_exists: bool,
    },
    DropAlert {
        name: String,
        if_exists: bool,
    },
    ShowAlerts,
    CreateSilence {
        matchers: Vec<MatcherDef>,
        /// How long from now, or until when (ns since the epoch).
        end: SilenceEnd,
        created_by: String,
        comment: String,
    },
    DropSilence {
        id: String,
    },
    ShowSilences,
    Backtest {
        target: BacktestTarget,
        /// As written (RFC 3339 or relative), resolved when it runs.
        from: String,
        to: Option<String>,
        every: Option<Duration>,
    },
}

/// What a backtest evaluates: a stored rule, or one written in the statement.
#[derive(Debug, Clone, PartialEq)]
pub enum BacktestTarget {
    Rule(String),
    Spec(Box<RuleSpec>),
}

#[derive(Debug, Clone, PartialEq)]
pub enum SilenceEnd {
    For(Duration),
    Until(i64),
}

/// A rule as written, before it gets a database and an owner.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct RuleSpec {
    pub name: String,
    pub query: String,
    pub condition: Option<String>,
    pub every: Option<Duration>,
    pub for_: Duration,
    pub keep_firing_for: Duration,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub no_data: NoData,
    pub alert_on_empty: bool,
}

impl RuleSpec {
    /// The rule as stored for database `db` (owner: the API; created now by the caller).
    pub fn into_def(self, db: &str) -> AlertRuleDef {
        AlertRuleDef {
            name: self.name,
            database: db.to_string(),
            query: self.query,
            condition: self.condition,
            every_ms: ms_of(self.every.unwrap_or(crate::DEFAULT_EVERY)),
            for_ms: ms_of(self.for_),
            keep_firing_for_ms: ms_of(self.keep_firing_for),
            labels: self.labels,
            annotations: self.annotations,
            no_data: self.no_data,
            alert_on_empty: self.alert_on_empty,
            owner: Owner::Api,
            created_at: 0,
        }
    }
}

/// The kind of statement `sql` is, from its first words, without parsing the rest.
pub fn recognise(sql: &str) -> Option<Kind> {
    let words: Vec<String> = sql
        .split_whitespace()
        .take(4)
        .map(|w| w.trim_end_matches(';').to_ascii_uppercase())
        .collect();
    let w = |i: usize| words.get(i).map(String::as_str);
    match (w(0)?, w(1), w(2), w(3)) {
        ("CREATE", Some("ALERT"), ..) | ("CREATE", Some("OR"), Some("REPLACE"), Some("ALERT")) => {
            Some(Kind::CreateAlert)
        }
        ("DROP", Some("ALERT"), ..) => Some(Kind::DropAlert),
        ("SHOW", Some("ALERTS"), None, _) => Some(Kind::ShowAlerts),
        ("CREATE", Some("SILENCE"), ..) => Some(Kind::CreateSilence),
        ("DROP", Some("SILENCE"), ..) => Some(Kind::DropSilence),
        ("SHOW", Some("SILENCES"), None, _) => Some(Kind::ShowSilences),
        ("BACKTEST", ..) => Some(Kind::Backtest),
        _ => None,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    CreateAlert,
    DropAlert,
    ShowAlerts,
    CreateSilence,
    DropSilence,
    ShowSilences,
    Backtest,
}

/// Parses one alerting statement; the error says what was expected where.
pub fn parse(sql: &str) -> Result<Statement, String> {
    let mut p = Parser::new(sql)?;
    let stmt = if p.keyword("CREATE") {
        if p.keyword("SILENCE") {
            p.create_silence()?
        } else {
            let or_replace = p.keywords(&["OR", "REPLACE"]);
            p.expect("ALERT")?;
            let if_not_exists = p.keywords(&["IF", "NOT", "EXISTS"]);
            if or_replace && if_not_exists {
                return Err("CREATE ALERT takes OR REPLACE or IF NOT EXISTS, not both".into());
            }
            let rule = p.create_alert()?;
            return Ok(Statement::CreateAlert {
                rule,
                or_replace,
                if_not_exists,
            });
        }
    } else if p.keyword("DROP") {
        if p.keyword("SILENCE") {
            Statement::DropSilence { id: p.string()? }
        } else {
            p.expect("ALERT")?;
            let if_exists = p.keywords(&["IF", "EXISTS"]);
            Statement::DropAlert {
                name: p.ident()?,
                if_exists,
            }
        }
    } else if p.keyword("SHOW") {
        if p.keyword("ALERTS") {
            Statement::ShowAlerts
        } else {
            p.expect("SILENCES")?;
            Statement::ShowSilences
        }
    } else if p.keyword("BACKTEST") {
        return p.backtest();
    } else {
        return Err("expected CREATE, DROP, SHOW or BACKTEST".into());
    };
    p.end()?;
    Ok(stmt)
}

struct Parser<'a> {
    sql: &'a str,
    tokens: Vec<TokenWithSpan>,
    /// Byte offset where each line of `sql` starts (token spans are line/column).
    lines: Vec<usize>,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(sql: &'a str) -> Result<Self, String> {
        let tokens = Tokenizer::new(&GenericDialect {}, sql)
            .tokenize_with_location()
            .map_err(|e| format!("could not read the statement: {e}"))?
            .into_iter()
            .filter(|t| !matches!(t.token, Token::Whitespace(_)))
            .collect();
        let mut lines = vec![0];
        lines.extend(sql.match_indices('\n').map(|(i, _)| i + 1));
        Ok(Self {
            sql,
            tokens,
            lines,
            pos: 0,
        })
    }

    fn peek(&self) -> Option<&Token> {
        self.tokens.get(self.pos).map(|t| &t.token)
    }

    fn describe_next(&self) -> String {
        match self.tokens.get(self.pos) {
            None => "the end of the statement".into(),
            Some(t) => format!(
                "`{}` at line {} column {}",
                t.token, t.span.start.line, t.span.start.column
            ),
        }
    }

    fn is_keyword(token: Option<&Token>, word: &str) -> bool {
        matches!(token, Some(Token::Word(w)) if w.quote_style.is_none() && w.value.eq_ignore_ascii_case(word))
    }

    /// Consumes `word` if it is next.
    fn keyword(&mut self, word: &str) -> bool {
        if Self::is_keyword(self.peek(), word) {
            self.pos += 1;
            true
        } else {
            false
        }
    }

    /// Consumes the sequence `words` if all of it is next.
    fn keywords(&mut self, words: &[&str]) -> bool {
        let all = words
            .iter()
            .enumerate()
            .all(|(i, w)| Self::is_keyword(self.tokens.get(self.pos + i).map(|t| &t.token), w));
        if all {
            self.pos += words.len();
        }
        all
    }

    fn expect(&mut self, word: &str) -> Result<(), String> {
        if self.keyword(word) {
            Ok(())
        } else {
            Err(format!("expected {word}, found {}", self.describe_next()))
        }
    }

    fn expect_token(&mut self, token: &Token) -> Result<(), String> {
        if self.peek() == Some(token) {
            self.pos += 1;
            Ok(())
        } else {
            Err(format!(
                "expected `{token}`, found {}",
                self.describe_next()
            ))
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::Word(w)) => {
                let v = w.value.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => Err(format!("expected a name, found {}", self.describe_next())),
        }
    }

    fn string(&mut self) -> Result<String, String> {
        match self.peek() {
            Some(Token::SingleQuotedString(s)) => {
                let v = s.clone();
                self.pos += 1;
                Ok(v)
            }
            _ => Err(format!(
                "expected a quoted string, found {}",
                self.describe_next()
            )),
        }
    }

    fn duration(&mut self, clause: &str) -> Result<Duration, String> {
        let s = self.string().map_err(|e| format!("{clause}: {e}"))?;
        parse_duration(&s).map_err(|e| format!("{clause}: {e}"))
    }

    fn end(&mut self) -> Result<(), String> {
        while self.peek() == Some(&Token::SemiColon) {
            self.pos += 1;
        }
        match self.peek() {
            None | Some(Token::EOF) => Ok(()),
            _ => Err(format!("unexpected {}", self.describe_next())),
        }
    }

    /// Byte offset of token `i`'s start (or the end of the text).
    fn offset(&self, i: usize) -> usize {
        let Some(t) = self.tokens.get(i) else {
            return self.sql.len();
        };
        if matches!(t.token, Token::EOF) {
            return self.sql.len();
        }
        let line = usize::try_from(t.span.start.line.max(1) - 1).unwrap_or(0);
        let start = self.lines.get(line).copied().unwrap_or(0);
        let column = usize::try_from(t.span.start.column.max(1) - 1).unwrap_or(0);
        self.sql[start..]
            .char_indices()
            .nth(column)
            .map_or(self.sql.len(), |(i, _)| start + i)
    }

    /// `( name = 'value', … )`.
    fn pairs(&mut self, clause: &str) -> Result<BTreeMap<String, String>, String> {
        self.expect_token(&Token::LParen)
            .map_err(|e| format!("{clause}: {e}"))?;
        let mut out = BTreeMap::new();
        loop {
            let name = self.ident().map_err(|e| format!("{clause}: {e}"))?;
            self.expect_token(&Token::Eq)
                .map_err(|e| format!("{clause}: {e}"))?;
            let value = self.string().map_err(|e| format!("{clause}: {e}"))?;
            if out.insert(name.clone(), value).is_some() {
                return Err(format!("{clause}: `{name}` is given twice"));
            }
            if self.peek() == Some(&Token::Comma) {
                self.pos += 1;
                continue;
            }
            self.expect_token(&Token::RParen)
                .map_err(|e| format!("{clause}: {e}"))?;
            return Ok(out);
        }
    }

    fn create_alert(&mut self) -> Result<RuleSpec, String> {
        let mut rule = RuleSpec {
            name: self.ident()?,
            ..RuleSpec::default()
        };
        let mut seen: Vec<&'static str> = Vec::new();
        let mut once = |clause: &'static str| {
            if seen.contains(&clause) {
                Err(format!("{clause} is given twice"))
            } else {
                seen.push(clause);
                Ok(())
            }
        };
        loop {
            if self.keyword("AS") {
                let start = self.offset(self.pos);
                let query = self.sql[start..].trim().trim_end_matches(';').trim();
                if query.is_empty() {
                    return Err("expected a query after AS".into());
                }
                rule.query = query.to_string();
                return Ok(rule);
            } else if self.keyword("EVERY") {
                once("EVERY")?;
                rule.every = Some(self.duration("EVERY")?);
            } else if self.keyword("FOR") {
                once("FOR")?;
                rule.for_ = self.duration("FOR")?;
            } else if self.keywords(&["KEEP", "FIRING", "FOR"]) {
                once("KEEP FIRING FOR")?;
                rule.keep_firing_for = self.duration("KEEP FIRING FOR")?;
            } else if self.keyword("WHEN") {
                once("WHEN")?;
                rule.condition = Some(self.condition()?);
            } else if self.keywords(&["ON", "NO", "DATA"]) {
                once("ON NO DATA")?;
                rule.no_data = if self.keyword("RESOLVE") {
                    NoData::Resolve
                } else if self.keyword("KEEP") {
                    NoData::Keep
                } else if self.keyword("ALERT") {
                    NoData::Alert
                } else {
                    return Err(format!(
                        "ON NO DATA: expected RESOLVE, KEEP or ALERT, found {}",
                        self.describe_next()
                    ));
                };
            } else if self.keywords(&["ON", "EMPTY"]) {
                once("ON EMPTY")?;
                rule.alert_on_empty = if self.keyword("ALERT") {
                    true
                } else if self.keyword("OK") {
                    false
                } else {
                    return Err(format!(
                        "ON EMPTY: expected OK or ALERT, found {}",
                        self.describe_next()
                    ));
                };
            } else if self.keyword("LABELS") {
                once("LABELS")?;
                rule.labels = self.pairs("LABELS")?;
            } else if self.keyword("ANNOTATIONS") {
                once("ANNOTATIONS")?;
                rule.annotations = self.pairs("ANNOTATIONS")?;
            } else {
                return Err(format!(
                    "expected EVERY, FOR, KEEP FIRING FOR, WHEN, ON NO DATA, ON EMPTY, LABELS, \
                     ANNOTATIONS or AS, found {}",
                    self.describe_next()
                ));
            }
        }
    }

    /// The text of a `WHEN` condition: up to the next clause keyword outside parentheses.
    fn condition(&mut self) -> Result<String, String> {
        let start = self.offset(self.pos);
        let mut depth = 0usize;
        while let Some(t) = self.peek() {
            match t {
                Token::LParen => depth += 1,
                Token::RParen => depth = depth.saturating_sub(1),
                Token::EOF => break,
                _ if depth == 0
                    && ["AS", "EVERY", "FOR", "KEEP", "ON", "LABELS", "ANNOTATIONS"]
                        .iter()
                        .any(|k| Self::is_keyword(Some(t), k)) =>
                {
                    break;
                }
                _ => {}
            }
            self.pos += 1;
        }
        let text = self.sql[start..self.offset(self.pos)].trim();
        if text.is_empty() {
            return Err("WHEN: expected a condition".into());
        }
        Ok(text.to_string())
    }

    /// After `BACKTEST`: `ALERT name <range>` or `<range> CREATE ALERT …`.
    fn backtest(&mut self) -> Result<Statement, String> {
        let stored = if self.keyword("ALERT") {
            Some(self.ident()?)
        } else {
            None
        };
        let (mut from, mut to, mut every) = (None, None, None);
        loop {
            if from.is_none() && self.keyword("FROM") {
                from = Some(self.string().map_err(|e| format!("FROM: {e}"))?);
            } else if to.is_none() && self.keyword("TO") {
                to = Some(self.string().map_err(|e| format!("TO: {e}"))?);
            } else if every.is_none() && self.keyword("EVERY") {
                every = Some(self.duration("EVERY")?);
            } else {
                break;
            }
        }
        let from = from.ok_or_else(|| {
            format!(
                "BACKTEST needs FROM '<time>' (RFC 3339 or like 'now-6h'), found {}",
                self.describe_next()
            )
        })?;
        let target = match stored {
            Some(name) => {
                self.end()?;
                BacktestTarget::Rule(name)
            }
            None => {
                if !self.keywords(&["CREATE", "ALERT"]) {
                    return Err(format!(
                        "BACKTEST: expected ALERT <name> FROM … or FROM … CREATE ALERT …, \
                         found {}",
                        self.describe_next()
                    ));
                }
                BacktestTarget::Spec(Box::new(self.create_alert()?))
            }
        };
        Ok(Statement::Backtest {
            target,
            from,
            to,
            every,
        })
    }

    fn create_silence(&mut self) -> Result<Statement, String> {
        let mut end = None;
        let mut matchers = None;
        let mut created_by = None;
        let mut comment = None;
        loop {
            if self.keyword("FOR") && end.is_none() {
                end = Some(SilenceEnd::For(self.duration("FOR")?));
            } else if self.keyword("UNTIL") && end.is_none() {
                let s = self.string()?;
                let t = chrono::DateTime::parse_from_rfc3339(&s)
                    .map_err(|e| format!("UNTIL: `{s}` is not an RFC 3339 time: {e}"))?;
                let ns = t
                    .timestamp_nanos_opt()
                    .ok_or_else(|| format!("UNTIL: `{s}` is out of range"))?;
                end = Some(SilenceEnd::Until(ns));
            } else if self.keyword("MATCHING") && matchers.is_none() {
                matchers = Some(self.matchers()?);
            } else if self.keyword("BY") && created_by.is_none() {
                created_by = Some(self.string()?);
            } else if self.keyword("COMMENT") && comment.is_none() {
                comment = Some(self.string()?);
            } else {
                break;
            }
        }
        self.end()?;
        let matchers = matchers.ok_or("CREATE SILENCE needs MATCHING (label = 'value', …)")?;
        Ok(Statement::CreateSilence {
            matchers,
            end: end.ok_or("CREATE SILENCE needs FOR '<duration>' or UNTIL '<time>'")?,
            created_by: created_by.unwrap_or_else(|| "sql".into()),
            comment: comment.unwrap_or_default(),
        })
    }

    /// `( name = 'v', name != 'v', name =~ 're', name !~ 're', … )`.
    fn matchers(&mut self) -> Result<Vec<MatcherDef>, String> {
        self.expect_token(&Token::LParen)?;
        let mut out = Vec::new();
        loop {
            let name = self.ident()?;
            let (is_equal, is_regex) = match self.peek() {
                Some(Token::Eq) => (true, false),
                Some(Token::Neq) => (false, false),
                Some(Token::Tilde) => (true, true),
                Some(Token::ExclamationMarkTilde) => (false, true),
                _ => {
                    return Err(format!(
                        "MATCHING: expected =, !=, =~ or !~ after `{name}`, found {}",
                        self.describe_next()
                    ));
                }
            };
            self.pos += 1;
            // `=~` tokenizes as `=` then `~`.
            let is_regex = if is_equal && !is_regex && self.peek() == Some(&Token::Tilde) {
                self.pos += 1;
                true
            } else {
                is_regex
            };
            let value = self.string()?;
            out.push(MatcherDef {
                name,
                value,
                is_regex,
                is_equal,
            });
            if self.peek() == Some(&Token::Comma) {
                self.pos += 1;
                continue;
            }
            self.expect_token(&Token::RParen)?;
            return Ok(out);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn create_alert_with_every_clause() {
        let sql = "CREATE ALERT high_cpu EVERY '30s' FOR '2m' KEEP FIRING FOR '5m'
            LABELS (severity = 'page', team = 'infra')
            ANNOTATIONS (summary = 'CPU {{ value }}% on {{ host }}')
          AS SELECT host, avg(usage_user) AS value FROM cpu
             WHERE time > now() - interval '5 minutes' GROUP BY host HAVING avg(usage_user) > 90;";
        let Statement::CreateAlert {
            rule,
            or_replace,
            if_not_exists,
        } = parse(sql).expect("parse")
        else {
            panic!("not a CREATE ALERT");
        };
        assert!(!or_replace && !if_not_exists);
        assert_eq!(rule.name, "high_cpu");
        assert_eq!(rule.every, Some(Duration::from_secs(30)));
        assert_eq!(rule.for_, Duration::from_secs(120));
        assert_eq!(rule.keep_firing_for, Duration::from_secs(300));
        assert_eq!(rule.labels["severity"], "page");
        assert_eq!(
            rule.annotations["summary"],
            "CPU {{ value }}% on {{ host }}"
        );
        assert!(rule.query.starts_with("SELECT host, avg(usage_user)"));
        assert!(rule.query.ends_with("HAVING avg(usage_user) > 90"));
        assert_eq!(recognise(sql), Some(Kind::CreateAlert));
    }

    #[test]
    fn when_condition_and_no_data() {
        let sql = "create or replace alert disk when used / CAST(total AS double) > 0.9 \
                   on no data alert on empty alert as select host, used, total from disk";
        let Statement::CreateAlert {
            rule, or_replace, ..
        } = parse(sql).expect("parse")
        else {
            panic!("not a CREATE ALERT");
        };
        assert!(or_replace);
        assert_eq!(
            rule.condition.as_deref(),
            Some("used / CAST(total AS double) > 0.9")
        );
        assert_eq!(rule.no_data, NoData::Alert);
        assert!(rule.alert_on_empty);
        assert_eq!(rule.query, "select host, used, total from disk");
    }

    #[test]
    fn errors_say_what_was_expected_where() {
        let e = parse("CREATE ALERT x EVERY 30s AS SELECT 1").expect_err("unquoted");
        assert!(e.contains("EVERY: expected a quoted string"), "{e}");
        let e = parse("CREATE ALERT x EVERY '30 parsecs' AS SELECT 1").expect_err("unit");
        assert!(e.contains("unknown duration unit"), "{e}");
        let e = parse("CREATE ALERT x FOR '1m' FOR '2m' AS SELECT 1").expect_err("twice");
        assert!(e.contains("FOR is given twice"), "{e}");
        let e = parse("CREATE ALERT x LABELS (a = 'b'").expect_err("paren");
        assert!(e.contains("LABELS: expected `)`"), "{e}");
        let e = parse("CREATE ALERT x EVERY '1m'").expect_err("no AS");
        assert!(e.contains("found the end of the statement"), "{e}");
        let e = parse("CREATE ALERT x BOGUS AS SELECT 1").expect_err("bogus");
        assert!(e.contains("`BOGUS` at line 1 column 16"), "{e}");
    }

    #[test]
    fn drop_show_and_silences() {
        assert_eq!(
            parse("DROP ALERT IF EXISTS high_cpu;"),
            Ok(Statement::DropAlert {
                name: "high_cpu".into(),
                if_exists: true
            })
        );
        assert_eq!(parse("show alerts"), Ok(Statement::ShowAlerts));
        assert_eq!(parse("SHOW SILENCES"), Ok(Statement::ShowSilences));
        let s = parse(
            "CREATE SILENCE FOR '2h' MATCHING (alertname = 'high_cpu', host =~ 'web-.*', \
             env != 'dev') BY 'ann' COMMENT 'deploy'",
        )
        .expect("silence");
        let Statement::CreateSilence {
            matchers,
            end,
            created_by,
            comment,
        } = s
        else {
            panic!("not a silence");
        };
        assert_eq!(end, SilenceEnd::For(Duration::from_secs(7200)));
        assert_eq!(created_by, "ann");
        assert_eq!(comment, "deploy");
        assert_eq!(matchers.len(), 3);
        assert!(matchers[1].is_regex && matchers[1].is_equal);
        assert!(!matchers[2].is_regex && !matchers[2].is_equal);
        assert_eq!(
            parse("DROP SILENCE 'abc'"),
            Ok(Statement::DropSilence { id: "abc".into() })
        );
        assert_eq!(recognise("SELECT 1"), None);
        assert_eq!(recognise("show alerts;"), Some(Kind::ShowAlerts));
    }

    #[test]
    fn backtest_a_stored_rule_or_one_written_inline() {
        assert_eq!(
            parse("BACKTEST ALERT high_cpu FROM 'now-1d' EVERY '1m';"),
            Ok(Statement::Backtest {
                target: BacktestTarget::Rule("high_cpu".into()),
                from: "now-1d".into(),
                to: None,
                every: Some(Duration::from_secs(60)),
            })
        );
        let s = parse(
            "backtest from '2026-11-01T00:00:00Z' to '2026-11-02T00:00:00Z' \
             CREATE ALERT hot FOR '2m' AS SELECT host, max(v) AS v FROM cpu GROUP BY host",
        )
        .expect("inline");
        let Statement::Backtest {
            target: BacktestTarget::Spec(rule),
            from,
            to,
            every,
        } = s
        else {
            panic!("not an inline backtest");
        };
        assert_eq!(rule.name, "hot");
        assert_eq!(rule.for_, Duration::from_secs(120));
        assert_eq!(
            rule.query,
            "SELECT host, max(v) AS v FROM cpu GROUP BY host"
        );
        assert_eq!(from, "2026-11-01T00:00:00Z");
        assert_eq!(to.as_deref(), Some("2026-11-02T00:00:00Z"));
        assert_eq!(every, None);
        assert_eq!(recognise("BACKTEST ALERT x"), Some(Kind::Backtest));
        let e = parse("BACKTEST ALERT x TO 'now'").expect_err("no FROM");
        assert!(e.contains("needs FROM"), "{e}");
        let e = parse("BACKTEST FROM 'now-1h' ALERT x").expect_err("wrong order");
        assert!(e.contains("expected ALERT <name> FROM"), "{e}");
        let e = parse("BACKTEST ALERT x FROM 'now-1h' EVERY 'soon'").expect_err("bad every");
        assert!(e.starts_with("EVERY:"), "{e}");
    }
}
