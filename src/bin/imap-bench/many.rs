//! The many-accounts run: `count` users on one Dovecot, `per` messages each, synced by one
//! daemon (pool of 2 connections per account) into one Maildir root. Measured like a cold
//! sync: wall time until every account is caught up with every message and the Maildir sink
//! has written them all, the daemon's CPU seconds and its peak RSS.

use crate::{POLL, Run, dovecot, held, maildir_lag, mbsync_runs, run_daemon};
use serde_json::{Value, json};
use std::time::Duration;

fn account_toml(i: usize, port: u16) -> String {
    format!(
        r#"
[[accounts]]
id = "u{i:03}"
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "user{i:03}"
password = {{ value = "{pass}" }}

[accounts.imap]
allow_plaintext = true
connections = 2
"#,
        pass = dovecot::PASS,
    )
}

fn all_synced(st: &Value, count: usize, per: u64) -> bool {
    let Some(accounts) = st["data"]["accounts"].as_array() else {
        return false;
    };
    accounts.len() == count
        && accounts
            .iter()
            .all(|a| a["phase"] == json!("caught_up") && held(a) == Some(per))
        && maildir_lag(st) == Some(0)
}

/// Runs the many-accounts cold sync and prints its row.
pub fn run(count: usize, per: u64, mailsync: bool, mbsync: bool) {
    let work = std::env::temp_dir().join(format!("imap-bench-{}-many", std::process::id()));
    let _ = std::fs::remove_dir_all(&work);
    std::fs::create_dir_all(&work).expect("work dir");
    let users: Vec<(String, u64)> = (0..count).map(|i| (format!("user{i:03}"), per)).collect();
    let dc = dovecot::Dovecot::start(&work, &users);
    let dir = work.join("mailsync");
    std::fs::create_dir_all(&dir).expect("dir");
    let mut config = format!(
        r#"data_dir = "{d}/data"
socket_path = "{d}/control.sock"
log_level = "warn"

[sync]
poll_interval_secs = 300

[maildir]
root = "{d}/maildir"
"#,
        d = dir.display()
    );
    for i in 0..count {
        config.push_str(&account_toml(i, dc.port));
    }
    std::fs::write(dir.join("config.toml"), config).expect("config");
    // A status of 200 accounts is larger: ask less often.
    let total = count as u64 * per;
    println!();
    println!("| accounts × messages | tool | wall s | msg/s | CPU s | peak RSS MiB |");
    println!("|---|---|---:|---:|---:|---:|");
    let row = |tool: &str, r: &Run| {
        println!(
            "| {count} × {per} | {tool} | {:.2} | {:.0} | {:.2} | {:.1} |",
            r.wall,
            total as f64 / r.wall,
            r.cpu,
            r.rss_mib
        );
    };
    if mailsync {
        let poll = POLL.max(Duration::from_millis(250));
        let cold = run_daemon(&dir, poll, |st| all_synced(st, count, per));
        row("mailsync", &cold);
    }
    if mbsync {
        // mbsync -a syncs its channels one after another.
        let accounts: Vec<(String, String)> =
            users.iter().map(|(u, _)| (u.clone(), u.clone())).collect();
        let (cold, _) = mbsync_runs(dc.port, &work, &accounts);
        row("mbsync", &cold);
    }
    drop(dc);
    let _ = std::fs::remove_dir_all(&work);
}
