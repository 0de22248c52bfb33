//! Access tokens: signed JWTs carrying who the caller is, for 15 minutes by default.
//!
//! Verification trusts nothing in the token before the signature checks out: the `kid`
//! picks the key, and the key (never the header) decides the algorithm, so `alg: none`,
//! HMAC tokens keyed with our public key, and algorithm swaps all fail.
//!
//! A token that verified once is remembered (keyed by the SHA-256 of the *whole* token, so
//! a forged payload carrying a real signature never matches) until it expires: a client
//! sending the same token on every request pays for one signature check, not one per
//! request. Revocation is not cached: callers check it every time.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::{Header, Validation};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::keys::{KeyRing, KeySet, KeysUnavailable};
use crate::domain::{Amr, Role};
use crate::expiring::ExpiringMap;

/// The claims of an access token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    /// Issuer.
    pub iss: String,
    /// Audience.
    pub aud: String,
    /// The user id.
    pub sub: Uuid,
    /// The user's role when the token was issued.
    pub role: Role,
    /// The session (one login) this token belongs to.
    pub sid: Uuid,
    /// Token id: a UUIDv7, whose timestamp is the issue instant in milliseconds. The
    /// revocation markers compare against it because `iat` only has whole seconds.
    pub jti: Uuid,
    /// Issued at, seconds since the epoch.
    pub iat: u64,
    /// Expires at, seconds since the epoch.
    pub exp: u64,
    /// How the session's user authenticated (RFC 8176): `["pwd"]`, or `["pwd", "otp"]`
    /// after a second factor. Tokens issued before the claim existed read as `["pwd"]`.
    #[serde(default)]
    pub amr: Amr,
}

impl AccessClaims {
    /// When the token was issued, in milliseconds since the epoch (from the `jti`).
    pub fn issued_at_ms(&self) -> u64 {
        self.jti
            .get_timestamp()
            .map(|t| {
                let (secs, nanos) = t.to_unix();
                secs * 1000 + u64::from(nanos) / 1_000_000
            })
            // A token we issued always has a v7 jti; anything else is treated as ancient.
            .unwrap_or(0)
    }
}

/// A freshly signed access token.
#[derive(Debug, Clone)]
pub struct IssuedAccessToken {
    /// The compact JWT.
    pub token: String,
    /// Its claims.
    pub claims: AccessClaims,
}

impl IssuedAccessToken {
    /// `exp - iat`, the contract's `expires_in`.
    pub fn expires_in(&self) -> u64 {
        self.claims.exp.saturating_sub(self.claims.iat)
    }
}

