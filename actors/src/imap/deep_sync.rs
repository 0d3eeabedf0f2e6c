//! `ctl deep-sync ACCOUNT [--since DATE] [--until DATE] [--folder F]` for IMAP accounts: a
//! backfill job ([`BackfillJob::DeepSync`]) that, folder by folder, asks the server for the
//! messages of a date range (`UID SEARCH SINCE … BEFORE …`, by INTERNALDATE), downloads
//! whatever the mirror lacks and re-checks the flags of what it holds. It repairs what the
//! incremental cursor cannot see (messages slipped in under it, a store restored from an old
//! backup); messages outside the range are not touched.
//!
//! Durable like every backfill job: the job sits in the account's backfill mailbox until it is
//! done, and the folders already covered are recorded ([`DeepSyncProgress`], key
//! `<account>\0D<job key>`) in the transaction that finishes each folder, so a crash resumes at
//! the next folder; the bodies of a folder are recorded chunk by chunk and a replayed folder
//! skips what is already held. The job's ack removes the progress record in one transaction.

use crate::codec::{CodecError, Versioned};
use crate::error::SyncError;
use crate::imap::folder_sync::{
    Step, chunks, flush, needs_initial, record_bodies, rematch, sorted_uids, store_err,
};
use crate::imap::port::{ImapSession, MessageMeta, uid_set};
use crate::imap::store::{self as istore, FolderState};
use crate::mailbox::Job;
use crate::spec::now_ms;
use crate::store::{Space, StoreTx, TxError};
use serde::{Deserialize, Serialize};
use std::collections::HashSet;

/// The folders a deep-sync job has covered.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct DeepSyncProgress {
    /// Folder names done.
    pub done: Vec<String>,
    /// Messages downloaded so far.
    pub fetched: u64,
    /// Flag changes applied so far.
    pub flags_fixed: u64,
}

impl Versioned for DeepSyncProgress {
    const NAME: &'static str = "imap deep-sync progress";
    const VERSION: u16 = 1;
    fn from_legacy(_body: &[u8]) -> Result<Self, CodecError> {
        Err(CodecError::malformed::<Self>(
            "IMAP values did not exist in schema 1",
        ))
    }
}

/// The progress key of a deep-sync job.
pub fn progress_key(account: &str, job_key: &str) -> Vec<u8> {
    let mut k = account.as_bytes().to_vec();
    k.push(0);
    k.push(b'D');
    k.extend_from_slice(job_key.as_bytes());
    k
}

const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// `YYYY-MM-DD` → the IMAP search date (`1-Feb-2026`), or why it is not a date.
pub fn imap_date(iso: &str) -> Result<String, String> {
    let bad = || format!("{iso:?} is not a date (YYYY-MM-DD)");
    let mut parts = iso.trim().splitn(3, '-');
    let (Some(y), Some(m), Some(d)) = (parts.next(), parts.next(), parts.next()) else {
        return Err(bad());
    };
    let y: u32 = y.parse().map_err(|_| bad())?;
    let m: usize = m.parse().map_err(|_| bad())?;
    let d: u32 = d.parse().map_err(|_| bad())?;
    if !(1970..=9999).contains(&y) || !(1..=12).contains(&m) || !(1..=31).contains(&d) {
        return Err(bad());
    }
    Ok(format!("{d}-{}-{y}", MONTHS[m - 1]))
}

/// The `UID SEARCH` criteria of a range (`ALL` when unbounded). `since` is inclusive,
/// `until` exclusive (IMAP's BEFORE), both by INTERNALDATE.
pub fn search_criteria(since: Option<&str>, until: Option<&str>) -> Result<String, String> {
    let mut parts = Vec::new();
    if let Some(s) = since {
        parts.push(format!("SINCE {}", imap_date(s)?));
    }
    if let Some(u) = until {
        parts.push(format!("BEFORE {}", imap_date(u)?));
    }
    if parts.is_empty() {
        parts.push("ALL".into());
    }
    Ok(parts.join(" "))
}

fn save_progress_tx(
    tx: &StoreTx<'_>,
    key: &[u8],
    progress: &DeepSyncProgress,
) -> Result<(), TxError> {
    tx.insert(Space::Imap, key, &crate::store::encode(progress))
}

/// The job's recorded progress.
pub(crate) fn progress(step: &Step<'_>, job_key: &str) -> Result<DeepSyncProgress, SyncError> {
    istore::load(step.cx.store, &progress_key(&step.cx.account.0, job_key))
        .map(Option::unwrap_or_default)
        .map_err(store_err)
}

