//! Ingest *page* jobs: the ids of one chunk of a full-sync listing, queued as one fetch job
//! instead of one job per id. A job costs sled two keys to enqueue and two to remove (the
//! job and its dedupe entry), more than the mirrored record itself; a page of `batch_size`
//! ids pays that once for the whole Ingest batch it becomes (docs/BENCHMARKS.md, nineteenth
//! session).
//!
//! What a page job is:
//! - key `ingest-page:<acct>:<disc>`, where the listing's `disc` (its history id, page number
//!   and chunk) is the same when a crashed listing step runs again, so a replay dedupes;
//! - payload [`IngestPage`] (versioned codec), at most the account's batch size of ids;
//! - consumed whole: the batch that fetches it acks it in the transaction that records its
//!   messages ([`ack_tx`]). An id that fails or comes back outdated leaves the page as a job
//!   of its own (`ingest:<acct>:<id>`, [`split_tx`]), so retries, attempt counts and dead
//!   letters stay per message, as for every other fetch.
//!
//! Only the full sync writes pages, and HistorySync does not run until the full sync has
//! drained them (the freshness watermarks of `freshness.rs` key on per-message jobs, which is
//! what a change racing a fetch can only meet).
//!
//! The queue's counters count jobs; a page is one job. [`PageTally`] (per account, written in
//! the same transactions as the pages it counts) says how many pages are queued and how many
//! ids they hold, so [`outstanding_items`] gives progress and `missing` in messages.

use crate::jobs::{ChildKind, ingest_key, mailbox_name};
use crate::mailbox::{EnqueueOutcome, Job, Priority};
use crate::model::AccountId;
use crate::store::{Space, Store, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// The key prefix of every page job.
const PAGE_PREFIX: &str = "ingest-page:";

/// The ids of one page job.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IngestPage {
    /// Item ids, in listing order.
    pub ids: Vec<String>,
}

/// Page jobs queued for an account and the ids they hold.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct PageTally {
    /// Page jobs pending, leased or delayed.
    pub pages: u64,
    /// Ids in those pages.
    pub items: u64,
}

crate::versioned_as_itself!(IngestPage => "ingest page", PageTally => "ingest page tally");

/// The idempotency key of a page job.
pub fn page_key(account: &AccountId, disc: &str) -> String {
    format!("{PAGE_PREFIX}{account}:{disc}")
}

/// Whether `job` is a page job.
pub fn is_page(job: &Job) -> bool {
    job.key.starts_with(PAGE_PREFIX)
}

/// The item ids a fetch job stands for: the page's ids, or the one id of a single job.
pub fn items(job: &Job) -> Result<Vec<String>, StoreError> {
    if is_page(job) {
        Ok(decode::<IngestPage>(&job.payload)?.ids)
    } else {
        Ok(vec![crate::jobs::ingest_item(job)])
    }
}

/// How many items a fetch job stands for (an unreadable page counts as one: it fails alone).
pub fn item_count(job: &Job) -> usize {
    if is_page(job) {
        decode::<IngestPage>(&job.payload).map_or(1, |p| p.ids.len().max(1))
    } else {
        1
    }
}

fn tally_key(account: &AccountId) -> Vec<u8> {
    let mut k = b"ingest_pages\0".to_vec();
    k.extend_from_slice(account.0.as_bytes());
    k
}

fn tally_tx(tx: &StoreTx<'_>, account: &AccountId) -> Result<PageTally, TxError> {
    match tx.get(Space::Cursors, &tally_key(account))? {
        Some(v) => Ok(decode(&v)?),
        None => Ok(PageTally::default()),
    }
}

fn save_tally_tx(tx: &StoreTx<'_>, account: &AccountId, t: PageTally) -> Result<(), TxError> {
    if t == PageTally::default() {
        tx.remove(Space::Cursors, &tally_key(account))
    } else {
        tx.insert(Space::Cursors, &tally_key(account), &encode(&t))
    }
}

