//! Unit tests of the mirror's idempotency core (`mirror.rs`, `freshness.rs`) on a sled store:
//! the same change applied twice stores and announces it once; an older fetch after a newer
//! fetch, deletion or relabel never brings old state back; a change from an older history
//! page applied after a newer one neither resurrects a deleted message nor emits anything; a
//! message deleted and added again is announced again (a new generation).

use crate::freshness::{self, Freshness};
use crate::jobs;
use crate::mailbox::Priority;
use crate::mirror::{self, Applied};
use crate::model::{AccountId, FetchedMessage, HistoryId, LabelId, MessageId};
use crate::spec::now_ms;
use crate::store::Store;
use crate::test_support::temp_store;

const ACCT: &str = "a";

fn fetched(id: &str, hid: u64, labels: &[&str]) -> FetchedMessage {
    crate::test_support::fetched_message(id, hid, labels)
}

fn labels(l: &[&str]) -> Vec<LabelId> {
    l.iter().map(|s| LabelId((*s).into())).collect()
}

/// Runs `f` in one transaction and flushes, like a source's commit point.
fn commit<T>(
    store: &Store,
    f: impl Fn(&crate::store::StoreTx<'_>) -> Result<T, crate::store::TxError>,
) -> T {
    let out = store.transaction(|tx| f(tx)).unwrap();
    store.flush().unwrap();
    out
}

/// The kinds of every event in the feed, in order.
fn feed_kinds(store: &Store) -> Vec<String> {
    store
        .feed()
        .read_after(0, 1_000)
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect()
}

fn stored_labels(store: &Store, id: &str) -> Option<Vec<LabelId>> {
    mirror::message(store, ACCT, &MessageId(id.into()))
        .unwrap()
        .map(|m| m.label_ids)
}

#[test]
fn the_same_fetch_applied_twice_is_stored_and_announced_once() {
    let (_d, store) = temp_store();
    let m = fetched("m1", 10, &["INBOX"]);
    assert_eq!(
        commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 1)),
        Applied::Added
    );
    assert_eq!(
        commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 2)),
        Applied::Unchanged
    );
    assert_eq!(feed_kinds(&store), ["message.added"]);
    assert_eq!(mirror::message_count(&store, ACCT), 1);
}

#[test]
fn the_same_deletion_and_the_same_label_change_applied_twice_emit_once() {
    let (_d, store) = temp_store();
    let m1 = MessageId("m1".into());
    commit(&store, |tx| {
        mirror::apply_fetched(tx, ACCT, &fetched("m1", 10, &["INBOX"]), 1)
    });
    for _ in 0..2 {
        commit(&store, |tx| {
            mirror::apply_label_delta(tx, ACCT, &m1, &labels(&["STARRED"]), &[], "h10.p0.0", 2)
        });
    }
    assert_eq!(
        stored_labels(&store, "m1"),
        Some(labels(&["INBOX", "STARRED"]))
    );
    for _ in 0..2 {
        commit(&store, |tx| mirror::apply_deleted(tx, ACCT, &m1, 3));
    }
    assert_eq!(
        feed_kinds(&store),
        ["message.added", "message.labels_changed", "message.deleted"]
    );
    assert_eq!(stored_labels(&store, "m1"), None);
}

#[test]
fn an_older_fetch_after_a_newer_one_keeps_the_newer_labels() {
    let (_d, store) = temp_store();
    commit(&store, |tx| {
        mirror::apply_fetched(tx, ACCT, &fetched("m1", 20, &["TRASH"]), 1)
    });
    assert_eq!(
        commit(&store, |tx| {
            mirror::apply_fetched(tx, ACCT, &fetched("m1", 10, &["INBOX"]), 2)
        }),
        Applied::Unchanged
    );
    assert_eq!(stored_labels(&store, "m1"), Some(labels(&["TRASH"])));
    // A newer fetch with other labels does change them, once.
    for _ in 0..2 {
        commit(&store, |tx| {
            mirror::apply_fetched(tx, ACCT, &fetched("m1", 30, &["INBOX"]), 3)
        });
    }
    assert_eq!(stored_labels(&store, "m1"), Some(labels(&["INBOX"])));
    assert_eq!(
        feed_kinds(&store),
        ["message.added", "message.labels_changed"]
    );
}

#[test]
fn a_pending_fetch_older_than_a_deletion_or_relabel_is_dropped_or_refetched() {
    let (_d, store) = temp_store();
    let account = AccountId(ACCT.into());
    commit(&store, |tx| {
        for id in ["del", "rel", "new"] {
            jobs::enqueue_ingest_tx(tx, &account, id, Priority::RealTime, now_ms())?;
        }
        Ok(())
    });
    // History records seen while the fetches are pending: 15 deletes `del`, 12 relabels `rel`
    // (then an older record 11 for `rel` that must not lower the watermark).
    commit(&store, |tx| {
        freshness::note_change(tx, &account, &MessageId("del".into()), HistoryId(15), true)?;
        freshness::note_change(tx, &account, &MessageId("rel".into()), HistoryId(12), false)?;
        freshness::note_change(tx, &account, &MessageId("rel".into()), HistoryId(11), false)
    });
    let check = |m: &FetchedMessage| commit(&store, |tx| freshness::check_fetched(tx, &account, m));
    assert_eq!(check(&fetched("del", 10, &["INBOX"])), Freshness::Deleted);
    assert_eq!(check(&fetched("rel", 10, &["INBOX"])), Freshness::Outdated);
    assert_eq!(check(&fetched("rel", 11, &["INBOX"])), Freshness::Outdated);
    // At or after the watermark: fresh. A message with no change is fresh too.
    assert_eq!(check(&fetched("rel", 12, &["TRASH"])), Freshness::Fresh);
    assert_eq!(check(&fetched("new", 1, &["INBOX"])), Freshness::Fresh);
    // After the fetch committed, its watermark is dropped: a later job starts clean.
    commit(&store, |tx| {
        freshness::clear(tx, &account, &MessageId("rel".into()))
    });
    assert_eq!(check(&fetched("rel", 1, &["INBOX"])), Freshness::Fresh);
}

