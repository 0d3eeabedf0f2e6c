//! The free-space floor of the data directory: writing pauses before the file system is full,
//! so sled never runs out of space in the middle of its own bookkeeping (sled 0.34 treats a
//! failed log write as fatal for the open database).
//!
//! [`DiskSpace`] is owned by the [`crate::store::Store`]: every transaction asks it first, and a
//! store below the floor refuses the write with [`crate::store::StoreError::DiskFull`] before
//! anything is written (the transaction rule holds: nothing half-written). The state is sticky:
//! once a check found the disk full, [`DiskSpace::full_reason`] reports it until a later check
//! finds room again, so status can show `degraded (disk full: <path>)` and the accounts know
//! to wait instead of spending their restart budget.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::PoisonError;

/// How much room the data directory's file system must keep free.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct FreeSpaceFloor {
    /// Absolute floor in bytes.
    pub min_free_bytes: u64,
    /// Floor as a percentage of the file system's size.
    pub min_free_percent: f64,
}

impl FreeSpaceFloor {
    /// The daemon's default: the smaller of 500 MB and 1 % of the file system.
    pub const DEFAULT: FreeSpaceFloor = FreeSpaceFloor {
        min_free_bytes: 500 * 1024 * 1024,
        min_free_percent: 1.0,
    };

    /// No floor at all (tests and tools that only read).
    pub const NONE: FreeSpaceFloor = FreeSpaceFloor {
        min_free_bytes: 0,
        min_free_percent: 0.0,
    };

    /// The floor in bytes for a file system of `total` bytes: the smaller of the two limits,
    /// so a huge disk does not hold back 1 % and a small one is not asked for 500 MB.
    pub fn bytes_for(&self, total: u64) -> u64 {
        let pct = (total as f64 * self.min_free_percent.clamp(0.0, 100.0) / 100.0) as u64;
        self.min_free_bytes.min(pct)
    }
}

impl Default for FreeSpaceFloor {
    fn default() -> Self {
        FreeSpaceFloor::DEFAULT
    }
}

/// What one look at the file system found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SpaceReading {
    /// Bytes available to unprivileged writers.
    pub available: u64,
    /// Size of the file system.
    pub total: u64,
    /// The floor in bytes for this file system.
    pub floor: u64,
}

impl SpaceReading {
    /// Whether writing may go on.
    pub fn ok(&self) -> bool {
        self.floor == 0 || self.available > self.floor
    }
}

/// Reads the free space of the file system holding `path`.
pub fn read_space(path: &Path, floor: FreeSpaceFloor) -> std::io::Result<SpaceReading> {
    let stats = fs2::statvfs(path)?;
    let total = stats.total_space();
    Ok(SpaceReading {
        available: stats.available_space(),
        total,
        floor: floor.bytes_for(total),
    })
}

/// Human-readable byte count (`12.3 MB`).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KB", "MB", "GB", "TB"];
    let mut v = n as f64;
    let mut unit = 0;
    while v >= 1024.0 && unit < UNITS.len() - 1 {
        v /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{n} B")
    } else {
        format!("{v:.1} {}", UNITS[unit])
    }
}

/// The data directory's free-space guard (one per store).
#[derive(Debug)]
pub struct DiskSpace {
    path: PathBuf,
    floor: FreeSpaceFloor,
    /// `Some(reason)` while the last check found the disk full.
    full: Mutex<Option<String>>,
    /// Set when sled itself failed to write for lack of space: sled 0.34 keeps that error for
    /// the life of the open database, so only a restart (once there is room) recovers.
    fatal: tokio::sync::watch::Sender<Option<String>>,
}

/// Without a floor, the room a file system needs after a failed write before writing resumes.
const MIN_ROOM_WITHOUT_FLOOR: u64 = 1024 * 1024;

impl DiskSpace {
    /// A guard for the file system of `path`.
    pub fn new(path: PathBuf, floor: FreeSpaceFloor) -> DiskSpace {
        DiskSpace {
            path,
            floor,
            full: Mutex::new(None),
            fatal: tokio::sync::watch::channel(None).0,
        }
    }

    /// The guarded directory.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configured floor.
    pub fn floor(&self) -> FreeSpaceFloor {
        self.floor
    }

