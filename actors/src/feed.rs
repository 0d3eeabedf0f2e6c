//! The durable change feed: every change the daemon makes, as an ordered, deduplicated log that
//! consumers read by sequence number, plus the consumers' cursors.
//!
//! Layout: `feed_pages`: the events, in pages of one transaction's appends
//! (`crate::store::feed_pages`); `feed_keys`: idempotency key → seq; `consumers`: consumer
//! name → last acked seq; the seq counter lives in `counters`.
//!
//! Invariants:
//! - Seqs are assigned inside the appending transaction from a counter read and incremented in
//!   that transaction, so they are strictly increasing in commit order and a reader that has
//!   seen seq N never later sees a smaller seq appear.
//! - At most one event per idempotency key (a `feed_keys` entry is written in the same
//!   transaction); a job that runs twice appends nothing the second time. Pruning an event
//!   drops its key too. The one exception to the entry, not to the rule: the event of a new
//!   record (`message.added`), whose record is its idempotency
//!   ([`StoreTx::append_event_for_new_record`]).
//! - Readers only see *durable* events: [`Feed::read_after`] and [`Feed::subscribe`] stop at the
//!   highest seq that a [`crate::store::Store::flush`] has made durable. An event committed but
//!   not yet flushed can still vanish in a crash, and its seq could then be reused by another
//!   event; serving it early would let a consumer ack past an event it never saw.
//! - A consumer cursor only moves forward and is flushed before [`Feed::ack_consumer`] returns.
//! - [`Feed::prune`] never removes an event a registered consumer has not acked.

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::codec::{CodecError, Versioned, legacy_bincode};
use crate::store::{
    FEED_SEQ, Internal, Store, StoreError, StoreTx, TxError, decode_in, encode, not_in_tx,
};

/// Events removed per transaction by [`Feed::prune`].
const PRUNE_CHUNK: usize = 512;

/// How far an event's time may run ahead of a later event's: events are appended in seq
/// order with the time their transaction began, so a slow transaction can commit after a
/// quicker one that began later. [`Feed::prune`] stops at the first event younger than its
/// cut-off by more than this, so it reads the pages it prunes and about one more, not the
/// whole feed every hour. An event older than the cut-off after that point is pruned by a
/// later run; none is ever pruned early, each is checked on its own.
const PRUNE_ORDER_SLACK_MS: u64 = 10 * 60 * 1000;

/// An event to append.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewEvent {
    /// The account it concerns.
    pub account: String,
    /// What happened, e.g. `"message.added"`.
    pub kind: String,
    /// Idempotency key: one event per key, ever (until pruned).
    pub key: String,
    /// JSON bytes provided by the caller.
    pub payload: Vec<u8>,
    /// When it happened (ms since the epoch).
    pub ts_ms: u64,
}

/// An event read from the feed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FeedEvent {
    /// Its position in the feed.
    pub seq: u64,
    /// The account it concerns.
    pub account: String,
    /// What happened.
    pub kind: String,
    /// Idempotency key.
    pub key: String,
    /// JSON bytes.
    pub payload: Vec<u8>,
    /// When it happened (ms since the epoch).
    pub ts_ms: u64,
}

#[derive(Serialize, Deserialize)]
struct EventRecord {
    account: String,
    kind: String,
    key: String,
    #[serde(with = "serde_bytes")]
    payload: Vec<u8>,
    ts_ms: u64,
}

/// Schema-1 shape of a feed event, frozen (bincode is positional).
mod v1 {
    #[derive(serde::Deserialize)]
    pub(super) struct EventRecord {
        pub account: String,
        pub kind: String,
        pub key: String,
        pub payload: Vec<u8>,
        pub ts_ms: u64,
    }
}

impl Versioned for EventRecord {
    const NAME: &'static str = "feed event";
    const VERSION: u16 = 1;
    // Compressed with the rest of its page.
    const COMPRESS: bool = false;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        let r: v1::EventRecord = legacy_bincode::<Self, _>(body)?;
        Ok(EventRecord {
            account: r.account,
            kind: r.kind,
            key: r.key,
            payload: r.payload,
            ts_ms: r.ts_ms,
        })
    }
}

pub(crate) fn tx_append(tx: &StoreTx<'_>, ev: &NewEvent) -> Result<Option<u64>, TxError> {
    let keys = tx.tree(Internal::FeedKeys);
    if keys.get(ev.key.as_bytes())?.is_some() {
        return Ok(None);
    }
    let seq = stage(tx, ev)?;
    keys.insert(ev.key.as_bytes(), encode(&seq))?;
    Ok(Some(seq))
}

