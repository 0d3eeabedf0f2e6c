//! sync-bench: Gmail sync through the real daemon against the in-process Google API emulator
//! over loopback HTTP. The daemon is the `mailsync` binary built next to this one, run as a
//! child process so its CPU time (/proc/<pid>/stat utime+stime) and peak RSS
//! (/proc/<pid>/status VmHWM) are its own; the emulator runs in this process.
//!
//! Scenarios:
//! * `raw [N]` — full sync of N messages (default 100,000) with quota off on both sides:
//!   messages/s, daemon CPU seconds, peak RSS.
//! * `quota <2026|legacy> [N] [SECS]` — full sync under the emulator's real per-user quota,
//!   scaled by k so it takes about SECS (default 60): units/s as a percentage of the ceiling
//!   (whole run and steady state), 429/403 counts, k.
//! * `gap [N]` — gap recovery on an N-message mailbox (default 100,000): full sync (quota off),
//!   stop, mutate, expire history, restart: quota units spent vs a full re-fetch (N × 20). Also
//!   prints the full sync's own figures (the first daemon's CPU and peak RSS), so one command
//!   per size gives both peak RSS figures.
//!
//! * `burst <default|strict> [N] [K]` — full sync of N messages (default 5,000) under the
//!   2026 per-user quota scaled by K (default 10), once with `spend_burst = false` (pacing
//!   from the start) and once with the adaptive pacing: wall time beside the physical minimum
//!   `(units − burst) / rate` (the bucket's burst is the minute's ceiling; `strict` mode may
//!   grant none, so the no-burst minimum `units / rate` is printed too) and the share of
//!   requests refused.
//!
//! * `disk [N]` — full sync of N messages (default 100,000, quota off) with the Maildir sink
//!   on; then bytes on disk of the store (sled and body segments) and of the Maildir, each
//!   against the raw bytes held (the Maildir files' sizes).
//!
//! Run: `cargo build --release -p mailsync --bins && target/release/sync-bench raw 100000`
//! (or `cargo run --release -p mailsync --bin sync-bench -- raw 100000` once `mailsync` is
//! built in release).

#[path = "bench_common/store_section.rs"]
mod store_section;

use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode, QuotaProfile};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "bench";

fn request(socket: &Path, line: &str) -> Option<Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    s.write_all(line.as_bytes()).ok()?;
    s.write_all(b"\n").ok()?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

fn account_status(socket: &Path) -> Option<Value> {
    let r = request(socket, r#"{"v":1,"cmd":"status"}"#)?;
    r["data"]["accounts"]
        .as_array()?
        .iter()
        .find(|a| a["account"] == json!(ACCOUNT))
        .cloned()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (user+system CPU seconds, VmHWM in MiB) of a process.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    let cpu = (ticks(11) + ticks(12)) / clk_tck();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let hwm_kb = status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse::<f64>().ok())
        .unwrap_or(0.0);
    (cpu, hwm_kb / 1024.0)
}

struct Bench {
    rt: tokio::runtime::Runtime,
    emu: Option<EmulatorHandle>,
    email: String,
    dir: PathBuf,
    socket: PathBuf,
    config: PathBuf,
}

