//! Tests of where a mirrored message's body reference lives (schema 6): in its record for new
//! messages, under its key in the `bodies` tree for records written before; both are read,
//! label changes keep the reference, and a backup carries the bodies of both kinds, so the
//! restored store (which has none of the body files) serves every message and checks clean.

use crate::mirror::{self, MirrorMessage, apply_deleted, apply_fetched, record_key};
use crate::model::{FetchedMessage, MessageId};
use crate::store::{Space, Store, encode};
use crate::store_backup::restore;
use crate::store_check::check_store;
use crate::test_support::fetched_message;

fn id(s: &str) -> MessageId {
    MessageId(s.into())
}

/// Writes `m2` the way a schema-5 build did: a record without a reference, its body
/// referenced from the `bodies` tree.
fn write_schema5_message(store: &Store) -> Vec<u8> {
    let raw = b"Subject: m2\r\n\r\nwritten by schema 5".to_vec();
    let record = MirrorMessage {
        id: id("m2"),
        thread_id: "m2".into(),
        label_ids: Vec::new(),
        history_id: crate::model::HistoryId(1),
        internal_date_ms: 1,
        raw_sha256: mirror::sha256_hex(&raw),
        size: raw.len() as u64,
        headers: Default::default(),
        body: None,
    };
    let key = record_key("a", "m2");
    store
        .transaction(|tx| {
            tx.insert(Space::Messages, &key, &encode(&record))?;
            tx.put_body(&key, &raw)?;
            Ok(())
        })
        .unwrap();
    raw
}

/// A store holding `m1`, written by this build.
fn store_with_m1() -> (tempfile::TempDir, Store, FetchedMessage) {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let m1 = fetched_message("m1", 2, &["INBOX"]);
    store
        .transaction(|tx| apply_fetched(tx, "a", &m1, 1))
        .unwrap();
    (dir, store, m1)
}

#[test]
fn a_new_record_holds_its_body_ref_and_an_old_one_is_read_through_the_bodies_tree() {
    let (_dir, store, m1) = store_with_m1();
    let record = mirror::message(&store, "a", &id("m1")).unwrap().unwrap();
    assert!(record.body.is_some(), "the record holds the reference");
    assert!(
        store
            .kv(Space::Bodies)
            .get(record_key("a", "m1"))
            .unwrap()
            .is_none(),
        "no key of its own in the bodies tree"
    );
    assert_eq!(
        mirror::raw(&store, "a", &id("m1")).unwrap(),
        Some(m1.raw.clone())
    );
    let old = write_schema5_message(&store);
    assert_eq!(mirror::raw(&store, "a", &id("m2")).unwrap(), Some(old));
    // A label change rewrites the record: the reference stays.
    let relabelled = fetched_message("m1", 3, &["INBOX", "STARRED"]);
    store
        .transaction(|tx| apply_fetched(tx, "a", &relabelled, 2))
        .unwrap();
    let record = mirror::message(&store, "a", &id("m1")).unwrap().unwrap();
    assert_eq!(record.label_ids.len(), 2);
    assert_eq!(
        mirror::raw(&store, "a", &id("m1")).unwrap(),
        Some(m1.raw.clone())
    );
    assert_eq!(
        record.without_body_ref().body,
        None,
        "what sinks keep has none"
    );
    store
        .transaction(|tx| apply_deleted(tx, "a", &id("m1"), 3))
        .unwrap();
    assert_eq!(mirror::raw(&store, "a", &id("m1")).unwrap(), None);
}

#[test]
fn a_backup_carries_the_bodies_of_both_kinds_and_the_restored_store_checks_clean() {
    let (dir, store, m1) = store_with_m1();
    let old = write_schema5_message(&store);
    store.flush().unwrap();
    let file = dir.path().join("b.msbk");
    store.backup_to(&file).unwrap();
    drop(store);
    // The restored database is new, and so are the body files it will append to: a
    // reference copied as it was would point at nothing (or at another body).
    std::fs::remove_dir_all(dir.path().join(crate::store::bodies::BODIES_DIR)).ok();
    restore(dir.path(), &file).unwrap();
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        mirror::raw(&store, "a", &id("m1")).unwrap(),
        Some(m1.raw.clone())
    );
    assert_eq!(mirror::raw(&store, "a", &id("m2")).unwrap(), Some(old));
    let record = mirror::message(&store, "a", &id("m1")).unwrap().unwrap();
    assert_eq!(
        record.body, None,
        "restored without the old store's reference"
    );
    // New bodies land in the restored store's own files and are read back.
    let m3 = fetched_message("m3", 4, &["INBOX"]);
    store
        .transaction(|tx| apply_fetched(tx, "a", &m3, 5))
        .unwrap();
    store.flush().unwrap();
    assert_eq!(
        mirror::raw(&store, "a", &id("m3")).unwrap(),
        Some(m3.raw.clone())
    );
    drop(store);
    let report = check_store(dir.path()).unwrap();
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
