//! The daemon under test: its config, the child process, control requests over its Unix
//! socket, and what /proc says about it (CPU, memory, open files, threads).

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// One `[[accounts]]` block of the daemon's config.
/// `extra` is added to the block as is (e.g. `push_topic = "…"`).
pub fn account_block(
    id: &str,
    email: &str,
    base: &str,
    secret: &Path,
    refresh: &Path,
    extra: &str,
) -> String {
    format!(
        r#"
[[accounts]]
id = "{id}"
kind = "gmail"
email = "{email}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{refresh}" }}
{extra}
"#,
        client = mailsync_emulator::DEFAULT_CLIENT_ID,
        secret = secret.display(),
        refresh = refresh.display(),
    )
}

/// The running `mailsync daemon`.
pub struct Daemon {
    child: Child,
    socket: PathBuf,
    /// When the process was spawned.
    pub started: Instant,
}

impl Daemon {
    /// The config sections that lift the daemon's quota (for an emulator with quota off).
    pub const QUOTA_LIFTED: &str =
        "[quota]\nscale = 1000000.0\nproject_units_per_minute = 1000000000\n";

    /// Writes the config (`sections` before the accounts: `[quota]`, `[push]` …) and spawns
    /// the daemon next to this binary; returns once it answers on its socket.
    pub fn start(dir: &Path, sections: &str, accounts: &str) -> Daemon {
        let socket = dir.join("control.sock");
        let config = dir.join("config.toml");
        let text = format!(
            "data_dir = \"{d}/data\"\nsocket_path = \"{s}\"\nlog_level = \"warn\"\n\n\
             {sections}\n{accounts}",
            d = dir.display(),
            s = socket.display(),
        );
        std::fs::write(&config, text).expect("config");
        let exe = std::env::current_exe().expect("current exe");
        let mailsync = exe.with_file_name("mailsync");
        assert!(
            mailsync.exists(),
            "{} is missing: run `cargo build --release -p mailsync --bins` first",
            mailsync.display()
        );
        let log = std::fs::File::create(dir.join("daemon.log")).expect("log");
        let started = Instant::now();
        let child = Command::new(mailsync)
            .arg("--config")
            .arg(&config)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn mailsync");
        let d = Daemon {
            child,
            socket,
            started,
        };
        while d.request(&json!({"v":1,"cmd":"status"})).is_none() {
            assert!(
                started.elapsed() < Duration::from_secs(120),
                "the daemon did not answer within 120 s; see {}",
                dir.join("daemon.log").display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        d
    }

    /// The control socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// One request line, one reply line; `None` if the daemon does not answer (yet).
    pub fn request(&self, req: &Value) -> Option<Value> {
        let mut s = UnixStream::connect(&self.socket).ok()?;
        s.set_read_timeout(Some(Duration::from_secs(60))).ok()?;
        s.write_all(req.to_string().as_bytes()).ok()?;
        s.write_all(b"\n").ok()?;
        let mut reply = String::new();
        BufReader::new(s).read_line(&mut reply).ok()?;
        serde_json::from_str(&reply).ok()
    }

    /// `mailsync_runtime_tasks` from `ctl metrics`.
    pub fn runtime_tasks(&self) -> Option<u64> {
        let r = self.request(&json!({"v":1,"cmd":"metrics"}))?;
        r["data"]["text"]
            .as_str()?
            .lines()
            .find_map(|l| l.strip_prefix("mailsync_runtime_tasks "))
            .and_then(|v| v.trim().parse().ok())
    }

    /// SIGTERM to the daemon's own pid, then waits for it.
    pub fn stop(mut self) {
        let _ = Command::new("kill")
            .arg("-TERM")
            .arg(self.child.id().to_string())
            .status();
        let _ = self.child.wait();
    }
}

/// What /proc says about a process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// User + system CPU seconds so far.
    pub cpu_secs: f64,
    /// Resident set now (VmRSS).
    pub rss_mib: f64,
    /// Peak resident set (VmHWM).
    pub hwm_mib: f64,
    /// Open file descriptors.
    pub fds: usize,
    pub threads: usize,
}

fn clock_ticks() -> f64 {
    Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse().ok())
        .unwrap_or(100.0)
}

impl ProcSample {
    pub fn of(pid: u32) -> ProcSample {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
        let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
        let f: Vec<&str> = rest.split_whitespace().collect();
        let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
        let field = |name: &str| {
            status
                .lines()
                .find(|l| l.starts_with(name))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse::<f64>().ok())
                .unwrap_or(0.0)
        };
        ProcSample {
            cpu_secs: (ticks(11) + ticks(12)) / clock_ticks(),
            rss_mib: field("VmRSS:") / 1024.0,
            hwm_mib: field("VmHWM:") / 1024.0,
            fds: std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count()),
            threads: field("Threads:") as usize,
        }
    }
}
