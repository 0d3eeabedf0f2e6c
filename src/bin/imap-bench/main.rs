//! imap-bench: the IMAP sync of the real daemon beside mbsync (Debian's `isync`) on the same
//! Dovecot mailbox, both writing a Maildir with fsync (Dovecot with `mail_fsync = always`).
//!
//! For each size: a cold sync (wall time, CPU seconds, peak RSS) and a no-change resync (a
//! second run on the synced state: for mailsync a daemon restart until its first incremental
//! round ends; for mbsync a second `mbsync -a`).
//!
//! Run: `cargo build --release -p mailsync --bins && target/release/imap-bench 10000 100000`.
//! Needs `dovecot` (dovecot-imapd), `mbsync` (isync) and `/usr/bin/time`. Everything lives in
//! a directory under /tmp that is removed at the end.

mod dovecot;
mod many;
#[path = "../bench_common/store_section.rs"]
mod store_section;

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

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

fn status(socket: &Path) -> Option<Value> {
    request(socket, r#"{"v":1,"cmd":"status"}"#)
}

/// The Maildir sink's lag behind the feed (0 once every event is written and fsynced).
fn maildir_lag(st: &Value) -> Option<u64> {
    st["data"]["sinks"]
        .as_array()?
        .iter()
        .find(|s| s["name"] == json!("maildir"))?["lag"]
        .as_u64()
}

fn clk_tck() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

/// (user+system CPU seconds, VmHWM in MiB) of a live process.
fn proc_usage(pid: u32) -> (f64, f64) {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
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

/// One measured run.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Run {
    wall: f64,
    cpu: f64,
    rss_mib: f64,
}

/// How often a single-account run asks the daemon's status.
const POLL: Duration = Duration::from_millis(100);

fn mailsync_bin() -> PathBuf {
    let me = std::env::current_exe().expect("current exe");
    me.with_file_name("mailsync")
}

/// Runs the daemon until `done(status)`, measuring it; then SIGTERM.
fn run_daemon(dir: &Path, poll: Duration, done: impl Fn(&Value) -> bool) -> Run {
    let socket = dir.join("control.sock");
    let started = Instant::now();
    let mut child = Command::new(mailsync_bin())
        .arg("--config")
        .arg(dir.join("config.toml"))
        .arg("daemon")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn mailsync (build it in release next to this binary)");
    let pid = child.id();
    let trace = std::env::var_os("IMAP_BENCH_TRACE").is_some();
    let mut traced = Instant::now();
    loop {
        let st = status(&socket);
        if trace
            && traced.elapsed() >= Duration::from_secs(1)
            && let Some(st) = &st
        {
            traced = Instant::now();
            let a = &st["data"]["accounts"][0];
            let (cpu, rss) = proc_usage(pid);
            eprintln!(
                "{:6.1} s  phase {}  held {:?}  maildir lag {:?}  cpu {cpu:.1} s  rss {rss:.0} MiB",
                started.elapsed().as_secs_f64(),
                a["phase"],
                held(a),
                maildir_lag(st)
            );
        }
        if st.as_ref().is_some_and(&done) {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(3_600),
            "no end in sight"
        );
        std::thread::sleep(poll);
    }
    let wall = started.elapsed().as_secs_f64();
    let (cpu, rss) = proc_usage(pid);
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(pid.to_string())
        .status();
    let _ = child.wait();
    Run {
        wall,
        cpu,
        rss_mib: rss,
    }
}

fn held(a: &Value) -> Option<u64> {
    let c = a["cursor"].as_str()?;
    let (_, rest) = c.split_once(" folders, ")?;
    rest.split_whitespace().next()?.parse().ok()
}

fn mailsync_cold_and_noop(dc: &dovecot::Dovecot, work: &Path, n: u64) -> (Run, Run) {
    let dir = work.join("mailsync");
    std::fs::create_dir_all(&dir).expect("dir");
    std::fs::write(
        dir.join("config.toml"),
        format!(
            r#"data_dir = "{d}/data"
socket_path = "{d}/control.sock"
log_level = "warn"

[sync]
poll_interval_secs = 300

[maildir]
root = "{d}/maildir"
{store}
[[accounts]]
id = "bench"
kind = "imap"
host = "127.0.0.1"
port = {port}
tls = "none"
username = "{user}"
password = {{ value = "{pass}" }}

[accounts.imap]
allow_plaintext = true
"#,
            d = dir.display(),
            store = store_section::store_section("IMAP_BENCH_CACHE_MB"),
            port = dc.port,
            user = dovecot::USER,
            pass = dovecot::PASS,
        ),
    )
    .expect("config");
    // Cold: until the mirror holds every message and the Maildir sink has acknowledged
    // every event (its files are fsynced by then), with the daemon still running.
    let cold = run_daemon(&dir, POLL, |st| {
        let a = &st["data"]["accounts"][0];
        a["phase"] == json!("caught_up") && held(a) == Some(n) && maildir_lag(st) == Some(0)
    });
    let start_ms = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let noop = run_daemon(&dir, POLL, |st| {
        let a = &st["data"]["accounts"][0];
        a["phase"] == json!("caught_up")
            && a["last_sync_ms"].as_u64().is_some_and(|ms| ms > start_ms)
    });
    (cold, noop)
}

fn time_run(args: &[&str]) -> Run {
    let out = Command::new("/usr/bin/time")
        .arg("-f")
        .arg("BENCH %e %U %S %M")
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("/usr/bin/time");
    let text = String::from_utf8_lossy(&out.stderr);
    let line = text
        .lines()
        .find(|l| l.starts_with("BENCH "))
        .unwrap_or_else(|| panic!("no timing from {args:?}: {text}"));
    let f: Vec<f64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|v| v.parse().ok())
        .collect();
    assert!(out.status.success(), "{args:?} failed: {text}");
    Run {
        wall: f[0],
        cpu: f[1] + f[2],
        rss_mib: f[3] / 1024.0,
    }
}

