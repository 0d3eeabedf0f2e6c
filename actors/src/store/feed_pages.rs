//! How the feed lies in sled: its events in pages, one page per transaction (split at
//! [`PAGE_ENTRIES`]), each page one value compressed as a whole.
//!
//! The `feed_pages` tree maps the first seq of a page (big-endian) to a [`FeedPage`]: entries
//! of (seq, event bytes), sorted by seq. Pages never overlap, and a page's key is never above
//! its first entry, so the page holding seq `s` is the last one whose key is `<= s`. A page is
//! written once, by the transaction that appended its events, and later only shrunk by
//! pruning (same key, fewer entries) or removed.
//!
//! Why pages: a full sync appends one event per message, hundreds of bytes each, and sled costs
//! a key, node space and log garbage per entry; compressed together, the events of one
//! transaction take a third of the bytes they take one by one (`docs/BENCHMARKS.md`, twelfth
//! session). What an event means (its record, idempotency keys, consumers) is `crate::feed`'s;
//! this module only knows seqs and bytes.

use std::cell::RefCell;

use serde::{Deserialize, Serialize};
use sled::Transactional;

use super::{Internal, Store, StoreError, StoreTx, TxError, decode_in, encode};
use crate::codec::{CodecError, Versioned};

/// Most events in one page; a transaction that appends more writes several pages.
pub const PAGE_ENTRIES: usize = 64;

/// The tree the feed lived in before schema 5: one value per event under its seq.
const LEGACY_FEED_TREE: &str = "feed";

/// One page of the feed.
#[derive(Debug, Serialize, Deserialize)]
struct FeedPage {
    entries: Vec<PageEntry>,
}

/// One event in a page: its seq and its encoded record.
#[derive(Debug, Serialize, Deserialize)]
struct PageEntry {
    seq: u64,
    #[serde(with = "serde_bytes")]
    bytes: Vec<u8>,
}

impl Versioned for FeedPage {
    const NAME: &'static str = "feed page";
    const VERSION: u16 = 1;
    const COMPRESS: bool = true;
    fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::malformed::<Self>("schema 1 had no feed pages"))
    }
}

/// The events a transaction appended, written as pages just before it commits.
#[derive(Default)]
pub(crate) struct StagedEvents(RefCell<Vec<PageEntry>>);

impl StoreTx<'_> {
    /// Stages an event's bytes under `seq` (seqs come in increasing order within a
    /// transaction). They are written as pages when the closure returns successfully.
    pub(crate) fn stage_feed_event(&self, seq: u64, bytes: Vec<u8>) {
        self.staged_events
            .0
            .borrow_mut()
            .push(PageEntry { seq, bytes });
    }
}

/// Writes what `tx` staged as pages of at most [`PAGE_ENTRIES`], each under its first seq.
pub(super) fn write_staged(tx: &StoreTx<'_>) -> Result<(), TxError> {
    let staged = std::mem::take(&mut *tx.staged_events.0.borrow_mut());
    let tree = tx.tree(Internal::Feed);
    let mut entries = staged.into_iter().peekable();
    while let Some(first) = entries.peek() {
        let key = first.seq.to_be_bytes();
        let page = FeedPage {
            entries: entries.by_ref().take(PAGE_ENTRIES).collect(),
        };
        tree.insert(&key[..], encode(&page))?;
    }
    Ok(())
}

fn seq_of(key: &[u8]) -> Result<u64, StoreError> {
    let arr: [u8; 8] = key
        .try_into()
        .map_err(|_| StoreError::corrupt("feed page key", "not a seq"))?;
    Ok(u64::from_be_bytes(arr))
}

fn decode_page(key: &[u8], value: &[u8]) -> Result<(u64, FeedPage), StoreError> {
    let first = seq_of(key)?;
    let page: FeedPage = decode_in(&format!("feed page {first}"), value)?;
    Ok((first, page))
}

/// A page as read: its key and its entries, (seq, event bytes) in seq order.
pub(crate) struct ReadPage {
    /// The page's key (never above its first entry's seq).
    pub key: u64,
    /// Its events.
    pub entries: Vec<(u64, Vec<u8>)>,
}

