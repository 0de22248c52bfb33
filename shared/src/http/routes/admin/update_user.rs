//! `PATCH /v1/admin/users/{id}`: change a user's email, name, role, disabled state, whether
//! the email is verified, or remove its two-factor login.
//!
//! A role change rejects every access token issued before it (the refresh token keeps
//! working and mints tokens with the new role); disabling ends every session. Both take
//! effect at once on every instance. The last active admin cannot be demoted or disabled.

use axum::extract::{Path, State};
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;
use utoipa::openapi::schema::{Object, ObjectBuilder, SchemaType, Type};

use super::{USER, user_id};
use crate::domain::{Role, User};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ApiJson, ClientIp, present};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;
use crate::services::accounts::UserUpdate;

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(USER, patch(update_user))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateUserRequest {
    #[serde(default)]
    email: Option<String>,
    #[serde(default, deserialize_with = "present")]
    #[schema(schema_with = crate::http::routes::name_field)]
    name: Option<Option<String>>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
    /// Mark the address verified or not. A new `email` without it is unverified (and a
    /// verification link goes to it).
    #[serde(default)]
    email_verified: Option<bool>,
    /// `false` removes the user's two-factor login (a lost phone); `true` is 400
    /// `validation_failed` (only the user can turn it on).
    #[serde(default)]
    #[schema(schema_with = mfa_off_field)]
    mfa_enabled: Option<bool>,
}

/// `mfa_enabled` of an admin's change: `false` or `null` only (an admin can remove a second
/// factor, never add one).
fn mfa_off_field() -> Object {
    ObjectBuilder::new()
        .schema_type(SchemaType::from_iter([Type::Boolean, Type::Null]))
        .enum_values(Some([
            serde_json::Value::Bool(false),
            serde_json::Value::Null,
        ]))
        .description(Some(
            "`false` removes the user's two-factor login (a lost phone); `true` is 400 \
             `validation_failed`: only the user can turn it on.",
        ))
        .build()
}

#[utoipa::path(
    patch,
    path = USER,
    tag = "admin",
    summary = "Change a user's email, name, role, disabled state or email verification, or remove its two-factor login; takes effect at once",
    description = "An email change applies at once: the address is unverified unless the same \
        request sets `email_verified`, the old address gets a notice, an unverified new one a \
        verification link, and outstanding password-reset and email-change links stop working \
        (as they do when the user is disabled).",
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    params(("id" = String, Path, description = "The user's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "`malformed_request`, `invalid_email` or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::Forbidden,
        problems::UserNotFound,
        (status = 409, description = "`email_taken`, or `last_admin` when it would leave no active admin", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "admin_update_user", skip_all)]
async fn update_user(
    State(accounts): State<Accounts>,
    AdminCaller(admin): AdminCaller,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let update = UserUpdate {
        email: body.email,
        name: body.name,
        role: body.role,
        disabled: body.disabled,
        email_verified: body.email_verified,
        mfa_enabled: body.mfa_enabled,
    };
    Ok(Json(
        accounts
            .admin_update(admin, user_id(&id)?, update, ip.0)
            .await?,
    ))
}
