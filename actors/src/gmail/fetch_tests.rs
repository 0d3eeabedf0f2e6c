//! A full sync's page job through the Gmail source's Ingest batch, over a scripted API and a
//! real store: the ids that came back are recorded and the page is acked in one transaction;
//! an id that failed leaves as a job of its own with the error (so Ingest counts its attempts
//! and dead-letters it alone), one the batch lost leaves too, one that is gone is deleted, and
//! the page tally is back to zero. Then the single job, nacked through the real mailbox as
//! Ingest does, is fetched alone and the mirror holds every message.

use crate::error::ApiError;
use crate::gmail::{GmailOptions, GmailSource};
use crate::ingest_pages::{self, PageTally};
use crate::jobs::{self, ChildKind, mailbox_name};
use crate::mailbox::Priority;
use crate::mirror;
use crate::model::{
    AccountId, BatchItem, HistoryId, HistoryPage, Label, ListQuery, MessageId, MessagePage, Profile,
};
use crate::ports::{GmailApi, PortFuture};
use crate::source::{SourceCx, SourceKind, SyncSource};
use crate::spec::now_ms;
use crate::store::Store;
use std::sync::{Arc, Mutex};

/// Answers each id asked for: `bad` fails as malformed, `lost` is missing from the answer,
/// `gone` is a 404, every other id (and `bad` once healed) is a message.
struct Fake {
    healed: Mutex<bool>,
    asked: Mutex<Vec<Vec<String>>>,
}

impl GmailApi for Fake {
    fn profile(&self) -> PortFuture<'_, Profile> {
        crate::test_support::unused()
    }
    fn labels(&self) -> PortFuture<'_, Vec<Label>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn list_messages<'a>(
        &'a self,
        _: &'a ListQuery,
        _: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage> {
        crate::test_support::unused()
    }
    fn get_messages<'a>(&'a self, ids: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        Box::pin(async move {
            self.asked
                .lock()
                .unwrap()
                .push(ids.iter().map(|i| i.0.clone()).collect());
            let healed = *self.healed.lock().unwrap();
            Ok(ids
                .iter()
                .filter(|id| id.0 != "lost" || healed)
                .map(|id| {
                    let answer = match id.0.as_str() {
                        "bad" if !healed => Err(ApiError::Malformed("bad base64".into())),
                        "gone" => Err(ApiError::NotFound),
                        other => Ok(crate::test_support::fetched_message(other, 5, &["INBOX"])),
                    };
                    (id.clone(), answer)
                })
                .collect())
        })
    }
    fn history<'a>(&'a self, _: HistoryId, _: Option<&'a str>) -> PortFuture<'a, HistoryPage> {
        crate::test_support::unused()
    }
}

#[tokio::test]
async fn a_page_is_recorded_in_one_batch_and_what_failed_leaves_as_jobs_of_their_own() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = AccountId("gm".into());
    let fake = Arc::new(Fake {
        healed: Mutex::new(false),
        asked: Mutex::new(Vec::new()),
    });
    let source = GmailSource::new(
        SourceKind::Gmail,
        fake.clone(),
        GmailOptions {
            initial_query: None,
            list_page_size: 10,
            listing_ahead: crate::gmail::LISTING_AHEAD,
            ingest_page_ids: 50,
        },
    );
    let ids = ["a", "bad", "b", "lost", "gone", "c"];
    store
        .transaction(|tx| {
            ingest_pages::enqueue_tx(tx, &account, "h1.p0.0", &ids, Priority::Backfill, now_ms())
        })
        .unwrap();
    let queue = store.mailbox(&mailbox_name(&account, ChildKind::Ingest));
    let (reporter, _reports) = crate::test_support::reporter().await;
    let cx = SourceCx {
        account: &account,
        store: &store,
        report: &reporter,
    };

    let page = queue.lease(1, now_ms()).unwrap();
    assert_eq!(ingest_pages::item_count(&page[0]), ids.len());
    let batch = source.ingest_batch(&cx, &page).await.unwrap();
    assert_eq!(
        fake.asked.lock().unwrap()[0],
        ids,
        "one request for the whole page"
    );
    assert_eq!(batch.added, 3);
    assert_eq!(batch.done.len(), 1, "the page is acked");
    assert_eq!(batch.done[0].id, page[0].id);
    assert!(batch.retry_now.is_empty());
    let mut failed: Vec<(String, bool)> = batch
        .failed
        .iter()
        .map(|(j, e)| (jobs::ingest_item(j), matches!(e, ApiError::Transient(_))))
        .collect();
    failed.sort();
    assert_eq!(
        failed,
        vec![("bad".to_string(), false), ("lost".to_string(), true)],
        "each failed id has its own job and its own error"
    );
    for (j, _) in &batch.failed {
        assert_eq!(j.key, jobs::ingest_key(&account, &jobs::ingest_item(j)));
        assert_eq!(j.priority, Priority::Backfill);
    }
    queue.release(&page[0]);
    assert_eq!(
        ingest_pages::tally(&store, &account).unwrap(),
        PageTally::default()
    );
    let depth = queue.depth().unwrap();
    assert_eq!(depth.pending, 2, "the two single jobs: {depth:?}");
    for m in ["a", "b", "c"] {
        assert!(
            mirror::message(&store, "gm", &MessageId(m.into()))
                .unwrap()
                .is_some(),
            "{m}"
        );
    }
    assert!(
        mirror::message(&store, "gm", &MessageId("bad".into()))
            .unwrap()
            .is_none()
    );

    // Ingest counts the malformed one's attempt; the lost one is handed back untouched.
    let policy = crate::backoff::RetryPolicy {
        base: std::time::Duration::ZERO,
        cap: std::time::Duration::ZERO,
        ..crate::backoff::RetryPolicy::default()
    };
    for (j, e) in &batch.failed {
        if matches!(e, ApiError::Transient(_)) {
            queue.release(j);
        } else {
            queue.nack(j, &e.to_string(), &policy, now_ms()).unwrap();
        }
    }
    *fake.healed.lock().unwrap() = true;
    let singles = queue.lease(50, now_ms() + 1).unwrap();
    assert_eq!(singles.len(), 2, "{singles:?}");
    let bad = singles
        .iter()
        .find(|j| jobs::ingest_item(j) == "bad")
        .unwrap();
    assert_eq!(bad.attempts, 1, "the failure inside the page counted once");
    let batch = source.ingest_batch(&cx, &singles).await.unwrap();
    assert_eq!(batch.added, 2);
    assert_eq!(batch.done.len(), 2);
    assert!(batch.failed.is_empty());
    for j in &batch.done {
        queue.release(j);
    }
    assert_eq!(queue.depth().unwrap(), Default::default());
    for m in ["a", "b", "c", "bad", "lost"] {
        assert!(
            mirror::message(&store, "gm", &MessageId(m.into()))
                .unwrap()
                .is_some(),
            "{m}"
        );
    }
}
