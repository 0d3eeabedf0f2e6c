//! The per-folder sync algorithms of the IMAP source (imap.md §8), each step one or a few
//! transactions that record the work together with the folder's checkpoint or cursor:
//!
//! * [`initial_step`]: the first sync, newest first, up to `pages_per_select` pages of UIDs per
//!   step (one SELECT; the step ends early at the `recent_first` mark); bodies are fetched in
//!   chunks of at most `chunk` messages, the next while the previous commits, and each chunk's
//!   transaction moves the
//!   checkpoint (`InitialProgress::below`), so a crash or a dropped connection resumes there.
//!   The first step records UIDVALIDITY, UIDNEXT and HIGHESTMODSEQ as the incremental
//!   baseline: whatever changes during the initial sync is picked up by the first round.
//! * [`incremental`]: QRESYNC (`SELECT … (QRESYNC …)`: VANISHED + changed FETCH), else
//!   CONDSTORE (`CHANGEDSINCE` + a `UID SEARCH ALL` diff for expunges), else a full UID/FLAGS
//!   diff; new UIDs are downloaded in chunks; the cursor moves in the last transaction.
//! * [`rematch`]: after a UIDVALIDITY change, the held messages are matched to the new UIDs by
//!   Message-ID + size + header hash, so nothing is downloaded twice.

use crate::error::SyncError;
use crate::imap::port::{
    FetchedBody, ImapError, ImapSession, MessageMeta, QresyncParams, Selected, uid_set,
};
use crate::imap::stats::Stats;
use crate::imap::store::{self as istore, FolderState, InitialProgress, UidEntry};
use crate::mirror::{self, Change};
use crate::model::MessageId;
use crate::source::SourceCx;
use crate::spec::now_ms;
use sha2::{Digest, Sha256};
use std::collections::{HashMap, HashSet};

/// Bounds of one step.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// UIDs per initial-sync page.
    pub page_uids: u32,
    /// Initial-sync pages per SELECT (one step).
    pub pages_per_select: u32,
    /// Messages per body fetch (in flight per connection).
    pub chunk: usize,
    /// Bytes per body fetch (by RFC822.SIZE).
    pub chunk_bytes: u64,
}

pub(crate) fn store_err(e: impl std::fmt::Display) -> SyncError {
    SyncError::Store(e.to_string())
}

/// Makes the store durable ([`crate::store::Store::flush_async`]: a blocking flush shared with
/// concurrent callers, never sled's own `flush_async`, which deadlocks with many accounts).
pub(crate) async fn flush(store: &crate::store::Store) -> Result<(), SyncError> {
    store.flush_async().await.map_err(store_err)
}

/// Everything a step needs.
pub(crate) struct Step<'a> {
    pub cx: &'a SourceCx<'a>,
    pub stats: &'a Stats,
    pub limits: Limits,
}

impl Step<'_> {
    fn account(&self) -> &str {
        &self.cx.account.0
    }

    pub(crate) fn port<T>(&self, r: Result<T, ImapError>) -> Result<T, SyncError> {
        r.map_err(|e| {
            self.stats.count(e.class);
            SyncError::Api(e.into())
        })
    }

    fn folder(&self, name: &str) -> Result<Option<FolderState>, SyncError> {
        istore::load(self.cx.store, &istore::folder_key(self.account(), name)).map_err(store_err)
    }

    async fn flush(&self) -> Result<(), SyncError> {
        flush(self.cx.store).await
    }

    /// Saves a folder state in its own transaction (and flushes).
    async fn save_folder(&self, f: &FolderState) -> Result<(), SyncError> {
        let key = istore::folder_key(self.account(), &f.name);
        self.cx
            .store
            .transaction(|tx| istore::save_tx(tx, &key, f))
            .map_err(store_err)?;
        self.flush().await
    }
}

/// Whether a folder still needs (part of) its first sync.
pub fn needs_initial(f: &FolderState) -> bool {
    f.uidvalidity.is_none() || f.initial.is_some()
}

