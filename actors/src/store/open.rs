//! Opening the sled database safely: what happens between taking the store's lock and handing
//! sled's `Db` to [`crate::store::Store`].
//!
//! sled 0.34 silently drops everything after the first bad byte of its log (a truncated tail or
//! a flipped byte looks like a torn write to it), may panic on some damaged logs (`tried to
//! serialize Uninitialized`) and loops forever on others. So the store guards itself:
//!
//! - **The seal.** When a store closes cleanly (the last handle is dropped after sled closed its
//!   files), [`write_seal`] records every file of `db/` with its size and CRC-32 in
//!   `store.seal`. The next open compares the files with the seal *before sled reads them*: a
//!   shorter file is a lost tail, a different checksum a changed byte — both are reported as
//!   [`StoreError::Damaged`] instead of being "recovered" into silent data loss. The seal is
//!   removed before sled opens the files (sled writes to them from then on), so after a crash
//!   or `kill -9` there is no seal and sled's own recovery decides, as before.
//! - **Unfinished snapshots.** sled writes `snap.<lsn>.generating` and renames it when complete;
//!   a start that ran out of space leaves a 0-byte one that sled would read as its newest
//!   snapshot ("Read corrupted data") on every later start. [`remove_unfinished_snapshots`]
//!   deletes them: a snapshot that was never renamed was never used.
//! - **Contained open.** sled opens on a thread of its own ([`STORE_OPEN_THREAD`]); a panic in
//!   there becomes [`StoreError::Damaged`], and an open that does not finish within
//!   [`OPEN_TIMEOUT`] too (the process is about to exit with that error, so the stuck thread
//!   does not linger). The binary's panic hook stays quiet for this thread.

use std::fs::{self, File};
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::store::StoreError;

/// Name of the thread sled is opened on (the binary's panic hook keeps quiet for it).
pub const STORE_OPEN_THREAD: &str = "mailsync-store-open";
/// The seal file in the store directory.
pub const SEAL_FILE: &str = "store.seal";
/// sled's directory inside the store directory.
pub const DB_DIR: &str = "db";
/// How long an open may take before the store is declared damaged.
pub const OPEN_TIMEOUT: Duration = Duration::from_secs(120);
/// How long the open waits for sled's own file lock once it holds the directory lock.
const SLED_LOCK_WAIT: Duration = Duration::from_secs(5);

const SEAL_MAGIC: &str = "mailsync-store-seal 1";

/// What a person can do about a store that cannot be used (printed by the binary and
/// `store check`).
pub const DAMAGED_HELP: &str = "\
  mailsync store check            show what is wrong (changes nothing)
  mailsync store rebuild          move the store aside and rebuild it from the Maildir and the provider
  mailsync store restore BACKUP   go back to a backup made with `mailsync ctl backup`";

/// One file recorded in the seal.
#[derive(Clone, Debug, PartialEq, Eq)]
struct SealedFile {
    name: String,
    size: u64,
    crc: u32,
}

fn crc_of(path: &Path) -> io::Result<(u64, u32)> {
    let mut f = File::open(path)?;
    let mut hasher = crc32fast::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut size = 0u64;
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        size += n as u64;
        hasher.update(&buf[..n]);
    }
    Ok((size, hasher.finalize()))
}

/// The regular files directly in `db/` that the seal covers (unfinished snapshots excluded).
fn sealable_files(db: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(db)? {
        let entry = entry?;
        if !entry.file_type()?.is_file() {
            continue;
        }
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        if is_unfinished_snapshot(&name) {
            continue;
        }
        names.push(name);
    }
    names.sort();
    Ok(names)
}

fn is_unfinished_snapshot(name: &str) -> bool {
    name.starts_with("snap.") && (name.ends_with(".generating") || name.ends_with(".in___motion"))
}

/// Records the files of a cleanly closed store in `dir/store.seal` (tmp, fsync, rename).
pub fn write_seal(dir: &Path) -> io::Result<()> {
    let db = dir.join(DB_DIR);
    if !db.is_dir() {
        return Ok(());
    }
    let mut text = format!("{SEAL_MAGIC}\n");
    for name in sealable_files(&db)? {
        let (size, crc) = crc_of(&db.join(&name))?;
        text.push_str(&format!("{size} {crc:08x} {name}\n"));
    }
    let tmp = dir.join(format!("{SEAL_FILE}.tmp"));
    let mut f = File::create(&tmp)?;
    f.write_all(text.as_bytes())?;
    f.sync_all()?;
    drop(f);
    fs::rename(&tmp, dir.join(SEAL_FILE))?;
    File::open(dir)?.sync_all()
}

