//! `GET /v1/users/me`: the caller's own account.

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};

use crate::domain::User;
use crate::http::ApiError;
use crate::http::extract::Authenticated;
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route (shared with `PATCH`, served by [`super::update_me`]).
pub const PATH: &str = "/v1/users/me";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(get_me))
}

#[utoipa::path(
    get,
    path = PATH,
    tag = "users",
    summary = "The caller's own account",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The caller", body = User),
        problems::Unauthorized,
        problems::Unavailable,
    )
)]
async fn get_me(
    State(accounts): State<Accounts>,
    Authenticated { caller, profile }: Authenticated,
) -> Result<Json<User>, ApiError> {
    Ok(Json(accounts.own_profile(caller, profile).await?))
}
