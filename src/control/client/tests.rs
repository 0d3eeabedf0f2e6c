//! Client tests: requests against a real server on a tempdir socket, `run_ctl` output, the
//! event follower, table rendering and the clap surface of `CtlArgs`.

use std::sync::{Arc, Mutex};

use clap::Parser;
use futures_util::stream;
use serde_json::json;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::*;
use crate::control::protocol::{ErrorCode, ErrorReply};
use crate::control::server::{ControlHandler, EventStream, HandlerFuture, serve};
use crate::control::socket;

type TestResult = Result<(), Box<dyn std::error::Error>>;

fn status_data() -> Value {
    json!({
        "version": "0.1.0", "pid": 4242, "uptime_seconds": 3725, "data_dir": "/var/lib/mailsync",
        "accounts": [
            {
                "account": "work", "kind": "gmail", "state": "running", "phase": "fetching",
                "cursor": "historyId 12345", "restarts": 1, "last_error": null,
                "last_sync_ms": null, "missing": 3, "dead_lettered": 0, "delivery": "polling",
                "progress": {"done": 120, "total": 500, "per_second": 10.0, "eta_seconds": 38},
                "queues": [
                    {"name": "work/ingest", "pending": 5, "leased": 2, "delayed": 1, "dead": 0},
                    {"name": "work/history", "pending": 1, "leased": 0, "delayed": 0, "dead": 2}
                ]
            },
            {
                "account": "home", "kind": "imap", "state": "failed", "phase": "stopped",
                "cursor": null, "restarts": 5, "last_error": "connection refused by imap.example.com",
                "last_sync_ms": null, "missing": 0, "dead_lettered": 0, "delivery": null,
                "progress": null, "queues": []
            }
        ]
    })
}

#[derive(Default)]
struct Fake {
    acks: Mutex<Vec<u64>>,
}

impl ControlHandler for Fake {
    fn handle(&self, req: Request) -> HandlerFuture<'_, Response> {
        Box::pin(async move {
            match req {
                Request::Status => Response::ok(status_data()),
                Request::Accounts => Response::ok(json!([
                    {"id": "work", "kind": "gmail", "state": "running"},
                    {"id": "home", "kind": "imap", "state": "failed"}
                ])),
                Request::Pause { account } if account != "work" => {
                    Response::unknown_account(&account)
                }
                Request::Ack { seq, .. } => {
                    if let Ok(mut acks) = self.acks.lock() {
                        acks.push(seq);
                    }
                    Response::done()
                }
                _ => Response::done(),
            }
        })
    }

    fn events(
        &self,
        _consumer: String,
        from: Option<u64>,
        _follow: bool,
    ) -> HandlerFuture<'_, Result<EventStream, ErrorReply>> {
        Box::pin(async move {
            let start = from.unwrap_or(1);
            let events: EventStream = Box::pin(stream::iter(
                (start..start + 2).map(|seq| json!({"seq": seq, "kind": "added"})),
            ));
            Ok(events)
        })
    }
}

struct Daemon {
    _dir: tempfile::TempDir,
    path: PathBuf,
    fake: Arc<Fake>,
    cancel: CancellationToken,
}

impl Daemon {
    async fn start() -> Result<Daemon, Box<dyn std::error::Error>> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("ctl.sock");
        let listener = socket::bind(&path)?;
        let fake = Arc::new(Fake::default());
        let cancel = CancellationToken::new();
        let tracker = TaskTracker::new();
        tracker.spawn(serve(
            listener,
            fake.clone(),
            cancel.clone(),
            tracker.clone(),
        ));
        Ok(Daemon {
            _dir: dir,
            path,
            fake,
            cancel,
        })
    }

    async fn ctl(&self, args: CtlArgs, json: bool) -> (Result<i32, ControlError>, String) {
        let mut out = Vec::new();
        let result = run_ctl(&self.path, args, json, &mut out).await;
        (result, String::from_utf8_lossy(&out).into_owned())
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        self.cancel.cancel();
    }
}

#[tokio::test]
async fn client_request_round_trips_every_command() -> TestResult {
    let daemon = Daemon::start().await?;
    let account = || "work".to_string();
    for req in [
        Request::Status,
        Request::Accounts,
        Request::Pause { account: account() },
        Request::Resume { account: account() },
        Request::SyncNow { account: account() },
        Request::Resync { account: account() },
        Request::Reload,
        Request::Shutdown,
        Request::Ack {
            consumer: "c".into(),
            seq: 1,
        },
    ] {
        let resp = request(&daemon.path, &req, DEFAULT_TIMEOUT).await?;
        assert!(resp.is_ok(), "{}: {resp:?}", req.name());
    }
    let resp = request(
        &daemon.path,
        &Request::Pause {
            account: "nope".into(),
        },
        DEFAULT_TIMEOUT,
    )
    .await?;
    assert_eq!(resp, Response::unknown_account("nope"));
    Ok(())
}

