//! The Gmail client's own serde shapes of Google's JSON (reference gmail-api.md §0, §1, §4, §5)
//! and their mapping into `mailsync_actors::model` types.
//!
//! These types belong to the client only; the emulator crate has its own, so a misreading of
//! the protocol cannot hide by being shared. Every field Google may omit is optional or
//! defaulted; 64-bit numbers (`historyId`, `internalDate`) arrive as JSON strings and are parsed
//! here, where a bad value becomes `ApiError::Malformed`.

use base64::Engine as _;
use base64::alphabet;
use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
use mail_parser::{HeaderName, MessageParser};
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    FetchedMessage, HeaderSummary, HistoryChange, HistoryId, HistoryPage, Label, LabelId,
    LabelKind, MessageId, MessagePage, Profile, WatchResponse,
};
use serde::Deserialize;

/// `users.getProfile`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireProfile {
    /// The mailbox address.
    pub email_address: String,
    /// int32, a JSON number.
    #[serde(default)]
    pub messages_total: u64,
    /// int32, a JSON number.
    #[serde(default)]
    pub threads_total: u64,
    /// uint64 as a string.
    pub history_id: String,
}

/// `users.labels.list`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLabelList {
    /// Absent when the mailbox has no labels (never in practice).
    #[serde(default)]
    pub labels: Vec<WireLabel>,
}

/// One `Label` as `labels.list` returns it.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireLabel {
    /// Immutable id.
    pub id: String,
    /// Display name.
    #[serde(default)]
    pub name: String,
    /// `system` or `user`.
    #[serde(default, rename = "type")]
    pub kind: Option<String>,
}

/// An `{id, threadId}` entry of `messages.list`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMessageRef {
    /// Message id.
    pub id: String,
    /// Thread id.
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// `users.messages.list`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireListMessagesResponse {
    /// Absent on an empty result.
    #[serde(default)]
    pub messages: Vec<WireMessageRef>,
    /// Absent on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// An estimate.
    #[serde(default)]
    pub result_size_estimate: u64,
}

/// A `Message` (any format; `raw` only with `format=raw`).
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireMessage {
    /// Message id.
    pub id: String,
    /// Thread id.
    #[serde(default)]
    pub thread_id: Option<String>,
    /// Current labels; absent when the message has none.
    #[serde(default)]
    pub label_ids: Vec<String>,
    /// uint64 as a string.
    #[serde(default)]
    pub history_id: Option<String>,
    /// Epoch milliseconds as a string.
    #[serde(default)]
    pub internal_date: Option<String>,
    /// int32.
    #[serde(default)]
    pub size_estimate: Option<u64>,
    /// base64url RFC 5322 bytes.
    #[serde(default)]
    pub raw: Option<String>,
}

/// `{ "message": Message }` entries of `messagesAdded` / `messagesDeleted`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireHistoryMessage {
    /// The message touched.
    pub message: WireMessage,
}

/// `{ "message": Message, "labelIds": [...] }` entries of `labelsAdded` / `labelsRemoved`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireHistoryLabels {
    /// The message touched.
    pub message: WireMessage,
    /// The labels added or removed.
    #[serde(default)]
    pub label_ids: Vec<String>,
}

/// One `History` record.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireHistory {
    /// uint64 as a string.
    pub id: String,
    /// Typed arrays; Google recommends them over `messages`, which is ignored.
    #[serde(default)]
    pub messages_added: Vec<WireHistoryMessage>,
    /// Permanent deletions.
    #[serde(default)]
    pub messages_deleted: Vec<WireHistoryMessage>,
    /// Labels added.
    #[serde(default)]
    pub labels_added: Vec<WireHistoryLabels>,
    /// Labels removed.
    #[serde(default)]
    pub labels_removed: Vec<WireHistoryLabels>,
}

/// `users.history.list`.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireListHistoryResponse {
    /// Absent when nothing changed.
    #[serde(default)]
    pub history: Vec<WireHistory>,
    /// Absent on the last page.
    #[serde(default)]
    pub next_page_token: Option<String>,
    /// The mailbox's current history id.
    pub history_id: String,
}

/// `users.watch` request body (reference gmail-api.md §1.8).
#[derive(Clone, Debug, serde::Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WireWatchRequest<'a> {
    /// `projects/<project>/topics/<topic>`.
    pub topic_name: &'a str,
    /// Restrict notifications to these labels; omitted when empty (all changes).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub label_ids: Vec<&'a str>,
    /// `include` when `label_ids` is set; omitted otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_filter_behavior: Option<&'a str>,
}

