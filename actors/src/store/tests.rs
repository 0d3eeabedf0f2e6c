//! Unit tests of the store: codec, transactions, schema, locks.

use super::*;
use crate::mailbox::Priority;

#[test]
fn encode_decode_roundtrip_and_corrupt_values_are_errors() {
    let v = "x".to_string();
    let bytes = encode(&v);
    assert_eq!(bytes[0], codec::FORMAT_TAGGED);
    let back: String = decode(&bytes).unwrap();
    assert_eq!(back, v);
    assert!(matches!(
        decode::<u64>(&[]),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode::<u64>(&[9, 1]),
        Err(StoreError::Corrupt { .. })
    ));
    assert!(matches!(
        decode::<String>(&bytes[..3]),
        Err(StoreError::Corrupt { .. })
    ));
    let mut trailing = encode(&1u64);
    trailing.push(0);
    assert!(matches!(
        decode::<u64>(&trailing),
        Err(StoreError::Corrupt { .. })
    ));
}

#[test]
fn open_same_dir_twice_in_process_is_locked_with_clear_message() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = Store::open(dir.path()).unwrap_err();
    assert!(matches!(err, StoreError::Locked { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(
        msg.contains("another mailsync daemon is using")
            && msg.contains(&*dir.path().to_string_lossy()),
        "{msg}"
    );
    drop(store);
    Store::open(dir.path()).expect("the lock is released with the last handle");
}

#[test]
fn open_writes_schema_version_and_rejects_newer() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let v: u32 = decode(
        &store
            .kv(Space::Meta)
            .get(SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v, SCHEMA_VERSION);
    store
        .kv(Space::Meta)
        .insert(SCHEMA_VERSION_KEY, encode(&(SCHEMA_VERSION + 1)))
        .unwrap();
    store.flush().unwrap();
    drop(store);
    let err = Store::open(dir.path()).unwrap_err();
    assert!(
        matches!(err, StoreError::SchemaTooNew { found, .. } if found == SCHEMA_VERSION + 1),
        "{err:?}"
    );
}

#[test]
fn open_runs_migrations_in_order() {
    fn to_v2(db: &sled::Db) -> Result<(), String> {
        db.insert(b"m", b"2".to_vec()).map_err(|e| e.to_string())?;
        Ok(())
    }
    fn to_v3(db: &sled::Db) -> Result<(), String> {
        let prev = db.get(b"m").map_err(|e| e.to_string())?;
        if prev.as_deref() != Some(b"2") {
            return Err("v2 migration did not run first".into());
        }
        db.insert(b"m", b"3".to_vec()).map_err(|e| e.to_string())?;
        Ok(())
    }
    fn broken(_: &sled::Db) -> Result<(), String> {
        Err("boom".into())
    }
    let dir = tempfile::tempdir().unwrap();
    drop(Store::open_with(dir.path(), &[], &StoreOptions::default()).unwrap()); // v1
    let store = Store::open_with(dir.path(), &[to_v2, to_v3], &StoreOptions::default()).unwrap();
    let v: u32 = decode(
        &store
            .kv(Space::Meta)
            .get(SCHEMA_VERSION_KEY)
            .unwrap()
            .unwrap(),
    )
    .unwrap();
    assert_eq!(v, 3);
    assert_eq!(
        store.inner.db.get(b"m").unwrap().as_deref(),
        Some(&b"3"[..])
    );
    drop(store);
    let err = Store::open_with(
        dir.path(),
        &[to_v2, to_v3, broken],
        &StoreOptions::default(),
    )
    .unwrap_err();
    assert!(
        matches!(err, StoreError::Migration { from: 3, .. }),
        "{err:?}"
    );
}

#[test]
fn store_calls_inside_a_transaction_fail_instead_of_deadlocking() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let mb = store.mailbox("m");
    let feed = store.feed();
    let err = store
        .transaction(|_| {
            mb.depth_scanned()?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InsideTransaction { .. }),
        "{err:?}"
    );
    let err = store
        .transaction(|_| store.transaction(|_| Ok(())).map_err(TxError::from))
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InsideTransaction { .. }),
        "{err:?}"
    );
    let err = store
        .transaction(|_| {
            feed.read_after(0, 1)?;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(err, StoreError::InsideTransaction { .. }),
        "{err:?}"
    );
    // The mark is gone afterwards.
    mb.enqueue(Priority::Normal, "k", b"").unwrap();
    assert_eq!(mb.lease(1, 0).unwrap().len(), 1);
}