impl Store {
    /// Up to `limit` feed entries with `after < seq <= upto`, in seq order.
    pub(crate) fn feed_entries(
        &self,
        after: u64,
        upto: u64,
        limit: usize,
    ) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        let mut out = Vec::new();
        if after >= upto || limit == 0 {
            return Ok(out);
        }
        for page in self.feed_pages_from(after.saturating_add(1), upto)? {
            for (seq, bytes) in page?.entries {
                if seq > after && seq <= upto {
                    out.push((seq, bytes));
                    if out.len() == limit {
                        return Ok(out);
                    }
                }
            }
        }
        Ok(out)
    }

    /// The pages that may hold seqs `from..=upto`, in order: the one holding `from` (if any)
    /// and every later one whose key is `<= upto`. A failure to find the page holding `from`
    /// is an error, never a start further on (which would skip that page's events).
    pub(crate) fn feed_pages_from(
        &self,
        from: u64,
        upto: u64,
    ) -> Result<impl Iterator<Item = Result<ReadPage, StoreError>> + use<>, StoreError> {
        let tree = self.internal(Internal::Feed).clone();
        let start = match tree.range(..=from.to_be_bytes()).next_back() {
            Some(item) => seq_of(&item.map_err(StoreError::sled("reading the feed"))?.0)?,
            None => from,
        };
        Ok(tree
            .range(start.to_be_bytes()..=upto.to_be_bytes())
            .map(|item| {
                let (k, v) = item.map_err(StoreError::sled("reading the feed"))?;
                let (key, page) = decode_page(&k, &v)?;
                Ok(ReadPage {
                    key,
                    entries: page.entries.into_iter().map(|e| (e.seq, e.bytes)).collect(),
                })
            }))
    }
}

impl StoreTx<'_> {
    /// Removes the entries of page `key` whose seq is in `drop` (sorted); the page goes when
    /// nothing is left. Returns how many entries were removed.
    pub(crate) fn drop_feed_entries(&self, key: u64, drop: &[u64]) -> Result<usize, TxError> {
        let tree = self.tree(Internal::Feed);
        let Some(value) = tree.get(key.to_be_bytes())? else {
            return Ok(0);
        };
        let (_, mut page) = decode_page(&key.to_be_bytes(), &value)?;
        let before = page.entries.len();
        page.entries.retain(|e| drop.binary_search(&e.seq).is_err());
        let removed = before - page.entries.len();
        if page.entries.is_empty() {
            tree.remove(&key.to_be_bytes()[..])?;
        } else if removed > 0 {
            tree.insert(&key.to_be_bytes()[..], encode(&page))?;
        }
        Ok(removed)
    }
}

/// What [`check_pages`] found in a sound feed.
pub(crate) struct PagesChecked {
    /// The highest seq held (0 for an empty feed).
    pub last_seq: u64,
    /// How many events the pages hold.
    pub events: u64,
}

/// Checks the pages for `store check`: keys are seqs, pages decode, their seqs rise within
/// and across pages and none is below its page's key. Calls `problem` for each finding.
pub(crate) fn check_pages(store: &Store, problem: &mut dyn FnMut(String)) -> PagesChecked {
    let mut last = 0u64;
    let mut events = 0u64;
    for item in store.internal(Internal::Feed).iter() {
        let (k, v) = match item {
            Ok(kv) => kv,
            Err(e) => {
                problem(format!("feed_pages: {e}"));
                break;
            }
        };
        let (key, page) = match decode_page(&k, &v) {
            Ok(p) => p,
            Err(e) => {
                problem(format!("feed_pages: {e}"));
                continue;
            }
        };
        if page.entries.is_empty() {
            problem(format!("feed_pages: page {key} is empty"));
        }
        for entry in &page.entries {
            if entry.seq < key || entry.seq <= last {
                problem(format!(
                    "feed_pages: page {key} holds seq {} out of order (after {last})",
                    entry.seq
                ));
            }
            last = last.max(entry.seq);
            events += 1;
        }
    }
    PagesChecked {
        last_seq: last,
        events,
    }
}

