//! OAuth conformance: PKCE loopback flow end to end, wrong verifier, single-use codes,
//! redirect mismatch, client errors, scopes, revocation → invalid_grant, scripted consent.

mod common;

use base64::Engine;
use common::{ACCOUNT, Env, start, urlencode};
use reqwest::Method;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk-extra-entropy";
const REDIRECT: &str = "http://127.0.0.1:5599/callback";

fn challenge(v: &str) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(Sha256::digest(v.as_bytes()))
}

async fn authorize(env: &Env, scope: &str) -> String {
    let url = format!(
        "{}/o/oauth2/v2/auth?client_id=mailsync-test-client&redirect_uri={}&response_type=code&scope={}&code_challenge={}&code_challenge_method=S256&state=st4te&access_type=offline",
        env.base,
        urlencode(REDIRECT),
        urlencode(scope),
        challenge(VERIFIER)
    );
    let r = env.http.get(url).send().await.expect("auth");
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"]
        .to_str()
        .expect("location")
        .to_string();
    assert!(loc.starts_with(&format!("{REDIRECT}?")), "{loc}");
    let q: std::collections::HashMap<String, String> =
        url_pairs(loc.split_once('?').map(|x| x.1).unwrap_or(""));
    assert_eq!(q.get("state").map(String::as_str), Some("st4te"));
    assert_eq!(q.get("scope").map(String::as_str), Some(scope));
    q.get("code").expect("code").clone()
}

fn url_pairs(q: &str) -> std::collections::HashMap<String, String> {
    q.split('&')
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| {
            let v = v.replace('+', " ");
            let bytes: Vec<u8> = {
                let b = v.as_bytes();
                let mut out = Vec::new();
                let mut i = 0;
                while i < b.len() {
                    if b[i] == b'%' && i + 2 < b.len() {
                        out.push(u8::from_str_radix(&v[i + 1..i + 3], 16).unwrap_or(b'?'));
                        i += 3;
                    } else {
                        out.push(b[i]);
                        i += 1;
                    }
                }
                out
            };
            (k.to_string(), String::from_utf8_lossy(&bytes).into_owned())
        })
        .collect()
}

