//! `POST /v1/auth/refresh`: spend a refresh token for a new token pair (rotation). Reuse
//! detection lives in [`Sessions::refresh`].

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::TokenPair;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Sessions;

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
        problems::Malformed,
        (status = 401, description = "Unknown, expired, revoked or reused refresh token (`invalid_refresh_token`); reuse revokes the whole session", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "refresh", skip_all)]
async fn refresh(
    State(sessions): State<Sessions>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RefreshRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let issued = sessions
        .refresh(body.refresh_token.expose_secret(), ip.0)
        .await?;
    Ok(Json(issued.into()))
}
