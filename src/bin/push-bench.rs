//! push-bench: measures Gmail push delivery against the real `mailsync` binary and the Google
//! API emulator on loopback.
//!
//! 1. Latency: N times, deliver a message in the emulator, POST a signed Pub/Sub push (token
//!    minted by the emulator's test key) to the daemon's `/push/gmail`, and time until the
//!    `message.added` event for that message arrives on a following feed stream over the
//!    control socket. Reports p50 / p99 / max. Pushes are sent by the bench (not by the
//!    emulator's mutation hook) so Gmail's one-notification-per-second limit does not pace it.
//! 2. Idle CPU: a second daemon with 10 push-enabled Gmail accounts (default 60 s poll
//!    interval), once every account caught up, sampled from `/proc/<pid>/stat` over the idle
//!    window.
//!
//! Build both binaries in release mode first, then run:
//! `cargo build --release --bin mailsync --bin push-bench && target/release/push-bench [N] [IDLE_SECS]`
//! (defaults 1000 and 60). The `mailsync` binary is taken from next to this one.

#[path = "bench_common/feed_follow.rs"]
mod feed_follow;

use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode};
use serde_json::{Value, json};
use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const AUD: &str = "https://mailsync.bench/push/gmail";
const TOPIC: &str = "projects/mailsync-emulator/topics/gmail";

type BenchResult<T> = Result<T, String>;

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let n: usize = args.get(1).and_then(|a| a.parse().ok()).unwrap_or(1000);
    let idle: u64 = args.get(2).and_then(|a| a.parse().ok()).unwrap_or(60);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("push-bench: runtime: {e}");
            std::process::exit(1);
        }
    };
    if let Err(e) = run(&rt, n, idle) {
        eprintln!("push-bench: {e}");
        std::process::exit(1);
    }
}

fn run(rt: &tokio::runtime::Runtime, n: usize, idle: u64) -> BenchResult<()> {
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mailsync = exe
        .parent()
        .map(|d| d.join("mailsync"))
        .filter(|p| p.is_file())
        .ok_or(
            "build the mailsync binary next to push-bench (cargo build --release --bin mailsync)",
        )?;
    let cfg = EmulatorConfig {
        messages: 20,
        quota: QuotaMode::Off,
        push_audience: Some(AUD.into()),
        ..EmulatorConfig::default()
    };
    let emu = rt.block_on(async {
        let l = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .map_err(|e| e.to_string())?;
        Emulator::start(cfg, l).await.map_err(|e| e.to_string())
    })?;
    let base = emu.base_url();
    let http = reqwest::Client::new();
    let result = (|| {
        latency(rt, &http, &base, &mailsync, &emu, n)?;
        idle_cpu(rt, &http, &base, &mailsync, &emu, idle)
    })();
    rt.block_on(emu.shutdown());
    result
}

fn call(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Value,
) -> BenchResult<(u16, Value)> {
    rt.block_on(async {
        let r = http
            .request(method, url)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let s = r.status().as_u16();
        Ok((s, r.json().await.unwrap_or(Value::Null)))
    })
}

fn free_port() -> BenchResult<u16> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

struct Daemon {
    child: Child,
    socket: PathBuf,
    _dir: PathBuf,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self._dir);
    }
}

fn account_block(id: &str, email: &str, base: &str, refresh: &str, poll: Option<u64>) -> String {
    format!(
        "[[accounts]]\nid = \"{id}\"\nkind = \"gmail\"\nemail = \"{email}\"\napi_base = \"{base}\"\n\
         token_url = \"{base}/token\"\nclient_id = \"{cid}\"\nclient_secret = {{ value = \"{secret}\" }}\n\
         refresh_token = {{ value = \"{refresh}\" }}\npush_topic = \"{TOPIC}\"\n{poll}\n",
        cid = mailsync_emulator::DEFAULT_CLIENT_ID,
        secret = mailsync_emulator::DEFAULT_CLIENT_SECRET,
        poll = poll
            .map(|p| format!("poll_interval_secs = {p}"))
            .unwrap_or_default(),
    )
}

