//! Google API adapters: OAuth, the Gmail REST client with batching and quota pacing.
//!
//! - [`gmail`]: [`GmailClient`], the `GmailApi` port over REST (pacing, auth, retries).
//! - [`auth`]: [`TokenSource`], access tokens from a refresh token; the only holder of secrets.
//! - [`token_endpoint`]: the code exchange and refresh grant through the `oauth2` crate.
//! - [`oauth_flow`]: the desktop loopback flow with PKCE that obtains a refresh token.
//! - [`batch`]: the pure `multipart/mixed` batch codec.
//! - [`concurrency`]: the parts-per-batch limit learnt from concurrency refusals.
//! - [`rest`]: the request loop both REST clients share (pacing, 401 refresh, retries).
//! - [`error`]: HTTP status + Google error body → `ApiError`.
//! - [`wire`]: the client's own serde shapes of Google's JSON and their mapping to the model.
//! - [`calendar`]: [`CalendarClient`], Calendar v3 (calendar list, events, channels) over REST;
//!   [`calendar_wire`]: its JSON shapes mapped onto `mailsync_actors::calendar_model`.
//!
//! The pacing itself ([`mailsync_actors::quota::QuotaGate`]) lives in the actors crate so the
//! account actor can hold and report it.

pub mod auth;
pub mod batch;
pub mod calendar;
#[cfg(test)]
pub(crate) mod calendar_tests;
pub mod calendar_wire;
pub mod concurrency;
pub mod error;
mod form;
pub mod gmail;
pub mod oauth_flow;
pub mod rest;
pub mod token_endpoint;
pub mod wire;

pub use auth::{BearerToken, GOOGLE_TOKEN_URL, OAuthCredentials, TokenSource};
pub use calendar::{CalendarClient, CalendarClientConfig};
pub use gmail::{GOOGLE_API_BASE, GmailClient, GmailClientConfig};
pub use oauth_flow::{LoopbackFlow, LoopbackFlowError, load_refresh_token, store_refresh_token};
