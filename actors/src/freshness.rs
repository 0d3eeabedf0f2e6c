//! Which write is newer: a fetched message never overwrites newer state.
//!
//! Ingest fetches a message, then commits it some time later; HistorySync may meanwhile apply
//! a newer change to the same message (a deletion, a relabel) that the fetch did not see. Gmail
//! gives every message the id of the last history record that modified it
//! (`FetchedMessage::history_id`), so the rule is a comparison of history ids:
//!
//! * While an ingest job for a message is pending, every history change applied to that
//!   message leaves a *watermark* (`fresh\0<account>\0<id>` in `Space::Cursors`): the
//!   highest record id seen, and whether that record deleted it.
//! * When the fetch commits, [`check_fetched`] compares: a fetch at or after the watermark is
//!   [`Freshness::Fresh`] (applied, watermark dropped); one older than a deletion is
//!   [`Freshness::Deleted`] (nothing resurrected, job done); one older than a relabel is
//!   [`Freshness::Outdated`] (not applied, the job runs again and fetches the current state,
//!   whose history id is at least the watermark, so this ends).
//!
//! Messages without a pending job get no watermark: nothing can overwrite them from a fetch.
//! A full sync's page jobs (`ingest_pages.rs`) need none: HistorySync applies no change until
//! the full sync has drained them, and an id that must be fetched again leaves its page as a
//! job of its own.

use crate::jobs::{ChildKind, ingest_key, mailbox_name};
use crate::model::{AccountId, FetchedMessage, HistoryId, MessageId};
use crate::store::{Space, StoreTx, TxError, decode, encode};
use serde::{Deserialize, Serialize};

/// The newest history change seen for a message while its fetch was pending.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct Watermark {
    /// The history record id.
    pub at: u64,
    /// Whether that record deleted the message.
    pub deleted: bool,
}

crate::versioned_as_itself!(Watermark => "message watermark");

/// What to do with a fetch that is about to be committed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Nothing newer is known: apply it.
    Fresh,
    /// The message was deleted after this fetch: drop it.
    Deleted,
    /// The message changed after this fetch: fetch it again.
    Outdated,
}

fn key(account: &AccountId, id: &MessageId) -> Vec<u8> {
    let mut k = b"fresh\0".to_vec();
    k.extend_from_slice(account.0.as_bytes());
    k.push(0);
    k.extend_from_slice(id.0.as_bytes());
    k
}

/// Records that history record `at` changed (or, with `deleted`, removed) message `id`, if a
/// fetch of it is pending. Keeps the highest record.
pub fn note_change(
    tx: &StoreTx<'_>,
    account: &AccountId,
    id: &MessageId,
    at: HistoryId,
    deleted: bool,
) -> Result<(), TxError> {
    let mailbox = mailbox_name(account, ChildKind::Ingest);
    if !crate::mailbox::tx_is_pending(tx, &mailbox, &ingest_key(account, &id.0))? {
        return Ok(());
    }
    let k = key(account, id);
    if let Some(v) = tx.get(Space::Cursors, &k)? {
        let cur: Watermark = decode(&v)?;
        if cur.at >= at.0 {
            return Ok(());
        }
    }
    tx.insert(
        Space::Cursors,
        &k,
        &encode(&Watermark { at: at.0, deleted }),
    )
}

/// Compares a fetch with the watermark of its message.
pub fn check_fetched(
    tx: &StoreTx<'_>,
    account: &AccountId,
    msg: &FetchedMessage,
) -> Result<Freshness, TxError> {
    let Some(v) = tx.get(Space::Cursors, &key(account, &msg.id))? else {
        return Ok(Freshness::Fresh);
    };
    let w: Watermark = decode(&v)?;
    Ok(if w.at <= msg.history_id.0 {
        Freshness::Fresh
    } else if w.deleted {
        Freshness::Deleted
    } else {
        Freshness::Outdated
    })
}

/// Drops a message's watermark (its fetch committed or was dropped).
pub fn clear(tx: &StoreTx<'_>, account: &AccountId, id: &MessageId) -> Result<(), TxError> {
    tx.remove(Space::Cursors, &key(account, id))
}

#[cfg(test)]
mod tests;