/// One step of a folder's initial sync; `true` when the folder's initial sync is complete.
pub(crate) async fn initial_step(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    name: &str,
    recent: u64,
) -> Result<bool, SyncError> {
    let Some(mut f) = step.folder(name)? else {
        return Ok(true);
    };
    if !needs_initial(&f) {
        return Ok(true);
    }
    step.stats.select();
    let sel = step.port(sess.select(name, None).await)?;
    let Some(uv) = f.uidvalidity else {
        // First contact: the baseline of incremental sync, and the checkpoint at the top.
        f.uidvalidity = Some(sel.uidvalidity);
        f.uidnext = sel.uidnext;
        f.highest_modseq = sel.highest_modseq;
        f.initial = Some(InitialProgress {
            below: top_of(&sel),
            fetched: 0,
            total: u64::from(sel.exists),
        });
        f.last_error = None;
        step.save_folder(&f).await?;
        return Ok(false);
    };
    if uv != sel.uidvalidity {
        rematch(step, sess, &f, &sel).await?;
        return Ok(false);
    }
    // Several pages per SELECT: a SELECT makes the server rescan the folder (Dovecot reads a
    // 100,000-entry `cur/` for each), so one per page made the server the bottleneck. A step
    // still ends at the `recent` mark, so every folder's newest messages come first.
    for _ in 0..step.limits.pages_per_select.max(1) {
        let progress = f.initial.clone().unwrap_or_default();
        if progress.below <= 1 {
            f.initial = None;
            f.last_sync_ms = Some(now_ms());
            step.save_folder(&f).await?;
            return Ok(true);
        }
        f = initial_page(step, sess, name, f, progress.below).await?;
        let fetched = f.initial.as_ref().map_or(0, |p| p.fetched);
        if progress.fetched < recent && fetched >= recent {
            break;
        }
    }
    Ok(false)
}

/// One page of a folder's initial sync: the UIDs below `below`, newest first; returns the
/// folder with its checkpoint at the page's low end.
async fn initial_page(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    name: &str,
    f: FolderState,
    below: u32,
) -> Result<FolderState, SyncError> {
    let hi = below - 1;
    let lo = below.saturating_sub(step.limits.page_uids).max(1);
    let meta = step.port(sess.fetch_meta(&format!("{lo}:{hi}"), None).await)?;
    let held = held_in(step, f.id, lo, hi)?;
    let mut todo: Vec<&MessageMeta> = meta
        .iter()
        .filter(|m| (lo..=hi).contains(&m.uid) && !held.contains(&m.uid))
        .collect();
    todo.sort_by_key(|m| std::cmp::Reverse(m.uid));
    // Pipelined: the next chunk is on the wire while the previous one is committed (the
    // server works while we fsync). Commits stay in order, so each checkpoint still covers
    // exactly the chunks recorded before it.
    let record = |bodies: Vec<FetchedBody>, floor: u32| {
        let f = &f;
        async move {
            record_bodies(step, f, &bodies, |f, added| {
                if let Some(p) = f.initial.as_mut() {
                    p.below = floor;
                    p.fetched += added;
                }
            })
            .await
        }
    };
    let mut fetched: Option<(Vec<FetchedBody>, u32)> = None;
    for chunk in chunks(&todo, step.limits) {
        let set = uid_set(&sorted_uids(&chunk));
        let floor = chunk.iter().map(|m| m.uid).min().unwrap_or(lo);
        let bodies = match fetched.take() {
            Some((prev, prev_floor)) => {
                let (bodies, recorded) =
                    tokio::join!(sess.fetch_bodies(&set), record(prev, prev_floor));
                recorded?;
                bodies
            }
            None => sess.fetch_bodies(&set).await,
        };
        fetched = Some((step.port(bodies)?, floor));
    }
    if let Some((prev, prev_floor)) = fetched {
        record(prev, prev_floor).await?;
    }
    // The page is done: the checkpoint moves to its low end.
    let mut f = step.folder(name)?.unwrap_or(f);
    if let Some(p) = f.initial.as_mut() {
        p.below = lo;
    }
    step.save_folder(&f).await?;
    Ok(f)
}

