//! `mailsync auth`: the desktop loopback flow with PKCE end to end against the emulator's
//! authorization and token endpoints (scripted consent), with the real binary.

use crate::common::*;
use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Stdio};
use std::time::Duration;

#[test]
fn auth_stores_a_working_refresh_token_with_mode_0600() {
    let rt = tokio::runtime::Runtime::new().expect("runtime");
    let emulator = rt.block_on(async {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        mailsync_emulator::Emulator::start(
            mailsync_emulator::EmulatorConfig {
                messages: 3,
                ..Default::default()
            },
            listener,
        )
        .await
        .expect("emulator")
    });
    let base = emulator.base_url();
    let env = TestEnv::new();
    let secret = env.path("client_secret");
    std::fs::write(&secret, mailsync_emulator::DEFAULT_CLIENT_SECRET).expect("secret");
    let token_file = env.path("tokens/refresh_token");
    env.write_config(&format!(
        r#"[[accounts]]
id = "me"
kind = "gmail"
email = "demo@example.com"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{id}"
client_secret = {{ file = "{secret}" }}
refresh_token = {{ file = "{token}" }}
"#,
        id = mailsync_emulator::DEFAULT_CLIENT_ID,
        secret = secret.display(),
        token = token_file.display(),
    ));
    let mut child = Command::new(bin())
        .args(["--config"])
        .arg(&env.config_path)
        .args(["auth", "me", "--no-browser", "--timeout-secs", "30"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn auth");
    let stdout = child.stdout.take().expect("stdout");
    let mut lines = BufReader::new(stdout).lines();
    let url = loop {
        let line = lines
            .next()
            .expect("auth printed no URL")
            .expect("read stdout");
        if line.starts_with("http") {
            break line;
        }
    };
    assert!(url.contains("code_challenge_method=S256"), "{url}");
    assert!(url.contains("access_type=offline"), "{url}");
    // The "browser": follow the URL; the emulator consents and redirects to the loopback.
    let status = rt.block_on(async {
        reqwest::Client::new()
            .get(&url)
            .send()
            .await
            .map(|r| r.status().as_u16())
    });
    assert!(status.is_ok(), "following the auth URL failed: {status:?}");
    assert!(
        wait_until(Duration::from_secs(20), || matches!(
            child.try_wait(),
            Ok(Some(_))
        )),
        "auth did not finish"
    );
    let st = child.wait().expect("wait");
    let rest: Vec<String> = lines.map_while(Result::ok).collect();
    assert!(st.success(), "auth failed: {rest:?}");
    let meta = std::fs::metadata(&token_file).expect("token file");
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let token = std::fs::read_to_string(&token_file).expect("read token");
    assert!(!token.trim().is_empty());
    assert!(
        !rest.iter().any(|l| l.contains(token.trim())),
        "the token was printed"
    );

    // The stored token works: the daemon syncs the account with it.
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(30), || d.account("me")["phase"]
            == serde_json::json!("caught_up")),
        "account did not sync with the new token: {}",
        d.status()
    );
    d.stop();
    rt.block_on(emulator.shutdown());
}
