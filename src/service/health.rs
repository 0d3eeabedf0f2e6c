//! Health rules: pure functions from status snapshots to what monitoring wants to know.
//!
//! Per account: `failed` (gave up, or could not start), `disconnected` (credentials need a
//! person), `degraded` (working, but something is off: the provider failing transiently,
//! polling because push went quiet, paused, restarted recently, dead letters, recovering a
//! history gap) or `active`.
//! The daemon is `failed` (exit 2) when any account is failed or disconnected, `degraded`
//! (exit 1) when any is degraded, else `ok` (exit 0). `summary` is the one line systemd shows
//! (`STATUS=`): "3 accounts: 2 active, 1 degraded (polling)".

use mailsync_actors::status::{AccountState, AccountStatus};
use serde::Serialize;

/// The badge of one account.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Health {
    /// Syncing normally.
    Active,
    /// Working, with a problem worth a look.
    Degraded,
    /// Waiting for a person to re-authorize.
    Disconnected,
    /// Stopped for good (restart budget spent, or could not start).
    Failed,
}

impl Health {
    /// The spelling used in status, the page and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Active => "active",
            Health::Degraded => "degraded",
            Health::Disconnected => "disconnected",
            Health::Failed => "failed",
        }
    }
}

/// One account's health and why.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct AccountHealth {
    /// Account id.
    pub account: String,
    /// The badge.
    pub health: Health,
    /// Short reasons (`polling`, `paused`, `restarted 2x`, ...); empty when active.
    pub reasons: Vec<String>,
    /// The last error, when the account is failed or disconnected.
    pub error: Option<String>,
}

/// The daemon's overall health (the exit status of `ctl health`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum DaemonHealth {
    /// Exit 0.
    Ok,
    /// Exit 1.
    Degraded,
    /// Exit 2 (also used by `ctl health` when the daemon does not answer).
    Failed,
}

impl DaemonHealth {
    /// The exit status for monitoring checks.
    pub fn exit_code(self) -> i32 {
        match self {
            DaemonHealth::Ok => 0,
            DaemonHealth::Degraded => 1,
            DaemonHealth::Failed => 2,
        }
    }

    /// `ok`, `degraded`, `failed`.
    pub fn as_str(self) -> &'static str {
        match self {
            DaemonHealth::Ok => "ok",
            DaemonHealth::Degraded => "degraded",
            DaemonHealth::Failed => "failed",
        }
    }
}

/// The health of one account.
pub fn account_health(a: &AccountStatus) -> AccountHealth {
    let mut reasons = Vec::new();
    let health = match a.state {
        AccountState::Failed => Health::Failed,
        AccountState::Disconnected => Health::Disconnected,
        _ => {
            if let Some(delivery) = a.delivery.as_deref()
                && let Some(rest) = delivery.strip_prefix("degraded")
            {
                let why = rest.trim().trim_start_matches('(').trim_end_matches(')');
                reasons.push(if why.is_empty() { "degraded" } else { why }.to_string());
            }
            if let Some(why) = &a.degraded {
                reasons.push(format!("provider unavailable ({why})"));
            }
            match a.state {
                AccountState::Paused => reasons.push("paused".into()),
                AccountState::Resyncing => reasons.push("resyncing".into()),
                // `degraded (disk full: <path>)`: the reason is what is in the parentheses.
                AccountState::Degraded => reasons.push(
                    a.phase
                        .strip_prefix("degraded (")
                        .and_then(|r| r.strip_suffix(')'))
                        .unwrap_or("degraded")
                        .to_string(),
                ),
                _ => {}
            }
            if a.restarts > 0 {
                reasons.push(format!("restarted {}x", a.restarts));
            }
            let dead = a
                .queues
                .iter()
                .map(|q| q.dead)
                .sum::<u64>()
                .max(a.dead_lettered);
            if dead > 0 {
                reasons.push(format!("{dead} dead letters"));
            }
            if reasons.is_empty() {
                Health::Active
            } else {
                Health::Degraded
            }
        }
    };
    let error = matches!(health, Health::Failed | Health::Disconnected)
        .then(|| a.last_error.clone())
        .flatten();
    AccountHealth {
        account: a.account.clone(),
        health,
        reasons,
        error,
    }
}

