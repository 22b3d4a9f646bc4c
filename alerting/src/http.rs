//! The alerting HTTP API:
//! - rules: `GET|POST /api/v1/alert_rules`, `DELETE /api/v1/alert_rules/{name}` (JSON in
//!   the shape of a `[[alerting.rules]]` entry);
//! - backtests: `POST /api/v1/alert_rules/{name}/backtest` for a stored rule,
//!   `POST /api/v1/backtest` with a `rule` definition (same shape) to try one first; body
//!   `{"from": "now-7d", "to": "now", "every": "1m"}` (`to`, `every` optional);
//! - acknowledgement: `GET|POST /api/v1/alerts/{fingerprint}/ack?by=NAME` (the link in
//!   notifications), a test notification: `POST /api/v1/receivers/{name}/test`;
//! - an Alertmanager API v2 subset, so Prometheus, vmalert and amtool plug in:
//!   `GET|POST /api/v2/alerts`, `GET|POST /api/v2/silences`,
//!   `GET|DELETE /api/v2/silence/{id}`, `GET /api/v2/status` (`amtool config show`;
//!   secrets redacted).

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::json;
use strata_catalog::alerts::{MatcherDef, SilenceDef};
use strata_catalog::units;

use crate::config::RuleConfig;
use crate::notify::channels::rfc3339;
use crate::notify::{Mute, Status};
use crate::{Alerting, Error, PostedAlert, RuleRuntime, rule_from_config};

pub fn router(alerting: Arc<Alerting>) -> Router {
    Router::new()
        .route("/api/v1/alert_rules", get(list_rules).post(create_rule))
        .route("/api/v1/alert_rules/{name}", delete(drop_rule))
        .route("/api/v1/alert_rules/{name}/backtest", post(backtest_stored))
        .route("/api/v1/backtest", post(backtest_new))
        .route("/api/v1/alerts/{fingerprint}/ack", get(ack).post(ack))
        .route("/api/v1/receivers/{name}/test", post(test_receiver))
        .route("/api/v2/status", get(status))
        .route("/api/v2/alerts", get(list_alerts).post(post_alerts))
        .route("/api/v2/silences", get(list_silences).post(post_silence))
        .route(
            "/api/v2/silence/{id}",
            get(get_silence).delete(expire_silence),
        )
        .with_state(alerting)
}

fn error(e: Error) -> Response {
    let code = match &e {
        Error::Invalid(_) | Error::Config(_) => StatusCode::BAD_REQUEST,
        Error::NotFound(_) => StatusCode::NOT_FOUND,
        Error::Conflict(_) => StatusCode::CONFLICT,
        Error::Catalog(_) | Error::State { .. } => StatusCode::SERVICE_UNAVAILABLE,
    };
    (code, Json(json!({"error": e.to_string()}))).into_response()
}

fn bad(msg: String) -> Response {
    error(Error::Invalid(msg))
}

