//! feed-bench: change-feed throughput through the real daemon. Starts the `mailsync` binary
//! (built next to this one) with a `test` account of N synthetic messages, measures how fast
//! the feed grows while the account syncs (events appended per second, each batch committed
//! and flushed with its messages), then streams the whole feed to one consumer over the control
//! socket (`events` without follow) and measures events per second received.
//!
//! Run: `cargo build --release --bins && target/release/feed-bench [N]` (default 20000).

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

fn request(socket: &std::path::Path, line: &str) -> Option<serde_json::Value> {
    let mut s = UnixStream::connect(socket).ok()?;
    s.write_all(line.as_bytes()).ok()?;
    s.write_all(b"\n").ok()?;
    let mut r = BufReader::new(s);
    let mut reply = String::new();
    r.read_line(&mut reply).ok()?;
    serde_json::from_str(&reply).ok()
}

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(20_000);
    let exe = std::env::current_exe().expect("current exe");
    let mailsync = exe.with_file_name("mailsync");
    let dir = std::env::temp_dir().join(format!("feed-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("dir");
    let socket = dir.join("control.sock");
    let config = dir.join("config.toml");
    std::fs::write(
        &config,
        format!(
            "data_dir = \"{d}/data\"\nsocket_path = \"{s}\"\nlog_level = \"warn\"\n\n[sync]\nbatch_size = 100\n\n[[accounts]]\nid = \"bench\"\nkind = \"test\"\n\n[accounts.test]\nmessages = {n}\n",
            d = dir.display(),
            s = socket.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(&mailsync)
        .arg("--config")
        .arg(&config)
        .arg("daemon")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start mailsync (build it first: cargo build --release --bins)");
    let started = Instant::now();
    let status = r#"{"v":1,"cmd":"status"}"#;
    loop {
        if let Some(v) = request(&socket, status)
            && v["data"]["accounts"][0]["phase"] == "caught_up"
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(600) {
            let _ = child.kill();
            panic!("sync did not finish");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let sync_secs = started.elapsed().as_secs_f64();

    let mut s = UnixStream::connect(&socket).expect("connect");
    s.write_all(b"{\"v\":1,\"cmd\":\"events\",\"consumer\":\"bench\",\"from\":1}\n")
        .expect("write");
    let t0 = Instant::now();
    let mut reader = BufReader::new(s);
    let mut line = String::new();
    let mut events = 0u64;
    loop {
        line.clear();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            break;
        }
        if line.starts_with("{\"event\"") {
            events += 1;
        } else if line.contains("\"end\"") {
            break;
        }
    }
    let stream_secs = t0.elapsed().as_secs_f64();
    let _ = Command::new("kill")
        .arg("-TERM")
        .arg(child.id().to_string())
        .status();
    let _ = child.wait();
    let _ = std::fs::remove_dir_all(&dir);
    println!("messages synced:            {n}");
    println!("feed events streamed:       {events}");
    println!(
        "append (sync incl. fetch):  {:.0} events/s ({sync_secs:.2} s)",
        events as f64 / sync_secs
    );
    println!(
        "streamed over the socket:   {:.0} events/s ({stream_secs:.2} s)",
        events as f64 / stream_secs
    );
}
