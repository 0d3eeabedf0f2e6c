//! `mailsync store check | rebuild | restore` (offline tools for the data directory, run while
//! the daemon is stopped), the daemon side of `mailsync ctl backup`, and the exit statuses
//! the binary gives store trouble: 3 = the store cannot be used (damaged, or written by a newer
//! mailsync), 4 = not enough free space in the data directory. Prints for the user by design.

use std::path::{Path, PathBuf};

use clap::Subcommand;
use mailsync_actors::store::{Store, StoreError};
use mailsync_actors::store_open::DAMAGED_HELP;
use mailsync_actors::{store_backup, store_check, store_rebuild};
use serde_json::json;

use crate::config::Config;
use crate::control::protocol::{ErrorCode, Response};
use crate::sink::maildir::{Maildir, id_from_file_name};
use crate::sink::maildir_index::{read_index, read_labels};

/// Exit status: the store cannot be used (damaged, or from a newer mailsync).
pub const EXIT_STORE_UNUSABLE: u8 = 3;
/// Exit status: the data directory's file system is below its free-space floor.
pub const EXIT_DISK_FULL: u8 = 4;

/// `mailsync store <command>`.
#[derive(Clone, Debug, PartialEq, Eq, Subcommand)]
pub enum StoreArgs {
    /// Verify the store (every value decodes, cursors and queues match the mirror) without
    /// changing it; exit 3 when something is wrong.
    Check,
    /// Move the store aside and rebuild the mirror from the Maildir; the next daemon start
    /// reconciles it with the provider (cheaply: ids and labels, bodies only for what the
    /// Maildir lacked).
    Rebuild,
    /// Replace the store with a backup written by `mailsync ctl backup`; the daemon catches
    /// up with the provider at its next start.
    Restore {
        /// The backup file.
        path: PathBuf,
    },
}

/// The exit status and extra advice for a store error at daemon start.
pub fn exit_for(e: &StoreError) -> (u8, Option<String>) {
    match e {
        StoreError::Damaged { .. }
        | StoreError::Corrupt { .. }
        | StoreError::Open { .. }
        | StoreError::Migration { .. } => (
            EXIT_STORE_UNUSABLE,
            Some(format!("What helps:\n{DAMAGED_HELP}")),
        ),
        StoreError::SchemaTooNew { .. } => (
            EXIT_STORE_UNUSABLE,
            Some(
                "What helps: run the newer mailsync that wrote it, or `mailsync store restore BACKUP` \
                 with a backup made by this version."
                    .into(),
            ),
        ),
        StoreError::DiskFull { .. } => (
            EXIT_DISK_FULL,
            Some(
                "What helps: free some space on that file system (or lower [store] min_free_mb), \
                 then start again; nothing in the store was changed."
                    .into(),
            ),
        ),
        _ => (1, None),
    }
}

/// Answers `ctl backup`: writes the backup on a blocking thread.
pub async fn backup_reply(store: &Store, path: String) -> Response {
    let target = PathBuf::from(&path);
    if !target.is_absolute() {
        return Response::error(ErrorCode::BadRequest, "the backup path must be absolute");
    }
    let store = store.clone();
    match tokio::task::spawn_blocking(move || store.backup_to(&target)).await {
        Ok(Ok(r)) => Response::ok(json!({
            "path": path, "trees": r.trees, "entries": r.entries, "bytes": r.bytes
        })),
        Ok(Err(e)) => Response::error(ErrorCode::Internal, e.to_string()),
        Err(e) => Response::error(ErrorCode::Internal, format!("backup failed: {e}")),
    }
}

/// Runs one `mailsync store` command; returns the exit status.
pub fn run(cfg: &Config, args: &StoreArgs) -> u8 {
    match args {
        StoreArgs::Check => check(&cfg.data_dir),
        StoreArgs::Restore { path } => match store_backup::restore(&cfg.data_dir, path) {
            Ok((report, moved)) => {
                println!(
                    "restored {} entries in {} trees from {} into {}",
                    report.entries,
                    report.trees,
                    path.display(),
                    cfg.data_dir.display()
                );
                if let Some(m) = moved {
                    println!("the previous database was kept in {}", m.display());
                }
                println!(
                    "start the daemon: it catches up with the provider from the backup's cursor"
                );
                0
            }
            Err(e) => {
                eprintln!("mailsync store restore: {e}");
                1
            }
        },
        StoreArgs::Rebuild => match rebuild(cfg) {
            Ok(lines) => {
                for l in lines {
                    println!("{l}");
                }
                0
            }
            Err(e) => {
                eprintln!("mailsync store rebuild: {e}");
                1
            }
        },
    }
}

