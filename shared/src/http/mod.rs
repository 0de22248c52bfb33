//! The HTTP layer: one small router per endpoint (in [`routes`]), and [`with_common_layers`],
//! which gives any of them the same behaviour at the edges: problem responses for unknown
//! routes and methods, the 64 KiB body limit, `Cache-Control: no-store` on every `/v1/`
//! response, and one log event per request.
//!
//! The local server serves [`router`] (all endpoints); a Lambda function serves
//! `with_common_layers(routes::<endpoint>::router(), state)`, so both run the same code.

pub(crate) mod cursor;
pub(crate) mod error;
pub(crate) mod extract;
pub mod openapi;
pub(crate) mod problems;
pub mod routes;
pub mod server;
pub(crate) mod state;

use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, MatchedPath, Request};
use axum::http::{HeaderName, HeaderValue, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use tracing::Instrument as _;

pub(crate) use error::ApiError;

pub use state::AppState;

/// Largest accepted request body.
pub const MAX_BODY_BYTES: usize = 64 * 1024;

/// Every endpoint, with the common layers: what the local server serves.
pub fn router(state: AppState) -> Router {
    with_common_layers(routes::all(), state)
}

/// Asks the Lambda wrapper ([`crate::lambda`]) to hold a response until this long after
/// its request arrived (a response extension; the local server ignores it).
#[derive(Debug, Clone, Copy)]
pub struct MinimumResponseTime(pub std::time::Duration);

/// Gives `routes` the behaviour every endpoint shares and binds the state.
pub fn with_common_layers(routes: Router<AppState>, state: AppState) -> Router {
    routes
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(MAX_BODY_BYTES))
        .layer(middleware::from_fn(reject_large_bodies))
        .layer(middleware::from_fn(log_request))
        .with_state(state)
}

/// The value every `/v1/` response carries in `Cache-Control`.
pub const NO_STORE: &str = "no-store";

/// Whether responses to `path` must never be kept by a cache: everything under `/v1/` (the
/// contract: tokens, profiles and problems are per caller and per moment), and the health
/// probes (a cached readiness answer hides an outage). The JWKS keeps its own
/// `Cache-Control` (keys are meant to be cached), and the OpenAPI document and page none.
fn never_cached(path: &str) -> bool {
    path == "/v1"
        || path.starts_with("/v1/")
        || path == routes::health::HEALTHZ
        || path == routes::health::READYZ
}

async fn not_found() -> ApiError {
    ApiError::NotFound
}

async fn method_not_allowed() -> ApiError {
    ApiError::MethodNotAllowed
}

/// 413 from `Content-Length` alone, before a byte of the body is read. Bodies without a
/// length (chunked) are cut off at the same size by [`DefaultBodyLimit`].
async fn reject_large_bodies(request: Request, next: Next) -> Response {
    let declared = request
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok());
    match declared {
        Some(length) if length > MAX_BODY_BYTES as u64 => ApiError::PayloadTooLarge.into_response(),
        _ => next.run(request).await,
    }
}

static REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// One structured event per request: method, route, status, latency and request id (taken
/// from `X-Request-Id` when it looks sane, else a new UUIDv7; echoed in the response).
///
/// Outermost of the common layers, it also gives the responses of [`never_cached`] paths
/// `Cache-Control: no-store`, whatever answered: a handler, an extractor's problem, a
/// layer's 413, the 404 and 405 fallbacks. (One layer for both: each `from_fn` layer costs
/// every request a boxed future and a clone of the service inside it.)
async fn log_request(request: Request, next: Next) -> Response {
    let started = Instant::now();
    let no_store = never_cached(request.uri().path());
    let request_id = request
        .headers()
        .get(&REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .filter(|v| {
            !v.is_empty()
                && v.len() <= 64
                && v.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let method = request.method().clone();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map_or_else(|| "unmatched".to_owned(), |p| p.as_str().to_owned());
    let span = tracing::info_span!("request", %request_id, %method, %route);
    let mut response = next.run(request).instrument(span.clone()).await;
    let status = response.status().as_u16();
    let latency_ms = started.elapsed().as_secs_f64() * 1000.0;
    span.in_scope(|| {
        tracing::info!(target: "http", status, latency_ms, "request handled");
    });
    if let Ok(value) = HeaderValue::from_str(&request_id) {
        response.headers_mut().insert(REQUEST_ID.clone(), value);
    }
    if no_store {
        response
            .headers_mut()
            .insert(header::CACHE_CONTROL, HeaderValue::from_static(NO_STORE));
    }
    response
}
