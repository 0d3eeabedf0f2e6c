//! The control socket on a thread of its own: a single-threaded tokio runtime that accepts
//! connections, reads requests and writes replies, so `ctl status` is answered while the sync
//! keeps the main runtime's workers busy (a thousand accounts syncing on two cores left a
//! status request waiting seconds for a worker, its deadline timer included).
//!
//! Only the read-only requests that must stay quick (`status`, `accounts`) are
//! answered on this thread; their questions to the actors are bounded by the status cache's
//! deadline (`status_cache.rs`). Every other request, and the pumping of a feed stream, runs
//! as a task on the main runtime, exactly as before: what they start (sinks after a reload,
//! account actors) lives there, never on this thread.

use crate::control::protocol::{ErrorCode, ErrorReply, Request, Response};
use crate::control::server::{ControlHandler, EventStream, HandlerFuture};
use futures_util::StreamExt;
use std::sync::Arc;
use tokio::net::UnixListener;
use tokio::runtime::Handle;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Feed events buffered between the main runtime's pump and the connection.
const STREAM_BUFFER: usize = 256;

/// Serves `handler` on `listener` from a new thread until `cancel` fires, with the requests
/// that may start work forwarded to `main`. A task on `tasks` ends once the thread has closed
/// its last connection, so shutdown waits for it as for any other task. A thread or runtime
/// that cannot start is logged as an error (the socket is then not served).
pub fn serve_on_own_thread(
    listener: UnixListener,
    handler: Arc<dyn ControlHandler>,
    cancel: CancellationToken,
    tasks: &TaskTracker,
) {
    let main = Handle::current();
    let std_listener = match listener.into_std() {
        Ok(l) => l,
        Err(error) => {
            tracing::error!(%error, "The control socket could not be handed to its thread; it is not served.");
            return;
        }
    };
    let (done_tx, done_rx) = tokio::sync::oneshot::channel::<()>();
    let forwarding: Arc<dyn ControlHandler> = Arc::new(Forwarding {
        inner: handler,
        main,
    });
    let thread_cancel = cancel;
    let spawned = std::thread::Builder::new()
        .name("mailsync-control".into())
        .spawn(move || {
            let rt = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(rt) => rt,
                Err(error) => {
                    tracing::error!(%error, "The control socket's runtime could not start.");
                    return;
                }
            };
            rt.block_on(async move {
                let listener = match UnixListener::from_std(std_listener) {
                    Ok(l) => l,
                    Err(error) => {
                        tracing::error!(%error, "The control socket could not be registered on its thread.");
                        return;
                    }
                };
                let connections = TaskTracker::new();
                crate::control::server::serve(
                    listener,
                    forwarding,
                    thread_cancel,
                    connections.clone(),
                )
                .await;
                connections.close();
                connections.wait().await;
            });
            let _ = done_tx.send(());
        });
    match spawned {
        Ok(_) => {
            tasks.spawn(async move {
                let _ = done_rx.await;
            });
        }
        Err(error) => {
            tracing::error!(%error, "No thread for the control socket; it is not served.");
        }
    }
}

/// Answers the quick read-only requests where it is called (the control thread) and runs
/// everything else on the main runtime.
struct Forwarding {
    inner: Arc<dyn ControlHandler>,
    main: Handle,
}

impl Forwarding {
    fn answered_here(req: &Request) -> bool {
        matches!(req, Request::Status | Request::Accounts)
    }
}

impl ControlHandler for Forwarding {
    fn handle(&self, req: Request) -> HandlerFuture<'_, Response> {
        if Self::answered_here(&req) {
            return self.inner.handle(req);
        }
        let inner = self.inner.clone();
        let task = self.main.spawn(async move { inner.handle(req).await });
        Box::pin(async move {
            task.await.unwrap_or_else(|e| {
                Response::error(ErrorCode::Internal, format!("the request failed: {e}"))
            })
        })
    }

    fn events(
        &self,
        consumer: String,
        from: Option<u64>,
        follow: bool,
    ) -> HandlerFuture<'_, Result<EventStream, ErrorReply>> {
        let inner = self.inner.clone();
        let (tx, rx) = tokio::sync::mpsc::channel(STREAM_BUFFER);
        let (opened_tx, opened_rx) = tokio::sync::oneshot::channel();
        // The stream is opened and pumped on the main runtime; the connection reads the
        // channel. When the connection goes, the channel closes and the pump stops.
        self.main.spawn(async move {
            let mut stream = match inner.events(consumer, from, follow).await {
                Ok(s) => {
                    let _ = opened_tx.send(Ok(()));
                    s
                }
                Err(e) => {
                    let _ = opened_tx.send(Err(e));
                    return;
                }
            };
            loop {
                tokio::select! {
                    _ = tx.closed() => break,
                    item = stream.next() => match item {
                        Some(v) => {
                            if tx.send(v).await.is_err() {
                                break;
                            }
                        }
                        None => break,
                    },
                }
            }
        });
        Box::pin(async move {
            match opened_rx.await {
                Ok(Ok(())) => Ok(Box::pin(channel_stream(rx)) as EventStream),
                Ok(Err(e)) => Err(e),
                Err(_) => Err(ErrorReply::new(
                    ErrorCode::Internal,
                    "the feed stream could not be opened",
                )),
            }
        })
    }
}

fn channel_stream(
    mut rx: tokio::sync::mpsc::Receiver<serde_json::Value>,
) -> impl futures_util::Stream<Item = serde_json::Value> + Send {
    futures_util::stream::poll_fn(move |cx| rx.poll_recv(cx))
}
