//! OAuth 2.0 data: scopes, registered clients, refresh/access grants, pending authorization
//! codes and consents ([`OAuthStore`]), and the authenticated caller ([`Principal`]). No HTTP:
//! the endpoints that use it live in [`crate::oauth`].

use std::collections::HashMap;

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use crate::error::ApiError;
use crate::util::hash64;

pub const SCOPE_MAIL: &str = "https://mail.google.com/";
pub const SCOPE_READONLY: &str = "https://www.googleapis.com/auth/gmail.readonly";
pub const SCOPE_MODIFY: &str = "https://www.googleapis.com/auth/gmail.modify";
pub const SCOPE_METADATA: &str = "https://www.googleapis.com/auth/gmail.metadata";
pub const SCOPE_LABELS: &str = "https://www.googleapis.com/auth/gmail.labels";
pub const SCOPE_CALENDAR: &str = "https://www.googleapis.com/auth/calendar";
pub const SCOPE_CALENDAR_RO: &str = "https://www.googleapis.com/auth/calendar.readonly";
pub const SCOPE_CAL_EVENTS: &str = "https://www.googleapis.com/auth/calendar.events";
pub const SCOPE_CAL_EVENTS_RO: &str = "https://www.googleapis.com/auth/calendar.events.readonly";

/// Scopes of pre-provisioned refresh tokens.
pub const DEFAULT_SCOPES: &str =
    "https://mail.google.com/ https://www.googleapis.com/auth/calendar";

pub(crate) const KNOWN_SCOPES: &[&str] = &[
    SCOPE_MAIL,
    SCOPE_READONLY,
    SCOPE_MODIFY,
    SCOPE_METADATA,
    SCOPE_LABELS,
    SCOPE_CALENDAR,
    SCOPE_CALENDAR_RO,
    SCOPE_CAL_EVENTS,
    SCOPE_CAL_EVENTS_RO,
    "openid",
    "email",
    "profile",
    "https://www.googleapis.com/auth/userinfo.email",
    "https://www.googleapis.com/auth/userinfo.profile",
    "https://www.googleapis.com/auth/gmail.send",
    "https://www.googleapis.com/auth/gmail.compose",
    "https://www.googleapis.com/auth/pubsub",
];

#[derive(Debug, Clone)]
pub struct Client {
    pub secret: String,
    pub project: String,
}

#[derive(Debug, Clone)]
pub struct RefreshGrant {
    pub email: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub revoked: bool,
    pub issued_ms: i64,
}

#[derive(Debug, Clone)]
pub struct AccessGrant {
    pub email: String,
    pub client_id: String,
    pub scopes: Vec<String>,
    pub expires_ms: i64,
    pub refresh: Option<String>,
}

#[derive(Debug, Clone)]
pub(crate) struct AuthCode {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) challenge: Option<String>,
    pub(crate) method: String,
    pub(crate) scopes: Vec<String>,
    pub(crate) email: String,
    pub(crate) expires_ms: i64,
}

#[derive(Debug, Clone)]
pub(crate) struct PendingConsent {
    pub(crate) params: HashMap<String, String>,
}

/// The authenticated caller of an API request.
#[derive(Debug, Clone)]
pub struct Principal {
    pub email: String,
    pub client_id: String,
    pub project: String,
    pub scopes: Vec<String>,
}

impl Principal {
    pub fn has_any(&self, scopes: &[&str]) -> bool {
        self.scopes.iter().any(|s| scopes.contains(&s.as_str()))
    }
    /// Google applies gmail.metadata restrictions whenever that scope is granted.
    pub fn metadata_restricted(&self) -> bool {
        self.scopes.iter().any(|s| s == SCOPE_METADATA)
    }
}

#[derive(Debug)]
pub struct OAuthStore {
    pub clients: HashMap<String, Client>,
    pub refresh: HashMap<String, RefreshGrant>,
    pub access: HashMap<String, AccessGrant>,
    pub(crate) codes: HashMap<String, AuthCode>,
    pub(crate) pending: HashMap<String, PendingConsent>,
    pub(crate) rng: ChaCha8Rng,
    pub auto_consent: bool,
}

