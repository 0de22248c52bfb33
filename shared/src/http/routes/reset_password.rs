//! `POST /v1/auth/password/reset`: choose a new password with the token of a
//! password-reset email. The token is spent exactly once, and every session of the user
//! ends; the order of the steps is in [`crate::services::accounts`]' reset flow.

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/auth/password/reset";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(reset_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ResetPasswordRequest {
    /// The token from the reset link.
    #[schema(value_type = String)]
    token: SecretString,
    /// The new password.
    #[schema(value_type = String, format = Password)]
    password: SecretString,
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
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "reset_password", skip_all)]
async fn reset_password(
    State(accounts): State<Accounts>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ResetPasswordRequest>,
) -> Result<StatusCode, ApiError> {
    accounts
        .reset_password(
            body.token.expose_secret(),
            body.password.expose_secret(),
            ip.0,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
