//! Password checks that count: a login and every re-authentication (the `current_password`
//! of a password change, an email change, a two-factor change) go through [`Credentials`],
//! so they share the per-IP login limit and the account's lockout, and are audited alike.
//!
//! The protocol, in this order:
//! 1. [`Credentials::admit`]: the client IP's per-minute login limit. A refusal names the
//!    account in its trail when the email belongs to one;
//! 2. [`Credentials::check`]: the account's lockout (refused whatever the password, before
//!    any password work; counted per email, so unknown emails lock exactly like known ones),
//!    then the argon2 verify (against a dummy hash when there is no account, so the timing
//!    tells nothing), then the verdict is counted: a failure towards the lockout (and the
//!    lockout notice when this failure starts one), a success clears the count.
//!
//! A second-factor code goes through the same lockout ([`Credentials::check_code`]): a wrong
//! code is a failed attempt. For an account with two-factor login the right password does
//! not clear the failed attempts, only a right code does: else every password login would
//! reset the count and the codes could be guessed without end.
//!
//! If Redis cannot be reached the limits cannot be checked, and the check fails closed
//! (unavailable) rather than allow unlimited guessing.

use std::net::IpAddr;

use uuid::Uuid;

use super::DependencyError;
use super::outbox::Outbox;
use crate::audit::{AuditEvent, AuditKind, AuditReason, AuditSink};
use crate::auth::hashing::{PasswordHasher, Verification};
use crate::db::Db;
use crate::db::users::UserRecord;
use crate::domain::{Email, PasswordAttempt};
use crate::limits::{IpAction, LimitError, Limits, Verdict};
use crate::mail::templates::{self, Template};
use crate::telemetry::{self, ErrorChain};

/// What the password is being checked for: decides how refusals are audited.
#[derive(Debug, Clone, Copy)]
pub enum Purpose {
    /// A login (`POST /v1/auth/login`).
    Login,
    /// The second step of a two-factor login (`POST /v1/auth/login/mfa`).
    SecondFactor,
    /// A signed-in caller confirming a change with its `current_password`.
    Reauthentication {
        /// The operation (`password_change`, `email_change_requested`, ...).
        kind: AuditKind,
        /// The caller's session.
        session_id: Uuid,
    },
}

impl Purpose {
    fn kind(self) -> AuditKind {
        match self {
            Self::Login => AuditKind::Login,
            Self::SecondFactor => AuditKind::LoginSecondFactor,
            Self::Reauthentication { kind, .. } => kind,
        }
    }

    fn event(self, reason: AuditReason, user_id: Option<Uuid>, ip: Option<IpAddr>) -> AuditEvent {
        let mut event = AuditEvent::failure(self.kind(), reason).ip(ip);
        if let Some(user_id) = user_id {
            event = event.user(user_id);
        }
        if let Self::Reauthentication { session_id, .. } = self {
            event = event.session(session_id);
        }
        event
    }
}

/// Why a password check did not pass.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// The per-IP limit or the account's lockout refused the attempt.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until the client may try again (at least 1).
        retry_after_secs: u64,
    },
    /// Wrong password, unknown account or disabled account (never says which).
    #[error("wrong credentials")]
    Wrong,
    /// A dependency failed: no verdict on the password.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

impl From<LimitError> for CheckError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            LimitError::Unavailable(e) => Self::Dependency(e.into()),
        }
    }
}

/// The parts a password check needs.
#[derive(Clone)]
pub struct Credentials {
    /// Postgres (to name the account of a refused attempt).
    pub db: Db,
    /// argon2id.
    pub hasher: PasswordHasher,
    /// The per-IP limit and the lockout.
    pub limits: Limits,
    /// The audit trail.
    pub audit: AuditSink,
    /// The lockout notice.
    pub outbox: Outbox,
}

impl Credentials {
    /// Step 1: the client IP's per-minute login limit. When it refuses and `email` belongs
    /// to an account, the refusal also lands in that account's trail.
    pub async fn admit(
        &self,
        ip: Option<IpAddr>,
        email: Option<&Email>,
        purpose: Purpose,
    ) -> Result<(), CheckError> {
        match self.limits.enforce_ip(IpAction::Login, ip).await {
            Err(LimitError::Limited { retry_after_secs }) => {
                if let Some(user_id) = self.account_of(email).await {
                    purpose
                        .event(AuditReason::RateLimited, Some(user_id), ip)
                        .record(&self.audit);
                }
                Err(CheckError::RateLimited { retry_after_secs })
            }
            other => Ok(other?),
        }
    }