fn start_daemon(mailsync: &Path, base: &str, port: u16, accounts: &str) -> BenchResult<Daemon> {
    let dir = std::env::temp_dir().join(format!("push-bench-{}-{}", std::process::id(), port));
    std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
    let socket = dir.join("control.sock");
    let config = format!(
        "data_dir = \"{data}\"\nsocket_path = \"{sock}\"\nlog_level = \"warn\"\n\n\
         [push]\nport = {port}\naudience = \"{AUD}\"\n\
         service_account = \"gmail-api-push@system.gserviceaccount.com\"\n\
         jwks_url = \"{base}/oauth2/v3/certs\"\n\n{accounts}",
        data = dir.join("data").display(),
        sock = socket.display(),
    );
    let path = dir.join("config.toml");
    std::fs::write(&path, config).map_err(|e| e.to_string())?;
    let child = Command::new(mailsync)
        .arg("--config")
        .arg(&path)
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| format!("starting mailsync: {e}"))?;
    let d = Daemon {
        child,
        socket,
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    while request(&d.socket, &json!({"v":1,"cmd":"status"})).is_err() {
        if Instant::now() > deadline {
            return Err("the daemon did not come up".into());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(d)
}

fn request(socket: &Path, req: &Value) -> BenchResult<Value> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.write_all(format!("{req}\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    serde_json::from_str(&line).map_err(|e| e.to_string())
}

fn all_caught_up(d: &Daemon, n: usize) -> bool {
    request(&d.socket, &json!({"v":1,"cmd":"status"}))
        .ok()
        .and_then(|v| v["data"]["accounts"].as_array().cloned())
        .is_some_and(|a| a.len() == n && a.iter().all(|x| x["phase"] == json!("caught_up")))
}

fn wait_caught_up(d: &Daemon, n: usize) -> BenchResult<()> {
    let deadline = Instant::now() + Duration::from_secs(120);
    while !all_caught_up(d, n) {
        if Instant::now() > deadline {
            return Err("accounts did not catch up".into());
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    Ok(())
}

fn latency(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    base: &str,
    mailsync: &Path,
    emu: &mailsync_emulator::EmulatorHandle,
    n: usize,
) -> BenchResult<()> {
    let email = "demo@example.com";
    let refresh = emu.refresh_token(email).ok_or("no refresh token")?;
    let port = free_port()?;
    let d = start_daemon(
        mailsync,
        base,
        port,
        &account_block("bench", email, base, &refresh, Some(3600)),
    )?;
    wait_caught_up(&d, 1)?;
    let events = feed_follow::follow(&d.socket, "push-bench")?;
    let endpoint = format!("http://127.0.0.1:{port}/push/gmail");
    let mut seen: HashMap<String, Instant> = HashMap::new();
    let mut samples = Vec::with_capacity(n);
    for i in 0..n {
        let (s, m) = call(
            rt,
            http,
            reqwest::Method::POST,
            &format!("{base}/_emulator/accounts/{email}/messages"),
            json!({}),
        )?;
        if s != 201 {
            return Err(format!("deliver: HTTP {s}: {m}"));
        }
        let id = m["id"].as_str().ok_or("no id")?.to_string();
        let hid = m["historyId"].as_str().unwrap_or("1").to_string();
        let (_, minted) = call(
            rt,
            http,
            reqwest::Method::POST,
            &format!("{base}/_emulator/push/mint"),
            json!({"history_id": hid, "email_address": email, "endpoint": endpoint}),
        )?;
        let token = minted["token"].as_str().ok_or("no token")?.to_string();
        let body = minted["body"].clone();
        let key = format!("message.added:bench:{id}:g0");
        let started = Instant::now();
        let status = rt.block_on(async {
            http.post(&endpoint)
                .bearer_auth(&token)
                .json(&body)
                .send()
                .await
                .map(|r| r.status().as_u16())
                .map_err(|e| e.to_string())
        })?;
        if status != 204 {
            return Err(format!("push {i}: HTTP {status}"));
        }
        let deadline = started + Duration::from_secs(30);
        let arrived = loop {
            if let Some(at) = seen.remove(&key) {
                break at;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match events.recv_timeout(left) {
                Ok((k, at)) => {
                    seen.insert(k, at);
                }
                Err(_) => return Err(format!("event {key} never arrived")),
            }
        };
        samples.push(arrived.saturating_duration_since(started));
    }
    samples.sort();
    let pct = |p: f64| {
        let i = ((samples.len() as f64 * p).ceil() as usize).clamp(1, samples.len()) - 1;
        samples[i].as_secs_f64() * 1000.0
    };
    println!(
        "push -> feed event latency over {n} notifications: p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms",
        pct(0.50),
        pct(0.99),
        pct(1.0)
    );
    Ok(())
}

/// utime + stime of a process, in clock ticks.
fn cpu_ticks(pid: u32) -> BenchResult<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).map_err(|e| e.to_string())?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .ok_or("bad /proc stat")?;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = f.get(11).and_then(|v| v.parse().ok()).ok_or("utime")?;
    let stime: u64 = f.get(12).and_then(|v| v.parse().ok()).ok_or("stime")?;
    Ok(utime + stime)
}

fn clock_ticks_per_second() -> u64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8(o.stdout).ok())
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(100)
}

fn idle_cpu(
    rt: &tokio::runtime::Runtime,
    http: &reqwest::Client,
    base: &str,
    mailsync: &Path,
    _emu: &mailsync_emulator::EmulatorHandle,
    secs: u64,
) -> BenchResult<()> {
    let mut accounts = String::new();
    for i in 0..10 {
        let email = format!("idle{i}@example.com");
        let (s, v) = call(
            rt,
            http,
            reqwest::Method::POST,
            &format!("{base}/_emulator/accounts"),
            json!({"email": email, "messages": 20}),
        )?;
        if s != 201 {
            return Err(format!("create account: HTTP {s}: {v}"));
        }
        let refresh = v["refreshToken"].as_str().ok_or("no refresh token")?;
        accounts.push_str(&account_block(
            &format!("idle{i}"),
            &email,
            base,
            refresh,
            None,
        ));
    }
    let port = free_port()?;
    let d = start_daemon(mailsync, base, port, &accounts)?;
    wait_caught_up(&d, 10)?;
    std::thread::sleep(Duration::from_secs(2));
    let pid = d.child.id();
    let before = cpu_ticks(pid)?;
    std::thread::sleep(Duration::from_secs(secs));
    let after = cpu_ticks(pid)?;
    let hz = clock_ticks_per_second();
    let ms = (after - before) * 1000 / hz;
    println!(
        "idle CPU with 10 push-enabled gmail accounts (poll every 60 s): {ms} ms over {secs} s \
         ({:.3} % of one core)",
        ms as f64 / (secs as f64 * 10.0)
    );
    Ok(())
}
