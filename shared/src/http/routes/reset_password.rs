//! `POST /v1/auth/password/reset`: choose a new password with the token of a
//! password-reset email. The token is spent exactly once, and every session of the user
//! ends.
//!
//! In this order:
//! 1. the per-IP limit (`RATE_LIMIT_RESET_PER_IP_PER_MINUTE`; fails open when Redis is
//!    down, see [`crate::limits`]);
//! 2. the token is looked up, *not* spent: unknown, used or expired is 400 `invalid_token`;
//! 3. the new password is checked against the policy, which needs the account's email and
//!    name: a weak password is 400 `weak_password` and the token stays usable;
//! 4. the new hash is computed;
//! 5. every session ends and every access token issued so far is cut off. This comes
//!    before the commit so that a failure here (503) changes nothing the user relies on:
//!    the token is not spent and the old password still works;
//! 6. one transaction spends the token (a conditional `UPDATE`: of concurrent requests
//!    with one token exactly one gets here, the others get 400 `invalid_token`) and stores
//!    the new hash;
//! 7. sessions started between 5 and 6 (a login with the old password in that instant)
//!    are ended too.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;
use uuid::Uuid;

use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::auth::opaque;
use crate::db::sessions::RevokeReason;
use crate::domain::{NewPassword, UserName};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::limits::IpAction;

/// The route.
pub const PATH: &str = "/v1/auth/password/reset";

/// The audit event kind (the same the per-IP limit records for this endpoint).
const AUDIT_KIND: &str = "password_reset";

/// Length of a token as issued: 32 bytes in base64url without padding.
const TOKEN_CHARS: usize = 43;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(reset_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetPasswordRequest {
    /// The token from the reset link.
    token: String,
    /// The new password.
    password: String,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Set a new password with the token of a password-reset email",
    description = "Spends the token (once, also under concurrency) and ends every session of \
        the user: their access and refresh tokens stop working at once. A weak password is \
        400 `weak_password` and does not spend the token.",
    request_body(content = ResetPasswordRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Password replaced; every session ended"),
        (status = 400, description = "`invalid_token` (unknown, used or expired), `weak_password` or `malformed_request`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this client (`rate_limited`); see `Retry-After`", body = crate::http::error::Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "reset_password", skip_all)]
async fn reset_password(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    state.limits.enforce_ip(IpAction::Reset, ip.0).await?;
    let refuse = |user_id: Option<Uuid>, reason: &'static str| {
        let mut event = AuditEvent::failure(AUDIT_KIND, reason).ip(ip.0);
        if let Some(user_id) = user_id {
            event = event.user(user_id);
        }
        event.record(&state.audit);
    };
    if !looks_like_a_token(&body.token) {
        refuse(None, "invalid_token");
        return Err(ApiError::InvalidToken);
    }
    let token_hash = opaque::hash(&body.token);
    let Some(record) = state.db.reset_token_user(&token_hash).await? else {
        refuse(None, "invalid_token");
        return Err(ApiError::InvalidToken);
    };
    let user_id = record.user.id;
    let hints: Vec<&str> = record.user.name.iter().map(UserName::as_str).collect();
    let password = NewPassword::parse(&body.password, &record.user.email, &hints)
        .inspect_err(|_| refuse(Some(user_id), "weak_password"))?;
    let new_hash = state.hasher.hash(&password).await?;

    state
        .revocations
        .end_sessions(user_id, None, RevokeReason::PasswordReset)
        .await?;
    state.revocations.cut_off_access_tokens(user_id).await?;
    if state
        .db
        .spend_reset_token(&token_hash, &new_hash)
        .await?
        .is_none()
    {
        // Spent by a concurrent request (or expired) since the lookup.
        refuse(Some(user_id), "invalid_token");
        return Err(ApiError::InvalidToken);
    }
    state.profiles.changed(user_id).await;
    match state
        .revocations
        .end_sessions(user_id, None, RevokeReason::PasswordReset)
        .await
    {
        Ok(0) => {}
        Ok(late) => {
            tracing::info!(%user_id, sessions = late, "ended sessions started during the reset")
        }
        Err(e) => {
            tracing::warn!(%user_id, error = %e, "could not sweep sessions started during the reset")
        }
    }
    tracing::info!(%user_id, "password reset");
    AuditEvent::success(AUDIT_KIND)
        .user(user_id)
        .ip(ip.0)
        .record(&state.audit);
    Ok(StatusCode::NO_CONTENT)
}

/// Whether `token` has the shape of an issued token (43 base64url characters): anything
/// else is refused without a database round trip.
fn looks_like_a_token(token: &str) -> bool {
    token.len() == TOKEN_CHARS
        && token
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || c == b'-' || c == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::opaque::OpaqueToken;

    #[test]
    fn only_token_shaped_strings_are_looked_up() {
        let token = OpaqueToken::generate().expect("rng");
        assert!(looks_like_a_token(token.expose()));
        for garbage in [
            "",
            "short",
            &"a".repeat(44),
            &format!("{}=", &token.expose()[..42]),
            &format!("{}+", &token.expose()[..42]),
            &format!("{}é", &token.expose()[..41]),
        ] {
            assert!(!looks_like_a_token(garbage), "{garbage:?}");
        }
    }
}
