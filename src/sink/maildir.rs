//! The Maildir sink: every mirrored message as one file in a Maildir per account under
//! `<maildir.root>/<account>/` (`tmp/`, `new/`, `cur/`, created 0700), readable by notmuch,
//! mutt, aerc and friends.
//!
//! This module owns the file naming, the flag mapping and the write / rename / delete steps.
//!
//! File names: `<id>.mailsync:2,<flags>` in `cur/`, where `<id>` is the message id with every
//! byte outside `[A-Za-z0-9_-]` escaped as `=XX` (ids longer than 200 bytes once escaped become
//! `=H<sha256 hex>`). The part before `:2,` (the *stem*) never changes for a message, so there
//! is exactly one file per message: a rerun rewrites the same name, a label change renames the
//! flag suffix, a deletion removes the file.
//!
//! Flags (sorted, as Maildir requires): `D` = DRAFT, `F` = STARRED, `S` = no UNREAD, `T` =
//! TRASH. `P` and `R` set by a mail reader are kept across our renames.
//!
//! Write protocol (crash safe, idempotent): write `tmp/<stem>.tmp` (truncating any leftover),
//! fsync it, rename it into `cur/`, and fsync `cur/` before the batch is acknowledged.
//!
//! The sink always applies the *current* mirror state of the message an event names, so
//! replays and out-of-date events converge: `message.added` for a message already gone from the
//! mirror writes nothing; its later `message.deleted` removes nothing. On every start it
//! reconciles each configured account's Maildir with the mirror (missing files are written,
//! files of messages no longer mirrored removed), which also repairs a Maildir deleted by hand
//! or history pruned while the sink was disabled.

use std::collections::{HashMap, HashSet};
use std::fs::{self, File};
use std::io::{self, Write};
use std::os::unix::fs::DirBuilderExt;
use std::path::{Path, PathBuf};

use mailsync_actors::feed::FeedEvent;
use mailsync_actors::mirror::{self, Change};
use mailsync_actors::model::{LabelId, MessageId};
use mailsync_actors::store::{Store, decode};
use tokio_util::sync::CancellationToken;

use super::file_sink::{FileSink, FileWriter};
use super::{MAILDIR_SINK, SinkError, maildir_folders};

/// The marker between the escaped id and the info part.
const STEM_SUFFIX: &str = ".mailsync";
/// Longest escaped id kept as is; longer ids are hashed.
const MAX_ESCAPED_ID: usize = 200;
/// Flags the sink derives from labels.
const MANAGED_FLAGS: &str = "DFST";
/// Every flag looked for when finding a message's file (managed ones plus `P`, `R`).
const KNOWN_FLAGS: [char; 6] = ['D', 'F', 'P', 'R', 'S', 'T'];

/// Maildir flags for a label set, sorted: `D` DRAFT, `F` STARRED, `S` not UNREAD, `T` TRASH.
pub fn flags_for_labels(labels: &[LabelId]) -> String {
    let has = |name: &str| labels.iter().any(|l| l.0 == name);
    let mut flags = String::new();
    if has("DRAFT") {
        flags.push('D');
    }
    if has("STARRED") {
        flags.push('F');
    }
    if !has("UNREAD") {
        flags.push('S');
    }
    if has("TRASH") {
        flags.push('T');
    }
    flags
}

/// The stable part of a message's file name: `<escaped id>.mailsync`.
pub fn file_stem(id: &MessageId) -> String {
    let mut out = String::with_capacity(id.0.len());
    for b in id.0.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' || b == b'-' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("={b:02X}"));
        }
    }
    if out.len() > MAX_ESCAPED_ID {
        out = format!("=H{}", mirror::sha256_hex(id.0.as_bytes()));
    }
    out.push_str(STEM_SUFFIX);
    out
}

