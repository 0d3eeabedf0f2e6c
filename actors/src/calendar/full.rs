//! Calendar backfill steps: the full listing of the calendar list, and the full sync of one
//! calendar into a fresh generation that is swapped in only when complete.
//!
//! Each step is one provider call (or one chunk of the swap) and one transaction; progress
//! lives in [`CalendarListState`] / [`CalendarState::full`], so a crash resumes at the step it
//! was on, and every replay is a no-op (fresh-generation writes overwrite; swap writes compare
//! etags; event keys carry the etag).

use super::{CalendarSource, add_or_update_calendar_tx, remove_calendar_tx, store_err};
use crate::calendar_model::{EventsQuery, PageCursor};
use crate::error::{ApiError, SyncError};
use crate::jobs::BackfillJob;
use crate::mailbox::Job;
use crate::report::{self, ChildReport};
use crate::source::{BackfillNext, SourceCx};
use crate::spec::now_ms;
use crate::status::{Phase, Progress};
use crate::store::Space;
use store::{CalendarListState, CalendarState, FullStep, Generation};

use super::store;

/// Events moved from the fresh generation into the current one per transaction.
const SWAP_CHUNK: usize = 500;

/// One step of a Calendar backfill job.
pub(super) async fn step(
    source: &CalendarSource,
    cx: &SourceCx<'_>,
    job: &Job,
) -> Result<BackfillNext, SyncError> {
    match BackfillJob::decode(job).map_err(store_err)? {
        BackfillJob::FullSync | BackfillJob::Gap => list_step(source, cx, job).await,
        BackfillJob::CalendarFull { calendar_id } => {
            calendar_step(source, cx, job, &calendar_id).await
        }
        BackfillJob::DeepSync { .. } => {
            // An IMAP job (a config changed kinds under a data dir): drop it.
            tracing::warn!(account = %cx.account, job = %job.key, "Ignoring an IMAP job on a calendar account.");
            cx.store.transaction(|tx| tx.ack(job)).map_err(store_err)?;
            cx.store.flush().map_err(store_err)?;
            Ok(BackfillNext::Finished)
        }
    }
}

async fn list_step(
    source: &CalendarSource,
    cx: &SourceCx<'_>,
    job: &Job,
) -> Result<BackfillNext, SyncError> {
    let account = &cx.account.0;
    let list: CalendarListState = store::load(cx.store, &store::list_key(account))
        .map_err(store_err)?
        .unwrap_or_default();
    if let Some(token) = list.full_pending_token.clone() {
        // Every page is recorded: remove the calendars the listing did not see, then store
        // the list token.
        let mut removed = Vec::new();
        for st in store::calendars(cx.store, account).map_err(store_err)? {
            let id = st.entry.id.clone();
            let seen = cx
                .store
                .kv(Space::Calendar)
                .get(store::seen_key(account, &id))
                .map_err(store_err)?
                .is_some();
            if !seen {
                let mut keys = Vec::new();
                for g in [Generation::Current, Generation::Fresh] {
                    keys.extend(
                        store::scan_keys(
                            cx.store,
                            &store::events_prefix(account, &id, g),
                            usize::MAX,
                        )
                        .map_err(store_err)?,
                    );
                }
                removed.push((id, keys));
            }
        }
        let seen_marks =
            store::scan_keys(cx.store, &seen_prefix(account), usize::MAX).map_err(store_err)?;
        let now = now_ms();
        cx.store
            .transaction(|tx| {
                for (id, keys) in &removed {
                    remove_calendar_tx(tx, cx.account, id, keys, now)?;
                }
                for k in &seen_marks {
                    tx.remove(Space::Calendar, k)?;
                }
                let mut list: CalendarListState =
                    store::load_tx(tx, &store::list_key(account))?.unwrap_or_default();
                list.sync_token = Some(token.clone());
                list.full_page_token = None;
                list.full_pending_token = None;
                list.incremental_page_token = None;
                store::save_tx(tx, &store::list_key(account), &list)?;
                tx.ack(job)?;
                Ok(())
            })
            .map_err(store_err)?;
        cx.store.flush_async().await.map_err(store_err)?;
        tracing::info!(account = %cx.account, removed = removed.len(), "Calendar list synced.");
        let resyncing = store::calendars(cx.store, account)
            .map_err(store_err)?
            .iter()
            .any(|c| c.resyncing);
        // With no calendar resyncing, the account is not resyncing either (`ctl resync` of an
        // account without calendars ends here).
        report::send(
            cx.report,
            if resyncing {
                ChildReport::FullSyncDone
            } else {
                ChildReport::ResyncDone
            },
        );
        return Ok(BackfillNext::Finished);
    }
    report::send(
        cx.report,
        ChildReport::Phase {
            phase: Phase::Calendars,
            progress: None,
        },
    );
    let page = source
        .api
        .list_calendars(None, list.full_page_token.as_deref())
        .await?;
    let now = now_ms();
    let added = cx
        .store
        .transaction(|tx| {
            let mut added = 0;
            for entry in &page.entries {
                if entry.deleted || entry.hidden || !source.options.selects(&entry.id) {
                    continue;
                }
                tx.insert(Space::Calendar, &store::seen_key(account, &entry.id), b"")?;
                if add_or_update_calendar_tx(tx, cx.account, entry, now)? {
                    added += 1;
                }
            }
            let mut list: CalendarListState =
                store::load_tx(tx, &store::list_key(account))?.unwrap_or_default();
            match &page.next {
                PageCursor::NextPage(t) => list.full_page_token = Some(t.clone()),
                PageCursor::SyncToken(t) => list.full_pending_token = Some(t.clone()),
            }
            store::save_tx(tx, &store::list_key(account), &list)?;
            Ok(added)
        })
        .map_err(store_err)?;
    cx.store.flush_async().await.map_err(store_err)?;
    if added > 0 {
        report::send(cx.report, ChildReport::BackfillWork);
    }
    Ok(BackfillNext::Continue)
}