impl Bench {
    fn new(cfg: EmulatorConfig) -> Bench {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .enable_all()
            .build()
            .expect("runtime");
        let email = cfg.account.clone();
        let emu = rt.block_on(async {
            let l = tokio::net::TcpListener::bind("127.0.0.1:0")
                .await
                .expect("bind");
            Emulator::start(cfg, l).await.expect("emulator")
        });
        let dir = std::env::temp_dir().join(format!("sync-bench-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("dir");
        Bench {
            rt,
            emu: Some(emu),
            email,
            socket: dir.join("control.sock"),
            config: dir.join("config.toml"),
            dir,
        }
    }

    fn emu(&self) -> &EmulatorHandle {
        self.emu.as_ref().expect("emulator")
    }

    /// `quota_off`: the daemon's pacing is lifted too (scale and project ceiling at their max).
    fn write_config(&self, profile: &str, scale: f64, project: u64) {
        self.write_config_with(profile, scale, project, "");
    }

    /// As `write_config`, with `quota_extra` (TOML lines) added to the `[quota]` table.
    fn write_config_with(&self, profile: &str, scale: f64, project: u64, quota_extra: &str) {
        let refresh = self
            .emu()
            .refresh_token(&self.email)
            .expect("refresh token");
        std::fs::write(
            self.dir.join("client_secret"),
            mailsync_emulator::DEFAULT_CLIENT_SECRET,
        )
        .expect("secret");
        std::fs::write(self.dir.join("refresh_token"), refresh).expect("refresh");
        let base = self.emu().base_url();
        // `SYNC_BENCH_CACHE_MB` sets `[store] cache_mb` for a comparison.
        let store = store_section::store_section("SYNC_BENCH_CACHE_MB");
        let text = format!(
            r#"data_dir = "{d}/data"
socket_path = "{s}"
log_level = "warn"

[sync]
poll_interval_secs = 2
batch_size = 50
{store}
[quota]
profile = "{profile}"
scale = {scale:?}
project_units_per_minute = {project}
{quota_extra}
[[accounts]]
id = "{ACCOUNT}"
kind = "gmail"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client}"
client_secret = {{ file = "{d}/client_secret" }}
refresh_token = {{ file = "{d}/refresh_token" }}
"#,
            d = self.dir.display(),
            s = self.socket.display(),
            email = self.email,
            client = mailsync_emulator::DEFAULT_CLIENT_ID,
        );
        std::fs::write(&self.config, text).expect("config");
    }

    fn start_daemon(&self) -> Child {
        let exe = std::env::current_exe().expect("current exe");
        let mailsync = exe.with_file_name("mailsync");
        assert!(
            mailsync.exists(),
            "{} is missing: run `cargo build --release -p mailsync --bins` first",
            mailsync.display()
        );
        let log = std::fs::File::create(self.dir.join("daemon.log")).expect("log");
        let child = Command::new(mailsync)
            .arg("--config")
            .arg(&self.config)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mailsync");
        let t = Instant::now();
        while account_status(&self.socket).is_none() {
            assert!(
                t.elapsed() < Duration::from_secs(30),
                "daemon did not start"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        child
    }

    /// Waits until the account is caught up with the emulator's history id; calls `tick` every
    /// 250 ms with the elapsed time.
    fn wait_synced(&self, mut tick: impl FnMut(f64)) -> f64 {
        let t = Instant::now();
        let mut last_print = 0.0;
        loop {
            let a = account_status(&self.socket).unwrap_or(Value::Null);
            let el = t.elapsed().as_secs_f64();
            tick(el);
            // The truth snapshot hashes every message: take it only when the daemon looks done.
            if a["phase"] == json!("caught_up") && a["missing"] == json!(0) {
                let target = format!(
                    "historyId {}",
                    self.emu()
                        .snapshot(&self.email)
                        .expect("snapshot")
                        .history_id
                );
                if a["cursor"] == json!(target) {
                    return el;
                }
            }
            if el - last_print >= 10.0 {
                last_print = el;
                eprintln!(
                    "  [{el:>5.0} s] {} {} done {}",
                    a["state"], a["phase"], a["progress"]["done"]
                );
            }
            assert!(
                el < 3_600.0,
                "no convergence after an hour: {a}; see {}",
                self.dir.display()
            );
            std::thread::sleep(Duration::from_millis(250));
        }
    }

    fn stop_daemon(&self, mut child: Child) -> (f64, f64) {
        let usage = proc_usage(child.id());
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
        usage
    }

    fn control(&self, method: reqwest::Method, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.emu().base_url());
        self.rt.block_on(async move {
            let mut r = reqwest::Client::new().request(method, &url);
            if let Some(b) = body {
                r = r.json(&b);
            }
            let resp = r.send().await.expect("control");
            resp.json().await.unwrap_or(Value::Null)
        })
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        if let Some(e) = self.emu.take() {
            self.rt.block_on(e.shutdown());
        }
        if std::env::var_os("SYNC_BENCH_KEEP").is_none() {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

fn arg(n: usize) -> Option<String> {
    std::env::args().nth(n)
}

fn raw(n: usize) {
    let b = Bench::new(EmulatorConfig {
        seed: 1,
        messages: n,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    });
    b.write_config("2026", 1_000_000.0, 1_000_000_000);
    let self_before = proc_usage(std::process::id()).0;
    let child = b.start_daemon();
    let pid = child.id();
    let secs = b.wait_synced(|_| {});
    let (cpu, hwm) = b.stop_daemon(child);
    let emu_cpu = proc_usage(std::process::id()).0 - self_before;
    let c = b.emu().counters();
    println!(
        "raw full sync: {n} messages in {secs:.1} s = {:.0} messages/s; daemon (pid {pid}) CPU {cpu:.1} s \
         ({:.2} ms/message), peak RSS {hwm:.0} MiB; emulator CPU {emu_cpu:.1} s; {} batch requests, {} units",
        n as f64 / secs,
        cpu * 1000.0 / n as f64,
        c.batch_requests,
        c.units_total
    );
}

/// Bytes under `dir`: (apparent, allocated on disk), files counted once each.
fn dir_bytes(dir: &Path) -> (u64, u64) {
    use std::os::unix::fs::MetadataExt;
    let mut total = (0, 0);
    let Ok(entries) = std::fs::read_dir(dir) else {
        return total;
    };
    for e in entries.flatten() {
        let Ok(m) = e.metadata() else { continue };
        if m.is_dir() {
            let (a, b) = dir_bytes(&e.path());
            total.0 += a;
            total.1 += b;
        } else {
            total.0 += m.len();
            total.1 += m.blocks() * 512;
        }
    }
    total
}

/// Full sync of N messages (quota off) with the Maildir sink on, then the bytes on disk: the
/// store (sled and the body segments) and the Maildir, each against the raw bytes held (the
/// Maildir files' own sizes: one raw RFC 5322 message each).
fn disk(n: usize) {
    let b = Bench::new(EmulatorConfig {
        seed: 1,
        messages: n,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    });
    let maildir = b.dir.join("maildir");
    b.write_config_with(
        "2026",
        1_000_000.0,
        1_000_000_000,
        &format!(
            "\n[maildir]\nroot = \"{}\"\nenabled = true\n",
            maildir.display()
        ),
    );
    let child = b.start_daemon();
    let secs = b.wait_synced(|_| {});
    // The sink writes behind the feed: wait until it has every event.
    let t = Instant::now();
    loop {
        let lag = request(&b.socket, r#"{"v":1,"cmd":"status"}"#).and_then(|r| {
            r["data"]["sinks"]
                .as_array()?
                .iter()
                .find(|s| s["name"] == json!("maildir"))?["lag"]
                .as_u64()
        });
        if lag == Some(0) {
            break;
        }
        assert!(
            t.elapsed() < Duration::from_secs(600),
            "the Maildir sink did not catch up: lag {lag:?}"
        );
        std::thread::sleep(Duration::from_millis(250));
    }
    let _ = b.stop_daemon(child);
    let mut messages = 0u64;
    let mut raw = 0u64;
    let mut count = |sub: &str| {
        let Ok(accounts) = std::fs::read_dir(&maildir) else {
            return;
        };
        for a in accounts.flatten() {
            let Ok(files) = std::fs::read_dir(a.path().join(sub)) else {
                continue;
            };
            for f in files.flatten() {
                if let Ok(m) = f.metadata() {
                    messages += 1;
                    raw += m.len();
                }
            }
        }
    };
    count("cur");
    count("new");
    let (store_apparent, store_disk) = dir_bytes(&b.dir.join("data"));
    let (maildir_apparent, maildir_disk) = dir_bytes(&maildir);
    let mib = |v: u64| v as f64 / (1024.0 * 1024.0);
    println!(
        "disk: {n} messages synced in {secs:.1} s; Maildir holds {messages} files, {:.1} MiB raw ({:.0} bytes a message)",
        mib(raw),
        raw as f64 / messages.max(1) as f64
    );
    println!(
        "  store (sled + body segments): {:.1} MiB on disk ({:.1} MiB apparent) = {:.2}× the raw bytes, {:.0} bytes a message",
        mib(store_disk),
        mib(store_apparent),
        store_disk as f64 / raw.max(1) as f64,
        store_disk as f64 / messages.max(1) as f64
    );
    println!(
        "  Maildir (with its index files): {:.1} MiB on disk ({:.1} MiB apparent) = {:.2}× the raw bytes",
        mib(maildir_disk),
        mib(maildir_apparent),
        maildir_disk as f64 / raw.max(1) as f64
    );
}

fn quota(profile: &str, n: usize, target_secs: f64) {
    let (qp, ceiling, get_cost) = match profile {
        "legacy" => (QuotaProfile::Legacy, 15_000.0, 5.0),
        _ => (QuotaProfile::Y2026, 6_000.0, 20.0),
    };
    let units = n as f64 * get_cost + (n as f64 / 500.0).ceil() * 5.0 + 100.0;
    let k = (units * 60.0 / target_secs / ceiling).ceil().max(1.0);
    let b = Bench::new(EmulatorConfig {
        seed: 2,
        messages: n,
        quota: QuotaMode::On,
        quota_profile: qp,
        user_rate_scale: k,
        ..EmulatorConfig::default()
    });
    let cfg_profile = if profile == "legacy" {
        "legacy"
    } else {
        "2026"
    };
    b.write_config(cfg_profile, k, 1_000_000_000);
    let child = b.start_daemon();
    let mut samples: Vec<(f64, u64)> = Vec::new();
    let secs = b.wait_synced(|el| samples.push((el, b.emu().counters().units_total)));
    let (cpu, hwm) = b.stop_daemon(child);
    let c = b.emu().counters();
    let per_sec_ceiling = ceiling * k / 60.0;
    let total = c.units_total as f64;
    // Steady state: between 10 % and 90 % of the units spent.
    let at = |frac: f64| {
        samples
            .iter()
            .find(|(_, u)| *u as f64 >= frac * total)
            .copied()
            .unwrap_or((secs, c.units_total))
    };
    let (t1, u1) = at(0.1);
    let (t2, u2) = at(0.9);
    let steady = (u2 - u1) as f64 / (t2 - t1).max(0.001);
    println!(
        "quota {profile}: {n} messages, k = {k} (ceiling {:.0} units/min = {per_sec_ceiling:.0}/s), \
         {secs:.1} s; units {} = {:.0}/s = {:.1} % of the ceiling over the whole run, steady state \
         {steady:.0}/s = {:.1} %; 429: {}, 403 rate: {}; daemon CPU {cpu:.1} s, peak RSS {hwm:.0} MiB",
        ceiling * k,
        c.units_total,
        total / secs,
        total / secs * 100.0 / per_sec_ceiling,
        steady * 100.0 / per_sec_ceiling,
        c.status_429,
        c.status_403_rate_limit
    );
}

fn gap(n: usize) {
    let b = Bench::new(EmulatorConfig {
        seed: 3,
        messages: n,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    });
    b.write_config("2026", 1_000_000.0, 1_000_000_000);
    let child = b.start_daemon();
    let secs = b.wait_synced(|_| {});
    let (full_cpu, full_hwm) = b.stop_daemon(child);
    println!(
        "full sync of {n} messages: {secs:.1} s = {:.0} messages/s; daemon CPU {full_cpu:.1} s \
         ({:.3} ms/message), peak RSS {full_hwm:.0} MiB",
        n as f64 / secs,
        full_cpu * 1000.0 / n as f64
    );
    eprintln!("  mutating and expiring history");
    let email = b.email.clone();
    let ids: Vec<String> = b
        .emu()
        .snapshot(&email)
        .expect("snapshot")
        .messages
        .into_iter()
        .map(|m| m.id)
        .collect();
    let (mut delivered, mut deleted, mut relabeled) = (0, 0, 0);
    for (i, id) in ids.iter().step_by((ids.len() / 300).max(1)).enumerate() {
        let p = format!("/_emulator/accounts/{email}/messages/{id}");
        match i % 3 {
            0 => {
                b.control(reqwest::Method::DELETE, &p, None);
                deleted += 1;
            }
            1 => {
                b.control(
                    reqwest::Method::POST,
                    &format!("{p}/labels"),
                    Some(json!({"add": ["STARRED", "Label_2"], "remove": ["UNREAD"]})),
                );
                relabeled += 1;
            }
            _ => {
                b.control(
                    reqwest::Method::POST,
                    &format!("/_emulator/accounts/{email}/messages"),
                    Some(json!({})),
                );
                delivered += 1;
            }
        }
    }
    b.control(
        reqwest::Method::POST,
        &format!("/_emulator/accounts/{email}/history/expire"),
        None,
    );
    b.control(reqwest::Method::POST, "/_emulator/counters/reset", None);
    let child = b.start_daemon();
    let secs = b.wait_synced(|_| {});
    let (cpu, hwm) = b.stop_daemon(child);
    let c = b.emu().counters();
    let full = n as u64 * 20;
    println!(
        "gap recovery on {n} messages ({delivered} delivered, {deleted} deleted, {relabeled} relabeled \
         during the gap): {secs:.1} s, {} quota units = {:.2} % of a full re-fetch ({full}); by method {:?}; \
         daemon CPU {cpu:.1} s, peak RSS {hwm:.0} MiB",
        c.units_total,
        c.units_total as f64 * 100.0 / full as f64,
        c.units
    );
}

fn burst(mode: &str, n: usize, k: f64) {
    let quota = if mode == "strict" {
        QuotaMode::Strict
    } else {
        QuotaMode::On
    };
    for spend in [false, true] {
        let b = Bench::new(EmulatorConfig {
            seed: 4,
            messages: n,
            quota,
            quota_profile: QuotaProfile::Y2026,
            user_rate_scale: k,
            ..EmulatorConfig::default()
        });
        b.write_config_with(
            "2026",
            k,
            1_000_000_000,
            &format!("spend_burst = {spend}\n"),
        );
        let child = b.start_daemon();
        let secs = b.wait_synced(|_| {});
        let (cpu, hwm) = b.stop_daemon(child);
        let c = b.emu().counters();
        let ceiling = 6_000.0 * k;
        let rate = ceiling / 60.0;
        let units = c.units_total as f64;
        let minimum = ((units - ceiling) / rate).max(0.0);
        let no_burst = units / rate;
        let requests: u64 = c.requests.values().sum();
        println!(
            "burst {mode}: {n} messages, k = {k} (ceiling {ceiling:.0} units/min), spend_burst = {spend}: \
             {secs:.1} s; {units:.0} units; physical minimum {minimum:.1} s ({:.2} × it), \
             without a burst {no_burst:.1} s ({:.2} ×); {} of {requests} requests refused ({:.2} %); \
             daemon CPU {cpu:.1} s, peak RSS {hwm:.0} MiB",
            secs / minimum.max(0.001),
            secs / no_burst.max(0.001),
            c.rate_limit_refusals,
            c.rate_limit_refusals as f64 * 100.0 / requests.max(1) as f64
        );
    }
}

fn main() {
    let scenario = arg(1).unwrap_or_else(|| "raw".into());
    let num = |i: usize, d: usize| arg(i).and_then(|v| v.parse().ok()).unwrap_or(d);
    match scenario.as_str() {
        "raw" => raw(num(2, 100_000)),
        "quota" => {
            let profile = arg(2).unwrap_or_else(|| "2026".into());
            quota(&profile, num(3, 20_000), num(4, 60) as f64);
        }
        "gap" => gap(num(2, 100_000)),
        "disk" => disk(num(2, 100_000)),
        "burst" => {
            let mode = arg(2).unwrap_or_else(|| "default".into());
            burst(&mode, num(3, 5_000), num(4, 10) as f64);
        }
        other => {
            eprintln!(
                "unknown scenario {other}; use raw [N] | quota <2026|legacy> [N] [SECS] | gap [N] | burst <default|strict> [N] [K] | disk [N]"
            );
            std::process::exit(2);
        }
    }
}
