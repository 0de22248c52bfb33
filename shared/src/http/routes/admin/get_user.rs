//! `GET /v1/admin/users/{id}`: one user.

use axum::extract::{Path, State};
use axum::routing::get;
use axum::{Json, Router};

use super::{USER, user_id};
use crate::domain::User;
use crate::http::ApiError;
use crate::http::extract::AdminCaller;
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USER, get(get_user))
}

#[utoipa::path(
    get,
    path = USER,
    tag = "admin",
    summary = "One user",
    params(("id" = String, Path, description = "The user's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The user", body = User),
        problems::Unauthorized,
        problems::Forbidden,
        problems::UserNotFound,
        problems::Unavailable,
    )
)]
async fn get_user(
    State(accounts): State<Accounts>,
    AdminCaller(_admin): AdminCaller,
    Path(id): Path<String>,
) -> Result<Json<User>, ApiError> {
    Ok(Json(accounts.get(user_id(&id)?).await?))
}
