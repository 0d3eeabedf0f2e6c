//! The listing endpoints of Gmail v1: `messages.list`, `history.list`, `threads.list` and
//! `threads.get`, with the filter they share and Google's opaque page tokens and page sizes.

use super::*;

const TOKEN_MASK: u64 = 0x5bd1_e995_9e37_79b9;

fn encode_page_token(cursor: u64) -> String {
    format!("{:020}", cursor ^ TOKEN_MASK)
}

fn decode_page_token(t: &str) -> Result<u64, ApiError> {
    if t.len() != 20 {
        return Err(ApiError::invalid_param("pageToken", "Invalid pageToken"));
    }
    t.parse::<u64>()
        .map(|v| v ^ TOKEN_MASK)
        .map_err(|_| ApiError::invalid_param("pageToken", "Invalid pageToken"))
}

fn page_size(req: &ApiRequest) -> Result<usize, ApiError> {
    Ok(match req.u32_param("maxResults")? {
        None | Some(0) => 100,
        Some(n) => n.min(500) as usize,
    })
}

/// The message filter shared by `messages.list` and `threads.list`.
struct ListFilter {
    hide_spam_trash: bool,
    label_ids: Vec<String>,
    q: Option<query::Query>,
}

impl ListFilter {
    fn from_request(p: &Principal, req: &ApiRequest, now: i64) -> Result<Self, ApiError> {
        let include_spam_trash = req.bool_param("includeSpamTrash")?.unwrap_or(false);
        let label_ids = req.params("labelIds");
        let q = match req.param("q") {
            Some(q) if !q.trim().is_empty() => {
                if p.metadata_restricted() {
                    return Err(ApiError::forbidden(
                        "forbidden",
                        "Metadata scope does not support 'q' parameter",
                    ));
                }
                Some(
                    query::parse(q, now)
                        .map_err(|e| ApiError::invalid_param("q", format!("Invalid query: {e}")))?,
                )
            }
            _ => None,
        };
        let hide_spam_trash = !include_spam_trash
            && !q
                .as_ref()
                .is_some_and(|q| q.anywhere || q.mentions_spam_trash)
            && !label_ids.iter().any(|l| l == "SPAM" || l == "TRASH");
        Ok(Self {
            hide_spam_trash,
            label_ids,
            q,
        })
    }

    fn matches(&self, mb: &Mailbox, m: &MsgMeta) -> bool {
        if self.hide_spam_trash && m.labels.iter().any(|l| l == "SPAM" || l == "TRASH") {
            return false;
        }
        if !self.label_ids.iter().all(|l| m.labels.contains(l)) {
            return false;
        }
        let label_matches = |name: &str, ids: &[String]| {
            mb.labels.values().any(|d| {
                (normalize_label(&d.name) == name || d.id.to_lowercase() == name)
                    && ids.contains(&d.id)
            })
        };
        match &self.q {
            Some(q) => q.matches(
                &Candidate {
                    internal_date: m.internal_date,
                    label_ids: &m.labels,
                    from: &m.from,
                    has_attachment: m.has_attachment,
                },
                &mb.email,
                &label_matches,
            ),
            None => true,
        }
    }
}

pub(super) fn list_messages(
    mb: &Mailbox,
    p: &Principal,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    let max = page_size(req)?;
    let filter = ListFilter::from_request(p, req, now)?;
    let cursor = req
        .param("pageToken")
        .filter(|t| !t.is_empty())
        .map(decode_page_token)
        .transpose()?;
    let matches = |m: &MsgMeta| filter.matches(mb, m);
    let total = list_total(mb, &filter, &matches);
    let mut page = Vec::new();
    let mut last = None;
    let mut more = false;
    // Only the page itself is walked (from the cursor down), so listing a mailbox of N
    // messages costs O(N) in all, not O(N) per page.
    let upper = cursor.map_or(std::ops::Bound::Unbounded, std::ops::Bound::Excluded);
    for (id, m) in mb.messages.range((std::ops::Bound::Unbounded, upper)).rev() {
        if !matches(m) {
            continue;
        }
        if page.len() < max {
            page.push(wire::MessageRef {
                id: fmt_id(*id),
                thread_id: fmt_id(m.thread_id),
                label_ids: None,
            });
            last = Some(*id);
        } else {
            more = true;
            break;
        }
    }
    Ok(ApiResponse::json(&wire::ListMessages {
        messages: page,
        next_page_token: if more {
            last.map(encode_page_token)
        } else {
            None
        },
        result_size_estimate: total,
    }))
}