/// The account's tally as committed (no key: no pages).
pub fn tally(store: &Store, account: &AccountId) -> Result<PageTally, StoreError> {
    match store.kv(Space::Cursors).get(tally_key(account)) {
        Ok(Some(v)) => decode(&v),
        Ok(None) => Ok(PageTally::default()),
        Err(e) => Err(StoreError::sled("reading the ingest page tally")(e)),
    }
}

/// Items still to fetch, from the Ingest queue's job count (pending, leased, delayed and,
/// if the caller counts them, dead) and the account's tally: each page counts its ids.
/// No job at all is nothing outstanding, whatever the tally says: a tally left over then
/// counts only pages that were dead-lettered unread (a stored payload that cannot be
/// decoded), which no fetch will ever take out of it.
pub fn outstanding_items(jobs: u64, t: PageTally) -> u64 {
    if jobs == 0 {
        return 0;
    }
    jobs.saturating_sub(t.pages).saturating_add(t.items)
}

/// Clears the account's tally when its full sync ends (nothing is queued by then) and
/// returns what it still counted: pages dead-lettered unread, see [`outstanding_items`].
pub fn clear_tally_tx(tx: &StoreTx<'_>, account: &AccountId) -> Result<PageTally, TxError> {
    let t = tally_tx(tx, account)?;
    if t != PageTally::default() {
        save_tally_tx(tx, account, PageTally::default())?;
    }
    Ok(t)
}

/// Enqueues `ids` as one page job (deduped by `disc`) at `priority` and counts it in the
/// tally. Returns whether anything new was queued.
pub fn enqueue_tx(
    tx: &StoreTx<'_>,
    account: &AccountId,
    disc: &str,
    ids: &[&str],
    priority: Priority,
    now_ms: u64,
) -> Result<bool, TxError> {
    let page = IngestPage {
        ids: ids.iter().map(|s| (*s).to_owned()).collect(),
    };
    if page.ids.is_empty() {
        return Ok(false);
    }
    let outcome = tx.enqueue(
        &mailbox_name(account, ChildKind::Ingest),
        priority,
        &page_key(account, disc),
        &encode(&page),
        now_ms,
    )?;
    if !matches!(outcome, EnqueueOutcome::Enqueued(_)) {
        return Ok(false);
    }
    let mut t = tally_tx(tx, account)?;
    t.pages = t.pages.saturating_add(1);
    t.items = t.items.saturating_add(page.ids.len() as u64);
    save_tally_tx(tx, account, t)?;
    Ok(true)
}

/// Acks a fetch job inside the transaction that recorded what it fetched; a page job also
/// leaves the tally (once: a page already gone is not counted again). `ids` is how many ids
/// the caller read from the job ([`items`]), so the page is not decoded again here.
pub fn ack_tx(tx: &StoreTx<'_>, account: &AccountId, job: &Job, ids: usize) -> Result<(), TxError> {
    if is_page(job) && crate::mailbox::tx_is_pending(tx, &job.mailbox, &job.key)? {
        let mut t = tally_tx(tx, account)?;
        t.pages = t.pages.saturating_sub(1);
        t.items = t.items.saturating_sub(ids as u64);
        save_tally_tx(tx, account, t)?;
    }
    tx.ack(job)
}

