//! Server tests over a real Unix socket in a tempdir, with a fake handler: every command
//! round-trips, and garbage, oversized lines, half requests and idle clients never stop the
//! server from answering `status`.

use std::sync::Mutex;

use futures_util::stream;
use serde_json::json;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::net::unix::OwnedReadHalf;

use super::*;
use crate::control::socket;

/// Answers like a tiny daemon with accounts `work` and `home`; records acks; panics on
/// `resync` of the account named `boom`.
#[derive(Default)]
struct FakeHandler {
    acks: Mutex<Vec<(String, u64)>>,
}

impl ControlHandler for FakeHandler {
    fn handle(&self, req: Request) -> HandlerFuture<'_, Response> {
        Box::pin(async move {
            if let Some(account) = req.account() {
                if account == "boom" {
                    panic!("handler bug");
                }
                if account != "work" && account != "home" {
                    return Response::unknown_account(account);
                }
            }
            match req {
                Request::Status => Response::ok(json!({
                    "version": "0.1.0", "pid": 1, "uptime_seconds": 5, "data_dir": "/d",
                    "accounts": [{"account": "work", "kind": "test", "state": "running"}]
                })),
                Request::Accounts => Response::ok(json!([{"id": "work", "kind": "test"}])),
                Request::Ack { consumer, seq } => {
                    if let Ok(mut acks) = self.acks.lock() {
                        acks.push((consumer, seq));
                    }
                    Response::ok(json!({ "acked": seq }))
                }
                other => Response::ok(json!({ "did": other.name() })),
            }
        })
    }

    fn events(
        &self,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> HandlerFuture<'_, Result<EventStream, ErrorReply>> {
        Box::pin(async move {
            if consumer.is_empty() {
                return Err(ErrorReply::new(ErrorCode::BadRequest, "empty consumer"));
            }
            let start = from.unwrap_or(1);
            let events = stream::iter((start..start + 3).map(|seq| json!({ "seq": seq })));
            let stream: EventStream = if follow {
                Box::pin(events.chain(stream::pending()))
            } else {
                Box::pin(events)
            };
            Ok(stream)
        })
    }
}

struct TestServer {
    _dir: tempfile::TempDir,
    path: PathBuf,
    cancel: CancellationToken,
    tracker: TaskTracker,
    handler: Arc<FakeHandler>,
}

use std::path::PathBuf;

impl TestServer {
    async fn start(opts: ServerOptions) -> Result<TestServer, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("control.sock");
        let listener = socket::bind(&path)?;
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        let handler = Arc::new(FakeHandler::default());
        tracker.spawn(serve_with(
            listener,
            handler.clone(),
            cancel.clone(),
            tracker.clone(),
            opts,
        ));
        Ok(TestServer {
            _dir: dir,
            path,
            cancel,
            tracker,
            handler,
        })
    }

    async fn connect(&self) -> Result<Client, Box<dyn std::error::Error>> {
        let (reader, writer) = UnixStream::connect(&self.path).await?.into_split();
        Ok(Client {
            reader: BufReader::new(reader),
            writer,
        })
    }

    /// A fresh connection still gets a proper status reply.
    async fn assert_answers_status(&self) -> Result<(), Box<dyn std::error::Error>> {
        let mut client = self.connect().await?;
        let reply = client.ask(r#"{"v":1,"cmd":"status"}"#).await?;
        assert_eq!(reply["ok"], json!(true), "{reply}");
        assert_eq!(reply["data"]["accounts"][0]["account"], json!("work"));
        Ok(())
    }

    async fn stop(self) -> Result<(), Box<dyn std::error::Error>> {
        self.cancel.cancel();
        self.tracker.close();
        tokio::time::timeout(Duration::from_secs(5), self.tracker.wait()).await?;
        Ok(())
    }
}

/// A raw protocol client for tests.
struct Client {
    reader: BufReader<OwnedReadHalf>,
    writer: OwnedWriteHalf,
}

impl Client {
    async fn send_raw(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.writer.write_all(bytes).await
    }

    /// The next line as JSON, or `Null` at end of stream.
    async fn read(&mut self) -> Result<Value, Box<dyn std::error::Error>> {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(5), self.reader.read_line(&mut line))
            .await??;
        if n == 0 {
            return Ok(Value::Null);
        }
        Ok(serde_json::from_str(&line)?)
    }

    async fn ask(&mut self, line: &str) -> Result<Value, Box<dyn std::error::Error>> {
        self.send_raw(format!("{line}\n").as_bytes()).await?;
        self.read().await
    }
}

type TestResult = Result<(), Box<dyn std::error::Error>>;

