//! The channels a receiver sends through: webhooks (Alertmanager's version 4 JSON, so
//! existing receivers work), email over SMTP (`lettre`; plain, STARTTLS or TLS, optional
//! auth; text and HTML), PagerDuty Events API v2 (one event per alert, `dedup_key` = the
//! alert's fingerprint), and SMS / voice calls through a provider with Twilio's API shape.
//! Every endpoint is configurable; a failed send returns the reason and is retried by the
//! pipeline.

use std::collections::BTreeMap;
use std::time::Duration;

use lettre::message::{Mailbox, MultiPart};
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use serde::{Deserialize, Serialize};
use serde_json::json;
use strata_catalog::units::parse_duration;

use super::{Alert, Notification, Status};
use crate::config::{
    EmailConfig, PagerDutyConfig, PhoneConfig, ReceiverConfig, SmtpTls, WebhookConfig,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    Webhook,
    Email,
    PagerDuty,
    Sms,
    Voice,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Self::Webhook => "webhook",
            Self::Email => "email",
            Self::PagerDuty => "pagerduty",
            Self::Sms => "sms",
            Self::Voice => "voice",
        }
    }
}

const DEFAULT_TIMEOUT: Duration = Duration::from_secs(10);
const PAGERDUTY_URL: &str = "https://events.pagerduty.com/v2/enqueue";

fn timeout(t: &Option<String>) -> Result<Duration, String> {
    t.as_deref()
        .map_or(Ok(DEFAULT_TIMEOUT), parse_duration)
        .map_err(|e| format!("timeout: {e}"))
}

/// RFC 3339 with nanoseconds trimmed, as Alertmanager prints times.
pub fn rfc3339(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::AutoSi, true)
}

/// Checks a receiver's settings without sending anything.
pub fn validate(r: &ReceiverConfig) -> Result<(), String> {
    let at = |kind: &str, i: usize, e: String| format!("receiver `{}` {kind}[{i}]: {e}", r.name);
    for (i, w) in r.webhook.iter().enumerate() {
        reqwest::Url::parse(&w.url).map_err(|e| at("webhook", i, format!("url: {e}")))?;
        timeout(&w.timeout).map_err(|e| at("webhook", i, e))?;
    }
    for (i, e) in r.email.iter().enumerate() {
        e.from
            .parse::<Mailbox>()
            .map_err(|x| at("email", i, format!("from `{}`: {x}", e.from)))?;
        if e.to.is_empty() {
            return Err(at("email", i, "`to` is empty".into()));
        }
        for to in &e.to {
            to.parse::<Mailbox>()
                .map_err(|x| at("email", i, format!("to `{to}`: {x}")))?;
        }
        let (host, _) = smarthost(&e.smarthost).map_err(|x| at("email", i, x))?;
        if e.tls != SmtpTls::None {
            tls_parameters(e, &host).map_err(|x| at("email", i, x))?;
        }
        if e.username.is_some() != e.password.is_some() {
            return Err(at(
                "email",
                i,
                "give both `username` and `password`, or neither".into(),
            ));
        }
        timeout(&e.timeout).map_err(|x| at("email", i, x))?;
    }
    for (i, p) in r.pagerduty.iter().enumerate() {
        if p.routing_key.is_empty() {
            return Err(at("pagerduty", i, "`routing_key` is empty".into()));
        }
        reqwest::Url::parse(p.url.as_deref().unwrap_or(PAGERDUTY_URL))
            .map_err(|e| at("pagerduty", i, format!("url: {e}")))?;
    }
    for (kind, list) in [("sms", &r.sms), ("voice", &r.voice)] {
        for (i, p) in list.iter().enumerate() {
            reqwest::Url::parse(&p.url).map_err(|e| at(kind, i, format!("url: {e}")))?;
            if p.to.is_empty() {
                return Err(at(kind, i, "`to` is empty".into()));
            }
        }
    }
    Ok(())
}