async fn exchange(env: &Env, code: &str, verifier: &str, redirect: &str) -> (u16, Value) {
    let body = format!(
        "grant_type=authorization_code&client_id=mailsync-test-client&client_secret=mailsync-test-secret&code={}&code_verifier={}&redirect_uri={}",
        urlencode(code),
        urlencode(verifier),
        urlencode(redirect)
    );
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

async fn refresh(env: &Env, rt: &str, secret: &str) -> (u16, Value) {
    let body = format!(
        "grant_type=refresh_token&client_id=mailsync-test-client&client_secret={secret}&refresh_token={}",
        urlencode(rt)
    );
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token");
    (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn pkce_flow_end_to_end() {
    let env = start(common::quiet_config(10)).await;
    let ro = "https://www.googleapis.com/auth/gmail.readonly";

    // Wrong verifier → invalid_grant, and the code is burnt.
    let code = authorize(&env, ro).await;
    let (s, v) = exchange(
        &env,
        &code,
        "wrong-verifier-wrong-verifier-wrong-verifier-0",
        REDIRECT,
    )
    .await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    let (s, v) = exchange(&env, &code, VERIFIER, REDIRECT).await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("invalid_grant")),
        "codes are single-use"
    );

    // Redirect mismatch.
    let code = authorize(&env, ro).await;
    let (s, v) = exchange(&env, &code, VERIFIER, "http://127.0.0.1:5600/other").await;
    assert_eq!(
        (s, v["error"].as_str()),
        (400, Some("redirect_uri_mismatch"))
    );

    // The happy path.
    let code = authorize(&env, ro).await;
    let (s, v) = exchange(&env, &code, VERIFIER, REDIRECT).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["token_type"], "Bearer");
    assert_eq!(v["expires_in"], 3599);
    assert_eq!(v["scope"], ro);
    let access = v["access_token"].as_str().expect("access").to_string();
    let rt = v["refresh_token"].as_str().expect("refresh").to_string();
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    // Read-only scope cannot modify.
    let id = env.emu.snapshot(ACCOUNT).expect("snap").messages[0]
        .id
        .clone();
    let r = env
        .http
        .post(format!(
            "{}/gmail/v1/users/me/messages/{id}/modify",
            env.base
        ))
        .bearer_auth(&access)
        .json(&json!({"addLabelIds": ["STARRED"]}))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);
    let e: Value = r.json().await.expect("json");
    assert_eq!(Env::reason(&e), "insufficientPermissions");
    // Nor read calendars.
    let r = env
        .http
        .get(format!("{}/calendar/v3/users/me/calendarList", env.base))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 403);

    // Refresh works, no new refresh token; wrong secret is invalid_client.
    let (s, v) = refresh(&env, &rt, "mailsync-test-secret").await;
    assert_eq!(s, 200);
    assert!(v.get("refresh_token").is_none());
    let (s, v) = refresh(&env, &rt, "nope").await;
    assert_eq!((s, v["error"].as_str()), (401, Some("invalid_client")));
    // A `scope` on refresh may narrow to granted scopes only; anything else is invalid_scope.
    for (scope, ok) in [
        (ro, true),
        ("https://www.googleapis.com/auth/gmail.modify", false),
        ("", false),
        ("a\u{1}b", false),
    ] {
        let body = format!(
            "grant_type=refresh_token&client_id=mailsync-test-client&client_secret=mailsync-test-secret&refresh_token={}&scope={}",
            urlencode(&rt),
            urlencode(scope)
        );
        let r = env
            .http
            .post(format!("{}/token", env.base))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .expect("token");
        let status = r.status().as_u16();
        let v: Value = r.json().await.unwrap_or(Value::Null);
        if ok {
            assert_eq!(
                (status, v["scope"].as_str()),
                (200, Some(ro)),
                "{scope}: {v}"
            );
        } else {
            assert_eq!(
                (status, v["error"].as_str()),
                (400, Some("invalid_scope")),
                "{scope:?}: {v}"
            );
        }
    }

    // Revoke via /revoke → invalid_grant, old access tokens die.
    let r = env
        .http
        .post(format!("{}/revoke?token={}", env.base, urlencode(&rt)))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .expect("revoke");
    assert_eq!(r.status(), 200);
    let (s, v) = refresh(&env, &rt, "mailsync-test-secret").await;
    assert_eq!(
        (s, v["error"].as_str(), v["error_description"].as_str()),
        (
            400,
            Some("invalid_grant"),
            Some("Token has been expired or revoked.")
        )
    );
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&access)
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    env.emu.shutdown().await;
}

#[tokio::test]
async fn metadata_scope_restrictions() {
    let env = start(common::quiet_config(10)).await;
    let code = authorize(&env, "https://www.googleapis.com/auth/gmail.metadata").await;
    let (_, v) = exchange(&env, &code, VERIFIER, REDIRECT).await;
    let access = v["access_token"].as_str().expect("access").to_string();
    let id = env.emu.snapshot(ACCOUNT).expect("snap").messages[0]
        .id
        .clone();
    let get = |path: String| {
        let http = env.http.clone();
        let access = access.clone();
        async move {
            let r = http
                .get(path)
                .bearer_auth(access)
                .send()
                .await
                .expect("send");
            (
                r.status().as_u16(),
                r.json::<Value>().await.unwrap_or(Value::Null),
            )
        }
    };
    let (s, e) = get(format!(
        "{}/gmail/v1/users/me/messages/{id}?format=full",
        env.base
    ))
    .await;
    assert_eq!(s, 403);
    assert_eq!(
        e["error"]["message"],
        "Metadata scope doesn't allow format FULL"
    );
    assert_eq!(
        get(format!(
            "{}/gmail/v1/users/me/messages/{id}?format=raw",
            env.base
        ))
        .await
        .0,
        403
    );
    assert_eq!(
        get(format!(
            "{}/gmail/v1/users/me/messages/{id}?format=metadata",
            env.base
        ))
        .await
        .0,
        200
    );
    let (s, e) = get(format!(
        "{}/gmail/v1/users/me/messages?q=is%3Aunread",
        env.base
    ))
    .await;
    assert_eq!(
        (s, e["error"]["message"].as_str()),
        (403, Some("Metadata scope does not support 'q' parameter"))
    );
    assert_eq!(
        get(format!(
            "{}/gmail/v1/users/me/history?startHistoryId=999999999",
            env.base
        ))
        .await
        .0,
        200
    );
    env.emu.shutdown().await;
}

