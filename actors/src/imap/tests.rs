//! Unit tests of the IMAP source's pure logic: folder patterns, Message-ID extraction, the
//! header section used for rematching, chunking of body fetches, folder order.

use super::folder_sync::{Limits, header_hash, header_of};
use super::port::MessageMeta;
use super::store::{FolderState, normalize_flags};
use super::{folder_matches, folder_rank, message_id_of};

#[test]
fn folder_patterns_follow_list_wildcards() {
    assert!(folder_matches("*", "Archive/2024"));
    assert!(folder_matches("Archive/*", "Archive/2024"));
    assert!(!folder_matches("Archive/%", "Archive/2024/Q1"));
    assert!(folder_matches("Archive/%", "Archive/2024"));
    assert!(folder_matches("inbox", "INBOX"));
    assert!(!folder_matches("Sent", "Sent Items"));
}

#[test]
fn message_ids_are_read_unfolded() {
    let h = b"Subject: x\r\nMessage-ID:\r\n <a.b@example.org>\r\nFrom: y\r\n\r\n";
    assert_eq!(message_id_of(h).as_deref(), Some("<a.b@example.org>"));
    assert_eq!(message_id_of(b"Subject: none\r\n\r\n"), None);
    assert_eq!(
        message_id_of(b"message-id: <c@d>\r\n\r\n").as_deref(),
        Some("<c@d>")
    );
}

#[test]
fn the_header_section_ends_at_the_first_empty_line() {
    let raw = b"A: 1\r\nB: 2\r\n\r\nbody\r\n\r\nmore";
    assert_eq!(header_of(raw), b"A: 1\r\nB: 2\r\n\r\n");
    assert_eq!(header_of(b"A: 1\n\nbody"), b"A: 1\n\n");
    assert_eq!(header_of(b"no body"), b"no body");
    assert_ne!(header_hash(b"a"), header_hash(b"b"));
}

#[test]
fn flags_are_sorted_without_recent() {
    let f = normalize_flags(&[
        "\\Seen".into(),
        "\\Recent".into(),
        "$Forwarded".into(),
        "\\Seen".into(),
    ]);
    assert_eq!(f, vec!["$Forwarded".to_string(), "\\Seen".to_string()]);
}

#[test]
fn inbox_and_flagged_folders_go_first() {
    let f = |name: &str, special: Option<&str>| FolderState {
        name: name.into(),
        special_use: special.map(str::to_string),
        ..FolderState::default()
    };
    assert!(folder_rank(&f("INBOX", None)) < folder_rank(&f("Flagged", Some("\\Flagged"))));
    assert!(folder_rank(&f("Flagged", Some("\\Flagged"))) < folder_rank(&f("Work", None)));
    assert!(folder_rank(&f("Work", None)) < folder_rank(&f("Trash", Some("\\Trash"))));
}

#[test]
fn body_fetches_are_bounded_by_count_and_bytes() {
    let metas: Vec<MessageMeta> = (1..=250)
        .map(|uid| MessageMeta {
            uid,
            size: Some(if uid == 7 { 30_000_000 } else { 1_000 }),
            ..MessageMeta::default()
        })
        .collect();
    let refs: Vec<&MessageMeta> = metas.iter().collect();
    let limits = Limits {
        page_uids: 500,
        pages_per_select: 10,
        chunk: 100,
        chunk_bytes: 20 * 1024 * 1024,
    };
    let chunks = super::folder_sync::chunks_for_test(&refs, limits);
    assert!(chunks.iter().all(|c| c.len() <= 100));
    assert_eq!(chunks.iter().map(Vec::len).sum::<usize>(), 250);
    // The oversized message travels alone.
    assert!(chunks.iter().any(|c| c.len() == 1 && c[0].uid == 7));
}
