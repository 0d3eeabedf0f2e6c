//! `ctl webhook dead NAME` and `ctl webhook replay NAME [ID|--all]`: the dead-lettered
//! batches of one webhook, listed and sent again.
//!
//! A replay posts the stored body once per batch, oldest first, signed with a fresh timestamp,
//! through the same [`Poster`] the sink uses. A 2xx removes the dead letter (flushed) before
//! the next batch is tried; the first failure stops the replay and leaves that batch and the
//! rest dead, with the reason in the reply (the receiver is still down: try again later).
//! Replayed events may arrive after newer ones; receivers dedupe and order by `key`/`seq`.

use mailsync_actors::store::Store;
use mailsync_actors::store::{Space, StoreError};
use serde::Serialize;

use super::webhook::{DeadLetter, Poster, dead_letters};
use super::{SinkError, deadletter_key, webhook_sink_name};
use crate::config::WebhookConfig;

/// One dead-lettered batch as `ctl webhook dead` lists it (the body is left out).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct DeadBatch {
    /// Its id: the batch's first feed seq (`replay NAME ID` takes it).
    pub id: u64,
    /// The batch's last feed seq.
    pub last_seq: u64,
    /// Events in it.
    pub events: u64,
    /// Attempts made before it was dead-lettered.
    pub attempts: u32,
    /// The last delivery error (secret-free).
    pub last_error: String,
    /// When it was dead-lettered, ms since the epoch.
    pub at_ms: u64,
}

/// What a replay did.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ReplayOutcome {
    /// The webhook's name.
    pub webhook: String,
    /// Batches delivered (and removed from the dead letters).
    pub replayed: usize,
    /// The batch that failed, which stopped the replay.
    pub failed: Option<u64>,
    /// Why it failed (secret- and URL-free).
    pub error: Option<String>,
    /// Dead letters left for this webhook.
    pub remaining: usize,
}

/// Why a dead-letter command failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// No `[[webhooks]]` entry has this name.
    #[error("no webhook named {0:?} is configured")]
    UnknownWebhook(String),
    /// `replay NAME ID` named no dead letter of this webhook.
    #[error("webhook {webhook:?} has no dead-lettered batch {id}")]
    NoSuchDeadLetter {
        /// The webhook's name.
        webhook: String,
        /// The id asked for.
        id: u64,
    },
    /// The store or the secret failed.
    #[error(transparent)]
    Sink(#[from] SinkError),
}

impl From<StoreError> for ReplayError {
    fn from(e: StoreError) -> Self {
        ReplayError::Sink(SinkError::Store(e))
    }
}

fn webhook<'a>(hooks: &'a [WebhookConfig], name: &str) -> Result<&'a WebhookConfig, ReplayError> {
    hooks
        .iter()
        .find(|w| w.name == name)
        .ok_or_else(|| ReplayError::UnknownWebhook(name.to_string()))
}

/// The dead-lettered batches of the webhook `name`, oldest first.
pub fn list(
    store: &Store,
    hooks: &[WebhookConfig],
    name: &str,
) -> Result<Vec<DeadBatch>, ReplayError> {
    let hook = webhook(hooks, name)?;
    Ok(dead_letters(store, &webhook_sink_name(&hook.name))?
        .into_iter()
        .map(|d| DeadBatch {
            id: d.first_seq,
            last_seq: d.last_seq,
            events: d.events,
            attempts: d.attempts,
            last_error: d.last_error,
            at_ms: d.at_ms,
        })
        .collect())
}

/// Sends the dead letter `id` (or, with `None`, every one) of the webhook `name` again.
pub async fn replay(
    store: &Store,
    hooks: &[WebhookConfig],
    name: &str,
    id: Option<u64>,
) -> Result<ReplayOutcome, ReplayError> {
    let hook = webhook(hooks, name)?;
    let sink = webhook_sink_name(&hook.name);
    let all = dead_letters(store, &sink)?;
    let chosen: Vec<DeadLetter> = match id {
        Some(id) => {
            let one: Vec<DeadLetter> = all.iter().filter(|d| d.first_seq == id).cloned().collect();
            if one.is_empty() {
                return Err(ReplayError::NoSuchDeadLetter {
                    webhook: hook.name.clone(),
                    id,
                });
            }
            one
        }
        None => all.clone(),
    };
    let mut poster = Poster::new(hook)?;
    let secret = poster.secret().await?;
    let mut outcome = ReplayOutcome {
        webhook: hook.name.clone(),
        replayed: 0,
        failed: None,
        error: None,
        remaining: all.len(),
    };
    for dl in chosen {
        match poster.post_once(&dl.body, secret.as_ref()).await {
            Ok(()) => {
                store
                    .kv(Space::Sinks)
                    .remove(deadletter_key(&sink, dl.first_seq))
                    .map_err(|source| StoreError::Sled {
                        context: "removing a replayed dead letter",
                        source,
                    })?;
                store.flush()?;
                outcome.replayed += 1;
                outcome.remaining -= 1;
                tracing::info!(sink = %sink, seq = dl.first_seq, last_seq = dl.last_seq, "Dead-lettered webhook batch replayed.");
            }
            Err(e) => {
                tracing::warn!(sink = %sink, seq = dl.first_seq, error = %e, "Replaying a dead-lettered webhook batch failed; it stays dead.");
                outcome.failed = Some(dl.first_seq);
                outcome.error = Some(e);
                break;
            }
        }
    }
    Ok(outcome)
}
