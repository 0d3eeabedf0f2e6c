//! Which message stems have a file in a Maildir's `cur/`, kept in memory so the sink does not
//! probe the file system for every possible flag suffix of a message that has no file yet.
//!
//! Finding a message's file means trying its stem with each of the 64 subsets of the known
//! flags; for a new message all 64 lookups miss, and each miss searches a directory of, say,
//! 100,000 entries. The index is filled by one `readdir` of `cur/` on first use and kept up to
//! date by the sink's own writes and removals. It only answers "certainly absent" or "maybe
//! present": a hash collision, a file a mail reader deleted, or a staged file whose batch failed
//! leaves a stem marked present, which costs the lookups it would have cost anyway. Nothing
//! else creates files with our stems, so "absent" is exact. Memory: one `u64` per file.

use std::collections::HashSet;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::path::Path;
use std::sync::{Arc, Mutex, PoisonError};

/// The stems present in one `cur/`, loaded on first use and shared by a Maildir's clones.
#[derive(Clone, Debug, Default)]
pub(crate) struct StemIndex {
    inner: Arc<Mutex<Option<HashSet<u64>>>>,
}

fn key(stem: &str) -> u64 {
    let mut h = DefaultHasher::new();
    stem.hash(&mut h);
    h.finish()
}

/// The stem of a file name in `cur/` (the part before the `:2,` info).
fn stem_of(name: &str) -> &str {
    name.split_once(":2,").map_or(name, |(stem, _)| stem)
}

impl StemIndex {
    /// Whether `stem` may have a file in `cur` (false: it certainly has none).
    pub(crate) fn may_contain(&self, cur: &Path, stem: &str) -> io::Result<bool> {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if guard.is_none() {
            let mut set = HashSet::new();
            for entry in std::fs::read_dir(cur)? {
                let entry = entry?;
                if let Some(name) = entry.file_name().to_str() {
                    set.insert(key(stem_of(name)));
                }
            }
            *guard = Some(set);
        }
        Ok(guard.as_ref().is_some_and(|set| set.contains(&key(stem))))
    }

    /// `stem` has (or is about to have) a file in `cur/`.
    pub(crate) fn insert(&self, stem: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = guard.as_mut() {
            set.insert(key(stem));
        }
    }

    /// `stem` has no file in `cur/` any more.
    pub(crate) fn remove(&self, stem: &str) {
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        if let Some(set) = guard.as_mut() {
            set.remove(&key(stem));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absent_stems_are_known_without_lookups_and_writes_and_removals_follow() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("a.mailsync:2,S"), b"x").unwrap();
        std::fs::write(dir.path().join("odd-name-without-info"), b"x").unwrap();
        let idx = StemIndex::default();
        assert!(idx.may_contain(dir.path(), "a.mailsync").unwrap());
        assert!(
            idx.may_contain(dir.path(), "odd-name-without-info")
                .unwrap()
        );
        assert!(!idx.may_contain(dir.path(), "b.mailsync").unwrap());
        // Loaded once: a file created behind the index's back is not seen.
        std::fs::write(dir.path().join("c.mailsync:2,"), b"x").unwrap();
        assert!(!idx.may_contain(dir.path(), "c.mailsync").unwrap());
        idx.insert("b.mailsync");
        let clone = idx.clone();
        assert!(clone.may_contain(dir.path(), "b.mailsync").unwrap());
        clone.remove("a.mailsync");
        assert!(!idx.may_contain(dir.path(), "a.mailsync").unwrap());
    }
}
