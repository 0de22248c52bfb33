//! `POST /v1/auth/logout`: end this session (or, with `all`, every session of the user).
//! The access token and the refresh token stop working at once, on every instance
//! ([`Sessions::logout`]).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use serde::Deserialize;

use crate::http::ApiError;
use crate::http::extract::{ClientIp, LogoutCaller, OptionalJson};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Sessions;

/// The route.
pub const PATH: &str = "/v1/auth/logout";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(logout))
}

#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LogoutRequest {
    #[serde(default)]
    all: bool,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "End this session, or every session of the user (all: true)",
    request_body(content = LogoutRequest, description = "Optional: no body means `{\"all\": false}`", content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session(s) ended: their access and refresh tokens stop working at once"),
        problems::Malformed,
        problems::Unauthorized,
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "logout", skip_all)]
async fn logout(
    State(sessions): State<Sessions>,
    caller: LogoutCaller,
    ip: ClientIp,
    OptionalJson(body): OptionalJson<LogoutRequest>,
) -> Result<StatusCode, ApiError> {
    let all = body.unwrap_or_default().all;
    match caller {
        LogoutCaller::Live(authorized) => sessions.logout(authorized.caller, all, ip.0).await?,
        LogoutCaller::CutOff(caller) => sessions.logout_again(caller, ip.0).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}
