//! `GET /healthz` (the process is up) and `GET /readyz` (Postgres and Redis answer).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};

use crate::http::ApiError;
use crate::http::state::{AppState, Readiness};
use crate::services::DependencyError;

/// Liveness route.
pub const HEALTHZ: &str = "/healthz";
/// Readiness route.
pub const READYZ: &str = "/readyz";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new()
        .route(HEALTHZ, get(healthz))
        .route(READYZ, get(readyz))
}

#[utoipa::path(
    get,
    path = HEALTHZ,
    tag = "health",
    summary = "Liveness: the process is up",
    responses((status = 200, description = "Up", body = Object, example = json!({"status": "ok"})))
)]
async fn healthz() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[utoipa::path(
    get,
    path = READYZ,
    tag = "health",
    summary = "Readiness: Postgres and Redis answer",
    responses(
        (status = 200, description = "Ready", body = Object,
            example = json!({"status": "ready", "postgres": "ok", "redis": "ok"})),
        (status = 503, description = "Postgres or Redis is unreachable (`unavailable`)",
            body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn readyz(State(readiness): State<Readiness>) -> Result<(StatusCode, Json<Value>), ApiError> {
    let (db, cache) = tokio::join!(readiness.db.ping(), readiness.cache.ping());
    match (db, cache) {
        (Ok(()), Ok(())) => Ok((
            StatusCode::OK,
            Json(json!({ "status": "ready", "postgres": "ok", "redis": "ok" })),
        )),
        (Err(e), _) => Err(DependencyError::from(e).into()),
        (_, Err(e)) => Err(DependencyError::from(e).into()),
    }
}
