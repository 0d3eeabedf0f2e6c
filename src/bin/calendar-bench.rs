//! calendar-bench: Google Calendar sync through the real daemon against the in-process
//! emulator over loopback HTTP, with the emulator's Calendar quota on (600 requests per
//! minute per user, 403 `usageLimits` beyond).
//!
//! Scenarios:
//! * `full [EVENTS] [PAGE] [RPM]` — full sync of a primary calendar of EVENTS events (default
//!   10,000; the seeded second calendar holds a quarter of that) with `maxResults` = PAGE
//!   (default 2500) and the daemon's Calendar pacing at RPM requests/min (default 60, the safe
//!   default): wall time, Calendar requests, requests/min as a share of the 600 ceiling, and
//!   the emulator's refusals (403/429).
//! * `push [N] [RPM]` — N changes (default 20) made in the emulator one at a time, each delivered by
//!   a channel notification to `POST /push/calendar` (polling once an hour): latency from the
//!   change to the event on the feed (`ctl events --follow` over the control socket).
//!
//! Run: `cargo build --release -p mailsync --bins && target/release/calendar-bench full`.

use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
// (The daemon's Calendar pacing, RPM requests/min, bounds the latency: a round lists the
// calendar list and then each calendar, one paced request each.)
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const ACCOUNT: &str = "cal";

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
        let dir = std::env::temp_dir().join(format!("calendar-bench-{}", std::process::id()));
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

    fn write_config(&self, poll_secs: u64, account_extra: &str, extra: &str) {
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
        let text = format!(
            r#"data_dir = "{d}/data"
socket_path = "{s}"
log_level = "warn"

[sync]
poll_interval_secs = {poll_secs}

[[accounts]]
id = "{ACCOUNT}"
kind = "calendar"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client}"
client_secret = {{ file = "{d}/client_secret" }}
refresh_token = {{ file = "{d}/refresh_token" }}
{account_extra}

{extra}
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

    /// Waits for every calendar to hold a sync token; the elapsed seconds.
    fn wait_full(&self, calendars: usize) -> f64 {
        let want = json!(format!(
            "{calendars}/{calendars} calendars with a sync token"
        ));
        let t = Instant::now();
        loop {
            let a = account_status(&self.socket).unwrap_or(Value::Null);
            if a["phase"] == json!("caught_up") && a["cursor"] == want {
                return t.elapsed().as_secs_f64();
            }
            assert!(
                t.elapsed() < Duration::from_secs(1800),
                "no convergence: {a}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    fn stop_daemon(&self, mut child: Child) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(child.id().to_string())
            .status();
        let _ = child.wait();
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
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn arg<T: std::str::FromStr>(n: usize, default: T) -> T {
    std::env::args()
        .nth(n)
        .and_then(|a| a.parse().ok())
        .unwrap_or(default)
}

fn calendar_requests(c: &mailsync_emulator::Counters) -> u64 {
    c.requests
        .iter()
        .filter(|(k, _)| k.starts_with("calendar."))
        .map(|(_, v)| *v)
        .sum()
}

fn full(events: usize, page: u32, rpm: u32) {
    let bench = Bench::new(EmulatorConfig {
        calendar_events: events,
        messages: 1,
        quota: QuotaMode::On,
        ..EmulatorConfig::default()
    });
    bench.write_config(
        3600,
        &format!("calendar_page_size = {page}\ncalendar_requests_per_minute = {rpm}"),
        "",
    );
    let d = bench.start_daemon();
    let secs = bench.wait_full(2);
    let c = bench.emu().counters();
    bench.stop_daemon(d);
    let reqs = calendar_requests(&c);
    let per_min = reqs as f64 / secs * 60.0;
    let refusals = c.status_403_rate_limit + c.status_429;
    println!(
        "calendar full sync: {events} + {} events, maxResults {page}, pacing {rpm}/min: {secs:.1} s, \
         {reqs} Calendar requests ({:?}), {per_min:.0} requests/min = {:.1} % of the 600/min ceiling, \
         {refusals} refusals (403 {}, 429 {})",
        events / 4 + 3,
        c.requests
            .iter()
            .filter(|(k, _)| k.starts_with("calendar."))
            .collect::<Vec<_>>(),
        per_min / 6.0,
        c.status_403_rate_limit,
        c.status_429,
    );
}

fn push(n: usize, rpm: u32) {
    let bench = Bench::new(EmulatorConfig {
        calendar_events: 50,
        messages: 1,
        quota: QuotaMode::On,
        ..EmulatorConfig::default()
    });
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("port");
    bench.write_config(
        3600,
        &format!("calendar_requests_per_minute = {rpm}"),
        &format!(
            "[push]\nport = {port}\nverification_token = {{ value = \"unused\" }}\n\
             calendar_address = \"http://127.0.0.1:{port}/push/calendar\"\n"
        ),
    );
    let d = bench.start_daemon();
    bench.wait_full(2);
    let t = Instant::now();
    while bench.control(
        reqwest::Method::GET,
        &format!("/_emulator/accounts/{}/channels", bench.email),
        None,
    )["channels"]
        .as_array()
        .map_or(0, Vec::len)
        < 2
    {
        assert!(t.elapsed() < Duration::from_secs(60), "no channels");
        std::thread::sleep(Duration::from_millis(50));
    }
    let mut follow = UnixStream::connect(&bench.socket).expect("socket");
    follow
        .write_all(b"{\"v\":1,\"cmd\":\"events\",\"consumer\":\"bench\",\"follow\":true}\n")
        .expect("follow");
    let mut lines = BufReader::new(follow.try_clone().expect("clone"));
    // Drain what the full sync produced.
    follow
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let mut line = String::new();
    while lines.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
        line.clear();
    }
    follow
        .set_read_timeout(Some(Duration::from_secs(30)))
        .expect("timeout");
    let mut lat = Vec::new();
    for i in 0..n {
        let t = Instant::now();
        let created = bench.control(
            reqwest::Method::POST,
            &format!("/_emulator/accounts/{}/calendars/primary/events", bench.email),
            Some(json!({"summary": format!("bench {i}"), "start": "2026-06-05T10:00:00Z", "end": "2026-06-05T11:00:00Z"})),
        );
        let id = created["id"].as_str().unwrap_or_default().to_string();
        loop {
            line.clear();
            if lines.read_line(&mut line).unwrap_or(0) == 0 {
                panic!("feed stream ended");
            }
            if line.contains(&id) {
                break;
            }
        }
        lat.push(t.elapsed().as_secs_f64() * 1000.0);
        // Past the 2 s debounce window, so each change is the first of its burst.
        std::thread::sleep(Duration::from_millis(2_500));
    }
    bench.stop_daemon(d);
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| lat[((lat.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "calendar push → feed latency over {n} changes (pacing {rpm}/min, debounce 2 s): p50 {:.0} ms, p90 {:.0} ms, max {:.0} ms",
        pct(0.5),
        pct(0.9),
        pct(1.0)
    );
}

fn main() {
    match std::env::args().nth(1).as_deref() {
        Some("full") | None => full(arg(2, 10_000), arg(3, 2500), arg(4, 60)),
        Some("push") => push(arg(2, 20), arg(3, 60)),
        Some(other) => {
            eprintln!("unknown scenario {other:?}; use full [EVENTS] [PAGE] [RPM] | push [N]");
            std::process::exit(2);
        }
    }
}