/// Assigns the event its seq and stages it in this transaction's page; no `feed_keys` entry.
fn stage(tx: &StoreTx<'_>, ev: &NewEvent) -> Result<u64, TxError> {
    let seq = tx.next_counter(FEED_SEQ)?;
    let rec = EventRecord {
        account: ev.account.clone(),
        kind: ev.kind.clone(),
        key: ev.key.clone(),
        payload: ev.payload.clone(),
        ts_ms: ev.ts_ms,
    };
    tx.stage_feed_event(seq, encode(&rec));
    Ok(seq)
}

impl Store {
    /// The change feed.
    pub fn feed(&self) -> Feed {
        Feed::new(self.clone())
    }
}

impl StoreTx<'_> {
    /// Appends a feed event; `None` if an event with the same idempotency key exists already.
    /// The seq is assigned here, in commit order.
    pub fn append_event(&self, ev: NewEvent) -> Result<Option<u64>, TxError> {
        let seq = tx_append(self, &ev)?;
        if let Some(seq) = seq {
            self.note_appended(seq);
        }
        Ok(seq)
    }

    /// Appends the event that a new record's creation means, without a `feed_keys` entry:
    /// the record is its idempotency. The caller checked in this transaction that the record
    /// did not exist and writes it in the same transaction, and the record is only ever
    /// removed together with a change of the key (a new generation, as
    /// `crate::mirror::apply_deleted` does), so the key gets one event, ever, as
    /// [`StoreTx::append_event`] would guarantee. It halves the sled keys a mirrored message
    /// costs (its record is the other), and with them its share of sled's page table.
    pub fn append_event_for_new_record(&self, ev: NewEvent) -> Result<u64, TxError> {
        let seq = stage(self, &ev)?;
        self.note_appended(seq);
        Ok(seq)
    }
}

/// The change feed of a store. Cheap to clone.
#[derive(Clone, Debug)]
pub struct Feed {
    store: Store,
}

impl Feed {
    pub(crate) fn new(store: Store) -> Self {
        Self { store }
    }

    /// Appends one event in its own transaction (not flushed; see [`StoreTx::append_event`]).
    pub fn append(&self, ev: NewEvent) -> Result<Option<u64>, StoreError> {
        self.store.transaction(|tx| tx.append_event(ev.clone()))
    }

    /// Up to `limit` durable events with `seq > after_seq`, in seq order.
    pub fn read_after(&self, after_seq: u64, limit: usize) -> Result<Vec<FeedEvent>, StoreError> {
        not_in_tx("Feed::read_after")?;
        let durable = self.durable_seq();
        self.store
            .feed_entries(after_seq, durable, limit)?
            .into_iter()
            .map(|(seq, bytes)| {
                let rec: EventRecord = decode_in(&format!("feed event {seq}"), &bytes)?;
                Ok(FeedEvent {
                    seq,
                    account: rec.account,
                    kind: rec.kind,
                    key: rec.key,
                    payload: rec.payload,
                    ts_ms: rec.ts_ms,
                })
            })
            .collect()
    }

    /// The highest seq ever committed (0 when the feed is empty), durable or not.
    pub fn last_seq(&self) -> Result<u64, StoreError> {
        not_in_tx("Feed::last_seq")?;
        match self
            .store
            .internal(Internal::Counters)
            .get(FEED_SEQ)
            .map_err(StoreError::sled("reading the feed seq"))?
        {
            Some(v) => decode_in("counter feed_seq", &v),
            None => Ok(0),
        }
    }

    /// The highest seq known durable: what readers and subscribers see.
    pub fn durable_seq(&self) -> u64 {
        *self.store.durable_feed().borrow()
    }