#[tokio::test]
async fn client_missing_socket_is_a_connect_error() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("absent.sock");
    let err = request(&path, &Request::Status, DEFAULT_TIMEOUT)
        .await
        .err();
    assert!(matches!(err, Some(ControlError::Connect { .. })), "{err:?}");
    let msg = err.map(|e| e.to_string()).unwrap_or_default();
    assert!(
        msg.contains("absent.sock") && msg.contains("daemon running"),
        "{msg}"
    );
    Ok(())
}

#[tokio::test]
async fn client_silent_daemon_times_out() -> TestResult {
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("silent.sock");
    // Accepts connections but never answers.
    let listener = tokio::net::UnixListener::bind(&path)?;
    let accept = tokio::spawn(async move {
        let held = listener.accept().await;
        tokio::time::sleep(Duration::from_secs(5)).await;
        drop(held);
    });
    let err = request(&path, &Request::Status, Duration::from_millis(200))
        .await
        .err();
    assert!(matches!(err, Some(ControlError::Timeout { .. })), "{err:?}");
    accept.abort();
    Ok(())
}

#[tokio::test]
async fn client_ctl_status_prints_a_table_or_json() -> TestResult {
    let daemon = Daemon::start().await?;
    let (code, out) = daemon.ctl(CtlArgs::Status { account: None }, false).await;
    assert_eq!(code?, 0);
    assert!(
        out.contains("work (gmail)") && out.contains("home (imap)"),
        "{out}"
    );
    let (code, out) = daemon.ctl(CtlArgs::Status { account: None }, true).await;
    assert_eq!(code?, 0);
    let data: Value = serde_json::from_str(out.trim())?;
    assert_eq!(data, status_data());
    let (code, out) = daemon.ctl(CtlArgs::Reload, false).await;
    assert_eq!((code?, out.as_str()), (0, "ok\n"));
    Ok(())
}

#[tokio::test]
async fn client_ctl_error_reply_is_remote_with_exit_2() -> TestResult {
    let daemon = Daemon::start().await?;
    let (result, out) = daemon
        .ctl(
            CtlArgs::Pause {
                account: "nope".into(),
            },
            false,
        )
        .await;
    assert!(out.is_empty());
    match result {
        Err(err @ ControlError::Remote(_)) => {
            assert_eq!(err.exit_code(), 2);
            assert!(err.to_string().contains("unknown_account"), "{err}");
        }
        other => panic!("expected a remote error, got {other:?}"),
    }
    Ok(())
}

#[tokio::test]
async fn client_ctl_events_prints_and_acks() -> TestResult {
    let daemon = Daemon::start().await?;
    let args = CtlArgs::Events {
        consumer: "idx".into(),
        from: Some(7),
        follow: false,
        ack: true,
    };
    let (code, out) = daemon.ctl(args, true).await;
    assert_eq!(code?, 0);
    let seqs: Vec<u64> = out
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["seq"].as_u64())
        .collect();
    assert_eq!(seqs, [7, 8]);
    // The follower waits for every ack's reply before it reports the end of the stream.
    let acks = daemon
        .fake
        .acks
        .lock()
        .map(|a| a.clone())
        .unwrap_or_default();
    assert_eq!(acks, [7, 8]);
    Ok(())
}

#[tokio::test]
async fn client_follower_reads_events_until_end() -> TestResult {
    let daemon = Daemon::start().await?;
    let mut follower = follow_events(&daemon.path, "idx", None, false, DEFAULT_TIMEOUT).await?;
    assert_eq!(
        follower.next().await?,
        Some(json!({"seq": 1, "kind": "added"}))
    );
    follower.ack("idx", 1).await?;
    assert_eq!(
        follower.next().await?,
        Some(json!({"seq": 2, "kind": "added"}))
    );
    assert_eq!(follower.next().await?, None);
    assert_eq!(follower.next().await?, None);
    assert_eq!(follower.path(), daemon.path.as_path());
    Ok(())
}

#[test]
fn client_render_status_reads_like_systemctl() {
    let mut data = status_data();
    data["socket"] = json!("/run/mailsync/control.sock");
    data["commit"] = json!("abc123");
    data["health"] = json!({"state": "failed", "summary": "2 accounts: 1 active, 1 failed"});
    data["consumers"] = json!([{"consumer": "indexer", "acked": 40, "lag": 2}]);
    data["sinks"] = json!([{"name": "maildir", "enabled": true, "cursor": 41, "lag": 1,
        "dead_letters": 0, "last_error": null}]);
    let out = render_table(&Response::Ok(data));
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(
        lines[0],
        "× mailsync 0.1.0 (abc123) - pid 4242, up 1h2m, data /var/lib/mailsync, \
         socket /run/mailsync/control.sock, health failed: 2 accounts: 1 active, 1 failed"
    );
    let block = |id: &str| -> String {
        out.split("\n\n")
            .find(|b| b.contains(&format!(" {id} (")))
            .unwrap_or_default()
            .to_string()
    };
    let work = block("work");
    assert!(
        work.contains("       Phase: fetching 120/500 (24%), 10.0/s, ETA 38s"),
        "{out}"
    );
    assert!(
        work.contains("      Cursor: historyId 12345 (last sync never)"),
        "{out}"
    );
    // pending 5 + 1, leased 2, delayed 1; 2 dead.
    assert!(
        work.contains("      Queues: 6 pending, 2 leased, 1 delayed, 2 dead"),
        "{out}"
    );
    assert!(work.contains("    Delivery: polling"), "{out}");
    let home = block("home");
    assert!(home.starts_with("× home (imap) - failed"), "{out}");
    assert!(
        home.contains("  Last error: connection refused by imap.example.com"),
        "{out}"
    );
    assert!(
        out.contains("\nCONSUMER  ACKED  LAG\nindexer   40     2\n"),
        "{out}"
    );
    assert!(
        out.contains(
            "\nSINK     ENABLED  CURSOR  LAG  DEAD  LAST ERROR\nmaildir  true     41      1    0     -\n"
        ),
        "{out}"
    );
}