/// The UIDs of `lo..=hi` already held: a range scan of the page, not of the whole folder
/// (a page per step over a whole-folder scan made a 100k folder's initial sync quadratic).
fn held_in(step: &Step<'_>, folder_id: u32, lo: u32, hi: u32) -> Result<HashSet<u32>, SyncError> {
    let account = step.account();
    let from = istore::uid_key(account, folder_id, lo);
    let to = istore::uid_key(account, folder_id, hi);
    let skip = from.len() - 4;
    let mut out = HashSet::new();
    for k in step
        .cx
        .store
        .kv(crate::store::Space::Imap)
        .range(from..=to)
        .keys()
    {
        let k = k.map_err(store_err)?;
        if let Some(uid) = k
            .get(skip..)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
        {
            out.insert(uid);
        }
    }
    Ok(out)
}

fn top_of(sel: &Selected) -> u32 {
    if sel.uidnext > 0 {
        sel.uidnext
    } else {
        u32::MAX
    }
}

pub(crate) fn sorted_uids(metas: &[&MessageMeta]) -> Vec<u32> {
    let mut v: Vec<u32> = metas.iter().map(|m| m.uid).collect();
    v.sort_unstable();
    v
}

/// Splits messages into fetches of at most `chunk` messages and `chunk_bytes` bytes.
pub(crate) fn chunks<'m>(todo: &[&'m MessageMeta], limits: Limits) -> Vec<Vec<&'m MessageMeta>> {
    let mut out: Vec<Vec<&MessageMeta>> = Vec::new();
    let mut cur: Vec<&MessageMeta> = Vec::new();
    let mut bytes = 0u64;
    for m in todo {
        let size = u64::from(m.size.unwrap_or(0));
        if !cur.is_empty() && (cur.len() >= limits.chunk || bytes + size > limits.chunk_bytes) {
            out.push(std::mem::take(&mut cur));
            bytes = 0;
        }
        bytes += size;
        cur.push(m);
    }
    if !cur.is_empty() {
        out.push(cur);
    }
    out
}

#[cfg(test)]
pub(crate) fn chunks_for_test<'m>(
    todo: &[&'m MessageMeta],
    limits: Limits,
) -> Vec<Vec<&'m MessageMeta>> {
    chunks(todo, limits)
}

/// Records downloaded messages and updates the folder (`update` sees how many were new) in
/// one transaction, then flushes.
pub(crate) async fn record_bodies(
    step: &Step<'_>,
    folder: &FolderState,
    bodies: &[FetchedBody],
    update: impl Fn(&mut FolderState, u64),
) -> Result<u64, SyncError> {
    let account = step.account();
    let key = istore::folder_key(account, &folder.name);
    let now = now_ms();
    let added = step
        .cx
        .store
        .transaction(|tx| {
            let mut f: FolderState = istore::load_tx(tx, &key)?.unwrap_or_else(|| folder.clone());
            let uv = f.uidvalidity.unwrap_or(0);
            let mut added = 0u64;
            for b in bodies {
                let mkey = istore::message_key(f.id, uv, b.uid);
                if istore::add_message_tx(tx, account, &f, &mkey, b, now)? {
                    added += 1;
                }
            }
            f.messages += added;
            update(&mut f, added);
            istore::save_tx(tx, &key, &f)?;
            Ok(added)
        })
        .map_err(store_err)?;
    step.flush().await?;
    step.stats.fetched(added);
    tracing::debug!(account = %step.cx.account, folder = %folder.name, fetched = bodies.len(), added, "IMAP bodies recorded.");
    Ok(added)
}

/// Which algorithm an incremental step uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// The best the server offers.
    Best,
    /// A full UID/FLAGS diff whatever the server offers (resync on demand).
    FullDiff,
}

