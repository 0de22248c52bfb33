//! `DELETE /v1/admin/users/{id}`: delete a user. Every token and session ends at once;
//! the email can be registered again. The last active admin cannot be deleted.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;

use super::{USER, user_id};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ClientIp};
use crate::http::state::AppState;
use crate::services::Accounts;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USER, delete(delete_user))
}

#[utoipa::path(
    delete,
    path = USER,
    tag = "admin",
    summary = "Delete a user: every token and session ends, the email is free again",
    params(("id" = String, Path, description = "The user's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Deleted"),
        (status = 401, description = "Missing, invalid, expired or revoked access token (`unauthorized`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin (`forbidden`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the id is not a UUID (`not_found`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "It is the last active admin (`last_admin`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "admin_delete_user", skip_all)]
async fn delete_user(
    State(accounts): State<Accounts>,
    AdminCaller(admin): AdminCaller,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    accounts.admin_delete(admin, user_id(&id)?, ip.0).await?;
    Ok(StatusCode::NO_CONTENT)
}
