//! The control socket always answers an admin: with 300 idle connections and 200
//! `events --follow` streams open at once, `mailsync ctl status` still answers at once (before
//! the limits were per kind, it waited for the 30 s idle timeout, or forever behind streams).

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

/// Far below the 30 s idle timeout that a lock-out would cost, and generous for a loaded CI
/// machine; the time measured is printed.
const BOUND: Duration = Duration::from_secs(5);

#[test]
fn ctl_status_answers_with_300_idle_connections_and_200_follow_streams_open() {
    let env = TestEnv::new();
    env.write_config(&test_account("alpha", "messages = 20"));
    let d = env.start();
    let mut idle = Vec::new();
    for _ in 0..300 {
        idle.push(UnixStream::connect(&env.socket).expect("connect"));
    }
    let mut streams = Vec::new();
    let mut refused = 0;
    for i in 0..200 {
        let mut s = UnixStream::connect(&env.socket).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(20)))
            .expect("timeout");
        let req = json!({"v":1,"cmd":"events","consumer":format!("c{i}"),"follow":true});
        s.write_all(format!("{req}\n").as_bytes()).expect("send");
        let mut r = BufReader::new(s.try_clone().expect("clone"));
        let mut header = String::new();
        r.read_line(&mut header).expect("stream header");
        let v: serde_json::Value = serde_json::from_str(&header).expect("json");
        if v["data"]["streaming"] == json!(true) {
            streams.push((s, r));
        } else {
            refused += 1;
        }
    }
    assert_eq!(refused, 0, "200 followers fit the stream cap");
    let t = Instant::now();
    let (code, out, err) = run_cli(&[
        "ctl",
        "--socket",
        env.socket.to_str().expect("utf-8"),
        "status",
    ]);
    let took = t.elapsed();
    eprintln!("ctl status answered in {took:?} with 300 idle connections and 200 streams open");
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains("alpha"), "{out}");
    assert!(took < BOUND, "ctl status took {took:?}");
    // The streams still stream: a new event reaches a follower.
    let r = d.request(json!({"v":1,"cmd":"sync-now","account":"alpha"}));
    assert_eq!(r["ok"], json!(true), "{r}");
    let (_, reader) = &mut streams[0];
    let mut line = String::new();
    reader.read_line(&mut line).expect("event");
    assert!(line.contains("\"event\""), "{line}");
    drop(idle);
    drop(streams);
    d.stop();
}