/// The message id a file name was made from, if it is one of ours and not a hashed id.
pub fn id_from_file_name(name: &str) -> Option<MessageId> {
    let stem = name.split_once(":2,").map_or(name, |(s, _)| s);
    let escaped = stem.strip_suffix(STEM_SUFFIX)?;
    if escaped.starts_with("=H") {
        return None;
    }
    let bytes = escaped.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'=' {
            let hex = escaped.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok().map(MessageId)
}

/// The full file name for a stem and a flag set (sorted and deduplicated here).
pub fn file_name(stem: &str, flags: &str) -> String {
    let mut f: Vec<char> = flags.chars().collect();
    f.sort_unstable();
    f.dedup();
    let flags: String = f.into_iter().collect();
    format!("{stem}:2,{flags}")
}

/// Every file name a message may have in `cur/`: its stem with any subset of `DFPRST`.
fn candidate_names(stem: &str) -> impl Iterator<Item = String> + '_ {
    (0u8..64).map(move |mask| {
        let flags: String = KNOWN_FLAGS
            .iter()
            .enumerate()
            .filter(|(i, _)| mask & (1 << i) != 0)
            .map(|(_, c)| *c)
            .collect();
        format!("{stem}:2,{flags}")
    })
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SinkError + use<> {
    let path = path.to_path_buf();
    move |source| SinkError::Io { op, path, source }
}

fn fsync_dir(path: &Path) -> Result<(), SinkError> {
    File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing directory", path))
}

/// One account's Maildir: `tmp/`, `new/`, `cur/` below `dir`.
#[derive(Clone, Debug)]
pub struct Maildir {
    dir: PathBuf,
    managed: &'static str,
    /// Which stems have a file in `cur/` (shared by clones; see `maildir/stems.rs`).
    stems: stems::StemIndex,
}

/// What [`Maildir::sync_message`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileOutcome {
    /// A new file was written.
    Written,
    /// The existing file was renamed to new flags.
    Renamed,
    /// The file was already right.
    Unchanged,
}

/// What [`Maildir::stage_message`] did.
#[derive(Debug)]
pub enum Staging {
    /// Nothing left to do (the file was already right, or was renamed).
    Done(FileOutcome),
    /// A new file waits in `tmp/` for [`commit_staged`].
    Pending(StagedFile),
}

/// A new message file written to `tmp/`, not yet durable nor visible in `cur/`.
#[derive(Debug)]
pub struct StagedFile {
    file: File,
    tmp: PathBuf,
    target: PathBuf,
}

/// Threads that fsync staged files at once: concurrent fsyncs share the file system's
/// journal commits (ext4, xfs), so a batch costs a few commits instead of one per file.
const FSYNC_THREADS: usize = 8;

/// Staged files a batch keeps open at most before committing them (descriptors stay well
/// under the common soft limit of 1,024).
const MAX_STAGED_OPEN: usize = 128;

/// New files a start-up reconcile stages before committing them.
const RECONCILE_STAGED: usize = 100;

/// Makes staged files durable and moves them into `cur/`: every file is fsynced (several at
/// a time), then each is renamed to its final name. The `cur/` directories still need
/// [`Maildir::sync`] before the batch is acknowledged.
pub fn commit_staged(files: Vec<StagedFile>) -> Result<(), SinkError> {
    if files.len() <= 1 {
        for f in &files {
            f.file.sync_all().map_err(io_err("fsyncing", &f.tmp))?;
        }
    } else {
        let per_thread = files.len().div_ceil(FSYNC_THREADS);
        std::thread::scope(|scope| {
            let handles: Vec<_> = files
                .chunks(per_thread)
                .map(|part| {
                    scope.spawn(move || {
                        for f in part {
                            f.file.sync_all().map_err(io_err("fsyncing", &f.tmp))?;
                        }
                        Ok::<(), SinkError>(())
                    })
                })
                .collect();
            for h in handles {
                h.join()
                    .map_err(|_| SinkError::Join("an fsync thread panicked".into()))??;
            }
            Ok::<(), SinkError>(())
        })?;
    }
    for f in files {
        let StagedFile { file, tmp, target } = f;
        drop(file);
        fs::rename(&tmp, &target).map_err(io_err("renaming", &tmp))?;
    }
    Ok(())
}

