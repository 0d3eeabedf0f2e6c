//! Service definitions checked by the tools that run them: `systemd-analyze verify` on every
//! unit (as packaged, and as `service install` writes them), `systemd-analyze security
//! --offline=true` exposure ≤ 2.0 for the system unit, the launchd agent parsed as a property
//! list with its required keys. Everything happens in temp dirs: no real unit is touched.

use crate::common::*;
use std::path::{Path, PathBuf};
use std::process::Command;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn repo(path: &str) -> PathBuf {
    Path::new(REPO).join(path)
}

/// The binary's real path (what `service install` writes into units).
fn real_bin() -> String {
    std::fs::canonicalize(bin())
        .expect("binary path")
        .display()
        .to_string()
}

/// Copies a packaged unit into `dir` with ExecStart pointing at the built binary (verify
/// checks that the executable exists).
fn unit_copy(env: &TestEnv, src: &str, name: &str) -> PathBuf {
    let dir = env.path(name);
    std::fs::create_dir_all(&dir).expect("dir");
    let text = std::fs::read_to_string(repo(src)).expect("unit");
    assert!(text.contains("ExecStart=/usr/bin/mailsync"), "{src}");
    let path = dir.join("mailsync.service");
    std::fs::write(&path, text.replace("/usr/bin/mailsync", &real_bin())).expect("write");
    path
}

/// Runs `systemd-analyze [--user] verify` and insists on exit 0 and no complaint at all
/// (unknown keys are only warnings to systemd, but they are bugs to us).
fn verify(env: &TestEnv, unit: &Path, user: bool) {
    let runtime = env.path("xdg-runtime");
    std::fs::create_dir_all(&runtime).expect("runtime dir");
    let mut cmd = Command::new("systemd-analyze");
    if user {
        cmd.arg("--user");
    }
    let out = cmd
        .args(["--man=no", "verify"])
        .arg(unit)
        .env("XDG_RUNTIME_DIR", &runtime)
        .env("HOME", env.dir.path())
        .output()
        .expect("systemd-analyze is installed (scripts/test installs Debian's systemd)");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "verify {} failed: {stderr}",
        unit.display()
    );
    let complaints: Vec<&str> = stderr.lines().filter(|l| l.contains("mailsync")).collect();
    assert!(
        complaints.is_empty(),
        "verify {}: {complaints:#?}",
        unit.display()
    );
}

#[test]
fn units_pass_systemd_analyze_verify() {
    let env = TestEnv::new();
    let system = unit_copy(&env, "packaging/systemd/mailsync.service", "system");
    verify(&env, &system, false);
    let user = unit_copy(&env, "packaging/systemd/user/mailsync.service", "user");
    verify(&env, &user, true);
    for key in [
        "Type=notify",
        "WatchdogSec=",
        "ExecReload=/bin/kill -HUP $MAINPID",
    ] {
        for unit in [&system, &user] {
            let text = std::fs::read_to_string(unit).expect("unit");
            assert!(text.contains(key), "{} lacks {key}", unit.display());
        }
    }
}

#[test]
fn system_unit_exposure_is_at_most_2() {
    let env = TestEnv::new();
    let unit = unit_copy(&env, "packaging/systemd/mailsync.service", "security");
    let out = Command::new("systemd-analyze")
        .args(["security", "--offline=true", "--no-pager"])
        .arg(&unit)
        .output()
        .expect("systemd-analyze");
    let text = String::from_utf8_lossy(&out.stdout);
    let score: f64 = text
        .lines()
        .find_map(|l| {
            l.split("Overall exposure level for mailsync.service: ")
                .nth(1)
        })
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no exposure score in:\n{text}"));
    assert!(score <= 2.0, "exposure {score} > 2.0:\n{text}");
    // The figure is recorded in the operations guide.
    let doc = std::fs::read_to_string(repo("docs/operations.md")).expect("docs/operations.md");
    assert!(
        doc.contains(&format!("exposure level {score:.1}")),
        "docs/operations.md does not record the exposure {score:.1}"
    );
}

