//! Drives exactly the interleaving the freshness rule exists for, through the Gmail source:
//! Ingest fetches two messages, HistorySync then applies a relabel of one and the deletion
//! of the other (records newer than the fetch), and only then does Ingest commit. The older
//! fetch must neither resurrect the deleted message nor store the old labels; the relabeled
//! one is fetched again and lands with its current labels.

use crate::account_record::AccountRecord;
use crate::gmail::{GmailOptions, GmailSource};
use crate::jobs::{self, ChildKind, mailbox_name};
use crate::mailbox::Priority;
use crate::mirror;
use crate::model::{
    AccountId, BatchItem, FetchedMessage, HistoryChange, HistoryId, HistoryPage, Label, LabelId,
    ListQuery, MessageId, MessagePage, Profile,
};
use crate::ports::{GmailApi, PortFuture};
use crate::source::{SourceCx, SourceKind, SyncSource};
use crate::spec::now_ms;
use crate::store::Store;
use std::sync::{Arc, Mutex};
use tokio::sync::Notify;

fn fetched(id: &str, hid: u64, labels: &[&str]) -> FetchedMessage {
    crate::test_support::fetched_message(id, hid, labels)
}

/// Answers `get_messages` from a script; the first answer waits for `go` after telling
/// `fetched`, so the test can apply history in between.
struct Fake {
    answers: Mutex<Vec<Vec<FetchedMessage>>>,
    fetched: Notify,
    go: Notify,
    first: Mutex<bool>,
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
    fn get_messages<'a>(&'a self, _: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        Box::pin(async move {
            let answer = self.answers.lock().unwrap().remove(0);
            let first = std::mem::replace(&mut *self.first.lock().unwrap(), false);
            if first {
                self.fetched.notify_one();
                self.go.notified().await;
            }
            Ok(answer.into_iter().map(|m| (m.id.clone(), Ok(m))).collect())
        })
    }
    fn history<'a>(&'a self, _: HistoryId, _: Option<&'a str>) -> PortFuture<'a, HistoryPage> {
        Box::pin(async {
            Ok(HistoryPage {
                changes: vec![
                    HistoryChange::LabelsAdded {
                        id: MessageId("m1".into()),
                        label_ids: vec![LabelId("TRASH".into())],
                    },
                    HistoryChange::LabelsRemoved {
                        id: MessageId("m1".into()),
                        label_ids: vec![LabelId("INBOX".into())],
                    },
                    HistoryChange::MessageDeleted {
                        id: MessageId("m2".into()),
                    },
                ],
                next_page_token: None,
                history_id: HistoryId(30),
                change_ids: vec![HistoryId(12), HistoryId(12), HistoryId(15)],
            })
        })
    }
}

#[tokio::test]
async fn an_older_fetch_neither_resurrects_nor_restores_old_labels() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = AccountId("gm".into());
    let fake = Arc::new(Fake {
        answers: Mutex::new(vec![
            // The fetch both jobs see: before records 12 and 15.
            vec![fetched("m1", 10, &["INBOX"]), fetched("m2", 11, &["INBOX"])],
            // The second fetch of m1, after record 12.
            vec![fetched("m1", 12, &["TRASH"])],
        ]),
        fetched: Notify::new(),
        go: Notify::new(),
        first: Mutex::new(true),
    });
    let source = Arc::new(GmailSource::new(
        SourceKind::Gmail,
        fake.clone(),
        GmailOptions {
            initial_query: None,
            list_page_size: 10,
            listing_ahead: crate::gmail::LISTING_AHEAD,
            ingest_page_ids: 50,
        },
    ));
    store
        .transaction(|tx| {
            let mut rec = AccountRecord::load_tx(tx, "gm")?;
            rec.history_id = Some(HistoryId(5));
            rec.initial_sync_completed = true;
            rec.save_tx(tx, "gm")?;
            for id in ["m1", "m2"] {
                jobs::enqueue_ingest_tx(tx, &account, id, Priority::RealTime, now_ms())?;
            }
            Ok(())
        })
        .unwrap();
    let (reporter, _reports) = crate::test_support::reporter().await;
    let queue = store.mailbox(&mailbox_name(&account, ChildKind::Ingest));
    let jobs = queue.lease(10, now_ms()).unwrap();
    assert_eq!(jobs.len(), 2);

    // Ingest's batch runs up to its fetch and waits there.
    let ingest = {
        let (store, account, source, reporter, jobs) = (
            store.clone(),
            account.clone(),
            source.clone(),
            reporter.clone(),
            jobs.clone(),
        );
        tokio::spawn(async move {
            let cx = SourceCx {
                account: &account,
                store: &store,
                report: &reporter,
            };
            source.ingest_batch(&cx, &jobs).await
        })
    };
    fake.fetched.notified().await;
    // Meanwhile HistorySync applies records 12 (relabel m1) and 15 (delete m2).
    let cx = SourceCx {
        account: &account,
        store: &store,
        report: &reporter,
    };
    let page = source.incremental_page(&cx, &[]).await.unwrap();
    assert!(page.round_done);
    // Now the older fetch commits.
    fake.go.notify_one();
    let batch = ingest.await.unwrap().unwrap();
    assert_eq!(batch.added, 0, "nothing from the older fetch was applied");
    assert_eq!(batch.retry_now.len(), 1, "m1 is fetched again");
    assert_eq!(jobs::ingest_item(&batch.retry_now[0]), "m1");
    assert_eq!(batch.done.len(), 1, "m2's job is done");
    assert!(
        mirror::message(&store, "gm", &MessageId("m2".into()))
            .unwrap()
            .is_none()
    );
    assert!(
        mirror::message(&store, "gm", &MessageId("m1".into()))
            .unwrap()
            .is_none()
    );
    for j in batch.done.iter().chain(&batch.retry_now) {
        queue.release(j);
    }

    // The job runs again and stores m1 as it is now.
    let jobs = queue.lease(10, now_ms()).unwrap();
    assert_eq!(jobs.len(), 1);
    let batch = source.ingest_batch(&cx, &jobs).await.unwrap();
    assert_eq!((batch.added, batch.retry_now.len()), (1, 0));
    let m1 = mirror::message(&store, "gm", &MessageId("m1".into()))
        .unwrap()
        .expect("m1 stored");
    assert_eq!(m1.label_ids, vec![LabelId("TRASH".into())]);
    assert_eq!(queue.depth().unwrap().pending, 0);
}
