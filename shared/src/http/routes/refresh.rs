//! `POST /v1/auth/refresh`: spend a refresh token for a new token pair (rotation).
//!
//! Presenting a spent token again means two parties hold it, one of them a thief: the whole
//! session is revoked, including the newest refresh token and the access tokens.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::{TokenPair, new_refresh_token};
use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::auth::opaque;
use crate::db::sessions::{RevokeReason, Rotation};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::telemetry::{self, metric};

/// The route.
pub const PATH: &str = "/v1/auth/refresh";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(refresh))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RefreshRequest {
    #[schema(value_type = String)]
    refresh_token: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Spend a refresh token for a new token pair (rotation)",
    request_body(content = RefreshRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "New token pair; the presented refresh token is spent", body = TokenPair),
        (status = 400, description = "Malformed body (`malformed_request`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown, expired, revoked or reused refresh token (`invalid_refresh_token`); reuse revokes the whole session", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let presented = opaque::hash(body.refresh_token.expose_secret());
    // Keys before the rotation: a token spent without a new pair to show for it would make
    // the client's retry look like reuse and end its session.
    state.tokens.keys().await?;
    let replacement = new_refresh_token()?;
    let rotation = state
        .db
        .rotate_refresh_token(
            &presented,
            replacement.hash(),
            state.config.refresh_token_ttl,
        )
        .await?;
    match rotation {
        Rotation::Rotated { session, user } => {
            let user_id = user.user.id;
            let pair = TokenPair::issue(&state, user.user, &session, &replacement).await?;
            AuditEvent::success("refresh")
                .user(user_id)
                .session(session.session_id)
                .ip(ip.0)
                .record(&state.audit);
            Ok(Json(pair))
        }
        Rotation::Reused {
            session_id,
            user_id,
        } => {
            state
                .revocations
                .end_session(user_id, session_id, RevokeReason::RefreshReuse)
                .await?;
            telemetry::count(metric::REFRESH_REUSE);
            AuditEvent::failure("refresh", "reuse_detected")
                .user(user_id)
                .session(session_id)
                .ip(ip.0)
                .record(&state.audit);
            Err(ApiError::InvalidRefreshToken)
        }
        Rotation::Invalid => {
            AuditEvent::failure("refresh", "invalid")
                .ip(ip.0)
                .record(&state.audit);
            Err(ApiError::InvalidRefreshToken)
        }
    }
}
