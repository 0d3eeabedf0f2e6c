//! Ports: the traits through which the actor tree reaches the outside world. `src/` implements
//! them (the Gmail REST client, the test provider); the actors only see these traits, so they
//! stay free of HTTP and JSON.
//!
//! Futures are boxed so the actors can hold `Arc<dyn GmailApi>` without generics.

use crate::error::ApiError;
use crate::model::{
    BatchItem, HistoryId, HistoryPage, Label, LabelId, ListQuery, MessageId, MessagePage, Profile,
    WatchResponse,
};
use std::future::Future;
use std::pin::Pin;

/// A boxed, sendable future returning a port result.
pub type PortFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, ApiError>> + Send + 'a>>;

/// The Gmail-shaped mail API: everything Google's sync recipe needs.
///
/// Implementations pace themselves against the account's quota (they hold the account's
/// `QuotaGate`) and refresh access tokens on their own; callers see only classified errors.
pub trait GmailApi: Send + Sync {
    /// `users.getProfile`.
    fn profile(&self) -> PortFuture<'_, Profile>;
    /// `users.labels.list`.
    fn labels(&self) -> PortFuture<'_, Vec<Label>>;
    /// One page of `users.messages.list` (ids only).
    fn list_messages<'a>(
        &'a self,
        query: &'a ListQuery,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage>;
    /// `messages.get` (raw format plus labels) for up to a batch of ids; each id answers on
    /// its own. The outer error is for a failure of the whole batch.
    fn get_messages<'a>(&'a self, ids: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>>;
    /// One page of `users.history.list` after `start`, every history type.
    fn history<'a>(
        &'a self,
        start: HistoryId,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, HistoryPage>;
    /// `users.watch`: publish this mailbox's changes to the Pub/Sub `topic`
    /// (`projects/<p>/topics/<t>`), restricted to `label_ids` when not empty. Re-calling it
    /// renews the watch. Ports without push support keep the default (`Rejected`).
    fn watch<'a>(
        &'a self,
        topic: &'a str,
        label_ids: &'a [LabelId],
    ) -> PortFuture<'a, WatchResponse> {
        let _ = (topic, label_ids);
        Box::pin(async { Err(ApiError::Rejected("not supported".into())) })
    }
    /// `users.stop`: end this mailbox's push notifications.
    fn stop_watch(&self) -> PortFuture<'_, ()> {
        Box::pin(async { Err(ApiError::Rejected("not supported".into())) })
    }
    /// The account's quota counters and per-user limit, for metrics; ports without a
    /// `QuotaGate` keep the default (`None`).
    fn quota(&self) -> Option<(crate::quota::QuotaStats, crate::quota::QuotaLimits)> {
        None
    }
    /// Starts the credentials over: re-read them (file, env, command) and forget a
    /// disconnection, so the next call tries again (`ctl resume`, `ctl reload`,
    /// `mailsync auth`). A failure to re-read is `Disconnected` with a secret-free reason.
    /// Ports without credentials keep the default (nothing to do).
    fn reconnect(&self) -> PortFuture<'_, ()> {
        Box::pin(async { Ok(()) })
    }
}
