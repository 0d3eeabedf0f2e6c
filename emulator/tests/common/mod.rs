//! Shared helpers for the emulator's conformance tests: start an emulator on 127.0.0.1:0,
//! obtain tokens with hand-built OAuth requests, and send plain reqwest calls.
#![allow(dead_code)]

use mailsync_emulator::{Emulator, EmulatorConfig, EmulatorHandle, QuotaMode};
use serde_json::Value;

pub const ACCOUNT: &str = "demo@example.com";

pub struct Env {
    pub emu: EmulatorHandle,
    pub base: String,
    pub http: reqwest::Client,
    pub token: String,
}

pub async fn start(config: EmulatorConfig) -> Env {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let emu = Emulator::start(config, listener).await.expect("start");
    let base = emu.base_url();
    let http = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("client");
    let refresh = emu.refresh_token(ACCOUNT).expect("refresh token");
    let token = access_token(&http, &base, &refresh).await;
    Env {
        emu,
        base,
        http,
        token,
    }
}

pub fn quiet_config(messages: usize) -> EmulatorConfig {
    EmulatorConfig {
        messages,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    }
}

pub async fn access_token(http: &reqwest::Client, base: &str, refresh: &str) -> String {
    let body = format!(
        "grant_type=refresh_token&client_id=mailsync-test-client&client_secret=mailsync-test-secret&refresh_token={}",
        urlencode(refresh)
    );
    let r = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("token");
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.expect("json");
    v["access_token"]
        .as_str()
        .expect("access_token")
        .to_string()
}

pub fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

impl Env {
    pub async fn get(&self, path: &str) -> (u16, Value) {
        let r = self
            .http
            .get(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (s, v)
    }

    pub async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.token)
            .json(&body)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (s, v)
    }

    pub async fn control(&self, method: reqwest::Method, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .request(method, format!("{}{path}", self.base))
            .json(&body)
            .send()
            .await
            .expect("send");
        let s = r.status().as_u16();
        let v = r.json().await.unwrap_or(Value::Null);
        (s, v)
    }

    pub fn reason(v: &Value) -> &str {
        v["error"]["errors"][0]["reason"].as_str().unwrap_or("")
    }
}

/// A captured webhook request.
#[derive(Debug, Clone)]
pub struct Captured {
    pub path: String,
    pub headers: axum::http::HeaderMap,
    pub body: bytes::Bytes,
}

/// Starts a receiver that answers with `statuses` in turn (then 200) and reports each request.
pub async fn start_receiver(
    statuses: Vec<u16>,
) -> (String, tokio::sync::mpsc::UnboundedReceiver<Captured>) {
    use std::sync::{Arc, Mutex};
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    let script = Arc::new(Mutex::new(std::collections::VecDeque::from(statuses)));
    let app = axum::Router::new().fallback(move |req: axum::extract::Request| {
        let tx = tx.clone();
        let script = script.clone();
        async move {
            let (parts, body) = req.into_parts();
            let body = axum::body::to_bytes(body, 1 << 20)
                .await
                .unwrap_or_default();
            let _ = tx.send(Captured {
                path: parts.uri.to_string(),
                headers: parts.headers,
                body,
            });
            let code = script
                .lock()
                .map(|mut s| s.pop_front().unwrap_or(200))
                .unwrap_or(200);
            axum::http::StatusCode::from_u16(code).unwrap_or(axum::http::StatusCode::OK)
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (url, rx)
}

pub async fn next(rx: &mut tokio::sync::mpsc::UnboundedReceiver<Captured>) -> Captured {
    tokio::time::timeout(std::time::Duration::from_secs(5), rx.recv())
        .await
        .expect("timed out waiting for a notification")
        .expect("receiver closed")
}