#[tokio::test]
async fn server_every_command_round_trips_on_one_connection() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    let cases = [
        (Request::Status, json!("0.1.0")),
        (Request::Accounts, json!(null)),
        (
            Request::Pause {
                account: "work".into(),
            },
            json!(null),
        ),
        (
            Request::Resume {
                account: "work".into(),
            },
            json!(null),
        ),
        (
            Request::SyncNow {
                account: "home".into(),
            },
            json!(null),
        ),
        (
            Request::Resync {
                account: "work".into(),
            },
            json!(null),
        ),
        (Request::Reload, json!(null)),
        (Request::Shutdown, json!(null)),
        (
            Request::Ack {
                consumer: "c".into(),
                seq: 4,
            },
            json!(null),
        ),
    ];
    for (request, version) in cases {
        let reply = client.ask(request.to_line().trim_end()).await?;
        assert_eq!(reply["ok"], json!(true), "{}: {reply}", request.name());
        match &request {
            Request::Status => assert_eq!(reply["data"]["version"], version),
            Request::Accounts => assert_eq!(reply["data"][0]["id"], json!("work")),
            Request::Ack { .. } => assert_eq!(reply["data"]["acked"], json!(4)),
            other => assert_eq!(reply["data"]["did"], json!(other.name())),
        }
    }
    let reply = client
        .ask(r#"{"v":1,"cmd":"pause","account":"nope"}"#)
        .await?;
    assert_eq!(reply["ok"], json!(false));
    assert_eq!(reply["error"]["code"], json!("unknown_account"));
    server.stop().await
}

#[tokio::test]
async fn server_bad_requests_get_errors_and_keep_the_connection() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    for (line, code) in [
        ("this is not json", "bad_request"),
        ("{\"v\":1,\"cmd\":", "bad_request"),
        ("{\"v\":9,\"cmd\":\"status\"}", "unsupported_version"),
        ("{\"v\":1,\"cmd\":\"fly\"}", "unknown_command"),
        ("{\"v\":1,\"cmd\":\"pause\"}", "bad_request"),
        ("{\"cmd\":\"status\"}", "bad_request"),
    ] {
        let reply = client.ask(line).await?;
        assert_eq!(reply["ok"], json!(false), "{line}");
        assert_eq!(reply["error"]["code"], json!(code), "{line}: {reply}");
    }
    // Blank lines and CRLF are tolerated.
    client.send_raw(b"\n\r\n").await?;
    let reply = client.ask("{\"v\":1,\"cmd\":\"status\"}\r").await?;
    assert_eq!(reply["ok"], json!(true), "{reply}");
    server.stop().await
}

#[tokio::test]
async fn server_random_bytes_leave_it_answering() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    // Deterministic garbage with newlines sprinkled in, including invalid UTF-8 and NULs.
    let garbage: Vec<u8> = (0u32..4096)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    client.send_raw(&garbage).await?;
    client.send_raw(b"\n").await?;
    drop(client);
    server.assert_answers_status().await?;
    server.stop().await
}

#[tokio::test]
async fn server_oversized_line_gets_too_large_and_close() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    // 100 KiB fits the socket buffer, so the reply can be read reliably.
    let mut client = server.connect().await?;
    client.send_raw(&vec![b'x'; 100 * 1024]).await?;
    let reply = client.read().await?;
    assert_eq!(reply["error"]["code"], json!("too_large"), "{reply}");
    assert_eq!(client.read().await?, Value::Null, "connection closed");
    // A full 1 MiB line: the server closes early, so our write may fail; either is fine.
    let mut client = server.connect().await?;
    let mut big = vec![b'{'; 1024 * 1024];
    big.push(b'\n');
    let _ = client.send_raw(&big).await;
    drop(client);
    server.assert_answers_status().await?;
    server.stop().await
}

#[tokio::test]
async fn server_half_request_then_disconnect_is_harmless() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    client.send_raw(b"{\"v\":1,\"cmd\":\"sta").await?;
    drop(client);
    server.assert_answers_status().await?;
    server.stop().await
}

#[tokio::test]
async fn server_hundred_idle_connections_do_not_block_status() -> TestResult {
    let opts = ServerOptions {
        idle_timeout: Duration::from_millis(300),
        ..ServerOptions::default()
    };
    let server = TestServer::start(opts).await?;
    let mut idle = Vec::new();
    for _ in 0..100 {
        idle.push(server.connect().await?);
    }
    server.assert_answers_status().await?;
    // Idle clients are disconnected after the idle timeout.
    let mut first = idle.swap_remove(0);
    assert_eq!(first.read().await?, Value::Null);
    // Shutdown does not wait for the remaining idle clients.
    server.stop().await
}

