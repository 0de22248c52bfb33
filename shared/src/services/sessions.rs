//! Session use cases: log in (with the lockout protocol), refresh (rotation and reuse
//! detection), log out, list one's sessions and end one of them. Each method is the whole
//! rule; callers only pass values in.
//!
//! # Login
//! Unknown email, wrong password and disabled account all get the same answer after the
//! same amount of work (an argon2 verify), so neither the answer nor its timing tells an
//! attacker which accounts exist.
//!
//! Abuse limits ([`crate::limits`]), in this order: the client IP's per-minute limit, then
//! the account's lockout (refused whatever the password, before any password work; counted
//! per email, so unknown emails lock exactly like known ones), then the verify. A refusal
//! counts as a failure of the account, a success clears its count. If Redis cannot be
//! reached the limits cannot be checked, and login fails closed (unavailable) rather than
//! allow unlimited guessing.
//!
//! # Two-factor login
//! For an account with two-factor login on, the right password opens no session: the
//! answer is [`SessionError::MfaRequired`] with a single-use `mfa_token` (5 minutes).
//! [`Sessions::login_second_factor`] trades it and a TOTP or recovery code for the session,
//! whose tokens then carry `amr: ["pwd", "otp"]`. The token is checked first (an unknown,
//! expired or spent one is "invalid credentials", before the lockout is consulted); a wrong
//! code is a failed attempt for the account's lockout, and the fifth spends the token. The
//! token and the code are spent in one transaction, so of concurrent requests with one token
//! at most one opens a session.
//!
//! # Refresh
//! Presenting a spent refresh token again means two parties hold it, one of them a thief:
//! the whole session is revoked, including the newest refresh token and the access tokens.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::credentials::{CheckError, Credentials, Purpose};
use super::second_factor::SecondFactors;
use super::{DependencyError, dependency_errors, new_opaque_token};
use crate::audit::{AuditEvent, AuditKind, AuditReason, AuditSink};
use crate::auth::Caller;
use crate::auth::hashing::PasswordHasher;
use crate::auth::opaque::{self, OpaqueToken};
use crate::auth::revocation::Revocations;
use crate::auth::tokens::{AccessTokens, IssuedAccessToken};
use crate::db::Db;
use crate::db::mfa::{SecondFactor, SecondStep};
use crate::db::sessions::{IssuedSession, RevokeReason, Rotation, SessionOrigin, SessionSummary};
use crate::db::users::UserRecord;
use crate::domain::{Amr, Email, EmailError, PasswordAttempt, User};

use crate::telemetry::{self, metric};

/// How long sessions and refresh tokens live.
#[derive(Debug, Clone, Copy)]
pub struct SessionSettings {
    /// Idle expiry: the lifetime of one refresh token (`REFRESH_TOKEN_TTL_SECONDS`).
    pub refresh_token_ttl: Duration,
    /// Absolute expiry of a session however often it is refreshed
    /// (`SESSION_MAX_LIFETIME_SECONDS`).
    pub session_max_lifetime: Duration,
    /// How long a spent refresh token may be presented again while its successor is
    /// unused (`REFRESH_REUSE_GRACE_SECONDS`; zero: never).
    pub refresh_reuse_grace: Duration,
    /// Refuse logins to unverified emails (`REQUIRE_VERIFIED_EMAIL`).
    pub require_verified_email: bool,
}

/// Why a session operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    /// The email fails the syntax rules.
    #[error("invalid email: {0}")]
    InvalidEmail(#[from] EmailError),
    /// Unknown email, wrong password or disabled account (never says which).
    #[error("invalid credentials")]
    InvalidCredentials,
    /// The refresh token is unknown, expired, revoked or reused.
    #[error("invalid refresh token")]
    InvalidRefreshToken,
    /// The password is right but the email is not verified, and `REQUIRE_VERIFIED_EMAIL`
    /// is on.
    #[error("email not verified")]
    EmailNotVerified,
    /// The access token is revoked and there is no cut-short revocation to finish with it.
    #[error("unauthorized")]
    Unauthorized,
    /// No such live session of the caller.
    #[error("no such session")]
    NotFound,
    /// An abuse limit was reached.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until the limit lets the client in again (at least 1).
        retry_after_secs: u64,
    },
    /// The password is right, and the account has two-factor login on: no session yet; the
    /// token is for [`Sessions::login_second_factor`].
    #[error("second factor required")]
    MfaRequired(OpaqueToken),
    /// A wrong or replayed second-factor code.
    #[error("invalid two-factor code")]
    InvalidMfaCode,
    /// A dependency failed.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

