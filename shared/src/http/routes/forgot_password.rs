//! `POST /v1/auth/password/forgot`: email a one-time password-reset link. Always 202 for a
//! well-formed email, whether or not an account has it, and in the same time: the account
//! is looked up and mailed after the answer ([`Accounts::forgot_password`]).

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Router};
use serde::Deserialize;

use crate::http::extract::{ApiJson, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::http::{ApiError, MinimumResponseTime};
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/auth/password/forgot";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(forgot_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ForgotPasswordRequest {
    /// The account's email.
    #[schema(example = "ada@example.com")]
    email: String,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Email a one-time password-reset link",
    description = "Always 202 for a well-formed email, whether or not an account has it, and \
        in the same time. For an existing, enabled account an email is sent whose text holds \
        `PUBLIC_BASE_URL/reset-password?token=<token>` (43 base64url characters), valid once \
        for 30 minutes by default; a newer request invalidates the older link. Past a few \
        requests per email per hour the answer stays 202 but no email is sent.",
    request_body(content = ForgotPasswordRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: an email is on its way if the account exists and is enabled"),
        (status = 400, description = "`malformed_request` or `invalid_email`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "forgot_password", skip_all)]
async fn forgot_password(
    State(accounts): State<Accounts>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<impl IntoResponse, ApiError> {
    accounts.forgot_password(&body.email, ip.0).await?;
    Ok((
        Extension(MinimumResponseTime(LAMBDA_RESPONSE_FLOOR)),
        StatusCode::ACCEPTED,
    ))
}

/// On Lambda the lookup and the email run before the invocation ends (a frozen sandbox runs
/// nothing), so the answer waits for them; it also waits this long in all, so that its
/// timing does not tell whether an account exists. It covers a slow email service; the
/// local server answers at once and does the work afterwards.
pub const LAMBDA_RESPONSE_FLOOR: Duration = Duration::from_secs(1);