/// `users.watch` response: both numbers arrive as strings.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct WireWatchResponse {
    /// uint64 as a string.
    pub history_id: String,
    /// int64 epoch milliseconds as a string.
    pub expiration: String,
}

impl WireWatchResponse {
    /// Into the model; bad numbers are `Malformed`.
    pub fn into_model(self) -> Result<WatchResponse, ApiError> {
        let history_id = parse_history_id(&self.history_id, "historyId")?;
        let expiration_ms = self.expiration.trim().parse::<i64>().map_err(|_| {
            ApiError::Malformed(format!(
                "expiration is not an int64: {}",
                short(&self.expiration)
            ))
        })?;
        Ok(WatchResponse {
            history_id,
            expiration_ms,
        })
    }
}

/// Google's v1 error body: `{"error": {...}}`. Every sub-field is optional.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WireErrorBody {
    /// The error object.
    #[serde(default)]
    pub error: Option<WireError>,
}

/// The `error` object of a v1 error body.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WireError {
    /// HTTP status repeated.
    #[serde(default)]
    pub code: Option<u16>,
    /// Human-readable text.
    #[serde(default)]
    pub message: Option<String>,
    /// Canonical status name (`NOT_FOUND`, `RESOURCE_EXHAUSTED`, ...).
    #[serde(default)]
    pub status: Option<String>,
    /// Legacy detail list with machine `reason`s.
    #[serde(default)]
    pub errors: Vec<WireErrorItem>,
}

/// One `errors[]` entry.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WireErrorItem {
    /// Machine key: `notFound`, `userRateLimitExceeded`, `authError`, ...
    #[serde(default)]
    pub reason: Option<String>,
    /// `global`, `usageLimits`, ...
    #[serde(default)]
    pub domain: Option<String>,
    /// Human-readable text.
    #[serde(default)]
    pub message: Option<String>,
}

/// The token endpoint's error body: `{"error": "invalid_grant", "error_description": "..."}`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct WireTokenError {
    /// OAuth error code.
    #[serde(default)]
    pub error: Option<String>,
    /// Human-readable text (never contains the token).
    #[serde(default)]
    pub error_description: Option<String>,
}

/// Parses a uint64 history id sent as a string (or a bare number, for tolerance).
pub fn parse_history_id(value: &str, field: &str) -> Result<HistoryId, ApiError> {
    value
        .trim()
        .parse::<u64>()
        .map(HistoryId)
        .map_err(|_| ApiError::Malformed(format!("{field} is not a uint64: {}", short(value))))
}

fn short(value: &str) -> String {
    let mut s: String = value
        .chars()
        .take(24)
        .flat_map(char::escape_default)
        .collect();
    if value.chars().count() > 24 {
        s.push('…');
    }
    format!("\"{s}\"")
}

/// base64url decoding that accepts padded and unpadded input (and, leniently, the standard
/// `+`/`/` alphabet and embedded whitespace).
pub fn decode_base64url(data: &str) -> Result<Vec<u8>, ApiError> {
    const ENGINE: GeneralPurpose = GeneralPurpose::new(
        &alphabet::URL_SAFE,
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
    );
    // Gmail sends clean base64url; only input that needs it is copied and mended.
    let bytes = data.as_bytes();
    let lenient = |b: &u8| b.is_ascii_whitespace() || *b == b'+' || *b == b'/';
    let decoded = if bytes.iter().any(lenient) {
        let cleaned: Vec<u8> = bytes
            .iter()
            .filter(|b| !b.is_ascii_whitespace())
            .map(|b| match b {
                b'+' => b'-',
                b'/' => b'_',
                other => *other,
            })
            .collect();
        ENGINE.decode(cleaned)
    } else {
        ENGINE.decode(bytes)
    };
    decoded.map_err(|e| ApiError::Malformed(format!("raw is not base64url: {e}")))
}

/// Longest decoded header value kept in a [`HeaderSummary`].
const MAX_HEADER_CHARS: usize = 512;

fn keep(value: &str) -> Option<String> {
    let unfolded = value.split_whitespace().collect::<Vec<_>>().join(" ");
    (!unfolded.is_empty()).then(|| unfolded.chars().take(MAX_HEADER_CHARS).collect())
}