/// Gives `id` of page job `page` a job of its own (same priority), for an id whose fetch
/// failed or must run again. Returns the new job, or `None` when a job for `id` is already
/// pending (it will fetch the message anyway). The caller acks the page in the same
/// transaction.
pub fn split_tx(
    tx: &StoreTx<'_>,
    account: &AccountId,
    page: &Job,
    id: &str,
    now_ms: u64,
) -> Result<Option<Job>, TxError> {
    let key = ingest_key(account, id);
    let outcome = tx.enqueue(&page.mailbox, page.priority, &key, id.as_bytes(), now_ms)?;
    Ok(match outcome {
        EnqueueOutcome::Enqueued(jid) => Some(Job {
            id: jid,
            mailbox: page.mailbox.clone(),
            key,
            priority: page.priority,
            payload: id.as_bytes().to_vec(),
            attempts: 0,
            not_before_ms: 0,
            last_error: None,
            enqueued_ms: now_ms,
        }),
        EnqueueOutcome::Duplicate(_) => None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::now_ms;

    fn store() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    #[test]
    fn a_page_is_one_job_its_ids_are_counted_and_a_replayed_enqueue_is_a_no_op() {
        let (_d, store) = store();
        let acct = AccountId("a".into());
        let ids = ["m1", "m2", "m3"];
        for _ in 0..2 {
            store
                .transaction(|tx| {
                    enqueue_tx(tx, &acct, "h1.p0.0", &ids, Priority::Backfill, now_ms())
                })
                .unwrap();
        }
        let queue = store.mailbox(&mailbox_name(&acct, ChildKind::Ingest));
        let depth = queue.depth().unwrap();
        assert_eq!(depth.pending, 1, "one job for the page");
        let t = tally(&store, &acct).unwrap();
        assert_eq!(t, PageTally { pages: 1, items: 3 });
        assert_eq!(outstanding_items(depth.pending as u64, t), 3);

        let job = queue.lease(1, now_ms()).unwrap().remove(0);
        assert!(is_page(&job));
        assert_eq!(items(&job).unwrap(), vec!["m1", "m2", "m3"]);
        assert_eq!(item_count(&job), 3);
        // m2 failed: it leaves as its own job; the page is done.
        let split = store
            .transaction(|tx| {
                let s = split_tx(tx, &acct, &job, "m2", now_ms())?;
                ack_tx(tx, &acct, &job, 3)?;
                // Acking twice in one transaction does not count twice.
                ack_tx(tx, &acct, &job, 3)?;
                Ok(s)
            })
            .unwrap()
            .expect("a new job");
        queue.release(&job);
        assert_eq!(split.key, ingest_key(&acct, "m2"));
        assert_eq!(tally(&store, &acct).unwrap(), PageTally::default());
        let depth = queue.depth().unwrap();
        assert_eq!(depth.pending, 1);
        assert_eq!(
            outstanding_items(depth.pending as u64, PageTally::default()),
            1
        );
        let single = queue.lease(10, now_ms()).unwrap();
        assert_eq!(single.len(), 1);
        assert_eq!(single[0].id, split.id);
        assert_eq!(items(&single[0]).unwrap(), vec!["m2"]);
    }

    #[test]
    fn a_page_with_unreadable_ids_counts_as_one_item() {
        let job = Job {
            id: crate::mailbox::JobId(1),
            mailbox: "a/ingest".into(),
            key: page_key(&AccountId("a".into()), "x"),
            priority: Priority::Backfill,
            payload: b"not a page".to_vec(),
            attempts: 0,
            not_before_ms: 0,
            last_error: None,
            enqueued_ms: 0,
        };
        assert_eq!(item_count(&job), 1);
        assert!(items(&job).is_err());
    }

    #[test]
    fn a_tally_left_by_a_page_dead_lettered_unread_does_not_hold_the_full_sync() {
        let (_d, store) = store();
        let account = AccountId("a".into());
        store
            .transaction(|tx| {
                enqueue_tx(
                    tx,
                    &account,
                    "h1.p0.0",
                    &["m1", "m2", "m3"],
                    Priority::Backfill,
                    1,
                )
            })
            .unwrap();
        let t = tally(&store, &account).unwrap();
        assert_eq!(t, PageTally { pages: 1, items: 3 });
        // The page is queued: its three ids are outstanding.
        assert_eq!(outstanding_items(1, t), 3);
        // The page was dead-lettered unread (no live job left): nothing is outstanding.
        assert_eq!(outstanding_items(0, t), 0);
        let left = store
            .transaction(|tx| clear_tally_tx(tx, &account))
            .unwrap();
        assert_eq!(left, t);
        assert_eq!(tally(&store, &account).unwrap(), PageTally::default());
        assert_eq!(
            store
                .transaction(|tx| clear_tally_tx(tx, &account))
                .unwrap(),
            PageTally::default()
        );
    }
}
