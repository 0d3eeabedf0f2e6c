//! `AccountRecord`: the durable sync state of one account (its cursor and phase flags), stored
//! in `Space::Accounts` under the account id. The AccountActor owns it; its children update
//! their part inside the same transaction as the work it covers, so the cursor never moves
//! ahead of what is recorded.

use crate::codec::{CodecError, Versioned, legacy_bincode};
use crate::model::HistoryId;
use crate::store::{Space, StoreError, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// Progress of a full sync (listing all ids, then fetching them).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct FullSyncState {
    /// The profile history id read *before* listing; the cursor once the full sync is done.
    pub start_history_id: HistoryId,
    /// The page token of the next messages.list page (`None` before the first page).
    pub next_page_token: Option<String>,
    /// Pages listed so far.
    pub pages: u64,
    /// Ids listed so far.
    pub listed: u64,
    /// Google's estimate of the total, from the first page.
    pub estimate: u64,
    /// All pages are listed; the sync completes when Ingest has drained its queue.
    pub listing_done: bool,
}

/// Progress of a partial-sync round (a walk over all history pages from the cursor).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct HistoryRound {
    /// The cursor the round started from.
    pub start: HistoryId,
    /// The next page's token.
    pub next_page_token: Option<String>,
    /// Pages applied so far in this round.
    pub pages: u64,
}

/// Which step of a gap recovery (history 404) is running.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub enum GapStep {
    /// Listing every id (ids only) to find messages that appeared or vanished.
    ListIds {
        /// Next page token.
        next_page_token: Option<String>,
    },
    /// Listing ids per label to rebuild label sets, label by label.
    ListLabel {
        /// Labels still to list (the head is in progress).
        remaining: Vec<String>,
        /// Next page token of the head label.
        next_page_token: Option<String>,
    },
    /// Applying the differences with the schema-1 marker layout (a gap recovery started by an
    /// older build; it is restarted with the current layout).
    Apply,
    /// Walking the mirror in id order, one chunk per step, beside the sorted listing: each
    /// message the id listing did not return is deleted, each it did gets the listed labels.
    Reconcile {
        /// With an `initial_query`: messages dated before this edge aged out of the window
        /// and are kept (computed once, when the listing is sorted).
        floor: Option<i64>,
        /// The last mirrored id reconciled (`None` before the first chunk).
        after: Option<String>,
        /// The mirror walk is done; the scratch files (and any older markers) are removed.
        clearing: bool,
        /// Byte offset in the sorted listing of the first id after `after` (layout 2).
        #[serde(default)]
        sorted_offset: u64,
    },
}

/// Progress of a gap recovery.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct GapState {
    /// The profile history id read before the reconcile started; the new cursor.
    pub start_history_id: HistoryId,
    /// Current step.
    pub step: GapStep,
    /// Quota-relevant calls made (list pages) — reported in status and benchmarks.
    pub list_calls: u64,
    /// Messages found missing locally (fetched) and vanished remotely (deleted).
    pub appeared: u64,
    /// Messages that vanished remotely.
    pub vanished: u64,
    /// Messages whose label set changed during the gap.
    pub relabeled: u64,
    /// How the listings are kept (0: schema 1, one marker per id and one per id × label;
    /// 1: one sled marker per id holding its labels; 2: an append-only listing file sorted on
    /// disk, outside sled). A gap with another layout restarts.
    #[serde(default)]
    pub marker_layout: u32,
    /// Bytes of the listing file (layout 2) the committed steps cover; a step truncates the
    /// file to this length before it appends its page.
    #[serde(default)]
    pub listed_len: u64,
    /// The most ids or markers a single step held in memory (the reconcile's working set).
    #[serde(default)]
    pub peak_buffered: u64,
}

