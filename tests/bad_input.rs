//! Garbage on the control socket never crashes or wedges the daemon.

use crate::common::*;
use serde_json::json;
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::Duration;

#[test]
fn garbage_on_the_socket_leaves_the_daemon_answering() {
    let env = TestEnv::new();
    env.write_config(&test_account("g", "messages = 2"));
    let d = env.start();

    // Random bytes, then a newline: an error reply, connection still usable or closed.
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    let junk: Vec<u8> = (0..4096u32)
        .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
        .collect();
    let _ = s.write_all(&junk);
    let _ = s.write_all(b"\n");
    drop(s);

    // Malformed JSON gets a bad_request reply.
    let r = socket_request(&env.socket, "{\"v\":1,\"cmd\":").expect("reply");
    assert_eq!(r["ok"], json!(false));
    let r = socket_request(&env.socket, "{\"v\":1,\"cmd\":\"launch-missiles\"}").expect("reply");
    assert_eq!(r["ok"], json!(false));
    assert_eq!(r["error"]["code"], json!("unknown_command"));

    // A 1 MiB line: refused, not buffered forever.
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let big = vec![b'a'; 1 << 20];
    let _ = s.write_all(&big);
    let _ = s.write_all(b"\n");
    let mut line = String::new();
    let _ = BufReader::new(&s).read_line(&mut line);
    if !line.is_empty() {
        assert!(line.contains("too_large"), "{line}");
    }
    drop(s);

    // Half a request, then disconnect.
    let mut s = UnixStream::connect(&env.socket).expect("connect");
    let _ = s.write_all(b"{\"v\":1,\"cmd\":\"sta");
    drop(s);

    // 100 idle connections.
    let idle: Vec<UnixStream> = (0..100)
        .filter_map(|_| UnixStream::connect(&env.socket).ok())
        .collect();
    let st = d.status();
    assert_eq!(st["accounts"][0]["account"], json!("g"));
    drop(idle);
    assert!(d.try_request(&json!({"v":1,"cmd":"status"})).is_ok());
    d.stop();
}
