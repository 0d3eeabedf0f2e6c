//! Backups of a running store and their restore.
//!
//! **Consistency.** Every multi-tree invariant (a cursor and the work it covers, an event and
//! its change) is written by one [`Store::transaction`]. A backup takes the store's gate
//! exclusively, so it waits for the running transaction to finish and holds back the next
//! one while it copies every tree: the copy is the state between two transactions, which is
//! exactly what a crash at that moment would have left. Writers block for as long as the copy
//! takes (they continue by themselves afterwards).
//!
//! **Format** (one file, written to `PATH.tmp`, fsynced, renamed): `MSBK` + format version,
//! then per tree a name and its key/value pairs, then an end marker, the entry count and the
//! CRC-32 of everything before it. The body files are not copied: the bodies go in as inline
//! `raw` entries (those the `bodies` tree references, and after the `messages` tree those its
//! records reference, which are copied without their refs). A backup cut short or damaged
//! fails its checksum and is refused by [`restore`] before anything is touched.
//!
//! **Restore** (daemon stopped): verify the file, build a fresh sled database next to the
//! store, check its schema version, then swap it in; the previous database is kept as
//! `db.before-restore-<unix time>`.

use std::fs::{self, File};
use std::io::{self, BufReader, BufWriter, Read, Write};
use std::path::{Path, PathBuf};

use crate::store::{
    BodyRef, SCHEMA_VERSION, SCHEMA_VERSION_KEY, Space, Store, StoreError, decode_in,
};
use crate::store_open::{DB_DIR, remove_seal};

const MAGIC: &[u8; 4] = b"MSBK";
const FORMAT: u32 = 1;
const TAG_TREE: u8 = 1;
const TAG_ENTRY: u8 = 2;
const TAG_END: u8 = 0xFF;
/// Longest key or value accepted when reading a backup (sled values are far smaller).
const MAX_ITEM: u32 = 1 << 30;

/// What a backup or restore handled.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BackupReport {
    /// Trees copied.
    pub trees: u64,
    /// Key/value pairs copied.
    pub entries: u64,
    /// Size of the backup file.
    pub bytes: u64,
}

/// Why a backup or restore failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// Reading or writing a file failed.
    #[error("{what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file is not a complete mailsync backup.
    #[error("{path} is not a complete mailsync backup: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

fn io_err(what: &'static str, path: &Path) -> impl FnOnce(io::Error) -> BackupError + use<> {
    let path = path.to_path_buf();
    move |source| BackupError::Io { what, path, source }
}

/// A writer that keeps a CRC-32 of what went through it.
struct CrcWriter<W> {
    inner: W,
    crc: crc32fast::Hasher,
    bytes: u64,
}

impl<W: Write> Write for CrcWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.crc.update(&buf[..n]);
        self.bytes += n as u64;
        Ok(n)
    }
    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn put_bytes(w: &mut impl Write, b: &[u8]) -> io::Result<()> {
    let len = u32::try_from(b.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidData, "item too large"))?;
    w.write_all(&len.to_be_bytes())?;
    w.write_all(b)
}

