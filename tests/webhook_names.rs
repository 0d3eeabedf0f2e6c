//! Webhooks by name, against the real binary and real HTTP receivers on loopback: reordering
//! the `[[webhooks]]` entries and reloading keeps each endpoint on its own cursor, and a
//! webhook's dead-lettered batches are listed and replayed with `ctl webhook dead | replay`.

use crate::common::*;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// A loopback receiver that answers 503 while `failing`, else records every event's seq and
/// answers 200.
struct Receiver {
    url: String,
    /// seq → how many times it arrived in an accepted delivery.
    seqs: Arc<Mutex<BTreeMap<u64, usize>>>,
    failing: Arc<AtomicBool>,
    /// Deliveries refused while failing.
    refused: Arc<Mutex<usize>>,
}

impl Receiver {
    fn start(failing: bool) -> Receiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
        let seqs: Arc<Mutex<BTreeMap<u64, usize>>> = Arc::default();
        let failing = Arc::new(AtomicBool::new(failing));
        let refused: Arc<Mutex<usize>> = Arc::default();
        let (s, f, r) = (seqs.clone(), failing.clone(), refused.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(conn) = conn else { continue };
                let (s, f, r) = (s.clone(), f.clone(), r.clone());
                std::thread::spawn(move || serve(conn, &s, &f, &r));
            }
        });
        Receiver {
            url,
            seqs,
            failing,
            refused,
        }
    }

    fn seqs(&self) -> BTreeMap<u64, usize> {
        self.seqs.lock().expect("lock").clone()
    }

    fn refused(&self) -> usize {
        *self.refused.lock().expect("lock")
    }
}

fn serve(
    conn: TcpStream,
    seqs: &Mutex<BTreeMap<u64, usize>>,
    failing: &AtomicBool,
    refused: &Mutex<usize>,
) {
    let Ok(mut out) = conn.try_clone() else {
        return;
    };
    let mut r = BufReader::new(conn);
    loop {
        let mut line = String::new();
        if r.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let mut len = 0usize;
        loop {
            let mut h = String::new();
            if r.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((name, value)) = h.split_once(':')
                && name.trim().eq_ignore_ascii_case("content-length")
            {
                len = value.trim().parse().unwrap_or(0);
            }
        }
        let mut body = vec![0; len];
        if r.read_exact(&mut body).is_err() {
            return;
        }
        let answer: &[u8] = if failing.load(Ordering::SeqCst) {
            *refused.lock().expect("lock") += 1;
            b"HTTP/1.1 503 Service Unavailable\r\ncontent-length: 0\r\n\r\n"
        } else {
            let v: Value = serde_json::from_slice(&body).unwrap_or_default();
            let mut seqs = seqs.lock().expect("lock");
            for ev in v["events"].as_array().into_iter().flatten() {
                if let Some(seq) = ev["seq"].as_u64() {
                    *seqs.entry(seq).or_default() += 1;
                }
            }
            b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n"
        };
        if out.write_all(answer).is_err() {
            return;
        }
    }
}

fn hook(name: &str, url: &str, extra: &str) -> String {
    format!("[[webhooks]]\nname = \"{name}\"\nurl = \"{url}\"\n{extra}\n")
}

fn sink(d: &Daemon, name: &str) -> Value {
    d.status()["sinks"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == name).cloned())
        .unwrap_or(Value::Null)
}

fn caught_up(d: &Daemon, account: &str) -> bool {
    d.account(account)["phase"] == json!("caught_up")
}

fn ctl(env: &TestEnv, args: &[&str]) -> (i32, String, String) {
    let cfg = env.config_path.to_string_lossy().to_string();
    let mut all = vec!["--config", cfg.as_str(), "ctl"];
    all.extend_from_slice(args);
    run_cli(&all)
}

