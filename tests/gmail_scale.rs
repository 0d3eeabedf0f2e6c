//! Scale guards that are not timings: a gap recovery on a mailbox many reconcile chunks large
//! holds at most one chunk, one listing page or one sort segment of ids in memory and survives
//! kill -9, and 200 Gmail accounts on one emulator all reach `caught_up` in one daemon.
//!
//! Sizes can be raised with `GMAIL_SCALE_MESSAGES` and `GMAIL_SCALE_ACCOUNTS`; the defaults keep
//! each test well under a minute in a debug build on two cores.

use crate::common::emulator::*;
use crate::common::*;
use mailsync_actors::gmail::{RECONCILE_CHUNK, SORT_SEGMENT};
use mailsync_emulator::QuotaMode;
use serde_json::json;
use std::time::Duration;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Writes a credential file readable by its owner only (the daemon refuses others).
fn write_private(path: &std::path::Path, text: &str) {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .expect("credential file");
    f.write_all(text.as_bytes()).expect("write credential");
}

/// An emulator without quota (the guards are about memory, not pacing).
fn unthrottled(seed: u64, messages: usize) -> Emu {
    Emu::start(mailsync_emulator::EmulatorConfig {
        quota: QuotaMode::Off,
        ..config(seed, messages, 1_000_000.0)
    })
}

/// An unthrottled emulator of `messages` and a data directory the daemon has fully synced
/// from it (the daemon stopped again).
fn fully_synced(seed: u64, messages: usize) -> (Emu, TestEnv) {
    let emu = unthrottled(seed, messages);
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    assert!(
        wait_caught_up(&d, Duration::from_secs(300)),
        "full sync did not finish: {}",
        d.account(ACCOUNT)
    );
    d.stop();
    (emu, env)
}

#[test]
fn gap_recovery_holds_at_most_one_sort_segment_whatever_the_mailbox_size() {
    let n = env_usize("GMAIL_SCALE_MESSAGES", 3_000);
    // Large enough that a working set growing with the mailbox would show: six chunks.
    assert!(n >= 6 * RECONCILE_CHUNK);
    let (emu, env) = fully_synced(31, n);
    // During the gap: deletions spread over the mailbox, relabels, deliveries.
    let ids: Vec<String> = emu.snapshot().messages.into_iter().map(|m| m.id).collect();
    for (i, id) in ids.iter().step_by(ids.len() / 30).enumerate() {
        match i % 3 {
            0 => emu.delete(id),
            1 => emu.change_labels(id, &["STARRED", "Label_2"], &["UNREAD"]),
            _ => {
                emu.deliver();
            }
        }
    }
    emu.expire_history();
    // kill -9 twice while the recovery runs: it resumes from its last committed step.
    let mut d = env.start();
    for pause_ms in [200u64, 900] {
        let mut phase = String::new();
        let seen = wait_until(Duration::from_secs(120), || {
            let a = d.account(ACCOUNT);
            phase = a["phase"].as_str().unwrap_or("").to_string();
            // Resyncing, or already done (only a finished recovery reports its working set).
            phase == "resyncing" || a["last_gap_working_set"].is_u64()
        });
        assert!(seen, "no gap recovery started: {}", d.account(ACCOUNT));
        if phase != "resyncing" {
            break;
        }
        std::thread::sleep(Duration::from_millis(pause_ms));
        d.kill9();
        d = env.start();
    }
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(300)),
        "gap recovery did not converge: {}",
        d.account(ACCOUNT)
    );
    let a = d.account(ACCOUNT);
    d.stop();
    // Status says the recovery finished (only a finished one reports its working set); the
    // log cannot: the daemon that finished it may be one a kill -9 ended.
    let held = a["last_gap_working_set"]
        .as_u64()
        .unwrap_or_else(|| panic!("no last_gap_working_set in status: {a}"));
    eprintln!(
        "gap recovery on {n} messages: at most {held} ids held (chunk {RECONCILE_CHUNK}, sort \
         segment {SORT_SEGMENT})"
    );
    assert!(held > 0, "the reconcile reported no work: {a}");
    // The sort holds every listed entry up to one segment; the mailbox here lists fewer, so
    // the figure must be what the listing holds, never more than a segment.
    assert!(
        held <= SORT_SEGMENT as u64,
        "the recovery held {held} ids at once on a {n}-message mailbox; the bound is one sort \
         segment ({SORT_SEGMENT})"
    );
    assert_mirror_equals(&env.data_dir, &emu);
    // No scratch marker outlives the recovery.
    let store = mailsync_actors::store::Store::open(&env.data_dir).expect("open store");
    let left = store
        .kv(mailsync_actors::store::Space::Cursors)
        .scan_prefix(b"gap\0")
        .count();
    assert_eq!(left, 0, "{left} gap markers left after the recovery");
    let scratch = store.dir().join("gap");
    let files = std::fs::read_dir(&scratch).map_or(0, |d| d.count());
    assert_eq!(files, 0, "gap scratch left in {}", scratch.display());
}