#[test]
fn transaction_abort_commits_nothing_and_carries_reason() {
    #[derive(Debug, thiserror::Error)]
    #[error("nope")]
    struct Nope;
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = store
        .transaction(|tx| {
            tx.insert(Space::Cursors, b"c", b"1")?;
            Err::<(), _>(TxError::abort(Nope))
        })
        .unwrap_err();
    match err {
        StoreError::Aborted(reason) => assert!(reason.downcast_ref::<Nope>().is_some()),
        other => panic!("{other:?}"),
    }
    assert!(store.kv(Space::Cursors).get(b"c").unwrap().is_none());
    let got = store
        .transaction(|tx| {
            tx.insert(Space::Cursors, b"c", b"1")?;
            tx.get(Space::Cursors, b"c")
        })
        .unwrap();
    assert_eq!(got.as_deref(), Some(&b"1"[..]));
}

/// The group flush under many concurrent callers: every call returns and every write is there
/// when the store is opened again. (This does not reproduce the sled pool deadlock of issue 13,
/// which needed the daemon's full load; `gmail_scale::two_hundred_gmail_accounts_…` guards that.)
#[test]
fn many_concurrent_flush_async_calls_all_return_and_keep_every_write() {
    let dir = tempfile::tempdir().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    {
        let store = Store::open(dir.path()).unwrap();
        rt.block_on(async {
            let tasks: Vec<_> = (0..200u32)
                .map(|i| {
                    let store = store.clone();
                    tokio::spawn(async move {
                        for round in 0..5u32 {
                            let key = format!("k{i:03}-{round}");
                            store
                                .kv(Space::Cursors)
                                .insert(key.as_bytes(), &i.to_be_bytes())
                                .unwrap();
                            store.flush_async().await.unwrap();
                        }
                    })
                })
                .collect();
            let all = futures_util::future::join_all(tasks);
            let done = tokio::time::timeout(std::time::Duration::from_secs(300), all).await;
            assert!(done.is_ok(), "flush_async calls did not all return");
        });
    }
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(store.kv(Space::Cursors).len(), 1000);
}

#[test]
fn bodies_live_in_the_body_files_survive_a_reopen_and_inline_ones_stay_readable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let at = store
        .transaction(|tx| {
            tx.insert(Space::Raw, b"legacy", b"written inline by schema 2")?;
            tx.put_body(b"new", b"a body in a segment file")
        })
        .unwrap();
    store.flush().unwrap();
    // sled holds the ref, not the bytes.
    let stored = store.kv(Space::Bodies).get(b"new").unwrap().unwrap();
    assert!(stored.len() < 40, "{} bytes in sled", stored.len());
    assert!(store.kv(Space::Raw).get(b"new").unwrap().is_none());
    assert_eq!(at.len, 24);
    drop(store);
    let store = Store::open(dir.path()).unwrap();
    assert_eq!(
        store.body(b"new").unwrap().as_deref(),
        Some(&b"a body in a segment file"[..])
    );
    assert_eq!(
        store.body(b"legacy").unwrap().as_deref(),
        Some(&b"written inline by schema 2"[..])
    );
    assert_eq!(store.body(b"absent").unwrap(), None);
    store
        .transaction(|tx| {
            tx.remove_body(b"new")?;
            tx.remove_body(b"legacy")
        })
        .unwrap();
    assert_eq!(store.body(b"new").unwrap(), None);
    assert_eq!(store.body(b"legacy").unwrap(), None);
}

#[test]
fn an_aborted_transaction_leaves_no_ref_to_the_body_it_appended() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    let err = store
        .transaction(|tx| {
            tx.put_body(b"k", b"never committed")?;
            Err::<(), _>(TxError::abort("no"))
        })
        .unwrap_err();
    assert!(matches!(err, StoreError::Aborted(_)), "{err}");
    assert_eq!(store.body(b"k").unwrap(), None);
    assert!(store.kv(Space::Bodies).is_empty());
}

#[test]
fn a_damaged_body_file_is_a_corrupt_value_not_wrong_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(dir.path()).unwrap();
    store
        .transaction(|tx| tx.put_body(b"k", b"the original bytes"))
        .unwrap();
    let seg = bodies::segments(&dir.path().join(bodies::BODIES_DIR)).unwrap();
    let path = dir
        .path()
        .join(bodies::BODIES_DIR)
        .join(format!("{:08}.bodies", seg[0]));
    std::fs::write(&path, b"the 0riginal bytes").unwrap();
    let err = store.body(b"k").unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("checksum mismatch"), "{err}");
}
