//! Gmail v1 endpoints (`/gmail/v1/users/{userId}/…`): routing and handlers for profile,
//! labels, messages (list/get/attachments/modify/trash/untrash/delete/batchModify), history
//! and watch/stop, with Google's scope rules, defaults, limits and error bodies.

use axum::http::Method;

use crate::error::ApiError;
use crate::http::{ApiRequest, ApiResponse, Op as HttpOp, Route};
use crate::mime;
use crate::oauth::{
    Principal, SCOPE_LABELS, SCOPE_MAIL, SCOPE_METADATA, SCOPE_MODIFY, SCOPE_READONLY,
};
use crate::pubsub::Outbound;
use crate::query::{self, Candidate, normalize_label};
use crate::quota::Api;
use crate::state::EmulatorState;
use crate::store::{Change, Mailbox, MsgMeta, Watch, fmt_id, parse_id};
use crate::util::{b64url, lock};
use crate::wire;

mod listing;
use listing::{get_thread, list_history, list_messages, list_threads};

const READ: &[&str] = &[SCOPE_READONLY, SCOPE_MODIFY, SCOPE_METADATA, SCOPE_MAIL];
const READ_BODY: &[&str] = &[SCOPE_READONLY, SCOPE_MODIFY, SCOPE_MAIL];
const WRITE: &[&str] = &[SCOPE_MODIFY, SCOPE_MAIL];
const LABELS_READ: &[&str] = &[
    SCOPE_READONLY,
    SCOPE_MODIFY,
    SCOPE_METADATA,
    SCOPE_MAIL,
    SCOPE_LABELS,
];
const LABELS_WRITE: &[&str] = &[SCOPE_MODIFY, SCOPE_MAIL, SCOPE_LABELS];

pub use crate::gmail_op::{Op, ThreadAction};