/// One incremental sync of a folder; `false` when the folder needs another step (its initial
/// sync is still running or was restarted by a UIDVALIDITY change).
pub(crate) async fn incremental(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    name: &str,
    mode: Mode,
) -> Result<bool, SyncError> {
    let Some(f) = step.folder(name)? else {
        return Ok(true);
    };
    if needs_initial(&f) {
        return initial_step(step, sess, name, u64::MAX)
            .await
            .map(|_| false);
    }
    let caps = sess.capabilities();
    let qparams = match (
        caps.qresync && mode == Mode::Best,
        f.highest_modseq,
        f.uidvalidity,
    ) {
        (true, Some(modseq), Some(uidvalidity)) if modseq > 0 => Some(QresyncParams {
            uidvalidity,
            modseq,
        }),
        _ => None,
    };
    step.stats.select();
    let sel = step.port(sess.select(name, qparams.as_ref()).await)?;
    if Some(sel.uidvalidity) != f.uidvalidity {
        rematch(step, sess, &f, &sel).await?;
        return Ok(false);
    }
    let held = istore::held_uids(step.cx.store, step.account(), f.id).map_err(store_err)?;
    let held_set: HashSet<u32> = held.iter().copied().collect();
    let mut deleted: Vec<u32> = Vec::new();
    let mut changed: Vec<MessageMeta> = Vec::new();
    let mut new_meta: Option<Vec<MessageMeta>> = None;
    let condstore = caps.condstore
        && mode == Mode::Best
        && f.highest_modseq.is_some()
        && sel.highest_modseq.is_some();
    let how = if qparams.is_some() {
        "qresync"
    } else if condstore {
        "condstore"
    } else {
        "uid_flags_diff"
    };
    tracing::debug!(account = %step.cx.account, folder = name, mode = how, vanished = sel.vanished.len(), changed = sel.changed.len(), "IMAP incremental folder sync.");
    if qparams.is_some() {
        for (a, b) in &sel.vanished {
            // Servers may over-report; only held UIDs matter (and ranges can be huge).
            if u64::from(*b - *a) > held.len() as u64 {
                deleted.extend(held.iter().filter(|u| (*a..=*b).contains(u)));
            } else {
                deleted.extend((*a..=*b).filter(|u| held_set.contains(u)));
            }
        }
        changed = sel.changed.clone();
    } else if condstore {
        let unchanged = sel.highest_modseq == f.highest_modseq
            && sel.uidnext == f.uidnext
            && u64::from(sel.exists) == held.len() as u64;
        if !unchanged {
            if f.uidnext > 1 {
                let since = f.highest_modseq.unwrap_or(0);
                changed = step.port(
                    sess.fetch_meta(&format!("1:{}", f.uidnext - 1), Some(since))
                        .await,
                )?;
            }
            let server: HashSet<u32> = step
                .port(sess.uid_search_all().await)?
                .into_iter()
                .collect();
            deleted = held
                .iter()
                .copied()
                .filter(|u| !server.contains(u))
                .collect();
        }
    } else {
        let all = step.port(sess.fetch_meta("1:*", None).await)?;
        let server: HashSet<u32> = all.iter().map(|m| m.uid).collect();
        deleted = held
            .iter()
            .copied()
            .filter(|u| !server.contains(u))
            .collect();
        let (old, new): (Vec<MessageMeta>, Vec<MessageMeta>) =
            all.into_iter().partition(|m| m.uid < f.uidnext);
        changed = old;
        new_meta = Some(new);
    }
    // Deletions and flag changes: one transaction.
    let account = step.account();
    let key = istore::folder_key(account, name);
    let now = now_ms();
    let (known_changes, unknown_new): (Vec<MessageMeta>, Vec<MessageMeta>) = changed
        .into_iter()
        .partition(|m| held_set.contains(&m.uid) || m.uid < f.uidnext);
    if !deleted.is_empty() || !known_changes.is_empty() {
        let flag_events = step
            .cx
            .store
            .transaction(|tx| {
                let mut f: FolderState = istore::load_tx(tx, &key)?.unwrap_or_else(|| f.clone());
                let mut n = 0u64;
                for uid in &deleted {
                    if istore::delete_uid_tx(tx, account, &f, *uid, now)? {
                        f.messages = f.messages.saturating_sub(1);
                    }
                }
                for m in &known_changes {
                    n += u64::from(istore::set_flags_tx(
                        tx, account, &f, m.uid, &m.flags, m.modseq, now,
                    )?);
                }
                istore::save_tx(tx, &key, &f)?;
                Ok(n)
            })
            .map_err(store_err)?;
        step.flush().await?;
        tracing::debug!(account = %step.cx.account, folder = name, deleted = deleted.len(), flags_changed = flag_events, "IMAP folder changes recorded.");
    }
    // New messages.
    let mut new = match new_meta {
        Some(n) => n,
        None if sel.uidnext > f.uidnext || !unknown_new.is_empty() => {
            let from = f.uidnext.max(1);
            step.port(sess.fetch_meta(&format!("{from}:*"), None).await)?
        }
        None => Vec::new(),
    };
    // The `N:*` quirk: the highest UID always answers, even when below N.
    new.retain(|m| m.uid >= f.uidnext && !held_set.contains(&m.uid));
    new.sort_by_key(|m| m.uid);
    let max_new = new.iter().map(|m| m.uid).max();
    let refs: Vec<&MessageMeta> = new.iter().collect();
    for chunk in chunks(&refs, step.limits) {
        let bodies = step.port(sess.fetch_bodies(&uid_set(&sorted_uids(&chunk))).await)?;
        record_bodies(step, &f, &bodies, |_, _| {}).await?;
    }
    // The cursor moves last, after everything it covers is recorded.
    let before = f;
    let mut f = step.folder(name)?.unwrap_or_else(|| before.clone());
    f.uidnext = sel
        .uidnext
        .max(max_new.map_or(0, |u| u.saturating_add(1)))
        .max(f.uidnext);
    if sel.highest_modseq.is_some() {
        f.highest_modseq = sel.highest_modseq;
    }
    f.last_error = None;
    let moved = f != before || !deleted.is_empty() || !known_changes.is_empty() || !new.is_empty();
    // Nothing changed: no write (a quiet folder costs no transaction and no flush); the
    // folder's last sync time is refreshed at most once a minute.
    let now = now_ms();
    let stale = f
        .last_sync_ms
        .is_none_or(|t| now.saturating_sub(t) > 60_000);
    if moved || stale {
        f.last_sync_ms = Some(now);
        step.save_folder(&f).await?;
    }
    Ok(true)
}

