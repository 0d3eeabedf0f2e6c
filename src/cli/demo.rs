//! `mailsync demo`: the whole product on one screen. Starts the Google API emulator in-process
//! with a seeded account (about 5,000 messages, the mutation generator running), runs the real
//! daemon against it over loopback HTTP into a fresh data dir with quotas on (scaled so the full
//! sync takes about a minute), shows live progress, then the stream of changes as they arrive.
//! Ctrl-C stops both cleanly.

use crate::config;
use crate::daemon::{self, DaemonCore, RunOptions};
use clap::Args;
use mailsync_actors::mirror::Change;
use mailsync_actors::store::decode;
use mailsync_emulator::{Emulator, EmulatorConfig, QuotaMode, QuotaProfile};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Flags of `mailsync demo`.
#[derive(Clone, Debug, Args)]
pub struct DemoArgs {
    /// Messages in the simulated mailbox.
    #[arg(long, default_value_t = 5_000)]
    pub messages: usize,
    /// Seed of the simulated mailbox and its mutations.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Mutations per second once the mailbox is synced (deliver, read, label, archive, delete).
    #[arg(long, default_value_t = 0.5)]
    pub mutation_rate: f64,
    /// Target duration of the full sync in seconds (the per-user quota is scaled to fit).
    #[arg(long, default_value_t = 60)]
    pub full_sync_secs: u64,
    /// Where to put the demo's data (default: a fresh directory under the system temp dir).
    #[arg(long)]
    pub dir: Option<PathBuf>,
    /// Stop by itself after this many seconds (0 = run until Ctrl-C).
    #[arg(long, default_value_t = 0)]
    pub stop_after_secs: u64,
}

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// File system trouble in the demo dir.
    #[error("demo directory {path}: {source}")]
    Io {
        /// The path.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The emulator did not start.
    #[error("emulator: {0}")]
    Emulator(String),
    /// The generated config was rejected (a bug).
    #[error("config: {0}")]
    Config(String),
    /// The daemon failed.
    #[error("daemon: {0}")]
    Daemon(String),
}

fn write_private(path: &Path, text: &str) -> Result<(), DemoError> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let io = |source| DemoError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .mode(0o600)
        .open(path)
        .map_err(io)?;
    f.write_all(text.as_bytes()).map_err(io)
}

/// Quota scale so the full sync (messages.get at 20 units plus listing) takes `secs`.
pub fn quota_scale(messages: usize, secs: u64) -> f64 {
    let units = messages as f64 * 20.0 + (messages as f64 / 500.0).ceil() * 5.0 + 100.0;
    let per_minute_needed = units * 60.0 / secs.max(1) as f64;
    (per_minute_needed / 6_000.0).max(1.0).ceil()
}

/// Runs the demo.
pub async fn run(args: DemoArgs) -> Result<(), DemoError> {
    let dir = args.dir.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("mailsync-demo-{}", std::process::id()))
    });
    if dir.exists() {
        std::fs::remove_dir_all(&dir).map_err(|source| DemoError::Io {
            path: dir.clone(),
            source,
        })?;
    }
    daemon::create_private_dir(&dir).map_err(|source| DemoError::Io {
        path: dir.clone(),
        source,
    })?;
    let scale = quota_scale(args.messages, args.full_sync_secs);

    let emu_config = EmulatorConfig {
        seed: args.seed,
        messages: args.messages,
        quota: QuotaMode::On,
        quota_profile: QuotaProfile::Y2026,
        user_rate_scale: scale,
        mutation_rate: Some(args.mutation_rate),
        ..EmulatorConfig::default()
    };
    let account = emu_config.account.clone();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .map_err(|e| DemoError::Emulator(e.to_string()))?;
    let emulator = Emulator::start(emu_config, listener)
        .await
        .map_err(|e| DemoError::Emulator(e.to_string()))?;
    let base = emulator.base_url();
    let refresh = emulator
        .refresh_token(&account)
        .ok_or_else(|| DemoError::Emulator("no refresh token for the demo account".into()))?;

    write_private(
        &dir.join("client_secret"),
        mailsync_emulator::DEFAULT_CLIENT_SECRET,
    )?;
    write_private(&dir.join("refresh_token"), &refresh)?;
    let config_text = format!(
        r#"# Written by `mailsync demo`.
data_dir = "{data}"
socket_path = "{dir}/control.sock"
log_format = "pretty"
log_level = "warn"

[sync]
poll_interval_secs = 5

[quota]
profile = "2026"
scale = {scale}

[[accounts]]
id = "demo"
kind = "gmail"
email = "{account}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client_id}"
client_secret = {{ file = "{dir}/client_secret" }}
refresh_token = {{ file = "{dir}/refresh_token" }}

[[accounts]]
id = "demo-calendar"
kind = "calendar"
email = "{account}"
api_base = "{base}"
token_url = "{base}/token"
auth_url = "{base}/o/oauth2/v2/auth"
client_id = "{client_id}"
client_secret = {{ file = "{dir}/client_secret" }}
refresh_token = {{ file = "{dir}/refresh_token" }}
"#,
        data = dir.join("data").display(),
        dir = dir.display(),
        client_id = mailsync_emulator::DEFAULT_CLIENT_ID,
    );
    let config_path = dir.join("config.toml");
    write_private(&config_path, &config_text)?;
    let cfg = config::load(&config_path).map_err(|e| DemoError::Config(e.to_string()))?;

    println!("mailsync demo");
    println!(
        "  emulator   {base}  (simulated Gmail and Calendar: {account}, {} messages, 2 calendars, seed {})",
        args.messages, args.seed
    );
    println!("  data dir   {}", dir.display());
    println!(
        "  quota      2026 profile: 6,000 units/user/min, messages.get = 20 units; scaled x{scale} \
         so the full sync takes about {} s",
        args.full_sync_secs
    );
    println!(
        "  control    mailsync --config {} ctl status",
        config_path.display()
    );
    println!("Ctrl-C stops the daemon and the emulator.\n");

    let cancel = CancellationToken::new();
    let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Arc<DaemonCore>>();
    let opts = RunOptions {
        config_path: config_path.clone(),
        gmail: crate::gmail_port::builder(),
        on_ready: Some(Box::new(move |core| {
            let _ = ready_tx.send(core);
        })),
        cancel: cancel.clone(),
    };
    let daemon_task = tokio::spawn(daemon::run(cfg, opts));
    let core = match ready_rx.await {
        Ok(c) => c,
        Err(_) => {
            let res = daemon_task.await;
            emulator.shutdown().await;
            return Err(DemoError::Daemon(format!(
                "the daemon did not start: {res:?}"
            )));
        }
    };
    if args.stop_after_secs > 0 {
        let c = cancel.clone();
        let secs = args.stop_after_secs;
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(secs)).await;
            c.cancel();
        });
    }
    let watcher = tokio::spawn(watch(core, args.mutation_rate, cancel.clone()));
    let result = daemon_task.await;
    cancel.cancel();
    let _ = watcher.await;
    let counters = emulator.counters();
    emulator.shutdown().await;
    println!(
        "\nStopped. Emulator counters: {}",
        serde_json::to_string(&counters).unwrap_or_default()
    );
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(DemoError::Daemon(e.to_string())),
        Err(e) => Err(DemoError::Daemon(e.to_string())),
    }
}

