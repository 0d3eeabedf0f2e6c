//! The connection pool of one IMAP account (the [`ImapPort`] the source uses): at most `size`
//! connections, handed out fairly (a FIFO semaphore), idle ones reused while fresh (a
//! connection idle for more than 5 minutes, e.g. across a suspend, is closed instead of
//! trusted), broken ones discarded.
//!
//! A circuit breaker guards the server: after a failed connect the next attempt waits a full-
//! jitter delay from an exponential series (1 s, 2 s, 4 s … capped at 30 s), never longer than
//! the run of failures has lasted, so a server back after a short restart is dialled again
//! within about as long as it was gone; while the circuit is open every checkout fails at once
//! with the last error instead of dialling, so a dead server or a wrong password is not
//! hammered by every folder, child and IDLE task.

use crate::imap::conn::Conn;
use crate::imap::dial::{ConnSettings, connect};
use mailsync_actors::backoff::{Jitter, RetryPolicy};
use mailsync_actors::imap::port::{
    Capabilities, FetchedBody, FetchedHeader, FolderInfo, IdleOutcome, ImapError, ImapErrorClass,
    ImapFuture, ImapPort, ImapSession, MailboxStatus, MessageMeta, QresyncParams, Selected,
};
use rand::Rng;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// Idle connections older than this are closed rather than reused.
const MAX_IDLE: Duration = Duration::from_secs(300);
/// Cap of the reconnect delay.
const BACKOFF_CAP: Duration = Duration::from_secs(30);

#[derive(Debug, Default)]
struct Breaker {
    failures: u32,
    /// When the current run of failed connects began.
    since: Option<Instant>,
    open_until: Option<Instant>,
    last_error: Option<ImapError>,
}

struct Inner {
    settings: ConnSettings,
    size: usize,
    slots: Arc<Semaphore>,
    idle: Mutex<Vec<(Conn, Instant)>>,
    breaker: Mutex<Breaker>,
    open: AtomicUsize,
    connects: AtomicUsize,
}

/// The pool of one account.
#[derive(Clone)]
pub struct Pool {
    inner: Arc<Inner>,
}

/// The delay after `failures` consecutive failed connects over an `outage` (since the first of
/// them): full jitter below 1 s · 2^(n-1), capped at 30 s and at the outage's length.
pub fn reconnect_delay(failures: u32, outage: Duration, rng: &mut impl Rng) -> Duration {
    RetryPolicy::unlimited(Duration::from_secs(1), BACKOFF_CAP, Jitter::Full)
        .delay_in_outage(failures, outage, rng)
}

impl Pool {
    /// A pool of `size` (≥ 1) connections with `settings`.
    pub fn new(settings: ConnSettings, size: usize) -> Pool {
        let size = size.max(1);
        Pool {
            inner: Arc::new(Inner {
                settings,
                size,
                slots: Arc::new(Semaphore::new(size)),
                idle: Mutex::new(Vec::new()),
                breaker: Mutex::new(Breaker::default()),
                open: AtomicUsize::new(0),
                connects: AtomicUsize::new(0),
            }),
        }
    }

    /// Connection attempts so far (for tests of the retry policy).
    pub fn connect_attempts(&self) -> usize {
        self.inner.connects.load(Ordering::Relaxed)
    }

    async fn checkout(&self) -> Result<PooledSession, ImapError> {
        let permit = self
            .inner
            .slots
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| ImapError::new(ImapErrorClass::Network, "the pool is closed"))?;
        let reused = {
            let mut idle = self
                .inner
                .idle
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            let mut found = None;
            while let Some((conn, since)) = idle.pop() {
                if since.elapsed() <= MAX_IDLE && !conn.is_broken() {
                    found = Some(conn);
                    break;
                }
                self.inner.open.fetch_sub(1, Ordering::Relaxed);
            }
            found
        };
        if let Some(conn) = reused {
            return Ok(PooledSession {
                conn: Some(conn),
                pool: self.inner.clone(),
                _permit: permit,
            });
        }
        {
            let b = self
                .inner
                .breaker
                .lock()
                .unwrap_or_else(PoisonError::into_inner);
            if let (Some(until), Some(last)) = (b.open_until, &b.last_error)
                && Instant::now() < until
            {
                let wait = until.saturating_duration_since(Instant::now());
                return Err(ImapError::new(
                    last.class,
                    format!(
                        "{} (not retrying for {} ms)",
                        last.message,
                        wait.as_millis()
                    ),
                ));
            }
        }
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        match connect(&self.inner.settings).await {
            Ok(conn) => {
                let mut b = self
                    .inner
                    .breaker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                *b = Breaker::default();
                self.inner.open.fetch_add(1, Ordering::Relaxed);
                Ok(PooledSession {
                    conn: Some(conn),
                    pool: self.inner.clone(),
                    _permit: permit,
                })
            }
            Err(e) => {
                let mut b = self
                    .inner
                    .breaker
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner);
                b.failures += 1;
                let since = *b.since.get_or_insert_with(Instant::now);
                let delay = reconnect_delay(b.failures, since.elapsed(), &mut rand::rng());
                b.open_until = Some(Instant::now() + delay);
                b.last_error = Some(e.clone());
                tracing::warn!(host = %self.inner.settings.host, error = %e, failures = b.failures, retry_ms = delay.as_millis() as u64, "IMAP connect failed.");
                Err(e)
            }
        }
    }
}

