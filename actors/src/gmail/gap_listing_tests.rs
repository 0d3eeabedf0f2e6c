use super::*;
use std::collections::{BTreeMap, BTreeSet};

fn read_all(s: &GapScratch, from: u64) -> Vec<ListedId> {
    let mut r = s.sorted_from(from).expect("reader");
    let mut out = Vec::new();
    while let Some(rec) = r.peek().expect("peek") {
        out.push(rec.clone());
        r.advance();
    }
    out
}

/// A listing of `n` ids in a scattered order, with repeats across pages, three labels each and
/// a label listing that also returns ids the id listing did not.
fn listing(n: u32) -> (Vec<Vec<ListedEntry>>, BTreeMap<String, BTreeSet<String>>) {
    let mut pages = Vec::new();
    let mut want: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let ids: Vec<String> = (0..n)
        .map(|i| format!("{:08x}", (i as u64 * 2_654_435_761) % 4_294_967_291))
        .collect();
    for chunk in ids.chunks(97) {
        pages.push(chunk.iter().map(|id| ListedEntry::id(id)).collect());
        for id in chunk {
            want.entry(id.clone()).or_default();
        }
    }
    // A page listed twice (pagination shifted under concurrent changes).
    pages.push(ids[..50].iter().map(|id| ListedEntry::id(id)).collect());
    for label in ["UNREAD", "INBOX", "Label_7"] {
        let mut page = Vec::new();
        for (i, id) in ids.iter().enumerate() {
            if i % 3 != 0 || label == "INBOX" {
                page.push(ListedEntry::labelled(id, label));
                want.get_mut(id).expect("listed").insert(label.to_string());
            }
        }
        // Repeats, and an id only the label listing returned.
        page.push(ListedEntry::labelled(&ids[1], label));
        page.push(ListedEntry::labelled("zz-not-listed", label));
        pages.push(page);
    }
    (pages, want)
}

#[test]
fn a_listing_larger_than_many_segments_sorts_into_one_record_per_listed_id() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = GapScratch::new(dir.path(), "me@example.com");
    let (pages, want) = listing(5_000);
    let mut committed = 0;
    for (i, page) in pages.into_iter().enumerate() {
        if i == 3 {
            // A page written but never committed (the step crashed): the next append drops it.
            s.append(committed, vec![ListedEntry::id("ghost")])
                .expect("uncommitted page");
        }
        committed = s.append(committed, page).expect("append");
    }
    let summary = s.sort(committed, 1_000).expect("sort");
    assert!(summary.entries > 10 * 1_000, "{summary:?}");
    assert_eq!(summary.held, 1_000, "the sort held more than one segment");
    // It spilled: one sorted segment on disk per 1,000 entries.
    assert_eq!(
        summary.segments,
        summary.entries.div_ceil(1_000),
        "{summary:?}"
    );
    assert_eq!(summary.ids, want.len() as u64);
    let got = read_all(&s, 0);
    let got: BTreeMap<String, BTreeSet<String>> = got
        .into_iter()
        .map(|r| {
            let labels: Vec<String> = r.labels.into_iter().map(|l| l.0).collect();
            let mut sorted = labels.clone();
            sorted.sort();
            sorted.dedup();
            assert_eq!(labels, sorted, "labels of {} not sorted and unique", r.id);
            (r.id, labels.into_iter().collect())
        })
        .collect();
    assert_eq!(got, want);
    // No segment outlives the sort.
    assert!(
        !dir.path()
            .join("gap")
            .join(hex::encode("me@example.com"))
            .join("sort")
            .exists()
    );
}

#[test]
fn a_reader_resumes_at_a_recorded_position_and_ids_come_in_byte_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = GapScratch::new(dir.path(), "a");
    let ids = ["b", "a", "c10", "c9", "Z"];
    let len = s
        .append(0, ids.iter().map(|i| ListedEntry::id(i)))
        .expect("append");
    s.sort(len, 2).expect("sort");
    let all: Vec<String> = read_all(&s, 0).into_iter().map(|r| r.id).collect();
    assert_eq!(all, ["Z", "a", "b", "c10", "c9"]);
    let mut r = s.sorted_from(0).expect("reader");
    r.peek().expect("peek");
    r.peek().expect("a second peek reads nothing more");
    r.advance();
    r.peek().expect("peek");
    r.advance();
    let at = r.position();
    let rest: Vec<String> = read_all(&s, at).into_iter().map(|r| r.id).collect();
    assert_eq!(rest, ["b", "c10", "c9"]);
}

#[test]
fn a_short_missing_or_damaged_file_is_lost_not_misread() {
    let dir = tempfile::tempdir().expect("tempdir");
    let s = GapScratch::new(dir.path(), "a");
    assert!(matches!(
        s.append(10, vec![ListedEntry::id("x")]),
        Err(ScratchError::Lost { .. })
    ));
    let len = s.append(0, vec![ListedEntry::id("x")]).expect("append");
    assert!(matches!(
        s.append(len + 5, vec![ListedEntry::id("y")]),
        Err(ScratchError::Lost { .. })
    ));
    assert!(matches!(s.sorted_from(0), Err(ScratchError::Lost { .. })));
    s.sort(len, 10).expect("sort");
    let sorted = dir.path().join("gap").join(hex::encode("a")).join("sorted");
    std::fs::write(&sorted, [0xff, 0xff, 0xff, 0x7f, 1]).expect("damage");
    let mut r = s.sorted_from(0).expect("reader");
    assert!(matches!(r.peek(), Err(ScratchError::Lost { .. })));
    std::fs::write(
        dir.path().join("gap").join(hex::encode("a")).join("listed"),
        [9u8; 12],
    )
    .expect("damage");
    assert!(matches!(s.sort(12, 10), Err(ScratchError::Lost { .. })));
    s.remove().expect("remove");
    s.remove().expect("removing nothing is fine");
    assert!(!dir.path().join("gap").join(hex::encode("a")).exists());
}
