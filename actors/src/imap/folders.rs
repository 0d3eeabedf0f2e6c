//! The folder list of an IMAP account: LIST reconciled with the folders held in the store.
//! New folders are added (`folder.created`), folders gone from the server are removed with
//! their messages (`folder.deleted`), and a folder that vanished while a new one appeared with
//! the same UIDVALIDITY (Dovecot and most servers keep it across RENAME; imap.md §3) is a
//! rename: its state and UID map move to the new name, its messages' folder labels follow, and
//! one `folder.renamed` event is the whole story — no body is downloaded again and consumers
//! see no delete + add. The STATUS probes that tell a rename from delete + create are only
//! sent when the LIST shows both a folder gone and a folder new.

use crate::error::SyncError;
use crate::imap::folder_sync::{Step, flush, store_err};
use crate::imap::port::{FolderInfo, ImapSession};
use crate::imap::store::{self as istore, FolderState};
use crate::mirror::Change;
use crate::spec::now_ms;

/// A folder seen under a new name.
struct Renamed<'a> {
    from: &'a FolderState,
    to: &'a FolderInfo,
}

/// Which of the `added` folders are renames of `gone` ones: same UIDVALIDITY (the server's
/// STATUS of the new name), each old folder matched at most once.
async fn find_renames<'a>(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    added: &[&'a FolderInfo],
    gone: &[&'a FolderState],
) -> Result<Vec<Renamed<'a>>, SyncError> {
    let mut out: Vec<Renamed<'a>> = Vec::new();
    if added.is_empty() || gone.iter().all(|g| g.uidvalidity.is_none()) {
        return Ok(out);
    }
    for a in added {
        let st = match sess.status(&a.name).await {
            Ok(st) => st,
            Err(e) => {
                // A folder we cannot probe is simply treated as new.
                step.stats.count(e.class);
                tracing::debug!(account = %step.cx.account, folder = %a.name, error = %e, "STATUS of a new folder failed; treating it as created.");
                continue;
            }
        };
        step.stats.status_probe();
        let matches: Vec<&&FolderState> = gone
            .iter()
            .filter(|g| g.uidvalidity == Some(st.uidvalidity) && st.uidvalidity != 0)
            .filter(|g| !out.iter().any(|r| r.from.id == g.id))
            .collect();
        if let [only] = matches.as_slice() {
            out.push(Renamed { from: only, to: a });
        }
    }
    Ok(out)
}

/// LIST and reconcile the folder set (see the module doc). `wanted` filters the LIST.
pub(crate) async fn refresh(
    step: &Step<'_>,
    sess: &mut dyn ImapSession,
    wanted: impl Fn(&FolderInfo) -> bool,
) -> Result<(), SyncError> {
    let cx = step.cx;
    let listed = step.port(sess.list().await)?;
    let account = cx.account.0.as_str();
    let wanted: Vec<&FolderInfo> = listed.iter().filter(|f| wanted(f)).collect();
    let known = istore::folders(cx.store, account).map_err(store_err)?;
    let mut added: Vec<&FolderInfo> = wanted
        .iter()
        .copied()
        .filter(|w| !known.iter().any(|k| k.name == w.name))
        .collect();
    let mut gone: Vec<&FolderState> = known
        .iter()
        .filter(|k| !wanted.iter().any(|w| w.name == k.name))
        .collect();
    if added.is_empty() && gone.is_empty() {
        return Ok(());
    }
    let renamed = if gone.is_empty() {
        Vec::new()
    } else {
        find_renames(step, sess, &added, &gone).await?
    };
    added.retain(|a| !renamed.iter().any(|r| r.to.name == a.name));
    gone.retain(|g| !renamed.iter().any(|r| r.from.id == g.id));
    let mut gone_uids = Vec::new();
    for g in &gone {
        gone_uids.push(istore::held_uids(cx.store, account, g.id).map_err(store_err)?);
    }
    let mut renamed_keys = Vec::new();
    for r in &renamed {
        let keys: Vec<String> = istore::uid_entries(cx.store, account, r.from.id)
            .map_err(store_err)?
            .into_iter()
            .map(|(_, e)| e.key)
            .collect();
        renamed_keys.push(keys);
    }
    let now = now_ms();
    cx.store
        .transaction(|tx| {
            let akey = istore::account_key(account);
            let mut st: istore::ImapAccountState = istore::load_tx(tx, &akey)?.unwrap_or_default();
            for (r, keys) in renamed.iter().zip(&renamed_keys) {
                istore::rename_folder_tx(
                    tx,
                    account,
                    r.from,
                    &r.to.name,
                    r.to.special_use().map(str::to_string),
                    keys,
                    now,
                )?;
            }
            for a in &added {
                st.next_folder_id += 1;
                let f = FolderState {
                    id: st.next_folder_id,
                    name: a.name.clone(),
                    special_use: a.special_use().map(str::to_string),
                    ..FolderState::default()
                };
                istore::save_tx(tx, &istore::folder_key(account, &a.name), &f)?;
                istore::folder_event_tx(
                    tx,
                    account,
                    &format!("{}:{}", a.name, f.id),
                    &Change::FolderCreated {
                        folder: a.name.clone(),
                        special_use: f.special_use.clone(),
                    },
                    now,
                )?;
            }
            for (g, uids) in gone.iter().zip(&gone_uids) {
                for uid in uids {
                    istore::delete_uid_tx(tx, account, g, *uid, now)?;
                }
                tx.remove(
                    crate::store::Space::Imap,
                    &istore::folder_key(account, &g.name),
                )?;
                istore::folder_event_tx(
                    tx,
                    account,
                    &format!("{}:{}", g.name, g.id),
                    &Change::FolderDeleted {
                        folder: g.name.clone(),
                    },
                    now,
                )?;
            }
            istore::save_tx(tx, &akey, &st)
        })
        .map_err(store_err)?;
    flush(cx.store).await?;
    for r in &renamed {
        tracing::info!(account = %cx.account, from = %r.from.name, to = %r.to.name, "IMAP folder renamed on the server; its messages follow without a download.");
    }
    tracing::info!(account = %cx.account, added = added.len(), removed = gone.len(), renamed = renamed.len(), "IMAP folder list changed.");
    Ok(())
}
