//! `PATCH /v1/admin/users/{id}`: change a user's email, name, role or disabled state.
//!
//! A role change rejects every access token issued before it (the refresh token keeps
//! working and mints tokens with the new role); disabling ends every session. Both take
//! effect at once on every instance. The last active admin cannot be demoted or disabled.

use axum::extract::{Path, State};
use axum::routing::patch;
use axum::{Json, Router};
use serde::Deserialize;

use super::{USER, user_id};
use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::db::admin::AdminChange;
use crate::domain::{Email, Role, User};
use crate::http::ApiError;
use crate::http::extract::{AdminCaller, ApiJson, ClientIp};
use crate::http::routes::update_me::{name_change, present};

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
    #[schema(value_type = Option<String>, pattern = r"^[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F](?:[^\u0000-\u001F\u007F-\u009F]{0,98}[^\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000\u0000-\u001F\u007F-\u009F])?[\t\n\u000B\f\r \u0085\u00A0\u1680\u2000-\u200A\u2028\u2029\u202F\u205F\u3000]*$")]
    name: Option<Option<String>>,
    #[serde(default)]
    role: Option<Role>,
    #[serde(default)]
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = USER,
    tag = "admin",
    summary = "Change a user's email, name, role or disabled state; takes effect at once",
    request_body(content = UpdateUserRequest, content_type = "application/json"),
    params(("id" = String, Path, description = "The user's id (a UUID)")),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The updated user", body = User),
        (status = 400, description = "`malformed_request`, `invalid_email` or `validation_failed`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Missing, invalid, expired or revoked access token (`unauthorized`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 403, description = "The caller is not an admin (`forbidden`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 404, description = "No such user, or the id is not a UUID (`not_found`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "`email_taken`, or `last_admin` when it would leave no active admin", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "admin_update_user", skip_all)]
async fn update_user(
    State(state): State<AppState>,
    AdminCaller(admin): AdminCaller,
    ip: ClientIp,
    Path(id): Path<String>,
    ApiJson(body): ApiJson<UpdateUserRequest>,
) -> Result<Json<User>, ApiError> {
    let id = user_id(&id)?;
    let email = body.email.as_deref().map(Email::parse).transpose()?;
    let name = name_change(body.name)?;
    let change = AdminChange {
        email: email.as_ref(),
        name: name.as_ref().map(Option::as_ref),
        role: body.role,
        disabled: body.disabled,
    };
    let revocations = &state.revocations;
    let mark = |at| async move { Ok(revocations.mark_user(id, at).await?) };
    let (user, effects) = state.db.change_user(id, change, mark).await?;
    state.profiles.changed(id).await;
    let mut changed = Vec::new();
    for (field, is_set) in [
        ("email", body.email.is_some()),
        ("name", name.is_some()),
        ("role", body.role.is_some()),
        ("disabled", body.disabled.is_some()),
    ] {
        if is_set {
            changed.push(field);
        }
    }
    AuditEvent::success("admin_user_updated")
        .actor(admin.user_id)
        .user(user.id)
        .ip(ip.0)
        .changes(changed.join(","))
        .reason(if effects.sessions_ended {
            "sessions_ended"
        } else if effects.access_tokens_cut_off {
            "access_tokens_cut_off"
        } else {
            "profile_only"
        })
        .record(&state.audit);
    Ok(Json(user))
}
