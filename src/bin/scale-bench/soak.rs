//! The `soak` scenario: ACCOUNTS Gmail accounts in one daemon for MINUTES while the emulator's
//! mutation generator changes them (deliveries, reads, labels, archives, trashes, deletes,
//! spread over every account), each change announced by a signed Pub/Sub push to the daemon's
//! push endpoint, the minute's poll as the safety net.
//!
//! Every SAMPLE_SECS it records the daemon's RSS, open files, threads and runtime tasks, the
//! bytes of its data directory, the feed events written, the dead letters and the accounts'
//! states. At the end it pauses the generator, waits until every account's cursor is the
//! emulator's history id, stops the daemon and compares each account's mirror (ids, labels and
//! the SHA-256 of the stored bytes) with the emulator's truth.
//!
//! Prints the samples, then the verdicts of the goals: RSS and open files within 10 %
//! after the first 5 minutes (the largest and smallest sample against the one at 5 minutes),
//! the feed and the store against the mailboxes they hold, zero dead letters, mirror equal.

use crate::daemon::{Daemon, ProcSample, account_block};
use mailsync_actors::mirror;
use mailsync_actors::model::MessageId;
use mailsync_actors::store::Store;
use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode};
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

const AUD: &str = "https://mailsync.bench/push/gmail";
const TOPIC: &str = "projects/mailsync-emulator/topics/gmail";
/// The part of the run the flatness goals leave out (start-up, first polls, caches filling).
const WARMUP: Duration = Duration::from_secs(300);

/// The scenario's knobs.
pub struct SoakArgs {
    pub accounts: usize,
    pub minutes: u64,
    /// Mutations per second, across all accounts.
    pub rate: f64,
    /// Seeded messages per account.
    pub messages: usize,
    pub sample_secs: u64,
    /// Lifetime of the access tokens the emulator grants.
    pub token_ttl_secs: u64,
}

fn id(i: usize) -> String {
    format!("s{i:03}")
}

fn email(i: usize) -> String {
    format!("soak{i:03}@example.com")
}

/// One sample of the run.
struct Sample {
    at: Duration,
    proc: ProcSample,
    tasks: Option<u64>,
    data_bytes: u64,
    feed_events: u64,
    dead: u64,
    running: usize,
    degraded: usize,
}

/// Bytes of the files under `dir` (apparent sizes).
fn bytes_under(dir: &Path) -> u64 {
    let mut total = 0;
    let mut todo = vec![dir.to_path_buf()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for e in entries.flatten() {
            match e.metadata() {
                Ok(m) if m.is_dir() => todo.push(e.path()),
                Ok(m) => total += m.len(),
                Err(_) => {}
            }
        }
    }
    total
}

/// The sum of a metric's samples in `ctl metrics` (every label set).
fn metric_sum(d: &Daemon, name: &str) -> u64 {
    d.request(&json!({"v":1,"cmd":"metrics"}))
        .and_then(|r| r["data"]["text"].as_str().map(str::to_string))
        .map_or(0, |text| {
            text.lines()
                .filter(|l| {
                    l.strip_prefix(name)
                        .is_some_and(|rest| rest.starts_with(' ') || rest.starts_with('{'))
                })
                .filter_map(|l| l.rsplit_once(' '))
                .filter_map(|(_, v)| v.trim().parse::<f64>().ok())
                .map(|v| v as u64)
                .sum()
        })
}

fn accounts_status(d: &Daemon) -> Vec<Value> {
    d.request(&json!({"v":1,"cmd":"status"}))
        .and_then(|r| r["data"]["accounts"].as_array().cloned())
        .unwrap_or_default()
}

fn take_sample(d: &Daemon, dir: &Path, started: Instant) -> Sample {
    let list = accounts_status(d);
    Sample {
        at: started.elapsed(),
        proc: ProcSample::of(d.pid()),
        tasks: d.runtime_tasks(),
        data_bytes: bytes_under(&dir.join("data")),
        feed_events: metric_sum(d, "mailsync_feed_events_total"),
        dead: list
            .iter()
            .map(|a| a["dead_lettered"].as_u64().unwrap_or(0))
            .sum(),
        running: list
            .iter()
            .filter(|a| a["state"] == json!("running"))
            .count(),
        degraded: list
            .iter()
            .filter(|a| a["health"] == json!("degraded"))
            .count(),
    }
}

/// The emulator's history id of every account, by address.
fn history_ids(emu: &EmulatorHandle) -> BTreeMap<String, u64> {
    let accounts = emu
        .state()
        .accounts
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    accounts
        .iter()
        .map(|(e, a)| (e.clone(), a.mailbox.history_id))
        .collect()
}

/// Accounts whose cursor is not (yet) the emulator's history id.
fn behind(d: &Daemon, emu: &EmulatorHandle, n: usize) -> usize {
    let truth = history_ids(emu);
    let list = accounts_status(d);
    (0..n)
        .filter(|&i| {
            let want = truth.get(&email(i)).map(|h| format!("historyId {h}"));
            !list.iter().any(|a| {
                a["account"] == json!(id(i))
                    && a["phase"] == json!("caught_up")
                    && a["missing"] == json!(0)
                    && want.as_deref().is_some_and(|w| a["cursor"] == json!(w))
            })
        })
        .count()
}