#[test]
fn client_render_accounts_errors_and_plain_data() {
    let out = render_table(&Response::Ok(json!([
        {"id": "work", "kind": "gmail", "state": "running"},
        ["home", "imap"]
    ])));
    assert_eq!(
        out,
        "ACCOUNT  KIND   STATE\nwork     gmail  running\nhome     imap   -\n"
    );
    let out = render_table(&Response::Error(ErrorReply::new(
        ErrorCode::UnknownAccount,
        "unknown account \"x\"",
    )));
    assert_eq!(out, "error (unknown_account): unknown account \"x\"\n");
    assert_eq!(render_table(&Response::done()), "ok\n");
    assert_eq!(
        render_table(&Response::Ok(json!({"added": ["a"], "removed": []}))),
        "added: [\"a\"]\nremoved: []\n"
    );
    let empty =
        json!({"version": "1", "pid": 1, "uptime_seconds": 0, "data_dir": "/d", "accounts": []});
    assert!(render_table(&Response::Ok(empty)).contains("no accounts configured"));
}

#[derive(Debug, Parser)]
struct Cli {
    #[command(subcommand)]
    ctl: CtlArgs,
}

#[test]
fn client_ctl_args_parse_like_the_docs() -> Result<(), clap::Error> {
    let parse = |args: &[&str]| {
        Cli::try_parse_from(std::iter::once("ctl").chain(args.iter().copied())).map(|c| c.ctl)
    };
    assert_eq!(parse(&["status"])?, CtlArgs::Status { account: None });
    assert_eq!(
        parse(&["sync-now", "work"])?.to_request(),
        Request::SyncNow {
            account: "work".into()
        }
    );
    assert_eq!(
        parse(&["events", "--consumer", "idx", "--from", "5", "--follow"])?.to_request(),
        Request::Events {
            consumer: "idx".into(),
            from: Some(5),
            follow: true
        }
    );
    assert_eq!(
        parse(&["ack", "--consumer", "idx", "9"])?.to_request(),
        Request::Ack {
            consumer: "idx".into(),
            seq: 9
        }
    );
    assert_eq!(
        parse(&[
            "deep-sync",
            "mail",
            "--since",
            "2025-01-01",
            "--folder",
            "INBOX"
        ])?
        .to_request(),
        Request::DeepSync {
            account: "mail".into(),
            since: Some("2025-01-01".into()),
            until: None,
            folder: Some("INBOX".into()),
        }
    );
    assert!(parse(&["pause"]).is_err());
    Ok(())
}

#[test]
fn client_render_imap_folders() {
    let data = json!({"version": "1", "pid": 1, "uptime_seconds": 0, "data_dir": "/d",
    "accounts": [{"account": "mail", "kind": "imap", "state": "running", "phase": "fetching",
    "imap": {"connections": "2 open, 1 idle", "errors": {"network": 2, "auth": 0},
        "per_second": 12.5, "fetched": 40,
        "commands": {"selects": 3, "status_probes": 9, "polls_skipped": 6},
        "folders": [
            {"name": "INBOX", "messages": 40, "state": "initial_sync", "idle": true,
             "progress": {"done": 40, "total": 100, "eta_seconds": 5}, "uidvalidity": 7},
            {"name": "Sent", "messages": 3, "state": "synced", "poll_interval_secs": 120}
        ]}}]});
    let accounts = data["accounts"].as_array().cloned().unwrap_or_default();
    let out = status_view::render_status(&data, &accounts);
    assert!(out.contains("Errors: network 2"), "{out}");
    assert!(out.contains("3 SELECT, 9 STATUS (6 unchanged)"), "{out}");
    assert!(
        out.contains("INBOX (idle)") && out.contains("40/100, ETA 5s"),
        "{out}"
    );
    assert!(!out.contains("UIDVALIDITY"), "{out}");
    let detail = status_view::render_account(&data, "mail").unwrap_or_default();
    assert!(
        detail.contains("UIDVALIDITY") && detail.contains("2m0s"),
        "{detail}"
    );
}
