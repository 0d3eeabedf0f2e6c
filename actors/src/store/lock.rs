//! The store directory's lock file (`mailsync.lock`): one daemon or offline tool at a time.

use std::fs::File;
use std::path::Path;
use std::time::{Duration, Instant};

use super::{LOCK_FILE, StoreError};

/// How long [`Store::open`] waits for the directory lock before reporting
/// [`StoreError::Locked`]. Short: it only bridges a holder that is on its way out (a previous
/// daemon still exiting, or a child process spawned concurrently that briefly inherited the
/// lock descriptor between fork and exec).
const DIR_LOCK_WAIT: Duration = Duration::from_secs(1);

/// Takes the store directory's lock for an offline tool (restore, rebuild, check): the same
/// lock a running daemon holds, released when the returned file is dropped.
pub fn lock_store_dir(dir: &Path) -> Result<File, StoreError> {
    let lock = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(dir.join(LOCK_FILE))
        .map_err(|source| StoreError::Io {
            dir: dir.to_path_buf(),
            source,
        })?;
    lock_dir(&lock, dir)?;
    Ok(lock)
}

/// Takes the exclusive lock on `dir/mailsync.lock` (flock: conflicts across processes and
/// between two opens in one process; the kernel drops it when the holder dies, even by kill -9).
pub(super) fn lock_dir(lock: &File, dir: &Path) -> Result<(), StoreError> {
    let deadline = Instant::now() + DIR_LOCK_WAIT;
    loop {
        match lock.try_lock() {
            Ok(()) => return Ok(()),
            Err(std::fs::TryLockError::WouldBlock) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(10));
            }
            Err(std::fs::TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    dir: dir.to_path_buf(),
                });
            }
            Err(std::fs::TryLockError::Error(source)) => {
                return Err(StoreError::Io {
                    dir: dir.to_path_buf(),
                    source,
                });
            }
        }
    }
}