/// Why a token was refused. Deliberately without detail for the client; the reason is
/// only for logs and metrics.
#[derive(Debug, thiserror::Error)]
#[error("access token rejected: {0}")]
pub struct InvalidToken(&'static str);

/// Why a token could not be verified: the token is bad (a 401), or the keys to judge it
/// could not be loaded (a 503).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The token is not good.
    #[error(transparent)]
    Invalid(#[from] InvalidToken),
    /// The keys are unavailable.
    #[error(transparent)]
    Unavailable(#[from] KeysUnavailable),
}

/// Why a token could not be issued.
#[derive(Debug, thiserror::Error)]
pub enum IssueError {
    /// The signing key could not be loaded: a 503.
    #[error(transparent)]
    Unavailable(#[from] KeysUnavailable),
    /// Signing failed: a bug.
    #[error("signing the access token")]
    Signing(#[from] jsonwebtoken::errors::Error),
    /// This instance holds the public keys only (`JWT_PUBLIC_KEYS_SECRET_ARN`): a function
    /// that issues tokens was deployed without the private-key secret.
    #[error("this instance holds the public JWT keys only and cannot sign")]
    CannotSign,
}

/// Issues and verifies access tokens.
#[derive(Clone)]
pub struct AccessTokens {
    keys: Arc<KeyRing>,
    issuer: String,
    audience: String,
    ttl: Duration,
    verified: Arc<VerifiedTokens>,
}

/// Most tokens remembered as verified; past it, expired entries go first, then all.
const VERIFIED_CACHE_CAPACITY: usize = 16_384;

/// Tokens whose signature and claims checked out, by the SHA-256 of the whole token, until
/// their `exp` (plus the leeway) in Unix seconds.
type VerifiedTokens = ExpiringMap<[u8; 32], Arc<AccessClaims>, u64>;

/// Clock skew tolerated on `exp`, in seconds.
const LEEWAY_SECS: u64 = 5;

impl AccessTokens {
    /// Tokens signed by `keys`, naming `issuer` and `audience`, living `ttl`.
    pub fn new(keys: Arc<KeyRing>, issuer: &str, audience: &str, ttl: Duration) -> Self {
        Self {
            keys,
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            ttl,
            verified: Arc::new(VerifiedTokens::new(VERIFIED_CACHE_CAPACITY)),
        }
    }

    /// The key set in use (for the JWKS and the cursor MAC), loaded or refreshed first if
    /// it is due.
    pub async fn keys(&self) -> Result<Arc<KeySet>, KeysUnavailable> {
        self.keys.current().await
    }

    /// Signs a token for `user_id` with `role` in session `session_id`, a password-only
    /// session.
    pub async fn issue(
        &self,
        user_id: Uuid,
        role: Role,
        session_id: Uuid,
    ) -> Result<IssuedAccessToken, IssueError> {
        self.issue_with_id(user_id, role, session_id, Uuid::now_v7(), Amr::PASSWORD)
            .await
    }

    /// Signs a token whose id `jti` (a UUIDv7: its timestamp is the issue instant) was
    /// taken earlier, while the user's row was locked, so that the issue instant orders
    /// correctly against a concurrent role change or disable (see `db::sessions`).
    pub async fn issue_with_id(
        &self,
        user_id: Uuid,
        role: Role,
        session_id: Uuid,
        jti: Uuid,
        amr: Amr,
    ) -> Result<IssuedAccessToken, IssueError> {
        let keys = self.keys.current().await?;
        let iat = jti
            .get_timestamp()
            .map(|t| t.to_unix().0)
            .unwrap_or_else(jsonwebtoken::get_current_timestamp);
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: user_id,
            role,
            sid: session_id,
            jti,
            iat,
            exp: iat + self.ttl.as_secs(),
            amr,
        };
        let key = keys.signing_key();
        let encoding = key.encoding_key().ok_or(IssueError::CannotSign)?;
        let mut header = Header::new(key.algorithm().jwt_algorithm());
        header.kid = Some(key.kid().to_owned());
        let token = jsonwebtoken::encode(&header, &claims, encoding)?;
        Ok(IssuedAccessToken { token, claims })
    }

    /// Checks signature, key, algorithm, issuer, audience and expiry (once per token; see
    /// the module doc). Says nothing about revocation: see [`super::revocation`].
    pub async fn verify(&self, token: &str) -> Result<AccessClaims, VerifyError> {
        let cache_key = super::opaque::hash(token);
        let now = jsonwebtoken::get_current_timestamp();
        if let Some(claims) = self.verified.get(&cache_key, now) {
            return Ok((*claims).clone());
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| InvalidToken("header"))?;
        let kid = header.kid.ok_or(InvalidToken("no kid"))?;
        let mut keys = self.keys.current().await?;
        if keys.verification_key(&kid).is_none() {
            // Perhaps signed by a key another instance has already picked up.
            keys = self.keys.reload_for_unknown_kid().await?;
        }
        let claims = self.verify_signature(&keys, &kid, token)?;
        self.verified.insert(
            cache_key,
            Arc::new(claims.clone()),
            claims.exp + LEEWAY_SECS,
            now,
        );
        Ok(claims)
    }

    fn verify_signature(
        &self,
        keys: &KeySet,
        kid: &str,
        token: &str,
    ) -> Result<AccessClaims, InvalidToken> {
        let key = keys
            .verification_key(kid)
            .ok_or(InvalidToken("unknown kid"))?;
        // The key decides the algorithm; a header asking for another one is refused.
        let mut validation = Validation::new(key.algorithm().jwt_algorithm());
        validation.set_issuer(&[&self.issuer]);
        validation.set_audience(&[&self.audience]);
        validation.set_required_spec_claims(&["exp", "iat", "iss", "aud", "sub"]);
        validation.leeway = LEEWAY_SECS;
        jsonwebtoken::decode::<AccessClaims>(token, key.decoding_key(), &validation)
            .map(|data| data.claims)
            .map_err(|e| {
                use jsonwebtoken::errors::ErrorKind;
                InvalidToken(match e.kind() {
                    ErrorKind::ExpiredSignature => "expired",
                    ErrorKind::InvalidSignature => "signature",
                    ErrorKind::InvalidAlgorithm => "algorithm",
                    ErrorKind::InvalidIssuer => "issuer",
                    ErrorKind::InvalidAudience => "audience",
                    _ => "malformed",
                })
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::keys::KeyAlgorithm;
    use base64::Engine as _;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;

    fn tokens(algorithm: KeyAlgorithm) -> AccessTokens {
        let keys = KeySet::from_pem(&algorithm.generate_pem().expect("key")).expect("set");
        AccessTokens::new(
            Arc::new(KeyRing::fixed(keys)),
            "iss",
            "aud",
            Duration::from_secs(900),
        )
    }

    #[tokio::test]
    async fn issued_tokens_verify_for_every_algorithm() {
        for algorithm in [
            KeyAlgorithm::Es256,
            KeyAlgorithm::EdDsa,
            KeyAlgorithm::Rs256,
        ] {
            let t = tokens(algorithm);
            let issued = t
                .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
                .await
                .expect("issue");
            assert_eq!(issued.expires_in(), 900);
            assert_eq!(
                t.verify(&issued.token).await.expect("verify"),
                issued.claims
            );
        }
    }

    #[tokio::test]
    async fn a_token_from_another_key_set_is_refused() {
        let issuer = tokens(KeyAlgorithm::Es256);
        let verifier = tokens(KeyAlgorithm::Es256);
        let issued = issuer
            .issue(Uuid::now_v7(), Role::Admin, Uuid::now_v7())
            .await
            .expect("issue");
        assert!(verifier.verify(&issued.token).await.is_err());
    }

    #[tokio::test]
    async fn a_changed_payload_breaks_the_signature() {
        let t = tokens(KeyAlgorithm::EdDsa);
        let issued = t
            .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
            .await
            .expect("issue");
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims = serde_json::to_value(&issued.claims).expect("json");
        claims["role"] = "admin".into();
        let forged_payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        let forged = format!("{}.{}.{}", parts[0], forged_payload, parts[2]);
        assert!(t.verify(&forged).await.is_err());
    }

    #[tokio::test]
    async fn a_cached_token_still_cannot_be_altered_or_outlive_its_expiry() {
        let t = tokens(KeyAlgorithm::Es256);
        let issued = t
            .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
            .await
            .expect("issue");
        assert!(
            t.verify(&issued.token).await.is_ok(),
            "first check verifies and caches"
        );
        // Same signature, other payload: a different cache key, and a bad signature.
        let parts: Vec<&str> = issued.token.split('.').collect();
        let mut claims = serde_json::to_value(&issued.claims).expect("json");
        claims["role"] = "admin".into();
        let forged = format!(
            "{}.{}.{}",
            parts[0],
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            parts[2]
        );
        assert!(t.verify(&forged).await.is_err());
        assert_eq!(
            t.verify(&issued.token).await.expect("cached"),
            issued.claims
        );
        // An entry is not served past the token's expiry.
        let key = crate::auth::opaque::hash(&issued.token);
        let after_expiry = issued.claims.exp + LEEWAY_SECS + 1;
        assert!(t.verified.get(&key, after_expiry).is_none());
    }

    #[test]
    fn the_cache_stays_bounded() {
        let cache = VerifiedTokens::new(VERIFIED_CACHE_CAPACITY);
        let claims = Arc::new(AccessClaims {
            iss: "i".into(),
            aud: "a".into(),
            sub: Uuid::nil(),
            role: Role::User,
            sid: Uuid::nil(),
            jti: Uuid::nil(),
            iat: 0,
            exp: 100,
            amr: Amr::PASSWORD,
        });
        for n in 0..(VERIFIED_CACHE_CAPACITY + 10) {
            let mut key = [0u8; 32];
            key[..8].copy_from_slice(&(n as u64).to_le_bytes());
            cache.insert(key, Arc::clone(&claims), claims.exp + LEEWAY_SECS, 50);
        }
        assert!(cache.len() <= VERIFIED_CACHE_CAPACITY, "{}", cache.len());
    }

    #[tokio::test]
    async fn issue_time_has_millisecond_precision() {
        let t = tokens(KeyAlgorithm::Es256);
        let issued = t
            .issue(Uuid::now_v7(), Role::User, Uuid::now_v7())
            .await
            .expect("issue");
        let ms = issued.claims.issued_at_ms();
        assert_eq!(ms / 1000, issued.claims.iat);
    }
}