/// The Message-ID header's value in a header section (unfolded, trimmed), if any.
pub fn message_id_of(header: &[u8]) -> Option<String> {
    let text = String::from_utf8_lossy(header);
    let mut lines = text.split('\n').peekable();
    while let Some(line) = lines.next() {
        let Some((name, value)) = line.split_once(':') else {
            continue;
        };
        if !name.trim().eq_ignore_ascii_case("message-id") {
            continue;
        }
        let mut v = value.trim().to_string();
        while let Some(next) = lines.peek() {
            if next.starts_with(' ') || next.starts_with('\t') {
                v.push_str(next.trim());
                lines.next();
            } else {
                break;
            }
        }
        return Some(v.trim().to_string()).filter(|v| !v.is_empty());
    }
    None
}

/// The hash that identifies a message's header section.
pub fn header_hash(header: &[u8]) -> [u8; 32] {
    Sha256::digest(header).into()
}

/// The header section of a raw message (up to and including the first empty line).
pub fn header_of(raw: &[u8]) -> &[u8] {
    if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
        return &raw[..p + 4];
    }
    if let Some(p) = raw.windows(2).position(|w| w == b"\n\n") {
        return &raw[..p + 2];
    }
    raw
}

type Identity = (Option<String>, u64, [u8; 32]);