/// A gap recovery the previous release left in progress (sled markers, layout 1) and one
/// whose scratch files are gone (a restored backup) both start over and converge, leaving no
/// marker and no scratch file behind.
#[test]
fn a_gap_left_by_an_older_layout_or_without_its_files_starts_over_and_converges() {
    use mailsync_actors::account_record::{AccountRecord, GapState, GapStep};
    use mailsync_actors::store::{Space, Store};
    let (emu, env) = fully_synced(37, 1_200);
    for (round, layout) in [(0usize, 1u32), (1, 2)] {
        let ids: Vec<String> = emu.snapshot().messages.into_iter().map(|m| m.id).collect();
        for (i, id) in ids.iter().skip(round).step_by(ids.len() / 12).enumerate() {
            match i % 3 {
                0 => emu.delete(id),
                1 => emu.change_labels(id, &["STARRED"], &["UNREAD"]),
                _ => {
                    emu.deliver();
                }
            }
        }
        emu.expire_history();
        {
            let store = Store::open(&env.data_dir).expect("open store");
            let mut rec = AccountRecord::load(&store, ACCOUNT).expect("record");
            let first = ids.first().cloned();
            rec.gap = Some(GapState {
                start_history_id: rec.history_id.unwrap_or_default(),
                step: GapStep::Reconcile {
                    floor: None,
                    after: first,
                    clearing: false,
                    sorted_offset: 40,
                },
                list_calls: 3,
                appeared: 0,
                vanished: 0,
                relabeled: 0,
                marker_layout: layout,
                listed_len: 4_096,
                peak_buffered: 0,
            });
            store
                .transaction(|tx| {
                    rec.save_tx(tx, ACCOUNT)?;
                    if layout == 1 {
                        // The markers of layout 1: `gap\0<account>\0m\0<id>`.
                        for id in &ids[..50] {
                            let key = format!("gap\0{ACCOUNT}\0m\0{id}");
                            tx.insert(Space::Cursors, key.as_bytes(), b"old")?;
                        }
                    }
                    Ok(())
                })
                .expect("write the old gap");
            store.flush().expect("flush");
        }
        let d = env.start();
        assert!(
            wait_converged(&d, &emu, Duration::from_secs(300)),
            "round {round}: the recovery did not converge: {}",
            d.account(ACCOUNT)
        );
        let log = d.log_text();
        d.stop();
        assert_mirror_equals(&env.data_dir, &emu);
        let store = Store::open(&env.data_dir).expect("open store");
        let rec = AccountRecord::load(&store, ACCOUNT).expect("record");
        assert!(rec.gap.is_none(), "round {round}: a gap is still recorded");
        let left = store.kv(Space::Cursors).scan_prefix(b"gap\0").count();
        assert_eq!(left, 0, "round {round}: {left} markers left");
        let scratch = store.dir().join("gap");
        let files = std::fs::read_dir(&scratch).map_or(0, |d| d.count());
        assert_eq!(
            files,
            0,
            "round {round}: scratch left in {}",
            scratch.display()
        );
        let said = if layout == 1 {
            "older marker layout"
        } else {
            "lost or damaged"
        };
        assert!(
            log.contains(said),
            "round {round}: no log line saying {said:?}"
        );
    }
}