fn smarthost(s: &str) -> Result<(String, u16), String> {
    let (host, port) = s
        .rsplit_once(':')
        .ok_or_else(|| format!("smarthost `{s}` is not host:port"))?;
    let port = port
        .parse()
        .map_err(|_| format!("smarthost `{s}`: `{port}` is not a port"))?;
    Ok((host.to_string(), port))
}

/// Sends one notification through one channel of a receiver.
pub async fn send(
    http: &reqwest::Client,
    receiver: &ReceiverConfig,
    kind: Kind,
    index: usize,
    n: &Notification,
) -> Result<(), String> {
    let missing = || {
        format!(
            "receiver `{}` has no {}[{index}] any more",
            receiver.name,
            kind.name()
        )
    };
    match kind {
        Kind::Webhook => webhook(http, receiver.webhook.get(index).ok_or_else(missing)?, n).await,
        Kind::Email => email(receiver.email.get(index).ok_or_else(missing)?, n).await,
        Kind::PagerDuty => {
            pagerduty(http, receiver.pagerduty.get(index).ok_or_else(missing)?, n).await
        }
        Kind::Sms => phone(http, receiver.sms.get(index).ok_or_else(missing)?, n, false).await,
        Kind::Voice => {
            phone(
                http,
                receiver.voice.get(index).ok_or_else(missing)?,
                n,
                true,
            )
            .await
        }
    }
}

/// The channels of a receiver with their `send_resolved` flags.
pub fn list(r: &ReceiverConfig) -> Vec<(Kind, usize, bool)> {
    let mut out = Vec::new();
    out.extend(
        r.webhook
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::Webhook, i, c.send_resolved)),
    );
    out.extend(
        r.email
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::Email, i, c.send_resolved)),
    );
    out.extend(
        r.pagerduty
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::PagerDuty, i, c.send_resolved)),
    );
    out.extend(
        r.sms
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::Sms, i, c.send_resolved)),
    );
    out.extend(
        r.voice
            .iter()
            .enumerate()
            .map(|(i, c)| (Kind::Voice, i, c.send_resolved)),
    );
    out
}

async fn check(
    response: Result<reqwest::Response, reqwest::Error>,
    what: &str,
) -> Result<(), String> {
    let r = response.map_err(|e| format!("{what}: {e}"))?;
    let status = r.status();
    if status.is_success() {
        return Ok(());
    }
    let body = r.text().await.unwrap_or_default();
    let body: String = body.chars().take(300).collect();
    Err(format!("{what}: HTTP {status}: {body}"))
}

/// Alertmanager's webhook payload, version 4.
pub fn webhook_payload(n: &Notification) -> serde_json::Value {
    json!({
        "version": "4",
        "groupKey": n.group_key,
        "truncatedAlerts": 0,
        "status": n.status.name(),
        "receiver": n.receiver,
        "groupLabels": n.group_labels,
        "commonLabels": n.common_labels(),
        "commonAnnotations": n.common_annotations(),
        "externalURL": n.external_url,
        "alerts": n.alerts.iter().map(|a| json!({
            "status": a.status.name(),
            "labels": a.labels,
            "annotations": a.annotations,
            "startsAt": rfc3339(a.starts_at),
            "endsAt": a.ends_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
            "generatorURL": a.generator_url,
            "fingerprint": a.fingerprint,
        })).collect::<Vec<_>>(),
    })
}

async fn webhook(
    http: &reqwest::Client,
    c: &WebhookConfig,
    n: &Notification,
) -> Result<(), String> {
    let mut req = http
        .post(&c.url)
        .timeout(timeout(&c.timeout)?)
        .json(&webhook_payload(n));
    if let Some(t) = &c.bearer_token {
        req = req.bearer_auth(t);
    }
    check(req.send().await, &format!("webhook {}", c.url)).await
}

