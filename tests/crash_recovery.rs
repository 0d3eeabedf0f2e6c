//! kill -9 while jobs are leased: after restarts every job completes, none is lost, and the
//! feed holds exactly one event per idempotency key. Two oracles: the feed read over the
//! socket and replayed as a consumer would (`common/feed_oracle.rs`), and sled read directly
//! after the daemon has exited, independent of the socket protocol.

use crate::common::feed_oracle::{read_feed, replay};
use crate::common::*;
use mailsync_actors::mirror::Change;
use mailsync_actors::store::{Store, decode};
use serde_json::json;
use std::collections::{HashMap, HashSet};
use std::time::Duration;

const MESSAGES: usize = 120;
const KILLS: usize = 3;
const BATCH: usize = 5;

fn completions(path: &std::path::Path) -> Vec<String> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

#[test]
fn kill_9_while_jobs_are_leased_loses_nothing_and_duplicates_nothing_downstream() {
    let env = TestEnv::new();
    let done = env.path("completions.txt");
    env.write_config(&test_account(
        "crashy",
        &format!(
            "messages = {MESSAGES}\njob_delay_ms = 40\ncompletions_file = \"{}\"",
            done.display()
        ),
    ));
    for round in 0..KILLS {
        let d = env.start();
        let target = (round + 1) * MESSAGES / (KILLS + 1);
        assert!(
            wait_until(Duration::from_secs(30), || completions(&done).len()
                >= target),
            "no progress before kill {round}: {}",
            d.log_text()
        );
        d.kill9();
    }
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || d.account("crashy")["phase"]
            == json!("caught_up")),
        "never caught up: {}",
        d.status()
    );
    // A consumer reading the feed over the socket rebuilds every message exactly once.
    let replayed = replay(&read_feed(&d), "crashy");
    assert!(
        replayed.violations.is_empty(),
        "feed replay: {:?}",
        replayed.violations
    );
    assert_eq!(
        replayed.messages.len(),
        MESSAGES,
        "feed replay misses messages"
    );
    d.stop();

    // Every message completed at least once; repeats only for batches in flight at a kill.
    let lines = completions(&done);
    let mut per_id: HashMap<&str, usize> = HashMap::new();
    for l in &lines {
        *per_id.entry(l.as_str()).or_default() += 1;
    }
    assert_eq!(per_id.len(), MESSAGES, "lost completions");
    let repeats: usize = per_id.values().map(|n| n - 1).sum();
    assert!(
        repeats <= KILLS * BATCH,
        "{repeats} repeated completions: more than the batches in flight"
    );

    // The feed: exactly one message.added per message, no key twice.
    let store = Store::open(&env.data_dir).expect("reopen store");
    let feed = store.feed();
    let events = feed.read_after(0, 100_000).expect("read feed");
    let mut keys = HashSet::new();
    let mut added = HashSet::new();
    for ev in &events {
        assert!(
            keys.insert(ev.key.clone()),
            "duplicate event key {}",
            ev.key
        );
        if ev.kind == "message.added" {
            let change: Change = decode(&ev.payload).expect("payload");
            if let Change::MessageAdded { id, .. } = change {
                assert!(added.insert(id.0), "message added twice");
            }
        }
    }
    assert_eq!(added.len(), MESSAGES, "feed misses messages");
    let seqs: Vec<u64> = events.iter().map(|e| e.seq).collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "feed out of order");
}
