//! Wire types of the emulated APIs: serde structs local to this crate, shaped like Google's
//! discovery schemas (camelCase, 64-bit numbers as strings, empty fields omitted). Request
//! bodies deny unknown fields, as Google's front end does ("Invalid JSON payload received").

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Profile {
    pub email_address: String,
    pub messages_total: u32,
    pub threads_total: u32,
    pub history_id: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LabelColor {
    pub text_color: String,
    pub background_color: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Label {
    pub id: String,
    pub name: String,
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message_list_visibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_list_visibility: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_total: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub messages_unread: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_total: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub threads_unread: Option<u32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub color: Option<LabelColor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LabelRequest {
    pub id: Option<String>,
    pub name: Option<String>,
    #[serde(rename = "type")]
    pub kind: Option<String>,
    pub message_list_visibility: Option<String>,
    pub label_list_visibility: Option<String>,
    pub color: Option<LabelColor>,
    pub messages_total: Option<u32>,
    pub messages_unread: Option<u32>,
    pub threads_total: Option<u32>,
    pub threads_unread: Option<u32>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Labels {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels: Vec<Label>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessageRef {
    pub id: String,
    pub thread_id: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub label_ids: Option<Vec<String>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListMessages {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages: Vec<MessageRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    pub result_size_estimate: u32,
}

#[derive(Debug, Clone, Serialize)]
pub struct Header {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct PartBody {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub attachment_id: Option<String>,
    pub size: u32,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub data: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct MessagePart {
    pub part_id: String,
    pub mime_type: String,
    pub filename: String,
    pub headers: Vec<Header>,
    pub body: PartBody,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parts: Option<Vec<MessagePart>>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Message {
    pub id: String,
    pub thread_id: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub label_ids: Vec<String>,
    pub snippet: String,
    pub size_estimate: u32,
    pub history_id: String,
    pub internal_date: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub payload: Option<MessagePart>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub raw: Option<String>,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ModifyRequest {
    #[serde(default)]
    pub add_label_ids: Vec<String>,
    #[serde(default)]
    pub remove_label_ids: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BatchModifyRequest {
    #[serde(default)]
    pub ids: Vec<String>,
    #[serde(default)]
    pub add_label_ids: Vec<String>,
    #[serde(default)]
    pub remove_label_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryMessageChange {
    pub message: MessageRef,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HistoryLabelChange {
    pub message: MessageRef,
    pub label_ids: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct History {
    pub id: String,
    pub messages: Vec<MessageRef>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages_added: Vec<HistoryMessageChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub messages_deleted: Vec<HistoryMessageChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels_added: Vec<HistoryLabelChange>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub labels_removed: Vec<HistoryLabelChange>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ListHistory {
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub history: Vec<History>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_page_token: Option<String>,
    pub history_id: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WatchRequest {
    pub topic_name: Option<String>,
    #[serde(default)]
    pub label_ids: Vec<String>,
    pub label_filter_behavior: Option<String>,
    pub label_filter_action: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct WatchResponse {
    pub history_id: String,
    pub expiration: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(rename_all = "camelCase")]
pub struct EventDateTime {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date_time: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Person {
    pub email: String,
    #[serde(skip_serializing_if = "Option::is_none", rename = "self")]
    pub is_self: Option<bool>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ChannelRequest {
    pub id: Option<String>,
    #[serde(rename = "type")]
    pub channel_type: Option<String>,
    pub address: Option<String>,
    pub token: Option<String>,
    pub expiration: Option<String>,
    pub params: Option<std::collections::BTreeMap<String, String>>,
    pub resource_id: Option<String>,
    pub resource_uri: Option<String>,
    pub kind: Option<String>,
    pub payload: Option<bool>,
}

#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Channel {
    pub kind: String,
    pub id: String,
    pub resource_id: String,
    pub resource_uri: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub token: Option<String>,
    pub expiration: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct StopChannelRequest {
    pub id: Option<String>,
    pub resource_id: Option<String>,
    pub kind: Option<String>,
    pub token: Option<String>,
    pub address: Option<String>,
    #[serde(rename = "type")]
    pub kind_type: Option<String>,
}

/// Body of Calendar `events.insert` / `events.patch` (the subset the emulator models; other
/// Event fields are refused rather than silently dropped).
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct EventWriteRequest {
    pub id: Option<String>,
    pub summary: Option<String>,
    pub start: Option<EventDateTime>,
    pub end: Option<EventDateTime>,
    pub recurrence: Option<Vec<String>>,
    pub status: Option<String>,
    pub kind: Option<String>,
    pub etag: Option<String>,
    pub description: Option<String>,
    pub location: Option<String>,
    pub attendees: Option<Vec<AttendeeWrite>>,
}

/// One attendee of an `events.insert` / `events.patch` body.
#[derive(Debug, Clone, Deserialize, Default)]
#[serde(rename_all = "camelCase", deny_unknown_fields, default)]
pub struct AttendeeWrite {
    pub email: Option<String>,
    pub display_name: Option<String>,
    pub response_status: Option<String>,
    pub optional: Option<bool>,
}
