//! The one error type of the HTTP layer, rendered as an RFC 9457 problem.
//!
//! Every handler returns `Result<_, ApiError>`, and every service error becomes one here, in
//! one place (`From<SessionError>`, `From<AccountError>`, `From<DependencyError>`). Internal
//! causes (a Postgres error, a Redis timeout) are logged here with their whole `source()`
//! chain and never sent to the client: the client gets a stable `code` and a generic
//! `detail`.

use std::fmt;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use crate::domain::{EmailError, PasswordError, UserNameError};
use crate::services::{AccountError, DependencyError, SessionError};
use crate::telemetry::ErrorChain;

/// A rule one request field broke.
#[derive(Debug, Clone, Serialize, PartialEq, Eq, utoipa::ToSchema)]
pub struct FieldError {
    /// The JSON field (or query parameter) at fault.
    pub field: String,
    /// Stable machine-readable reason.
    pub code: String,
    /// Human-readable reason.
    pub message: String,
}

/// Everything a request can fail with, one variant per row of the contract's error table.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// 400: not JSON, unknown field, wrong type, missing field.
    #[error("malformed request: {0}")]
    MalformedRequest(String),
    /// 400: a well-formed value breaks a rule.
    #[error("validation failed")]
    Validation(Vec<FieldError>),
    /// 400: the email fails the syntax rules.
    #[error("invalid email: {0}")]
    InvalidEmail(#[from] EmailError),
    /// 400: the email in a field other than `email` fails the syntax rules.
    #[error("invalid email in {field}: {reason}")]
    InvalidEmailIn {
        /// The request field.
        field: &'static str,
        /// Why.
        reason: EmailError,
    },
    /// 400: the password fails the policy.
    #[error("weak password: {0}")]
    WeakPassword(#[from] PasswordError),
    /// 400: a password-reset or email-verification token unknown, used or expired.
    #[error("invalid token")]
    InvalidToken,
    /// 401: access token missing, malformed, badly signed, expired or revoked.
    #[error("unauthorized")]
    Unauthorized,
    /// 401: login failed (never says which part was wrong).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// 401: refresh token unknown, expired, revoked or reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// 403: authenticated, but the role does not allow it.
    #[error("forbidden")]
    Forbidden,
    /// 403 `forbidden`: the role would do, but the route asks for a session opened with a
    /// second factor (`ADMIN_REQUIRES_MFA`).
    #[error("forbidden: second factor required")]
    SecondFactorNeeded,
    /// 403: the password is right, but the account has two-factor login on: the problem
    /// carries the `mfa_token` of the second step.
    #[error("second factor required")]
    MfaRequired {
        /// The token for `POST /v1/auth/login/mfa` (its `Debug` is redacted).
        mfa_token: crate::auth::opaque::OpaqueToken,
    },
    /// 400 (confirming or disabling) or 401 (logging in): a wrong or replayed code.
    #[error("invalid two-factor code")]
    InvalidMfaCode {
        /// At login (401) rather than at set-up or removal (400).
        at_login: bool,
    },
    /// 409: two-factor set-up asked for while it is on.
    #[error("two-factor login is on already")]
    MfaAlreadyEnabled,
    /// 409: two-factor removal asked for while it is off.
    #[error("two-factor login is not on")]
    MfaNotEnabled,
    /// 403: the `current_password` of a password change is wrong.
    #[error("wrong current password")]
    WrongCurrentPassword,
    /// 403: the password is right, but the email is not verified (`REQUIRE_VERIFIED_EMAIL`).
    #[error("email not verified")]
    EmailNotVerified,
    /// 404: no such resource or route.
    #[error("not found")]
    NotFound,
    /// 405: the route exists, the method does not.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// 409: the email is registered already.
    #[error("email taken")]
    EmailTaken,
    /// 409: the change would leave no active admin.
    #[error("last admin")]
    LastAdmin,
    /// 413: body over the limit.
    #[error("payload too large")]
    PayloadTooLarge,
    /// 415: body without a JSON content type.
    #[error("unsupported media type")]
    UnsupportedMediaType,
    /// 429: an abuse limit was reached; `Retry-After` says when to try again.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until the limit lets the client in again (at least 1).
        retry_after_secs: u64,
    },
    /// 503: a dependency is down or the hashing queue is full.
    #[error("service unavailable")]
    Unavailable(#[source] anyhow::Error),
    /// 500: a bug or an unexpected state; the cause is logged, not shown.
    #[error("internal error")]
    Internal(#[source] anyhow::Error),
}

impl ApiError {
    /// The HTTP status of this error.
    pub fn status(&self) -> StatusCode {
        match self {
            Self::MalformedRequest(_)
            | Self::Validation(_)
            | Self::InvalidEmail(_)
            | Self::InvalidEmailIn { .. }
            | Self::WeakPassword(_)
            | Self::InvalidToken
            | Self::InvalidMfaCode { at_login: false } => StatusCode::BAD_REQUEST,
            Self::Unauthorized
            | Self::InvalidCredentials
            | Self::InvalidRefreshToken
            | Self::InvalidMfaCode { at_login: true } => StatusCode::UNAUTHORIZED,
            Self::Forbidden
            | Self::SecondFactorNeeded
            | Self::WrongCurrentPassword
            | Self::EmailNotVerified
            | Self::MfaRequired { .. } => StatusCode::FORBIDDEN,
            Self::NotFound => StatusCode::NOT_FOUND,
            Self::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            Self::EmailTaken | Self::LastAdmin | Self::MfaAlreadyEnabled | Self::MfaNotEnabled => {
                StatusCode::CONFLICT
            }
            Self::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            Self::UnsupportedMediaType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            Self::RateLimited { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The contract's stable machine-readable code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "malformed_request",
            Self::Validation(_) => "validation_failed",
            Self::InvalidEmail(_) | Self::InvalidEmailIn { .. } => "invalid_email",
            Self::WeakPassword(_) => "weak_password",
            Self::InvalidToken => "invalid_token",
            Self::EmailNotVerified => "email_not_verified",
            Self::Unauthorized => "unauthorized",
            Self::InvalidCredentials | Self::WrongCurrentPassword => "invalid_credentials",
            Self::InvalidRefreshToken => "invalid_refresh_token",
            Self::Forbidden | Self::SecondFactorNeeded => "forbidden",
            Self::MfaRequired { .. } => "mfa_required",
            Self::InvalidMfaCode { .. } => "invalid_mfa_code",
            Self::MfaAlreadyEnabled => "mfa_already_enabled",
            Self::MfaNotEnabled => "mfa_not_enabled",
            Self::NotFound => "not_found",
            Self::MethodNotAllowed => "method_not_allowed",
            Self::EmailTaken => "email_taken",
            Self::LastAdmin => "last_admin",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::RateLimited { .. } => "rate_limited",
            Self::Unavailable(_) => "unavailable",
            Self::Internal(_) => "internal_error",
        }
    }

    fn title(&self) -> &'static str {
        match self {
            Self::MalformedRequest(_) => "Malformed request",
            Self::Validation(_) => "Validation failed",
            Self::InvalidEmail(_) | Self::InvalidEmailIn { .. } => "Invalid email",
            Self::WeakPassword(_) => "Weak password",
            Self::EmailNotVerified => "Email not verified",
            Self::InvalidToken => "Invalid token",
            Self::Unauthorized => "Unauthorized",
            Self::InvalidCredentials | Self::WrongCurrentPassword => "Invalid credentials",
            Self::InvalidRefreshToken => "Invalid refresh token",
            Self::Forbidden | Self::SecondFactorNeeded => "Forbidden",
            Self::MfaRequired { .. } => "Second factor required",
            Self::InvalidMfaCode { .. } => "Invalid two-factor code",
            Self::MfaAlreadyEnabled => "Two-factor login already on",
            Self::MfaNotEnabled => "Two-factor login not on",
            Self::NotFound => "Not found",
            Self::MethodNotAllowed => "Method not allowed",
            Self::EmailTaken => "Email taken",
            Self::LastAdmin => "Last admin",
            Self::PayloadTooLarge => "Payload too large",
            Self::UnsupportedMediaType => "Unsupported media type",
            Self::RateLimited { .. } => "Too many requests",
            Self::Unavailable(_) => "Service unavailable",
            Self::Internal(_) => "Internal error",
        }
    }

    fn detail(&self) -> String {
        match self {
            Self::MalformedRequest(why) => why.clone(),
            Self::Validation(errors) => errors
                .iter()
                .map(|e| format!("{}: {}", e.field, e.message))
                .collect::<Vec<_>>()
                .join("; "),
            Self::InvalidEmail(why) => format!("email is not valid: {why}"),
            Self::InvalidEmailIn { field, reason } => format!("{field} is not valid: {reason}"),
            Self::WeakPassword(why) => why.to_string(),
            Self::InvalidToken => "the token is unknown, expired or already used".into(),
            Self::EmailNotVerified => {
                "verify the email address first: open the link sent to it, or reset the password"
                    .into()
            }
            Self::Unauthorized => "a valid access token is required".into(),
            Self::InvalidCredentials => "email or password is wrong".into(),
            Self::WrongCurrentPassword => "current_password is wrong".into(),
            Self::InvalidRefreshToken => {
                "the refresh token is unknown, expired, revoked or already used".into()
            }
            Self::Forbidden => "your role does not allow this".into(),
            Self::SecondFactorNeeded => {
                "this route needs a session opened with a second factor: turn two-factor login \
                 on and log in with a code"
                    .into()
            }
            Self::MfaRequired { .. } => {
                "the password is right; send a code from the authenticator app (or a recovery \
                 code) with mfa_token to POST /v1/auth/login/mfa"
                    .into()
            }
            Self::InvalidMfaCode { .. } => "the code is wrong, expired or already used".into(),
            Self::MfaAlreadyEnabled => "two-factor login is on already; turn it off first".into(),
            Self::MfaNotEnabled => "two-factor login is not on".into(),
            Self::NotFound => "no such resource".into(),
            Self::MethodNotAllowed => "this route does not accept that method".into(),
            Self::EmailTaken => "an account with this email exists already".into(),
            Self::LastAdmin => {
                "this would leave no active admin; promote another admin first".into()
            }
            Self::PayloadTooLarge => "the request body is over 64 KiB".into(),
            Self::UnsupportedMediaType => "send the body as application/json".into(),
            Self::RateLimited { retry_after_secs } => {
                format!("too many attempts; try again in {retry_after_secs} seconds")
            }
            Self::Unavailable(_) => "a dependency is unavailable; try again shortly".into(),
            Self::Internal(_) => "an unexpected error happened; it has been logged".into(),
        }
    }

    fn field_errors(&self) -> Option<Vec<FieldError>> {
        let one = |field: &str, code: &str, message: String| {
            Some(vec![FieldError {
                field: field.into(),
                code: code.into(),
                message,
            }])
        };
        match self {
            Self::Validation(errors) => Some(errors.clone()),
            Self::InvalidEmail(why) => one("email", "invalid_email", why.to_string()),
            Self::InvalidEmailIn { field, reason } => {
                one(field, "invalid_email", reason.to_string())
            }
            Self::WeakPassword(why) => one("password", "weak_password", why.to_string()),
            _ => None,
        }
    }

    /// A `validation_failed` error for one field.
    pub fn field(field: &str, code: &str, message: impl fmt::Display) -> Self {
        Self::Validation(vec![FieldError {
            field: field.into(),
            code: code.into(),
            message: message.to_string(),
        }])
    }
}

impl From<UserNameError> for ApiError {
    fn from(e: UserNameError) -> Self {
        let code = match e {
            UserNameError::TooLong => "too_long",
            UserNameError::Empty => "empty",
            UserNameError::ControlCharacter => "control_character",
        };
        ApiError::field("name", code, e)
    }
}

impl From<DependencyError> for ApiError {
    fn from(e: DependencyError) -> Self {
        match e {
            DependencyError::Unavailable(cause) => ApiError::Unavailable(cause),
            DependencyError::Internal(cause) => ApiError::Internal(cause),
        }
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> Self {
        match e {
            SessionError::InvalidEmail(e) => e.into(),
            SessionError::InvalidCredentials => ApiError::InvalidCredentials,
            SessionError::EmailNotVerified => ApiError::EmailNotVerified,
            SessionError::InvalidRefreshToken => ApiError::InvalidRefreshToken,
            SessionError::Unauthorized => ApiError::Unauthorized,
            SessionError::NotFound => ApiError::NotFound,
            SessionError::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            SessionError::MfaRequired(mfa_token) => ApiError::MfaRequired { mfa_token },
            SessionError::InvalidMfaCode => ApiError::InvalidMfaCode { at_login: true },
            SessionError::Dependency(e) => e.into(),
        }
    }
}

impl From<AccountError> for ApiError {
    fn from(e: AccountError) -> Self {
        match e {
            AccountError::InvalidEmail(e) => e.into(),
            AccountError::WeakPassword(e) => e.into(),
            AccountError::InvalidName(e) => e.into(),
            AccountError::EmailTaken => ApiError::EmailTaken,
            AccountError::LastAdmin => ApiError::LastAdmin,
            AccountError::NotFound => ApiError::NotFound,
            // The token named a user deleted since it was checked: as good as revoked.
            AccountError::CallerGone => ApiError::Unauthorized,
            AccountError::WrongCurrentPassword => ApiError::WrongCurrentPassword,
            AccountError::InvalidToken => ApiError::InvalidToken,
            AccountError::SameEmail => ApiError::field(
                "new_email",
                "same_email",
                "this is the account's email already",
            ),
            AccountError::MfaCannotBeTurnedOn => ApiError::field(
                "mfa_enabled",
                "cannot_enable",
                "only the user can turn two-factor login on; an admin can only turn it off",
            ),
            AccountError::RateLimited { retry_after_secs } => {
                ApiError::RateLimited { retry_after_secs }
            }
            AccountError::MfaAlreadyEnabled => ApiError::MfaAlreadyEnabled,
            AccountError::MfaNotEnabled => ApiError::MfaNotEnabled,
            AccountError::InvalidMfaCode => ApiError::InvalidMfaCode { at_login: false },
            AccountError::AdminExists => {
                ApiError::Internal(anyhow::anyhow!("AdminExists outside the bootstrap"))
            }
            AccountError::Dependency(e) => e.into(),
        }
    }
}

/// An RFC 9457 problem: the body of every error response (`application/problem+json`).
#[derive(Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// A URI naming the problem type: the base plus the `code`.
    #[serde(rename = "type")]
    #[schema(example = "https://user-service.dev/problems/email_taken")]
    type_: String,
    /// Short human-readable summary of the type.
    #[schema(value_type = String, example = "Email taken")]
    title: &'static str,
    /// The HTTP status, repeated.
    #[schema(example = 409)]
    status: u16,
    /// What went wrong in this case.
    #[schema(example = "an account with this email exists already")]
    detail: String,
    /// Stable machine-readable code.
    #[schema(value_type = ProblemCode, example = "email_taken")]
    code: &'static str,
    /// The field rules that failed, for validation errors.
    #[serde(skip_serializing_if = "Option::is_none")]
    errors: Option<Vec<FieldError>>,
    /// With `mfa_required` only: the single-use token (5 minutes) for
    /// `POST /v1/auth/login/mfa`.
    #[serde(skip_serializing_if = "Option::is_none")]
    mfa_token: Option<String>,
}

/// Every `code` a problem can carry (see the contract's error table).
#[derive(utoipa::ToSchema)]
#[allow(dead_code)] // a schema only: the codes are written by `ApiError::code`
#[schema(rename_all = "snake_case")]
pub enum ProblemCode {
    MalformedRequest,
    ValidationFailed,
    InvalidEmail,
    WeakPassword,
    InvalidToken,
    Unauthorized,
    InvalidCredentials,
    InvalidRefreshToken,
    Forbidden,
    EmailNotVerified,
    MfaRequired,
    InvalidMfaCode,
    MfaAlreadyEnabled,
    MfaNotEnabled,
    NotFound,
    MethodNotAllowed,
    EmailTaken,
    LastAdmin,
    PayloadTooLarge,
    UnsupportedMediaType,
    RateLimited,
    Unavailable,
    InternalError,
}

/// Base of the `type` URIs; each code has a section in the OpenAPI document.
const PROBLEM_TYPE_BASE: &str = "https://user-service.dev/problems/";

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        match &self {
            Self::Unavailable(cause) => {
                tracing::warn!(code = self.code(), error = %ErrorChain(cause.as_ref()), "dependency unavailable");
            }
            Self::Internal(cause) => {
                tracing::error!(code = self.code(), error = %ErrorChain(cause.as_ref()), "internal error");
            }
            Self::RateLimited { .. } => {
                crate::telemetry::count(crate::telemetry::metric::RATE_LIMITED)
            }
            _ => {}
        }
        let problem = Problem {
            type_: format!("{PROBLEM_TYPE_BASE}{}", self.code()),
            title: self.title(),
            status: status.as_u16(),
            detail: self.detail(),
            code: self.code(),
            errors: self.field_errors(),
            mfa_token: match &self {
                Self::MfaRequired { mfa_token } => Some(mfa_token.expose().to_owned()),
                _ => None,
            },
        };
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        response.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        let retry_after = match self {
            Self::Unavailable(_) => Some(1),
            Self::RateLimited { retry_after_secs } => Some(retry_after_secs.max(1)),
            _ => None,
        };
        if let Some(seconds) = retry_after {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn render(e: ApiError) -> (StatusCode, String, serde_json::Value) {
        let response = e.into_response();
        let status = response.status();
        let content_type = response
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let bytes = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .expect("body");
        let json = serde_json::from_slice(&bytes).expect("json body");
        (status, content_type, json)
    }

    #[tokio::test]
    async fn problems_carry_status_code_and_type() {
        let (status, content_type, json) = render(ApiError::EmailTaken).await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(json["status"], 409);
        assert_eq!(json["code"], "email_taken");
        assert_eq!(
            json["type"],
            "https://user-service.dev/problems/email_taken"
        );
        assert!(json.get("errors").is_none());
    }

    #[tokio::test]
    async fn internal_causes_are_not_shown() {
        let cause = anyhow::anyhow!("password authentication failed for user secretuser");
        let (status, _, json) = render(ApiError::Unavailable(cause)).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        assert!(!json.to_string().contains("secretuser"));
    }

    #[tokio::test]
    async fn rate_limited_is_429_with_retry_after() {
        let response = ApiError::RateLimited {
            retry_after_secs: 42,
        }
        .into_response();
        assert_eq!(
            response.headers().get(header::RETRY_AFTER).unwrap(),
            HeaderValue::from_static("42")
        );
        let (status, content_type, json) = render(ApiError::RateLimited {
            retry_after_secs: 42,
        })
        .await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(content_type, "application/problem+json");
        assert_eq!(json["code"], "rate_limited");
        assert_eq!(json["title"], "Too many requests");
        assert_eq!(json["status"], 429);
    }

    #[tokio::test]
    async fn field_errors_name_the_field() {
        let (_, _, json) = render(ApiError::from(UserNameError::TooLong)).await;
        assert_eq!(json["code"], "validation_failed");
        assert_eq!(json["errors"][0]["field"], "name");
        assert_eq!(json["errors"][0]["code"], "too_long");
    }
}
