//! The schema-5 fixture (`tests/fixtures/datadir-v5`, the release before body refs moved into
//! the message records): its messages keep their refs in the `bodies` tree and are read
//! through it, a message written now keeps its ref in its record beside them, the check finds
//! the mixed store sound, and a backup of it restores every body of both kinds.

use super::{ACCOUNT, expected, fixture_runs_under_the_daemon, manifest_of, new_message, unpack};
use mailsync_actors::mirror;
use mailsync_actors::store::{Space, Store};
use mailsync_actors::store_check::check_store;

#[test]
fn v5_fixture_runs_under_the_daemon() {
    fixture_runs_under_the_daemon(5);
}

#[test]
fn v5_fixture_reads_old_body_refs_beside_refs_in_records() {
    let (_tmp, data) = unpack(5);
    let want = expected(5);
    let store = Store::open(&data).expect("open the v5 fixture");
    let got = manifest_of(&store);
    for part in ["messages", "labels", "feed", "consumers", "account", "jobs"] {
        assert_eq!(got[part], want[part], "{part} differs after migration");
    }
    // The fixture really is the previous release's: no record holds a ref, each body is
    // referenced from the bodies tree.
    let mut old = 0;
    mirror::for_each_message(&store, ACCOUNT, |m| {
        assert_eq!(m.body, None, "{}: a schema-5 record has no ref", m.id);
        let key = mirror::record_key(ACCOUNT, &m.id.0);
        assert!(store.kv(Space::Bodies).get(&key).expect("get").is_some());
        old += 1;
        Ok(())
    })
    .expect("scan");
    assert!(old >= 5, "the fixture has messages");

    let msg = new_message();
    store
        .transaction(|tx| mirror::apply_fetched(tx, ACCOUNT, &msg, 1))
        .expect("store a new message");
    store.flush().expect("flush");
    let key = mirror::record_key(ACCOUNT, &msg.id.0);
    assert!(store.kv(Space::Bodies).get(&key).expect("get").is_none());
    let stored = mirror::message(&store, ACCOUNT, &msg.id)
        .expect("read")
        .expect("the new message");
    assert!(stored.body.is_some(), "a new record holds its ref");
    let mixed = manifest_of(&store);
    let mut messages = mixed["messages"].as_object().expect("messages").clone();
    let new = messages.remove(&msg.id.0).expect("the new message");
    assert_eq!(new["raw_ok"], true);
    assert_eq!(
        serde_json::Value::Object(messages),
        want["messages"],
        "old messages intact"
    );

    // A backup of the mixed store, restored where none of its body files are.
    let backup = data.join("mixed.msbk");
    store.backup_to(&backup).expect("backup");
    drop(store);
    let report = check_store(&data).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
    let elsewhere = tempfile::tempdir().expect("tempdir");
    mailsync_actors::store_backup::restore(elsewhere.path(), &backup).expect("restore");
    let restored = Store::open(elsewhere.path()).expect("open the restored store");
    assert_eq!(manifest_of(&restored)["messages"], mixed["messages"]);
    drop(restored);
    let report = check_store(elsewhere.path()).expect("check");
    assert!(report.problems.is_empty(), "{:?}", report.problems);
}
