//! What an AccountActor answers when asked for its status: the full view (`ctl status`, the
//! status page, metrics) and the health view the service monitor asks for every tick.
//!
//! The full view reads the source's stored records (cursor, last sync, gap figures, the IMAP
//! detail) in one go through [`crate::source::SyncSource::stored_status`]. The health view is
//! built from the actor's memory and the in-memory queue counters only, so a daemon with a
//! thousand accounts can be watched every second without reading the store.

use super::{AccountActorState, AccountMsg};
use crate::source::StoredStatus;
use crate::status::{AccountState, AccountStatus, Phase, QueueStat};
use ractor::ActorRef;

/// How much of the status to build.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StatusDetail {
    /// Everything, the stored records included.
    Full,
    /// State, phase, queues, errors: what health is judged on; no store reads.
    Health,
}

impl AccountActorState {
    pub(super) fn status(
        &self,
        myself: &ActorRef<AccountMsg>,
        detail: StatusDetail,
    ) -> AccountStatus {
        let reporter = myself.get_derived();
        let cx = self.cx(&reporter);
        // The stored records first: the job counters never lag a commit
        // (store/queue_counts.rs), so depths read after the cursor include every job the
        // transaction that moved it queued.
        let stored = match detail {
            StatusDetail::Full => self.spec.source.stored_status(&cx),
            StatusDetail::Health => StoredStatus::default(),
        };
        let imap = match detail {
            StatusDetail::Full => self.spec.source.imap_status(&cx),
            StatusDetail::Health => None,
        };
        let mut queues = Vec::new();
        let mut dead: u64 = 0;
        for (name, mailbox) in &self.mailboxes {
            if let Ok(d) = mailbox.depth() {
                dead += d.dead as u64;
                queues.push(QueueStat {
                    name: name.clone(),
                    pending: d.pending as u64,
                    leased: d.leased as u64,
                    delayed: d.delayed as u64,
                    dead: d.dead as u64,
                });
            }
        }
        // In messages: a full sync's page job counts its ids (`ingest_pages.rs`).
        let pages = crate::ingest_pages::tally(&self.store, &self.spec.id).unwrap_or_default();
        let missing = queues
            .iter()
            .find(|q| q.name.ends_with("/ingest"))
            .map(|q| {
                crate::ingest_pages::outstanding_items(
                    q.pending + q.leased + q.delayed + q.dead,
                    pages,
                )
            })
            .unwrap_or(0);
        let mut phase = self.phase;
        if self.state == AccountState::Running && phase == Phase::CaughtUp && dead > 0 {
            phase = Phase::Incomplete { dead };
        }
        let mut phase_text = phase.to_string();
        let mut state = self.state;
        let mut last_error = self.last_error.clone();
        if let Some(reason) = self.store.disk_full()
            && matches!(
                state,
                AccountState::Running | AccountState::Resyncing | AccountState::Degraded
            )
        {
            state = AccountState::Degraded;
            phase_text = crate::disk_space::degraded_phase(&reason);
            last_error = Some(format!("disk full: {reason}"));
        }
        AccountStatus {
            account: self.spec.id.0.clone(),
            kind: self.spec.kind.to_string(),
            state,
            phase: phase_text,
            cursor: stored.cursor,
            queues,
            restarts: self.budget.restarts(),
            last_error,
            last_sync_ms: self.last_sync_ms.or(stored.last_sync_ms),
            progress: self.progress.clone(),
            missing,
            dead_lettered: dead,
            delivery: Some("polling".into()),
            last_gap_recovery_units: stored.last_resync_units,
            last_gap_working_set: stored.last_resync_working_set,
            calendars: Vec::new(),
            imap,
            status_age_ms: None,
            degraded: self
                .degraded
                .iter()
                .next()
                .map(|(child, reason)| format!("{child}: {reason}")),
        }
    }
}