#[tokio::test]
async fn server_at_its_cap_closes_the_longest_idle_client_and_caps_streams_apart() -> TestResult {
    let opts = ServerOptions {
        max_connections: 2,
        max_streams: 1,
        ..ServerOptions::default()
    };
    let server = TestServer::start(opts).await?;
    let mut a = server.connect().await?;
    assert_eq!(a.ask(r#"{"v":1,"cmd":"status"}"#).await?["ok"], json!(true));
    let mut b = server.connect().await?;
    assert_eq!(b.ask(r#"{"v":1,"cmd":"status"}"#).await?["ok"], json!(true));
    // Both slots are taken by idle clients: a newcomer evicts the one idle the longest.
    let mut c = server.connect().await?;
    assert_eq!(c.ask(r#"{"v":1,"cmd":"status"}"#).await?["ok"], json!(true));
    assert_eq!(a.read().await?, Value::Null, "a was closed to make room");
    // A follower moves to a stream slot; a second follower is refused, requests still work.
    let mut s1 = server.connect().await?;
    let header = s1
        .ask(r#"{"v":1,"cmd":"events","consumer":"x","follow":true}"#)
        .await?;
    assert_eq!(header["data"]["streaming"], json!(true), "{header}");
    let mut s2 = server.connect().await?;
    let reply = s2
        .ask(r#"{"v":1,"cmd":"events","consumer":"y","follow":true}"#)
        .await?;
    assert_eq!(reply["error"]["code"], json!("busy"), "{reply}");
    server.assert_answers_status().await?;
    drop((b, c));
    server.stop().await
}

#[tokio::test]
async fn server_handler_panic_becomes_internal_error() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    let reply = client
        .ask(r#"{"v":1,"cmd":"resync","account":"boom"}"#)
        .await?;
    assert_eq!(reply["error"]["code"], json!("internal"), "{reply}");
    let reply = client.ask(r#"{"v":1,"cmd":"status"}"#).await?;
    assert_eq!(reply["ok"], json!(true));
    server.stop().await
}

#[tokio::test]
async fn server_events_without_follow_end_and_return_to_requests() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    let header = client
        .ask(r#"{"v":1,"cmd":"events","consumer":"idx","from":10}"#)
        .await?;
    assert_eq!(header, json!({"ok": true, "data": {"streaming": true}}));
    for seq in 10..13 {
        assert_eq!(client.read().await?, json!({"event": {"seq": seq}}));
    }
    assert_eq!(client.read().await?, json!({"end": true}));
    let reply = client.ask(r#"{"v":1,"cmd":"status"}"#).await?;
    assert_eq!(reply["ok"], json!(true));
    let reply = client
        .ask(r#"{"v":1,"cmd":"events","consumer":""}"#)
        .await?;
    assert_eq!(reply["error"]["code"], json!("bad_request"));
    server.stop().await
}

#[tokio::test]
async fn server_events_follow_accepts_acks_while_streaming() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let mut client = server.connect().await?;
    let header = client
        .ask(r#"{"v":1,"cmd":"events","consumer":"idx","follow":true}"#)
        .await?;
    assert_eq!(header["data"]["streaming"], json!(true));
    for seq in 1..4 {
        assert_eq!(client.read().await?, json!({"event": {"seq": seq}}));
    }
    let reply = client
        .ask(r#"{"v":1,"cmd":"ack","consumer":"idx","seq":3}"#)
        .await?;
    assert_eq!(reply["data"]["acked"], json!(3));
    let reply = client.ask(r#"{"v":1,"cmd":"status"}"#).await?;
    assert_eq!(reply["error"]["code"], json!("bad_request"), "{reply}");
    let acks = server
        .handler
        .acks
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(acks, vec![("idx".to_string(), 3)]);
    // A following stream is ended by shutdown.
    server.cancel.cancel();
    assert_eq!(client.read().await?, Value::Null);
    server.stop().await
}

#[tokio::test]
async fn server_stops_accepting_on_cancel() -> TestResult {
    let server = TestServer::start(ServerOptions::default()).await?;
    let _open = server.connect().await?;
    let path = server.path.clone();
    server.stop().await?;
    // The listener is gone: new connections fail or are never answered.
    if let Ok(stream) = UnixStream::connect(&path).await {
        let (reader, _writer) = stream.into_split();
        let mut reader = BufReader::new(reader);
        let mut line = String::new();
        let read =
            tokio::time::timeout(Duration::from_millis(200), reader.read_line(&mut line)).await;
        assert!(
            !matches!(read, Ok(Ok(n)) if n > 0),
            "answered after shutdown: {line}"
        );
    }
    Ok(())
}