dependency_errors!(SessionError);

/// How long an `mfa_token` lives.
pub const MFA_TOKEN_TTL: Duration = Duration::from_secs(300);

impl From<CheckError> for SessionError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            CheckError::Wrong => Self::InvalidCredentials,
            CheckError::Dependency(e) => e.into(),
        }
    }
}

/// A session's new tokens: what login and refresh hand to the client.
#[derive(Debug)]
pub struct IssuedTokens {
    /// The signed access token.
    pub access: IssuedAccessToken,
    /// The refresh token, in clear (it is stored only as a hash).
    pub refresh: OpaqueToken,
    /// When the refresh token expires: the earlier of idle and absolute expiry.
    pub refresh_expires_at: DateTime<Utc>,
    /// The account.
    pub user: User,
}

/// The most sessions [`Sessions::list`] returns: the newest ones.
pub const LIST_LIMIT: i64 = 1000;

/// One of the caller's live sessions, as [`Sessions::list`] returns it.
#[derive(Debug, Clone)]
pub struct ListedSession {
    /// The session.
    pub session: SessionSummary,
    /// Whether it is the session of the caller's own access token.
    pub current: bool,
}

/// The session use cases; cheap to clone (one shared handle).
#[derive(Clone)]
pub struct Sessions {
    parts: Arc<SessionParts>,
}

/// The parts [`Sessions`] works with.
pub struct SessionParts {
    /// Postgres.
    pub db: Db,
    /// argon2id (the re-hash after a login).
    pub hasher: PasswordHasher,
    /// The password check with the lockout protocol.
    pub credentials: Credentials,
    /// Access-token signing.
    pub tokens: AccessTokens,
    /// The revocation mirror.
    pub revocations: Revocations,
    /// Second-factor codes (the second step of a two-factor login).
    pub second_factors: SecondFactors,
    /// The audit trail.
    pub audit: AuditSink,
    /// Work left running after an answer (a re-hash).
    pub background: TaskTracker,
    /// Lifetimes.
    pub settings: SessionSettings,
}

