//! `DELETE /v1/admin/users/{id}`: delete a user. Every token and session ends at once;
//! the email can be registered again. The last active admin cannot be deleted.

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;

use super::{USER, user_id};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ClientIp};
use crate::http::problems;
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
        problems::Unauthorized,
        problems::Forbidden,
        problems::UserNotFound,
        (status = 409, description = "It is the last active admin (`last_admin`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unavailable,
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
