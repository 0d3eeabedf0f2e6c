//! scale-bench: many accounts in one daemon (issue 13). The daemon is the `mailsync` binary
//! built next to this one, run as a child process so its CPU, memory, open files and threads
//! (/proc/<pid>) are its own; the Google API emulator runs in this process over loopback HTTP.
//!
//! Scenario:
//! * `accounts [N] [ACTIVE] [ACTIVE_MESSAGES] [IDLE_MESSAGES] [IDLE_SECS]` — one emulator
//!   holding N Gmail accounts (default 1,000): ACTIVE of them (default 50) have
//!   ACTIVE_MESSAGES messages each (default 2,000) and so run real initial syncs side by side,
//!   the rest IDLE_MESSAGES (default 5). Quota off on both sides; the daemon's default poll
//!   interval. Prints: start-up time to every account `running`, `ctl status` answer times
//!   over the whole run (p50, p95, max), peak RSS while the active accounts sync, the time to
//!   every account caught up, then IDLE_SECS (default 60) of idle: daemon CPU as a share of a
//!   core, and open files, threads and runtime tasks at the start and the end of the idle
//!   period (growth is a leak).
//!
//! * `fair [BACKFILL] [LIVE] [MESSAGES] [PROJECT_UNITS_PER_MINUTE] [CHANGES] [WARMUP_SECS]` —
//!   BACKFILL accounts (default 100) in initial sync of MESSAGES each (default 1,000) and
//!   LIVE accounts (default 10) receiving CHANGES pushed changes (default 120, two a second)
//!   after WARMUP_SECS (default 60), all under one project budget (default 300,000 units a
//!   minute, quota on): change → feed latency and each backfilling account's share
//!   (`fair.rs`).
//!
//! * `soak [ACCOUNTS] [MINUTES] [MUTATIONS_PER_SEC] [MESSAGES] [SAMPLE_SECS] [TOKEN_TTL_SECS]`
//!   — ACCOUNTS (default 100) of MESSAGES each (default 500) for MINUTES (default 60) with the
//!   emulator's mutation generator spread over all of them (default 5 changes a second,
//!   pushed), sampled every SAMPLE_SECS (default 30): RSS, open files, tasks, data directory
//!   and feed over time, dead letters, and the mirror against the emulator at the end
//!   (`soak.rs`). The emulator grants access tokens for TOKEN_TTL_SECS (default 3600, as
//!   Google does); a shorter one puts several rounds of token refreshes into one run.
//!
//! Run: `cargo build --release -p mailsync --bins && target/release/scale-bench accounts`.
//! `SCALE_BENCH_KEEP=1` keeps the bench directory (config, data, daemon log).

mod daemon;
mod fair;
#[path = "../bench_common/feed_follow.rs"]
mod feed_follow;
mod soak;

use daemon::{Daemon, ProcSample};
use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode};
use serde_json::{Value, json};
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct Args {
    accounts: usize,
    active: usize,
    active_messages: usize,
    idle_messages: usize,
    idle_secs: u64,
}

fn args() -> Result<(String, Args), String> {
    let argv: Vec<String> = std::env::args().collect();
    let num = |i: usize, d: usize| -> Result<usize, String> {
        argv.get(i).map_or(Ok(d), |v| {
            v.parse()
                .map_err(|_| format!("argument {i} ({v:?}) is not a number"))
        })
    };
    let scenario = argv.get(1).cloned().unwrap_or_else(|| "accounts".into());
    let a = Args {
        accounts: num(2, 1_000)?,
        active: num(3, 50)?,
        active_messages: num(4, 2_000)?,
        idle_messages: num(5, 5)?,
        idle_secs: num(6, 60)? as u64,
    };
    if a.active > a.accounts {
        return Err(format!(
            "ACTIVE ({}) is more than N ({})",
            a.active, a.accounts
        ));
    }
    Ok((scenario, a))
}