/// What comparing one account's mirror with the emulator found.
#[derive(Default)]
struct Comparison {
    messages: usize,
    raw_bytes: u64,
    diffs: Vec<String>,
}

/// Compares an account's mirror with the emulator's truth, message by message.
fn compare(store: &Store, emu: &EmulatorHandle, i: usize) -> Comparison {
    let mut out = Comparison::default();
    let Some(snap) = emu.snapshot(&email(i)) else {
        out.diffs.push(format!("{}: no such account", email(i)));
        return out;
    };
    let mut truth: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    for m in snap.messages {
        let mut l = m.label_ids;
        l.sort();
        l.dedup();
        truth.insert(m.id, (l, m.sha256));
    }
    let mut held: BTreeMap<String, (Vec<String>, String)> = BTreeMap::new();
    let scan = mirror::for_each_message(store, &id(i), |m| {
        let mut l: Vec<String> = m.label_ids.iter().map(|x| x.0.clone()).collect();
        l.sort();
        held.insert(m.id.0.clone(), (l, m.raw_sha256.clone()));
        Ok(())
    });
    let diffs = &mut out.diffs;
    if let Err(e) = scan {
        diffs.push(format!("{}: scanning the mirror: {e}", id(i)));
    }
    for (mid, (labels, sha)) in &truth {
        match held.get(mid) {
            None => diffs.push(format!("{}: missing {mid}", id(i))),
            Some((_, s)) if s != sha => diffs.push(format!("{}: {mid} sha {s} != {sha}", id(i))),
            Some((l, _)) if l != labels => {
                diffs.push(format!("{}: {mid} labels {l:?} != {labels:?}", id(i)))
            }
            Some(_) => {}
        }
        let raw = mirror::raw(store, &id(i), &MessageId(mid.clone()));
        match raw {
            Ok(Some(bytes)) if mirror::sha256_hex(&bytes) == *sha => {
                out.raw_bytes += bytes.len() as u64;
            }
            Ok(Some(_)) => diffs.push(format!("{}: {mid} stored bytes do not hash", id(i))),
            Ok(None) if held.contains_key(mid) => {
                diffs.push(format!("{}: {mid} bytes missing", id(i)))
            }
            Ok(None) => {}
            Err(e) => diffs.push(format!("{}: {mid} bytes: {e}", id(i))),
        }
    }
    for mid in held.keys().filter(|m| !truth.contains_key(*m)) {
        diffs.push(format!("{}: extra {mid}", id(i)));
    }
    out.messages = truth.len();
    out
}

fn mib(b: u64) -> f64 {
    b as f64 / 1024.0 / 1024.0
}

/// (smallest, largest) of `f` over the samples after the warm-up, and the value at its end.
fn spread(samples: &[Sample], f: impl Fn(&Sample) -> f64) -> Option<(f64, f64, f64)> {
    let base = samples.iter().find(|s| s.at >= WARMUP)?;
    let after: Vec<f64> = samples.iter().filter(|s| s.at >= WARMUP).map(&f).collect();
    let lo = after.iter().copied().fold(f64::INFINITY, f64::min);
    let hi = after.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    Some((f(base), lo, hi))
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "MISSED" }
}

