//! `PATCH /v1/admin/users/{id}`: change a user's email, name, role or disabled state.
//!
//! A role change rejects every access token issued before it (the refresh token keeps
//! working and mints tokens with the new role); disabling ends every session. Both take
//! effect at once on every instance. The last active admin cannot be demoted or disabled.

use axum::extract::{Path, State};
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;

use super::{USER, user_id};
use crate::domain::{Role, User, UserName};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ApiJson, ClientIp, present};
use crate::http::state::AppState;
use crate::services::Accounts;
use crate::services::accounts::UserUpdate;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USER, patch(update_user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = Option<UserName>)]
    name: Option<Option<String>>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = USER,
    tag = "admin",
    summary = "Change a user's email, name, role or disabled state; takes effect at once",
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    params(("id" = String, Path, description = "The user's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "`malformed_request`, `invalid_email` or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked access token (`unauthorized`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin (`forbidden`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the id is not a UUID (`not_found`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`, or `last_admin` when it would leave no active admin", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "admin_update_user", skip_all)]
async fn update_user(
    State(accounts): State<Accounts>,
    AdminCaller(admin): AdminCaller,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let update = UserUpdate {
        email: body.email,
        name: body.name,
        role: body.role,
        disabled: body.disabled,
    };
    Ok(Json(
        accounts
            .admin_update(admin, user_id(&id)?, update, ip.0)
            .await?,
    ))
}