    /// Step 2: the lockout, the verify and the count (see the module docs). `record` is the
    /// account with `email`, if any; a disabled account is refused like a wrong password.
    /// On success, whether the stored hash should be upgraded.
    pub async fn check(
        &self,
        email: &Email,
        record: Option<&UserRecord>,
        attempt: &PasswordAttempt,
        ip: Option<IpAddr>,
        purpose: Purpose,
    ) -> Result<bool, CheckError> {
        let user_id = record.map(|r| r.user.id);
        self.begin(email, user_id, ip, purpose).await?;
        let verdict = match record {
            None => self.hasher.verify_dummy(attempt).await.map(|()| None),
            Some(record) => self
                .hasher
                .verify(attempt, &record.password_hash)
                .await
                .map(Some),
        };
        let refusal = match verdict {
            Err(e) => {
                self.abandoned(email).await;
                return Err(DependencyError::from(e).into());
            }
            Ok(None) => AuditReason::UnknownEmail,
            Ok(Some(Verification::Mismatch)) => match purpose {
                Purpose::Login | Purpose::SecondFactor => AuditReason::WrongPassword,
                Purpose::Reauthentication { .. } => AuditReason::WrongCurrentPassword,
            },
            Ok(Some(Verification::Match { .. })) if record.is_some_and(|r| r.user.disabled) => {
                AuditReason::Disabled
            }
            Ok(Some(Verification::Match { needs_rehash })) => {
                // With two-factor login on, only the second factor clears the count.
                if !record.is_some_and(|r| r.user.mfa_enabled) {
                    self.cleared(email).await;
                } else {
                    self.abandoned(email).await;
                }
                return Ok(needs_rehash);
            }
        };
        purpose.event(refusal, user_id, ip).record(&self.audit);
        self.count_failure(email, record, ip, purpose).await;
        if matches!(purpose, Purpose::Login) {
            telemetry::count(telemetry::metric::LOGIN_FAILED);
        }
        Err(CheckError::Wrong)
    }

    /// The lockout, then `verify` (a second-factor code: `Some` when right, with what it
    /// found), then the count, exactly as [`Self::check`] does for a password: while the
    /// account is locked no code is even looked at; a wrong code is a failed attempt (and
    /// may start a lockout); a right one clears the count.
    pub async fn check_code<T>(
        &self,
        record: &UserRecord,
        ip: Option<IpAddr>,
        purpose: Purpose,
        verify: impl Future<Output = Result<Option<T>, DependencyError>>,
    ) -> Result<T, CheckError> {
        let email = &record.user.email;
        let user_id = Some(record.user.id);
        self.begin(email, user_id, ip, purpose).await?;
        match verify.await {
            Err(e) => {
                self.abandoned(email).await;
                Err(e.into())
            }
            Ok(Some(found)) => {
                self.cleared(email).await;
                Ok(found)
            }
            Ok(None) => {
                purpose
                    .event(AuditReason::WrongCode, user_id, ip)
                    .record(&self.audit);
                self.count_failure(email, Some(record), ip, purpose).await;
                Err(CheckError::Wrong)
            }
        }
    }

    /// The account's lockout: refuses (and audits) the attempt while the account is locked,
    /// else reserves the attempt's slot.
    async fn begin(
        &self,
        email: &Email,
        user_id: Option<Uuid>,
        ip: Option<IpAddr>,
        purpose: Purpose,
    ) -> Result<(), CheckError> {
        let begun = self
            .limits
            .login_begin(email)
            .await
            .map_err(DependencyError::from)?;
        if let Verdict::Limited { retry_after_secs } = begun {
            purpose
                .event(AuditReason::AccountLocked, user_id, ip)
                .record(&self.audit);
            return Err(CheckError::RateLimited { retry_after_secs });
        }
        Ok(())
    }

    /// An attempt ended without a verdict: its reserved slot is released.
    async fn abandoned(&self, email: &Email) {
        if let Err(e) = self.limits.login_abandoned(email).await {
            tracing::warn!(error = %ErrorChain(&e), "could not release the login attempt");
        }
    }

    /// A check passed: the account's failed attempts are forgotten.
    async fn cleared(&self, email: &Email) {
        if let Err(e) = self.limits.login_succeeded(email).await {
            tracing::warn!(error = %ErrorChain(&e), "could not clear the account's failed logins");
        }
    }

    /// Counts a refused attempt against the account; audits the lockout it may start and
    /// tells the account's owner. The answer stays "wrong" if Redis fails here: the
    /// attempt's reserved slot keeps counting until it expires.
    async fn count_failure(
        &self,
        email: &Email,
        record: Option<&UserRecord>,
        ip: Option<IpAddr>,
        purpose: Purpose,
    ) {
        match self.limits.login_failed(email).await {
            Ok(Some(lock_secs)) => {
                purpose
                    .event(AuditReason::LockedOut, record.map(|r| r.user.id), ip)
                    .record(&self.audit);
                tracing::info!(lock_secs, "account locked after repeated failed logins");
                if let Some(record) = record {
                    let lifetime = templates::lifetime(std::time::Duration::from_secs(lock_secs));
                    self.outbox.send(
                        Template::NoticeLockout,
                        &record.user.email,
                        &[("lifetime", &lifetime)],
                    );
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "could not count the failed attempt")
            }
        }
    }

    /// The live account with `email`, for naming it in a refusal's audit event; `None` when
    /// there is none or it cannot be looked up now.
    async fn account_of(&self, email: Option<&Email>) -> Option<Uuid> {
        match self.db.user_by_email(email?).await {
            Ok(record) => record.map(|r| r.user.id),
            Err(e) => {
                tracing::warn!(error = %ErrorChain(&e), "could not name the account of a refused attempt");
                None
            }
        }
    }
}
