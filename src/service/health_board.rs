//! The service monitor's rolling view of the accounts' health. Asking a thousand accounts
//! every second costs a steady share of a core for nothing, so each tick asks a slice of
//! them ([`SLICE`], wrapping round), every account not heard from yet and every *suspect*
//! (one that did not answer in time) until it answers again. The one-line summary
//! (`STATUS=`) is recomputed only when an account's health changed.
//!
//! Watchdog rule kept from asking everyone: a tick with any silent account does not pet
//! systemd, and a silent account stays asked every tick, so a wedged account starves the
//! watchdog from the first tick it is asked, within `ceil(accounts / SLICE)` ticks.

use crate::daemon_core::HealthAnswers;
use crate::service::health::{self, AccountHealth};
use std::collections::{BTreeMap, HashSet};

/// Accounts asked per tick besides suspects and new accounts.
pub const SLICE: usize = 100;

/// The last health heard from every account, and who is asked next.
#[derive(Debug, Default)]
pub struct HealthBoard {
    health: BTreeMap<String, AccountHealth>,
    suspects: HashSet<String>,
    next: usize,
    changed: bool,
}

impl HealthBoard {
    /// The accounts to ask this tick, out of every configured one.
    pub fn choose(&mut self, ids: &[String]) -> HashSet<String> {
        let mut chosen: HashSet<String> = self.suspects.iter().cloned().collect();
        let n = ids.len();
        if n > 0 {
            let start = self.next % n;
            let take = SLICE.min(n);
            chosen.extend((0..take).map(|k| ids[(start + k) % n].clone()));
            self.next = (start + take) % n;
        }
        chosen.extend(
            ids.iter()
                .filter(|id| !self.health.contains_key(*id))
                .cloned(),
        );
        chosen
    }

    /// Takes a tick's answers. `Err` names a silent account (the watchdog is not petted).
    pub fn take(&mut self, answers: &HealthAnswers) -> Result<(), String> {
        let known: HashSet<&str> = answers
            .ids
            .iter()
            .map(String::as_str)
            .chain(answers.fresh.iter().map(|a| a.account.as_str()))
            .collect();
        let before = self.health.len();
        self.health.retain(|id, _| known.contains(id.as_str()));
        self.changed |= self.health.len() != before;
        self.suspects.retain(|id| known.contains(id.as_str()));
        for s in &answers.fresh {
            self.suspects.remove(&s.account);
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
    use mailsync_actors::status::AccountState;

    fn ids(n: usize) -> Vec<String> {
        (0..n).map(|i| format!("a{i:04}")).collect()
    }

    fn answers(ids: &[String], asked: &HashSet<String>, silent: &[&str]) -> HealthAnswers {
        HealthAnswers {
            ids: ids.to_vec(),
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
        b.take(&answers(&all[..2], &HashSet::new(), &[]))
            .expect("ok");
        assert!(
            b.changed_summary().is_some(),
            "a removed account changes it"
        );
    }
}
