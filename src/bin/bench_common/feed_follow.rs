//! Shared by the bench binaries that time changes to the feed (`push-bench`, `scale-bench`):
//! a following `events` subscription over the daemon's control socket, read on its own
//! thread, each event's key handed over with the moment its line arrived.

use serde_json::{Value, json};
use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::sync::mpsc;
use std::time::Instant;

/// Subscribes `consumer` to the feed from the start, following; every event key with its
/// arrival time comes out of the receiver until the daemon closes the stream.
pub fn follow(socket: &Path, consumer: &str) -> Result<mpsc::Receiver<(String, Instant)>, String> {
    let mut s = UnixStream::connect(socket).map_err(|e| format!("control socket: {e}"))?;
    let req = json!({"v":1,"cmd":"events","consumer":consumer,"follow":true});
    s.write_all(format!("{req}\n").as_bytes())
        .map_err(|e| format!("events request: {e}"))?;
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut r = BufReader::new(s);
        loop {
            let mut line = String::new();
            match r.read_line(&mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let at = Instant::now();
            let v: Value = serde_json::from_str(&line).unwrap_or(Value::Null);
            if let Some(k) = v["event"]["key"].as_str()
                && tx.send((k.to_string(), at)).is_err()
            {
                return;
            }
        }
    });
    Ok(rx)
}
