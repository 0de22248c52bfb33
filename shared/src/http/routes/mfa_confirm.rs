//! `POST /v1/users/me/mfa/totp/confirm`: turn two-factor login on with a first code of the
//! pending secret; the recovery codes come back once ([`Accounts::confirm_mfa`]).

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::{Deserialize, Serialize};

use crate::http::ApiError;
use crate::http::extract::{ApiJson, Authenticated, ClientIp};
use crate::http::problems;
use crate::http::state::AppState;
use crate::services::Accounts;

/// The route.
pub const PATH: &str = "/v1/users/me/mfa/totp/confirm";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(mfa_confirm))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaConfirmRequest {
    /// A current 6-digit code of the pending secret.
    #[schema(value_type = String, format = Password, example = "123456")]
    code: SecretString,
}

/// The recovery codes: shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct RecoveryCodes {
    /// Ten single-use codes (80 random bits each), for when the authenticator is lost; each
    /// replaces a TOTP code once at `POST /v1/auth/login/mfa` or
    /// `POST /v1/users/me/mfa/disable`. Stored only as hashes.
    #[schema(example = json!(["k7qd-3mzv-a2xe-tp5w"]))]
    recovery_codes: Vec<String>,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "users",
    summary = "Turn two-factor login on with a first code",
    description = "The code must be a current code of the secret from \
        `POST /v1/users/me/mfa/totp` (the step before or after is accepted too); it then counts \
        as used. `mfa_enabled` becomes true, a notice goes to the account's address, and later \
        logins need a second step. 400 `invalid_mfa_code` for a wrong code or when no set-up is \
        pending (also when two-factor login is on already).",
    request_body(content = MfaConfirmRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "On; the recovery codes, shown this once", body = RecoveryCodes),
        (status = 400, description = "`malformed_request`, or a wrong code or no pending set-up (`invalid_mfa_code`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::Unauthorized,
        problems::RefusedBody,
        problems::Unavailable,
    )
)]
#[tracing::instrument(name = "mfa_confirm", skip_all)]
async fn mfa_confirm(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<MfaConfirmRequest>,
) -> Result<Json<RecoveryCodes>, ApiError> {
    let recovery_codes = accounts
        .confirm_mfa(caller, body.code.expose_secret(), ip.0)
        .await?;
    Ok(Json(RecoveryCodes { recovery_codes }))
}
