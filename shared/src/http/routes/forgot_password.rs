//! `POST /v1/auth/password/forgot`: email a one-time password-reset link.
//!
//! The answer is 202 for every well-formed email, after the same work: the per-IP limit and
//! the per-email limit (both in Redis, keyed by the email's hash whether an account has it
//! or not). Everything that depends on the account (the lookup, minting the token and
//! storing its hash, building and sending the email) happens in a background task after
//! the response, so neither the status nor the response time tells a client whether an
//! account exists. Audit events and logs record why no email went out (unknown email,
//! disabled account, per-email limit, a database or mail failure); clients never see them.
//! The price: a Postgres outage is not reported to the client (it gets 202, the failure is
//! logged), since answering 503 only for the requests that reach the lookup would be the
//! very difference this design avoids.
//!
//! The email carries `PUBLIC_BASE_URL/reset-password?token=<token>`: 256 random bits as 43
//! base64url characters, of which only the SHA-256 is stored, valid for
//! `PASSWORD_RESET_TTL_SECONDS` (30 minutes) and once. A newer request deletes the older
//! tokens of the account. Past `RATE_LIMIT_FORGOT_PER_EMAIL_PER_HOUR` requests for one
//! email, the answer is still 202 but no email is sent. If Redis cannot be reached, the
//! request fails closed with 503 (see [`crate::limits`]): emails, once sent, cannot be
//! taken back.
//!
//! On AWS Lambda the background task runs while the execution environment is thawed: the
//! environment is frozen between invocations, so a delivery that has not finished when the
//! response goes out resumes with the next invocation of that environment.

use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::post;
use axum::{Extension, Router};
use chrono::{DateTime, Utc};
use serde::Deserialize;
use tracing::Instrument as _;

use crate::app::AppState;
use crate::audit::AuditEvent;
use crate::auth::opaque::OpaqueToken;
use crate::domain::Email;
use crate::http::extract::{ApiJson, ClientIp};
use crate::http::{ApiError, MinimumResponseTime};
use crate::limits::IpAction;
use crate::mail::OutgoingEmail;

/// The route.
pub const PATH: &str = "/v1/auth/password/forgot";

/// Where the link in the email points, under `PUBLIC_BASE_URL`.
pub const RESET_PAGE: &str = "/reset-password";

/// The audit event kind (the same the per-IP limit records for this endpoint).
const AUDIT_KIND: &str = "password_forgot";

/// How long the background work waits before it starts (see [`ForgotRequest::process`]).
const START_DELAY: Duration = Duration::from_millis(5);

/// This endpoint's router.
pub fn router() -> Router<AppState> {
    Router::new().route(PATH, post(forgot_password))
}

#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct ForgotPasswordRequest {
    /// The account's email.
    email: String,
}

#[utoipa::path(
    post,
    path = PATH,
    tag = "auth",
    summary = "Email a one-time password-reset link",
    description = "Always 202 for a well-formed email, whether or not an account has it, and \
        in the same time. For an existing, enabled account an email is sent whose text holds \
        `PUBLIC_BASE_URL/reset-password?token=<token>` (43 base64url characters), valid once \
        for 30 minutes by default; a newer request invalidates the older link. Past a few \
        requests per email per hour the answer stays 202 but no email is sent.",
    request_body(content = ForgotPasswordRequest, content_type = "application/json"),
    responses(
        (status = 202, description = "Accepted: an email is on its way if the account exists and is enabled"),
        (status = 400, description = "`malformed_request` or `invalid_email`", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body over 64 KiB (`payload_too_large`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 415, description = "Body is not JSON (`unsupported_media_type`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
        (status = 429, description = "Too many requests from this client (`rate_limited`); see `Retry-After`", body = crate::http::error::Problem, content_type = "application/problem+json", headers(("Retry-After" = u64, description = "Seconds to wait"))),
        (status = 503, description = "A dependency is down (`unavailable`)", body = crate::http::error::Problem, content_type = "application/problem+json"),
    )
)]
#[tracing::instrument(name = "forgot_password", skip_all)]
async fn forgot_password(
    State(state): State<AppState>,
    ip: ClientIp,
    ApiJson(body): ApiJson<ForgotPasswordRequest>,
) -> Result<impl IntoResponse, ApiError> {
    state.limits.enforce_ip(IpAction::Forgot, ip.0).await?;
    let email = Email::parse(&body.email)?;
    let requested_at = Utc::now();
    // Counted for every email, whether an account has it or not.
    let allowed = state.limits.forgot_allowed(&email).await?;
    let request = ForgotRequest {
        email,
        allowed,
        requested_at,
        ip,
    };
    let background = state.background.clone();
    background.spawn(
        request
            .process(state)
            .instrument(tracing::info_span!("password_forgot")),
    );
    Ok((
        Extension(MinimumResponseTime(LAMBDA_RESPONSE_FLOOR)),
        StatusCode::ACCEPTED,
    ))
}

/// On Lambda the lookup and the email run before the invocation ends (a frozen sandbox runs
/// nothing), so the answer waits for them; it also waits this long in all, so that its
/// timing does not tell whether an account exists. It covers a slow email service; the
/// local server answers at once and does the work afterwards.
pub const LAMBDA_RESPONSE_FLOOR: Duration = Duration::from_secs(1);

/// A forgot request, handled after the response.
struct ForgotRequest {
    email: Email,
    /// Within the per-email limit.
    allowed: bool,
    /// When the request arrived (orders two requests of one account).
    requested_at: DateTime<Utc>,
    ip: ClientIp,
}