pub(crate) fn hex_token(rng: &mut ChaCha8Rng, n: usize) -> String {
    let bytes: Vec<u8> = (0..n).map(|_| rng.random::<u8>()).collect();
    hex::encode(bytes)
}

impl OAuthStore {
    pub fn new(seed: u64, auto_consent: bool) -> Self {
        let mut clients = HashMap::new();
        clients.insert(
            crate::DEFAULT_CLIENT_ID.to_string(),
            Client {
                secret: crate::DEFAULT_CLIENT_SECRET.into(),
                project: crate::DEFAULT_PROJECT_ID.into(),
            },
        );
        Self {
            clients,
            refresh: HashMap::new(),
            access: HashMap::new(),
            codes: HashMap::new(),
            pending: HashMap::new(),
            rng: ChaCha8Rng::seed_from_u64(seed ^ 0x0A07_0A07),
            auto_consent,
        }
    }

    /// The pre-provisioned refresh token of an account (deterministic from seed and email).
    pub fn provision(&mut self, seed: u64, email: &str, now_ms: i64) -> String {
        let token = format!(
            "1//emu_{:016x}",
            hash64(&[&seed.to_le_bytes(), email.as_bytes(), b"refresh"])
        );
        self.refresh.entry(token.clone()).or_insert(RefreshGrant {
            email: email.to_string(),
            client_id: crate::DEFAULT_CLIENT_ID.into(),
            scopes: DEFAULT_SCOPES.split(' ').map(String::from).collect(),
            revoked: false,
            issued_ms: now_ms,
        });
        token
    }

    pub fn issue_access(
        &mut self,
        email: &str,
        client_id: &str,
        scopes: &[String],
        ttl_ms: i64,
        now_ms: i64,
        refresh: Option<String>,
    ) -> String {
        let token = format!("ya29.emu_{}", hex_token(&mut self.rng, 24));
        self.access.insert(
            token.clone(),
            AccessGrant {
                email: email.into(),
                client_id: client_id.into(),
                scopes: scopes.to_vec(),
                expires_ms: now_ms + ttl_ms,
                refresh,
            },
        );
        token
    }

    /// Revokes a refresh token (or the grant behind an access token) and its access tokens.
    pub fn revoke(&mut self, token: &str) -> bool {
        let refresh = if self.refresh.contains_key(token) {
            Some(token.to_string())
        } else {
            self.access.get(token).and_then(|a| a.refresh.clone())
        };
        let mut found = false;
        if let Some(r) = &refresh {
            if let Some(g) = self.refresh.get_mut(r) {
                g.revoked = true;
                found = true;
            }
            self.access
                .retain(|_, a| a.refresh.as_deref() != Some(r.as_str()));
        }
        if self.access.remove(token).is_some() {
            found = true;
        }
        found
    }

    /// Revokes every grant of an account.
    pub fn revoke_account(&mut self, email: &str) -> usize {
        let tokens: Vec<String> = self
            .refresh
            .iter()
            .filter(|(_, g)| g.email.eq_ignore_ascii_case(email) && !g.revoked)
            .map(|(t, _)| t.clone())
            .collect();
        for t in &tokens {
            self.revoke(t);
        }
        self.access
            .retain(|_, a| !a.email.eq_ignore_ascii_case(email));
        tokens.len()
    }

    /// Validates a bearer token.
    pub fn authenticate(&self, token: Option<&str>, now_ms: i64) -> Result<Principal, ApiError> {
        let Some(token) = token else {
            return Err(ApiError::unauthenticated_missing());
        };
        let grant = self
            .access
            .get(token)
            .ok_or_else(ApiError::unauthenticated_invalid)?;
        if grant.expires_ms <= now_ms {
            return Err(ApiError::unauthenticated_invalid());
        }
        let project = self
            .clients
            .get(&grant.client_id)
            .map(|c| c.project.clone())
            .unwrap_or_default();
        Ok(Principal {
            email: grant.email.clone(),
            client_id: grant.client_id.clone(),
            project,
            scopes: grant.scopes.clone(),
        })
    }
}
