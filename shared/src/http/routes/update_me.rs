//! `PATCH /v1/users/me`: change the caller's own name or email. Role and disabled state
//! are not the caller's to change: any field but these two is a 400.

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
use crate::services::accounts::ProfileUpdate;

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
    #[serde(default)]
    email: Option<String>,
}

#[utoipa::path(
    patch,
    path = PATH,
    tag = "users",
    summary = "Change the caller's own name or email (sessions survive)",
    request_body(content = UpdateMeRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated account", body = User),
        (status = 400, description = "`malformed_request` (including any field but `name` and `email`), `invalid_email` or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        (status = 409, description = "Email already registered (`email_taken`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
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
    let update = ProfileUpdate {
        email: body.email,
        name: body.name,
    };
    Ok(Json(accounts.update_profile(caller, update, ip.0).await?))
}
