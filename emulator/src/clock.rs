//! The emulator's wall clock: real time plus a controllable offset (control API
//! `POST /_emulator/clock`), so tests can expire tokens, watches and history without waiting.

use std::sync::atomic::{AtomicI64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Wall clock with an adjustable offset.
#[derive(Debug, Default)]
pub struct Clock {
    offset_ms: AtomicI64,
}

impl Clock {
    /// Current emulated time in epoch milliseconds.
    pub fn now_ms(&self) -> i64 {
        let real = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as i64)
            .unwrap_or(0);
        real + self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn offset_ms(&self) -> i64 {
        self.offset_ms.load(Ordering::Relaxed)
    }

    pub fn set_offset_ms(&self, v: i64) {
        self.offset_ms.store(v, Ordering::Relaxed);
    }

    pub fn advance_ms(&self, v: i64) {
        self.offset_ms.fetch_add(v, Ordering::Relaxed);
    }
}
