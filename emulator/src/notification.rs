//! What a notification is: the queued [`Outbound`] item (Gmail Pub/Sub message or Calendar
//! web-hook [`CalendarPing`]), the push JWT's claims and mint request, and the embedded **test**
//! RSA [`SigningKey`] with its JWKS. Plain data: the sending lives in [`crate::pubsub`].

use jsonwebtoken::EncodingKey;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::EmulatorError;

/// PEM of the emulator's RSA signing key. THIS IS A TEST KEY, published in the repository; it
/// protects nothing and must never be trusted outside tests.
pub const TEST_SIGNING_KEY_PEM: &str = include_str!("../keys/test-signing-key.pem");
/// JWKS modulus (base64url) of [`TEST_SIGNING_KEY_PEM`], computed once with openssl; a test
/// checks that tokens signed with the PEM verify against it.
pub const TEST_KEY_N: &str = include_str!("../keys/n.txt");
pub const TEST_KEY_E: &str = "AQAB";
pub const TEST_KEY_KID: &str = "mailsync-emulator-test-key-1";

/// The signing key plus its public JWK.
#[derive(Clone)]
pub struct SigningKey {
    pub encoding: EncodingKey,
    pub n: String,
    pub e: String,
    pub kid: String,
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SigningKey")
            .field("kid", &self.kid)
            .finish()
    }
}

impl SigningKey {
    pub fn embedded() -> Result<Self, EmulatorError> {
        let encoding = EncodingKey::from_rsa_pem(TEST_SIGNING_KEY_PEM.as_bytes())
            .map_err(|e| EmulatorError::Key(e.to_string()))?;
        Ok(Self {
            encoding,
            n: TEST_KEY_N.trim().to_string(),
            e: TEST_KEY_E.into(),
            kid: TEST_KEY_KID.into(),
        })
    }

    /// The JWKS document served at `/oauth2/v3/certs`.
    pub fn jwks(&self) -> Value {
        json!({"keys": [{"kty": "RSA", "alg": "RS256", "use": "sig", "kid": self.kid, "n": self.n, "e": self.e}]})
    }
}

/// Claims of a push JWT.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PushClaims {
    pub iss: String,
    pub aud: String,
    pub email: String,
    pub email_verified: bool,
    pub sub: String,
    pub azp: String,
    pub iat: i64,
    pub exp: i64,
}

/// Overrides for minting a push token (control API), to test a verifier's rejections.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct MintRequest {
    pub aud: Option<String>,
    pub iss: Option<String>,
    pub email: Option<String>,
    pub email_verified: Option<bool>,
    /// Seconds added to "now" for `iat` (negative = in the past).
    pub iat_offset_secs: Option<i64>,
    /// Lifetime in seconds (default 3600); negative gives an already expired token.
    pub lifetime_secs: Option<i64>,
    pub kid: Option<String>,
    /// Corrupt the signature.
    pub tamper_signature: bool,
    /// Also POST a push with this token to the configured (or given) endpoint.
    pub deliver: bool,
    pub endpoint: Option<String>,
    pub email_address: Option<String>,
    pub history_id: Option<String>,
}

/// A notification waiting to be sent.
#[derive(Debug, Clone)]
pub enum Outbound {
    Gmail {
        topic: String,
        email: String,
        history_id: u64,
    },
    Calendar(CalendarPing),
}

#[derive(Debug, Clone)]
pub struct CalendarPing {
    pub address: String,
    pub channel_id: String,
    pub resource_id: String,
    pub resource_uri: String,
    pub token: Option<String>,
    pub expiration_ms: i64,
    pub message_number: u64,
    pub state: &'static str,
}