/// Decodes Subject, From, Date and Message-ID from raw RFC 5322 bytes (headers only; the body
/// is never read). Unparsable headers leave the summary empty.
pub fn summarize_headers(raw: &[u8]) -> HeaderSummary {
    let Some(message) = MessageParser::default().parse_headers(raw) else {
        return HeaderSummary::default();
    };
    let from = message.from().and_then(|a| a.first()).and_then(|addr| {
        match (addr.name(), addr.address()) {
            (Some(name), Some(address)) => keep(&format!("{name} <{address}>")),
            (None, Some(address)) => keep(address),
            (Some(name), None) => keep(name),
            (None, None) => None,
        }
    });
    HeaderSummary {
        subject: message.subject().and_then(keep),
        from,
        date: message.header_raw(HeaderName::Date).and_then(keep),
        message_id: message.message_id().and_then(keep),
    }
}

impl WireProfile {
    /// Into the domain type.
    pub fn into_model(self) -> Result<Profile, ApiError> {
        Ok(Profile {
            history_id: parse_history_id(&self.history_id, "profile.historyId")?,
            email: self.email_address,
            messages_total: self.messages_total,
        })
    }
}

impl WireLabelList {
    /// Into the domain type; a missing or unknown `type` counts as a user label unless the id
    /// looks like a system label (upper-case, no `Label_` prefix).
    pub fn into_model(self) -> Vec<Label> {
        self.labels
            .into_iter()
            .map(|l| {
                let kind = match l.kind.as_deref().map(str::to_ascii_lowercase).as_deref() {
                    Some("system") => LabelKind::System,
                    Some("user") => LabelKind::User,
                    _ if !l.id.starts_with("Label_")
                        && l.id
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c == '_' || c.is_ascii_digit()) =>
                    {
                        LabelKind::System
                    }
                    _ => LabelKind::User,
                };
                let name = if l.name.is_empty() {
                    l.id.clone()
                } else {
                    l.name
                };
                Label {
                    id: LabelId(l.id),
                    name,
                    kind,
                }
            })
            .collect()
    }
}

impl WireListMessagesResponse {
    /// Into the domain type (ids only, in response order).
    pub fn into_model(self) -> MessagePage {
        MessagePage {
            ids: self.messages.into_iter().map(|m| MessageId(m.id)).collect(),
            next_page_token: self.next_page_token.filter(|t| !t.is_empty()),
            result_size_estimate: self.result_size_estimate,
        }
    }
}

fn label_ids(ids: Vec<String>) -> Vec<LabelId> {
    ids.into_iter().map(LabelId).collect()
}

impl WireMessage {
    /// Into a fetched message; requires `raw`, `historyId` and `internalDate` (all present with
    /// `format=raw`).
    pub fn into_fetched(self) -> Result<FetchedMessage, ApiError> {
        let raw = self.raw.as_deref().ok_or_else(|| {
            ApiError::Malformed(format!("message {} has no raw field", short(&self.id)))
        })?;
        let raw = decode_base64url(raw)?;
        let history_id = match self.history_id.as_deref() {
            Some(h) => parse_history_id(h, "message.historyId")?,
            None => {
                return Err(ApiError::Malformed(format!(
                    "message {} has no historyId",
                    short(&self.id)
                )));
            }
        };
        let internal_date_ms = match self.internal_date.as_deref() {
            Some(d) => d.trim().parse::<i64>().map_err(|_| {
                ApiError::Malformed(format!(
                    "message.internalDate is not an int64: {}",
                    short(d)
                ))
            })?,
            None => {
                return Err(ApiError::Malformed(format!(
                    "message {} has no internalDate",
                    short(&self.id)
                )));
            }
        };
        let headers = summarize_headers(&raw);
        Ok(FetchedMessage {
            id: MessageId(self.id),
            thread_id: self.thread_id.unwrap_or_default(),
            label_ids: label_ids(self.label_ids),
            history_id,
            internal_date_ms,
            raw,
            headers,
        })
    }
}