fn main() {
    let (scenario, a) = match args() {
        Ok(v) => v,
        Err(e) => {
            eprintln!("scale-bench: {e}");
            std::process::exit(2);
        }
    };
    match scenario.as_str() {
        "accounts" => accounts(&a),
        "fair" => {
            // fair [BACKFILL] [LIVE] [MESSAGES] [PROJECT_UNITS_PER_MINUTE] [CHANGES] [WARMUP_SECS]
            let argv: Vec<String> = std::env::args().collect();
            let num = |i: usize, d: u64| argv.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
            fair::run(&fair::FairArgs {
                backfill: num(2, 100) as usize,
                live: num(3, 10).max(1) as usize,
                messages: num(4, 1_000) as usize,
                project_upm: num(5, 300_000),
                changes: num(6, 120) as usize,
                warmup_secs: num(7, 60),
            });
        }
        "soak" => {
            // soak [ACCOUNTS] [MINUTES] [MUTATIONS_PER_SEC] [MESSAGES] [SAMPLE_SECS] [TOKEN_TTL_SECS]
            let argv: Vec<String> = std::env::args().collect();
            let num = |i: usize, d: f64| argv.get(i).and_then(|v| v.parse().ok()).unwrap_or(d);
            soak::run(&soak::SoakArgs {
                accounts: num(2, 100.0).max(1.0) as usize,
                minutes: num(3, 60.0) as u64,
                rate: num(4, 5.0),
                messages: num(5, 500.0) as usize,
                sample_secs: num(6, 30.0).max(1.0) as u64,
                token_ttl_secs: num(7, 3600.0).max(60.0) as u64,
            });
        }
        other => {
            eprintln!(
                "unknown scenario {other}; use accounts [N] [ACTIVE] [ACTIVE_MESSAGES] [IDLE_MESSAGES] [IDLE_SECS], fair [BACKFILL] [LIVE] [MESSAGES] [PROJECT_UNITS_PER_MINUTE] [CHANGES] [WARMUP_SECS] or soak [ACCOUNTS] [MINUTES] [MUTATIONS_PER_SEC] [MESSAGES] [SAMPLE_SECS] [TOKEN_TTL_SECS]"
            );
            std::process::exit(2);
        }
    }
}

fn email(i: usize) -> String {
    format!("user{i:04}@example.com")
}

fn account_id(i: usize) -> String {
    format!("g{i:04}")
}

/// Answer times of `ctl status`, in ms, when each was asked (s since the daemon started), and
/// the ages of the cached account entries the answers held (`status_age_ms`, in ms).
#[derive(Default)]
struct StatusTimes(Vec<f64>, Vec<f64>, Vec<f64>);

impl StatusTimes {
    fn percentile(&self, p: f64) -> f64 {
        let mut v = self.0.clone();
        v.sort_by(f64::total_cmp);
        if v.is_empty() {
            return 0.0;
        }
        let i = ((v.len() - 1) as f64 * p).round() as usize;
        v[i.min(v.len() - 1)]
    }

    /// The answers slower than `ms`, each as "at s: ms", at most `n` of them, in time order.
    fn slow(&self, ms: f64, n: usize) -> String {
        let mut slow: Vec<String> = self
            .1
            .iter()
            .zip(&self.0)
            .filter(|(_, t)| **t > ms)
            .map(|(at, t)| format!("{at:.0} s: {t:.0} ms"))
            .collect();
        let more = slow.len().saturating_sub(n);
        slow.truncate(n);
        if more > 0 {
            slow.push(format!("{more} more"));
        }
        slow.join(", ")
    }
}

/// One timed status request: (reply, ms).
fn timed_status(d: &Daemon, times: &mut StatusTimes) -> Option<Value> {
    let t = Instant::now();
    let r = d.request(&json!({"v":1,"cmd":"status"}))?;
    times.0.push(t.elapsed().as_secs_f64() * 1000.0);
    times.1.push(t.duration_since(d.started).as_secs_f64());
    if let Some(list) = r["data"]["accounts"].as_array() {
        times
            .2
            .extend(list.iter().filter_map(|a| a["status_age_ms"].as_f64()));
    }
    r["data"]["accounts"].as_array().cloned().map(Value::Array)
}

fn count(list: &Value, pred: impl Fn(&Value) -> bool) -> usize {
    list.as_array()
        .map_or(0, |l| l.iter().filter(|a| pred(a)).count())
}

fn caught_up(a: &Value) -> bool {
    a["state"] == json!("running") && a["phase"] == json!("caught_up") && a["missing"] == json!(0)
}