/// Starts the daemon like [`TestEnv::start`], with a start-up deadline for hundreds of
/// accounts on a loaded debug build.
fn start_many(env: &TestEnv) -> Daemon {
    let log = env.path("daemon-many.log");
    let log_file = std::fs::File::create(&log).expect("log file");
    let child = std::process::Command::new(bin())
        .arg("--config")
        .arg(&env.config_path)
        .arg("daemon")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(log_file)
        .spawn()
        .expect("spawn mailsync");
    let mut d = Daemon {
        child,
        log,
        socket: env.socket.clone(),
    };
    let t = std::time::Instant::now();
    let up = wait_until(Duration::from_secs(180), || {
        d.try_request(&json!({"v":1,"cmd":"status"})).is_ok()
    });
    if !up {
        let _ = d.child.kill();
        panic!(
            "daemon did not come up; log tail:\n{}",
            d.log_text()
                .lines()
                .rev()
                .take(30)
                .collect::<Vec<_>>()
                .join("\n")
        );
    }
    eprintln!(
        "daemon with many accounts answered status after {:.1} s",
        t.elapsed().as_secs_f64()
    );
    d
}

/// `status` with a read deadline for hundreds of accounts on a loaded debug build (the
/// common helper gives up after 10 s).
fn slow_status(d: &Daemon) -> Result<serde_json::Value, String> {
    use std::io::{BufRead, BufReader, Write};
    let mut s = std::os::unix::net::UnixStream::connect(&d.socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(90)))
        .map_err(|e| e.to_string())?;
    s.write_all(b"{\"v\":1,\"cmd\":\"status\"}\n")
        .map_err(|e| e.to_string())?;
    let mut reply = String::new();
    BufReader::new(s)
        .read_line(&mut reply)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("bad reply {reply:?}: {e}"))
}

// Issue 13: with 200 Gmail accounts the daemon once stopped syncing and answering `status`:
// their concurrent sled `flush_async` calls deadlocked sled's I/O pool. `Store::flush_async`
// now runs one shared blocking flush instead; this test guards that.
#[test]
fn two_hundred_gmail_accounts_on_one_emulator_all_catch_up() {
    let count = env_usize("GMAIL_SCALE_ACCOUNTS", 200);
    const PER_ACCOUNT: usize = 15;
    let emu = unthrottled(32, 0);
    let env = TestEnv::new();
    let secret = env.path("client_secret");
    write_private(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET);
    let mut accounts = String::new();
    for i in 0..count {
        let email = format!("user{i:03}@example.com");
        let token = emu.handle().create_account(&email, PER_ACCOUNT);
        let refresh = env.path(&format!("refresh_{i:03}"));
        write_private(&refresh, &token);
        accounts.push_str(&format!(
            r#"
[[accounts]]
id = "g{i:03}"
kind = "gmail"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client_id}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{refresh}" }}
"#,
            base = emu.base,
            client_id = mailsync_emulator::DEFAULT_CLIENT_ID,
            secret = secret.display(),
            refresh = refresh.display(),
        ));
    }
    env.write_config(&format!(
        "[quota]\nscale = 1000000.0\nproject_units_per_minute = 1000000000\n{accounts}"
    ));
    let d = start_many(&env);
    let mut last = String::new();
    let mut slowest = Duration::ZERO;
    let all_caught_up = wait_until(Duration::from_secs(600), || {
        let asked = std::time::Instant::now();
        let r = match slow_status(&d) {
            Ok(r) => r,
            Err(e) => {
                last = format!("status failed: {e}");
                return false;
            }
        };
        let Some(list) = r["data"]["accounts"].as_array() else {
            last = format!("status without accounts: {r}");
            return false;
        };
        let behind: Vec<&str> = list
            .iter()
            .filter(|a| {
                !(a["phase"] == json!("caught_up")
                    && a["state"] == json!("running")
                    && a["missing"] == json!(0))
            })
            .filter_map(|a| a["account"].as_str())
            .collect();
        last = format!(
            "{} of {} behind: {:?}",
            behind.len(),
            list.len(),
            &behind[..behind.len().min(10)]
        );
        slowest = slowest.max(asked.elapsed());
        list.len() == count && behind.is_empty()
    });
    assert!(all_caught_up, "not all accounts caught up: {last}");
    eprintln!(
        "{count} accounts caught up; slowest status answer {:.1} s (debug build)",
        slowest.as_secs_f64()
    );
    d.stop();
    let store = mailsync_actors::store::Store::open(&env.data_dir).expect("open store");
    for i in (0..count).step_by(37) {
        let id = format!("g{i:03}");
        assert_eq!(
            mailsync_actors::mirror::message_count(&store, &id),
            PER_ACCOUNT as u64,
            "account {id}"
        );
    }
}
