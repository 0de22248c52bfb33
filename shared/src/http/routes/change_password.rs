//! `PUT /v1/users/me/password`: change the caller's password. Every *other* session ends;
//! the one that made the change keeps working.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::auth::hashing::Verification;
use crate::db::sessions::RevokeReason;
use crate::domain::{NewPassword, PasswordAttempt, UserName};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp};

/// The route.
pub const PATH: &str = "/v1/users/me/password";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, put(change_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[utoipa::path(
    put,
    path = PATH,
    tag = "users",
    summary = "Change the caller's password; every other session ends",
    request_body(content = ChangePasswordRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Password changed; this session keeps working, every other one ends"),
        (status = 400, description = "`malformed_request` or `weak_password`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked access token (`unauthorized`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "Wrong `current_password` (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "change_password", skip_all)]
async fn change_password(
    State(state): State<AppState>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    let record = state
        .db
        .user_by_id(caller.user_id)
        .await?
        .ok_or(ApiError::Unauthorized)?;
    let current = PasswordAttempt::new(body.current_password.expose_secret());
    if state.hasher.verify(&current, &record.password_hash).await? == Verification::Mismatch {
        AuditEvent::failure("password_change", "wrong_current_password")
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip.0)
            .record(&state.audit);
        return Err(ApiError::WrongCurrentPassword);
    }
    let hints: Vec<&str> = record.user.name.iter().map(UserName::as_str).collect();
    let new_password = NewPassword::parse(
        body.new_password.expose_secret(),
        &record.user.email,
        &hints,
    )?;
    let new_hash = state.hasher.hash(&new_password).await?;
    // Other sessions end before the new hash is stored: if that fails, nothing changed.
    let ended = state
        .revocations
        .end_sessions(
            caller.user_id,
            Some(caller.session_id),
            RevokeReason::PasswordChange,
        )
        .await?;
    state
        .db
        .set_password_hash(caller.user_id, &new_hash, None)
        .await?;
    state.profiles.changed(caller.user_id).await;
    tracing::info!(user_id = %caller.user_id, sessions_ended = ended, "password changed");
    AuditEvent::success("password_change")
        .user(caller.user_id)
        .session(caller.session_id)
        .ip(ip.0)
        .record(&state.audit);
    Ok(StatusCode::NO_CONTENT)
}
