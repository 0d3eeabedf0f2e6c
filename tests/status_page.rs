//! The status page in a real browser: headless Chromium (Debian's package) loads `/` from the
//! daemon's loopback listener; its DOM (`--dump-dom`) and its screenshot (`--screenshot`, PNG
//! decoded here) show each account's state badge and the progress of a running full sync.
//! Chromium is stopped by its own pid if it hangs.

use crate::common::*;
use serde_json::json;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const BROKEN_GMAIL: &str = r#"
[[accounts]]
id = "broken"
kind = "gmail"
email = "broken@example.com"
client_id = "client"
client_secret = { file = "/nonexistent/mailsync-test/client_secret" }
refresh_token = { file = "/nonexistent/mailsync-test/refresh_token" }
"#;

/// Runs headless Chromium with `args` + `url`, returning its stdout; kills it (by pid) after
/// `timeout`.
fn chromium(env: &TestEnv, args: &[String], url: &str, timeout: Duration) -> String {
    let profile = env.path(&format!("chromium-{}", args.len()));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--no-first-run",
            "--hide-scrollbars",
            "--window-size=1000,1600",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .env("HOME", env.dir.path())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("chromium is installed (scripts/test installs Debian's chromium)");
    let deadline = Instant::now() + timeout;
    loop {
        match child.try_wait() {
            Ok(Some(_)) => break,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(100)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("chromium did not finish within {timeout:?}");
            }
        }
    }
    let mut out = String::new();
    if let Some(mut stdout) = child.stdout.take() {
        use std::io::Read;
        let _ = stdout.read_to_string(&mut out);
    }
    out
}

/// Pixels of `png` within a small distance of `rgb`.
fn pixels_near(png: &[u8], rgb: [u8; 3]) -> usize {
    let decoder = png::Decoder::new(std::io::Cursor::new(png));
    let mut reader = decoder.read_info().expect("a PNG");
    let mut buf = vec![0; reader.output_buffer_size().expect("size")];
    let info = reader.next_frame(&mut buf).expect("a frame");
    let channels = info.color_type.samples();
    buf[..info.buffer_size()]
        .chunks(channels)
        .filter(|p| {
            p.len() >= 3
                && p.iter()
                    .zip(rgb)
                    .all(|(a, b)| (i16::from(*a) - i16::from(b)).abs() <= 12)
        })
        .count()
}

#[test]
fn status_page_in_headless_chromium_shows_states_and_progress() {
    let env = TestEnv::new();
    env.write_config(&format!(
        "[metrics]\nlisten = \"127.0.0.1:0\"\n\n{}\n{}{BROKEN_GMAIL}",
        // A slow full sync (at least 60 s) so the page catches it in progress.
        test_account("slow", "messages = 1000\njob_delay_ms = 300"),
        test_account("held", "messages = 3"),
    ));
    let d = env.start();
    assert!(wait_until(Duration::from_secs(10), || {
        d.status()["metrics_url"].is_string()
    }));
    let url = d.status()["metrics_url"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(wait_until(
        Duration::from_secs(20),
        || d.account("held")["phase"] == json!("caught_up")
    ));
    let r = d.request(json!({"v":1,"cmd":"pause","account":"held"}));
    assert_eq!(r["ok"], json!(true));
    // A feed consumer that read without acknowledging: the page shows its lag.
    let cfg = env.config_path.to_string_lossy().to_string();
    let (code, _, err) = run_cli(&["--config", &cfg, "ctl", "events", "--consumer", "pager"]);
    assert_eq!(code, 0, "{err}");
    assert!(
        wait_until(Duration::from_secs(20), || {
            d.account("slow")["progress"]["total"].as_u64() == Some(1000)
                && d.account("slow")["progress"]["done"].as_u64().unwrap_or(0) > 0
        }),
        "no progress: {}",
        d.account("slow")
    );

    // The plain HTML first: no external assets.
    let (code, ctype, body) = http::get(&url).expect("GET /");
    assert_eq!(code, 200);
    assert!(ctype.starts_with("text/html"), "{ctype}");
    assert!(
        !body.contains("http://") && !body.contains("https://"),
        "external reference"
    );
    assert!(
        body.contains("http-equiv=\"refresh\""),
        "the page does not refresh itself"
    );

    let dom = chromium(&env, &["--dump-dom".into()], &url, Duration::from_secs(60));
    assert!(dom.contains("<section"), "empty DOM: {dom}");
    for (account, health) in [
        ("slow", "active"),
        ("held", "degraded"),
        ("broken", "failed"),
    ] {
        let tag = format!("data-account=\"{account}\" data-health=\"{health}\"");
        assert!(dom.contains(&tag), "DOM lacks {tag}: {dom}");
    }
    let slow = dom
        .split("<section")
        .find(|s| s.contains("data-account=\"slow\""))
        .unwrap_or_default();
    assert!(slow.contains("class=\"progress\""), "{slow}");
    assert!(slow.contains("data-total=\"1000\""), "{slow}");
    assert!(slow.contains(" / 1000 ("), "{slow}");
    assert!(slow.contains("ETA "), "{slow}");
    let pager = dom
        .split("<tr class=\"consumer\"")
        .find(|s| s.contains("data-consumer=\"pager\""))
        .unwrap_or_else(|| panic!("no consumer row: {dom}"));
    let lag: u64 = pager
        .split("<td class=\"lag\">")
        .nth(1)
        .and_then(|t| t.split('<').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or(0);
    assert!(lag > 0, "consumer lag not shown: {pager}");
    let held = dom
        .split("<section")
        .find(|s| s.contains("data-account=\"held\""))
        .unwrap_or_default();
    assert!(held.contains("paused"), "{held}");
    let broken = dom
        .split("<section")
        .find(|s| s.contains("data-account=\"broken\""))
        .unwrap_or_default();
    assert!(
        broken.contains("/nonexistent/mailsync-test/client_secret"),
        "{broken}"
    );

    let shot = env.path("page.png");
    chromium(
        &env,
        &[format!("--screenshot={}", shot.display())],
        &url,
        Duration::from_secs(60),
    );
    let png = std::fs::read(&shot).expect("chromium wrote a screenshot");
    // Each badge colour and the progress bar's fill are on screen.
    for (what, rgb, min) in [
        ("active badge", [0x2e, 0x7d, 0x32], 200),
        ("degraded badge", [0xf9, 0xa8, 0x25], 200),
        ("failed badge", [0xc6, 0x28, 0x28], 200),
        ("progress fill", [0x15, 0x65, 0xc0], 20),
    ] {
        let n = pixels_near(&png, rgb);
        assert!(n >= min, "{what}: only {n} pixels of {rgb:?}");
    }
    d.stop();
}
