//! The problem responses that several operations share, each declared once for the OpenAPI
//! document: a `#[utoipa::path]` lists the sets it can return next to its own responses.
//!
//! Documentation only: nothing constructs these types; what is sent is always an
//! [`ApiError`](super::ApiError) rendered as a [`Problem`]. An operation names only the sets
//! it can return: the hashing queue, for one, is only in [`UnavailableOrBusy`], for the
//! operations that hash a password.
// The types exist for their `IntoResponses` impls; their fields only name the body's schema.
#![allow(dead_code)]

use super::error::Problem;

/// For the operations that need an access token.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 401,
    description = "Missing, invalid, expired or revoked access token (`unauthorized`)",
    content_type = "application/problem+json"
)]
pub(crate) struct Unauthorized(Problem);

/// For the admin operations.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 403,
    description = "The caller is not an admin, or (with `ADMIN_REQUIRES_MFA`) its session passed no second factor (`forbidden`; the `detail` says which)",
    content_type = "application/problem+json"
)]
pub(crate) struct Forbidden(Problem);

/// For the admin operations on one user (`/v1/admin/users/{id}...`).
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "No such user, or the id is not a UUID (`not_found`)",
    content_type = "application/problem+json"
)]
pub(crate) struct UserNotFound(Problem);

/// For the operations on one of the caller's sessions (`/v1/users/me/sessions/{id}`).
#[derive(utoipa::IntoResponses)]
#[response(
    status = 404,
    description = "No such live session of the caller: unknown, ended already, another user's, or an id that is not a UUID (`not_found`)",
    content_type = "application/problem+json"
)]
pub(crate) struct SessionNotFound(Problem);

/// For the operations whose body has nothing to validate beyond its shape.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 400,
    description = "Malformed body (`malformed_request`)",
    content_type = "application/problem+json"
)]
pub(crate) struct Malformed(Problem);

/// For every operation that takes a JSON body.
#[derive(utoipa::IntoResponses)]
pub(crate) enum RefusedBody {
    #[response(
        status = 413,
        description = "Body over 64 KiB (`payload_too_large`)",
        content_type = "application/problem+json"
    )]
    TooLarge(Problem),
    #[response(
        status = 415,
        description = "Body is not JSON (`unsupported_media_type`)",
        content_type = "application/problem+json"
    )]
    UnsupportedMediaType(Problem),
}

/// For the operations behind a per-IP limit or the account lockout.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 429,
    description = "Too many attempts (`rate_limited`); see `Retry-After`",
    content_type = "application/problem+json",
    headers(("Retry-After" = u64, description = "Seconds to wait"))
)]
pub(crate) struct RateLimited(Problem);

/// For the operations that need Postgres or Redis but hash no password.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "A dependency is down (`unavailable`)",
    content_type = "application/problem+json"
)]
pub(crate) struct Unavailable(Problem);

/// For the operations that hash or verify a password (register, login, change password,
/// reset password, admin create): argon2 runs on a bounded queue, and a full queue is a 503.
#[derive(utoipa::IntoResponses)]
#[response(
    status = 503,
    description = "A dependency is down or the hashing queue is full (`unavailable`)",
    content_type = "application/problem+json"
)]
pub(crate) struct UnavailableOrBusy(Problem);
