//! `POST /v1/auth/email/verify`: complete an email verification or an email change with the
//! token of its link ([`crate::services::accounts`]' email flows).

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
pub const PATH: &str = "/v1/auth/email/verify";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(verify_email))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct VerifyEmailRequest {
    /// The token from the link (`/verify-email?token=...`).
    #[schema(value_type = String)]
    token: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Verify the account's email, or complete an email change, with the token of its link",
    description = "Links are single use and expire (`EMAIL_VERIFICATION_TTL_SECONDS`, default \
        24 hours); a newer link of the same account and purpose makes older ones invalid. A \
        verification link counts only while the account still has the address it went to. \
        An email-change link moves the account to the new address (verified): sessions \
        survive, outstanding password-reset links stop working, and a notice goes to the old \
        address. 409 `email_taken` when another account took the address meanwhile; the link \
        is spent then.",
    request_body(content = VerifyEmailRequest, content_type = "application/json"),
    responses(
        (status = 204, description = "Verified, or the email changed"),
        (status = 400, description = "`invalid_token` (unknown, used, expired or superseded) or `malformed_request`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`: another account took the new address", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "verify_email", skip_all)]
async fn verify_email(
    State(accounts): State<Accounts>,
    ip: ClientIp,
    ApiJson(body): ApiJson<VerifyEmailRequest>,
) -> Result<StatusCode, ApiError> {
    accounts
        .verify_email(body.token.expose_secret(), ip.0)
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
