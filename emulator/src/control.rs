//! The control API under `/_emulator/…` (JSON in/out): accounts and credentials, mailbox and
//! calendar mutations, history expiry, sync-token invalidation, token revocation, faults,
//! clock, watch expiry, counters, truth snapshots and push-token minting.

// Handlers return early with a ready `Response`; its size is irrelevant here.
#![allow(clippy::result_large_err)]

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::config::{FaultRule, NotificationFaults};
use crate::pubsub::MintRequest;
use crate::state::EmulatorState;
use crate::store::{Source, fmt_id, parse_id};
use crate::util::{b64_decode_any, lock};

type St = State<Arc<EmulatorState>>;

pub(crate) use crate::control_response::{api_err, err, parse_json};

pub fn router() -> Router<Arc<EmulatorState>> {
    Router::new()
        .route("/_emulator/accounts", post(create_account))
        .route("/_emulator/accounts/{email}", get(get_account))
        .route("/_emulator/accounts/{email}/snapshot", get(snapshot))
        .route("/_emulator/accounts/{email}/messages", post(deliver))
        .route(
            "/_emulator/accounts/{email}/messages/{id}/labels",
            post(change_labels),
        )
        .route(
            "/_emulator/accounts/{email}/messages/{id}",
            delete(delete_message),
        )
        .route(
            "/_emulator/accounts/{email}/messages/{id}/corrupt",
            post(corrupt_message),
        )
        .route("/_emulator/accounts/{email}/labels", post(create_label))
        .route(
            "/_emulator/accounts/{email}/history/expire",
            post(expire_history),
        )
        .route(
            "/_emulator/accounts/{email}/watch/expire",
            post(expire_watch),
        )
        .route("/_emulator/tokens/revoke", post(revoke_tokens))
        .route(
            "/_emulator/faults",
            get(get_faults).put(set_faults).delete(clear_faults),
        )
        .route("/_emulator/clock", get(get_clock).post(set_clock))
        .route("/_emulator/settings", post(settings))
        .route("/_emulator/counters", get(counters))
        .route("/_emulator/counters/reset", post(reset_counters))
        .route("/_emulator/push/mint", post(mint))
        .merge(crate::calendar::control::router())
}

