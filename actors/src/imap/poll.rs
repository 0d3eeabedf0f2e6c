//! When each folder of an IMAP account is looked at during incremental rounds (imap.md §5, §8):
//! a folder is first probed with a cheap `STATUS (MESSAGES UIDNEXT UIDVALIDITY
//! [HIGHESTMODSEQ])`, and only a folder whose STATUS differs from its stored cursor gets the
//! full incremental step (SELECT …). The schedule follows the account's activity:
//!
//! * A folder that changed is probed at every round; each quiet probe doubles its interval,
//!   from `min` up to `max`.
//! * Any change in the account (a folder that changed, IDLE news) makes every folder due at
//!   the next round once (a move or a sent copy lands in another folder at the same time).
//! * IDLE folders are probed at every round, and IDLE news forces their full step (without
//!   CONDSTORE a flag change is invisible to STATUS).
//! * Without HIGHESTMODSEQ a quiet folder still gets a full step once every `max`, so flag
//!   changes are never missed for longer than that.
//!
//! In memory only: after a restart every folder is due, which costs one STATUS each.

use crate::imap::port::MailboxStatus;
use crate::imap::store::FolderState;
use std::collections::HashMap;
use std::sync::{Mutex, PoisonError};
use std::time::{Duration, Instant};

/// What to do with a folder in this round.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Plan {
    /// Not due: nothing is sent.
    Skip,
    /// Probe with STATUS, then a full step only if it differs.
    Probe,
    /// A full incremental step (IDLE news, or no HIGHESTMODSEQ and `max` elapsed).
    Full,
}

#[derive(Clone, Copy, Debug)]
struct FolderPoll {
    interval: Duration,
    next_due: Instant,
    last_full: Instant,
    news: bool,
    /// When the server last confirmed the folder current (ms since the epoch).
    checked_ms: u64,
}

/// The poll schedule of one account's folders.
#[derive(Debug)]
pub(crate) struct PollSchedule {
    min: Duration,
    max: Duration,
    folders: Mutex<HashMap<String, FolderPoll>>,
}

impl PollSchedule {
    /// A schedule whose quiet folders back off from `min` to `max`.
    pub(crate) fn new(min: Duration, max: Duration) -> PollSchedule {
        PollSchedule {
            min,
            max: max.max(min),
            folders: Mutex::new(HashMap::new()),
        }
    }

    fn with<T>(&self, f: impl FnOnce(&mut HashMap<String, FolderPoll>) -> T) -> T {
        f(&mut self.folders.lock().unwrap_or_else(PoisonError::into_inner))
    }

    /// What to do with `folder` now; `idle` folders are probed every round.
    pub(crate) fn plan(&self, folder: &str, idle: bool, has_modseq: bool, now: Instant) -> Plan {
        let max = self.max;
        self.with(|m| match m.get(folder) {
            None => Plan::Probe,
            Some(p) if p.news => Plan::Full,
            Some(p) if !idle && now < p.next_due => Plan::Skip,
            Some(p) if !has_modseq && now.duration_since(p.last_full) >= max => Plan::Full,
            Some(_) => Plan::Probe,
        })
    }

    /// The probe found nothing new: the folder's interval doubles (up to `max`).
    pub(crate) fn quiet(&self, folder: &str, now: Instant) {
        let (min, max) = (self.min, self.max);
        self.with(|m| {
            let p = m.entry(folder.to_string()).or_insert(FolderPoll {
                interval: Duration::ZERO,
                next_due: now,
                last_full: now,
                news: false,
                checked_ms: 0,
            });
            p.interval = (p.interval * 2).clamp(min, max);
            p.next_due = now + p.interval;
            p.checked_ms = crate::spec::now_ms();
        });
    }