impl Maildir {
    /// Creates (if needed) the Maildir at `dir` with `tmp/`, `new/`, `cur/` (mode 0700, parents
    /// fsynced) and removes our leftover temp files.
    pub fn open(dir: PathBuf) -> Result<Maildir, SinkError> {
        let md = Maildir {
            dir,
            managed: MANAGED_FLAGS,
            stems: stems::StemIndex::default(),
        };
        let mut builder = fs::DirBuilder::new();
        builder.recursive(true).mode(0o700);
        let mut created = false;
        for sub in ["tmp", "new", "cur"] {
            let path = md.dir.join(sub);
            if !path.is_dir() {
                builder
                    .create(&path)
                    .map_err(io_err("creating directory", &path))?;
                created = true;
            }
        }
        if created {
            fsync_dir(&md.dir)?;
            if let Some(parent) = md.dir.parent() {
                fsync_dir(parent)?;
            }
        }
        md.clean_tmp()?;
        Ok(md)
    }

    /// The same Maildir with every flag owned by the mirror (IMAP: flags come from the server).
    pub fn managing(mut self, managed: &'static str) -> Maildir {
        self.managed = managed;
        self
    }

    /// The Maildir's directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// The `cur/` directory.
    pub fn cur(&self) -> PathBuf {
        self.dir.join("cur")
    }

    fn clean_tmp(&self) -> Result<(), SinkError> {
        let tmp = self.dir.join("tmp");
        for entry in fs::read_dir(&tmp).map_err(io_err("listing", &tmp))? {
            let entry = entry.map_err(io_err("listing", &tmp))?;
            let name = entry.file_name();
            if name
                .to_str()
                .is_some_and(|n| n.ends_with(&format!("{STEM_SUFFIX}.tmp")))
            {
                let path = entry.path();
                fs::remove_file(&path).map_err(io_err("removing a leftover", &path))?;
            }
        }
        Ok(())
    }

    /// The current file name of a message in `cur/`, if it has one.
    pub fn find(&self, id: &MessageId) -> Result<Option<String>, SinkError> {
        self.find_stem(&file_stem(id), None)
    }

    /// Looks for the stem's file, trying `likely` (a full file name) first: a message whose
    /// file already has the wanted flags costs one lookup instead of up to 64, and a stem the
    /// index knows to be absent costs none.
    fn find_stem(&self, stem: &str, likely: Option<&str>) -> Result<Option<String>, SinkError> {
        let cur = self.cur();
        if !self
            .stems
            .may_contain(&cur, stem)
            .map_err(io_err("listing", &cur))?
        {
            return Ok(None);
        }
        for name in likely
            .map(str::to_string)
            .into_iter()
            .chain(candidate_names(stem))
        {
            match fs::symlink_metadata(cur.join(&name)) {
                Ok(_) => return Ok(Some(name)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("looking for", &cur.join(&name))(e)),
            }
        }
        self.stems.remove(stem);
        Ok(None)
    }

    /// Makes `cur/` hold exactly one file for `id` with `flags` (plus any `P`/`R` a reader set):
    /// renames an existing file, or writes `raw()` through `tmp/`. The directory is not
    /// fsynced here; call [`Maildir::sync`] before acknowledging.
    pub fn sync_message(
        &self,
        id: &MessageId,
        flags: &str,
        raw: impl FnOnce() -> Result<Option<Vec<u8>>, SinkError>,
    ) -> Result<FileOutcome, SinkError> {
        match self.stage_message(id, flags, raw)? {
            Staging::Done(outcome) => Ok(outcome),
            Staging::Pending(file) => {
                commit_staged(vec![file])?;
                Ok(FileOutcome::Written)
            }
        }
    }

