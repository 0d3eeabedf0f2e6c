//! The gap recovery's listings on disk, outside sled: an append-only file of what the id and
//! per-label listings returned, sorted once (an external merge sort in bounded memory) into a
//! file of listed ids in byte order with their labels, which the reconcile then merges with
//! the mirror's own id order.
//!
//! Files live in `<store>/gap/<hex account>/`: `listed` (appended, one page at a time), `sorted`
//! (written whole after the last listing) and `sort/` (the sort's segments). The account record
//! is the commit point: each page is appended and synced *before* the transaction that records
//! the file's new length, and a step always truncates the file to the recorded length first,
//! so a page written by a step that crashed before its commit is dropped and listed again.
//! A file shorter than its recorded length, or one that does not decode, is reported as
//! [`ScratchError::Lost`]: the recovery starts over (it costs quota, never data).

use crate::model::LabelId;
use extsort::{ExternalSorter, Sortable};
use std::fs::{File, OpenOptions};
use std::io::{self, BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

/// Listing entries the sort holds in memory at once (each an id and at most one label).
pub const SORT_SEGMENT: usize = 32_768;

/// Why the scratch files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ScratchError {
    /// Reading or writing a scratch file failed.
    #[error("gap scratch file {path}: {context}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What was being done.
        context: &'static str,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// A file is missing, shorter than recorded or does not decode: the listing is gone.
    #[error("gap scratch file {path} is lost or damaged: {reason}")]
    Lost {
        /// The file.
        path: PathBuf,
        /// What was wrong.
        reason: String,
    },
}

/// One thing a listing returned: an id (`label: None`, from the id listing) or an id under a
/// label. Ordered by id bytes, then the id listing's entry first, then labels.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord)]
pub struct ListedEntry {
    /// The message id's bytes.
    pub id: Vec<u8>,
    /// The label it was listed under (`None`: the id listing).
    pub label: Option<Vec<u8>>,
}

impl ListedEntry {
    /// An id from the id listing.
    pub fn id(id: &str) -> Self {
        ListedEntry {
            id: id.as_bytes().to_vec(),
            label: None,
        }
    }

    /// An id from the listing of `label`.
    pub fn labelled(id: &str, label: &str) -> Self {
        ListedEntry {
            id: id.as_bytes().to_vec(),
            label: Some(label.as_bytes().to_vec()),
        }
    }
}

fn write_bytes<W: Write>(w: &mut W, b: &[u8]) -> io::Result<()> {
    let len = u32::try_from(b.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "a listed value over 4 GiB"))?;
    w.write_all(&len.to_le_bytes())?;
    w.write_all(b)
}

fn read_bytes<R: Read>(r: &mut R) -> io::Result<Vec<u8>> {
    let mut len = [0u8; 4];
    r.read_exact(&mut len)?;
    let len = u32::from_le_bytes(len) as usize;
    if len > MAX_VALUE {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("a listed value of {len} bytes"),
        ));
    }
    let mut v = vec![0u8; len];
    r.read_exact(&mut v)?;
    Ok(v)
}

/// Ids and label ids are short; a longer length is damage, not something to allocate.
const MAX_VALUE: usize = 64 * 1024;

impl Sortable for ListedEntry {
    fn encode<W: Write>(&self, w: &mut W) -> io::Result<()> {
        match &self.label {
            None => w.write_all(&[0])?,
            Some(_) => w.write_all(&[1])?,
        }
        write_bytes(w, &self.id)?;
        if let Some(l) = &self.label {
            write_bytes(w, l)?;
        }
        Ok(())
    }

    fn decode<R: Read>(r: &mut R) -> io::Result<Self> {
        let mut tag = [0u8; 1];
        r.read_exact(&mut tag)?;
        let id = read_bytes(r)?;
        let label = match tag[0] {
            0 => None,
            1 => Some(read_bytes(r)?),
            t => {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("entry tag {t}"),
                ));
            }
        };
        Ok(ListedEntry { id, label })
    }
}

/// One id of the sorted file: listed by the id listing, with every label it was listed under.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ListedId {
    /// The message id.
    pub id: String,
    /// Its labels, sorted and without repeats.
    pub labels: Vec<LabelId>,
}

/// What sorting the listing found.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SortSummary {
    /// Entries read from the listing file.
    pub entries: u64,
    /// Distinct ids the id listing returned (records in the sorted file).
    pub ids: u64,
    /// The most entries the sort held in memory at once.
    pub held: u64,
    /// Sorted segments the sort wrote to disk (none when the listing fit in one).
    pub segments: u64,
}

/// The scratch directory of one account's gap recovery.
pub struct GapScratch {
    dir: PathBuf,
}

impl GapScratch {
    /// The scratch of `account` in the store directory `store_dir`.
    pub fn new(store_dir: &Path, account: &str) -> Self {
        GapScratch {
            dir: store_dir.join("gap").join(hex::encode(account.as_bytes())),
        }
    }

    fn listed_path(&self) -> PathBuf {
        self.dir.join("listed")
    }

