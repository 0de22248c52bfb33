//! `POST /v1/users/me/email/verification`: send the caller a new verification link
//! ([`Accounts::resend_verification`]).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;

use crate::http::ApiError;
use crate::http::extract::{Authenticated, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/users/me/email/verification";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(resend_verification))
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "users",
    summary = "Send a new verification email to the caller's unverified address",
    description = "No body. Always 202: a link goes out when the address is unverified and \
        the account has asked fewer than `RATE_LIMIT_VERIFICATION_PER_ACCOUNT_PER_HOUR` \
        (default 3) times in the last hour; nothing is sent otherwise. The new link makes \
        older ones invalid.",
    security(("bearer" = [])),
    responses(
        (status = 202, description = "Accepted (sent when the address is unverified and within the hourly allowance)"),
        problems::Unauthorized,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "resend_verification", skip_all)]
async fn resend_verification(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
) -> Result<StatusCode, ApiError> {
    accounts.resend_verification(caller, ip.0).await?;
    Ok(StatusCode::ACCEPTED)
}
