//! Gmail's paged listings: `messages.list` (full sync, gap recovery) and `history.list`
//! (incremental rounds), each page one call through the shared request loop.

use super::GmailClient;
use crate::google::error::GmailMethod;
use crate::google::wire::{WireListHistoryResponse, WireListMessagesResponse};
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{HistoryId, HistoryPage, ListQuery, MessagePage};

impl GmailClient {
    pub(super) async fn list_impl(
        &self,
        query: &ListQuery,
        page_token: Option<&str>,
    ) -> Result<MessagePage, ApiError> {
        let size = query.page_size.clamp(1, 500).to_string();
        let mut params: Vec<(&str, &str)> = Vec::new();
        if query.page_size > 0 {
            params.push(("maxResults", &size));
        }
        if let Some(q) = query.q.as_deref().filter(|q| !q.is_empty()) {
            params.push(("q", q));
        }
        if let Some(label) = &query.label_id {
            params.push(("labelIds", &label.0));
        }
        if query.include_spam_trash {
            params.push(("includeSpamTrash", "true"));
        }
        if let Some(token) = page_token {
            params.push(("pageToken", token));
        }
        let url = self.url(&self.user_path(&["messages"]), &params);
        let wire: WireListMessagesResponse = self
            .get_json(
                GmailMethod::ListMessages,
                self.config.costs.messages_list,
                url,
            )
            .await?;
        Ok(wire.into_model())
    }

    pub(super) async fn history_impl(
        &self,
        start: HistoryId,
        page_token: Option<&str>,
    ) -> Result<HistoryPage, ApiError> {
        let start = start.0.to_string();
        let size = self.config.history_page_size.to_string();
        let mut params: Vec<(&str, &str)> = vec![
            ("startHistoryId", &start),
            ("maxResults", &size),
            ("historyTypes", "messageAdded"),
            ("historyTypes", "messageDeleted"),
            ("historyTypes", "labelAdded"),
            ("historyTypes", "labelRemoved"),
        ];
        if let Some(token) = page_token {
            params.push(("pageToken", token));
        }
        let url = self.url(&self.user_path(&["history"]), &params);
        let wire: WireListHistoryResponse = self
            .get_json(GmailMethod::History, self.config.costs.history_list, url)
            .await?;
        wire.into_model()
    }
}
