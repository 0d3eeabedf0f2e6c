//! The service monitor's rolling view of the accounts' health. Asking a thousand accounts
//! every second costs a steady share of a core for nothing, so each tick asks a slice of
//! them ([`SLICE`], wrapping round), every account not heard from yet and every *suspect*
//! (one that did not answer in time) until it answers again. The one-line summary
//! (`STATUS=`) is recomputed only when an account's health changed.
//!
//! Watchdog rule kept from asking everyone: a tick with any silent account does not pet
//! systemd, and a silent account stays asked every tick, so a wedged account starves the
//! watchdog from the first tick it is asked, within `ceil(accounts / SLICE)` ticks.
//!
//! A tick's work is the slice's, not the roster's: the work over every configured account
//! (forgetting removed ones, finding those not heard from yet) is done only when the root
//! hands out a new [`Roster`], which it does only when an account started, stopped, failed
//! or was reloaded.

use crate::daemon_core::HealthAnswers;
use crate::service::health::{self, AccountHealth};
use mailsync_actors::root::Roster;
use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::sync::Arc;

/// Accounts asked per tick besides suspects and new accounts.
pub const SLICE: usize = 100;

/// The last health heard from every account, and who is asked next.
#[derive(Debug, Default)]
pub struct HealthBoard {
    health: BTreeMap<String, AccountHealth>,
    suspects: HashSet<String>,
    /// Configured accounts not heard from since the roster they came in (asked every tick).
    unheard: BTreeSet<String>,
    /// The roster `unheard` was drawn from.
    chosen_from: Option<Roster>,
    /// The roster `health` and `suspects` were last trimmed to.
    taken_from: Option<Roster>,
    next: usize,
    changed: bool,
}

/// Whether `roster` is another roster than `last` (a new `Arc`, not merely other contents).
fn is_new(last: Option<&Roster>, roster: &Roster) -> bool {
    !last.is_some_and(|l| Arc::ptr_eq(l, roster))
}

impl HealthBoard {
    /// The accounts to ask this tick, out of every configured one.
    pub fn choose(&mut self, roster: &Roster) -> HashSet<String> {
        if is_new(self.chosen_from.as_ref(), roster) {
            self.unheard = roster
                .iter()
                .filter(|h| !self.health.contains_key(&h.id))
                .map(|h| h.id.clone())
                .collect();
            self.chosen_from = Some(roster.clone());
        }
        let mut chosen: HashSet<String> = self.suspects.iter().cloned().collect();
        let n = roster.len();
        if n > 0 {
            let start = self.next % n;
            let take = SLICE.min(n);
            chosen.extend((0..take).map(|k| roster[(start + k) % n].id.clone()));
            self.next = (start + take) % n;
        }
        chosen.extend(self.unheard.iter().cloned());
        chosen
    }

    /// Whether `roster` differs from the one the last [`HealthBoard::take`] saw, so the
    /// work over every account (forgetting removed ones) is due.
    pub fn is_new_roster(&self, roster: &Roster) -> bool {
        is_new(self.taken_from.as_ref(), roster)
    }

    /// Takes a tick's answers. `Err` names a silent account (the watchdog is not petted).
    pub fn take(&mut self, answers: &HealthAnswers) -> Result<(), String> {
        if self.is_new_roster(&answers.roster) {
            let known: HashSet<&str> = answers
                .roster
                .iter()
                .map(|h| h.id.as_str())
                .chain(answers.fresh.iter().map(|a| a.account.as_str()))
                .collect();
            let before = self.health.len();
            self.health.retain(|id, _| known.contains(id.as_str()));
            self.changed |= self.health.len() != before;
            self.suspects.retain(|id| known.contains(id.as_str()));
            self.unheard.retain(|id| known.contains(id.as_str()));
            self.taken_from = Some(answers.roster.clone());
        }
        for s in &answers.fresh {
            self.suspects.remove(&s.account);
            self.unheard.remove(&s.account);
            let h = health::account_health(s);
            if self.health.get(&s.account) != Some(&h) {
                self.health.insert(s.account.clone(), h);
                self.changed = true;
            }
        }
        for (id, _) in &answers.silent {
            self.suspects.insert(id.clone());
        }
        match answers.silent.first() {
            Some((id, why)) => Err(format!("account {id}: {why}")),
            None => Ok(()),
        }
    }