impl Sessions {
    /// The service over `parts`.
    pub fn new(parts: SessionParts) -> Self {
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Readies [`login`](Self::login) ahead of the first request: builds the dummy hash
    /// that unknown emails are checked against, so that the first one costs no more than a
    /// known one (a login function's init).
    pub async fn prepare_login(&self) -> Result<(), SessionError> {
        Ok(self.parts.hasher.prepare_dummy().await?)
    }

    /// Trades an email and a password for a new session's tokens (the order of the
    /// checks is [`super::credentials`]'s protocol); the session remembers `ip` and
    /// `user_agent` (the `User-Agent` header) for the list of sessions.
    pub async fn login(
        &self,
        email: &str,
        password: &str,
        ip: Option<IpAddr>,
        user_agent: Option<&str>,
    ) -> Result<IssuedTokens, SessionError> {
        let credentials = &self.parts.credentials;
        credentials
            .admit(ip, Email::parse(email).ok().as_ref(), Purpose::Login)
            .await?;
        let email = Email::parse(email)?;
        // Keys first: no session (and no spent lockout slot) for a token that cannot be signed.
        self.parts.tokens.keys().await?;
        let attempt = PasswordAttempt::new(password);
        let record = self.parts.db.user_by_email(&email).await?;
        let needs_rehash = credentials
            .check(&email, record.as_ref(), &attempt, ip, Purpose::Login)
            .await?;
        // `check` refuses a missing account; this only satisfies the type.
        let Some(record) = record else {
            return Err(SessionError::InvalidCredentials);
        };
        let user_id = record.user.id;
        if self.parts.settings.require_verified_email && !record.user.email_verified {
            AuditEvent::failure(AuditKind::Login, AuditReason::EmailNotVerified)
                .user(user_id)
                .ip(ip)
                .record(&self.parts.audit);
            return Err(SessionError::EmailNotVerified);
        }
        if needs_rehash {
            self.spawn_rehash(&record, attempt);
        }
        let origin = SessionOrigin::new(ip, user_agent);
        if record.user.mfa_enabled {
            let mfa_token = new_opaque_token()?;
            self.parts
                .db
                .store_mfa_token(mfa_token.hash(), user_id, &origin, MFA_TOKEN_TTL)
                .await?;
            AuditEvent::success(AuditKind::Login)
                .user(user_id)
                .ip(ip)
                .reason(AuditReason::SecondFactorRequired)
                .record(&self.parts.audit);
            return Err(SessionError::MfaRequired(mfa_token));
        }
        let (issued, session_id) = self.open_session(user_id, &origin, Amr::PASSWORD).await?;
        AuditEvent::success(AuditKind::Login)
            .user(user_id)
            .session(session_id)
            .ip(ip)
            .record(&self.parts.audit);
        Ok(issued)
    }

    /// The second step of a two-factor login: trades the `mfa_token` of the first step and a
    /// TOTP or recovery code for the session's tokens (see the module docs for the order of
    /// the checks). The session remembers the first step's client.
    pub async fn login_second_factor(
        &self,
        mfa_token: &str,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<IssuedTokens, SessionError> {
        let invalid_token = || {
            AuditEvent::failure(AuditKind::LoginSecondFactor, AuditReason::InvalidMfaToken)
                .ip(ip)
                .record(&self.parts.audit);
            SessionError::InvalidCredentials
        };
        if !opaque::is_well_formed(mfa_token) {
            return Err(invalid_token());
        }
        let token_hash = opaque::hash(mfa_token);
        let Some(pending) = self.parts.db.pending_login(&token_hash).await? else {
            return Err(invalid_token());
        };
        // Keys first: no spent token or code for tokens that cannot be signed.
        self.parts.tokens.keys().await?;
        let record = match self.parts.db.user_by_id(pending.user_id).await? {
            Some(record) if !record.user.disabled && record.user.mfa_enabled => record,
            _ => return Err(invalid_token()),
        };
        let user_id = record.user.id;
        let factors = &self.parts.second_factors;
        let db = &self.parts.db;
        let passed = self
            .parts
            .credentials
            .check_code(&record, ip, Purpose::SecondFactor, async {
                let Some(factor) = factors.read(user_id, code).await? else {
                    return Ok(None);
                };
                // A code spent already is a wrong code; a right one whose token a concurrent
                // request spent first still counts as right for the lockout.
                Ok(
                    match db.pass_second_step(&token_hash, user_id, factor).await? {
                        SecondStep::CodeSpent => None,
                        step => Some((factor, step)),
                    },
                )
            })
            .await;
        let factor = match passed {
            Ok((factor, SecondStep::Passed)) => factor,
            // A concurrent request with the same token won.
            Ok(_) => return Err(invalid_token()),
            Err(CheckError::Wrong) => {
                if self.parts.db.mfa_token_failed(&token_hash).await? {
                    AuditEvent::failure(
                        AuditKind::LoginSecondFactor,
                        AuditReason::AttemptsExhausted,
                    )
                    .user(user_id)
                    .ip(ip)
                    .record(&self.parts.audit);
                }
                return Err(SessionError::InvalidMfaCode);
            }
            Err(e) => return Err(e.into()),
        };
        let (issued, session_id) = self
            .open_session(user_id, &pending.origin, Amr::PASSWORD_AND_OTP)
            .await?;
        let event = AuditEvent::success(AuditKind::LoginSecondFactor)
            .user(user_id)
            .session(session_id)
            .ip(ip);
        match factor {
            SecondFactor::RecoveryCode(_) => event.reason(AuditReason::RecoveryCode),
            SecondFactor::Step(_) => event,
        }
        .record(&self.parts.audit);
        Ok(issued)
    }

    /// Opens a session of `user_id` authenticated by `amr` and issues its first tokens.
    /// [`SessionError::InvalidCredentials`] when the account was disabled or deleted
    /// meanwhile (the same answer as any failure).
    async fn open_session(
        &self,
        user_id: Uuid,
        origin: &SessionOrigin,
        amr: Amr,
    ) -> Result<(IssuedTokens, Uuid), SessionError> {
        let refresh = new_opaque_token()?;
        let created = self
            .parts
            .db
            .create_session(
                user_id,
                refresh.hash(),
                origin,
                amr,
                self.parts.settings.refresh_token_ttl,
                self.parts.settings.session_max_lifetime,
            )
            .await?;
        let Some((session, current)) = created else {
            return Err(SessionError::InvalidCredentials);
        };
        let issued = self.issue(current.user, &session, refresh).await?;
        telemetry::count(metric::LOGIN_SUCCEEDED);
        Ok((issued, session.session_id))
    }

    /// Spends a refresh token for the session's next tokens; a spent token presented again
    /// revokes the whole session.
    pub async fn refresh(
        &self,
        refresh_token: &str,
        ip: Option<IpAddr>,
    ) -> Result<IssuedTokens, SessionError> {
        let presented = opaque::hash(refresh_token);
        // Keys before the rotation: a token spent without a new pair to show for it would make
        // the client's retry look like reuse and end its session.
        self.parts.tokens.keys().await?;
        let replacement = new_opaque_token()?;
        let rotation = self
            .parts
            .db
            .rotate_refresh_token(
                &presented,
                replacement.hash(),
                self.parts.settings.refresh_token_ttl,
                self.parts.settings.refresh_reuse_grace,
            )
            .await?;
        match rotation {
            Rotation::Rotated {
                session,
                user,
                retried,
            } => {
                let user_id = user.user.id;
                // A revocation of this session cut short by an outage (its marker written,
                // its Postgres write not): finish it, and mint nothing.
                if self
                    .parts
                    .revocations
                    .session_ended(session.session_id)
                    .await
                    == Some(true)
                {
                    self.parts
                        .revocations
                        .end_session(user_id, session.session_id, RevokeReason::Logout)
                        .await?;
                    AuditEvent::failure(AuditKind::Refresh, AuditReason::SessionEnded)
                        .user(user_id)
                        .session(session.session_id)
                        .ip(ip)
                        .record(&self.parts.audit);
                    return Err(SessionError::InvalidRefreshToken);
                }
                let issued = self.issue(user.user, &session, replacement).await?;
                let event = AuditEvent::success(AuditKind::Refresh)
                    .user(user_id)
                    .session(session.session_id)
                    .ip(ip);
                if retried {
                    event.reason(AuditReason::RetriedWithinGrace)
                } else {
                    event
                }
                .record(&self.parts.audit);
                Ok(issued)
            }
            Rotation::Reused {
                session_id,
                user_id,
            } => {
                self.parts
                    .revocations
                    .end_session(user_id, session_id, RevokeReason::RefreshReuse)
                    .await?;
                telemetry::count(metric::REFRESH_REUSE);
                AuditEvent::failure(AuditKind::Refresh, AuditReason::ReuseDetected)
                    .user(user_id)
                    .session(session_id)
                    .ip(ip)
                    .record(&self.parts.audit);
                Err(SessionError::InvalidRefreshToken)
            }
            Rotation::Invalid => {
                AuditEvent::failure(AuditKind::Refresh, AuditReason::Invalid)
                    .ip(ip)
                    .record(&self.parts.audit);
                Err(SessionError::InvalidRefreshToken)
            }
        }
    }

    /// Ends the caller's session, or with `all` every session of the caller: their access
    /// and refresh tokens stop working at once, on every instance.
    pub async fn logout(
        &self,
        caller: Caller,
        all: bool,
        ip: Option<IpAddr>,
    ) -> Result<(), SessionError> {
        let event = AuditEvent::success(AuditKind::Logout)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip);
        if all {
            self.parts
                .revocations
                .end_sessions(caller.user_id, None, RevokeReason::LogoutAll)
                .await?;
            event
                .reason(AuditReason::AllSessions)
                .record(&self.parts.audit);
        } else {
            self.parts
                .revocations
                .end_session(caller.user_id, caller.session_id, RevokeReason::Logout)
                .await?;
            event.record(&self.parts.audit);
        }
        Ok(())
    }

    /// A logout with a token that a revocation cut off: the repeat of a logout (or any
    /// revocation) that an outage cut short. Finishes the user's pending revocations; when
    /// the token's own session was among them, that is the logout done (all of them, for a
    /// logout-all), else the token is simply revoked.
    pub async fn logout_again(
        &self,
        caller: Caller,
        ip: Option<IpAddr>,
    ) -> Result<(), SessionError> {
        let finished = self
            .parts
            .revocations
            .finish_pending(caller.user_id)
            .await?;
        if !finished.contains(&caller.session_id) {
            return Err(SessionError::Unauthorized);
        }
        AuditEvent::success(AuditKind::Logout)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .reason(AuditReason::FinishedAfterOutage)
            .record(&self.parts.audit);
        Ok(())
    }

    /// The caller's live sessions (not revoked, not past their absolute expiry, still
    /// refreshable), newest first, at most [`LIST_LIMIT`]; the caller's own is `current`.
    pub async fn list(&self, caller: Caller) -> Result<Vec<ListedSession>, SessionError> {
        let sessions = self
            .parts
            .db
            .live_sessions(caller.user_id, LIST_LIMIT)
            .await?;
        Ok(sessions
            .into_iter()
            .map(|session| ListedSession {
                current: session.id == caller.session_id,
                session,
            })
            .collect())
    }

    /// Ends the caller's live session `session_id` exactly as a logout ends a session: its
    /// access and refresh tokens stop working at once, on every instance (the caller's own
    /// session too, when it is that one). [`SessionError::NotFound`] for a session that is
    /// unknown, ended already or another user's: nothing is marked then.
    pub async fn end(
        &self,
        caller: Caller,
        session_id: Uuid,
        ip: Option<IpAddr>,
    ) -> Result<(), SessionError> {
        // Checked in Postgres first: the revocation marks whatever session it is given.
        if !self
            .parts
            .db
            .is_live_session_of(caller.user_id, session_id)
            .await?
        {
            return Err(SessionError::NotFound);
        }
        self.parts
            .revocations
            .end_session(caller.user_id, session_id, RevokeReason::SessionDeleted)
            .await?;
        AuditEvent::success(AuditKind::SessionDeleted)
            .user(caller.user_id)
            .session(session_id)
            .ip(ip)
            .record(&self.parts.audit);
        Ok(())
    }

    /// [`Self::end`] with a token that a revocation cut off: the repeat of a deletion of the
    /// caller's own session that an outage cut short (the marker written, Postgres not).
    /// Finishes the user's pending revocations; when both the token's session and
    /// `session_id` were among them, the deletion is done, else the token is simply revoked.
    pub async fn end_again(
        &self,
        caller: Caller,
        session_id: Uuid,
        ip: Option<IpAddr>,
    ) -> Result<(), SessionError> {
        let finished = self
            .parts
            .revocations
            .finish_pending(caller.user_id)
            .await?;
        if !(finished.contains(&caller.session_id) && finished.contains(&session_id)) {
            return Err(SessionError::Unauthorized);
        }
        AuditEvent::success(AuditKind::SessionDeleted)
            .user(caller.user_id)
            .session(session_id)
            .ip(ip)
            .reason(AuditReason::FinishedAfterOutage)
            .record(&self.parts.audit);
        Ok(())
    }

    /// Signs an access token for `user` in `session` and pairs it with `refresh`.
    async fn issue(
        &self,
        user: User,
        session: &IssuedSession,
        refresh: OpaqueToken,
    ) -> Result<IssuedTokens, SessionError> {
        let access = self
            .parts
            .tokens
            .issue_with_id(
                user.id,
                user.role,
                session.session_id,
                session.access_token_id,
                session.amr,
            )
            .await?;
        telemetry::count(metric::TOKENS_ISSUED);
        Ok(IssuedTokens {
            access,
            refresh,
            refresh_expires_at: session.refresh_expires_at,
            user,
        })
    }

    /// Replaces a hash made with older parameters, after the answer: the login does not
    /// wait for a second argon2 run. Guarded so a concurrent password change wins.
    fn spawn_rehash(&self, record: &UserRecord, attempt: PasswordAttempt) {
        let hasher = self.parts.hasher.clone();
        let db = self.parts.db.clone();
        let user_id = record.user.id;
        let old_hash = record.password_hash.clone();
        self.parts.background.spawn(async move {
            let result = async {
                let new_hash = hasher.rehash(&attempt).await?;
                db.rehash_password(user_id, &new_hash, &old_hash)
                    .await?;
                Ok::<_, DependencyError>(())
            }
            .await;
            match result {
                Ok(()) => tracing::info!(%user_id, "password re-hashed with current parameters"),
                Err(e) => tracing::warn!(%user_id, error = %telemetry::ErrorChain(&e), "password re-hash failed"),
            }
        });
    }
}
