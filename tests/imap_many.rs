//! 200 IMAP accounts on one Dovecot, synced concurrently by one daemon: all equal at the end,
//! and never more connections per account than its pool (Dovecot is told to refuse a third).

use crate::common::dovecot::{Caps, Dovecot, ImapView, generate};
use crate::common::{TestEnv, wait_until};
use crate::imap_sync::{held, server, stored_in, tail};
use mailsync_actors::store::Store;
use serde_json::json;
use std::time::{Duration, Instant};

/// `MAILSYNC_IMAP_ACCOUNTS` overrides the count (for a quick local run).
fn accounts() -> usize {
    std::env::var("MAILSYNC_IMAP_ACCOUNTS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(200)
}
const PER_ACCOUNT: usize = 30;

#[test]
fn two_hundred_accounts_on_one_dovecot_sync_within_their_pools() {
    let count = accounts();
    let users: Vec<(String, String)> = (0..count)
        .map(|i| (format!("user{i:03}"), format!("pw-{i:03}")))
        .collect();
    let dc = Dovecot::start_with(Caps::Full, &users, 2);
    for (i, (u, _)) in users.iter().enumerate() {
        dc.seed(u, "INBOX", &generate(PER_ACCOUNT, 1_000 + i as u64, u));
    }
    let env = TestEnv::new();
    let accounts: String = users
        .iter()
        .map(|(u, p)| dc.account_toml(u, u, p, "connections = 2"))
        .collect::<Vec<_>>()
        .join("\n");
    env.write_config(&accounts);
    let started = Instant::now();
    let d = env.start();
    let all_done = || {
        let Ok(r) = d.try_request(&json!({"v":1,"cmd":"status"})) else {
            return false;
        };
        r["data"]["accounts"].as_array().is_some_and(|a| {
            a.len() == count
                && a.iter().all(|x| {
                    x["phase"] == json!("caught_up")
                        && x["cursor"]
                            .as_str()
                            .is_some_and(|c| c.contains(&format!(" {PER_ACCOUNT} messages")))
                })
        })
    };
    let ok = wait_until(Duration::from_secs(600), all_done);
    if !ok {
        let behind: Vec<String> = users
            .iter()
            .take(20)
            .filter(|(u, _)| held(&d, u) != Some(PER_ACCOUNT as u64))
            .map(|(u, _)| u.clone())
            .collect();
        panic!(
            "not all caught up; e.g. {behind:?}\nlog {}: {}",
            d.log.display(),
            tail(&d.log_text(), 30)
        );
    }
    eprintln!(
        "{count} accounts × {PER_ACCOUNT} messages caught up in {:.1} s",
        started.elapsed().as_secs_f64()
    );
    d.stop();
    assert!(
        !dc.log().contains("Maximum number of connections"),
        "an account exceeded its pool:\n{}",
        tail(&dc.log(), 10)
    );
    let store = Store::open(&env.data_dir).expect("store");
    for (u, p) in &users {
        let view = ImapView::new(&dc, u, p);
        assert_eq!(
            stored_in(&store, u),
            server(&view, &["INBOX", "Trash"]),
            "{u}"
        );
    }
}
