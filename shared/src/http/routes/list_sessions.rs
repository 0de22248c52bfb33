//! `GET /v1/users/me/sessions`: the caller's live sessions, newest first
//! ([`Sessions::list`]).

use std::net::IpAddr;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use chrono::{DateTime, Utc};
use serde::Serialize;
use uuid::Uuid;

use crate::domain::user::rfc3339;
use crate::http::ApiError;
use crate::http::extract::Authenticated;
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Sessions;
use crate::services::sessions::ListedSession;

/// The route (its items are at [`super::delete_session::PATH`]).
pub const PATH: &str = "/v1/users/me/sessions";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(list_sessions))
}

/// The caller's live sessions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct SessionList {
    /// Newest first (at most the 1000 newest). A session is live while it is not ended
    /// (logout, deletion, password change or reset, reuse detection), not past its absolute
    /// lifetime, and its refresh token has not expired.
    sessions: Vec<SessionItem>,
}

/// One session: one login and the refreshes that followed it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = Session)]
struct SessionItem {
    /// The session id: the `sid` claim of its access tokens, and the `{id}` that deletes it.
    id: Uuid,
    /// The login.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    created_at: DateTime<Utc>,
    /// The login time, then the time of the latest refresh.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    last_used_at: DateTime<Utc>,
    /// When the session stops being refreshable unless it is refreshed before: its refresh
    /// token's expiry, the earlier of the idle expiry (moved by each refresh) and the
    /// session's absolute expiry (fixed at login). The same instant as the
    /// `refresh_expires_in` of the session's last token pair.
    #[serde(with = "rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    expires_at: DateTime<Utc>,
    /// The client IP seen at login; null when unknown.
    #[schema(value_type = Option<String>, required = true, example = "203.0.113.7")]
    ip: Option<IpAddr>,
    /// The `User-Agent` header seen at login, cut to 256 characters; null when absent.
    #[schema(required = true, max_length = 256)]
    user_agent: Option<String>,
    /// Whether this is the session of the access token that asked.
    current: bool,
}

impl From<ListedSession> for SessionItem {
    fn from(listed: ListedSession) -> Self {
        let session = listed.session;
        Self {
            id: session.id,
            created_at: session.created_at,
            last_used_at: session.last_used_at,
            expires_at: session.expires_at,
            ip: session.origin.ip,
            user_agent: session.origin.user_agent,
            current: listed.current,
        }
    }
}

#[utoipa::path(
    get,
    path = PATH,
    tag = "users",
    summary = "The caller's live sessions, newest first",
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The sessions; `current` marks the caller's own", body = SessionList),
        problems::Unauthorized,
        problems::Unavailable,
    )
)]
async fn list_sessions(
    State(sessions): State<Sessions>,
    Authenticated { caller, .. }: Authenticated,
) -> Result<Json<SessionList>, ApiError> {
    let listed = sessions.list(caller).await?;
    Ok(Json(SessionList {
        sessions: listed.into_iter().map(SessionItem::from).collect(),
    }))
}
