//! Publishing to the official Cloud Pub/Sub emulator (REST). Skipped when the emulator binary
//! is not installed (`/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator`).

mod common;

use std::process::Stdio;
use std::time::{Duration, Instant};

use base64::Engine;
use common::{ACCOUNT, start};
use serde_json::{Value, json};

const BIN: &str = "/usr/lib/google-cloud-sdk/platform/pubsub-emulator/bin/cloud-pubsub-emulator";

#[tokio::test]
async fn watch_publishes_to_the_official_pubsub_emulator() {
    if !std::path::Path::new(BIN).exists() {
        eprintln!("skipping: {BIN} not installed");
        return;
    }
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        l.local_addr().expect("addr").port()
    };
    let mut child = tokio::process::Command::new(BIN)
        .arg("--host=127.0.0.1")
        .arg(format!("--port={port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .expect("spawn pubsub emulator");
    let ps = format!("http://127.0.0.1:{port}");
    let http = reqwest::Client::new();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let up = http
            .put(format!("{ps}/v1/projects/mailsync-emulator/topics/gmail"))
            .json(&json!({}))
            .send()
            .await;
        if let Ok(r) = up
            && (r.status().is_success() || r.status().as_u16() == 409)
        {
            break;
        }
        assert!(Instant::now() < deadline, "pubsub emulator did not start");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let r = http
        .put(format!(
            "{ps}/v1/projects/mailsync-emulator/subscriptions/pull"
        ))
        .json(&json!({"topic": "projects/mailsync-emulator/topics/gmail"}))
        .send()
        .await
        .expect("subscription");
    assert!(r.status().is_success());

    let mut cfg = common::quiet_config(5);
    cfg.pubsub_endpoint = Some(ps.clone());
    let env = start(cfg).await;
    let (s, w) = env
        .post(
            "/gmail/v1/users/me/watch",
            json!({"topicName": "projects/mailsync-emulator/topics/gmail"}),
        )
        .await;
    assert_eq!(s, 200);
    let mut got: Option<Value> = None;
    while got.is_none() && Instant::now() < deadline {
        let v: Value = http
            .post(format!(
                "{ps}/v1/projects/mailsync-emulator/subscriptions/pull:pull"
            ))
            .json(&json!({"maxMessages": 10, "returnImmediately": true}))
            .send()
            .await
            .expect("pull")
            .json()
            .await
            .unwrap_or(Value::Null);
        got = v["receivedMessages"]
            .as_array()
            .and_then(|a| a.first().cloned());
        if got.is_none() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let m = got.expect("a pulled notification");
    let data = base64::engine::general_purpose::STANDARD
        .decode(m["message"]["data"].as_str().expect("data"))
        .expect("b64");
    let data: Value = serde_json::from_slice(&data).expect("json");
    assert_eq!(
        data,
        json!({"emailAddress": ACCOUNT, "historyId": w["historyId"]})
    );
    env.emu.shutdown().await;
    let _ = child.start_kill();
    let _ = child.wait().await;
}