/// One account's part of an mbsyncrc: `user` on Dovecot at `port`, into `dir/<name>/`.
fn mbsync_account(name: &str, user: &str, port: u16, dir: &Path) -> String {
    format!(
        r#"
IMAPAccount {name}
Host 127.0.0.1
Port {port}
User {user}
Pass {pass}
SSLType None
AuthMechs LOGIN
Timeout 300

IMAPStore {name}-remote
Account {name}

MaildirStore {name}-local
Path {d}/{name}/
Inbox {d}/{name}/INBOX
SubFolders Verbatim

Channel {name}
Far :{name}-remote:
Near :{name}-local:
Patterns *
Create Near
Sync Pull
SyncState *
"#,
        pass = dovecot::PASS,
        d = dir.display(),
    )
}

/// mbsync with fsync on, configured for `accounts` (name, user): a cold `mbsync -a` and a
/// second one with nothing to do.
fn mbsync_runs(port: u16, work: &Path, accounts: &[(String, String)]) -> (Run, Run) {
    let dir = work.join("mbsync");
    std::fs::create_dir_all(dir.join("mail")).expect("dir");
    let conf = dir.join("mbsyncrc");
    let mut text = String::from("FSync yes\n");
    for (name, user) in accounts {
        // isync 1.4 creates folders inside a store but not the store's own directory.
        std::fs::create_dir_all(dir.join("mail").join(name)).expect("dir");
        text.push_str(&mbsync_account(name, user, port, &dir.join("mail")));
    }
    std::fs::write(&conf, text).expect("mbsyncrc");
    let c = conf.to_string_lossy().to_string();
    let cold = time_run(&["mbsync", "-q", "-c", &c, "-a"]);
    let noop = time_run(&["mbsync", "-q", "-c", &c, "-a"]);
    (cold, noop)
}

fn mbsync_cold_and_noop(dc: &dovecot::Dovecot, work: &Path) -> (Run, Run) {
    mbsync_runs(
        dc.port,
        work,
        &[("bench".to_string(), dovecot::USER.to_string())],
    )
}

/// Command-line options.
struct Args {
    sizes: Vec<u64>,
    only: Option<String>,
    accounts: Option<(usize, u64)>,
}

fn args() -> Args {
    let mut out = Args {
        sizes: Vec::new(),
        only: None,
        accounts: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--only" => out.only = it.next(),
            "--accounts" => {
                let n = it.next().and_then(|v| v.parse().ok()).unwrap_or(200);
                let per = it.next().and_then(|v| v.parse().ok()).unwrap_or(100);
                out.accounts = Some((n, per));
            }
            other => match other.parse() {
                Ok(n) => out.sizes.push(n),
                Err(_) => panic!(
                    "usage: imap-bench [SIZE…] [--only mailsync|mbsync] [--accounts N PER_ACCOUNT]"
                ),
            },
        }
    }
    if out.sizes.is_empty() && out.accounts.is_none() {
        out.sizes.push(10_000);
    }
    out
}

fn print_row(n: u64, tool: &str, cold: &Run, noop: &Run) {
    println!(
        "| {n} | {tool} | {:.2} | {:.0} | {:.2} | {:.1} | {:.2} | {:.2} | {:.1} |",
        cold.wall,
        n as f64 / cold.wall,
        cold.cpu,
        cold.rss_mib,
        noop.wall,
        noop.cpu,
        noop.rss_mib,
    );
}

fn main() {
    let args = args();
    let wants = |tool: &str| args.only.as_deref().is_none_or(|o| o == tool);
    if !args.sizes.is_empty() {
        println!(
            "| messages | tool | cold wall s | msg/s | cold CPU s | peak RSS MiB | no-change wall s | no-change CPU s | no-change RSS MiB |"
        );
        println!("|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    }
    let mut done = Vec::new();
    for &n in &args.sizes {
        let work = std::env::temp_dir().join(format!("imap-bench-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&work);
        std::fs::create_dir_all(&work).expect("work dir");
        let dc = dovecot::Dovecot::start(&work, &[(dovecot::USER.to_string(), n)]);
        if wants("mailsync") {
            let (cold, noop) = mailsync_cold_and_noop(&dc, &work, n);
            print_row(n, "mailsync", &cold, &noop);
        }
        if wants("mbsync") {
            let (cold, noop) = mbsync_cold_and_noop(&dc, &work);
            print_row(n, "mbsync", &cold, &noop);
        }
        drop(dc);
        // Removed only at the end: ext4 without a journal skips inodes freed in the last
        // 60–300 s when it allocates new ones, so mass deletions slow the next run's file
        // creation (both tools') by 2–3×.
        done.push(work);
    }
    for work in done {
        let _ = std::fs::remove_dir_all(&work);
    }
    if let Some((count, per)) = args.accounts {
        many::run(count, per, wants("mailsync"), wants("mbsync"));
    }
}
