//! The single integration-test binary (one link on CI's two cores). Every test starts the real
//! `mailsync` binary with its own temp config and data dir and talks to it over the real Unix
//! socket, with real signals.

mod common;

mod auth;
mod bad_input;
mod calendar_crash_push;
mod calendar_reload_push;
mod calendar_sync;
mod config_secrets;
mod control_socket;
mod crash_recovery;
mod ctl_newcomer;
mod disk_full;
mod event_schema;
mod feed_socket;
mod gmail_corners;
mod gmail_crash;
mod gmail_maildir;
mod gmail_outage;
mod gmail_reconnect;
mod gmail_scale;
mod gmail_strict_quota;
mod gmail_sync;
mod imap_crash;
mod imap_deep_sync;
mod imap_faults;
mod imap_folders;
mod imap_many;
mod imap_sync;
mod imap_xoauth2;
mod migration_fixture;
mod push;
mod service_metrics;
mod service_notify;
mod service_units;
mod signals;
mod sinks;
mod slow_credentials;
mod socket_limits;
mod status_page;
mod store_damage;
mod store_recovery;
mod supervision;
mod watch_in_tree;
mod webhook_names;