    /// [`Maildir::sync_message`] without the cost of a new file: a rename happens at once,
    /// but a new file is only written to `tmp/` and handed back, to be fsynced (together with
    /// others) and moved into `cur/` by [`commit_staged`].
    pub fn stage_message(
        &self,
        id: &MessageId,
        flags: &str,
        raw: impl FnOnce() -> Result<Option<Vec<u8>>, SinkError>,
    ) -> Result<Staging, SinkError> {
        let stem = file_stem(id);
        let cur = self.cur();
        let wanted = file_name(&stem, flags);
        if let Some(existing) = self.find_stem(&stem, Some(&wanted))? {
            let kept: String = existing
                .rsplit_once(":2,")
                .map(|(_, f)| f.chars().filter(|c| !self.managed.contains(*c)).collect())
                .unwrap_or_default();
            let target = file_name(&stem, &format!("{flags}{kept}"));
            if existing == target {
                return Ok(Staging::Done(FileOutcome::Unchanged));
            }
            let from = cur.join(&existing);
            fs::rename(&from, cur.join(&target)).map_err(io_err("renaming", &from))?;
            return Ok(Staging::Done(FileOutcome::Renamed));
        }
        let Some(bytes) = raw()? else {
            return Ok(Staging::Done(FileOutcome::Unchanged));
        };
        let tmp = self.dir.join("tmp").join(format!("{stem}.tmp"));
        let mut f = File::create(&tmp).map_err(io_err("creating", &tmp))?;
        f.write_all(&bytes).map_err(io_err("writing", &tmp))?;
        self.stems.insert(&stem);
        Ok(Staging::Pending(StagedFile {
            file: f,
            tmp,
            target: cur.join(wanted),
        }))
    }

    /// Removes the message's file(s); `true` if one was there.
    pub fn remove_message(&self, id: &MessageId) -> Result<bool, SinkError> {
        let mut removed = false;
        while let Some(name) = self.find(id)? {
            let path = self.cur().join(name);
            match fs::remove_file(&path) {
                Ok(()) => removed = true,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(io_err("removing", &path)(e)),
            }
        }
        Ok(removed)
    }

    /// fsyncs `cur/`: renames and removals done so far survive a crash once this returns.
    pub fn sync(&self) -> Result<(), SinkError> {
        fsync_dir(&self.cur())
    }
}

/// Writes events into the Maildirs under one root.
pub(crate) struct MaildirWriter {
    store: Store,
    root: PathBuf,
    /// Every Maildir the writer has opened, by directory.
    opened: std::collections::HashMap<PathBuf, Maildir>,
    /// Each account's metadata index (`maildir_index.rs`).
    indexes: std::collections::HashMap<String, super::maildir_index::MaildirIndex>,
}

impl MaildirWriter {
    pub(crate) fn new(store: Store, root: PathBuf) -> Self {
        Self {
            store,
            root,
            opened: Default::default(),
            indexes: Default::default(),
        }
    }

    /// Files count against the data directory's free-space floor too (the Maildir lives
    /// there by default): below it the sink waits, so sled keeps its headroom.
    fn space_floor(&self) -> Result<(), SinkError> {
        if self.store.check_space() {
            return Ok(());
        }
        let reason = self.store.disk_full().unwrap_or_default();
        Err(SinkError::Store(
            mailsync_actors::store::StoreError::DiskFull {
                path: self.store.dir().to_path_buf(),
                reason,
            },
        ))
    }

    /// The Maildir at `dir` with `managed` flags. A directory is opened once per writer and
    /// every handle on it (an IMAP INBOX shares the account's directory) is a clone sharing
    /// one stem index, so the index, which answers "absent" without a lookup, sees every file
    /// the writer adds.
    fn open_dir(&mut self, dir: PathBuf, managed: &'static str) -> Result<Maildir, SinkError> {
        if let Some(md) = self.opened.get(&dir) {
            return Ok(md.clone().managing(managed));
        }
        let md = Maildir::open(dir.clone())?;
        self.opened.insert(dir, md.clone());
        Ok(md.managing(managed))
    }

