//! `POST /v1/admin/users`: create a user (of either role), with the same validation as
//! registration.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use super::USERS;
use crate::domain::{Role, User};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ApiJson, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;
use crate::services::accounts::Creator;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USERS, post(create_user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateUserRequest {
    #[schema(example = "ada@example.com")]
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    #[schema(schema_with = crate::http::routes::name_field)]
    name: Option<String>,
    #[serde(default)]
    role: Option<Role>,
    /// Whether the address counts as verified (default false: a verification link goes to it).
    #[serde(default)]
    email_verified: Option<bool>,
}

#[utoipa::path(
    post,
    path = USERS,
    tag = "admin",
    summary = "Create a user of either role (same validation as registration)",
    request_body(content = CreateUserRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 201, description = "User created", body = User),
        (status = 400, description = "`malformed_request`, `invalid_email`, `weak_password` or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::Forbidden,
        (status = 409, description = "Email already registered (`email_taken`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "admin_create_user", skip_all)]
async fn create_user(
    State(accounts): State<Accounts>,
    AdminCaller(admin): AdminCaller,
    ip: ClientIp,
    ApiJson(body): ApiJson<CreateUserRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let by = Creator::Admin {
        admin_id: admin.user_id,
        ip: ip.0,
        email_verified: body.email_verified.unwrap_or(false),
    };
    let user = accounts
        .create(
            &body.email,
            body.password.expose_secret(),
            body.name.as_deref(),
            body.role.unwrap_or(Role::User),
            by,
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}
