//! The systemd notify protocol against the real binary: the test binds its own
//! `NOTIFY_SOCKET` (a Unix datagram socket, as systemd does) and `WATCHDOG_USEC`, then checks
//! READY=1 only once the control socket exists, WATCHDOG=1 at the interval, STATUS= changing
//! when an account degrades, RELOADING=1 (with MONOTONIC_USEC) then READY=1 on SIGHUP, no
//! WATCHDOG=1 while the supervision tree is wedged, and STOPPING=1 on SIGTERM.

use crate::common::*;
use serde_json::json;
use std::os::unix::net::UnixDatagram;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// One notify message, split into its `KEY=value` lines.
struct Note {
    at: Instant,
    lines: Vec<String>,
    socket_existed: bool,
}

struct Listener {
    sock: UnixDatagram,
    control: std::path::PathBuf,
    seen: Vec<Note>,
}

impl Listener {
    /// Reads messages until `pred` matches one (returned) or `timeout` passes.
    fn until(&mut self, timeout: Duration, pred: impl Fn(&Note) -> bool) -> Option<usize> {
        let deadline = Instant::now() + timeout;
        let mut buf = vec![0u8; 4096];
        while Instant::now() < deadline {
            match self.sock.recv(&mut buf) {
                Ok(n) => {
                    let text = String::from_utf8_lossy(&buf[..n]).to_string();
                    let note = Note {
                        at: Instant::now(),
                        lines: text.lines().map(str::to_string).collect(),
                        socket_existed: self.control.exists(),
                    };
                    let hit = pred(&note);
                    self.seen.push(note);
                    if hit {
                        return Some(self.seen.len() - 1);
                    }
                }
                Err(e)
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        || e.kind() == std::io::ErrorKind::TimedOut => {}
                Err(e) => panic!("notify socket: {e}"),
            }
        }
        None
    }

    fn has(note: &Note, line: &str) -> bool {
        note.lines.iter().any(|l| l == line)
    }

    fn status_of(note: &Note) -> Option<&str> {
        note.lines.iter().find_map(|l| l.strip_prefix("STATUS="))
    }

    fn watchdogs_since(&self, from: usize) -> Vec<Instant> {
        self.seen[from..]
            .iter()
            .filter(|n| Self::has(n, "WATCHDOG=1"))
            .map(|n| n.at)
            .collect()
    }
}

