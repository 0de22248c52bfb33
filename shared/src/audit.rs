//! The audit trail: one structured event per security action (who, what, outcome, IP).
//!
//! Every event goes to the log under the `audit` target, as JSON like every other log line.
//! Events that concern a known user are also stored, through one [`AuditSink`] per process:
//! in DynamoDB when `AUDIT_TABLE` is set (as on AWS), else in Postgres (`audit_events`),
//! both kept for `AUDIT_RETENTION_DAYS` (default 90). Storing never slows the request: the
//! event goes into a bounded channel that a background task drains in batches; when the
//! channel is full the event is dropped (it is still in the log), counted and warned about.
//! Events carry ids, never a password, a token or a hash.

mod dynamo;
mod store;

use std::net::IpAddr;

use chrono::{DateTime, Utc};
use uuid::Uuid;

pub use store::{AuditPage, AuditSink, AuditStore, AuditStoreError, PagePosition, StoredEvent};

/// Whether the action did what was asked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// It did.
    Success,
    /// It was refused.
    Failure,
}

impl Outcome {
    /// As stored and returned: `success` or `failure`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Success => "success",
            Self::Failure => "failure",
        }
    }
}

/// What happened: an event's `type`, as stored and returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AuditKind {
    /// An account registered itself.
    UserRegistered,
    /// A login: a token pair issued, or refused with the reason (`locked_out` included).
    Login,
    /// A refresh token spent for the next pair (`reuse_detected` on a spent token).
    Refresh,
    /// A logout (`all_sessions` when every session ended).
    Logout,
    /// The caller changed its password.
    PasswordChange,
    /// A password-reset email asked for.
    PasswordForgot,
    /// A password set with a reset token.
    PasswordReset,
    /// The caller changed its own name or email.
    ProfileUpdated,
    /// An admin created a user (`role=admin` or `role=user`).
    AdminUserCreated,
    /// An admin changed a user.
    AdminUserUpdated,
    /// An admin deleted a user.
    AdminUserDeleted,
    /// The first admin, created from the bootstrap settings.
    AdminBootstrapped,
    /// An admin created with the command line.
    AdminCreatedByCli,
    /// A registration refused by the per-IP limit (logged only: it names no user).
    Register,
    /// A verification email asked for (`email_rate_limited` past the hourly limit).
    EmailVerificationRequested,
    /// The account's address verified with a link.
    EmailVerified,
    /// The caller asked to move its account to a new address (`old_email`, `new_email`).
    EmailChangeRequested,
    /// The account moved to a new address with the link sent to it (`old_email`,
    /// `new_email`).
    EmailChanged,
    /// The user ended one of its sessions (`DELETE /v1/users/me/sessions/{id}`); the event
    /// names that session.
    SessionDeleted,
    /// A caller refused an admin operation (403): not an admin (`not_admin`), or an admin
    /// whose session passed no second factor under `ADMIN_REQUIRES_MFA`
    /// (`second_factor_missing`); `changes` names the operation (`GET /v1/admin/users`).
    /// Recorded by the admin routes themselves and, on AWS, by the Lambda authorizer.
    AdminAccessDenied,
    /// The caller began a two-factor set-up (a pending secret; nothing is on yet).
    MfaSetupStarted,
    /// Two-factor login turned on with a first code (`wrong_code` when refused).
    MfaEnabled,
    /// Two-factor login turned off by the user (`wrong_code` when refused).
    MfaDisabled,
    /// The second step of a two-factor login (`wrong_code`, `invalid_mfa_token`,
    /// `account_locked`; `recovery_code` when a recovery code was spent).
    LoginSecondFactor,
    /// The Lambda authorizer refused a valid token on a route that is not one of this
    /// service's admin routes (another API's `AUTHORIZER_ROUTE_RULES`, or a route no rule
    /// names): `role_refused` or `second_factor_missing`; `changes` names the route
    /// (`POST /v1/payments`).
    RouteAccessDenied,
}

