//! Rebuilding a mirror from what the sinks wrote (`mailsync store rebuild`): restored messages
//! enter the mirror *without* feed events — consumers already had them. Their records are what
//! keeps a later ingest of the same message from handing it out again: `mirror::apply_fetched`
//! announces only a message it does not hold (`StoreTx::append_event_for_new_record`), and
//! `mirror::sync_labels` only a label it does not hold. Then the account is set up for the gap recovery (`backfill.rs`), the
//! cheap reconcile with the provider: it lists ids and per-label ids, fetches only what the
//! Maildir did not hold, removes what vanished and fixes label sets, with ordinary events.

use crate::account_record::AccountRecord;
use crate::backfill::{self, BackfillJob};
use crate::mirror::{MirrorMessage, record_key, sha256_hex};
use crate::model::AccountId;
use crate::store::{Space, Store, StoreError, StoreTx, TxError, encode};

/// Why a restored message was refused.
#[derive(Debug, thiserror::Error)]
pub enum RestoreRefused {
    /// The file's bytes do not match the recorded checksum (edited, or cut short).
    #[error("the bytes do not match the recorded SHA-256")]
    Checksum,
}

/// Puts one message (record + raw bytes) into the mirror without an event; the record's
/// checksum must match the bytes. A message already mirrored is left alone.
pub fn restore_message_tx(
    tx: &StoreTx<'_>,
    account: &str,
    record: &MirrorMessage,
    raw: &[u8],
) -> Result<bool, TxError> {
    let key = record_key(account, &record.id.0);
    if tx.get(Space::Messages, &key)?.is_some() {
        return Ok(false);
    }
    // The index's record never carries a body reference (`without_body_ref`); this store's
    // is where the bytes go now.
    let record = MirrorMessage {
        body: Some(tx.append_body(raw)?),
        ..record.clone()
    };
    tx.insert(Space::Messages, &key, &encode(&record))?;
    Ok(true)
}

/// Checks a restored message's bytes against its record.
pub fn verify_restored(record: &MirrorMessage, raw: &[u8]) -> Result<(), RestoreRefused> {
    if record.size != raw.len() as u64 || sha256_hex(raw) != record.raw_sha256 {
        return Err(RestoreRefused::Checksum);
    }
    Ok(())
}

/// Restores a batch of messages of one account in one transaction; returns how many were new.
pub fn restore_messages(
    store: &Store,
    account: &str,
    batch: &[(MirrorMessage, Vec<u8>)],
) -> Result<u64, StoreError> {
    store.transaction(|tx| {
        let mut n = 0;
        for (record, raw) in batch {
            n += u64::from(restore_message_tx(tx, account, record, raw)?);
        }
        Ok(n)
    })
}

/// Marks the account as synced once and enqueues its gap recovery, which reconciles the
/// restored mirror with the provider at the next daemon start. Flushed.
pub fn schedule_reconcile(store: &Store, account: &str, now_ms: u64) -> Result<(), StoreError> {
    let id = AccountId(account.to_string());
    store.transaction(|tx| {
        let mut rec = AccountRecord::load_tx(tx, account)?;
        rec.initial_sync_completed = true;
        rec.full_sync = None;
        rec.history_round = None;
        rec.gap = None;
        rec.history_id = None;
        rec.save_tx(tx, account)?;
        backfill::enqueue_tx(tx, &id, BackfillJob::Gap, now_ms)
    })?;
    store.flush()
}

/// Restores an account's labels without events (consumers already had them), marking their
/// `label.created` keys as used.
pub fn restore_labels(
    store: &Store,
    account: &str,
    labels: &[crate::model::Label],
) -> Result<u64, StoreError> {
    store.transaction(|tx| {
        let mut n = 0;
        for label in labels {
            let key = record_key(account, &label.id.0);
            if tx.get(Space::Labels, &key)?.is_some() {
                continue;
            }
            tx.insert(Space::Labels, &key, &encode(label))?;
            n += 1;
        }
        Ok(n)
    })
}