fn parse_time(what: &str, s: &str) -> Result<i64, Error> {
    chrono::DateTime::parse_from_rfc3339(s)
        .ok()
        .and_then(|t| t.timestamp_nanos_opt())
        .ok_or_else(|| Error::Invalid(format!("{what} `{s}` is not an RFC 3339 time")))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, Error> {
    serde_json::from_slice(bytes).map_err(|e| Error::Invalid(format!("request body: {e}")))
}

async fn list_rules(State(a): State<Arc<Alerting>>) -> Response {
    let defs = a.catalog.snapshot();
    let (runtime, _) = a.snapshot_runtime();
    let rules: Vec<_> = defs
        .alert_rules
        .values()
        .map(|r| {
            let rt = runtime.get(&r.name);
            json!({
                "name": r.name,
                "database": r.database,
                "query": r.query,
                "when": r.condition,
                "every_ms": r.every_ms,
                "for_ms": r.for_ms,
                "keep_firing_for_ms": r.keep_firing_for_ms,
                "labels": r.labels,
                "annotations": r.annotations,
                "no_data": r.no_data.name(),
                "alert_on_empty": r.alert_on_empty,
                "owner": r.owner.name(),
                "health": RuleRuntime::health(rt),
                "last_error": rt.and_then(|x| x.last_error.clone()),
                "instances": rt.map(|x| x.instances.values().map(|i| json!({
                    "fingerprint": i.fingerprint, "state": i.state.name(), "labels": i.labels,
                    "values": i.values, "annotations": i.annotations, "flapping": i.flapping,
                })).collect::<Vec<_>>()).unwrap_or_default(),
            })
        })
        .collect();
    Json(rules).into_response()
}

async fn create_rule(State(a): State<Arc<Alerting>>, bytes: axum::body::Bytes) -> Response {
    let cfg: RuleConfig = match body(&bytes) {
        Ok(c) => c,
        Err(e) => return error(e),
    };
    let def = match rule_from_config(&cfg) {
        Ok(d) => d,
        Err(e) => return bad(format!("rule `{}`: {e}", cfg.name)),
    };
    match a.create_rule(def, true, false).await {
        Ok(_) => (StatusCode::CREATED, Json(json!({"name": cfg.name}))).into_response(),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BacktestBody {
    from: String,
    to: Option<String>,
    every: Option<String>,
    /// The rule to try (for `/api/v1/backtest`).
    rule: Option<RuleConfig>,
}

async fn backtest_stored(
    State(a): State<Arc<Alerting>>,
    Path(name): Path<String>,
    bytes: axum::body::Bytes,
) -> Response {
    let run = async {
        let b: BacktestBody = body(&bytes)?;
        if b.rule.is_some() {
            return Err(Error::Invalid(
                "`rule` belongs in POST /api/v1/backtest; this backtests the stored rule".into(),
            ));
        }
        let rule = a.rule(&name)?;
        backtest(&a, rule, &b).await
    };
    run.await.unwrap_or_else(error)
}

async fn backtest_new(State(a): State<Arc<Alerting>>, bytes: axum::body::Bytes) -> Response {
    let run = async {
        let b: BacktestBody = body(&bytes)?;
        let Some(cfg) = &b.rule else {
            return Err(Error::Invalid(
                "request body: `rule` (a rule definition) is missing".into(),
            ));
        };
        let rule = rule_from_config(cfg)
            .map_err(|e| Error::Invalid(format!("rule `{}`: {e}", cfg.name)))?;
        backtest(&a, rule, &b).await
    };
    run.await.unwrap_or_else(error)
}

async fn backtest(
    a: &Alerting,
    rule: strata_catalog::alerts::AlertRuleDef,
    b: &BacktestBody,
) -> Result<Response, Error> {
    let (from, to) = crate::backtest::range(a.now(), &b.from, b.to.as_deref(), ("from", "to"))?;
    let every = b
        .every
        .as_deref()
        .map(|e| units::parse_duration(e).map_err(|e| Error::Invalid(format!("every: {e}"))))
        .transpose()?;
    let report = a.backtest(&rule, from, to, every).await?;
    let mut out =
        serde_json::to_value(&report).map_err(|e| Error::Invalid(format!("report: {e}")))?;
    out["summary"] = json!(report.summary());
    Ok(Json(out).into_response())
}

/// Alertmanager's status: configuration (redacted), version, uptime; no cluster.
async fn status(State(a): State<Arc<Alerting>>) -> Response {
    Json(json!({
        "cluster": {"name": "", "status": "disabled", "peers": []},
        "versionInfo": {
            "version": env!("CARGO_PKG_VERSION"),
            "branch": "", "revision": "", "buildUser": "", "buildDate": "",
            "goVersion": "none (Strata, Rust)"
        },
        "config": {"original": a.setup.redacted},
        "uptime": rfc3339(a.started_at),
    }))
    .into_response()
}

async fn drop_rule(State(a): State<Arc<Alerting>>, Path(name): Path<String>) -> Response {
    match a.drop_rule(&name, false).await {
        Ok(_) => StatusCode::NO_CONTENT.into_response(),
        Err(e) => error(e),
    }
}

#[derive(Deserialize)]
struct AckParams {
    by: Option<String>,
}

async fn ack(
    State(a): State<Arc<Alerting>>,
    Path(fingerprint): Path<String>,
    Query(p): Query<AckParams>,
) -> Response {
    let by = p.by.unwrap_or_else(|| "link".into());
    match a.acknowledge(&fingerprint, &by) {
        Ok(groups) => {
            Json(json!({"acknowledged": fingerprint, "by": by, "groups": groups})).into_response()
        }
        Err(e) => error(e),
    }
}

async fn test_receiver(State(a): State<Arc<Alerting>>, Path(name): Path<String>) -> Response {
    match a.test_receiver(&name).await {
        Ok(results) => {
            let ok = results.iter().all(|(_, r)| r.is_ok());
            let body: Vec<_> = results
                .into_iter()
                .map(|(channel, r)| json!({"channel": channel, "ok": r.is_ok(), "error": r.err()}))
                .collect();
            let code = if ok {
                StatusCode::OK
            } else {
                StatusCode::BAD_GATEWAY
            };
            (code, Json(body)).into_response()
        }
        Err(e) => error(e),
    }
}

async fn list_alerts(State(a): State<Arc<Alerting>>) -> Response {
    let now = a.now();
    let (_, pipeline) = a.snapshot_runtime();
    let out: Vec<_> = pipeline
        .alerts
        .values()
        .filter(|x| x.status == Status::Firing)
        .map(|x| {
            let mute = a.with_setup(|setup| pipeline.muted(setup, x, now));
            let silenced_by: Vec<String> = a.silenced(&x.labels, now).into_iter().collect();
            let receivers: Vec<_> = pipeline
                .groups
                .values()
                .filter(|g| g.alerts.contains(&x.fingerprint))
                .map(|g| json!({"name": g.receiver}))
                .collect();
            json!({
                "labels": x.labels,
                "annotations": x.annotations,
                "startsAt": rfc3339(x.starts_at),
                "endsAt": x.expires_at.map_or_else(|| "0001-01-01T00:00:00Z".to_string(), rfc3339),
                "updatedAt": rfc3339(now),
                "generatorURL": x.generator_url,
                "fingerprint": x.fingerprint,
                "receivers": receivers,
                "status": {
                    "state": if mute == Mute::No { "active" } else { "suppressed" },
                    "silencedBy": silenced_by,
                    "inhibitedBy": if mute == Mute::Inhibited { vec!["inhibit_rule"] } else { vec![] },
                },
            })
        })
        .collect();
    Json(out).into_response()
}

#[derive(Deserialize)]
struct PostableAlert {
    labels: BTreeMap<String, String>,
    #[serde(default)]
    annotations: BTreeMap<String, String>,
    #[serde(default, rename = "startsAt")]
    starts_at: Option<String>,
    #[serde(default, rename = "endsAt")]
    ends_at: Option<String>,
    #[serde(default, rename = "generatorURL")]
    generator_url: Option<String>,
}

async fn post_alerts(State(a): State<Arc<Alerting>>, bytes: axum::body::Bytes) -> Response {
    let posted: Vec<PostableAlert> = match body(&bytes) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let mut alerts = Vec::with_capacity(posted.len());
    for (i, p) in posted.into_iter().enumerate() {
        let time = |what: &str, s: &Option<String>| -> Result<Option<i64>, Error> {
            s.as_deref()
                .filter(|s| !s.starts_with("0001-01-01"))
                .map(|s| parse_time(&format!("alert {i} {what}"), s))
                .transpose()
        };
        let starts_at = match time("startsAt", &p.starts_at) {
            Ok(t) => t,
            Err(e) => return error(e),
        };
        let ends_at = match time("endsAt", &p.ends_at) {
            Ok(t) => t,
            Err(e) => return error(e),
        };
        alerts.push(PostedAlert {
            labels: p.labels,
            annotations: p.annotations,
            starts_at,
            ends_at,
            generator_url: p.generator_url.unwrap_or_default(),
        });
    }
    match a.post_alerts(alerts) {
        Ok(_) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}

fn silence_json(s: &SilenceDef, now: i64) -> serde_json::Value {
    json!({
        "id": s.id,
        "status": {"state": s.state(now)},
        "updatedAt": rfc3339(s.updated_at),
        "matchers": s.matchers,
        "startsAt": rfc3339(s.starts_at),
        "endsAt": rfc3339(s.ends_at),
        "createdBy": s.created_by,
        "comment": s.comment,
    })
}

async fn list_silences(State(a): State<Arc<Alerting>>) -> Response {
    let now = a.now();
    let snap = a.catalog.snapshot();
    Json(
        snap.silences
            .values()
            .map(|s| silence_json(s, now))
            .collect::<Vec<_>>(),
    )
    .into_response()
}

async fn get_silence(State(a): State<Arc<Alerting>>, Path(id): Path<String>) -> Response {
    let now = a.now();
    match a.catalog.snapshot().silences.get(&id) {
        Some(s) => Json(silence_json(s, now)).into_response(),
        None => error(Error::NotFound(format!("silence `{id}` does not exist"))),
    }
}

#[derive(Deserialize)]
struct PostableSilence {
    #[serde(default)]
    id: Option<String>,
    matchers: Vec<MatcherDef>,
    #[serde(rename = "startsAt")]
    starts_at: String,
    #[serde(rename = "endsAt")]
    ends_at: String,
    #[serde(rename = "createdBy")]
    created_by: String,
    #[serde(default)]
    comment: String,
}

async fn post_silence(State(a): State<Arc<Alerting>>, bytes: axum::body::Bytes) -> Response {
    let p: PostableSilence = match body(&bytes) {
        Ok(p) => p,
        Err(e) => return error(e),
    };
    let (starts_at, ends_at) = match (
        parse_time("startsAt", &p.starts_at),
        parse_time("endsAt", &p.ends_at),
    ) {
        (Ok(s), Ok(e)) => (s, e),
        (Err(e), _) | (_, Err(e)) => return error(e),
    };
    let def = SilenceDef {
        id: p.id.unwrap_or_default(),
        matchers: p.matchers,
        starts_at,
        ends_at,
        created_by: p.created_by,
        comment: p.comment,
        updated_at: 0,
    };
    match a.put_silence(def).await {
        Ok(id) => Json(json!({"silenceID": id})).into_response(),
        Err(e) => error(e),
    }
}

async fn expire_silence(State(a): State<Arc<Alerting>>, Path(id): Path<String>) -> Response {
    match a.expire_silence(&id).await {
        Ok(()) => StatusCode::OK.into_response(),
        Err(e) => error(e),
    }
}