/// `resultSizeEstimate` of a `messages.list` (exact here): without `q` the count only changes
/// with the mailbox, so it is remembered per filter until the next change.
fn list_total(mb: &Mailbox, filter: &ListFilter, matches: &dyn Fn(&MsgMeta) -> bool) -> u32 {
    let count = || mb.messages.values().filter(|m| matches(m)).count() as u32;
    if filter.q.is_some() {
        return count();
    }
    let key = format!("{}|{}", filter.hide_spam_trash, filter.label_ids.join(","));
    let mut cache = mb
        .list_total
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    if let Some((k, h, n, total)) = cache.as_ref()
        && *k == key
        && *h == mb.history_id
        && *n == mb.messages.len()
    {
        return *total;
    }
    let total = count();
    *cache = Some((key, mb.history_id, mb.messages.len(), total));
    total
}

pub(super) fn list_history(mb: &Mailbox, req: &ApiRequest) -> Result<ApiResponse, ApiError> {
    let bad_start = || ApiError::invalid_argument("Missing/invalid parameter: startHistoryId");
    let start: u64 = req
        .param("startHistoryId")
        .ok_or_else(bad_start)?
        .trim()
        .parse()
        .map_err(|_| bad_start())?;
    if start < mb.history_floor {
        return Err(ApiError::not_found());
    }
    let max = page_size(req)?;
    let mut types = Vec::new();
    for t in req.params("historyTypes") {
        let canon = match t.to_ascii_lowercase().as_str() {
            "messageadded" => "messageAdded",
            "messagedeleted" => "messageDeleted",
            "labeladded" => "labelAdded",
            "labelremoved" => "labelRemoved",
            _ => {
                return Err(ApiError::invalid_param(
                    "historyTypes",
                    format!("Invalid value '{t}' for historyTypes"),
                ));
            }
        };
        types.push(canon);
    }
    let want = |t: &str| types.is_empty() || types.contains(&t);
    let label = req.param("labelId");
    let cursor = req
        .param("pageToken")
        .filter(|t| !t.is_empty())
        .map(decode_page_token)
        .transpose()?;
    let after = start.max(cursor.unwrap_or(0));
    let mut out = Vec::new();
    let mut more = false;
    let mut last = None;
    for rec in mb.history.iter().filter(|r| r.id > after) {
        let mref = wire::MessageRef {
            id: fmt_id(rec.msg_id),
            thread_id: fmt_id(rec.thread_id),
            label_ids: Some(rec.labels_after.clone()),
        };
        let plain = wire::MessageRef {
            id: fmt_id(rec.msg_id),
            thread_id: fmt_id(rec.thread_id),
            label_ids: None,
        };
        let mut h = wire::History {
            id: rec.id.to_string(),
            messages: vec![plain],
            messages_added: vec![],
            messages_deleted: vec![],
            labels_added: vec![],
            labels_removed: vec![],
        };
        let mut touched: Vec<&String> = rec.labels_after.iter().collect();
        match &rec.change {
            Change::Added if want("messageAdded") => h
                .messages_added
                .push(wire::HistoryMessageChange { message: mref }),
            Change::Deleted if want("messageDeleted") => {
                h.messages_deleted.push(wire::HistoryMessageChange {
                    message: wire::MessageRef {
                        label_ids: None,
                        ..mref
                    },
                })
            }
            Change::Labels { added, removed } => {
                touched.extend(added.iter());
                touched.extend(removed.iter());
                if !added.is_empty() && want("labelAdded") {
                    h.labels_added.push(wire::HistoryLabelChange {
                        message: mref.clone(),
                        label_ids: added.clone(),
                    });
                }
                if !removed.is_empty() && want("labelRemoved") {
                    h.labels_removed.push(wire::HistoryLabelChange {
                        message: mref,
                        label_ids: removed.clone(),
                    });
                }
            }
            _ => {}
        }
        if h.messages_added.is_empty()
            && h.messages_deleted.is_empty()
            && h.labels_added.is_empty()
            && h.labels_removed.is_empty()
        {
            continue;
        }
        if let Some(l) = label
            && !touched.iter().any(|t| *t == l)
        {
            continue;
        }
        if out.len() >= max {
            more = true;
            break;
        }
        last = Some(rec.id);
        out.push(h);
    }
    Ok(ApiResponse::json(&wire::ListHistory {
        history: out,
        next_page_token: if more {
            last.map(encode_page_token)
        } else {
            None
        },
        history_id: mb.history_id.to_string(),
    }))
}

