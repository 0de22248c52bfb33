//! `PUT /v1/users/me/password`: change the caller's password. Every *other* session ends;
//! the one that made the change keeps working ([`Accounts::change_password`]).

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::put;
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/users/me/password";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, put(change_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ChangePasswordRequest {
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
    #[schema(value_type = String, format = Password)]
    new_password: SecretString,
}

#[utoipa::path(
    put,
    path = PATH,
    tag = "users",
    summary = "Change the caller's password; every other session ends",
    request_body(content = ChangePasswordRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Password changed; this session keeps working, every other one ends"),
        (status = 400, description = "`malformed_request` or `weak_password`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        (status = 403, description = "Wrong `current_password` (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "change_password", skip_all)]
async fn change_password(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<ChangePasswordRequest>,
) -> Result<StatusCode, ApiError> {
    accounts
        .change_password(
            caller,
            body.current_password.expose_secret(),
            body.new_password.expose_secret(),
            ip.0,
        )
        .await?;
    Ok(StatusCode::NO_CONTENT)
}
