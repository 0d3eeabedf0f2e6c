//! How the durable mailboxes' records are versioned ([`crate::codec::Versioned`]): job records
//! and pending-key entries, with their frozen schema-1 shapes.

use crate::codec::{CodecError, Versioned, legacy_bincode};
use crate::mailbox::{JobRecord, PendingRef};

/// Schema-1 shapes of the mailbox records, frozen: bincode is positional, so these must never
/// change (add fields to the current types instead).
mod v1 {
    use serde::Deserialize;

    #[derive(Deserialize)]
    pub(super) enum Priority {
        Backfill,
        Normal,
        RealTime,
    }

    impl From<Priority> for crate::mailbox::Priority {
        fn from(p: Priority) -> Self {
            match p {
                Priority::Backfill => crate::mailbox::Priority::Backfill,
                Priority::Normal => crate::mailbox::Priority::Normal,
                Priority::RealTime => crate::mailbox::Priority::RealTime,
            }
        }
    }

    #[derive(Deserialize)]
    pub(super) struct JobRecord {
        pub key: String,
        pub priority: Priority,
        pub payload: Vec<u8>,
        pub attempts: u32,
        pub not_before_ms: u64,
        pub last_error: Option<String>,
        pub enqueued_ms: u64,
    }

    #[derive(Deserialize)]
    pub(super) struct PendingRef {
        pub seq: u64,
        pub priority: Priority,
        pub delayed_until: Option<u64>,
    }
}

impl Versioned for JobRecord {
    const NAME: &'static str = "job";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        let r: v1::JobRecord = legacy_bincode::<Self, _>(body)?;
        Ok(JobRecord {
            key: r.key,
            priority: r.priority.into(),
            payload: r.payload,
            attempts: r.attempts,
            not_before_ms: r.not_before_ms,
            last_error: r.last_error,
            enqueued_ms: r.enqueued_ms,
        })
    }
}

impl Versioned for PendingRef {
    const NAME: &'static str = "pending job ref";
    const VERSION: u16 = 1;
    fn from_legacy(body: &[u8]) -> Result<Self, CodecError> {
        let r: v1::PendingRef = legacy_bincode::<Self, _>(body)?;
        Ok(PendingRef {
            seq: r.seq,
            priority: r.priority.into(),
            delayed_until: r.delayed_until,
        })
    }
}