/// The durable sync state of one account.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct AccountRecord {
    /// The history id partial sync starts from (`None` before the first full sync ends).
    pub history_id: Option<HistoryId>,
    /// The first full sync finished.
    pub initial_sync_completed: bool,
    /// Labels were synced at least once.
    pub label_sync_completed: bool,
    /// When the last full sync finished (ms since the epoch).
    pub last_full_sync_at_ms: Option<u64>,
    /// When the last partial sync round finished (ms since the epoch).
    pub last_incremental_sync_at_ms: Option<u64>,
    /// A full sync in progress.
    pub full_sync: Option<FullSyncState>,
    /// A partial-sync round in progress.
    pub history_round: Option<HistoryRound>,
    /// A gap recovery in progress.
    pub gap: Option<GapState>,
    /// Quota-relevant calls spent by the last finished gap recovery.
    pub last_gap_list_calls: Option<u64>,
    /// The last finished gap recovery's working set ([`GapState::peak_buffered`]).
    pub last_gap_peak_buffered: Option<u64>,
}

/// Schema-1 shapes, frozen (bincode is positional): add fields to the current types instead.
mod v1 {
    use serde::{Deserialize, Serialize};

    #[derive(Deserialize, Serialize)]
    pub(super) struct FullSyncState {
        pub start_history_id: u64,
        pub next_page_token: Option<String>,
        pub pages: u64,
        pub listed: u64,
        pub estimate: u64,
        pub listing_done: bool,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct HistoryRound {
        pub start: u64,
        pub next_page_token: Option<String>,
        pub pages: u64,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) enum GapStep {
        ListIds {
            next_page_token: Option<String>,
        },
        ListLabel {
            remaining: Vec<String>,
            next_page_token: Option<String>,
        },
        Apply,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct GapState {
        pub start_history_id: u64,
        pub step: GapStep,
        pub list_calls: u64,
        pub appeared: u64,
        pub vanished: u64,
        pub relabeled: u64,
    }

    #[derive(Deserialize, Serialize)]
    pub(super) struct AccountRecord {
        pub history_id: Option<u64>,
        pub initial_sync_completed: bool,
        pub label_sync_completed: bool,
        pub last_full_sync_at_ms: Option<u64>,
        pub last_incremental_sync_at_ms: Option<u64>,
        pub full_sync: Option<FullSyncState>,
        pub history_round: Option<HistoryRound>,
        pub gap: Option<GapState>,
        pub last_gap_list_calls: Option<u64>,
    }
}

impl From<v1::AccountRecord> for AccountRecord {
    fn from(r: v1::AccountRecord) -> Self {
        AccountRecord {
            history_id: r.history_id.map(HistoryId),
            initial_sync_completed: r.initial_sync_completed,
            label_sync_completed: r.label_sync_completed,
            last_full_sync_at_ms: r.last_full_sync_at_ms,
            last_incremental_sync_at_ms: r.last_incremental_sync_at_ms,
            full_sync: r.full_sync.map(|f| FullSyncState {
                start_history_id: HistoryId(f.start_history_id),
                next_page_token: f.next_page_token,
                pages: f.pages,
                listed: f.listed,
                estimate: f.estimate,
                listing_done: f.listing_done,
            }),
            history_round: r.history_round.map(|h| HistoryRound {
                start: HistoryId(h.start),
                next_page_token: h.next_page_token,
                pages: h.pages,
            }),
            gap: r.gap.map(|g| GapState {
                start_history_id: HistoryId(g.start_history_id),
                step: match g.step {
                    v1::GapStep::ListIds { next_page_token } => {
                        GapStep::ListIds { next_page_token }
                    }
                    v1::GapStep::ListLabel {
                        remaining,
                        next_page_token,
                    } => GapStep::ListLabel {
                        remaining,
                        next_page_token,
                    },
                    v1::GapStep::Apply => GapStep::Apply,
                },
                list_calls: g.list_calls,
                appeared: g.appeared,
                vanished: g.vanished,
                relabeled: g.relabeled,
                marker_layout: 0,
                listed_len: 0,
                peak_buffered: 0,
            }),
            last_gap_list_calls: r.last_gap_list_calls,
            last_gap_peak_buffered: None,
        }
    }
}

impl Versioned for AccountRecord {
    const NAME: &'static str = "account record";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        Ok(legacy_bincode::<Self, v1::AccountRecord>(body)?.into())
    }
}

impl AccountRecord {
    /// Reads the record inside a transaction (default when absent).
    pub fn load_tx(tx: &StoreTx<'_>, account: &str) -> Result<AccountRecord, TxError> {
        match tx.get(Space::Accounts, account.as_bytes())? {
            Some(v) => Ok(decode(&v)?),
            None => Ok(AccountRecord::default()),
        }
    }

