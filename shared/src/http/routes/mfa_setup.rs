//! `POST /v1/users/me/mfa/totp`: start a two-factor set-up: a new TOTP secret for an
//! authenticator app, pending until a code confirms it ([`Accounts::start_mfa_setup`]).

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
pub const PATH: &str = "/v1/users/me/mfa/totp";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(mfa_setup))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MfaSetupRequest {
    /// The caller's password: a login attempt for the account's lockout.
    #[schema(value_type = String, format = Password)]
    current_password: SecretString,
}

/// The secret to enter into an authenticator app (or the URI to show as a QR code).
#[derive(Debug, Serialize, utoipa::ToSchema)]
struct TotpSecretResponse {
    /// 160 random bits, base32 without padding.
    #[schema(example = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP")]
    secret: String,
    /// `otpauth://totp/<issuer>:<email>?secret=...&issuer=<issuer>&algorithm=SHA1&digits=6&period=30`.
    #[schema(
        example = "otpauth://totp/user-service:ada@example.com?secret=JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP&issuer=user-service&algorithm=SHA1&digits=6&period=30"
    )]
    otpauth_uri: String,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "users",
    summary = "Start setting up two-factor login (TOTP)",
    description = "409 `mfa_already_enabled` when it is on. Then `current_password`, which counts \
        like a login attempt (a wrong one is a failed attempt for the lockout; 429 while locked). \
        Returns a new secret (SHA-1, 6 digits, 30-second steps); nothing is on until \
        `POST /v1/users/me/mfa/totp/confirm` gets a code of it. Asking again replaces the \
        pending secret. The secret is stored encrypted (AES-256-GCM, key outside the database).",
    request_body(content = MfaSetupRequest, content_type = "application/json"),
    security(("bearer" = [])),
    responses(
        (status = 200, description = "The pending secret", body = TotpSecretResponse),
        problems::Malformed,
        problems::Unauthorized,
        (status = 403, description = "Wrong `current_password` (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 409, description = "Two-factor login is on already (`mfa_already_enabled`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        problems::RefusedBody,
        problems::RateLimited,
        problems::UnavailableOrBusy,
    )
)]
#[tracing::instrument(name = "mfa_setup", skip_all)]
async fn mfa_setup(
    State(accounts): State<Accounts>,
    Authenticated { caller, .. }: Authenticated,
    ip: ClientIp,
    ApiJson(body): ApiJson<MfaSetupRequest>,
) -> Result<Json<TotpSecretResponse>, ApiError> {
    let setup = accounts
        .start_mfa_setup(caller, body.current_password.expose_secret(), ip.0)
        .await?;
    Ok(Json(TotpSecretResponse {
        secret: setup.secret,
        otpauth_uri: setup.otpauth_uri,
    }))
}
