//! mailsync: a sync daemon that mirrors Gmail, Google Calendar and IMAP mailboxes and hands
//! every change to its consumers.
//!
//! Reading order: `config` (what to sync) → `daemon` (assembly, signals, shutdown) →
//! `accounts` (config → actor specs) → `admin` and `control` (the admin socket) → `google`
//! and `gmail_port` (the Gmail client behind the `GmailApi` port) → `providers` (the test
//! provider) → `sink` (Maildir, webhooks). The actor tree lives in the `mailsync-actors` crate;
//! the Google API emulator in `mailsync-emulator`.

pub mod accounts;
pub mod admin;
pub mod calendar_port;
pub mod calendar_status;
pub mod cli;
pub mod config;
pub mod control;
pub mod control_thread;
pub mod daemon;
pub mod daemon_core;
pub mod events;
pub mod gmail_port;
pub mod gmail_watch;
pub mod google;
pub mod http_clients;
pub mod imap;
pub mod metrics;
pub mod providers;
pub mod push;
pub mod push_health;
pub mod repair;
pub mod secret;
pub mod service;
pub mod signals;
pub mod sink;
pub mod status_cache;
pub mod status_page;
pub mod telemetry;
pub mod token_sources;
