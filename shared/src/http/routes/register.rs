//! `POST /v1/auth/register`: create an account ([`Accounts::create`] as a registration:
//! limited per client IP, `RATE_LIMIT_REGISTER_PER_IP_PER_MINUTE`, 429 past it; when Redis
//! cannot be reached the limit fails open, see [`crate::limits`] for why).

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;

use crate::domain::{Role, User};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;
use crate::services::accounts::Creator;

/// The route.
pub const PATH: &str = "/v1/auth/register";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(register))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct RegisterRequest {
    #[schema(example = "ada@example.com")]
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
    #[serde(default)]
    #[schema(schema_with = super::name_field)]
    name: Option<String>,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Register a new account",
    request_body(content = RegisterRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "Account created", body = User),
        (status = 400, description = "`malformed_request`, `invalid_email`, `weak_password` or `validation_failed` (name)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Email already registered (`email_taken`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "register", skip_all)]
async fn register(
    State(accounts): State<Accounts>,
    ip: ClientIp,
    ApiJson(body): ApiJson<RegisterRequest>,
) -> Result<(StatusCode, Json<User>), ApiError> {
    let user = accounts
        .create(
            &body.email,
            body.password.expose_secret(),
            body.name.as_deref(),
            Role::User,
            Creator::Registration { ip: ip.0 },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(user)))
}
