//! Connection slots of the control socket, per kind, so no client can lock an admin out.
//!
//! - **Request slots** (`max_connections`): every connection takes one when accepted. A
//!   connection that waits for its next request is *idle* and registered as evictable. When
//!   all slots are taken, a new connection evicts the connection that has been idle longest
//!   (it is closed at once, instead of after the idle timeout) and takes its slot. So a
//!   request/response command (`status`, `health`, `shutdown`) always gets a slot unless every
//!   slot is busy answering a request at that very moment.
//! - **Stream slots** (`max_streams`): an `events --follow` stream moves its connection out of
//!   the request slots into a stream slot of its own, so any number of followers up to that cap
//!   never take an admin's place; beyond it the stream request gets a `busy` reply.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;

/// How long a new connection waits for an evicted one to give its slot back.
const EVICT_WAIT: Duration = Duration::from_millis(500);

/// The server's slots.
#[derive(Debug)]
pub struct Slots {
    requests: Arc<Semaphore>,
    streams: Arc<Semaphore>,
    idle: Mutex<HashMap<u64, (Instant, CancellationToken)>>,
    next_id: AtomicU64,
}

/// One admitted connection's claim: its request slot (while it has one) and the token that
/// evicts it while idle.
#[derive(Debug)]
pub struct Admission {
    id: u64,
    request_slot: Option<OwnedSemaphorePermit>,
    stream_slot: Option<OwnedSemaphorePermit>,
    evict: CancellationToken,
}

impl Admission {
    /// Fires when the server needs this idle connection's slot.
    pub fn evicted(&self) -> &CancellationToken {
        &self.evict
    }

    /// Whether the connection holds a request slot (it gave it up for a stream).
    pub fn has_request_slot(&self) -> bool {
        self.request_slot.is_some()
    }
}

impl Slots {
    /// Slots for `requests` request/response connections and `streams` follow streams.
    pub fn new(requests: usize, streams: usize) -> Arc<Slots> {
        Arc::new(Slots {
            requests: Arc::new(Semaphore::new(requests)),
            streams: Arc::new(Semaphore::new(streams)),
            idle: Mutex::new(HashMap::new()),
            next_id: AtomicU64::new(1),
        })
    }

    /// Admits a new connection: a free request slot, else the slot of the connection idle the
    /// longest. `None` when every slot is busy answering a request.
    pub async fn admit(&self) -> Option<Admission> {
        let permit = match self.requests.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if !self.evict_oldest_idle() {
                    return None;
                }
                match tokio::time::timeout(EVICT_WAIT, self.requests.clone().acquire_owned()).await
                {
                    Ok(Ok(p)) => p,
                    _ => return None,
                }
            }
        };
        Some(Admission {
            id: self.next_id.fetch_add(1, Ordering::Relaxed),
            request_slot: Some(permit),
            stream_slot: None,
            evict: CancellationToken::new(),
        })
    }

    fn evict_oldest_idle(&self) -> bool {
        let mut idle = self.idle.lock().unwrap_or_else(PoisonError::into_inner);
        let oldest = idle
            .iter()
            .min_by_key(|(_, (since, _))| *since)
            .map(|(id, _)| *id);
        match oldest.and_then(|id| idle.remove(&id)) {
            Some((_, token)) => {
                token.cancel();
                true
            }
            None => false,
        }
    }

    /// The connection waits for its next request: it may be evicted from now on.
    pub fn idle(&self, a: &Admission) {
        if a.request_slot.is_none() {
            return;
        }
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(a.id, (Instant::now(), a.evict.clone()));
    }

    /// The connection is busy with a request (or gone): not evictable.
    pub fn busy(&self, a: &Admission) {
        self.idle
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&a.id);
    }

    /// Moves a connection into a stream slot, giving its request slot back. `false` when
    /// every stream slot is taken (the connection keeps its request slot).
    pub fn start_stream(&self, a: &mut Admission) -> bool {
        match self.streams.clone().try_acquire_owned() {
            Ok(p) => {
                a.stream_slot = Some(p);
                a.request_slot = None;
                true
            }
            Err(_) => false,
        }
    }

    /// Free stream slots (tests, status).
    pub fn streams_available(&self) -> usize {
        self.streams.available_permits()
    }
}

impl Drop for Admission {
    fn drop(&mut self) {
        self.evict.cancel();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_server_evicts_the_oldest_idle_connection_and_streams_use_their_own_slots() {
        let slots = Slots::new(2, 1);
        let a = slots.admit().await.unwrap();
        let mut b = slots.admit().await.unwrap();
        slots.idle(&a);
        // b streams: its request slot is free again.
        assert!(slots.start_stream(&mut b));
        assert!(!b.has_request_slot());
        let c = slots.admit().await.unwrap();
        slots.busy(&c);
        // Full: a (idle) is evicted for d.
        let evicted = a.evicted().clone();
        let slots2 = slots.clone();
        let d = tokio::spawn(async move { slots2.admit().await });
        evicted.cancelled().await;
        drop(a);
        let d = d.await.unwrap().expect("admitted in a's place");
        slots.busy(&d);
        // No idle connection left: the next one is refused.
        assert!(slots.admit().await.is_none());
        let mut e = Admission {
            id: 99,
            request_slot: None,
            stream_slot: None,
            evict: CancellationToken::new(),
        };
        assert!(!slots.start_stream(&mut e), "the one stream slot is b's");
        drop((c, d));
    }
}