fn parse_seal(text: &str) -> Option<Vec<SealedFile>> {
    let mut lines = text.lines();
    if lines.next()? != SEAL_MAGIC {
        return None;
    }
    let mut out = Vec::new();
    for line in lines {
        let mut parts = line.splitn(3, ' ');
        let size = parts.next()?.parse().ok()?;
        let crc = u32::from_str_radix(parts.next()?, 16).ok()?;
        let name = parts.next()?.to_string();
        out.push(SealedFile { name, size, crc });
    }
    Some(out)
}

/// Compares the files of `dir/db` with the seal of the last clean close. `Ok(None)` when there
/// is no seal (a fresh store, or the last run did not close cleanly); `Ok(Some(n))` when `n`
/// files match it; `Err(what)` names the first difference.
pub fn verify_seal(dir: &Path) -> Result<Option<usize>, String> {
    let text = match fs::read_to_string(dir.join(SEAL_FILE)) {
        Ok(t) => t,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(format!("cannot read {SEAL_FILE}: {e}")),
    };
    let Some(files) = parse_seal(&text) else {
        return Err(format!("{SEAL_FILE} is unreadable"));
    };
    let db = dir.join(DB_DIR);
    for f in &files {
        let path = db.join(&f.name);
        let (size, crc) = match crc_of(&path) {
            Ok(v) => v,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                return Err(format!(
                    "{} is missing (it was there at the last clean shutdown)",
                    path.display()
                ));
            }
            Err(e) => return Err(format!("cannot read {}: {e}", path.display())),
        };
        if size < f.size {
            return Err(format!(
                "{} is {size} bytes but was {} at the last clean shutdown: its tail was lost \
                 (a torn write, or a copy cut short)",
                path.display(),
                f.size
            ));
        }
        if size != f.size || crc != f.crc {
            return Err(format!(
                "{} changed since the last clean shutdown ({size} bytes, checksum {crc:08x}; \
                 expected {} bytes, checksum {:08x}): some bytes were damaged",
                path.display(),
                f.size,
                f.crc
            ));
        }
    }
    Ok(Some(files.len()))
}

