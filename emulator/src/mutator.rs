//! The background mutation generator: at a configured rate, applies seeded changes to the
//! default account, or with `mutate_every_account` to an account drawn at random among all
//! (deliver, read, label, archive, trash, delete, calendar edits), through the same store
//! functions as the API, so history and notifications follow. It can be paused
//! ([`EmulatorState::mutations_paused`]) so that a soak can let the client settle.

use std::sync::Arc;
use std::time::Duration;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::state::EmulatorState;
use crate::util::lock;

/// The account the next mutation goes to: the default one, or one drawn among all (in
/// address order, so a seed gives the same sequence).
fn target(st: &EmulatorState, rng: &mut ChaCha8Rng) -> String {
    if !st.config.mutate_every_account {
        return st.config.account.to_ascii_lowercase();
    }
    let mut all: Vec<String> = lock(&st.accounts).keys().cloned().collect();
    all.sort();
    if all.is_empty() {
        return st.config.account.to_ascii_lowercase();
    }
    let i = rng.random_range(0..all.len());
    all.swap_remove(i)
}

/// Applies one seeded mutation; returns a short description.
pub fn step(st: &EmulatorState, rng: &mut ChaCha8Rng) -> String {
    let email = target(st, rng);
    let now = st.clock.now_ms();
    let x: f64 = rng.random();
    let mut pings = Vec::new();
    let (desc, labels) = {
        let mut accts = lock(&st.accounts);
        let Some(acct) = accts.get_mut(&email) else {
            return "no account".into();
        };
        if x >= 0.95 {
            let cal = 0;
            let set = &mut acct.calendars;
            let ids: Vec<String> = set.calendars[cal]
                .events
                .values()
                .filter(|e| e.status == "confirmed" && e.recurring_event_id.is_none())
                .map(|e| e.id.clone())
                .collect();
            let d = if ids.is_empty() || rng.random_bool(0.4) {
                let start = now + rng.random_range(1..30) * 86_400_000;
                let _ = set.create_event(
                    cal,
                    None,
                    "Generated meeting",
                    start,
                    start + 3_600_000,
                    false,
                    None,
                    now,
                );
                "calendar create".to_string()
            } else {
                let id = &ids[rng.random_range(0..ids.len())];
                if rng.random_bool(0.5) {
                    let _ =
                        set.update_event(cal, id, now, |e| e.summary = "Updated meeting".into());
                    "calendar update".to_string()
                } else {
                    let _ = set.delete_event(cal, id, now);
                    "calendar delete".to_string()
                }
            };
            pings = set.pings(cal, now);
            (d, Vec::new())
        } else {
            let mb = &mut acct.mailbox;
            let recent: Vec<u64> = mb.messages.keys().rev().take(200).copied().collect();
            let pick = |rng: &mut ChaCha8Rng| {
                recent
                    .get(rng.random_range(0..recent.len().max(1)))
                    .copied()
            };
            if x < 0.4 || recent.is_empty() {
                let r = mb.deliver_generated(now, None);
                (
                    "deliver".to_string(),
                    r.map(|_| vec!["INBOX".to_string(), "UNREAD".to_string()])
                        .unwrap_or_default(),
                )
            } else if let Some(id) = pick(rng) {
                let labels = mb
                    .messages
                    .get(&id)
                    .map(|m| m.labels.clone())
                    .unwrap_or_default();
                let (d, add, remove): (&str, Vec<String>, Vec<String>) = if x < 0.6 {
                    ("read", vec![], vec!["UNREAD".into()])
                } else if x < 0.75 {
                    (
                        "label",
                        vec![format!("Label_{}", rng.random_range(1..=5))],
                        vec![],
                    )
                } else if x < 0.85 {
                    ("archive", vec![], vec!["INBOX".into()])
                } else if x < 0.9 {
                    ("trash", vec!["TRASH".into()], vec![])
                } else {
                    let _ = mb.delete(now, id);
                    ("delete", vec![], vec![])
                };
                if d != "delete" {
                    let _ = mb.modify(now, id, &add, &remove);
                }
                let mut all = labels;
                all.extend(add);
                all.extend(remove);
                (d.to_string(), all)
            } else {
                ("noop".to_string(), Vec::new())
            }
        }
    };
    for p in pings {
        let _ = st.outbound.send(crate::pubsub::Outbound::Calendar(p));
    }
    if !labels.is_empty() || desc == "delete" {
        st.notify_gmail(&email, &labels);
    }
    desc
}

/// Runs the generator until shutdown.
pub async fn run(st: Arc<EmulatorState>, rate: f64) {
    let mut rng = ChaCha8Rng::seed_from_u64(st.config.seed ^ 0x003D_7A7E);
    let period = Duration::from_secs_f64(1.0 / rate.max(0.001));
    let mut tick = tokio::time::interval(period);
    loop {
        tokio::select! {
            _ = tick.tick() => {
                if st.mutations_paused.load(std::sync::atomic::Ordering::Relaxed) {
                    continue;
                }
                let d = step(&st, &mut rng);
                tracing::trace!(mutation = %d, "mutation applied");
            }
            _ = st.shutdown.cancelled() => break,
        }
    }
}
