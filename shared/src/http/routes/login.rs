//! `POST /v1/auth/login`: trade email and password for a token pair.
//!
//! Unknown email, wrong password and disabled account all get the same answer after the
//! same amount of work (an argon2 verify), so neither the status nor the timing tells an
//! attacker which accounts exist.
//!
//! Abuse limits ([`crate::limits`]), in this order: the client IP's per-minute limit, then
//! the account's lockout (429 `rate_limited` whatever the password, before any password
//! work; counted per email, so unknown emails lock exactly like known ones), then the
//! verify. A refusal counts as a failure of the account, a success clears its count. If
//! Redis cannot be reached the limits cannot be checked, and login answers 503: it fails
//! closed rather than allow unlimited guessing.

use axum::extract::State;
use axum::routing::post;
use axum::{Json, Router};
use secrecy::{ExposeSecret as _, SecretString};
use serde::Deserialize;
use uuid::Uuid;

use super::{TokenPair, new_refresh_token};
use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::auth::hashing::{HashError, Verification};
use crate::db::DbError;
use crate::db::users::UserRecord;
use crate::domain::{Email, PasswordAttempt};
use crate::http::ApiError;
use crate::http::extract::{ApiJson, ClientIp};
use crate::limits::{IpAction, Verdict};
use crate::telemetry::{self, metric};

/// The route.
pub const PATH: &str = "/v1/auth/login";

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(login))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct LoginRequest {
    email: String,
    #[schema(value_type = String, format = Password)]
    password: SecretString,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Log in with email and password",
    request_body(content = LoginRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "Token pair", body = TokenPair),
        (status = 400, description = "`malformed_request` or `invalid_email`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 401, description = "Unknown email, wrong password or disabled account: one answer for all (`invalid_credentials`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many attempts (`rate_limited`); see `Retry-After`", body = crate::http::error::Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is down or the hashing queue is full (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "login", skip_all)]
async fn login(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<LoginRequest>,
) -> Result<Json<TokenPair>, ApiError> {
    state.limits.enforce_ip(IpAction::Login, ip.0).await?;
    let email = Email::parse(&body.email)?;
    // Keys first: no session (and no spent lockout slot) for a token that cannot be signed.
    state.tokens.keys().await?;
    let attempt = PasswordAttempt::new(body.password.expose_secret());
    if let Verdict::Limited { retry_after_secs } = state.limits.login_begin(&email).await? {
        AuditEvent::failure("login", "rate_limited")
            .ip(ip.0)
            .record(&state.audit);
        return Err(ApiError::RateLimited { retry_after_secs });
    }
    let (record, needs_rehash) = match verify(&state, &email, &attempt, ip).await {
        Ok(verified) => {
            if let Err(e) = state.limits.login_succeeded(&email).await {
                tracing::warn!(error = %e, "could not clear the account's failed logins");
            }
            verified
        }
        Err(Refusal::Credentials { user_id }) => {
            record_failure(&state, &email, user_id, ip).await;
            telemetry::count(metric::LOGIN_FAILED);
            return Err(ApiError::InvalidCredentials);
        }
        Err(Refusal::Error(e)) => {
            if let Err(e) = state.limits.login_abandoned(&email).await {
                tracing::warn!(error = %e, "could not release the login attempt");
            }
            return Err(e);
        }
    };
    let user_id = record.user.id;
    if needs_rehash {
        spawn_rehash(&state, &record, attempt);
    }
    let refresh = new_refresh_token()?;
    let created = state
        .db
        .create_session(
            user_id,
            refresh.hash(),
            state.config.refresh_token_ttl,
            state.config.session_max_lifetime,
        )
        .await?;
    // Disabled or deleted while the password was being checked: same answer as any failure.
    let Some((session, current)) = created else {
        return Err(ApiError::InvalidCredentials);
    };
    let pair = TokenPair::issue(&state, current.user, &session, &refresh).await?;
    telemetry::count(metric::LOGIN_SUCCEEDED);
    AuditEvent::success("login")
        .user(user_id)
        .session(session.session_id)
        .ip(ip.0)
        .record(&state.audit);
    Ok(Json(pair))
}

/// Why [`verify`] did not let the caller in.
enum Refusal {
    /// Unknown email, wrong password or disabled account (the user when there is one).
    Credentials { user_id: Option<Uuid> },
    /// A dependency failed: no verdict on the password.
    Error(ApiError),
}

impl From<DbError> for Refusal {
    fn from(e: DbError) -> Self {
        Refusal::Error(e.into())
    }
}

impl From<HashError> for Refusal {
    fn from(e: HashError) -> Self {
        Refusal::Error(e.into())
    }
}

/// Checks the credentials; on success the account's record and whether its hash should be
/// upgraded. Every refusal is audited here.
async fn verify(
    state: &AppState,
    email: &Email,
    attempt: &PasswordAttempt,
    ip: ClientIp,
) -> Result<(UserRecord, bool), Refusal> {
    let record = state.db.user_by_email(email).await?;
    let Some(record) = record else {
        state.hasher.verify_dummy(attempt).await?;
        AuditEvent::failure("login", "unknown_email")
            .ip(ip.0)
            .record(&state.audit);
        return Err(Refusal::Credentials { user_id: None });
    };
    let verification = state.hasher.verify(attempt, &record.password_hash).await?;
    let user_id = record.user.id;
    match verification {
        Verification::Mismatch => {
            AuditEvent::failure("login", "wrong_password")
                .user(user_id)
                .ip(ip.0)
                .record(&state.audit);
            Err(Refusal::Credentials {
                user_id: Some(user_id),
            })
        }
        Verification::Match { .. } if record.user.disabled => {
            AuditEvent::failure("login", "disabled")
                .user(user_id)
                .ip(ip.0)
                .record(&state.audit);
            Err(Refusal::Credentials {
                user_id: Some(user_id),
            })
        }
        Verification::Match { needs_rehash } => Ok((record, needs_rehash)),
    }
}

/// Counts a refused login against the account; audits the lockout it may start. The
/// answer stays 401 if Redis fails here: the attempt's reserved slot keeps counting until
/// it expires.
async fn record_failure(state: &AppState, email: &Email, user_id: Option<Uuid>, ip: ClientIp) {
    match state.limits.login_failed(email).await {
        Ok(Some(lock_secs)) => {
            let mut event = AuditEvent::failure("login", "locked_out").ip(ip.0);
            if let Some(user_id) = user_id {
                event = event.user(user_id);
            }
            event.record(&state.audit);
            tracing::info!(lock_secs, "account locked after repeated failed logins");
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(error = %e, "could not count the failed login"),
    }
}

/// Replaces a hash made with older parameters, after the response: the login does not wait
/// for a second argon2 run. Guarded so a concurrent password change wins.
fn spawn_rehash(state: &AppState, record: &UserRecord, attempt: PasswordAttempt) {
    let state = state.clone();
    let user_id = record.user.id;
    let old_hash = record.password_hash.clone();
    let background = state.background.clone();
    background.spawn(async move {
        let result = async {
            let new_hash = state.hasher.rehash(&attempt).await?;
            state
                .db
                .set_password_hash(user_id, &new_hash, Some(&old_hash))
                .await?;
            Ok::<_, ApiError>(())
        }
        .await;
        match result {
            Ok(()) => tracing::info!(%user_id, "password re-hashed with current parameters"),
            Err(e) => tracing::warn!(%user_id, error = %e, "password re-hash failed"),
        }
    });
}
