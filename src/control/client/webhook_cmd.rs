//! `mailsync ctl webhook dead NAME` and `ctl webhook replay NAME [ID|--all]`: the client side
//! of a webhook's dead letters (the daemon side is `sink/webhook_replay.rs`) — the flags, the
//! request each sends, how long it may take, and the tables they print.

use std::time::Duration;

use serde_json::Value;

use super::{table, text};
use crate::control::protocol::Request;

/// A replay posts every batch once (each POST may take up to 30 s).
pub(super) const REPLAY_TIMEOUT: Duration = Duration::from_secs(600);

/// `mailsync ctl webhook <command>`.
#[derive(Clone, Debug, PartialEq, Eq, clap::Subcommand)]
pub enum WebhookCmd {
    /// List a webhook's dead-lettered batches (id, seqs, events, attempts, last error).
    Dead {
        /// The webhook's `name` in the config.
        name: String,
    },
    /// Send dead-lettered batches again, oldest first (removed once answered 2xx; the first
    /// failure stops the replay and leaves the rest dead).
    Replay {
        /// The webhook's `name` in the config.
        name: String,
        /// The batch id from `ctl webhook dead`.
        #[arg(required_unless_present = "all", conflicts_with = "all")]
        id: Option<u64>,
        /// Replay every dead-lettered batch of the webhook.
        #[arg(long)]
        all: bool,
    },
}

impl WebhookCmd {
    /// The protocol request.
    pub fn to_request(&self) -> Request {
        match self.clone() {
            WebhookCmd::Dead { name } => Request::WebhookDead { name },
            WebhookCmd::Replay { name, id, .. } => Request::WebhookReplay { name, id },
        }
    }

    /// How long to wait for the reply.
    pub(super) fn timeout(&self) -> Option<Duration> {
        matches!(self, WebhookCmd::Replay { .. }).then_some(REPLAY_TIMEOUT)
    }
}

/// The reply as people read it.
pub(super) fn render(data: &Value) -> String {
    if let Some(dead) = data.get("dead").and_then(Value::as_array) {
        if dead.is_empty() {
            return "no dead-lettered batches\n".to_string();
        }
        let rows: Vec<Vec<String>> = dead
            .iter()
            .map(|b| {
                vec![
                    text(b.get("id")),
                    format!("{}..{}", text(b.get("id")), text(b.get("last_seq"))),
                    text(b.get("events")),
                    text(b.get("attempts")),
                    text(b.get("last_error")),
                ]
            })
            .collect();
        return table(&["ID", "SEQS", "EVENTS", "ATTEMPTS", "LAST ERROR"], &rows);
    }
    let mut out = format!(
        "replayed {} batch(es); {} left\n",
        text(data.get("replayed")),
        text(data.get("remaining"))
    );
    if let Some(id) = data.get("failed").filter(|v| !v.is_null()) {
        out.push_str(&format!("batch {id} failed: {}\n", text(data.get("error"))));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn dead_batches_and_replays_render_as_text() {
        let t = render(&json!({"webhook": "w", "dead": [
            {"id": 3, "last_seq": 9, "events": 4, "attempts": 8, "last_error": "HTTP status 500"}
        ]}));
        assert!(t.contains("3..9") && t.contains("HTTP status 500"), "{t}");
        assert_eq!(render(&json!({"dead": []})), "no dead-lettered batches\n");
        let t = render(&json!({"replayed": 1, "remaining": 1, "failed": 7, "error": "x"}));
        assert!(
            t.contains("replayed 1") && t.contains("batch 7 failed: x"),
            "{t}"
        );
    }
}
