//! Throughput bench: `messages.get?format=raw` per second over loopback with quota off,
//! (a) 10 concurrent single requests, (b) batches of 100 parts.
//! Run: `cargo run --release -p mailsync-emulator --bin emulator-bench [-- SECONDS]`.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode};

const MESSAGES: usize = 10_000;

async fn token(http: &reqwest::Client, base: &str, refresh: &str) -> Result<String, String> {
    let body = format!(
        "grant_type=refresh_token&client_id=mailsync-test-client&client_secret=mailsync-test-secret&refresh_token={}",
        refresh.replace('/', "%2F")
    );
    let v: serde_json::Value = http
        .post(format!("{base}/token"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .map_err(|e| e.to_string())?
        .json()
        .await
        .map_err(|e| e.to_string())?;
    v["access_token"]
        .as_str()
        .map(String::from)
        .ok_or_else(|| format!("no token: {v}"))
}

async fn run_for(
    secs: f64,
    workers: usize,
    f: impl Fn(usize, u64) -> futures_util::future::BoxFuture<'static, u64> + Send + Sync + 'static,
) -> (u64, f64) {
    let stop = Arc::new(AtomicBool::new(false));
    let done = Arc::new(AtomicU64::new(0));
    let f = Arc::new(f);
    let start = Instant::now();
    let mut tasks = Vec::new();
    for w in 0..workers {
        let stop = stop.clone();
        let done = done.clone();
        let f = f.clone();
        tasks.push(tokio::spawn(async move {
            let mut i = 0u64;
            while !stop.load(Ordering::Relaxed) {
                let n = f(w, i).await;
                done.fetch_add(n, Ordering::Relaxed);
                i += 1;
            }
        }));
    }
    tokio::time::sleep(Duration::from_secs_f64(secs)).await;
    stop.store(true, Ordering::Relaxed);
    for t in tasks {
        let _ = t.await;
    }
    (done.load(Ordering::Relaxed), start.elapsed().as_secs_f64())
}

#[tokio::main]
async fn main() -> Result<(), String> {
    let secs: f64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10.0);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| e.to_string())?;
    let cfg = EmulatorConfig {
        messages: MESSAGES,
        quota: QuotaMode::Off,
        ..EmulatorConfig::default()
    };
    let account = cfg.account.clone();
    let emu = Emulator::start(cfg, listener)
        .await
        .map_err(|e| e.to_string())?;
    let base = emu.base_url();
    let http = reqwest::Client::builder()
        .pool_max_idle_per_host(32)
        .build()
        .map_err(|e| e.to_string())?;
    let refresh = emu.refresh_token(&account).ok_or("no account")?;
    let tok = token(&http, &base, &refresh).await?;
    let ids: Arc<Vec<String>> = Arc::new(
        emu.snapshot(&account)
            .ok_or("no snapshot")?
            .messages
            .into_iter()
            .map(|m| m.id)
            .collect(),
    );
    println!(
        "emulator-bench: {MESSAGES} seeded messages, quota off, {secs} s per run, loopback HTTP/1.1"
    );

    // (a) 10 concurrent messages.get?format=raw
    {
        let (http, base, tok, ids) = (http.clone(), base.clone(), tok.clone(), ids.clone());
        let (n, t) = run_for(secs, 10, move |w, i| {
            let (http, base, tok, ids) = (http.clone(), base.clone(), tok.clone(), ids.clone());
            Box::pin(async move {
                let id = &ids[((w as u64 * 7919 + i * 10) as usize) % ids.len()];
                match http
                    .get(format!("{base}/gmail/v1/users/me/messages/{id}?format=raw"))
                    .bearer_auth(&tok)
                    .send()
                    .await
                {
                    Ok(r) if r.status().is_success() => u64::from(r.bytes().await.is_ok()),
                    _ => 0,
                }
            })
        })
        .await;
        println!(
            "messages.get raw, 10 concurrent requests: {n} in {t:.1} s = {:.0} msg/s",
            n as f64 / t
        );
    }
    // (b) batches of 100 parts, 2 in flight
    for in_flight in [1usize, 2] {
        let (http, base, tok, ids) = (http.clone(), base.clone(), tok.clone(), ids.clone());
        let (n, t) = run_for(secs, in_flight, move |w, i| {
            let (http, base, tok, ids) = (http.clone(), base.clone(), tok.clone(), ids.clone());
            Box::pin(async move {
                let mut body = String::new();
                for k in 0..100u64 {
                    let id = &ids[((w as u64 * 104_729 + i * 100 + k) as usize) % ids.len()];
                    body.push_str(&format!("--b\r\nContent-Type: application/http\r\nContent-ID: <{k}>\r\n\r\nGET /gmail/v1/users/me/messages/{id}?format=raw\r\n\r\n"));
                }
                body.push_str("--b--\r\n");
                match http.post(format!("{base}/batch/gmail/v1")).bearer_auth(&tok).header("content-type", "multipart/mixed; boundary=b").body(body).send().await {
                    Ok(r) if r.status().is_success() => {
                        let text = r.text().await.unwrap_or_default();
                        text.matches("HTTP/1.1 200 OK").count() as u64
                    }
                    _ => 0,
                }
            })
        })
        .await;
        println!(
            "messages.get raw via batch of 100, {in_flight} batch(es) in flight: {n} in {t:.1} s = {:.0} msg/s",
            n as f64 / t
        );
    }
    let c = emu.counters();
    println!("requests served: {}", c.requests.values().sum::<u64>());
    emu.shutdown().await;
    Ok(())
}