fn accounts(a: &Args) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let emu: EmulatorHandle = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let cfg = EmulatorConfig {
            seed: 13,
            messages: 0,
            quota: QuotaMode::Off,
            ..EmulatorConfig::default()
        };
        Emulator::start(cfg, l).await.expect("emulator")
    });
    let dir = std::env::temp_dir().join(format!("scale-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("bench dir");
    let made = Instant::now();
    let mut blocks = String::new();
    let secret = dir.join("client_secret");
    std::fs::write(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET).expect("secret");
    for i in 0..a.accounts {
        let n = if i < a.active {
            a.active_messages
        } else {
            a.idle_messages
        };
        let token = emu.create_account(&email(i), n);
        let refresh = dir.join(format!("refresh_{i:04}"));
        std::fs::write(&refresh, token).expect("refresh token");
        blocks.push_str(&daemon::account_block(
            &account_id(i),
            &email(i),
            &emu.base_url(),
            &secret,
            &refresh,
            "",
        ));
    }
    let total = a.active * a.active_messages + (a.accounts - a.active) * a.idle_messages;
    eprintln!(
        "scale-bench: {} accounts ({} × {} messages, {} × {}; {total} in all) made in {:.1} s",
        a.accounts,
        a.active,
        a.active_messages,
        a.accounts - a.active,
        a.idle_messages,
        made.elapsed().as_secs_f64()
    );
    let d = Daemon::start(&dir, Daemon::QUOTA_LIFTED, &blocks);
    let mut times = StatusTimes::default();
    let mut peak = ProcSample::default();
    let mut all_running = None;
    let mut last_print = 0.0;
    let synced = loop {
        let el = d.started.elapsed().as_secs_f64();
        let sample = ProcSample::of(d.pid());
        peak.rss_mib = peak.rss_mib.max(sample.rss_mib);
        if let Some(list) = timed_status(&d, &mut times) {
            let running = count(&list, |x| x["state"] == json!("running"));
            let done = count(&list, caught_up);
            if all_running.is_none() && running == a.accounts {
                all_running = Some(el);
            }
            if done == a.accounts {
                break el;
            }
            if el - last_print >= 10.0 {
                last_print = el;
                eprintln!(
                    "  [{el:>5.0} s] running {running}, caught up {done} of {}, RSS {:.0} MiB",
                    a.accounts, sample.rss_mib
                );
            }
        }
        assert!(
            el < 3_600.0,
            "not every account caught up within an hour; see {}",
            dir.display()
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    let hwm = ProcSample::of(d.pid()).hwm_mib;
    let sync_times = StatusTimes(times.0.clone(), times.1.clone(), Vec::new());
    let ages = StatusTimes(times.2.clone(), Vec::new(), Vec::new());
    let answers = times.0.len() * a.accounts;
    // Idle: every account caught up, polling timers running.
    let before = ProcSample::of(d.pid());
    let tasks_before = d.runtime_tasks();
    std::thread::sleep(Duration::from_secs(a.idle_secs));
    let after = ProcSample::of(d.pid());
    let tasks_after = d.runtime_tasks();
    let idle_status = {
        let mut t = StatusTimes::default();
        for _ in 0..20 {
            let _ = timed_status(&d, &mut t);
        }
        t
    };
    let idle_cpu = (after.cpu_secs - before.cpu_secs) / a.idle_secs as f64 * 100.0;
    println!(
        "accounts: {} accounts ({} syncing {} messages each, the rest {}), {total} messages",
        a.accounts, a.active, a.active_messages, a.idle_messages
    );
    println!(
        "  start-up to all running: {}; all caught up: {synced:.1} s ({:.0} msg/s)",
        all_running.map_or("never seen".into(), |s| format!("{s:.2} s")),
        total as f64 / synced.max(0.001)
    );
    println!(
        "  ctl status during the sync: p50 {:.1} ms, p95 {:.1} ms, max {:.1} ms ({} answers); idle: p50 {:.1} ms, max {:.1} ms",
        sync_times.percentile(0.5),
        sync_times.percentile(0.95),
        sync_times.percentile(1.0),
        sync_times.0.len(),
        idle_status.percentile(0.5),
        idle_status.percentile(1.0),
    );
    println!(
        "  status answers over 200 ms (when asked): {}",
        sync_times.slow(200.0, 40)
    );
    println!(
        "  account entries given from the status cache: {} of {answers}, age p50 {:.0} ms, p95 {:.0} ms, max {:.0} ms",
        ages.0.len(),
        ages.percentile(0.5),
        ages.percentile(0.95),
        ages.percentile(1.0),
    );
    println!(
        "  peak RSS {hwm:.0} MiB (sampled {:.0} MiB); daemon CPU for the sync {:.1} s",
        peak.rss_mib, before.cpu_secs
    );
    println!(
        "  idle {} s: CPU {idle_cpu:.2} % of a core; RSS {:.0} → {:.0} MiB; open files {} → {}; threads {} → {}; runtime tasks {} → {}",
        a.idle_secs,
        before.rss_mib,
        after.rss_mib,
        before.fds,
        after.fds,
        before.threads,
        after.threads,
        tasks_before.map_or("?".into(), |t| t.to_string()),
        tasks_after.map_or("?".into(), |t| t.to_string()),
    );
    d.stop();
    rt.block_on(emu.shutdown());
    if std::env::var_os("SCALE_BENCH_KEEP").is_none() {
        let _ = std::fs::remove_dir_all(&dir);
    } else {
        eprintln!("kept {}", PathBuf::from(&dir).display());
    }
}