fn check(dir: &Path) -> u8 {
    match store_check::check_store(dir) {
        Ok(report) => {
            println!("store {}", report.dir.display());
            println!("seal: {}", report.seal);
            for (tree, n) in &report.trees {
                println!("  {tree}: {n} entries");
            }
            if report.ok() {
                println!("ok: no problems found");
                0
            } else {
                println!("{} problem(s):", report.problems.len());
                for p in &report.problems {
                    println!("  - {p}");
                }
                println!("What helps:\n{DAMAGED_HELP}");
                EXIT_STORE_UNUSABLE
            }
        }
        Err(e) => {
            eprintln!("mailsync store check: {e}");
            1
        }
    }
}

/// Moves the store aside, restores every account's mirror from its Maildir and schedules the
/// reconcile with the provider. Returns the lines to print.
fn rebuild(cfg: &Config) -> Result<Vec<String>, String> {
    let dir = &cfg.data_dir;
    let mut lines = Vec::new();
    {
        let _lock = mailsync_actors::store::lock_store_dir(dir).map_err(|e| e.to_string())?;
        let db = dir.join(mailsync_actors::store_open::DB_DIR);
        if db.exists() {
            let secs = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_secs())
                .unwrap_or(0);
            let aside = dir.join(format!("db.damaged-{secs}"));
            std::fs::rename(&db, &aside).map_err(|e| format!("moving {}: {e}", db.display()))?;
            lines.push(format!("moved the old store aside to {}", aside.display()));
            // The bodies it referenced go with it; the rebuilt store reads them from the Maildir.
            let bodies = dir.join(mailsync_actors::store::bodies::BODIES_DIR);
            if bodies.exists() {
                let aside = dir.join(format!("bodies.damaged-{secs}"));
                std::fs::rename(&bodies, &aside)
                    .map_err(|e| format!("moving {}: {e}", bodies.display()))?;
                lines.push(format!("moved its body files aside to {}", aside.display()));
            }
        }
        mailsync_actors::store_open::remove_seal(dir).map_err(|e| e.to_string())?;
    }
    let store = Store::open(dir).map_err(|e| e.to_string())?;
    let now = mailsync_actors::spec::now_ms();
    for account in &cfg.accounts {
        let id = account.id.as_str();
        let mut restored = 0u64;
        let mut skipped = 0u64;
        if let Some(md) = cfg.maildir.as_ref().filter(|m| m.enabled) {
            let path = md.root.join(id);
            if path.join("cur").is_dir() {
                let maildir = Maildir::open(path.clone()).map_err(|e| e.to_string())?;
                let labels = read_labels(maildir.path());
                store_rebuild::restore_labels(&store, id, &labels).map_err(|e| e.to_string())?;
                let index = read_index(maildir.path()).map_err(|e| e.to_string())?;
                let mut batch = Vec::new();
                let entries = std::fs::read_dir(maildir.cur())
                    .map_err(|e| format!("listing {}: {e}", maildir.cur().display()))?;
                for entry in entries {
                    let entry = entry.map_err(|e| e.to_string())?;
                    let Some(mid) = entry.file_name().to_str().and_then(id_from_file_name) else {
                        continue;
                    };
                    let Some(record) = index.get(&mid) else {
                        skipped += 1;
                        continue;
                    };
                    let Ok(raw) = std::fs::read(entry.path()) else {
                        skipped += 1;
                        continue;
                    };
                    if store_rebuild::verify_restored(record, &raw).is_err() {
                        skipped += 1;
                        continue;
                    }
                    batch.push((record.clone(), raw));
                    if batch.len() >= 200 {
                        restored += store_rebuild::restore_messages(&store, id, &batch)
                            .map_err(|e| e.to_string())?;
                        batch.clear();
                    }
                }
                restored += store_rebuild::restore_messages(&store, id, &batch)
                    .map_err(|e| e.to_string())?;
                lines.push(format!(
                    "{id}: restored {restored} messages and {} labels from {} ({skipped} files without usable metadata will be fetched again)",
                    labels.len(),
                    path.display()
                ));
            }
        }
        if restored == 0 {
            lines.push(format!(
                "{id}: nothing in a Maildir; the next start syncs it from the provider"
            ));
        }
        store_rebuild::schedule_reconcile(&store, id, now).map_err(|e| e.to_string())?;
    }
    store.flush().map_err(|e| e.to_string())?;
    lines.push(
        "start the daemon: it reconciles each account with the provider (ids and labels; bodies only for what the Maildir lacked)"
            .into(),
    );
    Ok(lines)
}
