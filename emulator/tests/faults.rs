//! Fault injection conformance: seeded, replayable, per-method 500/503/429, truncated and
//! malformed bodies, connection resets, hangs.

mod common;

use std::time::Duration;

use common::start;
use reqwest::Method;
use serde_json::{Value, json};

async fn statuses(seed: u64) -> Vec<u16> {
    let env = start(common::quiet_config(3)).await;
    let rules = json!({"seed": seed, "rules": [{"method": "gmail.users.*", "rate_500": 0.3, "rate_503": 0.2}]});
    assert_eq!(
        env.control(Method::PUT, "/_emulator/faults", rules).await.0,
        200
    );
    let mut out = Vec::new();
    for _ in 0..30 {
        out.push(env.get("/gmail/v1/users/me/profile").await.0);
    }
    assert!(env.emu.counters().faults_injected > 0);
    env.emu.shutdown().await;
    out
}

#[tokio::test]
async fn faults_are_seeded_and_replayable() {
    let a = statuses(42).await;
    let b = statuses(42).await;
    assert_eq!(a, b);
    assert!(a.contains(&500) && a.contains(&503) && a.contains(&200));
}

#[tokio::test]
async fn fault_kinds() {
    let env = start(common::quiet_config(3)).await;
    let set = |rule: Value| {
        let env = &env;
        async move {
            assert_eq!(
                env.control(Method::PUT, "/_emulator/faults", json!({"rules": [rule]}))
                    .await
                    .0,
                200
            )
        }
    };
    set(json!({"method": "gmail.users.getProfile", "rate_500": 1.0})).await;
    let (s, e) = env.get("/gmail/v1/users/me/profile").await;
    assert_eq!(
        (s, e["error"]["errors"][0]["reason"].as_str()),
        (500, Some("backendError"))
    );
    assert_eq!(
        env.get("/gmail/v1/users/me/labels").await.0,
        200,
        "other methods unaffected"
    );

    set(json!({"method": "gmail.users.getProfile", "rate_429": 1.0})).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 429);
    assert!(r.headers().contains_key("retry-after"));

    set(json!({"method": "*", "rate_truncated": 1.0})).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).is_err());

    set(json!({"method": "*", "rate_malformed": 1.0})).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&env.token)
        .send()
        .await
        .expect("send");
    assert!(serde_json::from_slice::<Value>(&r.bytes().await.expect("body")).is_err());

    set(json!({"method": "*", "rate_reset": 1.0})).await;
    let res = async {
        env.http
            .get(format!("{}/gmail/v1/users/me/profile", env.base))
            .bearer_auth(&env.token)
            .send()
            .await?
            .bytes()
            .await
    }
    .await;
    assert!(res.is_err(), "connection reset");

    set(json!({"method": "*", "rate_timeout": 1.0})).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&env.token)
        .timeout(Duration::from_millis(300))
        .send()
        .await;
    assert!(r.is_err_and(|e| e.is_timeout()));

    set(json!({"method": "gmail.users.getProfile", "latency_ms": 200})).await;
    let t = std::time::Instant::now();
    assert_eq!(env.get("/gmail/v1/users/me/profile").await.0, 200);
    assert!(t.elapsed() >= Duration::from_millis(200));

    assert_eq!(
        env.control(Method::DELETE, "/_emulator/faults", json!({}))
            .await
            .0,
        200
    );
    assert_eq!(env.get("/gmail/v1/users/me/profile").await.0, 200);
    let (_, c) = env
        .control(Method::GET, "/_emulator/counters", json!({}))
        .await;
    assert!(c["faultsInjected"].as_u64().unwrap_or(0) >= 6);
    assert!(c["faultsByKind"]["reset"].as_u64().is_some());
    assert_eq!(
        env.control(
            Method::PUT,
            "/_emulator/faults",
            json!({"rules": [{"method": "*", "bogus": 1}]})
        )
        .await
        .0,
        400
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn mutation_generator_changes_the_mailbox_deterministically() {
    let mut cfg = common::quiet_config(20);
    cfg.mutation_rate = Some(200.0);
    let env = start(cfg).await;
    let before = env.emu.snapshot(common::ACCOUNT).expect("snap");
    tokio::time::sleep(Duration::from_millis(300)).await;
    let after = env.emu.snapshot(common::ACCOUNT).expect("snap");
    assert_ne!(before.history_id, after.history_id);
    let (s, h) = env
        .get(&format!(
            "/gmail/v1/users/me/history?startHistoryId={}",
            before.history_id
        ))
        .await;
    assert_eq!(s, 200);
    assert!(h["history"].as_array().is_some_and(|a| !a.is_empty()));
    env.emu.shutdown().await;
    // The same seed produces the same sequence of mutations (ids of delivered mail encode the
    // wall-clock delivery time, so compare labels).
    let st1 = mailsync_emulator::EmulatorState::new(common::quiet_config(20))
        .expect("state")
        .0;
    let st2 = mailsync_emulator::EmulatorState::new(common::quiet_config(20))
        .expect("state")
        .0;
    use rand::SeedableRng;
    let mut r1 = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let mut r2 = rand_chacha::ChaCha8Rng::seed_from_u64(9);
    let a: Vec<String> = (0..30)
        .map(|_| mailsync_emulator::mutator::step(&st1, &mut r1))
        .collect();
    let b: Vec<String> = (0..30)
        .map(|_| mailsync_emulator::mutator::step(&st2, &mut r2))
        .collect();
    assert_eq!(a, b);
    let s1 = st1
        .accounts
        .lock()
        .map(|a| a.get(common::ACCOUNT).map(|x| x.mailbox.snapshot()))
        .ok()
        .flatten();
    let s2 = st2
        .accounts
        .lock()
        .map(|a| a.get(common::ACCOUNT).map(|x| x.mailbox.snapshot()))
        .ok()
        .flatten();
    assert_eq!(
        s1.map(|s| s
            .messages
            .iter()
            .map(|m| m.label_ids.clone())
            .collect::<Vec<_>>()),
        s2.map(|s| s
            .messages
            .iter()
            .map(|m| m.label_ids.clone())
            .collect::<Vec<_>>())
    );
}
