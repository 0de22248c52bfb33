//! `GET /v1/admin/users?limit=&cursor=&email=&role=`: users newest first, by keyset
//! pagination (stable while users are being added: new users sort before the cursor).

use std::collections::HashMap;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::USERS;
use crate::app::AppState;
use crate::db::admin::{PagePosition, UserFilter};
use crate::domain::{Role, User};
use crate::http::extract::AdminCaller;
use crate::http::{ApiError, cursor};

/// Page size when `limit` is absent.
pub const DEFAULT_LIMIT: i64 = 20;
/// Largest page size.
pub const MAX_LIMIT: i64 = 100;

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
        ("limit" = Option<i64>, Query, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
        ("email" = Option<String>, Query, description = "Case-insensitive substring of the email"),
        ("role" = Option<Role>, Query, description = "Exact role"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of users", body = UserPage),
        (status = 400, description = "`validation_failed` (limit, role) or `malformed_request` (a cursor we did not issue for these filters)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked access token (`unauthorized`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin (`forbidden`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn list_users(
    State(state): State<AppState>,
    AdminCaller(_admin): AdminCaller,
    query: Result<Query<HashMap<String, String>>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<UserPage>, ApiError> {
    let Query(params) =
        query.map_err(|_| ApiError::MalformedRequest("the query string is malformed".into()))?;
    let limit = match params.get("limit") {
        None => DEFAULT_LIMIT,
        Some(raw) => raw
            .parse::<i64>()
            .ok()
            .filter(|n| (1..=MAX_LIMIT).contains(n))
            .ok_or_else(|| {
                ApiError::field(
                    "limit",
                    "out_of_range",
                    "limit must be a whole number from 1 to 100",
                )
            })?,
    };
    let role = params
        .get("role")
        .map(|raw| raw.parse::<Role>())
        .transpose()
        .map_err(|_| ApiError::field("role", "unknown_role", "role must be user or admin"))?;
    let email = params
        .get("email")
        .map(|e| e.trim().to_lowercase())
        .filter(|e| !e.is_empty());
    // The cursor is bound to the filters it was issued for.
    let fingerprint = format!(
        "email={}&role={}",
        email.as_deref().unwrap_or_default(),
        role.map(Role::as_str).unwrap_or_default()
    );
    let keys = state.tokens.keys();
    let after = params
        .get("cursor")
        .map(|raw| cursor::decode(keys, raw, &fingerprint))
        .transpose()?
        .map(|p| {
            p.created_at()
                .map(|created_at| PagePosition {
                    created_at,
                    id: p.id,
                })
                .ok_or_else(|| ApiError::MalformedRequest("cursor is out of range".into()))
        })
        .transpose()?;
    let filter = UserFilter {
        email_contains: email.as_deref(),
        role,
    };
    // One more than asked tells whether another page exists.
    let mut users = state.db.list_users(&filter, after, limit + 1).await?;
    let more = users.len() as i64 > limit;
    users.truncate(limit as usize);
    let next_cursor = match users.last() {
        Some(last) if more => Some(cursor::encode(
            keys,
            &cursor::Position::after(last.created_at, last.id, fingerprint),
        )),
        _ => None,
    };
    Ok(Json(UserPage { users, next_cursor }))
}