/// Finishes the job: ack and forget its progress in one transaction.
pub(crate) async fn finish(step: &Step<'_>, job: &Job) -> Result<(), SyncError> {
    let key = progress_key(&step.cx.account.0, &job.key);
    let p = progress(step, &job.key)?;
    step.cx
        .store
        .transaction(|tx| {
            tx.remove(Space::Imap, &key)?;
            tx.ack(job)
        })
        .map_err(store_err)?;
    flush(step.cx.store).await?;
    tracing::info!(account = %step.cx.account, folders = p.done.len(), fetched = p.fetched, flags_fixed = p.flags_fixed, "IMAP deep sync finished.");
    Ok(())
}

/// Deep-syncs one folder over the range; `false` when the folder must be stepped again (its
/// UIDVALIDITY changed and was rematched first). The folder is then recorded as done.
pub(crate) async fn folder_step(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    job_key: &str,
    name: &str,
    criteria: &str,
) -> Result<bool, SyncError> {
    let account = step.cx.account.0.as_str();
    let fkey = istore::folder_key(account, name);
    let f: Option<FolderState> = istore::load(step.cx.store, &fkey).map_err(store_err)?;
    let mut fetched = 0u64;
    let mut fixed = 0u64;
    // A folder still in its first sync gets everything from that sync.
    if let Some(f) = f.filter(|f| !needs_initial(f)) {
        step.stats.select();
        let sel = step.port(sess.select(name, None).await)?;
        if Some(sel.uidvalidity) != f.uidvalidity {
            rematch(step, sess, &f, &sel).await?;
            return Ok(false);
        }
        let mut uids = step.port(sess.uid_search(criteria).await)?;
        uids.sort_unstable();
        let held: HashSet<u32> = istore::held_uids(step.cx.store, account, f.id)
            .map_err(store_err)?
            .into_iter()
            .collect();
        for part in uids.chunks(500) {
            let meta = step.port(sess.fetch_meta(&uid_set(part), None).await)?;
            let (known, missing): (Vec<MessageMeta>, Vec<MessageMeta>) =
                meta.into_iter().partition(|m| held.contains(&m.uid));
            if !known.is_empty() {
                let now = now_ms();
                fixed += step
                    .cx
                    .store
                    .transaction(|tx| {
                        let mut n = 0u64;
                        for m in &known {
                            n += u64::from(istore::set_flags_tx(
                                tx, account, &f, m.uid, &m.flags, m.modseq, now,
                            )?);
                        }
                        Ok(n)
                    })
                    .map_err(store_err)?;
            }
            let refs: Vec<&MessageMeta> = missing.iter().collect();
            for chunk in chunks(&refs, step.limits) {
                let bodies = step.port(sess.fetch_bodies(&uid_set(&sorted_uids(&chunk))).await)?;
                fetched += record_bodies(step, &f, &bodies, |_, _| {}).await?;
            }
        }
    }
    mark_done(step, job_key, name, fetched, fixed).await?;
    tracing::info!(account = %step.cx.account, folder = name, criteria, fetched, flags_fixed = fixed, "IMAP deep sync of a folder done.");
    Ok(true)
}

/// Records `name` as covered by the job (with what it fetched and fixed), then flushes. A
/// folder the server refuses is recorded too (with nothing), so the job does not loop on it.
pub(crate) async fn mark_done(
    step: &Step<'_>,
    job_key: &str,
    name: &str,
    fetched: u64,
    fixed: u64,
) -> Result<(), SyncError> {
    let pkey = progress_key(&step.cx.account.0, job_key);
    step.cx
        .store
        .transaction(|tx| {
            let mut p: DeepSyncProgress = match tx.get(Space::Imap, &pkey)? {
                Some(v) => crate::store::decode(&v)?,
                None => DeepSyncProgress::default(),
            };
            if !p.done.iter().any(|d| d == name) {
                p.done.push(name.to_string());
                p.fetched += fetched;
                p.flags_fixed += fixed;
            }
            save_progress_tx(tx, &pkey, &p)
        })
        .map_err(store_err)?;
    flush(step.cx.store).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_become_imap_search_criteria() {
        assert_eq!(imap_date("2026-02-01").as_deref(), Ok("1-Feb-2026"));
        assert!(imap_date("2026-13-01").is_err());
        assert!(imap_date("yesterday").is_err());
        assert!(imap_date("2026-02-01 OR ALL").is_err());
        assert_eq!(
            search_criteria(Some("2025-01-01"), Some("2026-01-01")).as_deref(),
            Ok("SINCE 1-Jan-2025 BEFORE 1-Jan-2026")
        );
        assert_eq!(search_criteria(None, None).as_deref(), Ok("ALL"));
    }
}
