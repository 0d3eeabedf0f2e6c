//! Unit tests of the Maildir sink: file names and flags, idempotent writes, staged batches,
//! reconcile.

use super::*;

fn labels(names: &[&str]) -> Vec<LabelId> {
    names.iter().map(|n| LabelId((*n).to_string())).collect()
}

fn names_in(dir: &Path) -> Vec<String> {
    let mut v: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    v.sort();
    v
}

#[test]
fn flags_map_from_labels_and_are_sorted() {
    assert_eq!(flags_for_labels(&labels(&["INBOX", "UNREAD"])), "");
    assert_eq!(flags_for_labels(&labels(&["INBOX"])), "S");
    assert_eq!(
        flags_for_labels(&labels(&["TRASH", "STARRED", "DRAFT"])),
        "DFST"
    );
    assert_eq!(flags_for_labels(&labels(&["STARRED", "UNREAD"])), "F");
    assert_eq!(file_name("x.mailsync", "SRF"), "x.mailsync:2,FRS");
}

#[test]
fn file_names_are_stable_and_escaped() {
    let id = MessageId("18c2f0a9b1d3e4f5".into());
    assert_eq!(file_stem(&id), "18c2f0a9b1d3e4f5.mailsync");
    let odd = MessageId("a/b:c.d=e".into());
    let stem = file_stem(&odd);
    assert!(!stem.contains('/') && !stem.contains(':'), "{stem}");
    assert_eq!(stem, "a=2Fb=3Ac=2Ed=3De.mailsync");
    assert_eq!(
        id_from_file_name(&file_name(&stem, "S")).as_ref(),
        Some(&odd)
    );
    assert_eq!(id_from_file_name("something-else:2,S"), None);
    let long = MessageId("é".repeat(200));
    let stem = file_stem(&long);
    assert!(stem.starts_with("=H") && stem.len() < 100, "{stem}");
    assert_eq!(id_from_file_name(&stem), None);
}

#[test]
fn writing_twice_leaves_one_file_and_label_changes_rename() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open(dir.path().join("acct")).unwrap();
    for sub in ["tmp", "new", "cur"] {
        use std::os::unix::fs::PermissionsExt;
        let mode = fs::metadata(dir.path().join("acct").join(sub))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o700, "{sub}");
    }
    let id = MessageId("m1".into());
    let raw = || Ok(Some(b"Subject: hi\r\n\r\nbody\r\n".to_vec()));
    assert_eq!(md.sync_message(&id, "", raw).unwrap(), FileOutcome::Written);
    assert_eq!(
        md.sync_message(&id, "", raw).unwrap(),
        FileOutcome::Unchanged
    );
    md.sync().unwrap();
    assert_eq!(names_in(&md.cur()), ["m1.mailsync:2,"]);
    assert!(names_in(&dir.path().join("acct/tmp")).is_empty());

    // Read + starred: a rename, same content.
    assert_eq!(
        md.sync_message(&id, "FS", raw).unwrap(),
        FileOutcome::Renamed
    );
    assert_eq!(names_in(&md.cur()), ["m1.mailsync:2,FS"]);
    assert_eq!(
        fs::read(md.cur().join("m1.mailsync:2,FS")).unwrap(),
        b"Subject: hi\r\n\r\nbody\r\n"
    );

    // A reader marks it replied; our next flag change keeps R.
    fs::rename(
        md.cur().join("m1.mailsync:2,FS"),
        md.cur().join("m1.mailsync:2,FRS"),
    )
    .unwrap();
    assert_eq!(
        md.sync_message(&id, "S", raw).unwrap(),
        FileOutcome::Renamed
    );
    assert_eq!(names_in(&md.cur()), ["m1.mailsync:2,RS"]);

    // Missing raw bytes (message gone): nothing written.
    let other = MessageId("m2".into());
    assert_eq!(
        md.sync_message(&other, "", || Ok(None)).unwrap(),
        FileOutcome::Unchanged
    );
    assert_eq!(names_in(&md.cur()).len(), 1);

    assert!(md.remove_message(&id).unwrap());
    assert!(!md.remove_message(&id).unwrap());
    md.sync().unwrap();
    assert!(names_in(&md.cur()).is_empty());
}

#[test]
fn leftover_temp_files_are_overwritten_and_cleaned() {
    let dir = tempfile::tempdir().unwrap();
    let md = Maildir::open(dir.path().join("a")).unwrap();
    let id = MessageId("m1".into());
    // A crash after writing tmp/ but before the rename.
    fs::write(dir.path().join("a/tmp/m1.mailsync.tmp"), b"partial").unwrap();
    md.sync_message(&id, "S", || Ok(Some(b"full".to_vec())))
        .unwrap();
    assert_eq!(fs::read(md.cur().join("m1.mailsync:2,S")).unwrap(), b"full");
    fs::write(dir.path().join("a/tmp/m9.mailsync.tmp"), b"partial").unwrap();
    fs::write(dir.path().join("a/tmp/foreign"), b"not ours").unwrap();
    let md = Maildir::open(dir.path().join("a")).unwrap();
    assert_eq!(names_in(&md.path().join("tmp")), ["foreign"]);
}

#[test]
fn bad_account_names_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(&dir.path().join("db")).unwrap();
    let mut w = MaildirWriter::new(store, dir.path().join("mail"));
    for bad in ["", ".", "..", "a/b"] {
        assert!(
            matches!(w.maildir(bad), Err(SinkError::BadAccount(_))),
            "{bad}"
        );
    }
    assert!(w.maildir("ok.acct-1").is_ok());
}