/// Schema 4 → 5: moves the events of the `feed` tree (one value per seq) into pages of
/// `feed_pages`, [`PAGE_ENTRIES`] per transaction, each taken out of the old tree in the
/// transaction that writes its page, so a crash in between loses and repeats nothing (the
/// next open carries on). The event bytes are moved as they are. The old tree is dropped at
/// the end.
pub(super) fn move_legacy_feed(db: &sled::Db) -> Result<(), String> {
    let legacy = db
        .open_tree(LEGACY_FEED_TREE)
        .map_err(|e| format!("opening the old feed: {e}"))?;
    let pages = db
        .open_tree(Internal::Feed.tree_name())
        .map_err(|e| format!("opening the feed pages: {e}"))?;
    let mut moved = 0u64;
    loop {
        let mut entries = Vec::with_capacity(PAGE_ENTRIES);
        for item in legacy.iter().take(PAGE_ENTRIES) {
            let (k, v) = item.map_err(|e| format!("reading the old feed: {e}"))?;
            let seq = seq_of(&k).map_err(|e| e.to_string())?;
            entries.push(PageEntry {
                seq,
                bytes: v.to_vec(),
            });
        }
        let Some(first) = entries.first().map(|e| e.seq) else {
            break;
        };
        let seqs: Vec<u64> = entries.iter().map(|e| e.seq).collect();
        let page = encode(&FeedPage { entries });
        (&legacy, &pages)
            .transaction(|(old, new)| {
                for seq in &seqs {
                    old.remove(&seq.to_be_bytes()[..])?;
                }
                new.insert(&first.to_be_bytes()[..], page.as_slice())?;
                Ok::<_, sled::transaction::ConflictableTransactionError<()>>(())
            })
            .map_err(|e| format!("moving feed events into a page: {e:?}"))?;
        moved += seqs.len() as u64;
    }
    db.drop_tree(LEGACY_FEED_TREE)
        .map_err(|e| format!("dropping the old feed tree: {e}"))?;
    tracing::info!(events = moved, "Moved the feed's events into pages.");
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn legacy_db(n: u64) -> (tempfile::TempDir, sled::Db) {
        let dir = tempfile::tempdir().unwrap();
        let db = sled::Config::new().path(dir.path()).open().unwrap();
        let legacy = db.open_tree(LEGACY_FEED_TREE).unwrap();
        for seq in 1..=n {
            legacy
                .insert(seq.to_be_bytes(), format!("event {seq}").into_bytes())
                .unwrap();
        }
        (dir, db)
    }

    /// Each page's key with its (seq, bytes) entries.
    type Pages = Vec<(u64, Vec<(u64, Vec<u8>)>)>;

    fn paged(db: &sled::Db) -> Pages {
        db.open_tree(Internal::Feed.tree_name())
            .unwrap()
            .iter()
            .map(|kv| {
                let (k, v) = kv.unwrap();
                let (key, page) = decode_page(&k, &v).unwrap();
                let entries = page.entries.into_iter().map(|e| (e.seq, e.bytes)).collect();
                (key, entries)
            })
            .collect()
    }

    /// Every old event lands in a page with its bytes untouched, in seq order; the old tree
    /// goes. A migration cut short (some events already in pages) carries on where it stopped.
    #[test]
    fn legacy_events_move_into_pages_and_an_interrupted_move_carries_on() {
        let n = PAGE_ENTRIES as u64 * 3 + 5;
        let (_dir, db) = legacy_db(n);
        // As if a first run had moved one page and then crashed.
        {
            let legacy = db.open_tree(LEGACY_FEED_TREE).unwrap();
            let pages = db.open_tree(Internal::Feed.tree_name()).unwrap();
            let entries: Vec<PageEntry> = (1..=PAGE_ENTRIES as u64)
                .map(|seq| PageEntry {
                    seq,
                    bytes: format!("event {seq}").into_bytes(),
                })
                .collect();
            pages
                .insert(1u64.to_be_bytes(), encode(&FeedPage { entries }))
                .unwrap();
            for seq in 1..=PAGE_ENTRIES as u64 {
                legacy.remove(seq.to_be_bytes()).unwrap();
            }
        }
        move_legacy_feed(&db).unwrap();
        assert!(
            !db.tree_names()
                .iter()
                .any(|t| t.as_ref() == LEGACY_FEED_TREE.as_bytes()),
            "the old tree is dropped"
        );
        let pages = paged(&db);
        assert_eq!(pages.len(), 4);
        let all: Vec<(u64, Vec<u8>)> = pages.iter().flat_map(|(_, e)| e.clone()).collect();
        let want: Vec<(u64, Vec<u8>)> = (1..=n)
            .map(|seq| (seq, format!("event {seq}").into_bytes()))
            .collect();
        assert_eq!(all, want);
        for (key, entries) in &pages {
            assert_eq!(*key, entries[0].0, "a page is keyed by its first seq");
        }
        // Running again (an open after the move) changes nothing.
        move_legacy_feed(&db).unwrap();
        assert_eq!(paged(&db), pages);
    }

    #[test]
    fn a_page_key_that_is_not_a_seq_is_reported_not_panicked_on() {
        assert!(decode_page(b"short", b"x").is_err());
        assert!(decode_page(&7u64.to_be_bytes(), b"garbage").is_err());
    }
}
