//! Verification of Pub/Sub push OIDC tokens (reference gmail-api.md §6.5): RS256 against the
//! JWKS (Google's certs by default; parsed and searched by kid with `jsonwebtoken`'s JWK
//! support), `iss` accounts.google.com (with or without `https://`),
//! `aud` = the configured audience, `email` = the configured push service account with
//! `email_verified`, `exp` not passed (60 s leeway). Owns the JWKS cache: keys are kept for the
//! document's `Cache-Control: max-age` (1 h without it), refetched on an unknown `kid`, and
//! refetched at most once per `MIN_REFRESH` so a flood of forged kids cannot hammer Google.
//!
//! Tokens are never logged; errors name the failed check only.

use crate::config::PushJwt;
use jsonwebtoken::jwk::{AlgorithmParameters, Jwk, JwkSet, KeyAlgorithm};
use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;
use std::time::Duration;
use tokio::sync::Mutex;
use tokio::time::Instant;

/// Clock skew allowed on `exp` (and `iat`/`nbf`).
pub const LEEWAY_SECS: u64 = 60;
/// The JWKS is refetched at most this often (unknown kids, expired cache).
pub const MIN_REFRESH: Duration = Duration::from_secs(30);
/// Cache lifetime of a JWKS without `Cache-Control: max-age`.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(3600);
/// Issuers Google's ID tokens carry.
pub const ISSUERS: [&str; 2] = ["https://accounts.google.com", "accounts.google.com"];

/// Why a push token was refused. `status` maps it to 401 (no usable credentials) or 403
/// (valid credentials for someone else), or 503 for our own trouble fetching keys.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum AuthError {
    /// No `Authorization` header.
    #[error("no Authorization header")]
    MissingHeader,
    /// The header is not `Bearer <token>`.
    #[error("Authorization is not a Bearer token")]
    NotBearer,
    /// Not a JWT, or not RS256, or without a kid.
    #[error("malformed token: {0}")]
    Malformed(String),
    /// No key with this kid, even after refreshing the JWKS.
    #[error("unknown signing key id")]
    UnknownKid,
    /// The signature does not verify.
    #[error("bad signature")]
    BadSignature,
    /// `exp` has passed (beyond the leeway).
    #[error("token expired")]
    Expired,
    /// `aud` is not the configured audience.
    #[error("wrong audience")]
    WrongAudience,
    /// `iss` is not accounts.google.com.
    #[error("wrong issuer")]
    WrongIssuer,
    /// `email` is not the configured push service account.
    #[error("wrong email (not the configured push service account)")]
    WrongEmail,
    /// `email_verified` is not true.
    #[error("email not verified")]
    EmailNotVerified,
    /// A required claim is missing or mistyped.
    #[error("invalid claims: {0}")]
    Claims(String),
    /// The shared verification token is missing or wrong.
    #[error("missing or wrong verification token")]
    BadVerificationToken,
    /// The JWKS could not be fetched or parsed (our problem: the push is retried).
    #[error("cannot fetch signing keys: {0}")]
    Jwks(String),
}

impl AuthError {
    /// The HTTP status to answer with.
    pub fn status(&self) -> u16 {
        match self {
            AuthError::WrongAudience
            | AuthError::WrongIssuer
            | AuthError::WrongEmail
            | AuthError::EmailNotVerified => 403,
            AuthError::Jwks(_) => 503,
            _ => 401,
        }
    }
}

/// The claims we check (others are ignored).
#[derive(Debug, Deserialize)]
struct Claims {
    #[serde(default)]
    email: Option<String>,
    #[serde(default)]
    email_verified: Option<serde_json::Value>,
}

#[derive(Default)]
struct Cache {
    keys: JwkSet,
    fetched_at: Option<Instant>,
    expires_at: Option<Instant>,
    fetches: u64,
}

/// Verifies push tokens for one `[push]` configuration.
pub struct JwtVerifier {
    cfg: PushJwt,
    http: reqwest::Client,
    cache: Mutex<Cache>,
    validation: Validation,
}

impl std::fmt::Debug for JwtVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("JwtVerifier")
            .field("audience", &self.cfg.audience)
            .field("jwks_url", &self.cfg.jwks_url)
            .finish_non_exhaustive()
    }
}

