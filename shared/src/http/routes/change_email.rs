//! `POST /v1/users/me/email`: ask to move the caller's account to a new address; the link
//! sent there completes it ([`Accounts::request_email_change`]).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::{AccountError, Accounts};

/// The route.
pub const PATH: &str = "/v1/users/me/email";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(change_email))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangeEmailRequest {
    /// The address to move to.
    #[schema(format = Email, example = "ada.new@example.com")]
    new_email: String,
    /// The caller's password: a login attempt for the account's lockout.
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
}

/// The address the account will move to once the link sent there is opened.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct PendingEmail {
    /// Trimmed and lowercased.
    #[schema(format = Email, example = "ada.new@example.com")]
    pending_email: String,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "users",
    summary = "Ask to change the caller's email; a link to the new address completes it",
    description = "Checks the address (`invalid_email`; 409 `email_taken` when another account \
        has it; 400 `validation_failed` when it is the caller's own), then `current_password`, \
        which counts like a login attempt: a wrong one is a failed attempt for the account's \
        lockout and the per-IP login limit, and while the account is locked the answer is 429 \
        even with the right password. The email does not change yet: a confirmation link goes \
        to the new address (see `POST /v1/auth/email/verify`) and a notice to the current one. \
        A new request replaces a pending one; a password change or reset cancels it.",
    request_body(content = ChangeEmailRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 202, description = "The confirmation link is on its way to the new address", body = PendingEmail),
        (status = 400, description = "`malformed_request`, `invalid_email`, or `validation_failed` (the caller's own address)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        (status = 403, description = "Wrong `current_password` (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Another account has the address (`email_taken`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "change_email", skip_all)]
async fn change_email(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangeEmailRequest>,
) -> Result<(StatusCode, Json<PendingEmail>), ApiError> {
    let pending = accounts
        .request_email_change(
            caller,
            &body.new_email,
            body.current_password.expose_secret(),
            ip.0,
        )
        .await
        .map_err(|e| match e {
            // The field at fault is `new_email`, not `email`.
            AccountError::InvalidEmail(reason) => ApiError::InvalidEmailIn {
                field: "new_email",
                reason,
            },
            other => other.into(),
        })?;
    Ok((
        StatusCode::ACCEPTED,
        Json(PendingEmail {
            pending_email: pending.as_str().to_owned(),
        }),
    ))
}