#[test]
fn reordering_webhooks_and_reloading_keeps_each_endpoint_on_its_own_cursor() {
    let env = TestEnv::new();
    let a = Receiver::start(false);
    let b = Receiver::start(true);
    let huge = "max_attempts = 1000";
    env.write_config(&format!(
        "{}{}{}",
        hook("alpha", &a.url, huge),
        hook("beta", &b.url, huge),
        test_account("one", "messages = 12")
    ));
    let d = env.start();
    // alpha takes everything; beta refuses, so its cursor stays at the start.
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d, "one")
            && sink(&d, "webhook:alpha")["lag"] == json!(0)
            && b.refused() > 0),
        "alpha never caught up: {}\n{}",
        d.status(),
        d.log_text()
    );
    let alpha_before = a.seqs();
    let alpha_cursor = sink(&d, "webhook:alpha")["cursor"]
        .as_u64()
        .expect("cursor");
    assert_eq!(alpha_before.keys().max().copied(), Some(alpha_cursor));
    assert_eq!(sink(&d, "webhook:beta")["cursor"], json!(0));

    // Reorder (beta first), add an account for new events, reload; then beta recovers.
    env.write_config(&format!(
        "{}{}{}{}",
        hook("beta", &b.url, huge),
        hook("alpha", &a.url, huge),
        test_account("one", "messages = 12"),
        test_account("two", "messages = 6")
    ));
    let reload = d.request(json!({"v":1,"cmd":"reload"}));
    assert_eq!(reload["ok"], json!(true), "{reload}");
    b.failing.store(false, Ordering::SeqCst);
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d, "two")
            && sink(&d, "webhook:alpha")["lag"] == json!(0)
            && sink(&d, "webhook:beta")["lag"] == json!(0)),
        "not caught up after the reorder: {}\n{}",
        d.status(),
        d.log_text()
    );
    d.stop();
    let feed: Vec<u64> = {
        let store = mailsync_actors::store::Store::open(&env.data_dir).expect("reopen");
        store
            .feed()
            .read_after(0, 1_000_000)
            .expect("feed")
            .into_iter()
            .map(|e| e.seq)
            .collect()
    };
    // beta: its whole continuation from seq 0, i.e. the feed, each event once.
    let beta = b.seqs();
    assert_eq!(beta.keys().copied().collect::<Vec<_>>(), feed, "beta");
    assert!(beta.values().all(|n| *n == 1), "beta got repeats: {beta:?}");
    // alpha: what it had, then exactly the events after its cursor — nothing old again.
    let alpha = a.seqs();
    assert_eq!(alpha.keys().copied().collect::<Vec<_>>(), feed, "alpha");
    for (seq, n) in &alpha {
        if *seq <= alpha_cursor {
            assert_eq!(
                *n, 1,
                "alpha was handed an old cursor: seq {seq} came {n} times"
            );
        }
    }
    assert!(
        feed.iter().any(|s| *s > alpha_cursor),
        "the reload added no events"
    );
}

#[test]
fn dead_lettered_webhook_batches_are_listed_and_replayed_after_the_receiver_recovers() {
    let env = TestEnv::new();
    let rx = Receiver::start(true);
    env.write_config(&format!(
        "{}{}",
        hook("audit", &rx.url, "max_attempts = 1"),
        test_account("one", "messages = 8\njob_delay_ms = 150")
    ));
    let d = env.start();
    assert!(
        wait_until(Duration::from_secs(60), || caught_up(&d, "one")
            && sink(&d, "webhook:audit")["lag"] == json!(0)
            && sink(&d, "webhook:audit")["dead_letters"].as_u64() > Some(1)),
        "nothing dead-lettered: {}\n{}",
        d.status(),
        d.log_text()
    );
    let (code, out, err) = ctl(&env, &["--json", "webhook", "dead", "audit"]);
    assert_eq!(code, 0, "{out}{err}");
    let listed: Value = serde_json::from_str(out.trim()).expect("json");
    let dead = listed["dead"].as_array().cloned().unwrap_or_default();
    assert!(dead.len() > 1, "{listed}");
    let ids: Vec<u64> = dead.iter().filter_map(|b| b["id"].as_u64()).collect();
    let (code, text, _) = ctl(&env, &["webhook", "dead", "audit"]);
    assert_eq!(code, 0);
    assert!(text.contains("ATTEMPTS") && text.contains("503"), "{text}");

    // Still failing: the replay stops at the first batch and keeps every dead letter.
    let (code, out, err) = ctl(&env, &["--json", "webhook", "replay", "audit", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(r["replayed"], json!(0), "{r}");
    assert_eq!(r["failed"], json!(ids[0]), "{r}");
    assert_eq!(r["remaining"], json!(ids.len()), "{r}");

    // Unknown names and ids are clear errors.
    let (code, _, err) = ctl(&env, &["webhook", "dead", "nope"]);
    assert_ne!(code, 0);
    assert!(err.contains("nope"), "{err}");
    let (code, _, err) = ctl(&env, &["webhook", "replay", "audit", "999999"]);
    assert_ne!(code, 0);
    assert!(err.contains("999999"), "{err}");

    // The receiver recovers: one batch by id, then the rest.
    rx.failing.store(false, Ordering::SeqCst);
    let (code, out, err) = ctl(
        &env,
        &["--json", "webhook", "replay", "audit", &ids[1].to_string()],
    );
    assert_eq!(code, 0, "{out}{err}");
    let r: Value = serde_json::from_str(out.trim()).expect("json");
    assert_eq!(
        (r["replayed"].clone(), r["remaining"].clone()),
        (json!(1), json!(ids.len() - 1)),
        "{r}"
    );
    let (code, out, err) = ctl(&env, &["webhook", "replay", "audit", "--all"]);
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("0 left"), "{out}");
    assert_eq!(sink(&d, "webhook:audit")["dead_letters"], json!(0));
    let (_, out, _) = ctl(&env, &["webhook", "dead", "audit"]);
    assert!(out.contains("no dead-lettered batches"), "{out}");
    d.stop();

    let store = mailsync_actors::store::Store::open(&env.data_dir).expect("reopen");
    let feed: Vec<u64> = store
        .feed()
        .read_after(0, 1_000_000)
        .expect("feed")
        .into_iter()
        .map(|e| e.seq)
        .collect();
    let got = rx.seqs();
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), feed);
    assert!(got.values().all(|n| *n == 1), "{got:?}");
}
