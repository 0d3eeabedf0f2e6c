//! Assembly and teardown of the running daemon: open the store, bind the control socket,
//! spawn the RootSupervisor with one AccountActor per account, then wait for a signal or an
//! admin command. The shared core the control socket, push endpoints and sinks call is
//! `DaemonCore` (`daemon_core.rs`); this module only assembles it and runs the main loop.
//!
//! Shutdown (SIGTERM, SIGINT, `ctl shutdown`): stop taking work, let in-flight handlers finish
//! within the grace period (anything unfinished stays in sled and replays at the next start),
//! flush sled, remove the socket, exit 0. Reload (SIGHUP, `ctl reload`): a new config that
//! fails validation is rejected with a log line and the running one is kept.

use crate::accounts::{self, GmailPortBuilder};
use crate::config::Config;
pub use crate::daemon_core::{AdminError, CoreParts, DaemonCore, DaemonRequest, PushOutcome};
use mailsync_actors::root::{RootArgs, RootSupervisor};
use mailsync_actors::store::Store;
use ractor::Actor;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

/// Why the daemon could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The data dir cannot be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The store failed to open (locked by another daemon, corrupt, ...).
    #[error(transparent)]
    Store(#[from] mailsync_actors::store::StoreError),
    /// The control socket could not be bound.
    #[error("control socket: {0}")]
    Control(String),
    /// The actor tree did not start.
    #[error("cannot start the supervision tree: {0}")]
    Spawn(String),
    /// Signals could not be installed.
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
}

/// Creates a directory (and parents) with mode 0700 if it does not exist.
pub fn create_private_dir(path: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    if path.is_dir() {
        return Ok(());
    }
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(path)
}

/// Everything `run` needs besides the config.
pub struct RunOptions {
    /// The config file (re-read on reload).
    pub config_path: PathBuf,
    /// How Gmail ports are built.
    pub gmail: Arc<dyn GmailPortBuilder>,
    /// Called once the daemon is up, with its core (the demo uses it to watch progress).
    pub on_ready: Option<Box<dyn FnOnce(Arc<DaemonCore>) + Send>>,
    /// An extra shutdown trigger (the demo's Ctrl-C handling, tests).
    pub cancel: CancellationToken,
}