impl AuditKind {
    /// As stored, logged and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UserRegistered => "user_registered",
            Self::Login => "login",
            Self::Refresh => "refresh",
            Self::Logout => "logout",
            Self::PasswordChange => "password_change",
            Self::PasswordForgot => "password_forgot",
            Self::PasswordReset => "password_reset",
            Self::ProfileUpdated => "profile_updated",
            Self::AdminUserCreated => "admin_user_created",
            Self::AdminUserUpdated => "admin_user_updated",
            Self::AdminUserDeleted => "admin_user_deleted",
            Self::AdminBootstrapped => "admin_bootstrapped",
            Self::AdminCreatedByCli => "admin_created_by_cli",
            Self::Register => "register",
            Self::EmailVerificationRequested => "email_verification_requested",
            Self::EmailVerified => "email_verified",
            Self::EmailChangeRequested => "email_change_requested",
            Self::EmailChanged => "email_changed",
            Self::SessionDeleted => "session_deleted",
            Self::AdminAccessDenied => "admin_access_denied",
            Self::MfaSetupStarted => "mfa_setup_started",
            Self::MfaEnabled => "mfa_enabled",
            Self::MfaDisabled => "mfa_disabled",
            Self::LoginSecondFactor => "login_second_factor",
            Self::RouteAccessDenied => "route_access_denied",
        }
    }
}

/// Why an action failed, or a detail of what it did: an event's `reason`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, utoipa::ToSchema)]
#[schema(rename_all = "snake_case")]
pub enum AuditReason {
    /// No account has the email.
    UnknownEmail,
    /// The password did not match.
    WrongPassword,
    /// The account is disabled.
    Disabled,
    /// Too many failed logins: the account is locked for a while.
    LockedOut,
    /// A per-IP limit refused the request.
    RateLimited,
    /// A refresh token presented a second time: its session is revoked.
    ReuseDetected,
    /// An unknown, expired or revoked refresh token.
    Invalid,
    /// A refresh of a session whose revocation an outage cut short: the revocation is
    /// finished, and no token issued.
    SessionEnded,
    /// A spent refresh token presented again within the reuse grace window (a client's
    /// retry): a new pair issued, the earlier successor gone.
    RetriedWithinGrace,
    /// A logout that ended every session of the user.
    AllSessions,
    /// A logout repeated after an outage cut the first one short: it finished the
    /// revocation.
    FinishedAfterOutage,
    /// The `current_password` of a password change was wrong.
    WrongCurrentPassword,
    /// A profile change that included the email (stored by versions before the email
    /// change needed a confirmation; still returned for those events).
    EmailChanged,
    /// A profile change of the name.
    NameChanged,
    /// The user was created as an admin.
    #[schema(rename = "role=admin")]
    RoleAdmin,
    /// The user was created as an ordinary user.
    #[schema(rename = "role=user")]
    RoleUser,
    /// An admin change that ended every session of the user.
    SessionsEnded,
    /// An admin change that cut off the user's access tokens (a role change).
    AccessTokensCutOff,
    /// An admin change of the profile only (email or name).
    ProfileOnly,
    /// Past the reset emails allowed per email per hour: none sent.
    EmailRateLimited,
    /// A reset token unknown, used or expired.
    InvalidToken,
    /// A new password that fails the policy.
    WeakPassword,
    /// Refused while the account is locked after repeated failures.
    AccountLocked,
    /// The password was right, but the email is not verified (`REQUIRE_VERIFIED_EMAIL`).
    EmailNotVerified,
    /// Another account has the address.
    EmailTaken,
    /// The email is verified already: nothing to send.
    AlreadyVerified,
    /// A pending email change was cancelled (a password change or reset).
    PendingEmailChangeCancelled,
    /// The caller's role is not admin.
    NotAdmin,
    /// The right password to an account with two-factor login: no session yet, an
    /// `mfa_token` for the second step.
    SecondFactorRequired,
    /// A wrong or replayed TOTP or recovery code.
    WrongCode,
    /// The fifth wrong code: the `mfa_token` is spent.
    AttemptsExhausted,
    /// An unknown, expired or spent `mfa_token`.
    InvalidMfaToken,
    /// The second factor was a recovery code (now spent).
    RecoveryCode,
    /// The caller's session passed no second factor and the route asks for one
    /// (`ADMIN_REQUIRES_MFA`, or a route rule asking for `otp`).
    SecondFactorMissing,
    /// The route's rules do not grant the caller's role (`route_access_denied`).
    RoleRefused,
}

