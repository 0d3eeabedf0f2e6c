//! The Maildir's metadata index: what a Maildir file does not carry (thread id, internal date,
//! history id, the full label set, the raw bytes' SHA-256, decoded headers), kept next to the
//! messages so `mailsync store rebuild` can restore the mirror from the Maildir without
//! downloading any body again.
//!
//! File: `<maildir.root>/<account>/.mailsync-index`, one JSON object per line (a mirror
//! record), appended whenever the sink writes or renames a message's file and fsynced with
//! the batch, before the sink's cursor moves. The last line of an id wins; a torn last line
//! is skipped. At every sink start the index is rewritten from the mirror (tmp → fsync →
//! rename), which also compacts it. A file without an index line is simply fetched again by
//! the rebuild's reconcile; an index line whose checksum does not match the file is ignored.

use std::collections::HashMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use mailsync_actors::mirror::{self, MirrorMessage};
use mailsync_actors::model::MessageId;
use mailsync_actors::store::Store;

use super::SinkError;

/// The index file's name inside an account's Maildir.
pub const INDEX_FILE: &str = ".mailsync-index";
/// The account's labels (one JSON array), rewritten when they change.
pub const LABELS_FILE: &str = ".mailsync-labels";

/// Writes the account's mirrored labels next to its Maildir (tmp → fsync → rename).
pub fn write_labels(maildir: &Path, store: &Store, account: &str) -> Result<(), SinkError> {
    let labels = mirror::labels(store, account)?;
    let path = maildir.join(LABELS_FILE);
    let tmp = path.with_extension("tmp");
    let bytes = serde_json::to_vec(&labels).map_err(|e| SinkError::Io {
        op: "encoding",
        path: path.clone(),
        source: io::Error::other(e),
    })?;
    let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("fsyncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &path).map_err(io_err("renaming", &tmp))?;
    Ok(())
}

/// Reads the labels written by [`write_labels`] (none if absent or unreadable).
pub fn read_labels(maildir: &Path) -> Vec<mailsync_actors::model::Label> {
    fs::read(maildir.join(LABELS_FILE))
        .ok()
        .and_then(|b| serde_json::from_slice(&b).ok())
        .unwrap_or_default()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SinkError + use<> {
    let path = path.to_path_buf();
    move |source| SinkError::Io { op, path, source }
}

/// The open index of one account's Maildir.
#[derive(Debug)]
pub struct MaildirIndex {
    path: PathBuf,
    file: Option<File>,
    dirty: bool,
}

impl MaildirIndex {
    /// The index of the Maildir at `maildir` (opened for appending on first use).
    pub fn new(maildir: &Path) -> MaildirIndex {
        MaildirIndex {
            path: maildir.join(INDEX_FILE),
            file: None,
            dirty: false,
        }
    }

    /// Appends one record (not yet durable: see [`MaildirIndex::sync`]).
    pub fn record(&mut self, msg: &MirrorMessage) -> Result<(), SinkError> {
        // The body reference points into this store's body files; a rebuild writes new ones.
        let mut line = serde_json::to_vec(&msg.without_body_ref()).map_err(|e| SinkError::Io {
            op: "encoding an index line for",
            path: self.path.clone(),
            source: io::Error::other(e),
        })?;
        line.push(b'\n');
        if self.file.is_none() {
            let f = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)
                .map_err(io_err("opening", &self.path))?;
            self.file = Some(f);
        }
        if let Some(f) = self.file.as_mut() {
            f.write_all(&line).map_err(io_err("writing", &self.path))?;
        }
        self.dirty = true;
        Ok(())
    }

    /// fsyncs what was appended.
    pub fn sync(&mut self) -> Result<(), SinkError> {
        if let (true, Some(f)) = (self.dirty, self.file.as_ref()) {
            f.sync_data().map_err(io_err("fsyncing", &self.path))?;
        }
        self.dirty = false;
        Ok(())
    }

    /// Rewrites the index from the mirror (compaction), atomically.
    pub fn rewrite(&mut self, store: &Store, account: &str) -> Result<u64, SinkError> {
        self.file = None;
        let tmp = self.path.with_extension("tmp");
        let f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        let mut w = BufWriter::new(f);
        let mut n = 0u64;
        let mut failure = None;
        mirror::for_each_message(store, account, |msg| {
            if failure.is_some() {
                return Ok(());
            }
            let res = serde_json::to_writer(&mut w, &msg)
                .map_err(io::Error::other)
                .and_then(|()| w.write_all(b"\n"));
            match res {
                Ok(()) => n += 1,
                Err(e) => failure = Some(e),
            }
            Ok(())
        })?;
        if let Some(e) = failure {
            return Err(io_err("writing", &tmp)(e));
        }
        let f = w
            .into_inner()
            .map_err(|e| io_err("writing", &tmp)(e.into_error()))?;
        f.sync_all().map_err(io_err("fsyncing", &tmp))?;
        drop(f);
        fs::rename(&tmp, &self.path).map_err(io_err("renaming", &tmp))?;
        self.dirty = false;
        Ok(n)
    }
}

/// Reads an account's index: the last record of every id. Unreadable lines are skipped.
pub fn read_index(maildir: &Path) -> io::Result<HashMap<MessageId, MirrorMessage>> {
    let path = maildir.join(INDEX_FILE);
    let mut out = HashMap::new();
    let f = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(e),
    };
    for line in BufReader::new(f).split(b'\n') {
        let line = line?;
        if let Ok(msg) = serde_json::from_slice::<MirrorMessage>(&line) {
            out.insert(msg.id.clone(), msg.without_body_ref());
        }
    }
    Ok(out)
}