/// Runs the scenario.
pub fn run(a: &SoakArgs) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let port = crate::fair::free_port();
    let emu = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cfg = EmulatorConfig {
            seed: 23,
            messages: 0,
            quota: QuotaMode::Off,
            push_endpoint: Some(format!("http://127.0.0.1:{port}/push/gmail")),
            push_audience: Some(AUD.into()),
            mutation_rate: Some(a.rate),
            mutate_every_account: true,
            access_token_ttl: Duration::from_secs(a.token_ttl_secs),
            ..EmulatorConfig::default()
        };
        Emulator::start(cfg, l).await.expect("emulator")
    });
    emu.pause_mutations(true);
    let base = emu.base_url();
    let dir = std::env::temp_dir().join(format!("scale-bench-soak-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let secret = dir.join("client_secret");
    std::fs::write(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET).expect("secret");
    let mut blocks = String::new();
    let extra = format!("push_topic = \"{TOPIC}\"");
    for i in 0..a.accounts {
        let token = emu.create_account(&email(i), a.messages);
        let refresh = dir.join(format!("refresh_{}", id(i)));
        std::fs::write(&refresh, token).expect("refresh token");
        blocks.push_str(&account_block(
            &id(i),
            &email(i),
            &base,
            &secret,
            &refresh,
            &extra,
        ));
    }
    let sections = format!(
        "{quota}\n[push]\nport = {port}\naudience = \"{AUD}\"\n\
         service_account = \"gmail-api-push@system.gserviceaccount.com\"\n\
         jwks_url = \"{base}/oauth2/v3/certs\"\n",
        quota = Daemon::QUOTA_LIFTED,
    );
    let d = Daemon::start(&dir, &sections, &blocks);
    let t0 = Instant::now();
    while behind(&d, &emu, a.accounts) > 0 {
        assert!(
            t0.elapsed() < Duration::from_secs(1_800),
            "the initial syncs did not finish in 30 minutes; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_secs(1));
    }
    eprintln!(
        "scale-bench soak: {} accounts × {} messages synced in {:.1} s; mutating at {}/s for {} min",
        a.accounts,
        a.messages,
        t0.elapsed().as_secs_f64(),
        a.rate,
        a.minutes
    );
    emu.pause_mutations(false);
    let started = Instant::now();
    let run_for = Duration::from_secs(a.minutes * 60);
    let mut samples = Vec::new();
    loop {
        let s = take_sample(&d, &dir, started);
        eprintln!(
            "  [{:>5.0} s] RSS {:.0} MiB, fds {}, threads {}, tasks {}, data {:.1} MiB, feed events {}, dead {}, running {}, degraded {}",
            s.at.as_secs_f64(),
            s.proc.rss_mib,
            s.proc.fds,
            s.proc.threads,
            s.tasks.map_or("?".into(), |t| t.to_string()),
            mib(s.data_bytes),
            s.feed_events,
            s.dead,
            s.running,
            s.degraded
        );
        samples.push(s);
        if started.elapsed() >= run_for {
            break;
        }
        std::thread::sleep(Duration::from_secs(a.sample_secs));
    }
    emu.pause_mutations(true);
    let mutated = started.elapsed();
    let settle = Instant::now();
    let mut left = behind(&d, &emu, a.accounts);
    while left > 0 && settle.elapsed() < Duration::from_secs(600) {
        std::thread::sleep(Duration::from_secs(1));
        left = behind(&d, &emu, a.accounts);
    }
    let settled = settle.elapsed();
    let last = take_sample(&d, &dir, started);
    d.stop();
    let store = Store::open(&dir.join("data")).expect("open the store");
    let feed_len = store
        .feed()
        .read_after(0, 100_000_000)
        .map_or(0, |events| events.len());
    let mut compared = 0;
    let mut raw_bytes = 0;
    let mut diffs = Vec::new();
    for i in 0..a.accounts {
        let mut c = compare(&store, &emu, i);
        compared += c.messages;
        raw_bytes += c.raw_bytes;
        diffs.append(&mut c.diffs);
    }
    drop(store);
    let c = emu.counters();
    println!(
        "soak: {} accounts, {} min at {} mutations/s (pushed), sampled every {} s, access tokens of {} s",
        a.accounts, a.minutes, a.rate, a.sample_secs, a.token_ttl_secs
    );
    if let Some((at5, lo, hi)) = spread(&samples, |s| s.proc.rss_mib) {
        let ok = hi <= at5 * 1.1 && lo >= at5 * 0.9;
        println!(
            "  RSS after 5 min: {at5:.0} MiB, then {lo:.0}–{hi:.0} MiB ({:+.1} % at most): {}",
            (hi / at5 - 1.0).max(1.0 - lo / at5) * 100.0,
            verdict(ok)
        );
    }
    if let Some((at5, lo, hi)) = spread(&samples, |s| s.proc.fds as f64) {
        let ok = hi <= at5 * 1.1 && lo >= at5 * 0.9;
        println!(
            "  open files after 5 min: {at5:.0}, then {lo:.0}–{hi:.0}: {}",
            verdict(ok)
        );
    }
    if let Some((at5, lo, hi)) = spread(&samples, |s| s.proc.threads as f64) {
        println!("  threads after 5 min: {at5:.0}, then {lo:.0}–{hi:.0}");
    }
    if let Some((at5, lo, hi)) = spread(&samples, |s| s.tasks.unwrap_or(0) as f64) {
        println!("  runtime tasks after 5 min: {at5:.0}, then {lo:.0}–{hi:.0}");
    }
    let first = &samples[0];
    println!(
        "  data directory {:.1} → {:.1} MiB ({:.2}× the {:.1} MiB of raw messages held at the end); feed {} events ({} written during the soak)",
        mib(first.data_bytes),
        mib(last.data_bytes),
        last.data_bytes as f64 / raw_bytes.max(1) as f64,
        mib(raw_bytes),
        feed_len,
        last.feed_events.saturating_sub(first.feed_events)
    );
    println!(
        "  dead letters {}: {}; accounts degraded at the end {}; emulator pushes {} ({} failed), refusals {}",
        last.dead,
        verdict(last.dead == 0),
        last.degraded,
        c.push_attempts,
        c.push_failures,
        c.rate_limit_refusals
    );
    println!(
        "  caught up {:.1} s after {:.0} min of changes ({left} accounts still behind); mirror vs emulator over {compared} messages: {} differences: {}",
        settled.as_secs_f64(),
        mutated.as_secs_f64() / 60.0,
        diffs.len(),
        verdict(diffs.is_empty() && left == 0)
    );
    for d in diffs.iter().take(15) {
        println!("    {d}");
    }
    rt.block_on(emu.shutdown());
    if std::env::var_os("SCALE_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", dir.display());
    }
}