#[tokio::test]
async fn client_and_consent_errors() {
    let env = start(common::quiet_config(5)).await;
    let base = |extra: &str| {
        format!(
            "{}/o/oauth2/v2/auth?response_type=code&scope=https%3A%2F%2Fmail.google.com%2F{extra}",
            env.base
        )
    };
    let r = env
        .http
        .get(base(
            "&client_id=unknown&redirect_uri=http%3A%2F%2F127.0.0.1%3A1",
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    let r = env
        .http
        .get(base(
            "&client_id=mailsync-test-client&redirect_uri=https%3A%2F%2Fevil.example%2F",
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert!(
        r.text()
            .await
            .unwrap_or_default()
            .contains("redirect_uri_mismatch")
    );
    let r = env.http.get(base("&client_id=mailsync-test-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A1&code_challenge=abc&code_challenge_method=S256")).send().await.expect("send");
    assert_eq!(r.status(), 400, "challenge too short");
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(
            "grant_type=password&client_id=mailsync-test-client&client_secret=mailsync-test-secret",
        )
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 400);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "unsupported_grant_type"
    );
    let r = env
        .http
        .post(format!("{}/token", env.base))
        .header("content-type", "application/x-www-form-urlencoded")
        .body("grant_type=refresh_token&client_id=nope&client_secret=x&refresh_token=y")
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 401);
    assert_eq!(
        r.json::<Value>().await.expect("json")["error"],
        "invalid_client"
    );

    // Scripted consent off: a page with Allow/Deny links; Deny redirects with access_denied.
    env.control(
        Method::POST,
        "/_emulator/settings",
        json!({"autoConsent": false}),
    )
    .await;
    let r = env
        .http
        .get(base(
            "&client_id=mailsync-test-client&redirect_uri=http%3A%2F%2F127.0.0.1%3A7&state=s1",
        ))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 200);
    let html = r.text().await.unwrap_or_default();
    let deny = html
        .split("id=\"deny\" href=\"")
        .nth(1)
        .and_then(|s| s.split('"').next())
        .expect("deny link")
        .replace("&amp;", "&");
    let r = env
        .http
        .get(format!("{}{deny}", env.base))
        .send()
        .await
        .expect("send");
    assert_eq!(r.status(), 302);
    let loc = r.headers()["location"].to_str().unwrap_or("").to_string();
    assert!(
        loc.starts_with("http://127.0.0.1:7?error=access_denied&state=s1"),
        "{loc}"
    );

    // Control API: account credentials and revocation by email.
    let (s, a) = env
        .control(
            Method::POST,
            "/_emulator/accounts",
            json!({"email": "second@example.com", "messages": 3}),
        )
        .await;
    assert_eq!(s, 201);
    assert_eq!(a["clientId"], "mailsync-test-client");
    assert_eq!(a["clientSecret"], "mailsync-test-secret");
    let rt = a["refreshToken"].as_str().expect("rt").to_string();
    let (s, same) = env
        .control(
            Method::GET,
            "/_emulator/accounts/second@example.com",
            json!({}),
        )
        .await;
    assert_eq!((s, same["refreshToken"].as_str()), (200, Some(rt.as_str())));
    let tok = common::access_token(&env.http, &env.base, &rt).await;
    let r = env
        .http
        .get(format!("{}/gmail/v1/users/me/profile", env.base))
        .bearer_auth(&tok)
        .send()
        .await
        .expect("send");
    assert_eq!(r.json::<Value>().await.expect("json")["messagesTotal"], 3);
    env.control(
        Method::POST,
        "/_emulator/tokens/revoke",
        json!({"email": "second@example.com"}),
    )
    .await;
    let (s, v) = refresh(&env, &rt, "mailsync-test-secret").await;
    assert_eq!((s, v["error"].as_str()), (400, Some("invalid_grant")));
    env.emu.shutdown().await;
}
