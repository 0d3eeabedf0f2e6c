//! Answers the control socket: the `ControlHandler` of the running daemon. Each request is
//! turned into a `DaemonCore` call (which asks the actors with timeouts) and the result into a
//! `Response`; `events` streams the durable change feed for a named consumer.
//!
//! Nothing here holds state of its own: account state belongs to the actors, consumer cursors
//! to the feed in sled.

use crate::control::protocol::{ErrorCode, ErrorReply, Request, Response};
use crate::control::server::{ControlHandler, EventStream, HandlerFuture};
use crate::daemon_core::{AdminError, DaemonCore};
use mailsync_actors::account::AccountCommand;
use mailsync_actors::feed::FeedEvent;
use serde_json::{Value, json};
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Events read from sled per step of a stream.
const STREAM_CHUNK: usize = 500;

/// The daemon's control handler.
pub struct Admin {
    core: Arc<DaemonCore>,
    cancel: CancellationToken,
}

/// Serves the control socket from a thread of its own until `cancel` fires
/// (`control_thread.rs`); a task on `tasks` ends once its last connection has closed.
pub fn serve_on_own_thread(
    listener: UnixListener,
    core: Arc<DaemonCore>,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let handler = Arc::new(Admin {
        core,
        cancel: cancel.clone(),
    });
    crate::control_thread::serve_on_own_thread(listener, handler, cancel, tasks);
}

fn admin_error(e: AdminError) -> Response {
    match e {
        AdminError::UnknownAccount(a) => Response::unknown_account(&a),
        AdminError::NotRunning(..) => Response::error(ErrorCode::Busy, e.to_string()),
        AdminError::Timeout(_) => Response::error(ErrorCode::Busy, e.to_string()),
        AdminError::Config(_) => Response::error(ErrorCode::BadRequest, e.to_string()),
        AdminError::Store(_) => Response::error(ErrorCode::Internal, e.to_string()),
    }
}

/// The JSON form of one feed event, as streamed to consumers: the public schema
/// ([`crate::events`]), identical to what webhooks receive.
pub fn event_json(ev: &FeedEvent) -> Value {
    crate::events::event_value(ev)
}

