//! The feed-replay oracle: a consumer's view of an account rebuilt from the feed alone.
//!
//! [`read_feed`] reads every event of the daemon's feed over the real control socket, as a
//! consumer would (`events --from 1`, which only reads and acknowledges nothing);
//! [`replay`] rebuilds the mailbox from the events of one account — `message.added`,
//! `message.deleted`, `message.labels_changed`, `label.created` / `label.updated` /
//! `label.deleted` — checking on the way that each event makes sense where it stands (no add
//! of a live message, no delete or relabel of an unknown one, a relabel's delta agrees with its
//! full set, no label used before its `label.created`); [`assert_feed_replays_to_emulator`]
//! compares the result with the emulator's truth: the same messages with the same labels and
//! raw bytes, and the same labels with the same names.

use super::Daemon;
use super::emulator::{ACCOUNT, Emu, MessageSet, diff, truth};
use serde_json::{Value, json};
use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Every event in the daemon's feed, read over the control socket from sequence 1.
pub fn read_feed(d: &Daemon) -> Vec<Value> {
    let mut s = UnixStream::connect(&d.socket).expect("connect to the control socket");
    s.set_read_timeout(Some(Duration::from_secs(60))).ok();
    let req = json!({"v":1,"cmd":"events","consumer":"feed-oracle","from":1});
    s.write_all(format!("{req}\n").as_bytes())
        .expect("send the events request");
    let mut r = BufReader::new(s);
    let mut events = Vec::new();
    loop {
        let mut line = String::new();
        let n = r.read_line(&mut line).expect("read the feed");
        assert!(n > 0, "the feed stream closed before its end marker");
        let v: Value =
            serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad feed line {line:?}: {e}"));
        if v.get("end") == Some(&json!(true)) {
            return events;
        }
        if let Some(ev) = v.get("event") {
            events.push(ev.clone());
        } else {
            assert_eq!(v["ok"], json!(true), "the events request failed: {v}");
        }
    }
}

/// An account rebuilt from its events.
#[derive(Debug, Default)]
pub struct Replayed {
    /// Messages as (labels sorted, raw sha256), like the emulator's truth.
    pub messages: MessageSet,
    /// Label id → name.
    pub labels: BTreeMap<String, String>,
    /// Events that made no sense where they stood (empty for a correct feed).
    pub violations: Vec<String>,
    /// Messages that used a label before its `label.created` (sources that announce their
    /// labels, like Gmail, must have none).
    pub labels_used_early: Vec<String>,
}

fn strings(v: &Value) -> Vec<String> {
    let mut out: Vec<String> = v
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out.dedup();
    out
}