    fn sorted_path(&self) -> PathBuf {
        self.dir.join("sorted")
    }

    fn io(&self, path: PathBuf, context: &'static str) -> impl FnOnce(io::Error) -> ScratchError {
        move |source| ScratchError::Io {
            path,
            context,
            source,
        }
    }

    /// Removes every scratch file (nothing there is fine).
    pub fn remove(&self) -> Result<(), ScratchError> {
        match std::fs::remove_dir_all(&self.dir) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => {
                Err(self.io(self.dir.clone(), "removing")(e))
            }
            _ => Ok(()),
        }
    }

    /// Appends `entries` after the first `committed` bytes of the listing (anything after them
    /// is an uncommitted page and is dropped), syncs, and returns the file's new length: the
    /// value to commit.
    pub fn append(
        &self,
        committed: u64,
        entries: impl IntoIterator<Item = ListedEntry>,
    ) -> Result<u64, ScratchError> {
        let path = self.listed_path();
        if committed == 0 && !self.dir.exists() {
            std::fs::create_dir_all(&self.dir).map_err(self.io(self.dir.clone(), "creating"))?;
            if let Some(parent) = self.dir.parent() {
                sync_dir(parent).map_err(self.io(parent.to_path_buf(), "syncing"))?;
            }
        }
        let mut file = self.open_recorded(
            &path,
            OpenOptions::new()
                .create(committed == 0)
                .read(true)
                .write(true)
                .truncate(false),
            committed,
        )?;
        file.set_len(committed)
            .map_err(self.io(path.clone(), "truncating"))?;
        file.seek(SeekFrom::Start(committed))
            .map_err(self.io(path.clone(), "seeking"))?;
        let mut w = BufWriter::new(&mut file);
        for e in entries {
            e.encode(&mut w).map_err(self.io(path.clone(), "writing"))?;
        }
        w.flush().map_err(self.io(path.clone(), "writing"))?;
        drop(w);
        if committed == 0 {
            sync_dir(&self.dir).map_err(self.io(self.dir.clone(), "syncing"))?;
        }
        file.sync_data().map_err(self.io(path.clone(), "syncing"))?;
        file.stream_position().map_err(self.io(path, "seeking"))
    }

    /// Opens `path`; a file that is missing or shorter than the `recorded` bytes a committed
    /// step relies on is lost.
    fn open_recorded(
        &self,
        path: &Path,
        options: &OpenOptions,
        recorded: u64,
    ) -> Result<File, ScratchError> {
        let file = options.open(path).map_err(|e| {
            if e.kind() == io::ErrorKind::NotFound {
                ScratchError::Lost {
                    path: path.to_path_buf(),
                    reason: "missing".into(),
                }
            } else {
                self.io(path.to_path_buf(), "opening")(e)
            }
        })?;
        let len = file
            .metadata()
            .map_err(self.io(path.to_path_buf(), "reading the length"))?
            .len();
        if len < recorded {
            return Err(ScratchError::Lost {
                path: path.to_path_buf(),
                reason: format!("{len} bytes, {recorded} recorded"),
            });
        }
        Ok(file)
    }

    /// Sorts the first `committed` bytes of the listing into the sorted file, holding at most
    /// `segment` entries in memory, and syncs it.
    pub fn sort(&self, committed: u64, segment: usize) -> Result<SortSummary, ScratchError> {
        let listed = self.listed_path();
        let file = if committed == 0 {
            None
        } else {
            Some(self.open_recorded(&listed, OpenOptions::new().read(true), committed)?)
        };
        std::fs::create_dir_all(&self.dir).map_err(self.io(self.dir.clone(), "creating"))?;
        let sort_dir = self.dir.join("sort");
        // Segments of an earlier, interrupted sort.
        let _ = std::fs::remove_dir_all(&sort_dir);
        std::fs::create_dir_all(&sort_dir).map_err(self.io(sort_dir.clone(), "creating"))?;
        let mut sorter = ExternalSorter::new()
            .with_segment_size(segment.max(1))
            .with_sort_dir(sort_dir.clone())
            .pushed();
        let mut summary = SortSummary::default();
        if let Some(f) = file {
            let mut r = BufReader::new(f.take(committed));
            loop {
                // A clean end falls between entries; the recorded length is whole entries.
                let mut probe = [0u8; 1];
                match r.read(&mut probe) {
                    Ok(0) => break,
                    Ok(_) => {}
                    Err(e) => return Err(self.io(listed, "reading")(e)),
                }
                let entry = ListedEntry::decode(&mut probe.chain(&mut r)).map_err(|e| {
                    ScratchError::Lost {
                        path: listed.clone(),
                        reason: format!("entry {}: {e}", summary.entries),
                    }
                })?;
                summary.entries += 1;
                sorter
                    .push(entry)
                    .map_err(self.io(sort_dir.clone(), "writing a sort segment"))?;
            }
        }
        summary.held = summary.entries.min(segment as u64);
        let sorted = sorter
            .done()
            .map_err(self.io(sort_dir.clone(), "reading the sort segments"))?;
        summary.segments = sorted.disk_segment_count() as u64;
        let path = self.sorted_path();
        let out = File::create(&path).map_err(self.io(path.clone(), "creating"))?;
        let mut w = BufWriter::new(out);
        let mut current: Option<(Vec<u8>, bool, Vec<Vec<u8>>)> = None;
        for entry in sorted {
            let entry = entry.map_err(self.io(sort_dir.clone(), "reading a sort segment"))?;
            match &mut current {
                Some((id, listed, labels)) if *id == entry.id => match entry.label {
                    None => *listed = true,
                    Some(l) => {
                        if labels.last() != Some(&l) {
                            labels.push(l)
                        }
                    }
                },
                _ => {
                    if let Some(done) = current.take() {
                        summary.ids += write_grouped(&mut w, done)
                            .map_err(self.io(path.clone(), "writing"))?;
                    }
                    let (listed, labels) = match entry.label {
                        None => (true, Vec::new()),
                        Some(l) => (false, vec![l]),
                    };
                    current = Some((entry.id, listed, labels));
                }
            }
        }
        if let Some(done) = current.take() {
            summary.ids += write_grouped(&mut w, done).map_err(self.io(path.clone(), "writing"))?;
        }
        let out = w
            .into_inner()
            .map_err(|e| self.io(path.clone(), "writing")(e.into_error()))?;
        out.sync_data().map_err(self.io(path, "syncing"))?;
        sync_dir(&self.dir).map_err(self.io(self.dir.clone(), "syncing"))?;
        let _ = std::fs::remove_dir_all(&sort_dir);
        Ok(summary)
    }

    /// A reader of the sorted file from byte `offset` (a [`SortedReader::position`]).
    pub fn sorted_from(&self, offset: u64) -> Result<SortedReader, ScratchError> {
        let path = self.sorted_path();
        let mut f = self.open_recorded(&path, OpenOptions::new().read(true), offset)?;
        let len = f
            .metadata()
            .map_err(self.io(path.clone(), "reading the length"))?
            .len();
        f.seek(SeekFrom::Start(offset))
            .map_err(self.io(path.clone(), "seeking"))?;
        Ok(SortedReader {
            reader: BufReader::new(f),
            path,
            pos: offset,
            len,
            peeked: None,
        })
    }
}