impl Admin {
    async fn answer(&self, req: Request) -> Response {
        let cmd = |account: &str, c: AccountCommand| {
            let core = self.core.clone();
            let account = account.to_string();
            async move {
                match core.command(&account, c).await {
                    Ok(()) => Response::done(),
                    Err(e) => admin_error(e),
                }
            }
        };
        match req {
            Request::Status => match crate::service::status_json::status_json(&self.core).await {
                Ok(v) => Response::Ok(v),
                Err(e) => admin_error(e),
            },
            Request::Metrics => {
                Response::ok(json!({ "text": crate::metrics::collect::scrape(&self.core).await }))
            }
            Request::DebugWedge { hold_ms } => {
                match self
                    .core
                    .debug_wedge(std::time::Duration::from_millis(hold_ms))
                    .await
                {
                    Ok(()) => Response::done(),
                    Err(e) => admin_error(e),
                }
            }
            Request::Accounts => match self.core.accounts().await {
                Ok(list) => Response::ok(
                    list.into_iter()
                        .map(|(id, kind)| json!({"account": id, "kind": kind}))
                        .collect::<Vec<_>>(),
                ),
                Err(e) => admin_error(e),
            },
            Request::Pause { account } => cmd(&account, AccountCommand::Pause).await,
            Request::Resume { account } => cmd(&account, AccountCommand::Resume).await,
            Request::SyncNow { account } => cmd(&account, AccountCommand::SyncNow).await,
            Request::Resync { account } => cmd(&account, AccountCommand::Resync).await,
            Request::DeepSync {
                account,
                since,
                until,
                folder,
            } => {
                match self.core.accounts().await {
                    Ok(list) => match list.iter().find(|(id, _)| *id == account) {
                        None => {
                            return admin_error(AdminError::UnknownAccount(account));
                        }
                        Some((_, kind)) if kind != "imap" => {
                            return Response::error(
                                ErrorCode::BadRequest,
                                format!(
                                    "deep-sync is for IMAP accounts; {account:?} is a {kind} account (use resync)"
                                ),
                            );
                        }
                        Some(_) => {}
                    },
                    Err(e) => return admin_error(e),
                }
                if let Err(e) = mailsync_actors::imap::deep_sync::search_criteria(
                    since.as_deref(),
                    until.as_deref(),
                ) {
                    return Response::error(ErrorCode::BadRequest, e);
                }
                let job = mailsync_actors::jobs::BackfillJob::DeepSync {
                    since,
                    until,
                    folder,
                };
                // Durable before the reply: the job is in the account's backfill mailbox (a
                // crash from here on resumes it), then Backfill is woken.
                let id = mailsync_actors::model::AccountId(account.clone());
                let key = job.key(&id);
                let store = self.core.store();
                let now = mailsync_actors::spec::now_ms();
                let queued = store
                    .transaction(|tx| {
                        mailsync_actors::jobs::enqueue_backfill_tx(tx, &id, job.clone(), now)
                    })
                    .and_then(|()| store.flush());
                if let Err(e) = queued {
                    return Response::error(ErrorCode::Internal, e.to_string());
                }
                tracing::info!(account = %account, job = %key, "Deep sync queued.");
                match self.core.command(&account, AccountCommand::SyncNow).await {
                    Ok(()) | Err(AdminError::NotRunning(..)) => Response::ok(json!({ "job": key })),
                    Err(e) => admin_error(e),
                }
            }
            Request::Reload => match self.core.reload().await {
                Ok(s) => Response::ok(json!({
                    "added": s.added, "removed": s.removed, "restarted": s.restarted
                })),
                Err(e) => admin_error(e),
            },
            Request::Shutdown => {
                self.core.shutdown();
                Response::done()
            }
            Request::Ack { consumer, seq } => {
                match crate::repair::ack(self.core.store(), &consumer, seq) {
                    Ok(()) => Response::done(),
                    Err(e) => Response::error(ErrorCode::BadRequest, e.to_string()),
                }
            }
            Request::Dead { .. }
            | Request::Requeue { .. }
            | Request::Consumers
            | Request::Unregister { .. } => self.repair(req).await,
            Request::WebhookDead { .. } | Request::WebhookReplay { .. } => {
                self.webhook_dead_letters(req).await
            }
            Request::Backup { path } => {
                crate::cli::store_cmd::backup_reply(self.core.store(), path).await
            }
            Request::Events { .. } => Response::error(
                ErrorCode::BadRequest,
                "events is served as a stream".to_string(),
            ),
        }
    }

    /// The repair commands (`repair.rs`): dead jobs, requeue, consumers, unregister.
    async fn repair(&self, req: Request) -> Response {
        use crate::repair::{self, RepairError};
        let store = self.core.store();
        let fail = |e: RepairError| match e {
            RepairError::Store(e) => Response::error(ErrorCode::Internal, e.to_string()),
            other => Response::error(ErrorCode::BadRequest, other.to_string()),
        };
        if let Some(account) = req.account() {
            match self.core.accounts().await {
                Ok(list) if list.iter().any(|(id, _)| id == account) => {}
                Ok(_) => return Response::unknown_account(account),
                Err(e) => return admin_error(e),
            }
        }
        match req {
            Request::Dead { account } => match repair::dead_jobs(store, &account) {
                Ok(jobs) => Response::ok(json!({ "account": account, "dead": jobs })),
                Err(e) => fail(e),
            },
            Request::Requeue { account, job } => match repair::requeue(store, &account, job) {
                Ok(n) => {
                    // Wake the account so the requeued jobs run now (best effort: a stopped
                    // account runs them when it starts).
                    let _ = self.core.command(&account, AccountCommand::SyncNow).await;
                    Response::ok(json!({ "account": account, "requeued": n }))
                }
                Err(e) => fail(e),
            },
            Request::Consumers => match repair::consumers(store) {
                Ok(list) => Response::ok(json!({ "consumers": list })),
                Err(e) => fail(e),
            },
            Request::Unregister { consumer } => match repair::unregister(store, &consumer) {
                Ok(()) => Response::done(),
                Err(e) => fail(e),
            },
            _ => Response::error(ErrorCode::Internal, "not a repair command"),
        }
    }