fn alert_line(a: &Alert) -> String {
    let labels: Vec<String> = a
        .labels
        .iter()
        .filter(|(k, _)| k.as_str() != "alertname")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!(
        "[{}] {} {}",
        a.status.name(),
        a.labels.get("alertname").map_or("", String::as_str),
        labels.join(" ")
    )
}

/// The plain-text body of emails (and the source of SMS and voice texts).
pub fn text_body(n: &Notification) -> String {
    let mut s = format!("{}\n\n", n.title());
    for a in &n.alerts {
        s.push_str(&format!("- {}\n", alert_line(a)));
        for (k, v) in &a.annotations {
            s.push_str(&format!("  {k}: {v}\n"));
        }
        s.push_str(&format!("  since: {}\n", rfc3339(a.starts_at)));
        if a.status == Status::Firing {
            s.push_str(&format!("  acknowledge: {}\n", n.ack_url(&a.fingerprint)));
        }
    }
    s
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The HTML body of emails.
pub fn html_body(n: &Notification) -> String {
    let mut s = format!(
        "<html><body><h2>{}</h2><table border=\"1\" cellpadding=\"4\" cellspacing=\"0\">\
         <tr><th>status</th><th>labels</th><th>annotations</th><th>since</th><th></th></tr>",
        escape(&n.title())
    );
    for a in &n.alerts {
        let labels: Vec<String> = a
            .labels
            .iter()
            .map(|(k, v)| format!("{}={}", escape(k), escape(v)))
            .collect();
        let annotations: Vec<String> = a
            .annotations
            .iter()
            .map(|(k, v)| format!("<b>{}</b>: {}", escape(k), escape(v)))
            .collect();
        let ack = if a.status == Status::Firing {
            format!(
                "<a href=\"{}\">acknowledge</a>",
                escape(&n.ack_url(&a.fingerprint))
            )
        } else {
            String::new()
        };
        s.push_str(&format!(
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{ack}</td></tr>",
            a.status.name(),
            labels.join("<br>"),
            annotations.join("<br>"),
            rfc3339(a.starts_at)
        ));
    }
    s.push_str("</table></body></html>");
    s
}

async fn email(c: &EmailConfig, n: &Notification) -> Result<(), String> {
    let (host, port) = smarthost(&c.smarthost)?;
    let what = |e: &dyn std::fmt::Display| format!("email via {}: {e}", c.smarthost);
    let tls = match c.tls {
        SmtpTls::None => Tls::None,
        SmtpTls::Starttls => Tls::Required(tls_parameters(c, &host).map_err(|e| what(&e))?),
        SmtpTls::Tls => Tls::Wrapper(tls_parameters(c, &host).map_err(|e| what(&e))?),
    };
    let mut builder = AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&host)
        .tls(tls)
        .port(port)
        .timeout(Some(timeout(&c.timeout)?));
    if let (Some(u), Some(p)) = (&c.username, &c.password) {
        builder = builder.credentials(Credentials::new(u.clone(), p.clone()));
    }
    let transport = builder.build();
    let mut message = lettre::Message::builder()
        .from(c.from.parse::<Mailbox>().map_err(|e| what(&e))?)
        .subject(n.title());
    for to in &c.to {
        message = message.to(to.parse::<Mailbox>().map_err(|e| what(&e))?);
    }
    let message = message
        .multipart(MultiPart::alternative_plain_html(
            text_body(n),
            html_body(n),
        ))
        .map_err(|e| what(&e))?;
    transport.send(message).await.map_err(|e| what(&e))?;
    Ok(())
}

/// TLS for an SMTP connection to `host`: the certificate must be valid for it and signed
/// by a system CA or one in `ca_file`.
fn tls_parameters(c: &EmailConfig, host: &str) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(host.to_string());
    if let Some(path) = &c.ca_file {
        let pem = std::fs::read(path).map_err(|e| format!("ca_file {}: {e}", path.display()))?;
        let cert = Certificate::from_pem(&pem)
            .map_err(|e| format!("ca_file {}: not a PEM certificate: {e}", path.display()))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| format!("TLS setup: {e}"))
}

