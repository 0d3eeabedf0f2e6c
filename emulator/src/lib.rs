//! mailsync-emulator: a strict, seeded, in-memory emulator of Google's Gmail v1, Calendar v3,
//! OAuth 2.0 and Pub/Sub push APIs, served over real HTTP on loopback with axum.
//!
//! This crate owns its wire types (see [`wire`]); it never shares types with the sync client,
//! so a misunderstanding of Google's protocol in the client cannot be mirrored here.
//!
//! Entry points: [`Emulator::start`] (serve on a listener), [`app`] (the axum router for
//! in-process use), [`EmulatorConfig`] (every knob as a plain pub field).

pub mod batch;
pub mod calendar;
pub mod clock;
pub mod config;
pub mod control;
pub mod control_response;
pub mod error;
pub mod faults;
pub mod generator;
pub mod gmail;
pub mod gmail_op;
pub mod http;
pub mod mime;
pub mod mutator;
pub mod notification;
pub mod oauth;
pub mod oauth_store;
pub mod pipeline;
pub mod pubsub;
pub mod query;
pub mod quota;
pub mod quota_strict;
pub mod server;
pub mod state;
pub mod store;
pub mod tokeninfo;
pub mod util;
pub mod wire;

pub use config::{EmulatorConfig, FaultRule, NotificationFaults, QuotaMode, QuotaProfile};
pub use error::EmulatorError;
pub use server::{Emulator, EmulatorHandle, app};
pub use state::{Counters, EmulatorState};
pub use store::{MailboxSnapshot, SnapshotMessage};

/// OAuth client id of the pre-provisioned test client.
pub const DEFAULT_CLIENT_ID: &str = "mailsync-test-client";
/// OAuth client secret of the pre-provisioned test client.
pub const DEFAULT_CLIENT_SECRET: &str = "mailsync-test-secret";
/// Cloud project id owning the pre-provisioned client (Gmail `watch` topics must live in it).
pub const DEFAULT_PROJECT_ID: &str = "mailsync-emulator";
