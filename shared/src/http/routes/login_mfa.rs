//! `POST /v1/auth/login/mfa`: the second step of a two-factor login: the `mfa_token` of the
//! first step and a code for a token pair. The rules live in [`Sessions::login_second_factor`].

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
pub const PATH: &str = "/v1/auth/login/mfa";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(login_mfa))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginMfaRequest {
    /// The `mfa_token` of the first step's `mfa_required` answer.
    #[schema(value_type = String, format = Password)]
    mfa_token: SecretString,
    /// A current 6-digit code of the authenticator app, or an unused recovery code
    /// (`xxxx-xxxx-xxxx-xxxx`; case, dashes and spaces do not matter).
    #[schema(value_type = String, format = Password, example = "123456")]
    code: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Finish a two-factor login with a code",
    description = "The `mfa_token` is checked first: an unknown, expired or spent one is 401 \
        `invalid_credentials` whatever the code. Then the account's lockout (429 while locked), \
        then the code: a TOTP code of the current 30-second step or the one before or after, \
        accepted once per account, or a recovery code, each usable once. A wrong code is 401 \
        `invalid_mfa_code` and a failed attempt for the lockout; the fifth wrong code spends the \
        `mfa_token`. Of concurrent requests with one `mfa_token`, at most one opens a session. \
        The session's access tokens carry `amr: [\"pwd\", \"otp\"]`, also after a refresh.",
    request_body(content = LoginMfaRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Token pair", body = TokenPair),
        problems::Malformed,
        (status = 401, description = "Unknown, expired or spent `mfa_token` (`invalid_credentials`), or a wrong or replayed code (`invalid_mfa_code`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "login_mfa", skip_all)]
async fn login_mfa(
    State(sessions): State<Sessions>,
    ip: ClientIp,
    ApiJson(body): ApiJson<LoginMfaRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let issued = sessions
        .login_second_factor(
            body.mfa_token.expose_secret(),
            body.code.expose_secret(),
            ip.0,
        )
        .await?;
    Ok(Json(issued.into()))
}
