//! Test helpers: `TestEnv` (a temp dir with a config), `Daemon` (the real binary as a child
//! process, its log captured), a raw control-socket client and `wait_until`.

#![allow(dead_code)]

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Waits until every registered feed consumer (sinks included) has acknowledged the newest
/// event (`consumers` over the socket: lag 0).
pub fn wait_consumers_caught_up(d: &Daemon, timeout: Duration) -> bool {
    wait_until(timeout, || {
        d.try_request(&json!({"v":1,"cmd":"consumers"}))
            .ok()
            .and_then(|v| v["data"]["consumers"].as_array().cloned())
            .is_some_and(|l| l.iter().all(|c| c["lag"] == json!(0)))
    })
}

/// Path of the binary under test.
pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_mailsync")
}

/// A scratch directory with a config file.
pub struct TestEnv {
    pub dir: tempfile::TempDir,
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub socket: PathBuf,
}

impl TestEnv {
    pub fn new() -> TestEnv {
        let dir = tempfile::Builder::new()
            .prefix("ms")
            .tempdir_in("/tmp")
            .expect("tempdir");
        let config_path = dir.path().join("config.toml");
        let data_dir = dir.path().join("data");
        let socket = dir.path().join("control.sock");
        TestEnv {
            dir,
            config_path,
            data_dir,
            socket,
        }
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The common part of every test config, followed by `rest` (accounts etc.).
    pub fn write_config(&self, rest: &str) {
        let text = format!(
            r#"data_dir = "{data}"
socket_path = "{socket}"
log_format = "json"
log_level = "info,mailsync=debug,mailsync_actors=debug"
shutdown_grace_secs = 5

[sync]
poll_interval_secs = 1
batch_size = 5

[retry]
base_ms = 50
cap_ms = 400
max_attempts = 6

[restart]
base_ms = 100
cap_ms = 800
max_restarts = 3
window_secs = 60

{rest}
"#,
            data = self.data_dir.display(),
            socket = self.socket.display(),
        );
        std::fs::write(&self.config_path, text).expect("write config");
    }

    /// Starts the daemon and waits until its socket answers `status`.
    pub fn start(&self) -> Daemon {
        let log = self.path(&format!("daemon-{}.log", unique()));
        let log_file = std::fs::File::create(&log).expect("log file");
        let child = Command::new(bin())
            .arg("--config")
            .arg(&self.config_path)
            .arg("daemon")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .spawn()
            .expect("spawn mailsync");
        let mut d = Daemon {
            child,
            log,
            socket: self.socket.clone(),
        };
        let ok = wait_until(Duration::from_secs(20), || {
            d.try_request(&json!({"v":1,"cmd":"status"})).is_ok()
        });
        if !ok {
            let _ = d.child.kill();
            panic!("daemon did not come up; log:\n{}", d.log_text());
        }
        d
    }
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// The daemon under test.
pub struct Daemon {
    pub child: Child,
    pub log: PathBuf,
    pub socket: PathBuf,
}

impl Daemon {
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// One request, one reply line, over a fresh connection.
    pub fn try_request(&self, req: &Value) -> Result<Value, String> {
        socket_request(&self.socket, &req.to_string())
    }

    pub fn request(&self, req: Value) -> Value {
        self.try_request(&req)
            .unwrap_or_else(|e| panic!("request {req} failed: {e}; log:\n{}", self.log_text()))
    }

    /// `status` data.
    pub fn status(&self) -> Value {
        let r = self.request(json!({"v":1,"cmd":"status"}));
        assert_eq!(r["ok"], json!(true), "status failed: {r}");
        r["data"].clone()
    }

    /// The status entry of one account.
    pub fn account(&self, id: &str) -> Value {
        let s = self.status();
        s["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["account"] == json!(id)).cloned())
            .unwrap_or(Value::Null)
    }

    pub fn signal(&self, sig: &str) {
        let st = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .expect("kill");
        assert!(st.success());
    }

    pub fn kill9(mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Waits for the process to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if let Ok(Some(st)) = self.child.try_wait() {
                return Some(st);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        None
    }

    /// SIGTERM and wait for a clean exit.
    pub fn stop(mut self) {
        self.signal("TERM");
        let st = self.wait_exit(Duration::from_secs(20));
        assert!(
            st.is_some_and(|s| s.success()),
            "daemon did not exit cleanly: {st:?}; log:\n{}",
            self.log_text()
        );
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Sends one line and reads one reply line.
pub fn socket_request(socket: &Path, line: &str) -> Result<Value, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    s.write_all(line.as_bytes()).map_err(|e| e.to_string())?;
    s.write_all(b"\n").map_err(|e| e.to_string())?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).map_err(|e| e.to_string())?;
    serde_json::from_str(&reply).map_err(|e| format!("bad reply {reply:?}: {e}"))
}

/// Polls `cond` every 50 ms until it holds or the timeout passes.
pub fn wait_until(timeout: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A test account block.
pub fn test_account(id: &str, extra: &str) -> String {
    format!(
        r#"[[accounts]]
id = "{id}"
kind = "test"

[accounts.test]
{extra}
"#
    )
}

/// Runs `mailsync` with arguments and returns (exit code, stdout, stderr).
pub fn run_cli(args: &[&str]) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .output()
        .expect("run mailsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
pub mod calendar;
pub mod certs;
pub mod dovecot;
pub mod emulator;
pub mod feed_oracle;
pub mod http;
pub mod tmpfs;

/// notmuch (Debian's package) pointed at a Maildir root, with its own config in the test dir.
pub struct Notmuch {
    config: PathBuf,
    home: PathBuf,
}

impl Notmuch {
    /// Writes a notmuch config for `root`; `synchronize_flags` makes notmuch read Maildir flags
    /// into tags (unread, flagged ...).
    pub fn new(env: &TestEnv, root: &Path, synchronize_flags: bool) -> Notmuch {
        let config = env.path("notmuch-config");
        std::fs::write(
            &config,
            format!(
                "[database]\npath={}\n[user]\nname=Test\nprimary_email=test@example.com\n[new]\ntags=inbox;\n[maildir]\nsynchronize_flags={synchronize_flags}\n",
                root.display()
            ),
        )
        .expect("write notmuch config");
        Notmuch {
            config,
            home: env.dir.path().to_path_buf(),
        }
    }

    /// Runs `notmuch ARGS`, asserting success, and returns its trimmed stdout.
    pub fn run(&self, args: &[&str]) -> String {
        let out = Command::new("notmuch")
            .args(args)
            .env("NOTMUCH_CONFIG", &self.config)
            .env("HOME", &self.home)
            .output()
            .expect("notmuch is installed (scripts/test installs it: apt-get install notmuch)");
        assert!(
            out.status.success(),
            "notmuch {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }
}