    fn maildir(&mut self, account: &str) -> Result<Maildir, SinkError> {
        if account.is_empty() || account == "." || account == ".." || account.contains('/') {
            return Err(SinkError::BadAccount(account.to_string()));
        }
        self.open_dir(self.root.join(account), MANAGED_FLAGS)
    }

    /// The Maildir of one IMAP folder of an account (opened on first use).
    fn folder_maildir(&mut self, account: &str, folder: &str) -> Result<Maildir, SinkError> {
        let root = self.maildir(account)?;
        self.open_dir(
            maildir_folders::folder_dir(root.path(), folder),
            maildir_folders::IMAP_MANAGED_FLAGS,
        )
    }

    /// The Maildir and flags a mirrored message belongs in (an IMAP folder's, or the account's).
    fn placement(
        &mut self,
        account: &str,
        labels: &[LabelId],
    ) -> Result<(Maildir, String), SinkError> {
        match maildir_folders::imap_folder(labels) {
            Some(folder) => Ok((
                self.folder_maildir(account, folder)?,
                maildir_folders::imap_flags(labels),
            )),
            None => Ok((self.maildir(account)?, flags_for_labels(labels))),
        }
    }

    /// Removes a message's file from the account's Maildir and every folder Maildir.
    fn remove_everywhere(
        &mut self,
        account: &str,
        id: &MessageId,
    ) -> Result<Vec<Maildir>, SinkError> {
        let root = self.maildir(account)?;
        let mut dirs = vec![root.clone()];
        for dir in maildir_folders::existing_folder_dirs(root.path()) {
            dirs.push(self.open_dir(dir, maildir_folders::IMAP_MANAGED_FLAGS)?);
        }
        let mut touched = Vec::new();
        for md in dirs {
            if md.remove_message(id)? {
                touched.push(md);
            }
        }
        Ok(touched)
    }

    /// Brings one mirrored message's file in line with the mirror: renamed at once, or a new
    /// file staged in `tmp/` (pushed to `staged`, committed by the caller).
    fn write_message(
        &mut self,
        account: &str,
        msg: &mirror::MirrorMessage,
        staged: &mut Vec<StagedFile>,
    ) -> Result<Maildir, SinkError> {
        let root = self.maildir(account)?;
        self.indexes
            .entry(account.to_string())
            .or_insert_with(|| super::maildir_index::MaildirIndex::new(root.path()))
            .record(msg)?;
        let (md, flags) = self.placement(account, &msg.label_ids)?;
        let store = &self.store;
        let id = &msg.id;
        if let Staging::Pending(file) =
            md.stage_message(id, &flags, || Ok(mirror::raw_of(store, account, msg)?))?
        {
            staged.push(file);
        }
        Ok(md)
    }

    /// An IMAP folder was renamed: its Maildir moves to the new name (the mirror's folder labels
    /// moved in the same transaction as the event), and the metadata index is rewritten from
    /// the mirror so its label sets follow. Returns the account's Maildir (to fsync).
    fn rename_folder(&mut self, account: &str, from: &str, to: &str) -> Result<Maildir, SinkError> {
        let root = self.maildir(account)?;
        self.opened
            .remove(&maildir_folders::folder_dir(root.path(), from));
        self.opened
            .remove(&maildir_folders::folder_dir(root.path(), to));
        let moved = maildir_folders::rename_folder_dir(root.path(), from, to)
            .map_err(io_err("renaming a folder in", root.path()))?;
        tracing::info!(
            sink = MAILDIR_SINK,
            account,
            from,
            to,
            moved,
            "IMAP folder renamed; its Maildir follows."
        );
        self.indexes
            .entry(account.to_string())
            .or_insert_with(|| super::maildir_index::MaildirIndex::new(root.path()))
            .rewrite(&self.store, account)?;
        Ok(root)
    }

