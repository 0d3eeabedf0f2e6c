//! `mailsync ctl` as a new user meets it: run from a directory with no config anywhere, it
//! finds the daemon at `$XDG_RUNTIME_DIR/mailsync/control.sock`; `--json` works before and
//! after the verb; an enabled account that cannot start is listed as failed with its error;
//! `ctl status ACCOUNT` shows one account with its recent errors; `--version` names the
//! commit.

use crate::common::*;
use serde_json::{Value, json};
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const BROKEN_GMAIL: &str = r#"
[[accounts]]
id = "broken"
kind = "gmail"
email = "broken@example.com"
client_id = "client"
client_secret = { file = "/nonexistent/mailsync-test/client_secret" }
refresh_token = { file = "/nonexistent/mailsync-test/refresh_token" }

[[accounts]]
id = "badcmd"
kind = "gmail"
email = "badcmd@example.com"
client_id = "client"
client_secret = { command = ["/bin/false"] }
refresh_token = { command = ["/bin/false"] }
"#;

/// Runs `mailsync ARGS` in `cwd` with no config to find: HOME and XDG dirs point into the
/// test's directory, `MAILSYNC_CONFIG` is unset.
fn ctl_without_config(
    cwd: &Path,
    home: &Path,
    runtime: &Path,
    args: &[&str],
) -> (i32, String, String) {
    let out = Command::new(bin())
        .args(args)
        .current_dir(cwd)
        .env_remove("MAILSYNC_CONFIG")
        .env("HOME", home)
        .env("XDG_CONFIG_HOME", home.join(".config"))
        .env("XDG_RUNTIME_DIR", runtime)
        .output()
        .expect("run mailsync");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn ctl_status_without_config_json_anywhere_and_failed_accounts() {
    let mut env = TestEnv::new();
    let runtime = env.path("run");
    let home = env.path("home");
    let cwd = env.path("elsewhere");
    for d in [&runtime, &home, &cwd] {
        std::fs::create_dir_all(d).expect("dir");
    }
    // The daemon uses the per-user default socket; ctl is never told where it is.
    env.socket = runtime.join("mailsync").join("control.sock");
    env.write_config(&format!(
        "{}{BROKEN_GMAIL}",
        test_account("good", "messages = 5")
    ));
    let d = env.start();
    assert!(wait_until(
        Duration::from_secs(20),
        || d.account("good")["phase"] == json!("caught_up")
    ));
    let ctl = |args: &[&str]| ctl_without_config(&cwd, &home, &runtime, args);

    let (code, out, err) = ctl(&["ctl", "status"]);
    assert_eq!(code, 0, "{out}{err}");
    let header = out.lines().next().unwrap_or_default();
    for part in [
        "mailsync ",
        &format!("pid {}", d.pid()),
        &format!("data {}", env.data_dir.display()),
        &format!("socket {}", env.socket.display()),
        "health failed: 3 accounts: 1 active, 2 failed",
    ] {
        assert!(header.contains(part), "header lacks {part:?}: {header}");
    }
    assert!(out.contains("● good (test) - active"), "{out}");
    assert!(out.contains("× broken (gmail) - failed"), "{out}");
    assert!(out.contains("× badcmd (gmail) - failed"), "{out}");
    assert!(out.contains("       Phase: caught_up"), "{out}");
    let badcmd_error = out
        .lines()
        .skip_while(|l| !l.contains("badcmd (gmail)"))
        .find(|l| l.trim_start().starts_with("Last error:"))
        .unwrap_or_default();
    assert!(badcmd_error.contains("/bin/false"), "{out}");
    let broken_error = out
        .lines()
        .skip_while(|l| !l.contains("broken (gmail)"))
        .find(|l| l.trim_start().starts_with("Last error:"))
        .unwrap_or_default();
    assert!(
        broken_error.contains("/nonexistent/mailsync-test/client_secret"),
        "{out}"
    );
    assert!(!out.contains("no accounts configured"), "{out}");

    // --json before and after the verb.
    for args in [["ctl", "--json", "status"], ["ctl", "status", "--json"]] {
        let (code, out, err) = ctl(&args);
        assert_eq!(code, 0, "{args:?}: {err}");
        let v: Value = serde_json::from_str(out.trim()).expect("json");
        let broken = v["accounts"]
            .as_array()
            .and_then(|a| a.iter().find(|x| x["account"] == json!("broken")).cloned())
            .unwrap_or(Value::Null);
        assert_eq!(broken["state"], json!("failed"), "{v}");
        assert_eq!(broken["health"], json!("failed"), "{v}");
        assert!(
            broken["last_error"]
                .as_str()
                .is_some_and(|e| e.contains("nonexistent")),
            "{v}"
        );
    }

    // One account in detail, with its recent errors.
    assert!(wait_until(Duration::from_secs(5), || {
        !d.account("broken")["recent_errors"]
            .as_array()
            .is_none_or(|e| e.is_empty())
    }));
    let (code, out, err) = ctl(&["ctl", "status", "broken"]);
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("× broken (gmail) - failed"), "{out}");
    assert!(!out.contains("good (test)"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("Recent:") && l.contains("nonexistent")),
        "{out}"
    );
    let (code, out, _) = ctl(&["ctl", "--json", "status", "good"]);
    assert_eq!(code, 0);
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(v["account"], json!("good"));
    let (code, _, err) = ctl(&["ctl", "status", "nope"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("unknown account"), "{err}");
    d.stop();

    // With nothing running, the error names the socket it tried.
    let (code, _, err) = ctl(&["ctl", "status"]);
    assert_eq!(code, 1);
    assert!(err.contains(&env.socket.display().to_string()), "{err}");
}

#[test]
fn version_names_the_git_commit() {
    let (code, out, _) = run_cli(&["--version"]);
    assert_eq!(code, 0);
    let line = out.trim();
    assert!(
        line.starts_with(&format!("mailsync {} (commit ", env!("CARGO_PKG_VERSION"))),
        "{line}"
    );
    let commit = line
        .rsplit_once("(commit ")
        .map(|(_, c)| c.trim_end_matches(')'))
        .unwrap_or_default();
    assert!(
        commit == "unknown"
            || (commit.len() == 12 && commit.chars().all(|c| c.is_ascii_hexdigit())),
        "{line}"
    );
    // Built from this repository, the commit is HEAD's.
    if let Ok(o) = Command::new("git")
        .args(["rev-parse", "--short=12", "HEAD"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        && o.status.success()
    {
        let head = String::from_utf8_lossy(&o.stdout).trim().to_string();
        assert_eq!(commit, head);
    }
}