#[test]
fn notify_ready_watchdog_status_reload_wedge_and_stop() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "[debug]\nallow_wedge = true\n\n{}\n{}",
        test_account("steady", "messages = 10"),
        // Fails its first partial-sync call after a ~2 s full sync: one restart = degraded.
        test_account(
            "flaky",
            "messages = 30\njob_delay_ms = 300\nfail_child = \"history_sync\"\nfail_times = 1"
        ),
    ));
    let notify_path = env.path("notify.sock");
    let sock = UnixDatagram::bind(&notify_path).expect("bind notify socket");
    sock.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    let log = env.path("daemon.log");
    let child = Command::new(bin())
        .arg("--config")
        .arg(&env.config_path)
        .arg("daemon")
        .env("NOTIFY_SOCKET", &notify_path)
        .env("WATCHDOG_USEC", "2000000")
        .env_remove("WATCHDOG_PID")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&log).expect("log"))
        .spawn()
        .expect("spawn mailsync");
    let mut d = Daemon {
        child,
        log,
        socket: env.socket.clone(),
    };
    let mut l = Listener {
        sock,
        control: env.socket.clone(),
        seen: Vec::new(),
    };

    // READY=1 comes once, after the control socket exists, with a summary.
    let ready = l
        .until(Duration::from_secs(20), |n| Listener::has(n, "READY=1"))
        .unwrap_or_else(|| panic!("no READY=1; log:\n{}", d.log_text()));
    assert!(l.seen[ready].socket_existed, "READY=1 before the socket");
    assert!(
        l.seen[..ready].iter().all(|n| !Listener::has(n, "READY=1")),
        "READY twice"
    );
    let first_status = Listener::status_of(&l.seen[ready])
        .unwrap_or_default()
        .to_string();
    assert!(first_status.contains("2 accounts"), "{first_status}");

    // STATUS= changes once the flaky account restarts (degraded).
    let degraded = l
        .until(Duration::from_secs(30), |n| {
            Listener::status_of(n).is_some_and(|s| s.contains("degraded"))
        })
        .unwrap_or_else(|| panic!("STATUS never said degraded; status: {}", d.status()));
    let line = Listener::status_of(&l.seen[degraded]).unwrap_or_default();
    assert!(line.contains("1 degraded (restarted 1x)"), "{line}");
    assert_ne!(line, first_status);

    // WATCHDOG=1 every half interval (1 s); never a gap as long as the 2 s systemd allows.
    let before = l.seen.len();
    l.until(Duration::from_secs(7), |_| false);
    let pings = l.watchdogs_since(ready);
    assert!(pings.len() >= 6, "only {} watchdog pings", pings.len());
    let recent = l.watchdogs_since(before);
    let gaps: Vec<Duration> = recent.windows(2).map(|w| w[1] - w[0]).collect();
    assert!(gaps.len() >= 5, "{gaps:?}");
    let mut sorted = gaps.clone();
    sorted.sort();
    let median = sorted[sorted.len() / 2];
    assert!(
        median >= Duration::from_millis(700) && median <= Duration::from_millis(1300),
        "median gap {median:?}: {gaps:?}"
    );
    assert!(gaps.iter().all(|g| *g < Duration::from_secs(2)), "{gaps:?}");

    // SIGHUP: RELOADING=1 with MONOTONIC_USEC, then READY=1.
    d.signal("HUP");
    let reloading = l
        .until(Duration::from_secs(10), |n| Listener::has(n, "RELOADING=1"))
        .expect("no RELOADING=1");
    assert!(
        l.seen[reloading].lines.iter().any(|x| x
            .strip_prefix("MONOTONIC_USEC=")
            .is_some_and(|v| v.parse::<u64>().is_ok())),
        "{:?}",
        l.seen[reloading].lines
    );
    let ready_again = l
        .until(Duration::from_secs(10), |n| Listener::has(n, "READY=1"))
        .expect("no READY=1 after the reload");
    // The summary is back in STATUS= after the reload.
    let line = Listener::status_of(&l.seen[ready_again]).unwrap_or_default();
    assert!(line.starts_with("2 accounts: "), "{line}");

    // Wedge the supervision tree: the watchdog must starve.
    let r = d.request(json!({"v":1,"cmd":"debug-wedge","hold_ms":9000}));
    assert_eq!(r["ok"], json!(true), "{r}");
    // A ping already under way may still land; after that, silence.
    l.until(Duration::from_millis(2200), |_| false);
    let quiet_from = l.seen.len();
    l.until(Duration::from_secs(4), |_| false);
    assert!(
        l.watchdogs_since(quiet_from).is_empty(),
        "WATCHDOG=1 while the tree is wedged"
    );
    // The tree is wedged, so status cannot answer: the log is the only place to say it.
    assert!(
        d.log_text().contains("does not answer"),
        "no log line about the wedge"
    );
    // Once it answers again the pings resume.
    l.until(Duration::from_secs(10), |n| Listener::has(n, "WATCHDOG=1"))
        .expect("watchdog did not resume after the wedge");

    // SIGTERM: STOPPING=1, then a clean exit.
    d.signal("TERM");
    l.until(Duration::from_secs(10), |n| Listener::has(n, "STOPPING=1"))
        .expect("no STOPPING=1");
    let st = d.wait_exit(Duration::from_secs(20));
    assert!(
        st.is_some_and(|s| s.success()),
        "exit {st:?}; log:\n{}",
        d.log_text()
    );
}

#[test]
fn notify_debug_wedge_is_refused_without_the_config_flag() {
    let env = TestEnv::new();
    env.write_config(&test_account("one", "messages = 1"));
    let d = env.start();
    let r = d.request(json!({"v":1,"cmd":"debug-wedge","hold_ms":1000}));
    assert_eq!(r["ok"], json!(false), "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .is_some_and(|m| m.contains("allow_wedge")),
        "{r}"
    );
    d.stop();
}