    /// Applies a batch and fsyncs every touched Maildir; returns the last seq.
    ///
    /// New files are staged in `tmp/` and committed together (fsynced several at a time,
    /// then renamed into `cur/`) before the directories are fsynced; an event about a message
    /// whose new file is still staged commits the staged files first, so every event sees
    /// the files of the ones before it.
    pub(crate) fn apply_batch(&mut self, events: &[FeedEvent]) -> Result<u64, SinkError> {
        self.space_floor()?;
        let mut touched: HashMap<PathBuf, Maildir> = HashMap::new();
        let mut accounts: HashSet<String> = HashSet::new();
        let mut staged: Vec<StagedFile> = Vec::new();
        let mut staged_ids: HashSet<(String, MessageId)> = HashSet::new();
        for ev in events {
            let change: Change = match decode(&ev.payload) {
                Ok(c) => c,
                Err(e) => {
                    tracing::warn!(sink = MAILDIR_SINK, seq = ev.seq, error = %e, "Skipping an event whose payload does not decode.");
                    continue;
                }
            };
            if let Change::MessageAdded { id, .. }
            | Change::MessageLabelsChanged { id, .. }
            | Change::MessageFlagsChanged { id, .. }
            | Change::MessageDeleted { id } = &change
                && staged_ids.contains(&(ev.account.clone(), id.clone()))
            {
                commit_staged(std::mem::take(&mut staged))?;
                staged_ids.clear();
            }
            match change {
                Change::MessageAdded { id, .. }
                | Change::MessageLabelsChanged { id, .. }
                | Change::MessageFlagsChanged { id, .. } => {
                    // The current mirror state decides: a message deleted since is skipped.
                    let Some(msg) = mirror::message(&self.store, &ev.account, &id)? else {
                        tracing::debug!(
                            sink = MAILDIR_SINK,
                            seq = ev.seq,
                            "Message no longer mirrored; skipped."
                        );
                        continue;
                    };
                    let before = staged.len();
                    let md = self.write_message(&ev.account, &msg, &mut staged)?;
                    if staged.len() > before {
                        staged_ids.insert((ev.account.clone(), id));
                    }
                    if staged.len() >= MAX_STAGED_OPEN {
                        // Each staged file holds a descriptor until it is committed.
                        commit_staged(std::mem::take(&mut staged))?;
                        staged_ids.clear();
                    }
                    touched.insert(md.path().to_path_buf(), md);
                }
                Change::MessageDeleted { id } => {
                    if mirror::message(&self.store, &ev.account, &id)?.is_some() {
                        // Deleted and added again since: the mirror's copy stays.
                        continue;
                    }
                    for md in self.remove_everywhere(&ev.account, &id)? {
                        touched.insert(md.path().to_path_buf(), md);
                    }
                }
                Change::FolderRenamed { from, to } => {
                    let md = self.rename_folder(&ev.account, &from, &to)?;
                    touched.insert(md.path().to_path_buf(), md);
                }
                Change::LabelCreated { .. }
                | Change::LabelUpdated { .. }
                | Change::LabelDeleted { .. } => {
                    let md = self.maildir(&ev.account)?;
                    super::maildir_index::write_labels(md.path(), &self.store, &ev.account)?;
                    touched.insert(md.path().to_path_buf(), md);
                }
                _ => continue,
            }
            accounts.insert(ev.account.clone());
        }
        commit_staged(staged)?;
        for account in accounts {
            if let Some(index) = self.indexes.get_mut(&account) {
                index.sync()?;
            }
        }
        for md in touched.values() {
            md.sync()?;
        }
        Ok(events.last().map_or(0, |e| e.seq))
    }

