//! The `fair` scenario: many accounts in initial sync and a few receiving live changes, all
//! under one OAuth project's budget (the emulator's per-project limit, quota on, and the same
//! figure in the daemon's `[quota] project_units_per_minute`).
//!
//! The live accounts get their changes the way a real one does: the bench delivers a message
//! in the emulator, mints the signed Pub/Sub push the emulator's test key signs and POSTs it
//! to the daemon's push endpoint, then times until that message's `message.added` reaches a
//! following feed stream over the control socket. The same stream counts every backfilling
//! account's `message.added` events over the measured window: its throughput.
//!
//! Prints the change → feed latency (p50, p99, max), each backfilling account's messages in
//! the window (min, median, max, and min / median), the total rate next to what the project
//! budget allows, and how many 429s the emulator sent.

use crate::daemon::{Daemon, account_block};
use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::mpsc;
use std::time::{Duration, Instant};

const AUD: &str = "https://mailsync.bench/push/gmail";
const TOPIC: &str = "projects/mailsync-emulator/topics/gmail";
/// What one message costs to list and fetch under the 2026 profile (messages.get = 20).
const UNITS_PER_MESSAGE: f64 = 20.0;

/// The scenario's knobs.
pub struct FairArgs {
    /// Accounts in initial sync.
    pub backfill: usize,
    /// Accounts receiving live changes.
    pub live: usize,
    /// Messages in each backfilling account.
    pub messages: usize,
    /// The project's Gmail units per minute (both sides).
    pub project_upm: u64,
    /// Live changes sent, one every `GAP`.
    pub changes: usize,
    /// Seconds of backfill before the measured window opens (the buckets' burst is spent).
    pub warmup_secs: u64,
}

/// Time between two live changes.
const GAP: Duration = Duration::from_millis(500);

fn backfill_id(i: usize) -> String {
    format!("b{i:03}")
}

fn live_id(i: usize) -> String {
    format!("l{i:02}")
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The account of a `message.added:<account>:<id>:g<n>` key.
fn added_account(key: &str) -> Option<&str> {
    key.strip_prefix("message.added:")?.split(':').next()
}

/// Feed arrivals seen so far: `(key, at)` by key for the live changes, and the backfilling
/// accounts' `message.added` times.
#[derive(Default)]
struct Seen {
    by_key: HashMap<String, Instant>,
    added: HashMap<String, Vec<Instant>>,
}

impl Seen {
    fn take(&mut self, key: String, at: Instant) {
        if let Some(account) = added_account(&key)
            && account.starts_with('b')
        {
            self.added.entry(account.to_string()).or_default().push(at);
        } else {
            self.by_key.insert(key, at);
        }
    }

    fn drain(&mut self, rx: &mpsc::Receiver<(String, Instant)>) {
        while let Ok((k, at)) = rx.try_recv() {
            self.take(k, at);
        }
    }

    fn in_window(&self, account: &str, from: Instant, to: Instant) -> usize {
        self.added
            .get(account)
            .map_or(0, |v| v.iter().filter(|t| **t >= from && **t < to).count())
    }
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() as f64 * p).ceil() as usize).clamp(1, sorted.len()) - 1;
    sorted[i]
}

