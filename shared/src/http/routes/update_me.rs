//! `PATCH /v1/users/me`: change the caller's own display name. Any other field (`email`,
//! `role`, `disabled`) is a 400: the email changes through `POST /v1/users/me/email`, with a
//! confirmation.

use axum::extract::State;
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;

use crate::domain::User;
use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp, present};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = super::get_me::PATH;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, patch(update_me))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateMeRequest {
    /// Absent: unchanged; `null`: removed; a string: set.
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = super::name_change_field)]
    name: Option<Option<String>>,
}

#[utoipa::path(
    patch,
    path = PATH,
    tag = "users",
    summary = "Change the caller's own display name",
    request_body(content = UpdateMeRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 400, description = "`malformed_request` (including any field but `name`: the email changes through `POST /v1/users/me/email`) or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "update_me", skip_all)]
async fn update_me(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<UpdateMeRequest>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(
        accounts.update_profile(caller, body.name, ip.0).await?,
    ))
}