/// Runs the daemon until a shutdown signal or request.
pub async fn run(config: Config, opts: RunOptions) -> Result<(), DaemonError> {
    create_private_dir(&config.data_dir).map_err(|source| DaemonError::DataDir {
        path: config.data_dir.clone(),
        source,
    })?;
    for w in &config.warnings {
        tracing::warn!(key = %w.key, reason = %w.reason, "Discouraged configuration.");
    }
    let store = Store::open_opts(&config.data_dir, &config.store.options())?;
    let listener = crate::control::socket::bind(&config.socket_path)
        .map_err(|e| DaemonError::Control(e.to_string()))?;
    let mut signals = crate::signals::listen().map_err(DaemonError::Signals)?;

    let service = Arc::new(crate::service::ServiceState::new());
    // The tree starts empty: the accounts join it once their credentials are resolved (a
    // credential `command` may take seconds), while the socket already answers.
    let (root, root_done) = Actor::spawn(
        None,
        RootSupervisor,
        RootArgs {
            store: store.clone(),
            accounts: Vec::new(),
        },
    )
    .await
    .map_err(|e| DaemonError::Spawn(e.to_string()))?;

    let (req_tx, mut req_rx) = mpsc::unbounded_channel();
    let grace = config.shutdown_grace;
    let socket_path = config.socket_path.clone();
    let cancel = opts.cancel;
    let sink_config = config.clone();
    let core = Arc::new(DaemonCore::new(CoreParts {
        root: root.clone(),
        store: store.clone(),
        config_path: opts.config_path,
        config,
        gmail: opts.gmail.clone(),
        requests: req_tx,
        cancel: cancel.clone(),
        service: service.clone(),
    }));
    core.set_starting(Some(
        sink_config
            .accounts
            .iter()
            .filter(|a| a.enabled)
            .map(|a| (a.id.clone(), a.kind.to_string()))
            .collect(),
    ));
    // The accounts' watch duties record registrations from their first moment.
    core.push_health().configure(&sink_config);
    let tasks = TaskTracker::new();
    crate::admin::serve_on_own_thread(listener, core.clone(), cancel.child_token(), &tasks);
    tracing::info!(socket = %socket_path.display(), pid = std::process::id(), "Control socket answering; starting the accounts.");

    let mut shutdown_early = false;
    let build = {
        let (config, gmail, service) = (sink_config.clone(), opts.gmail.clone(), service.clone());
        let (store, health) = (store.clone(), core.push_health_handle());
        tokio::task::spawn_blocking(move || {
            let (specs, errors) = accounts::build_all(
                &config,
                gmail.as_ref(),
                &|id, api| service.meter(id, api),
                &|account, api| {
                    crate::gmail_watch::GmailWatch::for_account(&store, &health, account, api)
                },
            );
            for e in &errors {
                tracing::error!(error = %e, "Account not started.");
            }
            service.adopt(&config, specs, &errors)
        })
    };
    tokio::pin!(build);
    let specs = loop {
        tokio::select! {
            built = &mut build => break built.unwrap_or_else(|e| {
                tracing::error!(error = %e, "Building the accounts failed.");
                Vec::new()
            }),
            _ = cancel.cancelled() => { shutdown_early = true; break Vec::new(); }
            ev = signals.recv() => match ev {
                Some(crate::signals::SignalEvent::Reload) => {
                    tracing::warn!("SIGHUP while starting: ignored; send it again once the daemon runs.");
                }
                Some(crate::signals::SignalEvent::Shutdown) | None => { shutdown_early = true; break Vec::new(); }
            },
            req = req_rx.recv() => match req {
                Some(DaemonRequest::Shutdown) | None => { shutdown_early = true; break Vec::new(); }
            },
        }
    };
    if !shutdown_early
        && let Err(e) = ractor::call_t!(
            root,
            mailsync_actors::root::RootMsg::Reconcile,
            60_000,
            specs
        )
    {
        tracing::error!(error = %e, "Cannot hand the accounts to the supervision tree.");
    }
    core.set_starting(None);
    if !shutdown_early {
        core.start_sinks(&sink_config).await;
        crate::push::spawn_all(core.clone(), &sink_config, cancel.child_token(), &tasks);
        tracing::info!(socket = %socket_path.display(), pid = std::process::id(), "mailsync daemon running.");
        crate::service::monitor::start(core.clone(), &sink_config, cancel.child_token(), &tasks)
            .await;
        if let Some(f) = opts.on_ready {
            f(core.clone());
        }
    }

    // sled failing a write for lack of space keeps failing until restart: exit (status 4).
    let mut out_of_space = None;
    if !shutdown_early {
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break,
                reason = store.wait_out_of_space() => {
                    out_of_space = Some(reason);
                    break;
                }
                ev = signals.recv() => match ev {
                    Some(crate::signals::SignalEvent::Reload) => {
                        if let Ok(s) = core.reload().await {
                            tracing::info!(added = ?s.added, removed = ?s.removed, restarted = ?s.restarted, "Reloaded on SIGHUP.");
                        }
                    }
                    Some(crate::signals::SignalEvent::Shutdown) | None => break,
                },
                req = req_rx.recv() => match req {
                    Some(DaemonRequest::Shutdown) | None => break,
                },
            }
        }
    }

    tracing::info!(grace_ms = grace.as_millis() as u64, "Shutting down.");
    core.service().notifier().stopping();
    cancel.cancel();
    // Stop never interrupts a running handler; past the grace period we leave what is still
    // leased for replay at the next start (it is all in sled).
    if let Err(e) = root
        .stop_and_wait(Some("shutdown".into()), Some(grace))
        .await
    {
        tracing::warn!(error = %e, "Actors did not stop within the grace period; unfinished jobs will replay.");
    }
    core.stop_sinks().await;
    tasks.close();
    if tokio::time::timeout(Duration::from_secs(2), tasks.wait())
        .await
        .is_err()
    {
        tracing::warn!("Some connections did not close in time.");
    }
    let flushed = store.flush_async().await;
    crate::control::socket::remove(&socket_path);
    let _ = tokio::time::timeout(Duration::from_secs(1), root_done).await;
    flushed?;
    if let Some(reason) = out_of_space {
        return Err(DaemonError::Store(
            mailsync_actors::store::StoreError::DiskFull {
                path: store.dir().to_path_buf(),
                reason,
            },
        ));
    }
    tracing::info!("mailsync daemon stopped.");
    Ok(())
}