    /// A receiver notified with [`Feed::durable_seq`] whenever a flush makes newly appended
    /// events durable (never before their transaction committed and was flushed).
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.store.durable_feed().subscribe()
    }

    /// The last seq `consumer` acked, or `None` if it is not registered.
    pub fn consumer_cursor(&self, consumer: &str) -> Result<Option<u64>, StoreError> {
        not_in_tx("Feed::consumer_cursor")?;
        match self
            .store
            .internal(Internal::Consumers)
            .get(consumer.as_bytes())
            .map_err(StoreError::sled("reading a consumer cursor"))?
        {
            Some(v) => Ok(Some(decode_in(&format!("consumer {consumer:?}"), &v)?)),
            None => Ok(None),
        }
    }

    /// Registers `consumer` with its cursor at `from_seq` (it will be served `from_seq + 1`
    /// onwards). Registering a consumer that exists keeps its cursor. Flushed.
    pub fn register_consumer(&self, consumer: &str, from_seq: u64) -> Result<(), StoreError> {
        not_in_tx("Feed::register_consumer")?;
        let _ = self
            .store
            .internal(Internal::Consumers)
            .compare_and_swap(
                consumer.as_bytes(),
                None as Option<&[u8]>,
                Some(encode(&from_seq)),
            )
            .map_err(StoreError::sled("registering a consumer"))?;
        self.store.flush()
    }

    /// Forgets `consumer`: it no longer holds back pruning. Flushed.
    pub fn unregister_consumer(&self, consumer: &str) -> Result<(), StoreError> {
        not_in_tx("Feed::unregister_consumer")?;
        self.store
            .internal(Internal::Consumers)
            .remove(consumer.as_bytes())
            .map_err(StoreError::sled("unregistering a consumer"))?;
        self.store.flush()
    }

    /// Records that `consumer` has processed everything up to `seq`. Monotonic: an older seq
    /// leaves the cursor where it is. Flushed before returning.
    pub fn ack_consumer(&self, consumer: &str, seq: u64) -> Result<(), StoreError> {
        not_in_tx("Feed::ack_consumer")?;
        let tree = self.store.internal(Internal::Consumers);
        loop {
            let Some(old) = tree
                .get(consumer.as_bytes())
                .map_err(StoreError::sled("reading a consumer cursor"))?
            else {
                return Err(StoreError::UnknownConsumer(consumer.to_owned()));
            };
            let cur: u64 = decode_in(&format!("consumer {consumer:?}"), &old)?;
            if seq <= cur {
                return Ok(());
            }
            let swapped = tree
                .compare_and_swap(consumer.as_bytes(), Some(old), Some(encode(&seq)))
                .map_err(StoreError::sled("advancing a consumer cursor"))?;
            if swapped.is_ok() {
                return self.store.flush();
            }
        }
    }

    /// Every registered consumer with its cursor, by name.
    pub fn consumers(&self) -> Result<Vec<(String, u64)>, StoreError> {
        not_in_tx("Feed::consumers")?;
        let mut out = Vec::new();
        for item in self.store.internal(Internal::Consumers).iter() {
            let (k, v) = item.map_err(StoreError::sled("listing consumers"))?;
            let name = String::from_utf8(k.to_vec())
                .map_err(|e| StoreError::corrupt("consumer name", e))?;
            let seq = decode_in(&format!("consumer {name:?}"), &v)?;
            out.push((name, seq));
        }
        Ok(out)
    }

    /// Removes events that every registered consumer has acked and that are older than
    /// `retention` (`ts_ms + retention <= now_ms`), with their idempotency keys. With no
    /// registered consumer, age alone decides. Returns how many were removed. Not flushed.
    /// Reads from the oldest page up to the first event clearly younger than the cut-off
    /// ([`PRUNE_ORDER_SLACK_MS`]), not the whole feed.
    pub fn prune(&self, retention: Duration, now_ms: u64) -> Result<usize, StoreError> {
        Ok(self.prune_counting_pages(retention, now_ms)?.0)
    }

    /// [`Feed::prune`], also returning how many pages it read.
    fn prune_counting_pages(
        &self,
        retention: Duration,
        now_ms: u64,
    ) -> Result<(usize, usize), StoreError> {
        not_in_tx("Feed::prune")?;
        let acked_by_all = self
            .consumers()?
            .into_iter()
            .map(|(_, seq)| seq)
            .min()
            .unwrap_or(u64::MAX);
        let retention_ms = u64::try_from(retention.as_millis()).unwrap_or(u64::MAX);
        let cutoff_ms = now_ms.saturating_sub(retention_ms);
        let stop_after_ms = cutoff_ms.saturating_add(PRUNE_ORDER_SLACK_MS);
        let mut removed = 0;
        let mut pages_read = 0;
        let mut young = false;
        // Pages to shrink, with the seqs and keys to drop from each, gathered up to about
        // PRUNE_CHUNK events per transaction.
        let mut batch: Vec<(u64, Vec<u64>, Vec<String>)> = Vec::new();
        let mut batched = 0;
        for page in self.store.feed_pages_from(1, acked_by_all)? {
            let page = page?;
            pages_read += 1;
            let mut seqs = Vec::new();
            let mut keys = Vec::new();
            for (seq, bytes) in &page.entries {
                if *seq > acked_by_all {
                    break;
                }
                let rec: EventRecord = decode_in(&format!("feed event {seq}"), bytes)?;
                if rec.ts_ms.saturating_add(retention_ms) <= now_ms {
                    seqs.push(*seq);
                    keys.push(rec.key);
                } else if rec.ts_ms > stop_after_ms {
                    young = true;
                    break;
                }
            }
            if !seqs.is_empty() {
                batched += seqs.len();
                batch.push((page.key, seqs, keys));
            }
            if batched >= PRUNE_CHUNK {
                removed += self.remove_events(&batch)?;
                batch.clear();
                batched = 0;
            }
            if young {
                break;
            }
        }
        if !batch.is_empty() {
            removed += self.remove_events(&batch)?;
        }
        Ok((removed, pages_read))
    }

    /// Removes the listed events from their pages, with their idempotency keys (unless a key
    /// names another seq by now), in one transaction. Returns how many were removed.
    fn remove_events(&self, batch: &[(u64, Vec<u64>, Vec<String>)]) -> Result<usize, StoreError> {
        self.store.transaction(|tx| {
            let mut n = 0;
            for (page, seqs, keys) in batch {
                let dropped = tx.drop_feed_entries(*page, seqs)?;
                if dropped == 0 {
                    continue;
                }
                n += dropped;
                let tree = tx.tree(Internal::FeedKeys);
                for (seq, key) in seqs.iter().zip(keys) {
                    if let Some(v) = tree.get(key.as_bytes())?
                        && decode_in::<u64>("feed_keys value", &v)? == *seq
                    {
                        tree.remove(key.as_bytes())?;
                    }
                }
            }
            Ok(n)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(key: &str, ts_ms: u64) -> NewEvent {
        NewEvent {
            account: "acct1".into(),
            kind: "message.added".into(),
            key: key.into(),
            payload: br#"{"id":"m1"}"#.to_vec(),
            ts_ms,
        }
    }

    fn open() -> (tempfile::TempDir, Store) {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        (dir, store)
    }

    fn seqs(events: &[FeedEvent]) -> Vec<u64> {
        events.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn append_dedupes_by_key_and_seq_is_monotonic() {
        let (_d, store) = open();
        let feed = store.feed();
        assert_eq!(feed.append(ev("a", 1)).unwrap(), Some(1));
        assert_eq!(feed.append(ev("b", 1)).unwrap(), Some(2));
        assert_eq!(feed.append(ev("a", 2)).unwrap(), None);
        let in_tx = store
            .transaction(|tx| {
                Ok((
                    tx.append_event(ev("c", 1))?,
                    tx.append_event(ev("c", 1))?,
                    tx.append_event(ev("d", 1))?,
                ))
            })
            .unwrap();
        assert_eq!(in_tx, (Some(3), None, Some(4)));
        assert_eq!(feed.last_seq().unwrap(), 4);
        store.flush().unwrap();
        let all = feed.read_after(0, 100).unwrap();
        assert_eq!(seqs(&all), [1, 2, 3, 4]);
        assert_eq!(all[0].key, "a");
        assert_eq!(all[0].payload, br#"{"id":"m1"}"#);
        assert_eq!(seqs(&feed.read_after(2, 1).unwrap()), [3]);
    }

    #[test]
    fn readers_and_subscribers_see_events_only_after_flush() {
        let (_d, store) = open();
        let feed = store.feed();
        let mut rx = feed.subscribe();
        assert_eq!(*rx.borrow_and_update(), 0);
        feed.append(ev("a", 1)).unwrap();
        assert!(!rx.has_changed().unwrap());
        assert!(feed.read_after(0, 10).unwrap().is_empty());
        store.flush().unwrap();
        assert!(rx.has_changed().unwrap());
        assert_eq!(*rx.borrow_and_update(), 1);
        assert_eq!(seqs(&feed.read_after(0, 10).unwrap()), [1]);
        // An aborted transaction notifies nobody and consumes no seq.
        let _ = store.transaction(|tx| {
            tx.append_event(ev("b", 1))?;
            Err::<(), _>(TxError::abort("no"))
        });
        store.flush().unwrap();
        assert!(!rx.has_changed().unwrap());
        assert_eq!(feed.append(ev("b", 1)).unwrap(), Some(2));
    }

    #[test]
    fn seq_and_dedupe_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            store.feed().append(ev("a", 1)).unwrap();
            store.feed().append(ev("b", 1)).unwrap();
            store.flush().unwrap();
        }
        let store = Store::open(dir.path()).unwrap();
        let feed = store.feed();
        assert_eq!(feed.durable_seq(), 2);
        assert_eq!(feed.append(ev("a", 1)).unwrap(), None);
        assert_eq!(feed.append(ev("c", 1)).unwrap(), Some(3));
    }

    #[test]
    fn consumer_cursor_is_monotonic_and_registration_keeps_it() {
        let (_d, store) = open();
        let feed = store.feed();
        assert_eq!(feed.consumer_cursor("sink").unwrap(), None);
        assert!(matches!(
            feed.ack_consumer("sink", 1),
            Err(StoreError::UnknownConsumer(_))
        ));
        feed.register_consumer("sink", 0).unwrap();
        feed.ack_consumer("sink", 5).unwrap();
        feed.ack_consumer("sink", 3).unwrap();
        assert_eq!(feed.consumer_cursor("sink").unwrap(), Some(5));
        feed.register_consumer("sink", 0).unwrap();
        assert_eq!(feed.consumer_cursor("sink").unwrap(), Some(5));
        feed.register_consumer("other", 2).unwrap();
        assert_eq!(
            feed.consumers().unwrap(),
            vec![("other".to_string(), 2), ("sink".to_string(), 5)]
        );
        feed.unregister_consumer("other").unwrap();
        assert_eq!(feed.consumers().unwrap().len(), 1);
    }

    #[test]
    fn prune_removes_only_old_events_acked_by_every_consumer() {
        let (_d, store) = open();
        let feed = store.feed();
        for i in 1..=10u64 {
            feed.append(ev(&format!("k{i}"), i * 1000)).unwrap();
        }
        store.flush().unwrap();
        feed.register_consumer("fast", 8).unwrap();
        feed.register_consumer("slow", 4).unwrap();
        let retention = Duration::from_secs(3);
        // now = 9_000: old enough are ts <= 6_000 (seq 1..=6), acked by both: seq <= 4.
        assert_eq!(feed.prune(retention, 9_000).unwrap(), 4);
        assert_eq!(seqs(&feed.read_after(0, 100).unwrap()), [5, 6, 7, 8, 9, 10]);
        // A pruned key may be appended again (it gets a new seq); an unpruned one may not.
        assert_eq!(feed.append(ev("k1", 0)).unwrap(), Some(11));
        assert_eq!(feed.append(ev("k5", 0)).unwrap(), None);
        feed.ack_consumer("slow", 10).unwrap();
        assert_eq!(feed.prune(retention, 9_000).unwrap(), 2, "seq 5 and 6");
        assert_eq!(feed.prune(retention, 100_000).unwrap(), 2, "seq 7 and 8");
        store.flush().unwrap();
        assert_eq!(seqs(&feed.read_after(0, 100).unwrap()), [9, 10, 11]);
        feed.unregister_consumer("fast").unwrap();
        feed.unregister_consumer("slow").unwrap();
        assert_eq!(
            feed.prune(retention, 100_000).unwrap(),
            3,
            "no consumer: age decides"
        );
        assert_eq!(feed.last_seq().unwrap(), 11, "seqs are never reused");
    }

    #[test]
    fn prune_handles_more_than_one_chunk() {
        let (_d, store) = open();
        let feed = store.feed();
        store
            .transaction(|tx| {
                for i in 0..1300 {
                    tx.append_event(ev(&format!("k{i}"), 0))?;
                }
                Ok(())
            })
            .unwrap();
        feed.register_consumer("c", 1200).unwrap();
        assert_eq!(feed.prune(Duration::ZERO, 1).unwrap(), 1200);
        assert_eq!(feed.read_after(0, 10_000).unwrap().len(), 100);
    }

    /// The hourly prune reads what it prunes and about one page more, not the whole feed:
    /// a feed of many pages, its oldest few old enough.
    #[test]
    fn prune_stops_at_the_first_young_event_instead_of_reading_the_whole_feed() {
        use crate::store::feed_pages::PAGE_ENTRIES;
        let (_d, store) = open();
        let feed = store.feed();
        let minute = 60_000;
        // 40 transactions, one page each, a minute apart.
        for t in 0..40u64 {
            store
                .transaction(|tx| {
                    for i in 0..PAGE_ENTRIES as u64 {
                        tx.append_event(ev(&format!("k{t}.{i}"), t * minute))?;
                    }
                    Ok(())
                })
                .unwrap();
        }
        store.flush().unwrap();
        // Retention an hour, now 1 h 3 min: the pages of minutes 0..=3 are old enough.
        let (removed, pages) = feed
            .prune_counting_pages(Duration::from_secs(3600), 63 * minute)
            .unwrap();
        assert_eq!(removed, 4 * PAGE_ENTRIES);
        // Kept pages up to the slack past the cut-off are read too (minutes 4..=13), then
        // the first younger event ends the scan: 15 pages of 40.
        assert_eq!(pages, 15);
        // An event older than the cut-off behind a young one waits for a later run; it is
        // never pruned early.
        feed.append(ev("late", 0)).unwrap();
        store.flush().unwrap();
        let (removed, _) = feed
            .prune_counting_pages(Duration::from_secs(3600), 63 * minute)
            .unwrap();
        assert_eq!(removed, 0, "behind younger events: a later run prunes it");
        let (removed, _) = feed
            .prune_counting_pages(Duration::from_secs(3600), 200 * minute)
            .unwrap();
        assert_eq!(removed, 36 * PAGE_ENTRIES + 1);
        assert!(feed.read_after(0, 10).unwrap().is_empty());
    }

    /// One transaction's appends beyond a page's size span several pages; reads that start
    /// anywhere, with any limit, see every durable event once and in order, and pruning that
    /// cuts through pages keeps the rest of them readable.
    #[test]
    fn events_span_pages_and_read_and_prune_across_them() {
        use crate::store::feed_pages::PAGE_ENTRIES;
        let (_d, store) = open();
        let feed = store.feed();
        let n = PAGE_ENTRIES as u64 * 2 + 7;
        store
            .transaction(|tx| {
                for i in 1..=n {
                    tx.append_event(ev(&format!("k{i}"), i))?;
                }
                Ok(())
            })
            .unwrap();
        feed.append(ev("single", n + 1)).unwrap();
        store.flush().unwrap();
        let all: Vec<u64> = (1..=n + 1).collect();
        assert_eq!(seqs(&feed.read_after(0, 10_000).unwrap()), all);
        for after in [0, 1, PAGE_ENTRIES as u64 - 1, PAGE_ENTRIES as u64, n - 1, n] {
            for limit in [1, 5, PAGE_ENTRIES + 3] {
                let got = seqs(&feed.read_after(after, limit).unwrap());
                let want: Vec<u64> = (after + 1..=n + 1).take(limit).collect();
                assert_eq!(got, want, "after {after}, limit {limit}");
            }
        }
        assert_eq!(feed.read_after(0, 1).unwrap()[0].key, "k1");
        // Old enough: ts <= 80, i.e. seqs 1..=80, across the first two pages.
        feed.register_consumer("c", n + 1).unwrap();
        assert_eq!(feed.prune(Duration::from_millis(20), 100).unwrap(), 80);
        assert_eq!(
            seqs(&feed.read_after(0, 10_000).unwrap()),
            (81..=n + 1).collect::<Vec<_>>()
        );
        assert_eq!(seqs(&feed.read_after(80, 2).unwrap()), [81, 82]);
        assert_eq!(
            feed.append(ev("k1", 0)).unwrap(),
            Some(n + 2),
            "pruned key is free"
        );
        assert_eq!(feed.append(ev("k81", 0)).unwrap(), None, "kept key is not");
        let mut report = crate::store_check::CheckReport::default();
        crate::store_check::walk(&store, &mut report);
        // (The test payloads are not `Change`s, which the check reports; the pages are sound.)
        let pages: Vec<&String> = report
            .problems
            .iter()
            .filter(|p| p.starts_with("feed_pages") || p.starts_with("counters"))
            .collect();
        assert!(pages.is_empty(), "{pages:?}");
        assert_eq!(report.trees.get("feed"), Some(&(n + 2 - 80)));
    }
}
