//! The full `status` reply as JSON: the daemon's snapshot (`DaemonStatus`), plus feed
//! consumers and their lag, sinks, push health, and the service additions (socket path,
//! commit, daemon health with its summary and problems, each account's health and recent
//! errors). `ctl status`, `ctl health`, the status page and the metrics all read this one
//! shape, so they never disagree. Every addition is a new key (the schema only grows).

use crate::daemon_core::{AdminError, DaemonCore};
use crate::service::health::{self, AccountHealth};
use mailsync_actors::status::DaemonStatus;
use serde_json::{Value, json};

/// Feed consumers: name, acknowledged sequence and lag behind the feed's head.
pub fn consumers_json(core: &DaemonCore) -> Value {
    let feed = core.store().feed();
    let last = feed.last_seq().unwrap_or(0);
    match feed.consumers() {
        Ok(list) => Value::Array(
            list.into_iter()
                .map(|(name, acked)| {
                    json!({"consumer": name, "acked": acked, "lag": last.saturating_sub(acked)})
                })
                .collect(),
        ),
        Err(e) => json!({"error": e.to_string()}),
    }
}

/// The health of every account in a snapshot.
pub fn healths(status: &DaemonStatus) -> Vec<AccountHealth> {
    status.accounts.iter().map(health::account_health).collect()
}

/// The one-line summary of the daemon's accounts right now (`STATUS=`).
pub async fn summary_line(core: &DaemonCore) -> String {
    match core.status().await {
        Ok(s) => health::summary(&healths(&s)),
        Err(e) => format!("no status: {e}"),
    }
}

/// Asks the daemon for its status and builds the full reply.
pub async fn status_json(core: &DaemonCore) -> Result<Value, AdminError> {
    let status = core.status().await?;
    Ok(render(core, &status).await)
}

/// Builds the full reply from a snapshot already taken.
pub async fn render(core: &DaemonCore, status: &DaemonStatus) -> Value {
    let mut v = serde_json::to_value(status).unwrap_or(Value::Null);
    let healths = healths(status);
    let (overall, problems) = health::daemon_health(&healths);
    let socket = core.config_snapshot().await.socket_path;
    if let Some(accounts) = v.get_mut("accounts").and_then(Value::as_array_mut) {
        for (entry, h) in accounts.iter_mut().zip(&healths) {
            if let Some(obj) = entry.as_object_mut() {
                obj.insert("health".into(), json!(h.health));
                obj.insert("health_reasons".into(), json!(h.reasons));
                obj.insert(
                    "recent_errors".into(),
                    json!(core.service().recent_errors(&h.account)),
                );
            }
        }
    }
    if let Some(obj) = v.as_object_mut() {
        obj.insert("consumers".into(), consumers_json(core));
        obj.insert("sinks".into(), core.sinks_json().await);
        obj.insert(
            "push".into(),
            core.push_health().json(crate::push_health::now_ms()),
        );
        obj.insert("commit".into(), json!(crate::service::COMMIT));
        obj.insert("socket".into(), json!(socket.display().to_string()));
        if let Some(addr) = core.service().metrics_addr() {
            obj.insert("metrics_url".into(), json!(format!("http://{addr}/")));
        }
        obj.insert(
            "health".into(),
            json!({
                "state": overall,
                "summary": health::summary(&healths),
                "problems": problems,
            }),
        );
    }
    v
}
