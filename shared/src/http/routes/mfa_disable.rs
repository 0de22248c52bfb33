//! `POST /v1/users/me/mfa/disable`: turn two-factor login off with the password and a code
//! ([`Accounts::disable_mfa`]).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/users/me/mfa/disable";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(mfa_disable))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaDisableRequest {
    /// The caller's password: a login attempt for the account's lockout.
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    /// A current 6-digit code or an unused recovery code; spent here.
    #[schema(value_type = String, format = Password, example = "123456")]
    code: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "users",
    summary = "Turn two-factor login off",
    description = "Checked in this order: 409 `mfa_not_enabled` when it is off; `current_password` \
        (403 `invalid_credentials`; a login attempt for the lockout, 429 while locked); the code \
        (400 `invalid_mfa_code`; a wrong one is a failed attempt too, and a code spent here cannot \
        be used again). The secret and the recovery codes are deleted and a notice goes to the \
        account's address. Sessions stay open.",
    request_body(content = MfaDisableRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Two-factor login is off"),
        (status = 400, description = "`malformed_request`, or a wrong or spent code (`invalid_mfa_code`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        (status = 403, description = "Wrong `current_password` (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Two-factor login is not on (`mfa_not_enabled`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "mfa_disable", skip_all)]
async fn mfa_disable(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<MfaDisableRequest>,
) -> Result<StatusCode, ApiError> {
    accounts
        .disable_mfa(
            caller,
            body.current_password.expose_secret(),
            body.code.expose_secret(),
            ip.0,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
