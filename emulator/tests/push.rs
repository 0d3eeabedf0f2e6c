//! Push conformance: Gmail notifications pushed in Pub/Sub's wrapped shape with an RS256 JWT
//! that verifies against the emulator's JWKS, redelivery on non-2xx, publish to a Pub/Sub
//! emulator's REST API, the one-per-second rule, watch expiry and minted bad tokens.

mod common;

use base64::Engine;
use common::{ACCOUNT, next, start, start_receiver};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, decode, decode_header};
use reqwest::Method;
use serde_json::{Value, json};
use std::time::Duration;

#[derive(Debug, serde::Deserialize)]
#[allow(dead_code)]
struct Claims {
    iss: String,
    aud: String,
    email: String,
    email_verified: bool,
    iat: i64,
    exp: i64,
}

const AUD: &str = "https://push.example/gmail";

async fn jwks_key(env: &common::Env) -> (String, DecodingKey) {
    let jwks: Value = env
        .http
        .get(format!("{}/oauth2/v3/certs", env.base))
        .send()
        .await
        .expect("jwks")
        .json()
        .await
        .expect("json");
    let k = &jwks["keys"][0];
    assert_eq!(k["kty"], "RSA");
    assert_eq!(k["alg"], "RS256");
    let key =
        DecodingKey::from_rsa_components(k["n"].as_str().expect("n"), k["e"].as_str().expect("e"))
            .expect("key");
    (k["kid"].as_str().expect("kid").to_string(), key)
}

fn verify(token: &str, kid: &str, key: &DecodingKey) -> Result<Claims, String> {
    let h = decode_header(token).map_err(|e| e.to_string())?;
    if h.kid.as_deref() != Some(kid) {
        return Err("unknown kid".into());
    }
    let mut v = Validation::new(Algorithm::RS256);
    v.set_audience(&[AUD]);
    v.set_issuer(&["https://accounts.google.com", "accounts.google.com"]);
    v.leeway = 0;
    let c = decode::<Claims>(token, key, &v)
        .map_err(|e| e.to_string())?
        .claims;
    if c.email != "gmail-api-push@system.gserviceaccount.com" || !c.email_verified {
        return Err("bad email".into());
    }
    Ok(c)
}

#[tokio::test]
async fn gmail_push_with_verifiable_jwt_and_redelivery() {
    // The receiver refuses the second push once (→ redelivery).
    let (push_url, mut pushes) = start_receiver(vec![200, 503]).await;
    let (pubsub_url, mut publishes) = start_receiver(vec![]).await;
    let mut cfg = common::quiet_config(5);
    cfg.push_endpoint = Some(format!("{push_url}/gmail?token=s3cret"));
    cfg.push_audience = Some(AUD.into());
    cfg.pubsub_endpoint = Some(pubsub_url);
    cfg.push_min_backoff = Duration::from_millis(50);
    let env = start(cfg).await;
    let (kid, key) = jwks_key(&env).await;

    let (s, w) = env
        .post(
            "/gmail/v1/users/me/watch",
            json!({"topicName": "projects/mailsync-emulator/topics/gmail"}),
        )
        .await;
    assert_eq!(s, 200);
    // Immediate first notification, both to Pub/Sub REST and to the push endpoint.
    let p = next(&mut publishes).await;
    assert_eq!(
        p.path,
        "/v1/projects/mailsync-emulator/topics/gmail:publish"
    );
    let pb: Value = serde_json::from_slice(&p.body).expect("json");
    let data = base64::engine::general_purpose::STANDARD
        .decode(pb["messages"][0]["data"].as_str().expect("data"))
        .expect("b64");
    let data: Value = serde_json::from_slice(&data).expect("json");
    assert_eq!(
        data,
        json!({"emailAddress": ACCOUNT, "historyId": w["historyId"]})
    );

    let first = next(&mut pushes).await;
    assert_eq!(first.path, "/gmail?token=s3cret");
    let auth = first.headers["authorization"].to_str().expect("auth");
    let token = auth.strip_prefix("Bearer ").expect("bearer");
    let claims = verify(token, &kid, &key).expect("JWT verifies against the JWKS");
    assert_eq!(claims.iss, "https://accounts.google.com");
    assert!(claims.exp > claims.iat);
    let body: Value = serde_json::from_slice(&first.body).expect("json");
    assert_eq!(body["message"]["messageId"], body["message"]["message_id"]);
    assert_eq!(
        body["message"]["publishTime"],
        body["message"]["publish_time"]
    );
    assert_eq!(
        body["subscription"],
        "projects/mailsync-emulator/subscriptions/gmail-push"
    );
    let data = base64::engine::general_purpose::STANDARD
        .decode(body["message"]["data"].as_str().expect("data"))
        .expect("b64");
    assert_eq!(
        serde_json::from_slice::<Value>(&data).expect("json")["emailAddress"],
        ACCOUNT
    );

    // A change > 1 s later is notified; the 503 answer makes Pub/Sub redeliver.
    tokio::time::sleep(Duration::from_millis(1050)).await;
    let (s, d) = env
        .control(
            Method::POST,
            &format!("/_emulator/accounts/{ACCOUNT}/messages"),
            json!({}),
        )
        .await;
    assert_eq!(s, 201);
    let a = next(&mut pushes).await;
    let b = next(&mut pushes).await;
    for x in [&a, &b] {
        let v: Value = serde_json::from_slice(&x.body).expect("json");
        let data = base64::engine::general_purpose::STANDARD
            .decode(v["message"]["data"].as_str().expect("data"))
            .expect("b64");
        assert_eq!(
            serde_json::from_slice::<Value>(&data).expect("json")["historyId"],
            d["historyId"]
        );
    }
    // A second change within the same second is dropped (≤ 1 notification/s/user).
    env.control(
        Method::POST,
        &format!("/_emulator/accounts/{ACCOUNT}/messages"),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(pushes.try_recv().is_err());
    let c = env.emu.counters();
    assert!(c.notifications_dropped >= 1);
    assert!(c.push_failures >= 1);

    // An expired watch sends nothing.
    env.control(
        Method::POST,
        &format!("/_emulator/accounts/{ACCOUNT}/watch/expire"),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(1050)).await;
    env.control(
        Method::POST,
        &format!("/_emulator/accounts/{ACCOUNT}/messages"),
        json!({}),
    )
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pushes.try_recv().is_err());
    env.emu.shutdown().await;
}