impl Store {
    /// Writes a consistent backup of the whole store to `path` (see the module doc). Blocking:
    /// call it from a blocking thread, never from inside a transaction.
    pub fn backup_to(&self, path: &Path) -> Result<BackupReport, BackupError> {
        crate::store::not_in_tx("Store::backup_to")?;
        let tmp = path.with_extension("tmp");
        let file = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let mut w = CrcWriter {
            inner: BufWriter::new(file),
            crc: crc32fast::Hasher::new(),
            bytes: 0,
        };
        let mut report = BackupReport::default();
        let write = |w: &mut CrcWriter<BufWriter<File>>, report: &mut BackupReport| {
            w.write_all(MAGIC)?;
            w.write_all(&FORMAT.to_be_bytes())?;
            let gate = self
                .gate()
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let db = self.db();
            for name in db.tree_names() {
                let tree = db
                    .open_tree(&name)
                    .map_err(|e| io::Error::other(e.to_string()))?;
                // Body refs point into files the backup does not copy: the bodies themselves
                // go in, under the inline `raw` tree that every schema-3 store still reads.
                let bodies = name.as_ref() == Space::Bodies.tree_name().as_bytes();
                // Records since schema 6 hold their body refs themselves: they go in without,
                // and their bodies follow in a `raw` section of their own.
                let messages = name.as_ref() == Space::Messages.tree_name().as_bytes();
                let mut referenced = 0u64;
                w.write_all(&[TAG_TREE])?;
                put_bytes(
                    w,
                    if bodies {
                        Space::Raw.tree_name().as_bytes()
                    } else {
                        &name
                    },
                )?;
                report.trees += 1;
                for item in tree.iter() {
                    let (k, v) = item.map_err(|e| io::Error::other(e.to_string()))?;
                    w.write_all(&[TAG_ENTRY])?;
                    put_bytes(w, &k)?;
                    if bodies {
                        let at: BodyRef =
                            decode_in("bodies", &v).map_err(|e| io::Error::other(e.to_string()))?;
                        let body = self
                            .read_body(&at)
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        put_bytes(w, &body)?;
                    } else if let Some((record, _)) = messages
                        .then(|| crate::mirror::split_body_ref(&v))
                        .flatten()
                    {
                        put_bytes(w, &record)?;
                        referenced += 1;
                    } else {
                        put_bytes(w, &v)?;
                    }
                    report.entries += 1;
                }
                if referenced > 0 {
                    w.write_all(&[TAG_TREE])?;
                    put_bytes(w, Space::Raw.tree_name().as_bytes())?;
                    report.trees += 1;
                    for item in tree.iter() {
                        let (k, v) = item.map_err(|e| io::Error::other(e.to_string()))?;
                        let Some(at) = crate::mirror::body_ref_in(&v) else {
                            continue;
                        };
                        let body = self
                            .read_body(&at)
                            .map_err(|e| io::Error::other(e.to_string()))?;
                        w.write_all(&[TAG_ENTRY])?;
                        put_bytes(w, &k)?;
                        put_bytes(w, &body)?;
                        report.entries += 1;
                    }
                }
            }
            drop(gate);
            w.write_all(&[TAG_END])?;
            w.write_all(&report.entries.to_be_bytes())?;
            Ok::<(), io::Error>(())
        };
        if let Err(e) = write(&mut w, &mut report) {
            drop(w);
            let _ = fs::remove_file(&tmp);
            return Err(io_err("writing", &tmp)(e));
        }
        let crc = w.crc.clone().finalize();
        let CrcWriter {
            inner, mut bytes, ..
        } = w;
        let finish = |inner: BufWriter<File>| -> io::Result<()> {
            let mut file = inner.into_inner().map_err(|e| e.into_error())?;
            file.write_all(&crc.to_be_bytes())?;
            file.sync_all()
        };
        if let Err(e) = finish(inner) {
            let _ = fs::remove_file(&tmp);
            return Err(io_err("writing", &tmp)(e));
        }
        bytes += 4;
        fs::rename(&tmp, path).map_err(io_err("renaming", &tmp))?;
        if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
            File::open(parent)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsyncing", parent))?;
        }
        report.bytes = bytes;
        tracing::info!(path = %path.display(), trees = report.trees, entries = report.entries, bytes, "Store backup written.");
        Ok(report)
    }
}

/// One tree of a backup: its name and entries.
type TreeDump = (Vec<u8>, Vec<(Vec<u8>, Vec<u8>)>);

fn invalid(path: &Path, reason: impl Into<String>) -> BackupError {
    BackupError::Invalid {
        path: path.to_path_buf(),
        reason: reason.into(),
    }
}