    /// `ctl webhook dead` / `replay` (`sink/webhook_replay.rs`), by the running config's names.
    async fn webhook_dead_letters(&self, req: Request) -> Response {
        use crate::sink::webhook_replay::{self, ReplayError};
        let hooks = self.core.config_snapshot().await.webhooks;
        let store = self.core.store();
        let fail = |e: ReplayError| match e {
            ReplayError::Sink(e) => Response::error(ErrorCode::Internal, e.to_string()),
            other => Response::error(ErrorCode::BadRequest, other.to_string()),
        };
        match req {
            Request::WebhookDead { name } => match webhook_replay::list(store, &hooks, &name) {
                Ok(dead) => Response::ok(json!({ "webhook": name, "dead": dead })),
                Err(e) => fail(e),
            },
            Request::WebhookReplay { name, id } => {
                match webhook_replay::replay(store, &hooks, &name, id).await {
                    Ok(outcome) => Response::ok(json!(outcome)),
                    Err(e) => fail(e),
                }
            }
            _ => Response::error(ErrorCode::Internal, "not a webhook command"),
        }
    }

    fn open_stream(
        &self,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> Result<EventStream, ErrorReply> {
        let feed = self.core.store().feed();
        let bad = |e: mailsync_actors::store::StoreError| {
            ErrorReply::new(ErrorCode::Internal, e.to_string())
        };
        if consumer.is_empty() {
            return Err(ErrorReply::new(
                ErrorCode::BadRequest,
                "a consumer name is required",
            ));
        }
        let acked = feed.consumer_cursor(&consumer).map_err(bad)?;
        if acked.is_none() && from.is_none() {
            // A new consumer that resumes "where it was" starts at the beginning of the feed.
            // `--from N` only reads: acknowledging is always explicit.
            feed.register_consumer(&consumer, 0).map_err(bad)?;
        }
        let mut after = match from {
            Some(f) => f.saturating_sub(1),
            None => acked.unwrap_or(0),
        };
        let mut notify = feed.subscribe();
        let cancel = self.cancel.clone();
        let stream = async_stream(move |tx| async move {
            loop {
                let batch = match feed.read_after(after, STREAM_CHUNK) {
                    Ok(b) => b,
                    Err(e) => {
                        tracing::warn!(error = %e, "Feed read failed; ending the stream.");
                        return;
                    }
                };
                let empty = batch.is_empty();
                for ev in &batch {
                    after = ev.seq;
                    if tx.send(event_json(ev)).await.is_err() {
                        return;
                    }
                }
                if !empty {
                    continue;
                }
                if !follow {
                    return;
                }
                // Wait for the next committed append (no polling), or shutdown.
                tokio::select! {
                    _ = cancel.cancelled() => return,
                    changed = notify.changed() => if changed.is_err() { return },
                }
            }
        });
        Ok(stream)
    }
}

/// A stream fed by a producer task through a small channel (backpressure: a slow consumer
/// slows only its own producer).
fn async_stream<F, Fut>(producer: F) -> EventStream
where
    F: FnOnce(tokio::sync::mpsc::Sender<Value>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::channel(64);
    tokio::spawn(producer(tx));
    Box::pin(futures_util::stream::unfold(rx, |mut rx| async move {
        rx.recv().await.map(|v| (v, rx))
    }))
}

impl ControlHandler for Admin {
    fn handle(&self, req: Request) -> HandlerFuture<'_, Response> {
        Box::pin(self.answer(req))
    }

    fn events(
        &self,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> HandlerFuture<'_, Result<EventStream, ErrorReply>> {
        Box::pin(async move { self.open_stream(consumer, from, follow) })
    }
}
