//! `GET /v1/admin/users?limit=&cursor=&email=&role=`: users newest first, by keyset
//! pagination (stable while users are being added: new users sort before the cursor).

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::USERS;
use crate::auth::Authenticator;
use crate::db::PagePosition;
use crate::db::admin::UserFilter;
use crate::domain::{Role, User};
use crate::http::extract::AdminCaller;
use crate::http::problems;
use crate::http::state::AppState;
use crate::http::{ApiError, cursor};
use crate::services::{Accounts, DependencyError};

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USERS, get(list_users))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct UserPage {
    users: Vec<User>,
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = USERS,
    tag = "admin",
    summary = "List users, newest first (keyset pagination)",
    params(
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("email" = Option<String>, Query, max_length = 254, pattern = r"^[^\x00-\x1F\x7F-\x9F]*$", description = "Case-insensitive substring of the email: at most 254 characters, no control characters (400 `validation_failed` otherwise, since no email holds them)"),
        ("role" = Option<Role>, Query, description = "Exact role"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users", body = UserPage),
        (status = 400, description = "`validation_failed` (limit, role, email) or `malformed_request` (a cursor we did not issue for these filters)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::Forbidden,
        problems::Unavailable,
    )
)]
async fn list_users(
    State(accounts): State<Accounts>,
    State(authenticator): State<Authenticator>,
    AdminCaller(_admin): AdminCaller,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let params = cursor::query_params(query)?;
    let limit = cursor::page_limit(params.get("limit"))?;
    let role = params
        .get("role")
        .map(|raw| raw.parse::<Role>())
        .transpose()
        .map_err(|_| ApiError::field("role", "unknown_role", "role must be user or admin"))?;
    let email = email_filter(params.get("email"))?;
    // The cursor is bound to the filters it was issued for.
    let fingerprint = format!(
        "email={}&role={}",
        email.as_deref().unwrap_or_default(),
        role.map(Role::as_str).unwrap_or_default()
    );
    let keys = authenticator
        .tokens()
        .keys()
        .await
        .map_err(DependencyError::from)?;
    let after = cursor::position_after(&keys, params.get("cursor"), &fingerprint)?;
    let filter = UserFilter {
        email_contains: email.as_deref(),
        role,
    };
    // One more than asked tells whether another page exists.
    let mut users = accounts.list(&filter, after, limit as i64 + 1).await?;
    let more = users.len() > limit;
    users.truncate(limit);
    let last = users.last().map(|u| PagePosition {
        at: u.created_at,
        id: u.id,
    });
    let next_cursor = cursor::next_page(&keys, last, more, fingerprint);
    Ok(Json(UserPage { users, next_cursor }))
}

/// The `email` filter, trimmed and lowercased (`None` when empty). No email is longer than
/// 254 characters or holds a control character, so such a filter is refused rather than
/// searched for (a NUL could not even be sent to Postgres).
fn email_filter(raw: Option<&String>) -> Result<Option<String>, ApiError> {
    let Some(raw) = raw else {
        return Ok(None);
    };
    let max = crate::domain::email::MAX_LEN;
    if raw.chars().count() > max || raw.chars().any(char::is_control) {
        return Err(ApiError::field(
            "email",
            "invalid_filter",
            format!("email must be at most {max} characters, none of them control characters"),
        ));
    }
    let email = raw.trim().to_lowercase();
    Ok((!email.is_empty()).then_some(email))
}