    /// The summary line when a health changed since the last call, else `None`.
    pub fn changed_summary(&mut self) -> Option<String> {
        if !std::mem::take(&mut self.changed) {
            return None;
        }
        let all: Vec<AccountHealth> = self.health.values().cloned().collect();
        Some(health::summary(&all))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::service::health::test_status as status;
    use mailsync_actors::root::AccountHandle;
    use mailsync_actors::status::AccountState;

    fn handle(id: String) -> AccountHandle {
        AccountHandle {
            id,
            kind: "gmail".into(),
            actor: None,
            down_reason: None,
        }
    }

    fn ids(n: usize) -> Roster {
        (0..n).map(|i| handle(format!("a{i:04}"))).collect()
    }

    fn answers(roster: &Roster, asked: &HashSet<String>, silent: &[&str]) -> HealthAnswers {
        HealthAnswers {
            roster: roster.clone(),
            fresh: asked
                .iter()
                .filter(|id| !silent.contains(&id.as_str()))
                .map(|id| status(id, AccountState::Running))
                .collect(),
            silent: silent
                .iter()
                .filter(|id| asked.contains(**id))
                .map(|id| (id.to_string(), "timeout".into()))
                .collect(),
        }
    }

    #[test]
    fn everyone_is_asked_first_then_slices_cover_every_account() {
        let all = ids(250);
        let mut b = HealthBoard::default();
        let first = b.choose(&all);
        assert_eq!(
            first.len(),
            250,
            "accounts not heard from yet are all asked"
        );
        b.take(&answers(&all, &first, &[])).expect("all answered");
        assert!(b.changed_summary().is_some());
        let mut seen = HashSet::new();
        for _ in 0..3 {
            let c = b.choose(&all);
            assert_eq!(c.len(), SLICE);
            seen.extend(c.iter().cloned());
            b.take(&answers(&all, &c, &[])).expect("all answered");
            assert_eq!(b.changed_summary(), None, "nothing changed");
        }
        assert_eq!(seen.len(), 250, "three slices of 100 cover 250 accounts");
    }

    #[test]
    fn a_silent_account_is_asked_every_tick_and_fails_each_until_it_answers() {
        let all = ids(500);
        let mut b = HealthBoard::default();
        let first = b.choose(&all);
        b.take(&answers(&all, &first, &[])).expect("all answered");
        // a0003 goes silent; the ticks before its slice comes round do not see it.
        let mut ticks = 0;
        loop {
            let c = b.choose(&all);
            ticks += 1;
            if c.contains("a0003") {
                assert!(b.take(&answers(&all, &c, &["a0003"])).is_err());
                break;
            }
            assert!(b.take(&answers(&all, &c, &["a0003"])).is_ok());
        }
        assert!(ticks <= all.len().div_ceil(SLICE), "seen within one round");
        for _ in 0..6 {
            let c = b.choose(&all);
            assert!(c.contains("a0003"), "a suspect is asked every tick");
            assert!(b.take(&answers(&all, &c, &["a0003"])).is_err());
        }
        let c = b.choose(&all);
        assert!(b.take(&answers(&all, &c, &[])).is_ok());
        let c = b.choose(&all);
        assert!(!c.contains("a0003") || c.len() == SLICE);
    }

    #[test]
    fn a_changed_health_or_a_removed_account_changes_the_summary() {
        let all = ids(3);
        let mut b = HealthBoard::default();
        let c = b.choose(&all);
        b.take(&answers(&all, &c, &[])).expect("answered");
        let s = b.changed_summary().expect("first summary");
        let mut a = answers(&all, &HashSet::new(), &[]);
        a.fresh.push(status("a0001", AccountState::Paused));
        b.take(&a).expect("answered");
        let paused = b.changed_summary().expect("a paused account changes it");
        assert_ne!(s, paused);
        let two: Roster = all[..2].iter().cloned().collect();
        b.take(&answers(&two, &HashSet::new(), &[])).expect("ok");
        assert!(
            b.changed_summary().is_some(),
            "a removed account changes it"
        );
    }

    #[test]
    fn a_new_roster_has_its_new_accounts_asked_at_once_and_its_removed_ones_forgotten() {
        let all = ids(300);
        let mut b = HealthBoard::default();
        let c = b.choose(&all);
        b.take(&answers(&all, &c, &[])).expect("answered");
        assert_eq!(b.choose(&all).len(), SLICE, "the same roster: only a slice");
        // A reload: a0000 removed, b0000 added; the root hands out a new roster.
        let mut next: Vec<AccountHandle> = all[1..].to_vec();
        next.push(handle("b0000".into()));
        let next: Roster = next.into();
        assert!(b.is_new_roster(&next));
        let c = b.choose(&next);
        assert!(
            c.contains("b0000"),
            "a new account is asked on the first tick"
        );
        b.take(&answers(&next, &c, &[])).expect("answered");
        assert!(!b.is_new_roster(&next));
        let summary = b.changed_summary().expect("the roster changed");
        assert!(
            summary.contains("300") && !summary.contains("301"),
            "300 accounts, not 301: {summary}"
        );
        let c = b.choose(&next);
        assert_eq!(
            c.len(),
            SLICE,
            "b0000 was heard: no longer asked every tick"
        );
    }
}