fn r(name: &'static str, params: &'static [&'static str], op: Op) -> Option<Route> {
    Some(Route {
        api: Api::Gmail,
        name,
        params,
        op: HttpOp::Gmail(op),
    })
}

/// Maps `/gmail/v1/users/{userId}/…` to an operation.
pub fn route(method: &Method, segs: &[String]) -> Option<Route> {
    if segs.len() < 4 || segs[1] != "v1" || segs[2] != "users" {
        return None;
    }
    let u = segs[3].clone();
    let rest: Vec<&str> = segs[4..].iter().map(String::as_str).collect();
    let m = method.as_str();
    const LIST_P: &[&str] = &[
        "q",
        "labelIds",
        "maxResults",
        "pageToken",
        "includeSpamTrash",
    ];
    const GET_P: &[&str] = &["format", "metadataHeaders"];
    const HIST_P: &[&str] = &[
        "startHistoryId",
        "historyTypes",
        "labelId",
        "maxResults",
        "pageToken",
    ];
    match (m, rest.as_slice()) {
        ("GET", ["profile"]) => r("gmail.users.getProfile", &[], Op::Profile(u)),
        ("GET", ["labels"]) => r("gmail.users.labels.list", &[], Op::LabelsList(u)),
        ("POST", ["labels"]) => r("gmail.users.labels.create", &[], Op::LabelsCreate(u)),
        ("GET", ["labels", id]) => r(
            "gmail.users.labels.get",
            &[],
            Op::LabelsGet(u, id.to_string()),
        ),
        ("PATCH", ["labels", id]) => r(
            "gmail.users.labels.patch",
            &[],
            Op::LabelsPatch(u, id.to_string(), false),
        ),
        ("PUT", ["labels", id]) => r(
            "gmail.users.labels.update",
            &[],
            Op::LabelsPatch(u, id.to_string(), true),
        ),
        ("DELETE", ["labels", id]) => r(
            "gmail.users.labels.delete",
            &[],
            Op::LabelsDelete(u, id.to_string()),
        ),
        ("GET", ["messages"]) => r("gmail.users.messages.list", LIST_P, Op::MessagesList(u)),
        ("GET", ["threads"]) => r("gmail.users.threads.list", LIST_P, Op::ThreadsList(u)),
        ("GET", ["threads", id]) => r(
            "gmail.users.threads.get",
            GET_P,
            Op::ThreadsGet(u, id.to_string()),
        ),
        ("POST", ["threads", id, "modify"]) => r(
            "gmail.users.threads.modify",
            &[],
            Op::ThreadsModify(u, id.to_string(), ThreadAction::Modify),
        ),
        ("POST", ["threads", id, "trash"]) => r(
            "gmail.users.threads.trash",
            &[],
            Op::ThreadsModify(u, id.to_string(), ThreadAction::Trash),
        ),
        ("POST", ["threads", id, "untrash"]) => r(
            "gmail.users.threads.untrash",
            &[],
            Op::ThreadsModify(u, id.to_string(), ThreadAction::Untrash),
        ),
        ("DELETE", ["threads", id]) => r(
            "gmail.users.threads.delete",
            &[],
            Op::ThreadsModify(u, id.to_string(), ThreadAction::Delete),
        ),
        ("POST", ["messages", "batchModify"]) => {
            r("gmail.users.messages.batchModify", &[], Op::BatchModify(u))
        }
        ("GET", ["messages", id]) => r(
            "gmail.users.messages.get",
            GET_P,
            Op::MessagesGet(u, id.to_string()),
        ),
        ("DELETE", ["messages", id]) => r(
            "gmail.users.messages.delete",
            &[],
            Op::Delete(u, id.to_string()),
        ),
        ("POST", ["messages", id, "modify"]) => r(
            "gmail.users.messages.modify",
            &[],
            Op::Modify(u, id.to_string()),
        ),
        ("POST", ["messages", id, "trash"]) => r(
            "gmail.users.messages.trash",
            &[],
            Op::Trash(u, id.to_string()),
        ),
        ("POST", ["messages", id, "untrash"]) => r(
            "gmail.users.messages.untrash",
            &[],
            Op::Untrash(u, id.to_string()),
        ),
        ("GET", ["messages", mid, "attachments", aid]) => r(
            "gmail.users.messages.attachments.get",
            &[],
            Op::AttachmentsGet(u, mid.to_string(), aid.to_string()),
        ),
        ("GET", ["history"]) => r("gmail.users.history.list", HIST_P, Op::HistoryList(u)),
        ("POST", ["watch"]) => r("gmail.users.watch", &[], Op::Watch(u)),
        ("POST", ["stop"]) => r("gmail.users.stop", &[], Op::Stop(u)),
        _ => None,
    }
}

fn need(p: &Principal, scopes: &[&str]) -> Result<(), ApiError> {
    if p.has_any(scopes) {
        Ok(())
    } else {
        Err(ApiError::insufficient_scope())
    }
}

/// `me` or the caller's own address; anything else is refused as Google does.
fn resolve_user(p: &Principal, user: &str) -> Result<String, ApiError> {
    if user == "me" || user.eq_ignore_ascii_case(&p.email) {
        Ok(p.email.to_ascii_lowercase())
    } else {
        Err(ApiError::forbidden(
            "forbidden",
            format!("Delegation denied for {}", p.email),
        ))
    }
}

fn label_json(mb: &Mailbox, id: &str, with_counts: bool) -> Option<wire::Label> {
    let d = mb.labels.get(id)?;
    let mut l = wire::Label {
        id: d.id.clone(),
        name: d.name.clone(),
        kind: if d.system {
            "system".into()
        } else {
            "user".into()
        },
        message_list_visibility: d.message_list_visibility.clone(),
        label_list_visibility: d.label_list_visibility.clone(),
        messages_total: None,
        messages_unread: None,
        threads_total: None,
        threads_unread: None,
        color: d.color.clone(),
    };
    if with_counts {
        let mut total = 0u32;
        let mut unread = 0u32;
        let mut threads = std::collections::BTreeSet::new();
        let mut uthreads = std::collections::BTreeSet::new();
        for m in mb.messages.values() {
            if m.labels.iter().any(|x| x == id) {
                total += 1;
                threads.insert(m.thread_id);
                if m.labels.iter().any(|x| x == "UNREAD") {
                    unread += 1;
                    uthreads.insert(m.thread_id);
                }
            }
        }
        l.messages_total = Some(total);
        l.messages_unread = Some(unread);
        l.threads_total = Some(threads.len() as u32);
        l.threads_unread = Some(uthreads.len() as u32);
    } else {
        l.color = None;
    }
    Some(l)
}

/// Builds the `Message` JSON for `messages.get`.
fn render_message(
    raw: std::sync::Arc<Vec<u8>>,
    id: u64,
    m: &MsgMeta,
    format: &str,
    headers: &[String],
) -> wire::Message {
    let entity = mime::parse_entity(&raw, 0);
    let id_s = fmt_id(id);
    let mut msg = wire::Message {
        id: id_s.clone(),
        thread_id: fmt_id(m.thread_id),
        label_ids: m.labels.clone(),
        snippet: mime::snippet(&entity),
        size_estimate: raw.len() as u32,
        history_id: m.history_id.to_string(),
        internal_date: m.internal_date.to_string(),
        payload: None,
        raw: None,
    };
    match format {
        // Gmail pads `raw` (base64url with `=`); the client must accept both forms.
        "raw" => msg.raw = Some(crate::util::b64url_padded(&raw)),
        "metadata" => {
            let filter = if headers.is_empty() {
                None
            } else {
                Some(headers)
            };
            msg.payload = Some(mime::to_part(&entity, "", &id_s, false, filter));
        }
        "full" => msg.payload = Some(mime::to_part(&entity, "", &id_s, true, None)),
        _ => {}
    }
    msg
}

fn modified_ref(mb: &Mailbox, id: u64) -> Result<ApiResponse, ApiError> {
    let m = mb.messages.get(&id).ok_or_else(ApiError::not_found)?;
    Ok(ApiResponse::json(&wire::MessageRef {
        id: fmt_id(id),
        thread_id: fmt_id(m.thread_id),
        label_ids: Some(m.labels.clone()),
    }))
}

fn check_visibility(body: &wire::LabelRequest) -> Result<(), ApiError> {
    if let Some(v) = &body.message_list_visibility
        && !matches!(v.as_str(), "show" | "hide")
    {
        return Err(ApiError::invalid_param(
            "messageListVisibility",
            format!("Invalid value '{v}'"),
        ));
    }
    if let Some(v) = &body.label_list_visibility
        && !matches!(v.as_str(), "labelShow" | "labelShowIfUnread" | "labelHide")
    {
        return Err(ApiError::invalid_param(
            "labelListVisibility",
            format!("Invalid value '{v}'"),
        ));
    }
    Ok(())
}

/// Runs one Gmail operation.
pub fn handle(
    st: &EmulatorState,
    p: &Principal,
    op: &Op,
    req: &ApiRequest,
) -> Result<ApiResponse, ApiError> {
    let now = st.clock.now_ms();
    let mut touched: Option<(String, Vec<String>)> = None;
    let mut deferred: Option<(u64, String, u64, MsgMeta, String)> = None;
    let result = {
        let mut accts = lock(&st.accounts);
        let user = match op {
            Op::Profile(u)
            | Op::LabelsList(u)
            | Op::LabelsGet(u, _)
            | Op::LabelsCreate(u)
            | Op::LabelsPatch(u, _, _)
            | Op::LabelsDelete(u, _)
            | Op::MessagesList(u)
            | Op::ThreadsList(u)
            | Op::ThreadsGet(u, _)
            | Op::ThreadsModify(u, _, _)
            | Op::MessagesGet(u, _)
            | Op::AttachmentsGet(u, _, _)
            | Op::Modify(u, _)
            | Op::Trash(u, _)
            | Op::Untrash(u, _)
            | Op::Delete(u, _)
            | Op::BatchModify(u)
            | Op::HistoryList(u)
            | Op::Watch(u)
            | Op::Stop(u) => resolve_user(p, u)?,
        };
        let acct = accts.get_mut(&user).ok_or_else(ApiError::not_found)?;
        let mb = &mut acct.mailbox;
        mb.prune(now);
        match op {
            Op::Profile(_) => {
                need(p, READ)?;
                Ok(ApiResponse::json(&wire::Profile {
                    email_address: mb.email.clone(),
                    messages_total: mb.messages.len() as u32,
                    threads_total: mb.threads_total() as u32,
                    history_id: mb.history_id.to_string(),
                }))
            }
            Op::LabelsList(_) => {
                need(p, LABELS_READ)?;
                let labels = mb
                    .labels
                    .keys()
                    .filter_map(|id| label_json(mb, id, false))
                    .collect();
                Ok(ApiResponse::json(&wire::Labels { labels }))
            }
            Op::LabelsGet(_, id) => {
                need(p, LABELS_READ)?;
                label_json(mb, id, true)
                    .map(|l| ApiResponse::json(&l))
                    .ok_or_else(ApiError::not_found)
            }
            Op::LabelsCreate(_) => {
                need(p, LABELS_WRITE)?;
                let body: wire::LabelRequest = req.json_body()?;
                check_visibility(&body)?;
                let name = body
                    .name
                    .ok_or_else(|| ApiError::invalid_argument("Invalid label name"))?;
                let d = mb.create_label(
                    &name,
                    body.message_list_visibility,
                    body.label_list_visibility,
                    body.color,
                )?;
                label_json(mb, &d.id, false)
                    .map(|mut l| {
                        l.color = d.color.clone();
                        ApiResponse::json(&l)
                    })
                    .ok_or_else(ApiError::backend_error)
            }
            Op::LabelsPatch(_, id, replace) => {
                need(p, LABELS_WRITE)?;
                let body: wire::LabelRequest = req.json_body()?;
                check_visibility(&body)?;
                let def = mb.labels.get(id).cloned().ok_or_else(ApiError::not_found)?;
                if def.system {
                    return Err(ApiError::bad_request("Invalid update request"));
                }
                if let Some(bid) = &body.id
                    && bid != id
                {
                    return Err(ApiError::bad_request("Invalid update request"));
                }
                if *replace && body.name.is_none() {
                    return Err(ApiError::invalid_argument("Invalid label name"));
                }
                if let Some(n) = &body.name
                    && mb
                        .labels
                        .values()
                        .any(|l| l.id != *id && l.name.to_lowercase() == n.trim().to_lowercase())
                {
                    return Err(ApiError::new(
                        409,
                        "failedPrecondition",
                        "global",
                        "Label name exists or conflicts",
                    ));
                }
                let d = mb.labels.get_mut(id).ok_or_else(ApiError::not_found)?;
                if let Some(n) = body.name {
                    d.name = n.trim().to_string();
                }
                if body.message_list_visibility.is_some() || *replace {
                    d.message_list_visibility =
                        body.message_list_visibility.or(Some("show".into()));
                }
                if body.label_list_visibility.is_some() || *replace {
                    d.label_list_visibility =
                        body.label_list_visibility.or(Some("labelShow".into()));
                }
                if body.color.is_some() || *replace {
                    d.color = body.color;
                }
                let color = d.color.clone();
                label_json(mb, id, false)
                    .map(|mut l| {
                        l.color = color;
                        ApiResponse::json(&l)
                    })
                    .ok_or_else(ApiError::backend_error)
            }
            Op::LabelsDelete(_, id) => {
                need(p, LABELS_WRITE)?;
                mb.delete_label(now, id)?;
                touched = Some((user.clone(), vec![id.clone()]));
                Ok(ApiResponse::empty(204))
            }
            Op::MessagesList(_) => {
                need(p, READ)?;
                list_messages(mb, p, req, now)
            }
            Op::ThreadsList(_) => {
                need(p, READ)?;
                list_threads(mb, p, req, now)
            }
            Op::ThreadsGet(_, id) => {
                need(p, READ)?;
                get_thread(mb, p, req, id)
            }
            Op::ThreadsModify(_, id, action) => {
                need(
                    p,
                    if *action == ThreadAction::Delete {
                        &[SCOPE_MAIL]
                    } else {
                        WRITE
                    },
                )?;
                let tid = parse_id(id)?;
                let ids: Vec<u64> = mb
                    .messages
                    .iter()
                    .filter(|(_, m)| m.thread_id == tid)
                    .map(|(k, _)| *k)
                    .collect();
                if ids.is_empty() {
                    return Err(ApiError::not_found());
                }
                let body: wire::ModifyRequest = if *action == ThreadAction::Modify {
                    let b: wire::ModifyRequest = req.json_body()?;
                    if b.add_label_ids.is_empty() && b.remove_label_ids.is_empty() {
                        return Err(ApiError::invalid_argument(
                            "No label add or removes specified",
                        ));
                    }
                    b
                } else {
                    wire::ModifyRequest::default()
                };
                let mut all = body.add_label_ids.clone();
                all.extend(body.remove_label_ids.iter().cloned());
                for mid in &ids {
                    all.extend(
                        mb.messages
                            .get(mid)
                            .map(|m| m.labels.clone())
                            .unwrap_or_default(),
                    );
                    match action {
                        ThreadAction::Modify => {
                            mb.modify(now, *mid, &body.add_label_ids, &body.remove_label_ids)?;
                        }
                        ThreadAction::Trash => {
                            mb.trash(now, *mid)?;
                        }
                        ThreadAction::Untrash => {
                            mb.untrash(now, *mid)?;
                        }
                        ThreadAction::Delete => {
                            mb.delete(now, *mid)?;
                        }
                    }
                }
                all.push("TRASH".into());
                touched = Some((user.clone(), all));
                if *action == ThreadAction::Delete {
                    Ok(ApiResponse::empty(204))
                } else {
                    let msgs: Vec<wire::MessageRef> = ids
                        .iter()
                        .filter_map(|mid| {
                            mb.messages.get(mid).map(|m| wire::MessageRef {
                                id: fmt_id(*mid),
                                thread_id: fmt_id(tid),
                                label_ids: Some(m.labels.clone()),
                            })
                        })
                        .collect();
                    Ok(ApiResponse::json(
                        &serde_json::json!({"id": fmt_id(tid), "messages": msgs}),
                    ))
                }
            }
            Op::MessagesGet(_, id) => {
                need(p, READ)?;
                let format = req.param("format").unwrap_or("full").to_ascii_lowercase();
                if !matches!(format.as_str(), "minimal" | "metadata" | "full" | "raw") {
                    return Err(ApiError::invalid_param(
                        "format",
                        format!("Invalid value '{format}' for format"),
                    ));
                }
                if p.metadata_restricted() && (format == "full" || format == "raw") {
                    return Err(ApiError::forbidden(
                        "forbidden",
                        format!(
                            "Metadata scope doesn't allow format {}",
                            format.to_ascii_uppercase()
                        ),
                    ));
                }
                let id = parse_id(id)?;
                let m = mb.messages.get(&id).ok_or_else(ApiError::not_found)?;
                // Rendering happens after the mailbox lock is released.
                deferred = Some((mb.account_hash, mb.email.clone(), id, m.clone(), format));
                Ok(ApiResponse::empty(200))
            }
            Op::AttachmentsGet(_, mid, aid) => {
                need(p, READ_BODY)?;
                if p.metadata_restricted() {
                    return Err(ApiError::insufficient_scope());
                }
                let id = parse_id(mid)?;
                let m = mb.messages.get(&id).ok_or_else(ApiError::not_found)?;
                let raw = mb.raw(m);
                let entity = mime::parse_entity(&raw, 0);
                let part_id = aid
                    .strip_prefix("ANGjdJ_")
                    .and_then(crate::util::b64_decode_any)
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| {
                        s.split_once(':')
                            .filter(|(m, _)| *m == mid.as_str())
                            .map(|(_, p)| p.to_string())
                    })
                    .ok_or_else(|| ApiError::invalid_argument("Invalid attachment token"))?;
                let part = mime::find_part(&entity, &part_id)
                    .filter(|e| !e.is_multipart)
                    .ok_or_else(ApiError::not_found)?;
                Ok(ApiResponse::json(&wire::PartBody {
                    attachment_id: Some(aid.clone()),
                    size: part.body.len() as u32,
                    data: Some(b64url(&part.body)),
                }))
            }
            Op::Modify(_, id) => {
                need(p, WRITE)?;
                let body: wire::ModifyRequest = req.json_body()?;
                let id = parse_id(id)?;
                if body.add_label_ids.is_empty() && body.remove_label_ids.is_empty() {
                    return Err(ApiError::invalid_argument(
                        "No label add or removes specified",
                    ));
                }
                if mb
                    .modify(now, id, &body.add_label_ids, &body.remove_label_ids)?
                    .is_some()
                {
                    let mut l = body.add_label_ids.clone();
                    l.extend(body.remove_label_ids.iter().cloned());
                    l.extend(
                        mb.messages
                            .get(&id)
                            .map(|m| m.labels.clone())
                            .unwrap_or_default(),
                    );
                    touched = Some((user.clone(), l));
                }
                modified_ref(mb, id)
            }
            Op::Trash(_, id) | Op::Untrash(_, id) => {
                need(p, WRITE)?;
                let id = parse_id(id)?;
                let changed = if matches!(op, Op::Trash(..)) {
                    mb.trash(now, id)?
                } else {
                    mb.untrash(now, id)?
                };
                if changed.is_some() {
                    let mut l = mb
                        .messages
                        .get(&id)
                        .map(|m| m.labels.clone())
                        .unwrap_or_default();
                    l.push("TRASH".into());
                    touched = Some((user.clone(), l));
                }
                modified_ref(mb, id)
            }
            Op::Delete(_, id) => {
                need(p, &[SCOPE_MAIL])?;
                let id = parse_id(id)?;
                let labels = mb
                    .messages
                    .get(&id)
                    .map(|m| m.labels.clone())
                    .unwrap_or_default();
                mb.delete(now, id)?;
                touched = Some((user.clone(), labels));
                Ok(ApiResponse::empty(204))
            }
            Op::BatchModify(_) => {
                need(p, WRITE)?;
                let body: wire::BatchModifyRequest = req.json_body()?;
                if body.ids.is_empty() {
                    return Err(ApiError::invalid_argument("ids must not be empty"));
                }
                if body.ids.len() > 1000 {
                    return Err(ApiError::invalid_argument("Too many ids (max 1000)"));
                }
                let ids: Result<Vec<u64>, ApiError> =
                    body.ids.iter().map(|i| parse_id(i)).collect();
                let ids = ids?;
                let mut all = Vec::new();
                for id in ids {
                    if !mb.messages.contains_key(&id) {
                        continue;
                    }
                    if mb
                        .modify(now, id, &body.add_label_ids, &body.remove_label_ids)?
                        .is_some()
                    {
                        all.extend(
                            mb.messages
                                .get(&id)
                                .map(|m| m.labels.clone())
                                .unwrap_or_default(),
                        );
                    }
                }
                all.extend(body.add_label_ids.iter().cloned());
                all.extend(body.remove_label_ids.iter().cloned());
                touched = Some((user.clone(), all));
                Ok(ApiResponse::empty(204))
            }
            Op::HistoryList(_) => {
                need(p, READ)?;
                list_history(mb, req)
            }
            Op::Watch(_) => {
                need(p, READ)?;
                let body: wire::WatchRequest = req.json_body()?;
                let expected = format!("projects/{}/topics/", p.project);
                let topic = body.topic_name.unwrap_or_default();
                let tname = topic.strip_prefix(&expected).unwrap_or("");
                if tname.is_empty() || tname.contains('/') {
                    return Err(ApiError::invalid_argument(format!(
                        "Invalid topicName does not match projects/{}/topics/*",
                        p.project
                    )));
                }
                for l in &body.label_ids {
                    if !mb.label_exists(l) {
                        return Err(ApiError::bad_request(format!("Invalid label: {l}")));
                    }
                }
                let behavior = body
                    .label_filter_behavior
                    .or(body.label_filter_action)
                    .unwrap_or_else(|| "include".into());
                let include = match behavior.to_ascii_lowercase().as_str() {
                    "include" => true,
                    "exclude" => false,
                    other => {
                        return Err(ApiError::invalid_param(
                            "labelFilterBehavior",
                            format!("Invalid value '{other}'"),
                        ));
                    }
                };
                let ttl = st.watch_ttl_ms.load(std::sync::atomic::Ordering::Relaxed);
                let w = Watch {
                    topic: topic.clone(),
                    label_ids: body.label_ids,
                    include,
                    expiration_ms: now + ttl,
                    history_id: mb.history_id,
                };
                mb.watch = Some(w.clone());
                mb.last_notification_ms = now;
                let out = Outbound::Gmail {
                    topic,
                    email: user.clone(),
                    history_id: mb.history_id,
                };
                if st.outbound.send(out).is_err() {
                    tracing::debug!("notification worker gone");
                }
                Ok(ApiResponse::json(&wire::WatchResponse {
                    history_id: w.history_id.to_string(),
                    expiration: w.expiration_ms.to_string(),
                }))
            }
            Op::Stop(_) => {
                need(p, READ)?;
                mb.watch = None;
                Ok(ApiResponse::empty(204))
            }
        }
    };
    if let Some((user, labels)) = touched {
        st.notify_gmail(&user, &labels);
    }
    if let (Ok(_), Some((ah, email, id, m, format))) = (&result, deferred) {
        let raw = crate::store::render_raw(ah, &email, &m.source);
        let headers = req.params("metadataHeaders");
        let mut msg = render_message(raw, id, &m, &format, &headers);
        if lock(&st.corrupt).contains(&(email.clone(), id)) && msg.raw.is_some() {
            // Control API `corrupt`: this message is broken on every fetch.
            msg.raw = Some("%%% not base64 %%%".into());
        }
        return Ok(ApiResponse::json(&msg));
    }
    result
}