#[test]
fn changes_to_a_message_without_a_pending_fetch_leave_no_watermark() {
    let (_d, store) = temp_store();
    let account = AccountId(ACCT.into());
    commit(&store, |tx| {
        freshness::note_change(tx, &account, &MessageId("m".into()), HistoryId(50), true)
    });
    let f = commit(&store, |tx| {
        freshness::check_fetched(tx, &account, &fetched("m", 1, &["INBOX"]))
    });
    assert_eq!(f, Freshness::Fresh);
}

#[test]
fn a_change_from_an_older_page_after_a_deletion_resurrects_nothing() {
    let (_d, store) = temp_store();
    let m1 = MessageId("m1".into());
    commit(&store, |tx| {
        mirror::apply_fetched(tx, ACCT, &fetched("m1", 10, &["INBOX"]), 1)
    });
    // The newer page (a deletion) lands first, then an older page's label changes.
    commit(&store, |tx| mirror::apply_deleted(tx, ACCT, &m1, 2));
    assert_eq!(
        commit(&store, |tx| {
            mirror::apply_label_delta(tx, ACCT, &m1, &labels(&["STARRED"]), &[], "h5.p0.0", 3)
        }),
        Applied::Unchanged
    );
    assert_eq!(
        commit(&store, |tx| {
            mirror::apply_label_delta(tx, ACCT, &m1, &[], &labels(&["INBOX"]), "h5.p0.1", 3)
        }),
        Applied::Unchanged
    );
    assert_eq!(stored_labels(&store, "m1"), None);
    assert_eq!(feed_kinds(&store), ["message.added", "message.deleted"]);
}

#[test]
fn replaying_a_round_s_pages_in_order_after_a_crash_changes_nothing_more() {
    let (_d, store) = temp_store();
    let m1 = MessageId("m1".into());
    commit(&store, |tx| {
        mirror::apply_fetched(tx, ACCT, &fetched("m1", 10, &["INBOX"]), 1)
    });
    let page1 = |tx: &crate::store::StoreTx<'_>| {
        mirror::apply_label_delta(tx, ACCT, &m1, &labels(&["STARRED"]), &[], "h10.p0.0", 2)
    };
    let page2 = |tx: &crate::store::StoreTx<'_>| {
        mirror::apply_label_delta(tx, ACCT, &m1, &[], &labels(&["INBOX"]), "h10.p1.0", 2)
    };
    commit(&store, page1);
    commit(&store, page2);
    let events = feed_kinds(&store).len();
    // The round starts over from its cursor: the same pages, same discriminators.
    commit(&store, page1);
    commit(&store, page2);
    assert_eq!(stored_labels(&store, "m1"), Some(labels(&["STARRED"])));
    assert_eq!(feed_kinds(&store).len(), events, "no event twice");
}

#[test]
fn a_message_deleted_and_added_again_is_announced_again() {
    let (_d, store) = temp_store();
    let m = fetched("m1", 10, &["INBOX"]);
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 1));
    commit(&store, |tx| {
        mirror::apply_deleted(tx, ACCT, &MessageId("m1".into()), 2)
    });
    assert_eq!(
        commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 3)),
        Applied::Added
    );
    // And the re-add replayed is still one event.
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 4));
    assert_eq!(
        feed_kinds(&store),
        ["message.added", "message.deleted", "message.added"]
    );
}

#[test]
fn a_new_message_s_event_has_its_record_for_idempotency_and_no_feed_key() {
    let (_d, store) = temp_store();
    let m = fetched("m1", 10, &["INBOX"]);
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 1));
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 2));
    let keys = || -> Vec<String> {
        store
            .internal(crate::store::Internal::FeedKeys)
            .iter()
            .keys()
            .map(|k| String::from_utf8_lossy(&k.unwrap()).into_owned())
            .collect()
    };
    // One sled key for the message (its record), none in feed_keys.
    assert!(keys().is_empty(), "{:?}", keys());
    commit(&store, |tx| {
        mirror::apply_deleted(tx, ACCT, &MessageId("m1".into()), 3)
    });
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &m, 4));
    let relabeled = fetched("m1", 11, &["INBOX", "STARRED"]);
    commit(&store, |tx| mirror::apply_fetched(tx, ACCT, &relabeled, 5));
    // Deletions and label changes keep their keys; the re-add is a new generation's key.
    assert_eq!(keys().len(), 2, "{:?}", keys());
    let events = store.feed().read_after(0, 100).unwrap();
    let added: Vec<&str> = events
        .iter()
        .filter(|e| e.kind == "message.added")
        .map(|e| e.key.as_str())
        .collect();
    assert_eq!(added, ["message.added:a:m1:g0", "message.added:a:m1:g1"]);
    // Pruning an added event, which has no key to drop, removes just the event.
    assert_eq!(
        store
            .feed()
            .prune(std::time::Duration::ZERO, u64::MAX)
            .unwrap(),
        events.len()
    );
    assert!(keys().is_empty(), "{:?}", keys());
}
