//! `MeteredPort`: a decorator around an account's `GmailApi` port that feeds the metrics —
//! one duration sample per call (by method), one error count per failed call (by class and
//! the HTTP status that class stands for), one duration sample per partial-sync round (the
//! first `history` page to the page without a next token). Everything else passes through.

use super::{Metrics, labels};
use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    BatchItem, HistoryId, HistoryPage, Label, LabelId, ListQuery, MessageId, MessagePage, Profile,
    WatchResponse,
};
use mailsync_actors::ports::{GmailApi, PortFuture};
use mailsync_actors::quota::{QuotaLimits, QuotaStats};
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// The error class and status label of a classified error. The client classifies HTTP
/// answers before the actors see them; the status is the one the class comes from.
pub fn error_labels(e: &ApiError) -> (&'static str, &'static str) {
    match e {
        ApiError::RateLimited { .. } => ("rate_limited", "429"),
        ApiError::Transient(_) => ("transient", "5xx"),
        ApiError::NotFound => ("not_found", "404"),
        ApiError::HistoryExpired => ("history_expired", "404"),
        ApiError::SyncTokenExpired => ("sync_token_expired", "410"),
        ApiError::Disconnected(_) => ("disconnected", "401"),
        ApiError::Malformed(_) => ("malformed", "200"),
        ApiError::Rejected(_) => ("rejected", "400"),
        ApiError::Internal(_) => ("internal", "none"),
    }
}

/// The decorator.
pub struct MeteredPort {
    account: String,
    inner: Arc<dyn GmailApi>,
    metrics: Arc<Metrics>,
    round_started: Mutex<Option<Instant>>,
}

impl MeteredPort {
    /// Wraps `inner` for `account`.
    pub fn new(account: &str, inner: Arc<dyn GmailApi>, metrics: Arc<Metrics>) -> MeteredPort {
        MeteredPort {
            account: account.to_string(),
            inner,
            metrics,
            round_started: Mutex::new(None),
        }
    }

    /// The wrapped port's quota counters.
    pub fn quota_snapshot(&self) -> Option<(QuotaStats, QuotaLimits)> {
        self.inner.quota()
    }

    async fn timed<T>(
        &self,
        method: &'static str,
        call: impl Future<Output = Result<T, ApiError>>,
    ) -> Result<T, ApiError> {
        let started = Instant::now();
        let result = call.await;
        self.metrics
            .api_requests
            .get_or_create(&labels(&[("account", &self.account), ("method", method)]))
            .observe(started.elapsed().as_secs_f64());
        if let Err(e) = &result {
            let (class, status) = error_labels(e);
            self.metrics
                .api_errors
                .get_or_create(&labels(&[
                    ("account", &self.account),
                    ("class", class),
                    ("status", status),
                ]))
                .inc();
        }
        result
    }

    fn round_page(&self, first: bool, last: bool) {
        let mut started = self
            .round_started
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if first {
            *started = Some(Instant::now());
        }
        if last && let Some(t) = started.take() {
            self.metrics
                .sync_rounds
                .get_or_create(&labels(&[("account", &self.account)]))
                .observe(t.elapsed().as_secs_f64());
        }
    }
}

impl GmailApi for MeteredPort {
    fn profile(&self) -> PortFuture<'_, Profile> {
        Box::pin(self.timed("profile", self.inner.profile()))
    }

    fn labels(&self) -> PortFuture<'_, Vec<Label>> {
        Box::pin(self.timed("labels", self.inner.labels()))
    }

    fn list_messages<'a>(
        &'a self,
        query: &'a ListQuery,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage> {
        Box::pin(self.timed("messages.list", self.inner.list_messages(query, page_token)))
    }

    fn get_messages<'a>(&'a self, ids: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        Box::pin(self.timed("messages.get", self.inner.get_messages(ids)))
    }

    fn history<'a>(
        &'a self,
        start: HistoryId,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, HistoryPage> {
        Box::pin(async move {
            let first = page_token.is_none();
            if first {
                self.round_page(true, false);
            }
            let page = self
                .timed("history.list", self.inner.history(start, page_token))
                .await?;
            if page.next_page_token.is_none() {
                self.round_page(false, true);
            }
            Ok(page)
        })
    }

    fn watch<'a>(
        &'a self,
        topic: &'a str,
        label_ids: &'a [LabelId],
    ) -> PortFuture<'a, WatchResponse> {
        Box::pin(self.timed("watch", self.inner.watch(topic, label_ids)))
    }

    fn stop_watch(&self) -> PortFuture<'_, ()> {
        Box::pin(self.timed("stop", self.inner.stop_watch()))
    }

    fn quota(&self) -> Option<(QuotaStats, QuotaLimits)> {
        self.inner.quota()
    }

    fn reconnect(&self) -> PortFuture<'_, ()> {
        self.inner.reconnect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::providers::test_provider::{FailTarget, TestProvider, TestProviderConfig};

    #[tokio::test]
    async fn failed_calls_are_counted_by_class_and_timed() -> Result<(), Box<dyn std::error::Error>>
    {
        let metrics = Arc::new(Metrics::new());
        let inner = TestProvider::new(
            "acct",
            TestProviderConfig {
                messages: 3,
                fail: Some(FailTarget::Backfill),
                fail_times: 2,
                completions_file: None,
                job_delay: std::time::Duration::ZERO,
            },
        )?;
        let port = metrics.meter("acct", Arc::new(inner));
        let query = ListQuery::default();
        assert!(port.list_messages(&query, None).await.is_err());
        assert!(port.list_messages(&query, None).await.is_err());
        assert!(port.list_messages(&query, None).await.is_ok());
        // A round: first page to the page without a next token.
        port.history(HistoryId(1), None).await?;
        let text = metrics.encode();
        assert!(
            text.contains(
                "mailsync_api_errors_total{account=\"acct\",class=\"internal\",status=\"none\"} 2"
            ),
            "{text}"
        );
        assert!(
            text.contains("mailsync_api_request_duration_seconds_count{account=\"acct\",method=\"messages.list\"} 3"),
            "{text}"
        );
        assert!(
            text.contains("mailsync_sync_round_duration_seconds_count{account=\"acct\"} 1"),
            "{text}"
        );
        assert!(
            port.quota().is_none(),
            "the test provider has no quota gate"
        );
        assert_eq!(
            error_labels(&ApiError::RateLimited { retry_after: None }),
            ("rate_limited", "429")
        );
        Ok(())
    }
}
