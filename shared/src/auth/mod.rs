//! Authentication: password hashing, signing keys, access and refresh tokens, revocation,
//! and [`authorize`], the one function every protected route (and the Lambda authorizer)
//! uses to turn a bearer token into a [`Caller`].

pub mod authorizer;
pub mod hashing;
pub mod key_secret;
pub mod keys;
pub mod mfa_keys;
pub(crate) mod opaque;
pub(crate) mod revocation;
pub mod rules;
pub mod tokens;
pub mod totp;

use uuid::Uuid;

use crate::domain::{Amr, Role};
use crate::profiles::ProfileVersion;
use crate::telemetry::ErrorChain;
use revocation::Revocations;
use tokens::{AccessClaims, AccessTokens, VerifyError};

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: Uuid,
    /// The role the token carries (a role change revokes older tokens, so it is current).
    pub role: Role,
    /// The session the token belongs to.
    pub session_id: Uuid,
    /// How the session's user authenticated (a second factor or not).
    pub amr: Amr,
}

impl From<&AccessClaims> for Caller {
    fn from(claims: &AccessClaims) -> Self {
        Self {
            user_id: claims.sub,
            role: claims.role,
            session_id: claims.sid,
            amr: claims.amr,
        }
    }
}

/// A caller [`authorize`] let in, with its profile version read in the same round trip as
/// the revocation check (for [`crate::profiles`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Authorized {
    /// Who is calling.
    pub caller: Caller,
    /// The caller's profile version.
    pub profile: ProfileVersion,
}

/// Why a caller was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, badly signed or expired: a 401.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Authentic and unexpired, but revoked: a 401 everywhere except where a revocation
    /// cut short by an outage may be repeated with it (logout; see [`revocation`]).
    #[error("unauthorized: revoked")]
    Revoked(Caller),
    /// The token could not be judged: revocation could not be checked (Redis and Postgres
    /// both unreachable) or the signing keys could not be loaded. A 503.
    #[error("authorization unavailable")]
    Unavailable(#[source] anyhow::Error),
}

/// The token of an `Authorization: Bearer <token>` header (scheme case-insensitive).
pub fn bearer_token(headers: &axum::http::HeaderMap) -> Option<&str> {
    let value = headers
        .get(axum::http::header::AUTHORIZATION)?
        .to_str()
        .ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

/// What turns a bearer token into an [`Authorized`] caller: the keys that verify it and
/// the revocation mirror. Cheap to clone.
#[derive(Clone)]
pub struct Authenticator {
    tokens: AccessTokens,
    revocations: Revocations,
}

impl Authenticator {
    /// Verifies with `tokens`' keys and checks revocation in `revocations`.
    pub fn new(tokens: AccessTokens, revocations: Revocations) -> Self {
        Self {
            tokens,
            revocations,
        }
    }

    /// See [`authorize`].
    pub async fn authorize(&self, bearer: &str) -> Result<Authorized, AuthError> {
        authorize(&self.tokens, &self.revocations, bearer).await
    }

    /// The access tokens (their keys also sign the cursors of paginated answers).
    pub fn tokens(&self) -> &AccessTokens {
        &self.tokens
    }

    /// The revocation mirror.
    pub fn revocations(&self) -> &Revocations {
        &self.revocations
    }
}

/// Verifies `bearer` (signature, key, algorithm, issuer, audience, expiry) and checks that
/// neither its session nor its user's tokens were revoked since it was issued.
pub async fn authorize(
    tokens: &AccessTokens,
    revocations: &Revocations,
    bearer: &str,
) -> Result<Authorized, AuthError> {
    let claims = match tokens.verify(bearer).await {
        Ok(claims) => claims,
        Err(VerifyError::Invalid(e)) => {
            tracing::debug!(reason = %ErrorChain(&e), "access token rejected");
            return Err(AuthError::Unauthorized("invalid"));
        }
        Err(VerifyError::Unavailable(e)) => return Err(AuthError::Unavailable(e.into())),
    };
    match revocations.check(&claims).await {
        Ok(standing) if standing.revoked => Err(AuthError::Revoked(Caller::from(&claims))),
        Ok(standing) => Ok(Authorized {
            caller: Caller::from(&claims),
            profile: standing.profile,
        }),
        Err(e) => Err(AuthError::Unavailable(e.into())),
    }
}
