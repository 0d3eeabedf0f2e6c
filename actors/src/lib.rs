//! mailsync-actors: the supervision tree and the durable state it works from.
//!
//! ```text
//! RootSupervisor                      one per daemon; restarts accounts, fans out control RPCs
//!  └─ AccountActor (one per account)  owns the cursor; spawns and restarts its children
//!      ├─ HistorySync                 incremental rounds of its SyncSource
//!      ├─ Backfill                    full listing / gap repair steps of its SyncSource
//!      └─ Ingest                      fetch batches of its SyncSource
//! ```
//!
//! The children drive a provider-neutral port, `source::SyncSource`; `gmail::GmailSource` and
//! `calendar::CalendarSource` implement it over their own ports. Children report with
//! `report::ChildReport`. Every actor's real inbox is a sled-backed `DurableMailbox`; ractor
//! messages are wake-ups. Stored values are versioned per type (`codec`).

pub mod account;
pub mod account_record;
#[cfg(test)]
mod account_tests;
pub mod backfill;
pub mod backoff;
pub mod calendar;
pub mod calendar_model;
#[cfg(test)]
mod child_tests;
pub mod codec;
pub mod compression;
pub mod disk_space;
pub mod error;
pub mod feed;
pub mod freshness;
pub mod gmail;
pub mod history_sync;
pub mod imap;
pub mod ingest;
pub mod ingest_pages;
#[cfg(test)]
mod ingest_tests;
pub mod jobs;
pub mod mailbox;
mod mailbox_codec;
pub mod mirror;
#[cfg(test)]
mod mirror_body_ref_tests;
mod mirror_codec;
#[cfg(test)]
mod mirror_idempotency_tests;
pub mod model;
pub mod outage;
pub mod ports;
pub mod push_watch;
pub mod quota;
mod quota_fair;
mod quota_limiter;
mod quota_pacing;
pub mod report;
pub mod root;
#[cfg(test)]
mod root_tests;
pub mod source;
pub mod spec;
pub mod status;
pub mod status_imap;
pub mod store;
pub mod store_backup;
pub mod store_check;
/// The store's open procedure (`store::open`), under its historical name.
pub use store::open as store_open;
pub mod store_rebuild;
#[cfg(test)]
mod test_support;