/// One PagerDuty Events API v2 event per alert.
pub fn pagerduty_events(c: &PagerDutyConfig, n: &Notification) -> Vec<serde_json::Value> {
    n.alerts
        .iter()
        .map(|a| {
            let severity = c
                .severity
                .clone()
                .or_else(|| a.labels.get("severity").cloned())
                .filter(|s| ["critical", "error", "warning", "info"].contains(&s.as_str()))
                .unwrap_or_else(|| "error".into());
            let summary: String = alert_line(a)
                .chars()
                .chain(
                    a.annotations
                        .get("summary")
                        .map(|s| format!(": {s}"))
                        .unwrap_or_default()
                        .chars(),
                )
                .take(1024)
                .collect();
            let source = a
                .labels
                .get("instance")
                .or_else(|| a.labels.get("host"))
                .cloned()
                .unwrap_or_else(|| "strata".into());
            let mut details: BTreeMap<String, String> = a.labels.clone();
            details.extend(a.annotations.iter().map(|(k, v)| (k.clone(), v.clone())));
            json!({
                "routing_key": c.routing_key,
                "event_action": match a.status { Status::Firing => "trigger", Status::Resolved => "resolve" },
                "dedup_key": a.fingerprint,
                "payload": {
                    "summary": summary,
                    "source": source,
                    "severity": severity,
                    "timestamp": rfc3339(a.starts_at),
                    "custom_details": details,
                },
                "links": [{"href": n.ack_url(&a.fingerprint), "text": "Acknowledge in Strata"}],
                "client": "Strata",
                "client_url": n.external_url,
            })
        })
        .collect()
}

async fn pagerduty(
    http: &reqwest::Client,
    c: &PagerDutyConfig,
    n: &Notification,
) -> Result<(), String> {
    let url = c.url.as_deref().unwrap_or(PAGERDUTY_URL);
    for event in pagerduty_events(c, n) {
        let req = http.post(url).timeout(timeout(&c.timeout)?).json(&event);
        check(req.send().await, &format!("PagerDuty {url}")).await?;
    }
    Ok(())
}

/// The short text of SMS and voice calls (SMS bodies are cut at 1,600 characters).
pub fn short_text(n: &Notification) -> String {
    let mut s = n.title();
    for a in &n.alerts {
        s.push_str("; ");
        s.push_str(
            a.annotations
                .get("summary")
                .map_or_else(|| alert_line(a), Clone::clone)
                .as_str(),
        );
    }
    s.chars().take(1600).collect()
}

async fn phone(
    http: &reqwest::Client,
    c: &PhoneConfig,
    n: &Notification,
    voice: bool,
) -> Result<(), String> {
    let base = c.url.trim_end_matches('/');
    let text = short_text(n);
    for to in &c.to {
        let (url, form) = if voice {
            let twiml = format!("<Response><Say>{}</Say></Response>", escape(&text));
            (
                format!("{base}/Calls.json"),
                [
                    ("To", to.as_str()),
                    ("From", c.from.as_str()),
                    ("Twiml", twiml.as_str()),
                ]
                .map(|(k, v)| (k, v.to_string())),
            )
        } else {
            (
                format!("{base}/Messages.json"),
                [
                    ("To", to.as_str()),
                    ("From", c.from.as_str()),
                    ("Body", text.as_str()),
                ]
                .map(|(k, v)| (k, v.to_string())),
            )
        };
        let req = http
            .post(&url)
            .timeout(timeout(&c.timeout)?)
            .basic_auth(&c.account_sid, Some(&c.auth_token))
            .form(&form);
        check(
            req.send().await,
            &format!("{} {url} to {to}", if voice { "call" } else { "SMS" }),
        )
        .await?;
    }
    Ok(())
}
