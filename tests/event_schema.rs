//! The public event schema against the real daemon: `ctl events` streams events in the
//! versioned schema (`"v": 1`), and idempotency keys carry a generation, so a Gmail message
//! deleted and later re-added under the same id is announced again (added, deleted, added).

use crate::common::emulator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Every event the socket serves (a non-following read), as JSON.
fn socket_events(env: &TestEnv) -> Vec<Value> {
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(
        format!(
            "{}\n",
            json!({"v":1,"cmd":"events","consumer":"schema-test"})
        )
        .as_bytes(),
    )
    .expect("write");
    let mut out = Vec::new();
    for line in BufReader::new(s).lines() {
        let line = line.expect("line");
        let v: Value = serde_json::from_str(&line).expect("json");
        if v.get("end").is_some() {
            break;
        }
        if let Some(ev) = v.get("event") {
            out.push(ev.clone());
        }
    }
    out
}

#[test]
fn a_message_deleted_and_re_added_is_added_deleted_added() {
    let emu = Emu::start(config(81, 6, quota_scale(6, 2)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)), "no full sync");
    let id = emu.snapshot().messages[0].id.clone();
    emu.delete(&id);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "delete not synced"
    );
    assert_eq!(emu.redeliver(&id), id);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "re-add not synced"
    );
    let events = socket_events(&env);
    d.stop();
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["change"]["id"] == json!(id)
                && e["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("message."))
        })
        .collect();
    let kinds: Vec<&str> = mine.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["message.added", "message.deleted", "message.added"],
        "{mine:#?}"
    );
    let keys: std::collections::BTreeSet<&str> =
        mine.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys.len(), 3, "three distinct idempotency keys: {keys:?}");
    assert!(
        events.iter().all(|e| e["v"] == json!(1)),
        "every event is schema v1"
    );
    assert_mirror_equals(&env.data_dir, &emu);
}
