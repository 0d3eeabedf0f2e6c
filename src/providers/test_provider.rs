//! `TestProvider`: a deterministic, in-process implementation of the `GmailApi` port for
//! accounts of kind `test`. It serves `messages` synthetic messages, can make one child fail a
//! given number of times (its calls return `ApiError::Internal`, which the child escalates so
//! its parent restarts it), can slow every fetch down (so a test can kill the daemon while jobs
//! are leased), and appends one line per fetched message to a completions file, so a test can
//! see every external completion, including ones repeated after a crash.
//!
//! It is for tests and trials only: it never talks to the network.

use mailsync_actors::error::ApiError;
use mailsync_actors::model::{
    BatchItem, FetchedMessage, HeaderSummary, HistoryId, HistoryPage, Label, LabelId, LabelKind,
    ListQuery, MessageId, MessagePage, Profile,
};
use mailsync_actors::ports::{GmailApi, PortFuture};
use std::io::Write;
use std::path::PathBuf;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Which child the provider makes fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FailTarget {
    /// `history` calls fail.
    HistorySync,
    /// `list_messages` calls fail.
    Backfill,
    /// `get_messages` calls fail.
    Ingest,
}

/// How a test account behaves.
#[derive(Clone, Debug)]
pub struct TestProviderConfig {
    /// Number of synthetic messages.
    pub messages: u32,
    /// Which child fails, if any.
    pub fail: Option<FailTarget>,
    /// How many calls fail before the provider heals.
    pub fail_times: u32,
    /// Where fetched message ids are appended, one per line.
    pub completions_file: Option<PathBuf>,
    /// Delay added to every batched fetch.
    pub job_delay: Duration,
}

/// The provider.
pub struct TestProvider {
    account: String,
    cfg: TestProviderConfig,
    failures_left: AtomicU32,
    completions: Mutex<Option<std::fs::File>>,
}

const PAGE: usize = 10;

impl TestProvider {
    /// Creates the provider; opens the completions file for appending.
    pub fn new(account: &str, cfg: TestProviderConfig) -> std::io::Result<TestProvider> {
        let completions = match &cfg.completions_file {
            Some(p) => Some(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(p)?,
            ),
            None => None,
        };
        Ok(TestProvider {
            account: account.to_string(),
            failures_left: AtomicU32::new(cfg.fail_times),
            cfg,
            completions: Mutex::new(completions),
        })
    }

    fn maybe_fail(&self, target: FailTarget) -> Result<(), ApiError> {
        if self.cfg.fail != Some(target) {
            return Ok(());
        }
        let left = self
            .failures_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1));
        match left {
            Ok(n) => Err(ApiError::Internal(format!(
                "test provider: injected failure ({} left)",
                n.saturating_sub(1)
            ))),
            Err(_) => Ok(()),
        }
    }

    fn id(i: u32) -> MessageId {
        MessageId(format!("t{i:08}"))
    }

    fn raw(&self, i: u32) -> Vec<u8> {
        format!(
            "From: Test Sender <sender{i}@example.com>\r\nTo: {acct}@example.com\r\nSubject: Test message {i}\r\nMessage-ID: <t{i}@mailsync.test>\r\nDate: Mon, 23 Nov 2026 10:00:00 +0000\r\n\r\nBody of test message {i}.\r\n",
            acct = self.account
        )
        .into_bytes()
    }

    fn record_completion(&self, id: &MessageId) {
        if let Ok(mut guard) = self.completions.lock()
            && let Some(f) = guard.as_mut()
        {
            // One line per completion; a failed write only weakens the test's evidence.
            let _ = writeln!(f, "{id}");
            let _ = f.flush();
        }
    }
}

impl GmailApi for TestProvider {
    fn profile(&self) -> PortFuture<'_, Profile> {
        Box::pin(async move {
            Ok(Profile {
                email: format!("{}@example.com", self.account),
                history_id: HistoryId(1),
                messages_total: u64::from(self.cfg.messages),
            })
        })
    }

    fn labels(&self) -> PortFuture<'_, Vec<Label>> {
        Box::pin(async move {
            Ok(vec![Label {
                id: LabelId("INBOX".into()),
                name: "INBOX".into(),
                kind: LabelKind::System,
            }])
        })
    }

    fn list_messages<'a>(
        &'a self,
        _query: &'a ListQuery,
        page_token: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage> {
        Box::pin(async move {
            self.maybe_fail(FailTarget::Backfill)?;
            let start: usize = match page_token {
                Some(t) => t
                    .parse()
                    .map_err(|_| ApiError::Rejected("invalid page token".into()))?,
                None => 0,
            };
            let total = self.cfg.messages as usize;
            let end = (start + PAGE).min(total);
            let ids = (start..end).map(|i| Self::id(i as u32)).collect();
            Ok(MessagePage {
                ids,
                next_page_token: (end < total).then(|| end.to_string()),
                result_size_estimate: total as u64,
            })
        })
    }

    fn get_messages<'a>(&'a self, ids: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        Box::pin(async move {
            self.maybe_fail(FailTarget::Ingest)?;
            if !self.cfg.job_delay.is_zero() {
                tokio::time::sleep(self.cfg.job_delay).await;
            }
            let mut out = Vec::with_capacity(ids.len());
            for id in ids {
                let n: Option<u32> = id.0.strip_prefix('t').and_then(|s| s.parse().ok());
                let item = match n {
                    Some(i) if i < self.cfg.messages => {
                        self.record_completion(id);
                        Ok(FetchedMessage {
                            id: id.clone(),
                            thread_id: format!("thread{}", i / 3),
                            label_ids: vec![LabelId("INBOX".into())],
                            history_id: HistoryId(1),
                            internal_date_ms: 1_795_000_000_000 + i64::from(i),
                            raw: self.raw(i),
                            headers: HeaderSummary {
                                subject: Some(format!("Test message {i}")),
                                from: Some(format!("Test Sender <sender{i}@example.com>")),
                                date: Some("Mon, 23 Nov 2026 10:00:00 +0000".into()),
                                message_id: Some(format!("<t{i}@mailsync.test>")),
                            },
                        })
                    }
                    _ => Err(ApiError::NotFound),
                };
                out.push((id.clone(), item));
            }
            Ok(out)
        })
    }

    fn history<'a>(
        &'a self,
        start: HistoryId,
        _page_token: Option<&'a str>,
    ) -> PortFuture<'a, HistoryPage> {
        Box::pin(async move {
            self.maybe_fail(FailTarget::HistorySync)?;
            Ok(HistoryPage {
                changes: Vec::new(),
                next_page_token: None,
                history_id: start,
                change_ids: Vec::new(),
            })
        })
    }
}
