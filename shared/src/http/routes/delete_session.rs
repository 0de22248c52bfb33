//! `DELETE /v1/users/me/sessions/{id}`: end one of the caller's sessions, exactly as a
//! logout ends it ([`Sessions::end`]).

use axum::Router;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::routing::delete;
use uuid::Uuid;

use crate::http::ApiError;
use crate::http::extract::{ClientIp, LogoutCaller};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Sessions;

/// The route.
pub const PATH: &str = "/v1/users/me/sessions/{id}";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, delete(delete_session))
}

#[utoipa::path(
    delete,
    path = PATH,
    tag = "users",
    summary = "End one of the caller's sessions",
    description = "Ends the session at once, as a logout does: its access and refresh tokens \
        stop working on every instance. The caller may end its own current session (its \
        token then stops working). Answered 503, it may be repeated (with the same token, \
        even if that session's token was already cut off), and the repeat completes it.",
    params(("id" = Uuid, Path, description = "The session's id (`id` in the list, the `sid` of its access tokens)")),
    security(("bearer" = [])),
    responses(
        (status = 204, description = "Session ended"),
        problems::Unauthorized,
        problems::SessionNotFound,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "delete_session", skip_all)]
async fn delete_session(
    State(sessions): State<Sessions>,
    caller: LogoutCaller,
    ip: ClientIp,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    // Anything that is not a UUID names no session: 404 like an unknown one.
    let id: Uuid = id.parse().map_err(|_| ApiError::NotFound)?;
    match caller {
        LogoutCaller::Live(authorized) => sessions.end(authorized.caller, id, ip.0).await?,
        LogoutCaller::CutOff(caller) => sessions.end_again(caller, id, ip.0).await?,
    }
    Ok(StatusCode::NO_CONTENT)
}
