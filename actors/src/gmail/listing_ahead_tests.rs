//! The full sync's listing stays at most `listing_ahead` ids (and one page) ahead of the
//! fetching, whatever the mailbox's size, queues them as page jobs of `ingest_page_ids`, and
//! still lists every id exactly once: driven step by step through the Gmail source over a
//! scripted API and a real store, with the test playing Ingest (leasing page jobs and
//! acknowledging them as `fetch.rs` does).

use crate::account_record::AccountRecord;
use crate::gmail::{GmailOptions, GmailSource};
use crate::ingest_pages;
use crate::jobs::{self, BackfillJob, ChildKind, mailbox_name};
use crate::model::{
    AccountId, BatchItem, HistoryId, HistoryPage, Label, ListQuery, MessageId, MessagePage, Profile,
};
use crate::ports::{GmailApi, PortFuture};
use crate::source::{BackfillNext, SourceCx, SourceKind, SyncSource};
use crate::spec::now_ms;
use crate::store::Store;
use std::collections::HashSet;
use std::sync::Arc;

const MESSAGES: usize = 100;
const PAGE: usize = 10;
const AHEAD: u64 = 30;
const PAGE_JOB_IDS: usize = 4;

/// A mailbox of `MESSAGES` ids listed `PAGE` at a time (the page token is the offset).
struct Listing;

impl GmailApi for Listing {
    fn profile(&self) -> PortFuture<'_, Profile> {
        Box::pin(async {
            Ok(Profile {
                email: "a@example.com".into(),
                history_id: HistoryId(500),
                messages_total: MESSAGES as u64,
            })
        })
    }
    fn labels(&self) -> PortFuture<'_, Vec<Label>> {
        Box::pin(async { Ok(Vec::new()) })
    }
    fn list_messages<'a>(
        &'a self,
        _: &'a ListQuery,
        token: Option<&'a str>,
    ) -> PortFuture<'a, MessagePage> {
        Box::pin(async move {
            let from: usize = token.map_or(0, |t| t.parse().expect("offset token"));
            let to = (from + PAGE).min(MESSAGES);
            Ok(MessagePage {
                ids: (from..to).map(|i| MessageId(format!("m{i:04}"))).collect(),
                next_page_token: (to < MESSAGES).then(|| to.to_string()),
                result_size_estimate: MESSAGES as u64,
            })
        })
    }
    fn get_messages<'a>(&'a self, _: &'a [MessageId]) -> PortFuture<'a, Vec<BatchItem>> {
        crate::test_support::unused()
    }
    fn history<'a>(&'a self, _: HistoryId, _: Option<&'a str>) -> PortFuture<'a, HistoryPage> {
        crate::test_support::unused()
    }
}

#[tokio::test]
async fn the_listing_waits_for_ingest_once_it_is_far_enough_ahead() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let account = AccountId("gm".into());
    let source = GmailSource::new(
        SourceKind::Gmail,
        Arc::new(Listing),
        GmailOptions {
            initial_query: None,
            list_page_size: PAGE as u32,
            listing_ahead: AHEAD,
            ingest_page_ids: PAGE_JOB_IDS,
        },
    );
    store
        .transaction(|tx| jobs::enqueue_backfill_tx(tx, &account, BackfillJob::FullSync, now_ms()))
        .unwrap();
    let backfill = store.mailbox(&mailbox_name(&account, ChildKind::Backfill));
    let job = backfill.lease(1, now_ms()).unwrap().remove(0);
    let ingest = store.mailbox(&mailbox_name(&account, ChildKind::Ingest));
    let (reporter, _reports) = crate::test_support::reporter().await;
    let cx = SourceCx {
        account: &account,
        store: &store,
        report: &reporter,
    };

    let mut fetched = HashSet::new();
    let mut most_outstanding = 0;
    let mut most_jobs = 0;
    let mut waits = 0;
    for _ in 0..1_000 {
        let next = source.backfill_step(&cx, &job).await.unwrap();
        let depth = ingest.depth().unwrap();
        let jobs_queued = (depth.pending + depth.leased) as u64;
        let tally = ingest_pages::tally(&store, &account).unwrap();
        most_outstanding =
            most_outstanding.max(ingest_pages::outstanding_items(jobs_queued, tally));
        most_jobs = most_jobs.max(jobs_queued);
        match next {
            BackfillNext::Finished => break,
            BackfillNext::Continue => {}
            BackfillNext::WaitThen(_) => {
                waits += 1;
                // Ingest fetches two page jobs (fewer ids than a listing page, so the listing
                // is held more than once on its way).
                for j in ingest.lease(2, now_ms()).unwrap() {
                    assert!(ingest_pages::is_page(&j), "{}", j.key);
                    let ids = ingest_pages::items(&j).unwrap();
                    let n = ids.len();
                    assert!(n <= PAGE_JOB_IDS);
                    for id in ids {
                        assert!(fetched.insert(id));
                    }
                    store
                        .transaction(|tx| ingest_pages::ack_tx(tx, &account, &j, n))
                        .unwrap();
                    ingest.release(&j);
                }
            }
        }
    }
    assert_eq!(
        ingest_pages::tally(&store, &account).unwrap(),
        ingest_pages::PageTally::default(),
        "every page left the tally"
    );
    assert!(
        most_jobs
            <= (AHEAD + PAGE as u64).div_ceil(PAGE as u64) * PAGE.div_ceil(PAGE_JOB_IDS) as u64,
        "{most_jobs} jobs for {most_outstanding} ids: one job per page of ids"
    );
    assert!(
        most_outstanding <= AHEAD + PAGE as u64,
        "the listing ran {most_outstanding} ids ahead; the bound is {AHEAD} and one page"
    );
    assert!(
        most_outstanding >= AHEAD,
        "the listing never got {AHEAD} ahead ({most_outstanding})"
    );
    assert!(waits > 10, "the listing was held back only {waits} times");
    assert_eq!(
        fetched.len(),
        MESSAGES,
        "every listed id was queued exactly once"
    );
    let rec = AccountRecord::load(&store, "gm").unwrap();
    assert!(rec.initial_sync_completed);
    assert_eq!(rec.history_id, Some(HistoryId(500)));
}
