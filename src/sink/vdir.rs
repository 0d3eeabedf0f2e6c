//! The vdir writer for khal and vdirsyncer users (the calendar twin of the Maildir sink): one
//! folder per calendar under the account's root, holding `displayname` and `color` files and
//! one `<series id>.ics` per event series (master plus exceptions, see [`super::ics`]).
//!
//! Names are stable and reversible: calendar and series ids keep `[A-Za-z0-9._@-]` and escape
//! every other byte as `_XX` (so `_` itself is `_5F`); a leading `.` is escaped too, because
//! vdir readers skip dot files. Every write goes to a dot-named temp file in the same folder,
//! is fsynced, renamed over the target and the folder is fsynced; a removal fsyncs the folder.
//! Once a call returns `Ok`, the change survives a crash. Leftover temp files are removed
//! when a calendar folder is opened.

use std::collections::BTreeMap;
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use mailsync_actors::calendar_model::{CalendarEntry, CalendarEvent};

use super::SinkError;
use super::ics;

/// Suffix of our temp files (which also start with a dot).
const TMP_SUFFIX: &str = ".mailsync-tmp";

/// What a series write did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SeriesOutcome {
    /// The file was written (created or replaced).
    Written,
    /// Nothing of the series is visible any more; the file was removed (or was absent).
    Removed,
}

/// A stable file-system name for a provider id.
pub fn escape_name(id: &str) -> String {
    let mut out = String::with_capacity(id.len());
    for (i, b) in id.bytes().enumerate() {
        let keep = b.is_ascii_alphanumeric() || matches!(b, b'-' | b'@') || (b == b'.' && i > 0);
        if keep {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("_{b:02X}"));
        }
    }
    out
}