    /// Writes the record inside a transaction.
    pub fn save_tx(&self, tx: &StoreTx<'_>, account: &str) -> Result<(), TxError> {
        tx.insert(Space::Accounts, account.as_bytes(), &encode(self))
    }

    /// Reads the record outside a transaction.
    pub fn load(store: &crate::store::Store, account: &str) -> Result<AccountRecord, StoreError> {
        let value = store
            .kv(Space::Accounts)
            .get(account.as_bytes())
            .map_err(|source| StoreError::Sled {
                context: "reading an account record",
                source,
            })?;
        match value {
            Some(v) => decode(&v),
            None => Ok(AccountRecord::default()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::{self, FORMAT_LEGACY};

    /// A record in the middle of a gap recovery, as schema 1 wrote it, reads back whole (the
    /// gap marked as using the schema-1 marker layout, so it restarts).
    #[test]
    fn a_schema_1_record_with_a_gap_in_progress_reads_back() {
        let old = v1::AccountRecord {
            history_id: Some(42),
            initial_sync_completed: true,
            label_sync_completed: false,
            last_full_sync_at_ms: None,
            last_incremental_sync_at_ms: None,
            full_sync: Some(v1::FullSyncState {
                start_history_id: 7,
                next_page_token: Some("p".into()),
                pages: 3,
                listed: 1500,
                estimate: 2000,
                listing_done: false,
            }),
            history_round: None,
            gap: Some(v1::GapState {
                start_history_id: 40,
                step: v1::GapStep::ListLabel {
                    remaining: vec!["INBOX".into()],
                    next_page_token: None,
                },
                list_calls: 4,
                appeared: 1,
                vanished: 2,
                relabeled: 3,
            }),
            last_gap_list_calls: Some(9),
        };
        let rec = AccountRecord {
            history_id: Some(HistoryId(42)),
            initial_sync_completed: true,
            full_sync: Some(FullSyncState {
                start_history_id: HistoryId(7),
                next_page_token: Some("p".into()),
                pages: 3,
                listed: 1500,
                estimate: 2000,
                listing_done: false,
            }),
            gap: Some(GapState {
                start_history_id: HistoryId(40),
                step: GapStep::ListLabel {
                    remaining: vec!["INBOX".into()],
                    next_page_token: None,
                },
                list_calls: 4,
                appeared: 1,
                vanished: 2,
                relabeled: 3,
                marker_layout: 0,
                listed_len: 0,
                peak_buffered: 0,
            }),
            last_gap_list_calls: Some(9),
            ..AccountRecord::default()
        };
        let mut legacy = vec![FORMAT_LEGACY];
        bincode::serde::encode_into_std_write(&old, &mut legacy, bincode::config::standard())
            .unwrap();
        assert_eq!(codec::decode::<AccountRecord>(&legacy).unwrap(), rec);
        assert_eq!(codec::decode::<AccountRecord>(&encode(&rec)).unwrap(), rec);
    }

    /// A gap state written before the marker layout existed (tagged format, no new fields)
    /// reads back with layout 0, so the recovery restarts rather than misreading its markers.
    #[test]
    fn a_gap_state_without_a_marker_layout_reads_as_layout_0() {
        #[derive(Serialize)]
        struct OldGap {
            start_history_id: HistoryId,
            step: GapStep,
            list_calls: u64,
            appeared: u64,
            vanished: u64,
            relabeled: u64,
        }
        #[derive(Serialize)]
        struct OldRecord {
            gap: Option<OldGap>,
        }
        let old = OldRecord {
            gap: Some(OldGap {
                start_history_id: HistoryId(5),
                step: GapStep::Apply,
                list_calls: 1,
                appeared: 0,
                vanished: 0,
                relabeled: 0,
            }),
        };
        let mut bytes = vec![codec::FORMAT_TAGGED];
        bytes.extend_from_slice(&AccountRecord::VERSION.to_be_bytes());
        ciborium::into_writer(&old, &mut bytes).unwrap();
        let rec = codec::decode::<AccountRecord>(&bytes).unwrap();
        let gap = rec.gap.unwrap();
        assert_eq!((gap.marker_layout, gap.peak_buffered), (0, 0));
        assert_eq!(gap.step, GapStep::Apply);
    }
}
