//! `GET /.well-known/jwks.json`: the public keys that may have signed a live token.

use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};

use crate::auth::Authenticator;
use crate::http::ApiError;
use crate::http::state::AppState;
use crate::services::DependencyError;

/// The route.
pub const PATH: &str = "/.well-known/jwks.json";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, get(jwks))
}

#[utoipa::path(
    get,
    path = PATH,
    tag = "keys",
    summary = "The public keys that may have signed a live access token",
    responses(
        (status = 200, description = "JSON Web Key Set (RFC 7517)", body = crate::http::openapi::Jwks),
        (status = 503, description = "The signing keys cannot be read (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
async fn jwks(State(authenticator): State<Authenticator>) -> Result<impl IntoResponse, ApiError> {
    let keys = authenticator
        .tokens()
        .keys()
        .await
        .map_err(DependencyError::from)?;
    Ok((
        // Verifiers may cache it briefly; a rotation publishes the new key before using it.
        [(header::CACHE_CONTROL, "public, max-age=300")],
        Json(keys.jwks()),
    ))
}
