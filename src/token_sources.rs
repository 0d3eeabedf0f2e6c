//! One `TokenSource` per Google credential, shared by every client that uses it: a Gmail
//! account with `calendar = true` and its `<id>-calendar` twin refresh their access token once
//! for both halves, and an IMAP account with `auth = "xoauth2"` on the same credential uses it
//! too. Owned by the long-lived port builder (no process globals), so a reload
//! keeps the tokens already obtained. Keyed by a SHA-256 digest of the token endpoint, client
//! id and resolved secrets: the secrets themselves are never a key and never logged.

use crate::config::{AccountConfig, AccountSettings, GoogleAuth};
use crate::google::auth::{CredentialHooks, OAuthCredentials, TokenSource};
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The shared token sources, by credential digest.
#[derive(Default)]
pub struct TokenSources {
    by_credential: Mutex<HashMap<[u8; 32], Arc<TokenSource>>>,
}

/// The Google OAuth settings of an account (Gmail, Calendar, or IMAP with XOAUTH2), if it has
/// any.
pub fn google_auth(account: &AccountConfig) -> Option<&GoogleAuth> {
    match &account.settings {
        AccountSettings::Gmail(g) => Some(&g.auth),
        AccountSettings::Calendar(c) => Some(&c.auth),
        AccountSettings::Imap(m) => match &m.credential {
            crate::config::ImapCredential::OAuth(auth) => Some(auth),
            crate::config::ImapCredential::Password(_) => None,
        },
        AccountSettings::Test(_) => None,
    }
}

impl TokenSources {
    /// The token source of `account`'s credential: the one already built for the same
    /// credential, or a new one (credential references are resolved here).
    /// A new one talks to the token endpoint through `http`'s shared client.
    pub fn for_account(
        &self,
        account: &AccountConfig,
        http: &crate::http_clients::SharedHttp,
    ) -> Result<Arc<TokenSource>, String> {
        let auth = google_auth(account)
            .ok_or_else(|| format!("account {} has no Google credential", account.id))?;
        let credentials = OAuthCredentials {
            client_id: auth.client_id.clone(),
            client_secret: auth.client_secret.resolve().map_err(|e| e.to_string())?,
            refresh_token: auth.refresh_token.resolve().map_err(|e| e.to_string())?,
        };
        let mut h = Sha256::new();
        for part in [
            auth.token_url.as_str(),
            credentials.client_id.as_str(),
            credentials.client_secret.expose().as_str(),
            credentials.refresh_token.expose().as_str(),
        ] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
        let key: [u8; 32] = h.finalize().into();
        let mut map = self
            .by_credential
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(t) = map.get(&key) {
            return Ok(t.clone());
        }
        let tokens = Arc::new(TokenSource::with_http(
            account.id.clone(),
            credentials,
            auth.token_url.clone(),
            http.token().map_err(|e| e.to_string())?,
        ));
        map.insert(key, tokens.clone());
        Ok(tokens)
    }
}

/// How an account's token source re-reads its credentials (`ctl resume`, `ctl reload`) and
/// keeps a refresh token the endpoint rotated (written back when the reference is a file).
pub fn credential_hooks(auth: &crate::config::GoogleAuth) -> CredentialHooks {
    let secret = auth.client_secret.clone();
    let refresh = auth.refresh_token.clone();
    let persist: Option<Arc<crate::google::auth::Persist>> = match &auth.refresh_token {
        crate::config::CredentialRef::File(path) => {
            let path = path.clone();
            Some(Arc::new(move |token: &crate::secret::Secret<String>| {
                crate::google::store_refresh_token(&path, token)
                    .map_err(|e| format!("cannot write {}: {e}", path.display()))
            }))
        }
        _ => None,
    };
    CredentialHooks {
        resolve: Arc::new(move || {
            let s = secret.resolve().map_err(|e| e.to_string())?;
            let r = refresh.resolve().map_err(|e| e.to_string())?;
            Ok((s, r))
        }),
        persist,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::accounts::GmailPortBuilder;

    const CONFIG: &str = r#"
[[accounts]]
id = "work"
kind = "gmail"
email = "me@example.com"
client_id = "cid"
client_secret = { value = "s" }
refresh_token = { value = "r1" }
calendar = true

[[accounts]]
id = "cal"
kind = "calendar"
client_id = "cid"
client_secret = { value = "s" }
refresh_token = { value = "r2" }
"#;

    #[test]
    fn a_gmail_account_and_its_calendar_twin_share_one_token_source() {
        let config = crate::config::load_str_with_env(
            CONFIG,
            "/t/config.toml",
            Vec::<(String, String)>::new(),
        )
        .expect("config");
        let ids: Vec<&str> = config.accounts.iter().map(|a| a.id.as_str()).collect();
        assert_eq!(ids, ["work", "work-calendar", "cal"]);
        let builder = crate::gmail_port::RestGmailBuilder::default();
        let gmail = builder.token_source(&config.accounts[0]).expect("gmail");
        let twin = builder.token_source(&config.accounts[1]).expect("twin");
        let other = builder.token_source(&config.accounts[2]).expect("other");
        assert!(Arc::ptr_eq(&gmail, &twin), "one refresh serves both halves");
        assert!(
            !Arc::ptr_eq(&gmail, &other),
            "another credential, another source"
        );
        // A rebuild (reload) keeps the tokens already obtained.
        let again = builder.token_source(&config.accounts[1]).expect("again");
        assert!(Arc::ptr_eq(&gmail, &again));
    }
}
