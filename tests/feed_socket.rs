//! Socket subscriptions to the change feed with durable named cursors, against the real
//! daemon: a consumer that acks and reconnects resumes after its last ack; a following stream
//! receives events committed after it connected.

use crate::common::*;
use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

fn open_stream(env: &TestEnv, req: Value) -> (UnixStream, BufReader<UnixStream>) {
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    s.write_all(format!("{req}\n").as_bytes()).expect("write");
    let reader = BufReader::new(s.try_clone().expect("clone"));
    (s, reader)
}

fn next_line(r: &mut BufReader<UnixStream>) -> Value {
    let mut line = String::new();
    r.read_line(&mut line).expect("read line");
    serde_json::from_str(&line).unwrap_or_else(|e| panic!("bad line {line:?}: {e}"))
}

/// Reads lines until an event arrives (skipping ack replies).
fn next_event(r: &mut BufReader<UnixStream>) -> Value {
    loop {
        let v = next_line(r);
        if v.get("event").is_some() {
            return v["event"].clone();
        }
        assert!(v.get("end").is_none(), "stream ended early");
    }
}

#[test]
fn consumer_resumes_after_its_last_ack_and_follow_sees_new_events() {
    let env = TestEnv::new();
    env.write_config(&test_account("feedy", "messages = 30"));
    let d = env.start();
    assert!(wait_until(
        Duration::from_secs(30),
        || d.account("feedy")["phase"] == json!("caught_up")
    ));

    // First session: read ten events, ack the tenth, disconnect.
    let (mut w, mut r) = open_stream(
        &env,
        json!({"v":1,"cmd":"events","consumer":"tool","follow":true}),
    );
    let header = next_line(&mut r);
    assert_eq!(header["ok"], json!(true), "{header}");
    let mut seqs = Vec::new();
    for _ in 0..10 {
        let ev = next_event(&mut r);
        assert_eq!(ev["account"], json!("feedy"));
        seqs.push(ev["seq"].as_u64().expect("seq"));
    }
    assert!(
        seqs.windows(2).all(|p| p[0] < p[1]),
        "out of order: {seqs:?}"
    );
    let tenth = seqs[9];
    w.write_all(
        format!(
            "{}\n",
            json!({"v":1,"cmd":"ack","consumer":"tool","seq":tenth})
        )
        .as_bytes(),
    )
    .expect("ack");
    // The ack's reply arrives among the events; read until we see it.
    let mut acked = false;
    for _ in 0..100 {
        let v = next_line(&mut r);
        if v.get("ok") == Some(&json!(true)) {
            acked = true;
            break;
        }
    }
    assert!(acked, "no reply to the ack");
    drop(w);
    drop(r);

    // Second session without `from`: resumes right after the acked event.
    let (w, mut r) = open_stream(
        &env,
        json!({"v":1,"cmd":"events","consumer":"tool","follow":true}),
    );
    assert_eq!(next_line(&mut r)["ok"], json!(true));
    let first = next_event(&mut r);
    assert!(
        first["seq"].as_u64().expect("seq") > tenth,
        "resumed at {} after ack {tenth}",
        first["seq"]
    );
    // Make a new event happen and see it arrive on the open stream.
    let r2 = d.request(json!({"v":1,"cmd":"pause","account":"feedy"}));
    assert_eq!(r2["ok"], json!(true));
    let mut saw_state = false;
    for _ in 0..200 {
        let ev = next_event(&mut r);
        if ev["kind"] == json!("account.state_changed")
            && ev["change"].to_string().contains("paused")
        {
            saw_state = true;
            break;
        }
    }
    assert!(
        saw_state,
        "the following stream did not deliver the new event"
    );
    drop(w);

    // Status shows the consumer and its lag.
    let consumers = d.status()["consumers"].clone();
    assert!(
        consumers.to_string().contains("\"tool\""),
        "consumer missing from status: {consumers}"
    );
    d.stop();
}