/// The daemon's health and one line per problem.
pub fn daemon_health(accounts: &[AccountHealth]) -> (DaemonHealth, Vec<String>) {
    let mut overall = DaemonHealth::Ok;
    let mut problems = Vec::new();
    for a in accounts {
        match a.health {
            Health::Active => {}
            Health::Degraded => {
                if overall == DaemonHealth::Ok {
                    overall = DaemonHealth::Degraded;
                }
                problems.push(format!(
                    "{}: degraded ({})",
                    a.account,
                    a.reasons.join(", ")
                ));
            }
            Health::Disconnected | Health::Failed => {
                overall = DaemonHealth::Failed;
                let error = a.error.as_deref().unwrap_or("no error recorded");
                problems.push(format!("{}: {}: {error}", a.account, a.health.as_str()));
            }
        }
    }
    (overall, problems)
}

/// The one-line summary: "3 accounts: 2 active, 1 degraded (polling)".
pub fn summary(accounts: &[AccountHealth]) -> String {
    if accounts.is_empty() {
        return "no accounts configured".into();
    }
    let noun = if accounts.len() == 1 {
        "account"
    } else {
        "accounts"
    };
    let mut parts = Vec::new();
    for h in [
        Health::Active,
        Health::Degraded,
        Health::Disconnected,
        Health::Failed,
    ] {
        let with: Vec<&AccountHealth> = accounts.iter().filter(|a| a.health == h).collect();
        if with.is_empty() {
            continue;
        }
        let mut part = format!("{} {}", with.len(), h.as_str());
        if h == Health::Degraded {
            let mut reasons: Vec<&str> = Vec::new();
            for r in with.iter().flat_map(|a| a.reasons.iter()) {
                if !reasons.contains(&r.as_str()) {
                    reasons.push(r);
                }
            }
            part.push_str(&format!(" ({})", reasons.join(", ")));
        }
        parts.push(part);
    }
    format!("{} {noun}: {}", accounts.len(), parts.join(", "))
}

/// A running account's status with nothing else set: what the health rules' tests and the
/// health board's tests start from.
#[cfg(test)]
pub(crate) fn test_status(id: &str, state: AccountState) -> AccountStatus {
    AccountStatus::bare(id, "test", state, "caught_up")
}

#[cfg(test)]
mod tests {
    use super::*;
    use mailsync_actors::status::QueueStat;

    use super::test_status as status;

    #[test]
    fn summary_counts_each_health_and_names_degraded_reasons() {
        let mut polling = status("c", AccountState::Running);
        polling.delivery = Some("degraded (polling)".into());
        let list: Vec<AccountHealth> = [
            status("a", AccountState::Running),
            status("b", AccountState::Running),
            polling,
        ]
        .iter()
        .map(account_health)
        .collect();
        assert_eq!(summary(&list), "3 accounts: 2 active, 1 degraded (polling)");
        let (h, problems) = daemon_health(&list);
        assert_eq!(h, DaemonHealth::Degraded);
        assert_eq!(problems, vec!["c: degraded (polling)"]);
    }

    #[test]
    fn failed_and_disconnected_make_the_daemon_failed() {
        let mut failed = status("x", AccountState::Failed);
        failed.last_error = Some("cannot read /nope".into());
        let list = vec![
            account_health(&failed),
            account_health(&status("y", AccountState::Disconnected)),
        ];
        let (h, problems) = daemon_health(&list);
        assert_eq!(h, DaemonHealth::Failed);
        assert_eq!(h.exit_code(), 2);
        assert_eq!(problems[0], "x: failed: cannot read /nope");
        assert_eq!(summary(&list), "2 accounts: 1 disconnected, 1 failed");
    }

    #[test]
    fn restarts_dead_letters_and_pause_degrade() {
        let mut a = status("a", AccountState::Paused);
        a.restarts = 2;
        a.queues.push(QueueStat {
            name: "a/ingest".into(),
            dead: 3,
            ..QueueStat::default()
        });
        let h = account_health(&a);
        assert_eq!(h.health, Health::Degraded);
        assert_eq!(h.reasons, vec!["paused", "restarted 2x", "3 dead letters"]);
        assert_eq!(
            account_health(&status("b", AccountState::Starting)).health,
            Health::Active
        );
        assert_eq!(summary(&[]), "no accounts configured");
    }
}