/// Rebuilds `account` from `events` (other accounts' events are skipped).
pub fn replay(events: &[Value], account: &str) -> Replayed {
    let mut out = Replayed::default();
    let mut keys = BTreeSet::new();
    let mut last_seq = 0;
    for ev in events.iter().filter(|e| e["account"] == json!(account)) {
        let seq = ev["seq"].as_u64().unwrap_or(0);
        let key = ev["key"].as_str().unwrap_or("").to_owned();
        if seq <= last_seq {
            out.violations.push(format!("seq {seq} after {last_seq}"));
        }
        last_seq = seq;
        if !keys.insert(key.clone()) {
            out.violations
                .push(format!("seq {seq}: key {key} seen before"));
        }
        let c = &ev["change"];
        let id = c["id"].as_str().unwrap_or("").to_owned();
        let uses_labels = |labels: &[String], out: &mut Replayed| {
            for l in labels {
                if !out.labels.contains_key(l) {
                    out.labels_used_early.push(format!(
                        "seq {seq}: {id} uses label {l} before its label.created"
                    ));
                }
            }
        };
        match ev["kind"].as_str().unwrap_or("") {
            "message.added" => {
                let labels = strings(&c["label_ids"]);
                uses_labels(&labels, &mut out);
                let sha = c["raw_sha256"].as_str().unwrap_or("").to_owned();
                if out.messages.insert(id.clone(), (labels, sha)).is_some() {
                    out.violations
                        .push(format!("seq {seq}: {id} added while already present"));
                }
            }
            "message.deleted" => {
                let was_there = out.messages.remove(&id).is_some();
                if !was_there {
                    out.violations
                        .push(format!("seq {seq}: {id} deleted but not present"));
                }
            }
            "message.labels_changed" => {
                let labels = strings(&c["label_ids"]);
                uses_labels(&labels, &mut out);
                let Some(m) = out.messages.get_mut(&id) else {
                    out.violations
                        .push(format!("seq {seq}: labels of unknown message {id} changed"));
                    continue;
                };
                let mut expect: BTreeSet<String> = m.0.iter().cloned().collect();
                expect.extend(strings(&c["added"]));
                for r in strings(&c["removed"]) {
                    expect.remove(&r);
                }
                if expect.into_iter().collect::<Vec<_>>() != labels {
                    out.violations.push(format!(
                        "seq {seq}: {id} had {:?}, +{} -{} does not give {labels:?}",
                        m.0, c["added"], c["removed"]
                    ));
                }
                m.0 = labels;
            }
            "label.created" | "label.updated" => {
                let l = &c["label"];
                let lid = l["id"].as_str().unwrap_or("").to_owned();
                out.labels
                    .insert(lid, l["name"].as_str().unwrap_or("").to_owned());
            }
            "label.deleted" => {
                let was_there = out.labels.remove(&id).is_some();
                if !was_there {
                    out.violations
                        .push(format!("seq {seq}: unknown label {id} deleted"));
                }
            }
            _ => {}
        }
    }
    out
}

/// Reads the whole feed over the socket, rebuilds the gmail account from it and panics with
/// the differences unless it equals the emulator (messages, labels, raw bytes; label names).
/// The daemon must still run and be caught up. Status reads sled as committed while the feed
/// shows only flushed events, so the last batch may reach the feed a flush after status says
/// `caught_up`: a mismatch is read again until it clears (30 s); an event that makes no sense
/// fails at once.
pub fn assert_feed_replays_to_emulator(d: &Daemon, emu: &Emu) {
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    loop {
        let (events, problems) = compare(d, emu);
        if problems.is_empty() {
            return;
        }
        if problems.iter().any(|p| p.starts_with("seq ")) || std::time::Instant::now() > deadline {
            panic!(
                "feed replay ({} events) != emulator:\n{}\naccount: {}",
                events,
                problems.join("\n"),
                d.account(ACCOUNT)
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// One read of the feed against the emulator: the number of events read and the problems.
fn compare(d: &Daemon, emu: &Emu) -> (usize, Vec<String>) {
    let events = read_feed(d);
    let got = replay(&events, ACCOUNT);
    let snap = emu.snapshot();
    let want = truth(&snap);
    let mut problems = got.violations.clone();
    problems.extend(got.labels_used_early.iter().cloned());
    problems.truncate(15);
    let differences = diff(&got.messages, &want);
    if !differences.is_empty() {
        problems.push(format!(
            "messages rebuilt from the feed ({}) vs the emulator ({}):\n{differences}",
            got.messages.len(),
            want.len()
        ));
    }
    let want_labels: BTreeMap<String, String> = snap.labels.iter().cloned().collect();
    if got.labels != want_labels {
        let missing: Vec<_> = want_labels
            .iter()
            .filter(|(k, v)| got.labels.get(*k) != Some(v))
            .collect();
        let extra: Vec<_> = got
            .labels
            .iter()
            .filter(|(k, _)| !want_labels.contains_key(*k))
            .collect();
        problems.push(format!(
            "labels rebuilt from the feed differ: missing or renamed {missing:?}, extra {extra:?}"
        ));
    }
    (events.len(), problems)
}
