//! mailsync: a sync daemon that mirrors Gmail, Google Calendar and IMAP mailboxes and hands
//! every change to its consumers.
//!
//! Reading order: `config` (what to sync) → `daemon` (assembly, signals, shutdown) →
//! `control` (the admin socket) → `google` (the Gmail client behind the `GmailApi` port) →
//! `providers` (other port implementations) → `sink` (Maildir, webhooks). The actor tree lives
//! in the `mailsync-actors` crate; the Google API emulator in `mailsync-emulator`.

pub mod config;
pub mod control;
pub mod google;
pub mod secret;
pub mod sink;
