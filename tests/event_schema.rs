//! The public event schema against the real daemon: `ctl events` streams events in the
//! versioned schema (`"v": 1`), and idempotency keys carry a generation, so a Gmail message
//! deleted and later re-added under the same id is announced again (added, deleted, added).

use crate::common::emulator::*;
use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

/// Every event the socket serves (a non-following read), as JSON.
fn socket_events(env: &TestEnv) -> Vec<Value> {
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(
        format!(
            "{}\n",
            json!({"v":1,"cmd":"events","consumer":"schema-test"})
        )
        .as_bytes(),
    )
    .expect("write");
    let mut out = Vec::new();
    for line in BufReader::new(s).lines() {
        let line = line.expect("line");
        let v: Value = serde_json::from_str(&line).expect("json");
        if v.get("end").is_some() {
            break;
        }
        if let Some(ev) = v.get("event") {
            out.push(ev.clone());
        }
    }
    out
}

#[test]
fn a_message_deleted_and_re_added_is_added_deleted_added() {
    let emu = Emu::start(config(81, 6, quota_scale(6, 2)));
    let env = TestEnv::new();
    emu.write_config(&env, 8);
    let d = env.start();
    assert!(wait_caught_up(&d, Duration::from_secs(60)), "no full sync");
    let id = emu.snapshot().messages[0].id.clone();
    emu.delete(&id);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "delete not synced"
    );
    assert_eq!(emu.redeliver(&id), id);
    assert!(
        wait_converged(&d, &emu, Duration::from_secs(60)),
        "re-add not synced"
    );
    let events = socket_events(&env);
    d.stop();
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| {
            e["change"]["id"] == json!(id)
                && e["kind"]
                    .as_str()
                    .is_some_and(|k| k.starts_with("message."))
        })
        .collect();
    let kinds: Vec<&str> = mine.iter().filter_map(|e| e["kind"].as_str()).collect();
    assert_eq!(
        kinds,
        vec!["message.added", "message.deleted", "message.added"],
        "{mine:#?}"
    );
    let keys: std::collections::BTreeSet<&str> =
        mine.iter().filter_map(|e| e["key"].as_str()).collect();
    assert_eq!(keys.len(), 3, "three distinct idempotency keys: {keys:?}");
    assert!(
        events.iter().all(|e| e["v"] == json!(1)),
        "every event is schema v1"
    );
    assert_mirror_equals(&env.data_dir, &emu);
}

/// Raw webhook bodies, as received.
fn body_receiver() -> (String, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    use std::io::Read;
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}/hook", listener.local_addr().expect("addr"));
    let bodies: std::sync::Arc<std::sync::Mutex<Vec<String>>> = Default::default();
    let store = bodies.clone();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(conn) = conn else { continue };
            let store = store.clone();
            std::thread::spawn(move || {
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
                        let h = h.trim_end().to_ascii_lowercase();
                        if h.is_empty() {
                            break;
                        }
                        if let Some(v) = h.strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    store
                        .lock()
                        .expect("lock")
                        .push(String::from_utf8_lossy(&body).into_owned());
                    if out
                        .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n")
                        .is_err()
                    {
                        return;
                    }
                }
            });
        }
    });
    (url, bodies)
}

/// The socket's raw event lines (`{"event":...}`), as bytes of the event object.
fn socket_event_bytes(env: &TestEnv) -> Vec<String> {
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(format!("{}\n", json!({"v":1,"cmd":"events","consumer":"bytes"})).as_bytes())
        .expect("write");
    let mut out = Vec::new();
    for line in BufReader::new(s).lines() {
        let line = line.expect("line");
        if line.starts_with("{\"end\"") {
            break;
        }
        if let Some(ev) = line
            .strip_prefix("{\"event\":")
            .and_then(|l| l.strip_suffix('}'))
        {
            out.push(ev.to_string());
        }
    }
    out
}

/// The real daemon: every event `ctl events` streams appears byte for byte in a webhook body.
#[test]
fn socket_and_webhook_carry_the_same_bytes_per_event() {
    let env = TestEnv::new();
    let (url, bodies) = body_receiver();
    env.write_config(&format!(
        "{}\n[[webhooks]]\nname = \"schema\"\nurl = \"{url}\"\n",
        test_account("bytes", "messages = 12")
    ));
    let d = env.start();
    assert!(wait_until(
        Duration::from_secs(30),
        || d.account("bytes")["phase"] == json!("caught_up")
    ));
    let events = socket_event_bytes(&env);
    assert!(events.len() >= 12, "{} events", events.len());
    assert!(
        wait_until(Duration::from_secs(30), || {
            let all = bodies.lock().expect("lock").join("\n");
            events.iter().all(|e| all.contains(e.as_str()))
        }),
        "some socket events are not byte-identical in the webhook bodies"
    );
    d.stop();
    for e in &events {
        assert!(
            e.starts_with("{\"account\":"),
            "keys in a stable order: {e}"
        );
        assert!(e.contains("\"v\":1"), "{e}");
    }
}