impl AuditReason {
    /// As stored, logged and returned.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::UnknownEmail => "unknown_email",
            Self::WrongPassword => "wrong_password",
            Self::Disabled => "disabled",
            Self::LockedOut => "locked_out",
            Self::RateLimited => "rate_limited",
            Self::ReuseDetected => "reuse_detected",
            Self::Invalid => "invalid",
            Self::SessionEnded => "session_ended",
            Self::RetriedWithinGrace => "retried_within_grace",
            Self::AllSessions => "all_sessions",
            Self::FinishedAfterOutage => "finished_after_outage",
            Self::WrongCurrentPassword => "wrong_current_password",
            Self::EmailChanged => "email_changed",
            Self::NameChanged => "name_changed",
            Self::RoleAdmin => "role=admin",
            Self::RoleUser => "role=user",
            Self::SessionsEnded => "sessions_ended",
            Self::AccessTokensCutOff => "access_tokens_cut_off",
            Self::ProfileOnly => "profile_only",
            Self::EmailRateLimited => "email_rate_limited",
            Self::InvalidToken => "invalid_token",
            Self::WeakPassword => "weak_password",
            Self::AccountLocked => "account_locked",
            Self::EmailNotVerified => "email_not_verified",
            Self::EmailTaken => "email_taken",
            Self::AlreadyVerified => "already_verified",
            Self::PendingEmailChangeCancelled => "pending_email_change_cancelled",
            Self::NotAdmin => "not_admin",
            Self::SecondFactorRequired => "second_factor_required",
            Self::WrongCode => "wrong_code",
            Self::AttemptsExhausted => "attempts_exhausted",
            Self::InvalidMfaToken => "invalid_mfa_token",
            Self::RecoveryCode => "recovery_code",
            Self::SecondFactorMissing => "second_factor_missing",
            Self::RoleRefused => "role_refused",
        }
    }
}

/// One security event.
#[derive(Debug, Clone)]
pub struct AuditEvent {
    /// What happened.
    pub kind: AuditKind,
    /// Whether it succeeded.
    pub outcome: Outcome,
    /// Who acted, when not the user itself (an admin).
    pub actor_id: Option<Uuid>,
    /// The user it concerns, when known.
    pub user_id: Option<Uuid>,
    /// The session it concerns, when there is one.
    pub session_id: Option<Uuid>,
    /// The client IP.
    pub ip: Option<IpAddr>,
    /// Why it failed, or a detail of what it did.
    pub reason: Option<AuditReason>,
    /// Which fields an admin action changed (`role,disabled`), or the operation an
    /// `admin_access_denied` or `route_access_denied` refused (`DELETE /v1/admin/users/{id}`);
    /// names, never values.
    pub changes: Option<String>,
    /// The address before an email change.
    pub old_email: Option<String>,
    /// The address after an email change (or the one it was asked to move to).
    pub new_email: Option<String>,
    /// When it happened (microsecond precision, as Postgres keeps it).
    pub at: DateTime<Utc>,
}

impl AuditEvent {
    /// A successful `kind` event.
    pub fn success(kind: AuditKind) -> Self {
        Self {
            kind,
            outcome: Outcome::Success,
            actor_id: None,
            user_id: None,
            session_id: None,
            ip: None,
            reason: None,
            changes: None,
            old_email: None,
            new_email: None,
            at: now_micros(),
        }
    }

    /// A failed `kind` event, with why.
    pub fn failure(kind: AuditKind, reason: AuditReason) -> Self {
        Self {
            outcome: Outcome::Failure,
            reason: Some(reason),
            ..Self::success(kind)
        }
    }

    /// Names the user.
    pub fn user(mut self, user_id: Uuid) -> Self {
        self.user_id = Some(user_id);
        self
    }

    /// Names the admin who acted on the user.
    pub fn actor(mut self, actor_id: Uuid) -> Self {
        self.actor_id = Some(actor_id);
        self
    }

    /// Names the fields a change touched.
    pub fn changes(mut self, fields: String) -> Self {
        self.changes = Some(fields);
        self
    }

    /// Records an email change from `old` to `new`.
    pub fn emails(mut self, old: &crate::domain::Email, new: &crate::domain::Email) -> Self {
        self.old_email = Some(old.as_str().to_owned());
        self.new_email = Some(new.as_str().to_owned());
        self
    }

    /// Names the operation that was refused: its method and route template (never the
    /// concrete path, which may carry ids). Kept where the changed fields go.
    pub fn operation(mut self, operation: String) -> Self {
        self.changes = Some(operation);
        self
    }