impl JwtVerifier {
    /// A verifier with an empty key cache (the first push fetches the JWKS).
    pub fn new(cfg: PushJwt) -> Result<Self, String> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| format!("building the HTTP client: {e}"))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.set_audience(&[cfg.audience.as_str()]);
        validation.set_issuer(&ISSUERS);
        validation.set_required_spec_claims(&["exp", "iss", "aud"]);
        validation.leeway = LEEWAY_SECS;
        validation.validate_exp = true;
        Ok(Self {
            cfg,
            http,
            cache: Mutex::new(Cache::default()),
            validation,
        })
    }

    /// How many times the JWKS was fetched (tests check the rate limit).
    pub async fn fetches(&self) -> u64 {
        self.cache.lock().await.fetches
    }

    /// Checks an `Authorization` header value. `Ok` carries nothing: the token's only job is
    /// to prove the push came from our subscription.
    pub async fn verify_header(&self, header: Option<&str>) -> Result<(), AuthError> {
        let header = header.ok_or(AuthError::MissingHeader)?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .map(str::trim)
            .filter(|t| !t.is_empty())
            .ok_or(AuthError::NotBearer)?;
        self.verify(token).await
    }

    /// Checks a raw JWT.
    pub async fn verify(&self, token: &str) -> Result<(), AuthError> {
        let header =
            jsonwebtoken::decode_header(token).map_err(|e| AuthError::Malformed(e.to_string()))?;
        if header.alg != Algorithm::RS256 {
            return Err(AuthError::Malformed(format!(
                "algorithm {:?}, expected RS256",
                header.alg
            )));
        }
        let kid = header
            .kid
            .ok_or_else(|| AuthError::Malformed("no kid in the header".into()))?;
        let key = self.key(&kid).await?;
        let data = jsonwebtoken::decode::<Claims>(token, &key, &self.validation).map_err(|e| {
            match e.kind() {
                ErrorKind::InvalidSignature => AuthError::BadSignature,
                ErrorKind::ExpiredSignature => AuthError::Expired,
                ErrorKind::InvalidAudience => AuthError::WrongAudience,
                ErrorKind::InvalidIssuer => AuthError::WrongIssuer,
                ErrorKind::MissingRequiredClaim(c) => AuthError::Claims(format!("missing {c}")),
                ErrorKind::ImmatureSignature => AuthError::Claims("not valid yet".into()),
                other => AuthError::Malformed(format!("{other:?}")),
            }
        })?;
        let claims = data.claims;
        if claims.email.as_deref() != Some(self.cfg.service_account.as_str()) {
            return Err(AuthError::WrongEmail);
        }
        // Google sends a JSON boolean; some libraries emit the string "true".
        let verified = match &claims.email_verified {
            Some(serde_json::Value::Bool(b)) => *b,
            Some(serde_json::Value::String(s)) => s == "true",
            _ => false,
        };
        if !verified {
            return Err(AuthError::EmailNotVerified);
        }
        Ok(())
    }

    /// The key for `kid`: from the cache, else after a (rate-limited) refetch.
    async fn key(&self, kid: &str) -> Result<DecodingKey, AuthError> {
        let mut cache = self.cache.lock().await;
        let now = Instant::now();
        let fresh = cache.expires_at.is_some_and(|t| now < t);
        if fresh && let Some(k) = signing_key(&cache.keys, kid) {
            return Ok(k);
        }
        let may_fetch = cache
            .fetched_at
            .is_none_or(|t| now.duration_since(t) >= MIN_REFRESH);
        if may_fetch {
            cache.fetched_at = Some(now);
            cache.fetches += 1;
            match self.fetch().await {
                Ok((keys, max_age)) => {
                    tracing::debug!(
                        keys = keys.keys.len(),
                        max_age_s = max_age.as_secs(),
                        "Fetched push signing keys."
                    );
                    cache.keys = keys;
                    cache.expires_at = Some(now + max_age);
                }
                Err(e) => {
                    // Keep serving the old keys: a Google hiccup should not reject pushes
                    // signed with keys we already trust.
                    if let Some(k) = signing_key(&cache.keys, kid) {
                        tracing::warn!(error = %e, "Cannot refresh push signing keys; using the cached ones.");
                        return Ok(k);
                    }
                    return Err(AuthError::Jwks(e));
                }
            }
        }
        signing_key(&cache.keys, kid).ok_or(AuthError::UnknownKid)
    }

    async fn fetch(&self) -> Result<(JwkSet, Duration), String> {
        let resp = self
            .http
            .get(&self.cfg.jwks_url)
            .send()
            .await
            .map_err(|e| format!("GET {}: {e}", self.cfg.jwks_url))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(format!("GET {}: HTTP {status}", self.cfg.jwks_url));
        }
        let max_age = resp
            .headers()
            .get(reqwest::header::CACHE_CONTROL)
            .and_then(|v| v.to_str().ok())
            .and_then(max_age)
            .unwrap_or(DEFAULT_MAX_AGE);
        let body = resp
            .bytes()
            .await
            .map_err(|e| format!("reading {}: {e}", self.cfg.jwks_url))?;
        let keys = parse_jwks(&body)?;
        Ok((keys, max_age))
    }
}