impl WireListHistoryResponse {
    /// Flattens the records into changes, in record order; within one record the order is
    /// added, deleted, labels added, labels removed (a record normally holds one kind).
    pub fn into_model(self) -> Result<HistoryPage, ApiError> {
        let history_id = parse_history_id(&self.history_id, "history.historyId")?;
        let mut changes = Vec::new();
        let mut change_ids = Vec::new();
        for record in self.history {
            let record_id = parse_history_id(&record.id, "history[].id")?;
            let before = changes.len();
            for added in record.messages_added {
                changes.push(HistoryChange::MessageAdded {
                    id: MessageId(added.message.id),
                    label_ids: label_ids(added.message.label_ids),
                });
            }
            for deleted in record.messages_deleted {
                changes.push(HistoryChange::MessageDeleted {
                    id: MessageId(deleted.message.id),
                });
            }
            for added in record.labels_added {
                changes.push(HistoryChange::LabelsAdded {
                    id: MessageId(added.message.id),
                    label_ids: label_ids(added.label_ids),
                });
            }
            for removed in record.labels_removed {
                changes.push(HistoryChange::LabelsRemoved {
                    id: MessageId(removed.message.id),
                    label_ids: label_ids(removed.label_ids),
                });
            }
            change_ids.extend(std::iter::repeat_n(record_id, changes.len() - before));
        }
        Ok(HistoryPage {
            changes,
            next_page_token: self.next_page_token.filter(|t| !t.is_empty()),
            history_id,
            change_ids,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fixture(name: &str) -> String {
        let path = format!("{}/tests/fixtures/gmail/{name}", env!("CARGO_MANIFEST_DIR"));
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("fixture {path}: {e}"))
    }

    #[test]
    fn profile_maps_string_history_id() {
        let p: WireProfile = serde_json::from_str(&fixture("profile.json")).expect("json");
        let p = p.into_model().expect("model");
        assert_eq!(p.email, "alice@example.com");
        assert_eq!(p.history_id, HistoryId(9_137_465));
        assert_eq!(p.messages_total, 48_213);
    }

    #[test]
    fn labels_map_kinds() {
        let l: WireLabelList = serde_json::from_str(&fixture("labels.json")).expect("json");
        let labels = l.into_model();
        assert_eq!(labels.len(), 4);
        assert_eq!(labels[0].id, LabelId("INBOX".into()));
        assert_eq!(labels[0].kind, LabelKind::System);
        assert_eq!(labels[2].name, "Receipts");
        assert_eq!(labels[2].kind, LabelKind::User);
        // No `type`: an upper-case id is a system label.
        assert_eq!(labels[3].kind, LabelKind::System);
    }

    #[test]
    fn message_list_pages_and_last_page() {
        let page: WireListMessagesResponse =
            serde_json::from_str(&fixture("messages_list.json")).expect("json");
        let page = page.into_model();
        assert_eq!(
            page.ids,
            vec![
                MessageId("18c2f0a1b2c3d4e5".into()),
                MessageId("18c2ef7700cc22dd".into())
            ]
        );
        assert_eq!(
            page.next_page_token.as_deref(),
            Some("09832674512334155870")
        );
        assert_eq!(page.result_size_estimate, 201);

        let empty: WireListMessagesResponse =
            serde_json::from_str(r#"{"resultSizeEstimate": 0}"#).expect("json");
        let empty = empty.into_model();
        assert!(empty.ids.is_empty());
        assert_eq!(empty.next_page_token, None);
    }

    #[test]
    fn raw_message_decodes_and_keeps_metadata() {
        let m: WireMessage = serde_json::from_str(&fixture("message_raw.json")).expect("json");
        let m = m.into_fetched().expect("fetched");
        assert_eq!(m.id, MessageId("18c2f0a1b2c3d4e5".into()));
        assert_eq!(m.thread_id, "18c2f09f00aa11bb");
        assert_eq!(
            m.label_ids,
            vec![LabelId("INBOX".into()), LabelId("UNREAD".into())]
        );
        assert_eq!(m.history_id, HistoryId(9_137_402));
        assert_eq!(m.internal_date_ms, 1_700_611_200_123);
        let text = String::from_utf8(m.raw).expect("utf8");
        assert!(text.starts_with("From: Shop <no-reply@shop.example>\r\n"));
        assert!(text.contains("Subject: Shipped"));
        assert_eq!(m.headers.subject.as_deref(), Some("Shipped"));
        assert_eq!(
            m.headers.from.as_deref(),
            Some("Shop <no-reply@shop.example>")
        );
        assert_eq!(
            m.headers.date.as_deref(),
            Some("Wed, 22 Nov 2023 00:00:00 +0000")
        );
        assert_eq!(
            m.headers.message_id.as_deref(),
            Some("order-1@shop.example")
        );
    }

    #[test]
    fn header_summary_decodes_encoded_words_and_tolerates_garbage() {
        let raw = b"Subject: =?UTF-8?B?w6l0w6k=?=\r\nFrom: bob@example.com\r\n\r\nbody";
        let h = summarize_headers(raw);
        assert_eq!(h.subject.as_deref(), Some("\u{e9}t\u{e9}"));
        assert_eq!(h.from.as_deref(), Some("bob@example.com"));
        assert_eq!(h.date, None);
        let h = summarize_headers(b"\x00\x01 not a message");
        assert_eq!(h.subject, None);
    }

    #[test]
    fn base64url_accepts_padding_and_both_alphabets() {
        assert_eq!(decode_base64url("aGk").expect("unpadded"), b"hi");
        assert_eq!(decode_base64url("aGk=").expect("padded"), b"hi");
        assert_eq!(decode_base64url("-_8").expect("url"), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("+/8=").expect("std"), vec![0xfb, 0xff]);
        assert_eq!(decode_base64url("aG\r\nk=").expect("ws"), b"hi");
        assert!(matches!(
            decode_base64url("a*b"),
            Err(ApiError::Malformed(_))
        ));
    }

    #[test]
    fn message_without_raw_or_with_bad_numbers_is_malformed() {
        let m: WireMessage =
            serde_json::from_str(r#"{"id":"a","historyId":"1","internalDate":"1"}"#).expect("j");
        assert!(matches!(m.into_fetched(), Err(ApiError::Malformed(_))));
        let m: WireMessage =
            serde_json::from_str(r#"{"id":"a","raw":"aGk","historyId":"x12","internalDate":"1"}"#)
                .expect("j");
        assert!(matches!(m.into_fetched(), Err(ApiError::Malformed(_))));
        let m: WireMessage = serde_json::from_str(
            r#"{"id":"a","raw":"aGk","historyId":"12","internalDate":"soon"}"#,
        )
        .expect("j");
        assert!(matches!(m.into_fetched(), Err(ApiError::Malformed(_))));
    }

    #[test]
    fn history_flattens_in_record_order() {
        let h: WireListHistoryResponse =
            serde_json::from_str(&fixture("history.json")).expect("json");
        let page = h.into_model().expect("model");
        assert_eq!(page.history_id, HistoryId(9_137_465));
        assert_eq!(page.next_page_token.as_deref(), Some("page-2"));
        let id = |s: &str| MessageId(s.into());
        let labels = |v: &[&str]| v.iter().map(|s| LabelId((*s).into())).collect::<Vec<_>>();
        assert_eq!(
            page.changes,
            vec![
                HistoryChange::MessageAdded {
                    id: id("18c2f0a1b2c3d4e5"),
                    label_ids: labels(&["INBOX", "UNREAD"]),
                },
                HistoryChange::LabelsRemoved {
                    id: id("18c2f0a1b2c3d4e5"),
                    label_ids: labels(&["UNREAD"]),
                },
                HistoryChange::LabelsAdded {
                    id: id("18c2ef7700cc22dd"),
                    label_ids: labels(&["TRASH"]),
                },
                HistoryChange::MessageAdded {
                    id: id("18c30000000000aa"),
                    label_ids: vec![],
                },
                HistoryChange::MessageDeleted {
                    id: id("18c30000000000aa"),
                },
            ]
        );
    }

    #[test]
    fn empty_history_has_only_the_current_id() {
        let h: WireListHistoryResponse =
            serde_json::from_str(r#"{"historyId": "77"}"#).expect("json");
        let page = h.into_model().expect("model");
        assert!(page.changes.is_empty());
        assert_eq!(page.history_id, HistoryId(77));
        assert_eq!(page.next_page_token, None);
    }

    #[test]
    fn bad_history_id_is_malformed_with_a_short_excerpt() {
        let long = "9".repeat(40);
        let h: WireListHistoryResponse =
            serde_json::from_str(&format!(r#"{{"historyId": "{long}"}}"#)).expect("json");
        match h.into_model() {
            Err(ApiError::Malformed(msg)) => assert!(msg.len() < 100, "{msg}"),
            other => panic!("expected Malformed, got {other:?}"),
        }
    }

    #[test]
    fn error_body_fields_are_all_optional() {
        let e: WireErrorBody = serde_json::from_str(&fixture("error_404.json")).expect("json");
        let e = e.error.expect("error");
        assert_eq!(e.code, Some(404));
        assert_eq!(e.errors[0].reason.as_deref(), Some("notFound"));
        let bare: WireErrorBody = serde_json::from_str(r#"{"error":{"code":500}}"#).expect("json");
        assert!(bare.error.expect("error").errors.is_empty());
    }
}