impl ImapPort for Pool {
    fn session(&self) -> ImapFuture<'_, Box<dyn ImapSession>> {
        Box::pin(async move {
            let s = self.checkout().await?;
            Ok(Box::new(s) as Box<dyn ImapSession>)
        })
    }

    fn pool_size(&self) -> usize {
        self.inner.size
    }

    fn reconnect(&self) -> ImapFuture<'_, ()> {
        Box::pin(async move {
            if let crate::imap::auth::Credential::OAuth(tokens) = &self.inner.settings.credential {
                tokens.reconnect().await.map_err(|e| {
                    ImapError::new(ImapErrorClass::Auth, format!("OAuth credential: {e}"))
                })?;
            }
            *self
                .inner
                .breaker
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Breaker::default();
            Ok(())
        })
    }

    fn health(&self) -> String {
        let open = self.inner.open.load(Ordering::Relaxed);
        let idle = self
            .inner
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .len();
        let b = self
            .inner
            .breaker
            .lock()
            .unwrap_or_else(PoisonError::into_inner);
        let mut s = format!("{open} open, {idle} idle, pool {}", self.inner.size);
        if let (Some(until), Some(e)) = (b.open_until, &b.last_error)
            && Instant::now() < until
        {
            s.push_str(&format!(
                ", circuit open after {} failure(s): {}",
                b.failures, e
            ));
        }
        s
    }
}

/// A connection checked out of the pool; dropping it gives it back unless it broke.
pub struct PooledSession {
    conn: Option<Conn>,
    pool: Arc<Inner>,
    _permit: OwnedSemaphorePermit,
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        let Some(conn) = self.conn.take() else {
            return;
        };
        if conn.is_broken() {
            self.pool.open.fetch_sub(1, Ordering::Relaxed);
            return;
        }
        self.pool
            .idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push((conn, Instant::now()));
    }
}

impl PooledSession {
    fn conn(&mut self) -> &mut Conn {
        // Present until drop.
        self.conn
            .as_mut()
            .expect("a pooled session holds its connection until dropped")
    }
}

impl ImapSession for PooledSession {
    fn capabilities(&self) -> Capabilities {
        self.conn
            .as_ref()
            .map(|c| c.capabilities())
            .unwrap_or_default()
    }

    fn list(&mut self) -> ImapFuture<'_, Vec<FolderInfo>> {
        self.conn().list()
    }

    fn select<'a>(
        &'a mut self,
        folder: &'a str,
        qresync: Option<&'a QresyncParams>,
    ) -> ImapFuture<'a, Selected> {
        self.conn().select(folder, qresync)
    }

    fn uid_search_all(&mut self) -> ImapFuture<'_, Vec<u32>> {
        self.conn().uid_search_all()
    }

    fn uid_search<'a>(&'a mut self, criteria: &'a str) -> ImapFuture<'a, Vec<u32>> {
        self.conn().uid_search(criteria)
    }

    fn status<'a>(&'a mut self, folder: &'a str) -> ImapFuture<'a, MailboxStatus> {
        self.conn().status(folder)
    }

    fn fetch_meta<'a>(
        &'a mut self,
        set: &'a str,
        changed_since: Option<u64>,
    ) -> ImapFuture<'a, Vec<MessageMeta>> {
        self.conn().fetch_meta(set, changed_since)
    }

    fn fetch_bodies<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedBody>> {
        self.conn().fetch_bodies(set)
    }

    fn fetch_headers<'a>(&'a mut self, set: &'a str) -> ImapFuture<'a, Vec<FetchedHeader>> {
        self.conn().fetch_headers(set)
    }

    fn idle(&mut self, max: Duration) -> ImapFuture<'_, IdleOutcome> {
        self.conn().idle(max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reconnect_delays_grow_and_cap_with_jitter() {
        let mut rng = rand::rng();
        for n in 1..40 {
            let d = reconnect_delay(n, Duration::from_secs(3_600), &mut rng);
            let ceiling = Duration::from_secs(1u64 << (n - 1).min(16)).min(BACKOFF_CAP);
            assert!(d <= ceiling, "{n}: {d:?}");
            // A short outage keeps the wait short however many attempts it counted.
            let d = reconnect_delay(n, Duration::from_secs(2), &mut rng);
            assert!(d <= Duration::from_secs(2), "{n} in a 2 s outage: {d:?}");
        }
    }
}