    /// The folder got its full step; `changed`: its STATUS differed or IDLE had news, so the
    /// folder stays at the front of the schedule and every other folder is due at once.
    pub(crate) fn synced(&self, folder: &str, changed: bool, now: Instant) {
        self.with(|m| {
            let p = m.entry(folder.to_string()).or_insert(FolderPoll {
                interval: Duration::ZERO,
                next_due: now,
                last_full: now,
                news: false,
                checked_ms: 0,
            });
            p.last_full = now;
            p.news = false;
            p.checked_ms = crate::spec::now_ms();
            if changed {
                p.interval = Duration::ZERO;
                p.next_due = now;
            }
            if changed {
                for other in m.values_mut() {
                    other.next_due = other.next_due.min(now);
                }
            }
        });
    }

    /// IDLE reported news in `folder`: its next round does the full step.
    pub(crate) fn news(&self, folder: &str, now: Instant) {
        self.with(|m| {
            m.entry(folder.to_string())
                .or_insert(FolderPoll {
                    interval: Duration::ZERO,
                    next_due: now,
                    last_full: now,
                    news: true,
                    checked_ms: 0,
                })
                .news = true;
            for other in m.values_mut() {
                other.next_due = other.next_due.min(now);
            }
        });
    }

    /// When the server last confirmed the folder current (a quiet probe or a full step).
    pub(crate) fn checked_ms(&self, folder: &str) -> Option<u64> {
        self.with(|m| m.get(folder).map(|p| p.checked_ms).filter(|t| *t > 0))
    }

    /// Seconds until the folder is probed again (`None` before its first probe).
    pub(crate) fn interval_secs(&self, folder: &str) -> Option<u64> {
        self.with(|m| m.get(folder).map(|p| p.interval.as_secs()))
    }
}

/// Whether a STATUS answer says the folder holds what its stored cursor covers.
pub(crate) fn unchanged(f: &FolderState, st: &MailboxStatus) -> bool {
    f.uidvalidity == Some(st.uidvalidity)
        && f.uidnext == st.uidnext
        && f.messages == u64::from(st.messages)
        && match (f.highest_modseq, st.highest_modseq) {
            (Some(a), Some(b)) => a == b,
            (None, None) => true,
            _ => false,
        }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_folders_back_off_and_activity_brings_them_back() {
        let s = PollSchedule::new(Duration::from_secs(60), Duration::from_secs(600));
        let t0 = Instant::now();
        assert_eq!(s.plan("Sent", false, true, t0), Plan::Probe);
        s.quiet("Sent", t0);
        assert_eq!(s.interval_secs("Sent"), Some(60));
        assert_eq!(s.plan("Sent", false, true, t0), Plan::Skip);
        assert_eq!(s.plan("Sent", true, true, t0), Plan::Probe, "IDLE folders");
        let t1 = t0 + Duration::from_secs(61);
        assert_eq!(s.plan("Sent", false, true, t1), Plan::Probe);
        for _ in 0..10 {
            s.quiet("Sent", t1);
        }
        assert_eq!(s.interval_secs("Sent"), Some(600), "capped");
        // A change elsewhere makes it due at once.
        s.synced("INBOX", true, t1);
        assert_eq!(s.plan("Sent", false, true, t1), Plan::Probe);
        // IDLE news forces the full step.
        s.news("INBOX", t1);
        assert_eq!(s.plan("INBOX", true, false, t1), Plan::Full);
        s.synced("INBOX", false, t1);
        assert_eq!(s.plan("INBOX", true, false, t1), Plan::Probe);
        // Without HIGHESTMODSEQ a full step once every `max`.
        let t2 = t1 + Duration::from_secs(601);
        assert_eq!(s.plan("INBOX", true, false, t2), Plan::Full);
    }

    #[test]
    fn status_comparison() {
        let f = FolderState {
            uidvalidity: Some(7),
            uidnext: 11,
            messages: 10,
            highest_modseq: Some(40),
            ..FolderState::default()
        };
        let st = MailboxStatus {
            messages: 10,
            uidnext: 11,
            uidvalidity: 7,
            highest_modseq: Some(40),
        };
        assert!(unchanged(&f, &st));
        assert!(!unchanged(
            &f,
            &MailboxStatus {
                highest_modseq: Some(41),
                ..st.clone()
            }
        ));
        assert!(!unchanged(
            &f,
            &MailboxStatus {
                uidnext: 12,
                ..st.clone()
            }
        ));
    }
}