fn account_json(st: &EmulatorState, email: &str, refresh: &str) -> Value {
    json!({
        "email": email,
        "clientId": crate::DEFAULT_CLIENT_ID,
        "clientSecret": crate::DEFAULT_CLIENT_SECRET,
        "projectId": crate::DEFAULT_PROJECT_ID,
        "refreshToken": refresh,
        "scopes": crate::oauth::DEFAULT_SCOPES,
        "tokenUri": format!("{}/token", lock(&st.base_url)),
    })
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct CreateAccount {
    email: String,
    #[serde(default)]
    messages: Option<usize>,
    #[serde(default)]
    seed: Option<u64>,
}

async fn create_account(State(st): St, body: axum::body::Bytes) -> Response {
    let req: CreateAccount = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if !req.email.contains('@') {
        return err(StatusCode::BAD_REQUEST, "email must contain @");
    }
    let email = req.email.to_ascii_lowercase();
    let refresh = st.create_account(
        &email,
        req.messages.unwrap_or(0),
        req.seed.unwrap_or(st.config.seed),
    );
    (
        StatusCode::CREATED,
        Json(account_json(&st, &email, &refresh)),
    )
        .into_response()
}

async fn get_account(State(st): St, Path(email): Path<String>) -> Response {
    let email = email.to_ascii_lowercase();
    if !st.has_account(&email) {
        return err(StatusCode::NOT_FOUND, "unknown account");
    }
    let refresh = st.create_account(&email, 0, st.config.seed);
    Json(account_json(&st, &email, &refresh)).into_response()
}

async fn snapshot(State(st): St, Path(email): Path<String>) -> Response {
    match lock(&st.accounts).get(&email.to_ascii_lowercase()) {
        Some(a) => Json(json!(a.mailbox.snapshot())).into_response(),
        None => err(StatusCode::NOT_FOUND, "unknown account"),
    }
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Deliver {
    /// RFC 2822 message, base64/base64url.
    raw: Option<String>,
    /// RFC 2822 message as plain text.
    raw_text: Option<String>,
    label_ids: Option<Vec<String>>,
    thread_id: Option<String>,
    internal_date: Option<String>,
    /// Re-deliver under this (hex) id, which must not be live.
    id: Option<String>,
}

async fn deliver(State(st): St, Path(email): Path<String>, body: axum::body::Bytes) -> Response {
    let req: Deliver = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let email = email.to_ascii_lowercase();
    let now = st.clock.now_ms();
    let raw = match (req.raw, req.raw_text) {
        (Some(r), _) => match b64_decode_any(&r) {
            Some(b) => Some(b),
            None => return err(StatusCode::BAD_REQUEST, "raw is not base64"),
        },
        (None, Some(t)) => Some(t.into_bytes()),
        (None, None) => None,
    };
    let internal = match req.internal_date.as_deref().map(str::parse::<i64>) {
        Some(Ok(v)) => v,
        Some(Err(_)) => return err(StatusCode::BAD_REQUEST, "internalDate must be epoch ms"),
        None => now,
    };
    let thread = match req.thread_id.as_deref().map(parse_id) {
        Some(Ok(t)) => Some(t),
        Some(Err(e)) => return api_err(e),
        None => None,
    };
    let result = {
        let mut accts = lock(&st.accounts);
        let Some(acct) = accts.get_mut(&email) else {
            return err(StatusCode::NOT_FOUND, "unknown account");
        };
        let mb = &mut acct.mailbox;
        if let Some(id) = req.id.as_deref()
            && let Err(e) = parse_id(id).and_then(|id| mb.reuse_id_once(id))
        {
            return api_err(e);
        }
        match raw {
            Some(bytes) => {
                let e = crate::mime::parse_entity(&bytes, 0);
                let from = crate::mime::header(&e.headers, "From")
                    .map(|f| {
                        f.rsplit_once('<')
                            .map(|(_, a)| a.trim_end_matches('>').to_string())
                            .unwrap_or_else(|| f.to_string())
                    })
                    .unwrap_or_default()
                    .to_ascii_lowercase();
                let has_att = crate::mime::has_attachment(&e);
                let labels = req
                    .label_ids
                    .unwrap_or_else(|| vec!["INBOX".into(), "UNREAD".into()]);
                mb.insert(
                    now,
                    internal,
                    thread,
                    labels,
                    from,
                    has_att,
                    Source::Stored(Arc::new(bytes)),
                )
            }
            None => mb.deliver_generated(now, req.label_ids),
        }
        .map(|(id, h)| {
            (
                id,
                h,
                mb.messages
                    .get(&id)
                    .map(|m| (m.thread_id, m.labels.clone())),
            )
        })
    };
    match result {
        Ok((id, h, Some((tid, labels)))) => {
            st.notify_gmail(&email, &labels);
            (StatusCode::CREATED, Json(json!({"id": fmt_id(id), "threadId": fmt_id(tid), "historyId": h.to_string(), "labelIds": labels}))).into_response()
        }
        Ok(_) => err(StatusCode::INTERNAL_SERVER_ERROR, "message vanished"),
        Err(e) => api_err(e),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Labels {
    add: Vec<String>,
    remove: Vec<String>,
}

async fn change_labels(
    State(st): St,
    Path((email, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: Labels = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let email = email.to_ascii_lowercase();
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return api_err(e),
    };
    let now = st.clock.now_ms();
    let res = {
        let mut accts = lock(&st.accounts);
        let Some(acct) = accts.get_mut(&email) else {
            return err(StatusCode::NOT_FOUND, "unknown account");
        };
        acct.mailbox
            .modify(now, id, &req.add, &req.remove)
            .map(|h| {
                (
                    h,
                    acct.mailbox
                        .messages
                        .get(&id)
                        .map(|m| m.labels.clone())
                        .unwrap_or_default(),
                )
            })
    };
    match res {
        Ok((h, labels)) => {
            let mut touched = labels.clone();
            touched.extend(req.add);
            touched.extend(req.remove);
            if h.is_some() {
                st.notify_gmail(&email, &touched);
            }
            Json(json!({"id": fmt_id(id), "labelIds": labels, "historyId": h.map(|h| h.to_string())})).into_response()
        }
        Err(e) => api_err(e),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Corrupt {
    corrupt: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewLabel {
    name: String,
}

/// Creates a user label (as if the user made it in Gmail); answers its id.
async fn create_label(
    State(st): St,
    Path(email): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: NewLabel = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut accts = lock(&st.accounts);
    let Some(acct) = accts.get_mut(&email.to_ascii_lowercase()) else {
        return err(StatusCode::NOT_FOUND, "unknown account");
    };
    match acct.mailbox.create_label(&req.name, None, None, None) {
        Ok(d) => Json(json!({"id": d.id})).into_response(),
        Err(e) => api_err(e),
    }
}

/// Makes one message's `format=raw` answer corrupt on every fetch (or heals it).
async fn corrupt_message(
    State(st): St,
    Path((email, id)): Path<(String, String)>,
    body: axum::body::Bytes,
) -> Response {
    let req: Corrupt = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let email = email.to_ascii_lowercase();
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return api_err(e),
    };
    let mut set = lock(&st.corrupt);
    if req.corrupt {
        set.insert((email, id));
    } else {
        set.remove(&(email, id));
    }
    Json(json!({"corrupt": req.corrupt})).into_response()
}

async fn delete_message(State(st): St, Path((email, id)): Path<(String, String)>) -> Response {
    let email = email.to_ascii_lowercase();
    let id = match parse_id(&id) {
        Ok(i) => i,
        Err(e) => return api_err(e),
    };
    let now = st.clock.now_ms();
    let res = {
        let mut accts = lock(&st.accounts);
        let Some(acct) = accts.get_mut(&email) else {
            return err(StatusCode::NOT_FOUND, "unknown account");
        };
        let labels = acct
            .mailbox
            .messages
            .get(&id)
            .map(|m| m.labels.clone())
            .unwrap_or_default();
        acct.mailbox.delete(now, id).map(|h| (h, labels))
    };
    match res {
        Ok((h, labels)) => {
            st.notify_gmail(&email, &labels);
            Json(json!({"historyId": h.to_string()})).into_response()
        }
        Err(e) => api_err(e),
    }
}

async fn expire_history(State(st): St, Path(email): Path<String>) -> Response {
    let mut accts = lock(&st.accounts);
    let Some(acct) = accts.get_mut(&email.to_ascii_lowercase()) else {
        return err(StatusCode::NOT_FOUND, "unknown account");
    };
    acct.mailbox.expire_history();
    Json(json!({"historyFloor": acct.mailbox.history_floor.to_string(), "historyId": acct.mailbox.history_id.to_string()})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct ExpireWatch {
    expiration_ms: Option<i64>,
}

async fn expire_watch(
    State(st): St,
    Path(email): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req: ExpireWatch = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let now = st.clock.now_ms();
    let mut accts = lock(&st.accounts);
    let Some(acct) = accts.get_mut(&email.to_ascii_lowercase()) else {
        return err(StatusCode::NOT_FOUND, "unknown account");
    };
    match acct.mailbox.watch.as_mut() {
        Some(w) => {
            w.expiration_ms = req.expiration_ms.unwrap_or(now);
            Json(json!({"expiration": w.expiration_ms.to_string()})).into_response()
        }
        None => err(StatusCode::NOT_FOUND, "no active watch"),
    }
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct Revoke {
    token: Option<String>,
    email: Option<String>,
}

async fn revoke_tokens(State(st): St, body: axum::body::Bytes) -> Response {
    let req: Revoke = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let mut o = lock(&st.oauth);
    let n = match (req.token, req.email) {
        (Some(t), _) => usize::from(o.revoke(&t)),
        (None, Some(e)) => o.revoke_account(&e),
        (None, None) => return err(StatusCode::BAD_REQUEST, "give token or email"),
    };
    Json(json!({"revoked": n})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
struct FaultSet {
    seed: Option<u64>,
    rules: Vec<FaultRule>,
    notifications: NotificationFaults,
}

async fn get_faults(State(st): St) -> Response {
    let f = lock(&st.faults);
    Json(json!({"seed": f.seed, "rules": f.rules, "notifications": f.notifications}))
        .into_response()
}

async fn set_faults(State(st): St, body: axum::body::Bytes) -> Response {
    let req: FaultSet = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let seed = req
        .seed
        .unwrap_or(st.config.fault_seed.unwrap_or(st.config.seed));
    lock(&st.faults).set(seed, req.rules, req.notifications);
    Json(json!({"ok": true})).into_response()
}

async fn clear_faults(State(st): St) -> Response {
    let seed = st.config.fault_seed.unwrap_or(st.config.seed);
    lock(&st.faults).set(seed, Vec::new(), NotificationFaults::default());
    Json(json!({"ok": true})).into_response()
}

async fn get_clock(State(st): St) -> Response {
    Json(json!({"nowMs": st.clock.now_ms(), "offsetMs": st.clock.offset_ms()})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct ClockSet {
    offset_ms: Option<i64>,
    advance_ms: Option<i64>,
}

async fn set_clock(State(st): St, body: axum::body::Bytes) -> Response {
    let req: ClockSet = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Some(o) = req.offset_ms {
        st.clock.set_offset_ms(o);
    }
    if let Some(a) = req.advance_ms {
        st.clock.advance_ms(a);
    }
    Json(json!({"nowMs": st.clock.now_ms(), "offsetMs": st.clock.offset_ms()})).into_response()
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
struct Settings {
    auto_consent: Option<bool>,
    watch_ttl_ms: Option<i64>,
}

async fn settings(State(st): St, body: axum::body::Bytes) -> Response {
    let req: Settings = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if let Some(a) = req.auto_consent {
        lock(&st.oauth).auto_consent = a;
    }
    if let Some(t) = req.watch_ttl_ms {
        st.watch_ttl_ms.store(t, Ordering::Relaxed);
    }
    Json(json!({"autoConsent": lock(&st.oauth).auto_consent, "watchTtlMs": st.watch_ttl_ms.load(Ordering::Relaxed)})).into_response()
}

async fn counters(State(st): St) -> Response {
    Json(json!(st.counters())).into_response()
}

async fn reset_counters(State(st): St) -> Response {
    *lock(&st.counters) = crate::state::Counters::default();
    Json(json!({"ok": true})).into_response()
}

async fn mint(State(st): St, body: axum::body::Bytes) -> Response {
    let req: MintRequest = match parse_json(&body) {
        Ok(r) => r,
        Err(e) => return e,
    };
    match crate::pubsub::mint_and_maybe_deliver(&st, req).await {
        Ok(v) => Json(v).into_response(),
        Err(e) => err(StatusCode::BAD_REQUEST, e.to_string()),
    }
}