fn plist_dict(path: &Path) -> plist::Dictionary {
    plist::Value::from_file(path)
        .unwrap_or_else(|e| panic!("{} is not a property list: {e}", path.display()))
        .into_dictionary()
        .expect("a dictionary at the top")
}

/// The keys launchd needs: a reverse-DNS label, the program and its arguments, started at
/// load, restarted when it dies, logs under ~/Library/Logs/mailsync/.
fn assert_agent_keys(d: &plist::Dictionary, bin: &str, home: &str) {
    assert_eq!(
        d.get("Label").and_then(|v| v.as_string()),
        Some("com.mailsync.daemon")
    );
    let args: Vec<&str> = d
        .get("ProgramArguments")
        .and_then(|v| v.as_array())
        .expect("ProgramArguments")
        .iter()
        .filter_map(|v| v.as_string())
        .collect();
    assert_eq!(args, vec![bin, "daemon"]);
    assert_eq!(d.get("RunAtLoad").and_then(|v| v.as_boolean()), Some(true));
    assert!(d.get("KeepAlive").is_some(), "KeepAlive");
    for key in ["StandardOutPath", "StandardErrorPath"] {
        let log = d.get(key).and_then(|v| v.as_string()).unwrap_or_default();
        assert!(
            log.starts_with(&format!("{home}/Library/Logs/mailsync/")),
            "{key} = {log}"
        );
    }
}

#[test]
fn launchd_agent_parses_with_the_required_keys() {
    let packaged = plist_dict(&repo("packaging/launchd/com.mailsync.daemon.plist"));
    assert_agent_keys(&packaged, "/usr/local/bin/mailsync", "/Users/USER");

    let env = TestEnv::new();
    let home = env.path("home");
    std::fs::create_dir_all(&home).expect("home");
    let out = Command::new(bin())
        .args(["service", "install", "--launchd"])
        .env("HOME", &home)
        .output()
        .expect("run");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    let agent = home.join("Library/LaunchAgents/com.mailsync.daemon.plist");
    assert!(stdout.contains("launchctl bootstrap gui/"), "{stdout}");
    let installed = plist_dict(&agent);
    assert_agent_keys(&installed, &real_bin(), &home.display().to_string());
    assert!(home.join("Library/Logs/mailsync").is_dir());
    let out = Command::new(bin())
        .args(["service", "uninstall", "--launchd"])
        .env("HOME", &home)
        .output()
        .expect("run");
    assert!(out.status.success());
    assert!(!agent.exists());
}

#[test]
fn service_install_user_writes_a_unit_systemd_accepts() {
    let env = TestEnv::new();
    let home = env.path("home");
    let xdg = env.path("xdg-config");
    std::fs::create_dir_all(&home).expect("home");
    let run = |args: &[&str]| {
        let out = Command::new(bin())
            .args(args)
            .env("HOME", &home)
            .env("XDG_CONFIG_HOME", &xdg)
            .output()
            .expect("run");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let out = run(&["service", "install", "--user"]);
    let unit = xdg.join("systemd/user/mailsync.service");
    assert!(out.contains(&format!("wrote {}", unit.display())), "{out}");
    assert!(
        out.contains("systemctl --user enable --now mailsync"),
        "{out}"
    );
    let text = std::fs::read_to_string(&unit).expect("unit written");
    assert!(
        text.contains(&format!("ExecStart={} daemon", real_bin())),
        "{text}"
    );
    verify(&env, &unit, true);
    let out = run(&["service", "uninstall", "--user"]);
    assert!(out.contains("removed"), "{out}");
    assert!(!unit.exists());

    // The system variant below a root dir (never the real /etc).
    let root = env.path("root");
    let out = run(&[
        "service",
        "install",
        "--system",
        "--root",
        &root.display().to_string(),
    ]);
    assert!(out.contains("systemctl enable --now mailsync"), "{out}");
    let system = root.join("etc/systemd/system/mailsync.service");
    verify(&env, &system, false);
    for f in [
        "etc/sysusers.d/mailsync.conf",
        "etc/tmpfiles.d/mailsync.conf",
    ] {
        assert!(root.join(f).is_file(), "{f}");
    }
}
