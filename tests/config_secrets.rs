//! Secrets never appear in what mailsync prints about a config, over every config error path:
//! a wrong type, a missing key, an unknown key, a secret given as a plain string, a failing
//! credential command whose output echoes the secret, an unreadable credential file, an unset
//! variable, a bad data dir, a bad webhook URL with basic-auth userinfo, a bad environment
//! override — through `check-config` and `daemon`, with text and JSON logs — and, for the
//! references that only fail when resolved, in the running daemon's status and log.

use crate::common::*;
use serde_json::json;
use std::time::Duration;

/// The secret every case hides somewhere.
const SECRET: &str = "s3cr3t-V4LU3-9f2c";

fn gmail(id: &str, refresh: &str) -> String {
    format!(
        "[[accounts]]\nid = \"{id}\"\nkind = \"gmail\"\nemail = \"{id}@example.com\"\n\
         client_id = \"cid\"\nclient_secret = {{ value = \"{SECRET}\" }}\nrefresh_token = {refresh}\n"
    )
}

/// Runs `check-config` and `daemon` with text and JSON logs; returns the exit codes and
/// asserts that no output holds the secret.
fn assert_hidden(env: &TestEnv, case: &str, envs: &[(&str, &str)]) -> Vec<i32> {
    let cfg = env.config_path.to_string_lossy().to_string();
    let mut codes = Vec::new();
    for format in ["text", "json"] {
        for cmd in ["check-config", "daemon"] {
            let out = std::process::Command::new(bin())
                .args(["--log-format", format, "--config", &cfg, cmd])
                .envs(envs.iter().copied())
                .stdin(std::process::Stdio::null())
                .output()
                .expect("run mailsync");
            let text = format!(
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            );
            assert!(
                !text.contains(SECRET) && !text.contains("hunter2"),
                "{case}: `{cmd}` ({format}) printed the secret:\n{text}"
            );
            codes.push(out.status.code().unwrap_or(-1));
        }
    }
    codes
}

#[test]
fn no_config_error_path_prints_a_secret() {
    let env = TestEnv::new();
    let dir = env.path("creds");
    std::fs::create_dir_all(&dir).expect("dir");
    let blocker = env.path("a-file");
    std::fs::write(&blocker, "x").expect("file");
    // Each case is a config that must be refused (exit 2) without echoing SECRET.
    let refused: Vec<(&str, String)> = vec![
        ("plain-string secret", gmail("a", &format!("\"{SECRET}\""))),
        ("secret as an array", gmail("a", &format!("[\"{SECRET}\"]"))),
        (
            "plain webhook secret",
            format!(
                "[[webhooks]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/\"\nsecret = \"{SECRET}\"\n"
            ),
        ),
        (
            "plain push token",
            format!("[push]\nport = 1\nverification_token = \"{SECRET}\"\n"),
        ),
        (
            "wrong type",
            format!(
                "{}\nbatch_size = \"{SECRET}\"\n",
                gmail("a", "{ env = \"X\" }")
            ),
        ),
        (
            "missing key",
            format!(
                "[[accounts]]\nid = \"a\"\nkind = \"gmail\"\nemail = \"a@example.com\"\n\
                 client_secret = {{ value = \"{SECRET}\" }}\nrefresh_token = {{ value = \"{SECRET}\" }}\n"
            ),
        ),
        (
            "unknown key",
            format!(
                "{}refresh_tokn = \"{SECRET}\"\n",
                gmail("a", "{ env = \"X\" }")
            ),
        ),
        (
            "unknown key in a credential",
            gmail(
                "a",
                &format!("{{ value = \"{SECRET}\", extra = \"{SECRET}\" }}"),
            ),
        ),
        (
            "two sources in a credential",
            gmail("a", &format!("{{ value = \"{SECRET}\", env = \"X\" }}")),
        ),
        (
            "webhook URL with userinfo",
            format!(
                "[[webhooks]]\nname = \"w\"\nurl = \"htps://user:{SECRET}@hooks.example.com/x?token={SECRET}\"\n"
            ),
        ),
        (
            "bad data_dir",
            format!(
                "data_dir = \"{}\"\n{}",
                blocker.join("data").display(),
                gmail("a", &format!("{{ value = \"{SECRET}\" }}"))
            ),
        ),
    ];
    for (case, body) in &refused {
        // Written raw (not through write_config), so data_dir and types are exactly the case's.
        let socket = env.path("c.sock");
        let text = if body.starts_with("data_dir") {
            format!("socket_path = \"{}\"\n{body}", socket.display())
        } else {
            format!(
                "data_dir = \"{}\"\nsocket_path = \"{}\"\n{body}",
                env.data_dir.display(),
                socket.display()
            )
        };
        std::fs::write(&env.config_path, text).expect("config");
        let codes = assert_hidden(&env, case, &[]);
        assert!(
            codes.iter().all(|c| *c != 0),
            "{case}: accepted ({codes:?})"
        );
    }

    // An environment override holding the secret, with the wrong type.
    env.write_config(&test_account("t", ""));
    let codes = assert_hidden(
        &env,
        "env override",
        &[("MAILSYNC_SYNC__BATCH_SIZE", SECRET)],
    );
    assert!(codes.iter().all(|c| *c == 2), "{codes:?}");

    // References that are valid in the file but fail when resolved: check-config names the
    // key (exit 2); the daemon starts and shows the accounts failed, secret-free.
    let echo = format!("echo {SECRET}; echo {SECRET} >&2; echo hunter2 >&2; exit 3");
    env.write_config(&format!(
        "{}{}{}{}[[webhooks]]\nname = \"w\"\nurl = \"http://127.0.0.1:9/\"\n\
         secret = {{ command = [\"sh\", \"-c\", \"{echo}\"] }}\n",
        gmail(
            "cmd",
            &format!("{{ command = [\"sh\", \"-c\", \"{echo}\"] }}")
        ),
        gmail("dir", &format!("{{ file = \"{}\" }}", dir.display())),
        gmail("missing", "{ file = \"/nonexistent/mailsync/token\" }"),
        gmail("unset", "{ env = \"MAILSYNC_TEST_UNSET_SECRET_VAR\" }"),
    ));
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, out, err) = run_cli(&["--config", &cfg, "check-config"]);
    assert_eq!(code, 2, "{out}{err}");
    for key in ["cmd", "dir", "missing", "unset", "webhooks[0].secret"] {
        assert!(err.contains(key), "check-config does not name {key}: {err}");
    }
    assert!(
        !format!("{out}{err}").contains(SECRET) && !err.contains("hunter2"),
        "{err}"
    );

    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(30), || {
            let s = d.status();
            ["cmd", "dir", "missing", "unset"].iter().all(|id| {
                s["accounts"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .any(|a| a["account"] == json!(id) && a["state"] == json!("failed"))
            })
        }),
        "accounts did not fail: {}",
        d.status()
    );
    let status = d.status().to_string();
    let (_, table, _) = run_cli(&["--config", &cfg, "ctl", "status"]);
    let (_, detail, _) = run_cli(&["--config", &cfg, "ctl", "status", "cmd"]);
    let log = d.log_text();
    d.stop();
    for (what, text) in [
        ("status", &status),
        ("ctl status", &table),
        ("ctl status cmd", &detail),
        ("log", &log),
    ] {
        assert!(
            !text.contains(SECRET) && !text.contains("hunter2"),
            "{what} holds the secret:\n{text}"
        );
    }
}
