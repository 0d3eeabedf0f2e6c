//! Group commit for [`super::Store::flush_async`]: callers that ask for durability while a
//! flush is running share the next one, and every flush runs as a blocking `sled::Db::flush`
//! on tokio's blocking pool.
//!
//! Why not `sled::Db::flush_async`: sled 0.34 runs it on its own small I/O pool, and the
//! buffer writes a flush waits for are queued on that same pool. With many accounts flushing
//! at once (200 Gmail accounts, issue 13) every pool thread waited for a write queued behind
//! it and none returned: the syncs stopped and shutdown hung.
//!
//! Invariant: a caller returns `Ok` only after a flush that *started after its call* finished,
//! so everything it committed before calling is durable.

use std::sync::atomic::{AtomicU64, Ordering};

use super::StoreError;

/// Tickets handed to callers and the highest ticket a finished flush covers.
#[derive(Default)]
pub(super) struct GroupFlush {
    /// One flush at a time; waiters queue here and may find their ticket already covered.
    running: tokio::sync::Mutex<()>,
    /// Tickets issued so far (a caller's ticket is this value after its increment).
    issued: AtomicU64,
    /// Every ticket up to this one is covered by a finished flush.
    covered: AtomicU64,
}

impl GroupFlush {
    /// Runs `flush` (blocking) unless a flush that started after this call already covered it.
    pub(super) async fn flush<F>(&self, flush: F) -> Result<(), StoreError>
    where
        F: FnOnce() -> Result<(), StoreError> + Send + 'static,
    {
        let ticket = self.issued.fetch_add(1, Ordering::AcqRel) + 1;
        let _running = self.running.lock().await;
        if self.covered.load(Ordering::Acquire) >= ticket {
            return Ok(());
        }
        // Read before the flush starts: every ticket up to here was taken after its holder's
        // writes committed, so the flush below makes all of them durable.
        let covers = self.issued.load(Ordering::Acquire);
        tokio::task::spawn_blocking(flush)
            .await
            .map_err(|e| StoreError::Sled {
                context: "flushing",
                source: sled::Error::Io(std::io::Error::other(format!("flush task ended: {e}"))),
            })??;
        self.covered.fetch_max(covers, Ordering::AcqRel);
        Ok(())
    }
}
