//! Authentication: password hashing, signing keys, access and refresh tokens, revocation,
//! and [`authorize`], the one function every protected route (and the Lambda authorizer)
//! uses to turn a bearer token into a [`Caller`].

pub mod authorizer;
pub mod hashing;
pub mod key_secret;
pub mod keys;
pub mod opaque;
pub mod revocation;
pub mod rules;
pub mod tokens;

use uuid::Uuid;

use crate::db::DbError;
use crate::domain::Role;
use revocation::Revocations;
use tokens::{AccessClaims, AccessTokens};

/// The authenticated caller of a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    /// The user.
    pub user_id: Uuid,
    /// The role the token carries (a role change revokes older tokens, so it is current).
    pub role: Role,
    /// The session the token belongs to.
    pub session_id: Uuid,
}

impl From<&AccessClaims> for Caller {
    fn from(claims: &AccessClaims) -> Self {
        Self {
            user_id: claims.sub,
            role: claims.role,
            session_id: claims.sid,
        }
    }
}

/// Why a caller was not authorized.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Missing, malformed, badly signed, expired or revoked: a 401.
    #[error("unauthorized: {0}")]
    Unauthorized(&'static str),
    /// Revocation could not be checked (Redis and Postgres both unreachable): a 503.
    #[error("revocation check unavailable")]
    Unavailable(#[source] DbError),
}

/// Verifies `bearer` (signature, key, algorithm, issuer, audience, expiry) and checks that
/// neither its session nor its user's tokens were revoked since it was issued.
pub async fn authorize(
    tokens: &AccessTokens,
    revocations: &Revocations,
    bearer: &str,
) -> Result<Caller, AuthError> {
    let claims = tokens.verify(bearer).map_err(|e| {
        tracing::debug!(reason = %e, "access token rejected");
        AuthError::Unauthorized("invalid")
    })?;
    match revocations.is_revoked(&claims).await {
        Ok(false) => Ok(Caller::from(&claims)),
        Ok(true) => Err(AuthError::Unauthorized("revoked")),
        Err(e) => Err(AuthError::Unavailable(e)),
    }
}
