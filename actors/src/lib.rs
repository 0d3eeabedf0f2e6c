//! mailsync-actors: the supervision tree and the durable state it works from.
//!
//! ```text
//! RootSupervisor                      one per daemon; restarts accounts, fans out control RPCs
//!  └─ AccountActor (one per account)  owns the cursor; spawns and restarts its children
//!      ├─ HistorySync                 partial sync: history.list pages → jobs for Ingest
//!      ├─ Backfill                    full sync / gap recovery: messages.list pages → jobs
//!      └─ Ingest                      drains its durable mailbox: batched get → mirror + feed
//! ```
//!
//! Every actor's real inbox is a sled-backed `DurableMailbox`; ractor messages are wake-ups.

pub mod account;
pub mod account_record;
pub mod backfill;
pub mod backoff;
pub mod calendar;
pub mod calendar_model;
pub mod codec;
pub mod error;
pub mod feed;
pub mod gmail;
pub mod history_sync;
pub mod imap;
pub mod ingest;
pub mod jobs;
pub mod mailbox;
pub mod mirror;
mod mirror_codec;
pub mod model;
pub mod ports;
pub mod quota;
pub mod report;
pub mod root;
pub mod source;
pub mod spec;
pub mod status;
pub mod store;