/// Removes the seal (sled is about to write to the files it describes).
pub fn remove_seal(dir: &Path) -> io::Result<()> {
    match fs::remove_file(dir.join(SEAL_FILE)) {
        Ok(()) => File::open(dir)?.sync_all(),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Deletes sled's unfinished snapshot files (`snap.*.generating`); returns what was removed.
pub fn remove_unfinished_snapshots(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let db = dir.join(DB_DIR);
    let mut removed = Vec::new();
    let entries = match fs::read_dir(&db) {
        Ok(e) => e,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(removed),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let entry = entry?;
        if entry
            .file_name()
            .to_str()
            .is_some_and(is_unfinished_snapshot)
        {
            let path = entry.path();
            fs::remove_file(&path)?;
            tracing::warn!(file = %path.display(), "Removed an unfinished sled snapshot (left by a start that ran out of space or crashed).");
            removed.push(path);
        }
    }
    Ok(removed)
}

fn panic_text(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}

/// Whether a sled error means the disk has no room (or is read-only).
pub fn sled_out_of_space(e: &sled::Error) -> bool {
    matches!(e, sled::Error::Io(io) if crate::disk_space::is_out_of_space(io))
}

/// Opens sled in `dir/db` on [`STORE_OPEN_THREAD`], containing panics and hangs.
pub fn open_sled_contained(
    dir: &Path,
    timeout: Duration,
    cache_capacity_bytes: u64,
) -> Result<sled::Db, StoreError> {
    let owned = dir.to_path_buf();
    contained(dir, timeout, move || {
        open_sled(&owned, cache_capacity_bytes)
    })
}

/// Runs `f` on [`STORE_OPEN_THREAD`]: a panic or a run longer than `timeout` becomes
/// [`StoreError::Damaged`] (a thread that never finishes is left behind; the caller exits).
fn contained<T: Send + 'static>(
    dir: &Path,
    timeout: Duration,
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(STORE_OPEN_THREAD.into())
        .spawn(move || {
            let res = std::panic::catch_unwind(std::panic::AssertUnwindSafe(f));
            let _ = tx.send(res);
        })
        .map_err(|source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
    match rx.recv_timeout(timeout) {
        Ok(Ok(res)) => res,
        Ok(Err(payload)) => Err(StoreError::Damaged {
            dir: dir.to_path_buf(),
            found: format!(
                "sled failed while reading its log ({})",
                panic_text(payload.as_ref())
            ),
        }),
        Err(_) => Err(StoreError::Damaged {
            dir: dir.to_path_buf(),
            found: format!(
                "reading the database did not finish within {} s (sled loops on some damaged logs)",
                timeout.as_secs()
            ),
        }),
    }
}

/// How often sled's own flusher thread wakes (its default is 500 ms). Every commit point
/// flushes explicitly (`Store::flush_async`, `group_flush.rs`), so this only paces sled's
/// background work: each wake rolls the write buffer, fsyncs, and spends up to half the
/// interval rewriting pages of sparse segments, which sled keeps doing on an idle store
/// (0.6 % of a core at 500 ms with 1,000 accounts idle, `docs/BENCHMARKS.md`).
pub(crate) const BACKGROUND_FLUSH_EVERY_MS: u64 = 2_000;

/// Opens sled in `dir/db`. The caller holds the directory lock, so no other `Store` can own the
/// database: if sled's own flock is still taken, it is a just-dropped `Store` of this process
/// whose sled background threads have not let go of the file yet. Wait for them (bounded).
fn open_sled(dir: &Path, cache_capacity_bytes: u64) -> Result<sled::Db, StoreError> {
    let deadline = Instant::now() + SLED_LOCK_WAIT;
    loop {
        // sled's page cache defaults to 1 GiB; a daemon that runs for months on a desktop must
        // stay small, so cap it (the OS page cache still holds hot data).
        match sled::Config::new()
            .path(dir.join(DB_DIR))
            .cache_capacity(cache_capacity_bytes)
            .flush_every_ms(Some(BACKGROUND_FLUSH_EVERY_MS))
            .open()
        {
            Ok(db) => return Ok(db),
            Err(sled::Error::Io(e))
                if e.to_string().contains("could not acquire lock")
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(sled::Error::Io(e)) if e.to_string().contains("could not acquire lock") => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(e) if sled_out_of_space(&e) => {
                return Err(StoreError::DiskFull {
                    path: dir.to_path_buf(),
                    reason: e.to_string(),
                });
            }
            Err(sled::Error::Corruption { .. }) => {
                return Err(StoreError::Damaged {
                    dir: dir.to_path_buf(),
                    found: "sled found corrupted data in its files".into(),
                });
            }
            Err(source) => {
                return Err(StoreError::Open {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}

/// An error of the first reads after sled opened: corruption sled notices only then (or a value
/// that does not decode) is reported as [`StoreError::Damaged`] naming the store.
pub(crate) fn damage_at_open(dir: &Path, e: StoreError) -> StoreError {
    match e {
        StoreError::Sled {
            context,
            source: sled::Error::Corruption { .. },
        } => StoreError::Damaged {
            dir: dir.to_path_buf(),
            found: format!("sled found corrupted data while {context}"),
        },
        StoreError::Corrupt { context, reason } => StoreError::Damaged {
            dir: dir.to_path_buf(),
            found: format!("a stored value does not decode ({context}: {reason})"),
        },
        other => other,
    }
}

/// Closes a store cleanly: dropped after sled's handles (field order in the store), it writes
/// the seal once sled has closed its files.
#[derive(Debug)]
pub(crate) struct SealOnClose {
    pub(crate) dir: PathBuf,
}

impl Drop for SealOnClose {
    fn drop(&mut self) {
        // Only a database sled has really let go of may be sealed: if another handle still
        // holds sled's file lock, sled may write after us and the seal would lie.
        // sled's flusher thread may drop its handle a moment after ours: wait briefly for it.
        let log = self.dir.join(DB_DIR).join("db");
        let try_lock = || {
            File::open(&log)
                .and_then(|f| fs2::FileExt::try_lock_exclusive(&f).map(|()| f))
                .map(|f| fs2::FileExt::unlock(&f))
                .is_ok()
        };
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(2);
        let mut released = try_lock();
        while !released && std::time::Instant::now() < deadline {
            std::thread::sleep(std::time::Duration::from_millis(20));
            released = try_lock();
        }
        if !released {
            tracing::debug!(dir = %self.dir.display(), "sled is still open elsewhere; not sealing the store.");
            return;
        }
        if let Err(e) = write_seal(&self.dir) {
            tracing::warn!(dir = %self.dir.display(), error = %e, "Could not seal the store; the next start skips the file check.");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::CACHE_CAPACITY_BYTES;
    use crate::store::{Space, Store};

    fn filled(dir: &Path) {
        let s = Store::open(dir).unwrap();
        for i in 0..400u32 {
            s.transaction(|tx| {
                tx.insert(Space::Messages, format!("k{i:05}").as_bytes(), &[7u8; 1500])?;
                Ok(())
            })
            .unwrap();
        }
        s.flush().unwrap();
    }

    #[test]
    fn a_clean_close_seals_and_the_next_open_accepts_it() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        assert!(dir.path().join(SEAL_FILE).exists());
        assert!(verify_seal(dir.path()).unwrap().unwrap() >= 2);
        let s = Store::open(dir.path()).unwrap();
        assert!(!dir.path().join(SEAL_FILE).exists(), "removed while open");
        assert_eq!(s.kv(Space::Messages).len(), 400);
    }

    #[test]
    fn a_truncated_or_changed_file_is_damaged_and_sled_is_not_asked() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        let db = dir.path().join(DB_DIR).join("db");
        let len = fs::metadata(&db).unwrap().len();
        let mut bytes = fs::read(&db).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x40;
        fs::write(&db, &bytes).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged { found, .. } if found.contains("damaged")),
            "{err}"
        );
        bytes[mid] ^= 0x40;
        bytes.truncate((len - 1000) as usize);
        fs::write(&db, &bytes).unwrap();
        let err = Store::open(dir.path()).unwrap_err();
        assert!(
            matches!(&err, StoreError::Damaged { found, .. } if found.contains("tail was lost")),
            "{err}"
        );
        // The seal is still there: the damage is reported again, not forgotten.
        assert!(dir.path().join(SEAL_FILE).exists());
    }

    #[test]
    fn a_store_whose_sled_is_still_open_elsewhere_is_not_sealed() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let tree = store.kv(Space::Messages).clone();
        drop(store);
        assert!(!dir.path().join(SEAL_FILE).exists());
        drop(tree);
    }

    /// A sled log written like a long-running store's (several rounds, a reopen that takes a
    /// snapshot, more writes), then cut at `frac` of its length, without a seal (a crash).
    fn cut_raw_sled(dir: &Path, frac: f64) {
        let db = sled::open(dir.join(DB_DIR)).unwrap();
        for round in 0..3usize {
            for i in 0..2000u32 {
                db.insert(format!("k{i:06}"), vec![(i % 251) as u8; 1500 + round * 10])
                    .unwrap();
            }
            db.flush().unwrap();
        }
        drop(db);
        // sled's flusher thread lets go of the file lock a moment after the drop.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let db = loop {
            match sled::open(dir.join(DB_DIR)) {
                Ok(db) => break db,
                Err(e) if std::time::Instant::now() < deadline => {
                    assert!(e.to_string().contains("could not acquire lock"), "{e}");
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("{e}"),
            }
        };
        for i in 0..500u32 {
            db.insert(format!("z{i:06}"), vec![1u8; 2000]).unwrap();
        }
        db.flush().unwrap();
        drop(db);
        let log = dir.join(DB_DIR).join("db");
        let len = fs::metadata(&log).unwrap().len();
        fs::OpenOptions::new()
            .write(true)
            .open(&log)
            .unwrap()
            .set_len((len as f64 * frac) as u64)
            .unwrap();
    }

    #[test]
    fn a_sled_panic_on_a_cut_log_is_contained_as_damage() {
        // Cuts in the middle make sled 0.34 panic (`tried to serialize Uninitialized`).
        let mut contained_panics = 0;
        for frac in [0.3, 0.5, 0.7] {
            let dir = tempfile::tempdir().unwrap();
            cut_raw_sled(dir.path(), frac);
            match open_sled_contained(dir.path(), Duration::from_secs(30), CACHE_CAPACITY_BYTES) {
                Err(StoreError::Damaged { found, .. })
                    if found.contains("sled failed while reading its log") =>
                {
                    contained_panics += 1;
                }
                Err(StoreError::Damaged { .. }) | Ok(_) => {}
                Err(other) => panic!("{frac}: {other}"),
            }
        }
        assert!(contained_panics > 0, "no cut made sled panic");
    }

    #[test]
    fn an_open_that_does_not_finish_is_damage_after_the_timeout() {
        let dir = tempfile::tempdir().unwrap();
        let t = Instant::now();
        let err = contained(dir.path(), Duration::from_millis(200), || {
            std::thread::sleep(Duration::from_secs(3));
            Ok(())
        })
        .unwrap_err();
        assert!(t.elapsed() < Duration::from_secs(2));
        assert!(
            matches!(&err, StoreError::Damaged { found, .. } if found.contains("did not finish")),
            "{err}"
        );
    }

    #[test]
    fn an_unfinished_snapshot_no_longer_poisons_the_store() {
        let dir = tempfile::tempdir().unwrap();
        filled(dir.path());
        remove_seal(dir.path()).unwrap();
        fs::write(
            dir.path()
                .join(DB_DIR)
                .join("snap.FFFFFFFFFFFFFFFF.generating"),
            b"",
        )
        .unwrap();
        let s = Store::open(dir.path()).unwrap();
        assert_eq!(s.kv(Space::Messages).len(), 400);
    }
}