impl ForgotRequest {
    /// Looks the account up and, for an existing, enabled one within the per-email limit,
    /// stores a new token's hash (unless a newer request got there first) and emails the
    /// link, with retries. Every outcome is audited or logged; the client was answered
    /// already and learns none of it.
    async fn process(self, state: AppState) {
        // Start once the response is on its way, so that the work only a real account
        // gets does not compete with writing it (measured: without this pause, answers for
        // existing accounts came out a few percent slower on a 2-CPU machine).
        tokio::time::sleep(START_DELAY).await;
        let ip = self.ip.0;
        let record = match state.db.user_by_email(&self.email).await {
            Ok(record) => record,
            Err(e) => {
                tracing::error!(
                    error = %format!("{:#}", anyhow::Error::new(e)),
                    "could not look the account up; no email sent"
                );
                return;
            }
        };
        let user = match record {
            Some(record) if !record.user.disabled && self.allowed => record.user,
            refused => {
                let event = match refused {
                    None => AuditEvent::failure(AUDIT_KIND, "unknown_email"),
                    Some(record) if record.user.disabled => {
                        AuditEvent::failure(AUDIT_KIND, "disabled").user(record.user.id)
                    }
                    Some(record) => {
                        AuditEvent::failure(AUDIT_KIND, "email_rate_limited").user(record.user.id)
                    }
                };
                event.ip(ip).record(&state.audit);
                return;
            }
        };
        let Ok(token) = OpaqueToken::generate() else {
            tracing::error!(user_id = %user.id, "CSPRNG failed; no email sent");
            return;
        };
        let ttl = state.config.password_reset_ttl;
        match state
            .db
            .store_reset_token(user.id, token.hash(), self.requested_at, ttl)
            .await
        {
            Ok(true) => {}
            Ok(false) => {
                tracing::info!(
                    user_id = %user.id,
                    "a newer request superseded this one, or the account is gone; no email"
                );
                return;
            }
            Err(e) => {
                tracing::error!(
                    user_id = %user.id,
                    error = %format!("{:#}", anyhow::Error::new(e)),
                    "could not store the reset token; no email sent"
                );
                return;
            }
        }
        AuditEvent::success(AUDIT_KIND)
            .user(user.id)
            .ip(ip)
            .record(&state.audit);
        let email = reset_email(&state.config.public_base_url, &user.email, &token, ttl);
        state
            .mailer
            .deliver(email)
            .instrument(tracing::info_span!("password_reset_email", user_id = %user.id))
            .await;
    }
}

/// The email with the reset link.
fn reset_email(base_url: &str, to: &Email, token: &OpaqueToken, ttl: Duration) -> OutgoingEmail {
    let link = reset_link(base_url, token.expose());
    let lifetime = human_duration(ttl);
    let text = format!(
        "Hello,\n\
         \n\
         Someone (hopefully you) asked to reset the password of the account {to}.\n\
         To choose a new password, open this link within {lifetime}:\n\
         \n\
         {link}\n\
         \n\
         The link works once. If you did not ask for a new password, ignore this email:\n\
         your password stays as it is.\n"
    );
    OutgoingEmail::new("password_reset", to, "Reset your password", text)
}

/// `PUBLIC_BASE_URL/reset-password?token=<token>` (the token is base64url: no escaping).
fn reset_link(base_url: &str, token: &str) -> String {
    format!(
        "{}{RESET_PAGE}?token={token}",
        base_url.trim_end_matches('/')
    )
}

/// "30 minutes", "1 hour", "90 seconds": the token's lifetime as the email states it.
fn human_duration(d: Duration) -> String {
    let secs = d.as_secs();
    let (n, unit) = if secs >= 3600 && secs.is_multiple_of(3600) {
        (secs / 3600, "hour")
    } else if secs >= 60 && secs.is_multiple_of(60) {
        (secs / 60, "minute")
    } else {
        (secs, "second")
    };
    if n == 1 {
        format!("1 {unit}")
    } else {
        format!("{n} {unit}s")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_link_is_under_the_public_base_url() {
        assert_eq!(
            reset_link("https://app.example.com/", "abc_-"),
            "https://app.example.com/reset-password?token=abc_-"
        );
        assert_eq!(
            reset_link("http://127.0.0.1:8080", "t"),
            "http://127.0.0.1:8080/reset-password?token=t"
        );
    }

    #[test]
    fn the_email_holds_the_link_and_the_lifetime() {
        let token = OpaqueToken::generate().expect("rng");
        let to = Email::parse("ada@example.com").expect("valid");
        let email = reset_email(
            "https://app.example.com",
            &to,
            &token,
            Duration::from_secs(1800),
        );
        assert_eq!(email.to(), &to);
        let expected = format!(
            "\nhttps://app.example.com/reset-password?token={}\n",
            token.expose()
        );
        assert!(email.text().contains(&expected), "{}", email.text());
        assert!(
            email.text().contains("within 30 minutes"),
            "{}",
            email.text()
        );
        assert!(!format!("{email:?}").contains(token.expose()));
    }

    #[test]
    fn durations_read_naturally() {
        let h = |secs| human_duration(Duration::from_secs(secs));
        assert_eq!(h(1800), "30 minutes");
        assert_eq!(h(3600), "1 hour");
        assert_eq!(h(7200), "2 hours");
        assert_eq!(h(60), "1 minute");
        assert_eq!(h(90), "90 seconds");
        assert_eq!(h(1), "1 second");
    }
}