/// Prints progress until the full sync is done, then every change event as it arrives.
async fn watch(core: Arc<DaemonCore>, mutation_rate: f64, cancel: CancellationToken) {
    let started = Instant::now();
    let mut synced = false;
    let feed = core.store().feed();
    let mut last_seq = 0u64;
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            _ = cancel.cancelled() => return,
            _ = tick.tick() => {}
        }
        let Ok(status) = core.status().await else {
            continue;
        };
        let Some(acct) = status.accounts.iter().find(|a| a.kind == "gmail") else {
            continue;
        };
        if !synced {
            if status.accounts.iter().all(|a| a.phase == "caught_up") {
                synced = true;
                last_seq = feed.last_seq().unwrap_or(0);
                println!(
                    "[{:>4} s] caught_up. Full sync done; the mailbox keeps changing ({mutation_rate} mutations/s). Changes as they arrive:",
                    started.elapsed().as_secs()
                );
                continue;
            }
            let p = acct.progress.clone().unwrap_or_default();
            let total = p.total.map(|t| format!("/{t}")).unwrap_or_default();
            let eta = p
                .eta_seconds
                .map(|e| format!(", ETA {e} s"))
                .unwrap_or_default();
            println!(
                "[{:>4} s] {:<10} {}{} ({:.0} msg/s{}){}",
                started.elapsed().as_secs(),
                acct.phase,
                p.done,
                total,
                p.per_second,
                eta,
                acct.last_error
                    .as_ref()
                    .map(|e| format!("  last error: {e}"))
                    .unwrap_or_default()
            );
            continue;
        }
        let Ok(events) = feed.read_after(last_seq, 200) else {
            continue;
        };
        for ev in events {
            last_seq = ev.seq;
            let text = match decode::<Change>(&ev.payload) {
                Ok(Change::MessageAdded {
                    id,
                    headers,
                    label_ids,
                    ..
                }) => format!(
                    "{id}  {}  from {}  [{}]",
                    headers.subject.unwrap_or_default(),
                    headers.from.unwrap_or_default(),
                    label_ids
                        .iter()
                        .map(|l| l.0.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Ok(Change::MessageDeleted { id }) => format!("{id}"),
                Ok(Change::MessageLabelsChanged {
                    id, added, removed, ..
                }) => format!(
                    "{id}  +[{}] -[{}]",
                    added
                        .iter()
                        .map(|l| l.0.as_str())
                        .collect::<Vec<_>>()
                        .join(","),
                    removed
                        .iter()
                        .map(|l| l.0.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                ),
                Ok(Change::CalendarAdded { calendar }) => {
                    format!("{}  {}", calendar.id, calendar.summary)
                }
                Ok(Change::CalendarRemoved { calendar_id }) => calendar_id,
                Ok(Change::EventCreated { calendar_id, event })
                | Ok(Change::EventUpdated { calendar_id, event }) => format!(
                    "{}  {}  in {calendar_id}",
                    event.id,
                    event.summary.unwrap_or_default()
                ),
                Ok(Change::EventDeleted {
                    calendar_id,
                    event_id,
                    ..
                }) => format!("{event_id}  in {calendar_id}"),
                Ok(other) => format!("{other:?}"),
                Err(e) => format!("(undecodable: {e})"),
            };
            println!("#{:<6} {:<24} {text}", ev.seq, ev.kind);
        }
    }
}
