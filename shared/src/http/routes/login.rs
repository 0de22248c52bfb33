//! `POST /v1/auth/login`: trade email and password for a token pair. The rules (one answer
//! for unknown email, wrong password and disabled account; the per-IP limit and the account
//! lockout) live in [`Sessions::login`].

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::TokenPair;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp, UserAgent};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Sessions;

/// The route.
pub const PATH: &str = "/v1/auth/login";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(login))
}

/// The login function's init (see [`crate::lambda::run_with_init`]): the dummy hash is
/// built before the first request, so that the first login of an unknown email answers as
/// fast as one of a known email.
pub fn init(state: AppState) -> futures::future::BoxFuture<'static, anyhow::Result<()>> {
    Box::pin(async move {
        state
            .sessions
            .prepare_login()
            .await
            .map_err(|e| anyhow::anyhow!("preparing the login: {e}"))
    })
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    #[schema(example = "ada@example.com")]
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Log in with email and password",
    description = "With two-factor login on, the right password opens no session: the answer is \
        403 `mfa_required` with an `mfa_token` for the second step. A session opened here carries \
        `amr: [\"pwd\"]` in its access tokens.",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Token pair", body = TokenPair),
        (status = 400, description = "`malformed_request` or `invalid_email`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown email, wrong password or disabled account: one answer for all (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The password is right, but: the account has two-factor login on (`mfa_required`; no session yet: the problem's extra member `mfa_token`, single use and valid 5 minutes, goes to `POST /v1/auth/login/mfa` with a code), or `REQUIRE_VERIFIED_EMAIL` is on and the email is not verified (`email_not_verified`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "login", skip_all)]
async fn login(
    State(sessions): State<Sessions>,
    ip: ClientIp,
    user_agent: UserAgent,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    let issued = sessions
        .login(
            &body.email,
            body.password.expose_secret(),
            ip.0,
            user_agent.as_deref(),
        )
        .await?;
    Ok(Json(issued.into()))
}