#[tokio::test]
async fn minted_tokens_exercise_verifier_rejections() {
    let (push_url, mut pushes) = start_receiver(vec![403]).await;
    let mut cfg = common::quiet_config(3);
    cfg.push_endpoint = Some(push_url.clone());
    cfg.push_audience = Some(AUD.into());
    let env = start(cfg).await;
    let (kid, key) = jwks_key(&env).await;
    let mint = |body: Value| {
        let env = &env;
        async move {
            let (s, v) = env
                .control(Method::POST, "/_emulator/push/mint", body)
                .await;
            assert_eq!(s, 200, "{v}");
            v
        }
    };
    let good = mint(json!({})).await;
    assert!(verify(good["token"].as_str().expect("t"), &kid, &key).is_ok());
    let bad_aud = mint(json!({"aud": "https://elsewhere.example"})).await;
    assert!(
        verify(bad_aud["token"].as_str().expect("t"), &kid, &key)
            .unwrap_err()
            .contains("Audience")
    );
    let expired = mint(json!({"iat_offset_secs": -7200, "lifetime_secs": 3600})).await;
    assert!(
        verify(expired["token"].as_str().expect("t"), &kid, &key)
            .unwrap_err()
            .contains("Expired")
    );
    let unknown_kid = mint(json!({"kid": "someone-else"})).await;
    assert_eq!(
        verify(unknown_kid["token"].as_str().expect("t"), &kid, &key).unwrap_err(),
        "unknown kid"
    );
    let wrong_email = mint(json!({"email": "attacker@example.com"})).await;
    assert_eq!(
        verify(wrong_email["token"].as_str().expect("t"), &kid, &key).unwrap_err(),
        "bad email"
    );
    let unverified = mint(json!({"email_verified": false})).await;
    assert!(verify(unverified["token"].as_str().expect("t"), &kid, &key).is_err());
    let tampered = mint(json!({"tamper_signature": true})).await;
    assert!(
        verify(tampered["token"].as_str().expect("t"), &kid, &key)
            .unwrap_err()
            .contains("Signature")
    );
    let bad_iss = mint(json!({"iss": "https://evil.example"})).await;
    assert!(verify(bad_iss["token"].as_str().expect("t"), &kid, &key).is_err());

    // deliver=true posts it and reports the receiver's answer.
    let delivered = mint(json!({"aud": "x", "deliver": true})).await;
    assert_eq!(delivered["status"], 403);
    let got = next(&mut pushes).await;
    let tok = got.headers["authorization"]
        .to_str()
        .expect("h")
        .trim_start_matches("Bearer ")
        .to_string();
    assert!(verify(&tok, &kid, &key).is_err());
    env.emu.shutdown().await;
}

#[tokio::test]
async fn notification_faults_drop_duplicate_and_delay() {
    let (push_url, mut pushes) = start_receiver(vec![]).await;
    let mut cfg = common::quiet_config(3);
    cfg.push_endpoint = Some(push_url);
    let env = start(cfg).await;
    let topic = json!({"topicName": "projects/mailsync-emulator/topics/gmail"});
    // Duplicate every notification, with a delay.
    let f = json!({"notifications": {"duplicate": 1.0, "delay_ms": 150}});
    assert_eq!(
        env.control(Method::PUT, "/_emulator/faults", f).await.0,
        200
    );
    let t = std::time::Instant::now();
    assert_eq!(
        env.post("/gmail/v1/users/me/watch", topic.clone()).await.0,
        200
    );
    let a = next(&mut pushes).await;
    assert!(t.elapsed() >= Duration::from_millis(150));
    let b = next(&mut pushes).await;
    let hid = |c: &common::Captured| {
        let v: Value = serde_json::from_slice(&c.body).unwrap_or(Value::Null);
        let d = base64::engine::general_purpose::STANDARD
            .decode(v["message"]["data"].as_str().unwrap_or(""))
            .unwrap_or_default();
        serde_json::from_slice::<Value>(&d).unwrap_or(Value::Null)["historyId"].clone()
    };
    assert_eq!(hid(&a), hid(&b), "a duplicate of the same notification");
    // Drop everything.
    let f = json!({"notifications": {"drop": 1.0}});
    assert_eq!(
        env.control(Method::PUT, "/_emulator/faults", f).await.0,
        200
    );
    assert_eq!(env.post("/gmail/v1/users/me/watch", topic).await.0, 200);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(pushes.try_recv().is_err());
    assert!(env.emu.counters().notifications_dropped >= 1);
    env.emu.shutdown().await;
}