    /// Checks the floor now. `Err(reason)` when writing must wait; the state is remembered for
    /// [`DiskSpace::full_reason`]. A file system that cannot be asked counts as fine (the
    /// write itself will report a real error).
    pub fn check(&self) -> Result<(), String> {
        if self.floor == FreeSpaceFloor::NONE {
            // No floor: only a failed write ([`DiskSpace::mark_full`]) pauses, until the file
            // system has room again (sled's fatal state stays: it needs a restart).
            if self.fatal.borrow().is_none() {
                let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
                if let Some(reason) = full.clone() {
                    match read_space(&self.path, self.floor) {
                        Ok(r) if r.available >= MIN_ROOM_WITHOUT_FLOOR => {
                            tracing::info!(path = %self.path.display(), "Disk space is back: writing continues.");
                            *full = None;
                        }
                        _ => return Err(reason),
                    }
                }
            }
            return Ok(());
        }
        let verdict = match read_space(&self.path, self.floor) {
            Ok(r) if !r.ok() => Err(format!(
                "{} has {} free, below the floor of {}",
                self.path.display(),
                human_bytes(r.available),
                human_bytes(r.floor)
            )),
            _ => Ok(()),
        };
        let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
        match &verdict {
            Err(reason) => {
                if full.is_none() {
                    tracing::warn!(path = %self.path.display(), reason = %reason, "Disk full: writing pauses until space returns.");
                }
                *full = Some(reason.clone());
            }
            Ok(()) => {
                if full.take().is_some() {
                    tracing::info!(path = %self.path.display(), "Disk space is back: writing continues.");
                }
            }
        }
        verdict
    }

    /// Records that a write failed for lack of space (ENOSPC, EDQUOT, read-only) although the
    /// floor looked fine.
    pub fn mark_full(&self, reason: String) {
        let mut full = self.full.lock().unwrap_or_else(PoisonError::into_inner);
        if full.is_none() {
            tracing::warn!(path = %self.path.display(), reason = %reason, "Disk full: writing pauses until space returns.");
        }
        *full = Some(reason);
    }

    /// sled failed to write for lack of space; the open database is unusable until restart.
    pub fn mark_fatal(&self, reason: String) {
        self.mark_full(reason.clone());
        self.fatal.send_if_modified(|cur| {
            if cur.is_none() {
                tracing::error!(path = %self.path.display(), reason = %reason, "sled ran out of space while writing; the daemon must restart once there is room.");
                *cur = Some(reason);
                true
            } else {
                false
            }
        });
    }

    /// Resolves once sled failed for lack of space (see [`DiskSpace::mark_fatal`]).
    pub async fn wait_fatal(&self) -> String {
        let mut rx = self.fatal.subscribe();
        loop {
            if let Some(reason) = rx.borrow_and_update().clone() {
                return reason;
            }
            if rx.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    /// Why writing is paused, while it is.
    pub fn full_reason(&self) -> Option<String> {
        self.full
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// The phase an account shows while its writes wait for space: `degraded (disk full: <path>)`.
pub fn degraded_phase(reason: &str) -> String {
    let path = reason.split(" has ").next().unwrap_or(reason);
    let path = path.split(": ").next().unwrap_or(path);
    format!("degraded (disk full: {path})")
}

/// How long an account waits before it looks at the disk again after `attempt` failed looks:
/// 250 ms doubling up to 5 s, so space that returns is noticed within seconds.
pub fn wait_delay(attempt: u32) -> std::time::Duration {
    use crate::backoff::{Jitter, RetryPolicy};
    RetryPolicy::unlimited(
        std::time::Duration::from_millis(250),
        std::time::Duration::from_secs(5),
        Jitter::None,
    )
    .ceiling(attempt.saturating_add(1))
}

/// Whether an I/O error means "no room to write" (ENOSPC, EDQUOT, EROFS).
pub fn is_out_of_space(e: &std::io::Error) -> bool {
    use std::io::ErrorKind;
    matches!(
        e.kind(),
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::ReadOnlyFilesystem
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floor_is_the_smaller_limit() {
        let f = FreeSpaceFloor::DEFAULT;
        assert_eq!(f.bytes_for(10 * 1024 * 1024 * 1024), 107_374_182);
        assert_eq!(
            f.bytes_for(2 * 1024 * 1024 * 1024 * 1024),
            500 * 1024 * 1024
        );
        assert_eq!(FreeSpaceFloor::NONE.bytes_for(1 << 40), 0);
    }

    #[test]
    fn a_floor_above_the_disk_is_full_and_sticky_until_a_passing_check() {
        let dir = tempfile::tempdir().unwrap();
        let huge = FreeSpaceFloor {
            min_free_bytes: u64::MAX,
            min_free_percent: 100.0,
        };
        let d = DiskSpace::new(dir.path().to_path_buf(), huge);
        let err = d.check().unwrap_err();
        assert!(err.contains("below the floor"), "{err}");
        assert!(d.full_reason().is_some());
        let ok = DiskSpace::new(dir.path().to_path_buf(), FreeSpaceFloor::NONE);
        assert!(ok.check().is_ok());
        assert_eq!(human_bytes(1536), "1.5 KB");
    }
}
