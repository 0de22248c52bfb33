//! `GET /v1/admin/users/{id}/audit?limit=&cursor=`: a user's security events, newest first,
//! from whichever audit store is configured (DynamoDB with `AUDIT_TABLE`, else Postgres),
//! by keyset pagination on `(at, id)`.

use std::collections::HashMap;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::routing::get;
use axum::{Json, Router};
use serde::Serialize;

use super::{USER_AUDIT, user_id};
use crate::audit::{PagePosition, StoredEvent};
use crate::auth::Authenticator;
use crate::http::extract::AdminCaller;
use crate::http::problems;
use crate::http::state::AppState;
use crate::http::{ApiError, cursor};
use crate::services::{Accounts, DependencyError};

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USER_AUDIT, get(user_audit))
}

#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct AuditEventPage {
    /// The events, newest first.
    events: Vec<StoredEvent>,
    /// Pass as `cursor` for the next (older) page; null on the last page.
    #[schema(required = true)]
    next_cursor: Option<String>,
}

#[utoipa::path(
    get,
    path = USER_AUDIT,
    tag = "admin",
    summary = "A user's security events, newest first (keyset pagination)",
    description = "Login successes and failures (with the reason), lockouts, token issues, refreshes, reuse detections, logouts, password changes and resets, and admin actions on the user. Events are stored in the background, so one may show up a moment after the request that caused it. Kept for `AUDIT_RETENTION_DAYS` (default 90).",
    params(
        ("id" = String, Path, description = "The user's id (a UUID)"),
        ("limit" = Option<i64>, Query, minimum = 1, maximum = 100, description = "Page size, 1 to 100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "`next_cursor` of the previous page"),
    ),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "One page of events", body = AuditEventPage),
        (status = 400, description = "`validation_failed` (limit) or `malformed_request` (a cursor we did not issue for this user)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::Forbidden,
        problems::UserNotFound,
        (status = 503, description = "A dependency (Postgres, DynamoDB, Redis) is down (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn user_audit(
    State(accounts): State<Accounts>,
    State(authenticator): State<Authenticator>,
    AdminCaller(_admin): AdminCaller,
    Path(id): Path<String>,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
) -> Result<Json<AuditEventPage>, ApiError> {
    let id = user_id(&id)?;
    let params = cursor::query_params(query)?;
    let limit = cursor::page_limit(params.get("limit"))?;
    // The cursor is bound to the user it was issued for.
    let fingerprint = format!("audit:{id}");
    let keys = authenticator
        .tokens()
        .keys()
        .await
        .map_err(DependencyError::from)?;
    let after = cursor::position_after(&keys, params.get("cursor"), &fingerprint)?;
    let page = accounts.audit_trail(id, after, limit).await?;
    let last = page
        .events
        .last()
        .map(|e| PagePosition { at: e.at, id: e.id });
    let next_cursor = cursor::next_page(&keys, last, page.more, fingerprint);
    Ok(Json(AuditEventPage {
        events: page.events,
        next_cursor,
    }))
}