/// Reads and verifies a whole backup file (checksum, structure).
pub fn read_backup(path: &Path) -> Result<Vec<TreeDump>, BackupError> {
    let mut bytes = Vec::new();
    BufReader::new(File::open(path).map_err(io_err("opening", path))?)
        .read_to_end(&mut bytes)
        .map_err(io_err("reading", path))?;
    if bytes.len() < 4 + 4 + 1 + 8 + 4 || &bytes[..4] != MAGIC {
        return Err(invalid(path, "no backup header, or the file is cut short"));
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    let expected = u32::from_be_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(body) != expected {
        return Err(invalid(
            path,
            "checksum mismatch (the file is cut short or damaged)",
        ));
    }
    let mut r = body;
    let mut take = |n: usize| -> Result<&[u8], BackupError> {
        if r.len() < n {
            return Err(invalid(path, "truncated record"));
        }
        let (a, b) = r.split_at(n);
        r = b;
        Ok(a)
    };
    take(4)?;
    let format = u32::from_be_bytes(take(4)?.try_into().unwrap_or_default());
    if format != FORMAT {
        return Err(invalid(path, format!("unknown backup format {format}")));
    }
    let mut trees: Vec<TreeDump> = Vec::new();
    let mut count = 0u64;
    loop {
        let tag = take(1)?[0];
        match tag {
            TAG_TREE | TAG_ENTRY => {
                let mut item = || -> Result<Vec<u8>, BackupError> {
                    let len = u32::from_be_bytes(take(4)?.try_into().unwrap_or_default());
                    if len > MAX_ITEM {
                        return Err(invalid(path, "item too large"));
                    }
                    Ok(take(len as usize)?.to_vec())
                };
                if tag == TAG_TREE {
                    let name = item()?;
                    trees.push((name, Vec::new()));
                } else {
                    let k = item()?;
                    let v = item()?;
                    let Some(tree) = trees.last_mut() else {
                        return Err(invalid(path, "entry outside a tree"));
                    };
                    tree.1.push((k, v));
                    count += 1;
                }
            }
            TAG_END => {
                let n = u64::from_be_bytes(take(8)?.try_into().unwrap_or_default());
                if n != count {
                    return Err(invalid(path, "entry count mismatch"));
                }
                return Ok(trees);
            }
            _ => return Err(invalid(path, format!("unknown record tag {tag}"))),
        }
    }
}

/// Restores the backup at `backup` into the store directory `dir` (no daemon may be running:
/// the store's lock is taken). Returns what was restored and where the replaced database went.
pub fn restore(dir: &Path, backup: &Path) -> Result<(BackupReport, Option<PathBuf>), BackupError> {
    let trees = read_backup(backup)?;
    fs::create_dir_all(dir).map_err(io_err("creating", dir))?;
    let _lock = crate::store::lock_store_dir(dir)?;
    let staging = dir.join("db.restoring");
    if staging.exists() {
        fs::remove_dir_all(&staging).map_err(io_err("removing", &staging))?;
    }
    let mut report = BackupReport::default();
    {
        let db = sled::Config::new()
            .path(&staging)
            .open()
            .map_err(|e| invalid(&staging, e.to_string()))?;
        for (name, entries) in &trees {
            let tree = db
                .open_tree(name)
                .map_err(|e| invalid(&staging, e.to_string()))?;
            let mut batch = sled::Batch::default();
            for (k, v) in entries {
                batch.insert(k.as_slice(), v.as_slice());
                report.entries += 1;
            }
            tree.apply_batch(batch)
                .map_err(|e| invalid(&staging, e.to_string()))?;
            report.trees += 1;
            if name.as_slice() == Space::Meta.tree_name().as_bytes()
                && let Some((_, v)) = entries.iter().find(|(k, _)| k == SCHEMA_VERSION_KEY)
            {
                let found: u32 = decode_in("meta/schema_version", v)?;
                if found > SCHEMA_VERSION {
                    drop(tree);
                    drop(db);
                    let _ = fs::remove_dir_all(&staging);
                    return Err(StoreError::SchemaTooNew {
                        dir: backup.to_path_buf(),
                        found,
                        supported: SCHEMA_VERSION,
                    }
                    .into());
                }
            }
        }
        db.flush().map_err(|e| invalid(&staging, e.to_string()))?;
    }
    let current = dir.join(DB_DIR);
    let mut moved = None;
    if current.exists() {
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let aside = dir.join(format!("db.before-restore-{secs}"));
        fs::rename(&current, &aside).map_err(io_err("moving aside", &current))?;
        // Its body files go with it: the restored database holds its bodies inline.
        let bodies = dir.join(crate::store::bodies::BODIES_DIR);
        if bodies.exists() {
            let aside = dir.join(format!("bodies.before-restore-{secs}"));
            fs::rename(&bodies, &aside).map_err(io_err("moving aside", &bodies))?;
        }
        moved = Some(aside);
    }
    remove_seal(dir).map_err(io_err("removing the seal in", dir))?;
    fs::rename(&staging, &current).map_err(io_err("renaming", &staging))?;
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing", dir))?;
    report.bytes = fs::metadata(backup).map(|m| m.len()).unwrap_or(0);
    Ok((report, moved))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backup_then_restore_round_trips_and_a_cut_backup_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        store
            .transaction(|tx| {
                tx.insert(Space::Messages, b"a", b"1")?;
                tx.insert(Space::Cursors, b"c", b"2")?;
                tx.put_body(b"a", b"a body in the body files")?;
                tx.insert(Space::Raw, b"old", b"an inline body of schema 2")?;
                Ok(())
            })
            .unwrap();
        let file = dir.path().join("b.msbk");
        let rep = store.backup_to(&file).unwrap();
        assert!(rep.entries >= 3, "{rep:?}");
        store
            .transaction(|tx| tx.insert(Space::Messages, b"later", b"x"))
            .unwrap();
        drop(store);
        let (_, moved) = restore(dir.path(), &file).unwrap();
        assert!(moved.is_some());
        let store = Store::open(dir.path()).unwrap();
        assert_eq!(
            store.kv(Space::Messages).get(b"a").unwrap().as_deref(),
            Some(&b"1"[..])
        );
        assert!(store.kv(Space::Messages).get(b"later").unwrap().is_none());
        // Both kinds of body come back (as inline values: the backup carries the bytes).
        assert_eq!(
            store.body(b"a").unwrap().as_deref(),
            Some(&b"a body in the body files"[..])
        );
        assert_eq!(
            store.body(b"old").unwrap().as_deref(),
            Some(&b"an inline body of schema 2"[..])
        );
        drop(store);
        let bytes = fs::read(&file).unwrap();
        let cut = dir.path().join("cut.msbk");
        fs::write(&cut, &bytes[..bytes.len() - 10]).unwrap();
        let err = restore(dir.path(), &cut).unwrap_err();
        assert!(matches!(err, BackupError::Invalid { .. }), "{err}");
    }
}