/// `max-age=N` from a Cache-Control value.
fn max_age(value: &str) -> Option<Duration> {
    value.split(',').find_map(|d| {
        let d = d.trim();
        let v = d.strip_prefix("max-age=")?;
        v.trim().parse::<u64>().ok().map(Duration::from_secs)
    })
}

/// Whether a JWK can verify our tokens: an RSA key for RS256 (or without `alg`).
fn is_rs256(jwk: &Jwk) -> bool {
    matches!(jwk.algorithm, AlgorithmParameters::RSA(_))
        && jwk
            .common
            .key_algorithm
            .is_none_or(|a| a == KeyAlgorithm::RS256)
}

/// The RS256 key with `kid` from the set (`JwkSet::find` + `DecodingKey::from_jwk`).
fn signing_key(set: &JwkSet, kid: &str) -> Option<DecodingKey> {
    let jwk = set.find(kid).filter(|k| is_rs256(k))?;
    match DecodingKey::from_jwk(jwk) {
        Ok(key) => Some(key),
        Err(err) => {
            tracing::warn!(kid = %kid, error = %err, "Skipping an unusable JWKS key.");
            None
        }
    }
}

/// A JWKS document; it must hold at least one RS256 key with a kid.
fn parse_jwks(body: &[u8]) -> Result<JwkSet, String> {
    let set: JwkSet = serde_json::from_slice(body).map_err(|e| format!("invalid JWKS: {e}"))?;
    let usable = set
        .keys
        .iter()
        .any(|k| is_rs256(k) && k.common.key_id.is_some());
    if !usable {
        return Err("the JWKS holds no RS256 key".into());
    }
    Ok(set)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn max_age_is_read_from_cache_control() {
        assert_eq!(
            max_age("public, max-age=21231, must-revalidate"),
            Some(Duration::from_secs(21231))
        );
        assert_eq!(max_age("no-cache"), None);
    }

    #[test]
    fn jwks_without_rsa_keys_is_an_error() {
        assert!(parse_jwks(br#"{"keys":[{"kty":"EC","kid":"a","crv":"P-256"}]}"#).is_err());
        assert!(parse_jwks(b"not json").is_err());
        let ec_only = br#"{"keys":[{"kty":"EC","kid":"a","crv":"P-256","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;
        assert!(
            parse_jwks(ec_only).is_err(),
            "an EC key cannot verify RS256"
        );
    }

    #[test]
    fn keys_are_selected_by_kid_and_algorithm() {
        let set = parse_jwks(
            br#"{"keys":[
              {"kty":"RSA","kid":"one","alg":"RS256","use":"sig","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"},
              {"kty":"RSA","kid":"two","alg":"RS512","n":"sXchDaQebHnPiGvyDOAT4saGEUetSyo9MKLOoWFsueri23bOdgWp4Dy1WlUzewbgBHod5pcM9H95GQRV3JDXboIRROSBigeC5yjU1hGzHHyXss8UDprecbAYxknTcQkhslANGRUZmdTOQ5qTRsLAt6BTYuyvVRdhS8exSZEy_c4gs_7svlJJQ4H9_NxsiIoLwAEk7-Q3UXERGYw_75IDrGA84-lA_-Ct4eTlXHBIY2EaV7t7LjJaynVJCpkv4LKjTTAumiGUIuQhrNhZLuF_RJLqHpM2kgWFLU7-VTdL1VbC2tejvcI2BlMkEpk1BzBZI0KQB0GaDWFLN-aEAw3vRw","e":"AQAB"}
            ]}"#,
        )
        .expect("a JWKS with an RS256 key");
        assert!(signing_key(&set, "one").is_some());
        assert!(
            signing_key(&set, "two").is_none(),
            "RS512 keys are not ours"
        );
        assert!(signing_key(&set, "three").is_none());
    }

    #[test]
    fn statuses_split_credentials_from_identity() {
        assert_eq!(AuthError::MissingHeader.status(), 401);
        assert_eq!(AuthError::BadSignature.status(), 401);
        assert_eq!(AuthError::WrongAudience.status(), 403);
        assert_eq!(AuthError::EmailNotVerified.status(), 403);
        assert_eq!(AuthError::Jwks("x".into()).status(), 503);
    }
}
