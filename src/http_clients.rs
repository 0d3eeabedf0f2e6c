//! The HTTP clients the Google ports of every account share: one REST client per request
//! timeout and one token-endpoint client, each built once and handed out as clones (a
//! `reqwest::Client` is a handle to one connection pool). Building one loads the TLS roots and
//! costs milliseconds of CPU; two per account made most of a 1,000-account start-up. Owned by
//! the long-lived Gmail port builder (`gmail_port.rs`), so a reload reuses them.

use mailsync_actors::error::ApiError;
use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// The shared clients.
#[derive(Default)]
pub struct SharedHttp {
    rest: Mutex<HashMap<Duration, reqwest::Client>>,
    token: Mutex<Option<reqwest::Client>>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl SharedHttp {
    /// The REST client for calls with `request_timeout` ([`crate::google::rest::http_client`]).
    pub fn rest(&self, request_timeout: Duration) -> Result<reqwest::Client, ApiError> {
        let mut clients = lock(&self.rest);
        if let Some(c) = clients.get(&request_timeout) {
            return Ok(c.clone());
        }
        let c = crate::google::rest::http_client(request_timeout)?;
        clients.insert(request_timeout, c.clone());
        Ok(c)
    }

    /// The client for token requests ([`crate::google::auth::token_http`]).
    pub fn token(&self) -> Result<reqwest::Client, ApiError> {
        let mut client = lock(&self.token);
        if let Some(c) = client.as_ref() {
            return Ok(c.clone());
        }
        let c = crate::google::auth::token_http()?;
        *client = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_client_per_timeout_and_one_for_tokens() {
        let http = SharedHttp::default();
        http.rest(Duration::from_secs(60)).expect("rest");
        http.rest(Duration::from_secs(60)).expect("rest again");
        http.rest(Duration::from_secs(5)).expect("another timeout");
        http.token().expect("token");
        http.token().expect("token again");
        assert_eq!(lock(&http.rest).len(), 2);
        assert!(lock(&http.token).is_some());
    }
}