/// UIDVALIDITY changed: drop the UID map, match held messages to the new UIDs (Message-ID +
/// size + header hash) without downloading them, delete what is gone, and restart the
/// folder's initial sync for the rest (it skips the UIDs already bound).
pub(crate) async fn rematch(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    f: &FolderState,
    sel: &Selected,
) -> Result<(), SyncError> {
    let account = step.account();
    let old = f.uidvalidity.unwrap_or(0);
    tracing::warn!(account = %step.cx.account, folder = %f.name, old, new = sel.uidvalidity, "UIDVALIDITY changed; matching held messages to the new UIDs.");
    let entries = istore::uid_entries(step.cx.store, account, f.id).map_err(store_err)?;
    let mut by_identity: HashMap<Identity, Vec<(u32, UidEntry)>> = HashMap::new();
    for (uid, e) in entries.iter().cloned() {
        let id = MessageId(e.key.clone());
        let Some(m) = mirror::message(step.cx.store, account, &id).map_err(store_err)? else {
            continue;
        };
        if let Some(raw) = mirror::raw_of(step.cx.store, account, &m).map_err(store_err)? {
            let header = header_of(&raw);
            let ident = (message_id_of(header), m.size, header_hash(header));
            by_identity.entry(ident).or_default().push((uid, e));
        }
    }
    let server = step.port(sess.uid_search_all().await)?;
    let mut sorted = server;
    sorted.sort_unstable();
    let mut bound: Vec<(u32, UidEntry, Vec<String>)> = Vec::new();
    for part in sorted.chunks(500) {
        let headers = step.port(sess.fetch_headers(&uid_set(part)).await)?;
        for h in headers {
            let mid = message_id_of(&h.header);
            let ident = (mid, u64::from(h.size), header_hash(&h.header));
            if let Some(list) = by_identity.get_mut(&ident)
                && let Some((_, e)) = list.pop()
            {
                bound.push((h.uid, e, h.flags));
            }
        }
    }
    let bound_keys: HashSet<&str> = bound.iter().map(|(_, e, _)| e.key.as_str()).collect();
    let gone: Vec<&UidEntry> = entries
        .iter()
        .map(|(_, e)| e)
        .filter(|e| !bound_keys.contains(e.key.as_str()))
        .collect();
    let key = istore::folder_key(account, &f.name);
    let now = now_ms();
    let rematched = bound.len() as u64;
    step.cx
        .store
        .transaction(|tx| {
            let mut nf = f.clone();
            for (uid, _) in &entries {
                istore::unbind_uid_tx(tx, account, f.id, *uid)?;
            }
            for e in &gone {
                mirror::apply_deleted(tx, account, &MessageId(e.key.clone()), now)?;
            }
            nf.uidvalidity = Some(sel.uidvalidity);
            for (uid, e, flags) in &bound {
                istore::bind_uid_tx(tx, account, &nf, *uid, e, flags, now)?;
            }
            nf.uidnext = sel.uidnext;
            nf.highest_modseq = sel.highest_modseq;
            nf.messages = rematched;
            nf.initial = Some(InitialProgress {
                below: top_of(sel),
                fetched: rematched,
                total: u64::from(sel.exists),
            });
            istore::save_tx(tx, &key, &nf)?;
            istore::folder_event_tx(
                tx,
                account,
                &format!("{}:{old}:{}", f.name, sel.uidvalidity),
                &Change::FolderUidValidityChanged {
                    folder: f.name.clone(),
                    old,
                    new: sel.uidvalidity,
                    rematched,
                },
                now,
            )
        })
        .map_err(store_err)?;
    step.flush().await?;
    tracing::info!(account = %step.cx.account, folder = %f.name, rematched, deleted = gone.len(), "UID map rebuilt after the UIDVALIDITY change.");
    Ok(())
}
