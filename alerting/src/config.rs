//! Alerting configuration: receivers, the routing tree, inhibition rules, escalation
//! policies and config-owned rules. Plain serde structs with defaults (the binary reads
//! them from the `[alerting]` table of the TOML file); durations are strings like `30s`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AlertingConfig {
    /// The URL users reach Strata at, for links in notifications (acknowledge, query).
    #[serde(default)]
    pub external_url: Option<String>,
    /// More firing/resolved changes than `flap_threshold` within `flap_window` makes an
    /// instance flapping [default: 4 within 10m; 0 turns detection off].
    #[serde(default)]
    pub flap_window: Option<String>,
    #[serde(default)]
    pub flap_threshold: Option<usize>,
    /// Rule queries that run at once; more due rules wait their turn [default: 16].
    #[serde(default)]
    pub max_concurrent_evaluations: Option<usize>,
    /// The routing tree's root. Without one, alerts go to a receiver named `default`
    /// if there is one, and are only listed otherwise.
    #[serde(default)]
    pub route: Option<RouteConfig>,
    #[serde(default)]
    pub receivers: Vec<ReceiverConfig>,
    #[serde(default)]
    pub inhibit_rules: Vec<InhibitConfig>,
    #[serde(default)]
    pub escalations: Vec<EscalationConfig>,
    /// Rules owned by the config file (loaded at start, not changeable at run time).
    #[serde(default)]
    pub rules: Vec<RuleConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RouteConfig {
    /// A receiver or an escalation policy; children inherit it.
    #[serde(default)]
    pub receiver: Option<String>,
    /// Alertmanager-style matchers: `severity = page`, `host =~ "web-.*"`.
    #[serde(default)]
    pub matchers: Vec<String>,
    /// Labels that split alerts into groups (`["..."]` groups by every label).
    #[serde(default)]
    pub group_by: Option<Vec<String>>,
    #[serde(default)]
    pub group_wait: Option<String>,
    #[serde(default)]
    pub group_interval: Option<String>,
    #[serde(default)]
    pub repeat_interval: Option<String>,
    /// Keep looking for matching siblings after this route matched.
    #[serde(default, rename = "continue")]
    pub continue_: bool,
    #[serde(default)]
    pub routes: Vec<RouteConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReceiverConfig {
    pub name: String,
    #[serde(default)]
    pub webhook: Vec<WebhookConfig>,
    #[serde(default)]
    pub email: Vec<EmailConfig>,
    #[serde(default)]
    pub pagerduty: Vec<PagerDutyConfig>,
    #[serde(default)]
    pub sms: Vec<PhoneConfig>,
    #[serde(default)]
    pub voice: Vec<PhoneConfig>,
}

fn yes() -> bool {
    true
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WebhookConfig {
    pub url: String,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    /// Sent as `Authorization: Bearer …`.
    #[serde(default)]
    pub bearer_token: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SmtpTls {
    /// Plain SMTP (a local relay).
    None,
    /// Upgrade with STARTTLS (required).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, usually port 465).
    Tls,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EmailConfig {
    pub to: Vec<String>,
    pub from: String,
    /// `host:port` of the SMTP server.
    pub smarthost: String,
    #[serde(default)]
    pub tls: SmtpTls,
    #[serde(default)]
    pub username: Option<String>,
    #[serde(default)]
    pub password: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's (a private relay's
    /// CA); read when the configuration loads and at each send.
    #[serde(default)]
    pub ca_file: Option<std::path::PathBuf>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PagerDutyConfig {
    pub routing_key: String,
    /// Events API v2 endpoint [default: https://events.pagerduty.com/v2/enqueue].
    #[serde(default)]
    pub url: Option<String>,
    /// `critical`, `error`, `warning` or `info`; else the alert's `severity` label.
    #[serde(default)]
    pub severity: Option<String>,
    #[serde(default = "yes")]
    pub send_resolved: bool,
    #[serde(default)]
    pub timeout: Option<String>,
}

/// An SMS or voice provider with Twilio's API shape: `POST {url}/Messages.json` or
/// `{url}/Calls.json`, form-encoded, HTTP basic auth with the account id and token.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PhoneConfig {
    /// The account's API base, e.g. `https://api.twilio.com/2010-04-01/Accounts/AC…`.
    pub url: String,
    pub account_sid: String,
    pub auth_token: String,
    pub from: String,
    pub to: Vec<String>,
    #[serde(default)]
    pub send_resolved: bool,
    #[serde(default)]
    pub timeout: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InhibitConfig {
    pub source_matchers: Vec<String>,
    pub target_matchers: Vec<String>,
    #[serde(default)]
    pub equal: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationConfig {
    pub name: String,
    pub steps: Vec<EscalationStepConfig>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EscalationStepConfig {
    pub receivers: Vec<String>,
    /// How long after the group's first notification this step is notified, if nobody
    /// acknowledged by then (the first step usually `0s`).
    #[serde(default)]
    pub after: Option<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RuleConfig {
    pub name: String,
    #[serde(default)]
    pub database: Option<String>,
    pub query: String,
    #[serde(default)]
    pub when: Option<String>,
    #[serde(default)]
    pub every: Option<String>,
    #[serde(default, rename = "for")]
    pub for_: Option<String>,
    #[serde(default)]
    pub keep_firing_for: Option<String>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
    /// `resolve`, `keep` or `alert`.
    #[serde(default)]
    pub no_data: Option<String>,
    #[serde(default)]
    pub alert_on_empty: bool,
}