/// Writes one id's record if the id listing returned it (an id only a label listing saw is
/// not in the mailbox the recovery verifies); returns how many records it wrote.
fn write_grouped<W: Write>(
    w: &mut W,
    (id, listed, labels): (Vec<u8>, bool, Vec<Vec<u8>>),
) -> io::Result<u64> {
    if !listed {
        return Ok(0);
    }
    write_bytes(w, &id)?;
    let n = u32::try_from(labels.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "too many labels"))?;
    w.write_all(&n.to_le_bytes())?;
    for l in &labels {
        write_bytes(w, l)?;
    }
    Ok(1)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Reads the sorted file record by record, in id byte order.
pub struct SortedReader {
    reader: BufReader<File>,
    path: PathBuf,
    pos: u64,
    len: u64,
    peeked: Option<(ListedId, u64)>,
}

impl SortedReader {
    /// The next record, without consuming it (`None` at the end).
    pub fn peek(&mut self) -> Result<Option<&ListedId>, ScratchError> {
        if self.peeked.is_none() && self.pos < self.len {
            let mut counted = CountingReader {
                inner: &mut self.reader,
                read: 0,
            };
            let record = read_grouped(&mut counted).map_err(|e| ScratchError::Lost {
                path: self.path.clone(),
                reason: format!("record at byte {}: {e}", self.pos),
            })?;
            let read = counted.read;
            self.peeked = Some((record, read));
        }
        Ok(self.peeked.as_ref().map(|(r, _)| r))
    }

    /// Consumes the record [`Self::peek`] returned, and returns it.
    pub fn advance(&mut self) -> Option<ListedId> {
        let (record, read) = self.peeked.take()?;
        self.pos += read;
        Some(record)
    }

    /// The byte offset of the first record not consumed: where a later reader starts.
    pub fn position(&self) -> u64 {
        self.pos
    }
}

fn read_grouped<R: Read>(r: &mut R) -> io::Result<ListedId> {
    let id = utf8(read_bytes(r)?)?;
    let mut n = [0u8; 4];
    r.read_exact(&mut n)?;
    let n = u32::from_le_bytes(n) as usize;
    let mut labels = Vec::with_capacity(n.min(64));
    for _ in 0..n {
        labels.push(LabelId(utf8(read_bytes(r)?)?));
    }
    Ok(ListedId { id, labels })
}

fn utf8(b: Vec<u8>) -> io::Result<String> {
    String::from_utf8(b).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

struct CountingReader<'a, R> {
    inner: &'a mut R,
    read: u64,
}

impl<R: Read> Read for CountingReader<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        Ok(n)
    }
}

#[cfg(test)]
#[path = "gap_listing_tests.rs"]
mod tests;