    /// Makes an account's Maildir match the mirror: writes missing files, fixes flags, removes
    /// files of messages no longer mirrored. Stops early (Ok) when `cancel` fires.
    pub(crate) fn reconcile(
        &mut self,
        account: &str,
        cancel: &CancellationToken,
    ) -> Result<ReconcileReport, SinkError> {
        self.space_floor()?;
        let md = self.maildir(account)?;
        let mut report = ReconcileReport::default();
        let store = self.store.clone();
        let mut failure = None;
        let mut placed: Vec<Maildir> = vec![md.clone()];
        let mut staged: Vec<StagedFile> = Vec::new();
        let walk = mirror::for_each_message(&store, account, |msg| {
            if cancel.is_cancelled() || failure.is_some() {
                return Ok(());
            }
            let (target, flags) = match self.placement(account, &msg.label_ids) {
                Ok(p) => p,
                Err(e) => {
                    failure = Some(e);
                    return Ok(());
                }
            };
            if !placed.iter().any(|p| p.path() == target.path()) {
                placed.push(target.clone());
            }
            match target.stage_message(&msg.id, &flags, || {
                Ok(mirror::raw_of(&store, account, &msg)?)
            }) {
                Ok(Staging::Pending(file)) => {
                    staged.push(file);
                    report.written += 1;
                    if staged.len() >= RECONCILE_STAGED
                        && let Err(e) = commit_staged(std::mem::take(&mut staged))
                    {
                        failure = Some(e);
                    }
                }
                Ok(Staging::Done(FileOutcome::Renamed)) => report.renamed += 1,
                Ok(Staging::Done(_)) => {}
                Err(e) => failure = Some(e),
            }
            Ok(())
        });
        walk?;
        if failure.is_none() {
            commit_staged(staged)?;
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for dir in maildir_folders::existing_folder_dirs(md.path()) {
            if !placed.iter().any(|p| p.path() == dir) {
                placed.push(self.open_dir(dir, maildir_folders::IMAP_MANAGED_FLAGS)?);
            }
        }
        for target in &placed {
            let cur = target.cur();
            for entry in fs::read_dir(&cur).map_err(io_err("listing", &cur))? {
                if cancel.is_cancelled() {
                    break;
                }
                let entry = entry.map_err(io_err("listing", &cur))?;
                let Some(id) = entry.file_name().to_str().and_then(id_from_file_name) else {
                    continue;
                };
                // A file is stale when its message is gone or lives in another folder now.
                let stale = match mirror::message(&store, account, &id)? {
                    None => true,
                    Some(msg) => {
                        let home = match maildir_folders::imap_folder(&msg.label_ids) {
                            Some(f) => maildir_folders::folder_dir(md.path(), f),
                            None => md.path().to_path_buf(),
                        };
                        home != target.path()
                    }
                };
                if stale {
                    let path = entry.path();
                    match fs::remove_file(&path) {
                        Ok(()) => report.removed += 1,
                        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                        Err(e) => return Err(io_err("removing", &path)(e)),
                    }
                }
            }
            target.sync()?;
        }
        self.indexes
            .entry(account.to_string())
            .or_insert_with(|| super::maildir_index::MaildirIndex::new(md.path()))
            .rewrite(&store, account)?;
        super::maildir_index::write_labels(md.path(), &store, account)?;
        md.sync()?;
        Ok(report)
    }
}

/// What a start-up reconcile changed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// Files written for mirrored messages that had none.
    pub written: u64,
    /// Files renamed to the mirror's flags.
    pub renamed: u64,
    /// Files removed because their message is no longer mirrored.
    pub removed: u64,
}

/// The Maildir sink task: the file-sink driver over [`MaildirWriter`].
pub(crate) type MaildirSink = FileSink<MaildirWriter>;

impl FileWriter for MaildirWriter {
    const NAME: &'static str = MAILDIR_SINK;

    fn new(store: Store, root: PathBuf) -> Self {
        MaildirWriter::new(store, root)
    }

    fn reconcile(
        &mut self,
        account: &str,
        cancel: &CancellationToken,
    ) -> Result<String, SinkError> {
        let r = MaildirWriter::reconcile(self, account, cancel)?;
        Ok(format!(
            "{} written, {} renamed, {} removed",
            r.written, r.renamed, r.removed
        ))
    }

    fn apply_batch(&mut self, events: &[FeedEvent]) -> Result<u64, SinkError> {
        MaildirWriter::apply_batch(self, events)
    }
}

mod stems;
#[cfg(test)]
mod tests;