/// Runs the scenario.
pub fn run(f: &FairArgs) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let emu = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cfg = EmulatorConfig {
            seed: 17,
            messages: 0,
            quota: QuotaMode::On,
            project_units_per_minute: f.project_upm,
            push_audience: Some(AUD.into()),
            ..EmulatorConfig::default()
        };
        Emulator::start(cfg, l).await.expect("emulator")
    });
    let base = emu.base_url();
    let dir = std::env::temp_dir().join(format!("scale-bench-fair-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let secret = dir.join("client_secret");
    std::fs::write(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET).expect("secret");
    let mut blocks = String::new();
    let mut add = |id: &str, email: &str, n: usize, extra: &str| {
        let token = emu.create_account(email, n);
        let refresh = dir.join(format!("refresh_{id}"));
        std::fs::write(&refresh, token).expect("refresh token");
        blocks.push_str(&account_block(id, email, &base, &secret, &refresh, extra));
    };
    for i in 0..f.backfill {
        add(
            &backfill_id(i),
            &format!("bulk{i:03}@example.com"),
            f.messages,
            "",
        );
    }
    // Live accounts rely on push; the long poll keeps polling out of their latency.
    let live_extra = format!("push_topic = \"{TOPIC}\"\npoll_interval_secs = 3600");
    for i in 0..f.live {
        add(
            &live_id(i),
            &format!("live{i:02}@example.com"),
            20,
            &live_extra,
        );
    }
    let port = free_port();
    let sections = format!(
        "[quota]\nproject_units_per_minute = {upm}\n\n\
         [push]\nport = {port}\naudience = \"{AUD}\"\n\
         service_account = \"gmail-api-push@system.gserviceaccount.com\"\n\
         jwks_url = \"{base}/oauth2/v3/certs\"\n",
        upm = f.project_upm,
    );
    let d = Daemon::start(&dir, &sections, &blocks);
    let feed = crate::feed_follow::follow(d.socket(), "scale-bench").expect("feed stream");
    let mut seen = Seen::default();
    // The live accounts' own initial syncs are small; wait for them.
    let t0 = Instant::now();
    loop {
        let live_done = d
            .request(&json!({"v":1,"cmd":"status"}))
            .and_then(|r| r["data"]["accounts"].as_array().cloned())
            .is_some_and(|list| {
                list.iter()
                    .filter(|a| a["account"].as_str().is_some_and(|i| i.starts_with('l')))
                    .filter(|a| a["phase"] == json!("caught_up") && a["missing"] == json!(0))
                    .count()
                    == f.live
            });
        seen.drain(&feed);
        if live_done && t0.elapsed() >= Duration::from_secs(f.warmup_secs) {
            break;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(600),
            "the live accounts did not catch up in 10 minutes; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let refused_before = emu.counters().rate_limit_refusals;
    let http = reqwest::Client::new();
    let endpoint = format!("http://127.0.0.1:{port}/push/gmail");
    let window_start = Instant::now();
    let mut latencies = Vec::with_capacity(f.changes);
    for k in 0..f.changes {
        let next = window_start + GAP * k as u32;
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
        let j = k % f.live;
        let email = format!("live{j:02}@example.com");
        let (id, token, body) = rt.block_on(async {
            let m: Value = http
                .post(format!("{base}/_emulator/accounts/{email}/messages"))
                .json(&json!({}))
                .send()
                .await
                .expect("deliver")
                .json()
                .await
                .expect("deliver answer");
            let id = m["id"].as_str().expect("message id").to_string();
            let hid = m["historyId"].as_str().unwrap_or("1").to_string();
            let minted: Value = http
                .post(format!("{base}/_emulator/push/mint"))
                .json(&json!({"history_id": hid, "email_address": email, "endpoint": endpoint}))
                .send()
                .await
                .expect("mint")
                .json()
                .await
                .expect("mint answer");
            let token = minted["token"].as_str().expect("token").to_string();
            (id, token, minted["body"].clone())
        });
        let key = format!("message.added:{}:{id}:g0", live_id(j));
        let sent = Instant::now();
        let status = rt.block_on(async {
            http.post(&endpoint)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
        });
        assert!(
            matches!(status, Ok(204)),
            "push {k}: {status:?}; see {}",
            dir.display()
        );
        let deadline = sent + Duration::from_secs(60);
        let arrived = loop {
            if let Some(at) = seen.by_key.remove(&key) {
                break at;
            }
            match feed.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok((k, at)) => seen.take(k, at),
                Err(_) => panic!("{key} never reached the feed; see {}", dir.display()),
            }
        };
        latencies.push(arrived.saturating_duration_since(sent).as_secs_f64() * 1000.0);
    }
    let window_end = Instant::now();
    std::thread::sleep(Duration::from_millis(200));
    seen.drain(&feed);
    let refused = emu.counters().rate_limit_refusals - refused_before;
    let secs = window_end.duration_since(window_start).as_secs_f64();
    let mut per_account: Vec<(usize, String)> = (0..f.backfill)
        .map(|i| {
            let id = backfill_id(i);
            (seen.in_window(&id, window_start, window_end), id)
        })
        .collect();
    per_account.sort();
    let finished = (0..f.backfill)
        .filter(|i| {
            seen.added
                .get(&backfill_id(*i))
                .is_some_and(|v| v.len() >= f.messages)
        })
        .count();
    latencies.sort_by(f64::total_cmp);
    let counts: Vec<f64> = per_account.iter().map(|(n, _)| *n as f64).collect();
    let median = percentile(&counts, 0.5);
    let total: usize = per_account.iter().map(|(n, _)| n).sum();
    let budget = f.project_upm as f64 / 60.0 / UNITS_PER_MESSAGE;
    println!(
        "fair: {} accounts in initial sync ({} messages each), {} live; project budget {} units/min",
        f.backfill, f.messages, f.live, f.project_upm
    );
    println!(
        "  change → feed over {} live changes: p50 {:.0} ms, p99 {:.0} ms, max {:.0} ms",
        latencies.len(),
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99),
        percentile(&latencies, 1.0),
    );
    println!(
        "  backfill over the {secs:.0} s window: per account min {} ({}), median {median:.0}, max {}; min / median {:.2}; {finished} accounts finished before the end",
        per_account.first().map_or(0, |p| p.0),
        per_account.first().map_or("-", |p| p.1.as_str()),
        per_account.last().map_or(0, |p| p.0),
        per_account.first().map_or(0.0, |p| p.0 as f64) / median.max(1.0),
    );
    println!(
        "  total {:.0} msg/s in the window (the project budget allows about {budget:.0}); rate-limit answers in the window: {refused}",
        total as f64 / secs.max(0.001)
    );
    d.stop();
    rt.block_on(emu.shutdown());
    if std::env::var_os("SCALE_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
}