    /// Names the session.
    pub fn session(mut self, session_id: Uuid) -> Self {
        self.session_id = Some(session_id);
        self
    }

    /// Names the client IP.
    pub fn ip(mut self, ip: Option<IpAddr>) -> Self {
        self.ip = ip;
        self
    }

    /// Adds a detail.
    pub fn reason(mut self, reason: AuditReason) -> Self {
        self.reason = Some(reason);
        self
    }

    /// Writes the event to the log and, when it names a user, hands it to `sink` to be
    /// stored in the background. Never waits.
    pub fn record(self, sink: &AuditSink) {
        self.log();
        sink.emit(self);
    }

    /// Writes the event to the log only: for events that name no user (a per-IP rate
    /// limit), which no user's trail could show.
    pub fn log(&self) {
        tracing::info!(
            target: "audit",
            event = self.kind.as_str(),
            outcome = self.outcome.as_str(),
            actor_id = self.actor_id.map(tracing::field::display),
            user_id = self.user_id.map(tracing::field::display),
            session_id = self.session_id.map(tracing::field::display),
            ip = self.ip.map(tracing::field::display),
            reason = self.reason.map(AuditReason::as_str),
            changes = self.changes.as_deref(),
            old_email = self.old_email.as_deref(),
            new_email = self.new_email.as_deref(),
            "audit"
        );
    }
}

/// Now, truncated to whole microseconds, so that what is stored and what a cursor carries
/// compare equal.
fn now_micros() -> DateTime<Utc> {
    let now = Utc::now();
    DateTime::from_timestamp_micros(now.timestamp_micros()).unwrap_or(now)
}

#[cfg(test)]
mod tests {
    use super::*;
    use utoipa::PartialSchema;

    /// The `enum` values of a string enum's schema, in order.
    fn schema_values<T: PartialSchema>() -> Vec<String> {
        let schema = serde_json::to_value(T::schema()).expect("a schema is JSON");
        schema["enum"]
            .as_array()
            .expect("an enum schema")
            .iter()
            .map(|v| v.as_str().expect("a string").to_owned())
            .collect()
    }

    /// The OpenAPI document lists exactly the strings that are stored (every variant, in
    /// declaration order: a variant missing below makes the lists differ).
    #[test]
    fn the_schemas_list_the_stored_strings() {
        use AuditKind as K;
        let kinds = [
            K::UserRegistered,
            K::Login,
            K::Refresh,
            K::Logout,
            K::PasswordChange,
            K::PasswordForgot,
            K::PasswordReset,
            K::ProfileUpdated,
            K::AdminUserCreated,
            K::AdminUserUpdated,
            K::AdminUserDeleted,
            K::AdminBootstrapped,
            K::AdminCreatedByCli,
            K::Register,
            K::EmailVerificationRequested,
            K::EmailVerified,
            K::EmailChangeRequested,
            K::EmailChanged,
            K::SessionDeleted,
            K::AdminAccessDenied,
            K::MfaSetupStarted,
            K::MfaEnabled,
            K::MfaDisabled,
            K::LoginSecondFactor,
            K::RouteAccessDenied,
        ];
        assert_eq!(schema_values::<AuditKind>(), kinds.map(K::as_str));
        use AuditReason as R;
        let reasons = [
            R::UnknownEmail,
            R::WrongPassword,
            R::Disabled,
            R::LockedOut,
            R::RateLimited,
            R::ReuseDetected,
            R::Invalid,
            R::SessionEnded,
            R::RetriedWithinGrace,
            R::AllSessions,
            R::FinishedAfterOutage,
            R::WrongCurrentPassword,
            R::EmailChanged,
            R::NameChanged,
            R::RoleAdmin,
            R::RoleUser,
            R::SessionsEnded,
            R::AccessTokensCutOff,
            R::ProfileOnly,
            R::EmailRateLimited,
            R::InvalidToken,
            R::WeakPassword,
            R::AccountLocked,
            R::EmailNotVerified,
            R::EmailTaken,
            R::AlreadyVerified,
            R::PendingEmailChangeCancelled,
            R::NotAdmin,
            R::SecondFactorRequired,
            R::WrongCode,
            R::AttemptsExhausted,
            R::InvalidMfaToken,
            R::RecoveryCode,
            R::SecondFactorMissing,
            R::RoleRefused,
        ];
        assert_eq!(schema_values::<AuditReason>(), reasons.map(R::as_str));
    }
}