/// The inverse of [`escape_name`].
pub fn unescape_name(name: &str) -> Option<String> {
    let bytes = name.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'_' {
            let hex = name.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

fn io_err(op: &'static str, path: &Path) -> impl FnOnce(io::Error) -> SinkError + use<> {
    let path = path.to_path_buf();
    move |source| SinkError::Io { op, path, source }
}

fn fsync_dir(path: &Path) -> Result<(), SinkError> {
    fs::File::open(path)
        .and_then(|d| d.sync_all())
        .map_err(io_err("fsyncing directory", path))
}

/// Writes `bytes` to `dir/name` through a temp file, fsync, rename and a folder fsync.
fn write_atomic(dir: &Path, name: &str, bytes: &[u8]) -> Result<(), SinkError> {
    let target = dir.join(name);
    let tmp = dir.join(format!(".{name}{TMP_SUFFIX}"));
    let mut f = fs::File::create(&tmp).map_err(io_err("creating", &tmp))?;
    f.write_all(bytes).map_err(io_err("writing", &tmp))?;
    f.sync_all().map_err(io_err("fsyncing", &tmp))?;
    drop(f);
    fs::rename(&tmp, &target).map_err(io_err("renaming", &target))?;
    fsync_dir(dir)
}

/// Removes `dir/name` if present (then fsyncs the folder); whether it was there.
fn remove_file(dir: &Path, name: &str) -> Result<bool, SinkError> {
    let path = dir.join(name);
    match fs::remove_file(&path) {
        Ok(()) => {
            fsync_dir(dir)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(io_err("removing", &path)(e)),
    }
}

/// One account's vdir root.
#[derive(Clone, Debug)]
pub struct Vdir {
    root: PathBuf,
}

impl Vdir {
    /// Opens (creating) the root folder.
    pub fn open(root: PathBuf) -> Result<Vdir, SinkError> {
        if !root.is_dir() {
            fs::create_dir_all(&root).map_err(io_err("creating", &root))?;
            if let Some(parent) = root.parent() {
                fsync_dir(parent)?;
            }
        }
        Ok(Vdir { root })
    }

    /// The root folder.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// The folder of a calendar.
    pub fn calendar_dir(&self, calendar_id: &str) -> PathBuf {
        self.root.join(escape_name(calendar_id))
    }

    /// The file of a series.
    pub fn series_path(&self, calendar_id: &str, series_id: &str) -> PathBuf {
        self.calendar_dir(calendar_id)
            .join(format!("{}.ics", escape_name(series_id)))
    }

    /// The calendar's folder, created (and its parent fsynced) if new; old temp files removed.
    fn ensure_calendar(&self, calendar_id: &str) -> Result<PathBuf, SinkError> {
        let dir = self.calendar_dir(calendar_id);
        if !dir.is_dir() {
            fs::create_dir_all(&dir).map_err(io_err("creating", &dir))?;
            fsync_dir(&self.root)?;
            return Ok(dir);
        }
        let entries = fs::read_dir(&dir).map_err(io_err("listing", &dir))?;
        for entry in entries.flatten() {
            let name = entry.file_name();
            let name = name.to_string_lossy();
            if name.starts_with('.') && name.ends_with(TMP_SUFFIX) {
                let _ = fs::remove_file(entry.path());
            }
        }
        Ok(dir)
    }

    /// Writes a calendar's `displayname` and `color` files (only when they changed).
    pub fn write_calendar_meta(&self, entry: &CalendarEntry) -> Result<(), SinkError> {
        let dir = self.ensure_calendar(&entry.id)?;
        let mut files = vec![("displayname", entry.summary.clone())];
        if let Some(c) = &entry.color {
            files.push(("color", c.clone()));
        }
        for (name, text) in files {
            if fs::read_to_string(dir.join(name)).ok().as_deref() == Some(text.as_str()) {
                continue;
            }
            write_atomic(&dir, name, text.as_bytes())?;
        }
        Ok(())
    }

    /// Removes a calendar's folder and everything in it; whether it existed.
    pub fn remove_calendar(&self, calendar_id: &str) -> Result<bool, SinkError> {
        let dir = self.calendar_dir(calendar_id);
        match fs::remove_dir_all(&dir) {
            Ok(()) => {
                fsync_dir(&self.root)?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("removing", &dir)(e)),
        }
    }

    /// Writes the series `series_id` from its stored events (master and exceptions), or
    /// removes its file when nothing of it is visible.
    pub fn write_series(
        &self,
        calendar_id: &str,
        series_id: &str,
        events: &[CalendarEvent],
    ) -> Result<SeriesOutcome, SinkError> {
        let dir = self.ensure_calendar(calendar_id)?;
        let name = format!("{}.ics", escape_name(series_id));
        match ics::render_series(events).map_err(|e| SinkError::Ics(e.to_string()))? {
            Some(text) => {
                if fs::read(dir.join(&name)).ok().as_deref() != Some(text.as_bytes()) {
                    write_atomic(&dir, &name, text.as_bytes())?;
                }
                Ok(SeriesOutcome::Written)
            }
            None => {
                remove_file(&dir, &name)?;
                Ok(SeriesOutcome::Removed)
            }
        }
    }

    /// Removes a series' file; whether it existed.
    pub fn remove_series(&self, calendar_id: &str, series_id: &str) -> Result<bool, SinkError> {
        let dir = self.calendar_dir(calendar_id);
        if !dir.is_dir() {
            return Ok(false);
        }
        remove_file(&dir, &format!("{}.ics", escape_name(series_id)))
    }

    /// Makes a calendar's folder hold exactly the series of `events` (every stored event of
    /// the calendar): writes each series and removes `.ics` files of series no longer there.
    pub fn reconcile_calendar(
        &self,
        entry: &CalendarEntry,
        events: &[CalendarEvent],
    ) -> Result<(), SinkError> {
        self.write_calendar_meta(entry)?;
        let mut series: BTreeMap<&str, Vec<CalendarEvent>> = BTreeMap::new();
        for e in events {
            series.entry(e.series_id()).or_default().push(e.clone());
        }
        let mut keep = std::collections::BTreeSet::new();
        for (id, evs) in &series {
            if self.write_series(&entry.id, id, evs)? == SeriesOutcome::Written {
                keep.insert(format!("{}.ics", escape_name(id)));
            }
        }
        let dir = self.calendar_dir(&entry.id);
        let listing = fs::read_dir(&dir).map_err(io_err("listing", &dir))?;
        for file in listing.flatten() {
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".ics") && !name.starts_with('.') && !keep.contains(&name) {
                remove_file(&dir, &name)?;
            }
        }
        Ok(())
    }
}