fn seen_prefix(account: &str) -> Vec<u8> {
    let mut k = store::seen_key(account, "");
    k.pop(); // the empty id
    k
}

async fn calendar_step(
    source: &CalendarSource,
    cx: &SourceCx<'_>,
    job: &Job,
    calendar: &str,
) -> Result<BackfillNext, SyncError> {
    let account = &cx.account.0;
    let key = store::calendar_key(account, calendar);
    let state: Option<CalendarState> = store::load(cx.store, &key).map_err(store_err)?;
    let Some(full) = state.as_ref().and_then(|s| s.full.clone()) else {
        // Removed meanwhile, or already synced: nothing left to do.
        cx.store.transaction(|tx| tx.ack(job)).map_err(store_err)?;
        cx.store.flush_async().await.map_err(store_err)?;
        return Ok(BackfillNext::Finished);
    };
    match full.step {
        FullStep::Listing { page_token } => {
            report::send(
                cx.report,
                ChildReport::Phase {
                    phase: Phase::Listing,
                    progress: Some(Progress {
                        done: full.pages,
                        ..Progress::default()
                    }),
                },
            );
            let query = EventsQuery {
                sync_token: None,
                page_token: page_token.clone(),
            };
            let page = match source.api.list_events(calendar, &query).await {
                Ok(p) => p,
                Err(ApiError::SyncTokenExpired) if page_token.is_some() => {
                    // The page token went stale: list again from the first page.
                    restart_listing(cx, calendar).await?;
                    return Ok(BackfillNext::Continue);
                }
                Err(e) => return Err(e.into()),
            };
            cx.store
                .transaction(|tx| {
                    for ev in &page.events {
                        if ev.is_cancelled() && !ev.is_exception() {
                            // A deleted event (showDeleted lists them): not part of the calendar.
                            continue;
                        }
                        store::save_tx(
                            tx,
                            &store::event_key(account, calendar, ev, Generation::Fresh),
                            ev,
                        )?;
                    }
                    let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                        return Ok(());
                    };
                    if let Some(f) = st.full.as_mut() {
                        f.pages += 1;
                        match &page.next {
                            PageCursor::NextPage(t) => {
                                f.step = FullStep::Listing {
                                    page_token: Some(t.clone()),
                                }
                            }
                            PageCursor::SyncToken(t) => {
                                f.step = FullStep::Pruning;
                                f.pending_token = Some(t.clone());
                            }
                        }
                    }
                    store::save_tx(tx, &key, &st)
                })
                .map_err(store_err)?;
            cx.store.flush_async().await.map_err(store_err)?;
            Ok(BackfillNext::Continue)
        }
        FullStep::Pruning => {
            // Current events the fresh listing does not have were deleted meanwhile.
            let current = store::scan_keys(
                cx.store,
                &store::events_prefix(account, calendar, Generation::Current),
                usize::MAX,
            )
            .map_err(store_err)?;
            let cur_prefix = store::events_prefix(account, calendar, Generation::Current);
            let fresh_prefix = store::events_prefix(account, calendar, Generation::Fresh);
            let mut gone = Vec::new();
            for k in current {
                let mut fk = fresh_prefix.clone();
                fk.extend_from_slice(&k[cur_prefix.len()..]);
                if cx
                    .store
                    .kv(Space::Calendar)
                    .get(&fk)
                    .map_err(store_err)?
                    .is_none()
                {
                    gone.push(k);
                }
            }
            let now = now_ms();
            for chunk in gone.chunks(SWAP_CHUNK) {
                cx.store
                    .transaction(|tx| store::delete_events_tx(tx, account, calendar, chunk, now))
                    .map_err(store_err)?;
            }
            cx.store
                .transaction(|tx| {
                    let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                        return Ok(());
                    };
                    if let Some(f) = st.full.as_mut() {
                        f.step = FullStep::Moving;
                    }
                    store::save_tx(tx, &key, &st)
                })
                .map_err(store_err)?;
            cx.store.flush_async().await.map_err(store_err)?;
            Ok(BackfillNext::Continue)
        }
        FullStep::Moving => {
            let fresh_prefix = store::events_prefix(account, calendar, Generation::Fresh);
            let mut batch = Vec::with_capacity(SWAP_CHUNK);
            for item in cx
                .store
                .kv(Space::Calendar)
                .scan_prefix(&fresh_prefix)
                .take(SWAP_CHUNK)
            {
                let (k, v) = item.map_err(store_err)?;
                batch.push((k.to_vec(), crate::store::decode(&v).map_err(store_err)?));
            }
            let last = batch.len() < SWAP_CHUNK;
            let now = now_ms();
            let was_resync = state.as_ref().is_some_and(|s| s.resyncing);
            let (created, updated) = cx
                .store
                .transaction(|tx| {
                    let (mut c, mut u) = (0u64, 0u64);
                    for (k, ev) in &batch {
                        match store::upsert_event_tx(tx, account, calendar, ev, now)? {
                            store::EventApplied::Created => c += 1,
                            store::EventApplied::Updated => u += 1,
                            store::EventApplied::Unchanged => {}
                        }
                        tx.remove(Space::Calendar, k)?;
                    }
                    if last {
                        let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                            tx.ack(job)?;
                            return Ok((c, u));
                        };
                        // Every page is durable and swapped in: now the token may be stored.
                        st.sync_token = st.full.as_ref().and_then(|f| f.pending_token.clone());
                        st.token_at_ms = Some(now);
                        st.incremental_page_token = None;
                        st.full = None;
                        st.resyncing = false;
                        st.last_sync_ms = Some(now);
                        store::save_tx(tx, &key, &st)?;
                        tx.ack(job)?;
                    }
                    Ok((c, u))
                })
                .map_err(store_err)?;
            cx.store.flush_async().await.map_err(store_err)?;
            if !last {
                return Ok(BackfillNext::Continue);
            }
            tracing::info!(account = %cx.account, calendar, created, updated, "Calendar full sync finished.");
            let others_resyncing = store::calendars(cx.store, account)
                .map_err(store_err)?
                .iter()
                .any(|c| c.resyncing);
            if was_resync && !others_resyncing {
                // The last calendar of a resync (410 or `ctl resync`) is back: the account too.
                report::send(cx.report, ChildReport::ResyncDone);
            } else {
                report::send(cx.report, ChildReport::FullSyncDone);
            }
            Ok(BackfillNext::Finished)
        }
    }
}

async fn restart_listing(cx: &SourceCx<'_>, calendar: &str) -> Result<(), SyncError> {
    let account = &cx.account.0;
    let key = store::calendar_key(account, calendar);
    let fresh = store::scan_keys(
        cx.store,
        &store::events_prefix(account, calendar, Generation::Fresh),
        usize::MAX,
    )
    .map_err(store_err)?;
    cx.store
        .transaction(|tx| {
            for k in &fresh {
                tx.remove(Space::Calendar, k)?;
            }
            let Some(mut st) = store::load_tx::<CalendarState>(tx, &key)? else {
                return Ok(());
            };
            if let Some(f) = st.full.as_mut() {
                f.step = FullStep::Listing { page_token: None };
                f.pages = 0;
            }
            store::save_tx(tx, &key, &st)
        })
        .map_err(store_err)?;
    cx.store.flush_async().await.map_err(store_err)?;
    Ok(())
}