/// `threads.list`: threads with at least one matching message, ordered by their newest
/// matching message (newest first); the page token is that message's id.
pub(super) fn list_threads(
    mb: &Mailbox,
    p: &Principal,
    req: &ApiRequest,
    now: i64,
) -> Result<ApiResponse, ApiError> {
    let max = page_size(req)?;
    let filter = ListFilter::from_request(p, req, now)?;
    let cursor = req
        .param("pageToken")
        .filter(|t| !t.is_empty())
        .map(decode_page_token)
        .transpose()?;
    // Newest matching message per thread, in newest-first order.
    let mut seen = std::collections::HashSet::new();
    let mut keys: Vec<(u64, u64)> = Vec::new();
    for (id, m) in mb.messages.iter().rev() {
        if filter.matches(mb, m) && seen.insert(m.thread_id) {
            keys.push((*id, m.thread_id));
        }
    }
    let total = keys.len() as u32;
    let remaining: Vec<&(u64, u64)> = keys
        .iter()
        .filter(|(k, _)| cursor.is_none_or(|c| *k < c))
        .collect();
    let mut threads = Vec::new();
    for (key, tid) in remaining.iter().take(max) {
        let newest = mb.messages.get(key);
        let snippet = newest
            .map(|m| mime::snippet(&mime::parse_entity(&mb.raw(m), 0)))
            .unwrap_or_default();
        let history_id = mb
            .messages
            .values()
            .filter(|m| m.thread_id == *tid)
            .map(|m| m.history_id)
            .max()
            .unwrap_or(0);
        threads.push(serde_json::json!({
            "id": fmt_id(*tid),
            "snippet": snippet,
            "historyId": history_id.to_string(),
        }));
    }
    let mut out = serde_json::json!({ "resultSizeEstimate": total });
    if !threads.is_empty() {
        out["threads"] = serde_json::Value::Array(threads);
    }
    if remaining.len() > max
        && let Some((k, _)) = remaining.get(max - 1)
    {
        out["nextPageToken"] = serde_json::json!(encode_page_token(*k));
    }
    Ok(ApiResponse::json(&out))
}

/// `threads.get`: every message of the thread, oldest first.
pub(super) fn get_thread(
    mb: &Mailbox,
    p: &Principal,
    req: &ApiRequest,
    id: &str,
) -> Result<ApiResponse, ApiError> {
    let format = req.param("format").unwrap_or("full").to_ascii_lowercase();
    if !matches!(format.as_str(), "minimal" | "metadata" | "full") {
        return Err(ApiError::invalid_param(
            "format",
            format!("Invalid value '{format}' for format"),
        ));
    }
    if p.metadata_restricted() && format == "full" {
        return Err(ApiError::forbidden(
            "forbidden",
            "Metadata scope doesn't allow format FULL",
        ));
    }
    let tid = parse_id(id)?;
    let headers = req.params("metadataHeaders");
    let messages: Vec<wire::Message> = mb
        .messages
        .iter()
        .filter(|(_, m)| m.thread_id == tid)
        .map(|(mid, m)| render_message(mb.raw(m), *mid, m, &format, &headers))
        .collect();
    if messages.is_empty() {
        return Err(ApiError::not_found());
    }
    let history_id = messages
        .iter()
        .filter_map(|m| m.history_id.parse::<u64>().ok())
        .max()
        .unwrap_or(0);
    Ok(ApiResponse::json(&serde_json::json!({
        "id": fmt_id(tid),
        "historyId": history_id.to_string(),
        "messages": messages,
    })))
}
