//! Sinks: hand feed events to consumers (Maildir, webhooks).
