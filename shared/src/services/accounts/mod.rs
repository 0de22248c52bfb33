//! Account use cases: create (registration, an admin, the command line, the bootstrap
//! admin), read, update the profile, change the password, an admin's change and delete,
//! (in [`reset`]) the password-reset flow, and (in [`email`]) verifying the address and
//! changing it.
//!
//! Every method that writes a user's row does, in one place, what must follow every such
//! write: the revocation markers before the commit (through [`Revocations`] or the `mark`
//! step of the admin writes), the outstanding links that must die with the change (in the
//! same transaction, see [`crate::db::email_tokens`]), the new profile version after the
//! commit ([`Profiles::changed`]), the audit event and the security notice. Every check of a
//! `current_password` is a login attempt for the lockout ([`Credentials`]).

mod email;
mod mfa;
mod reset;

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::task::TaskTracker;
use uuid::Uuid;

use super::credentials::{CheckError, Credentials, Purpose};
use super::outbox::Outbox;
use super::second_factor::SecondFactors;
use super::{DependencyError, dependency_errors};
use crate::audit::{
    AuditEvent, AuditKind, AuditPage, AuditReason, AuditSink, PagePosition as AuditPosition,
};
use crate::auth::Caller;
use crate::auth::hashing::PasswordHasher;
use crate::auth::revocation::Revocations;
use crate::db::admin::{AdminChange, AdminChangeError, UserFilter};
use crate::db::sessions::RevokeReason;
use crate::db::users::NewUser;
use crate::db::{Db, DbError, PagePosition};
use crate::domain::{
    Email, EmailError, NewPassword, PasswordAttempt, PasswordError, Role, User, UserName,
    UserNameError,
};
use crate::limits::{IpAction, LimitError, Limits};
use crate::mail::templates::Template;
use crate::profiles::{ProfileVersion, Profiles};

/// What the account flows need to know of the deployment.
#[derive(Debug, Clone)]
pub struct AccountSettings {
    /// Base of links in emails (`PUBLIC_BASE_URL`).
    pub public_base_url: String,
    /// Lifetime of a password-reset token (`PASSWORD_RESET_TTL_SECONDS`).
    pub password_reset_ttl: Duration,
    /// Lifetime of a verification or email-change link (`EMAIL_VERIFICATION_TTL_SECONDS`).
    pub email_verification_ttl: Duration,
    /// The issuer an authenticator app shows (`MFA_ISSUER`).
    pub mfa_issuer: String,
}

/// Why an account operation did not succeed.
#[derive(Debug, thiserror::Error)]
pub enum AccountError {
    /// The email fails the syntax rules.
    #[error("invalid email: {0}")]
    InvalidEmail(#[from] EmailError),
    /// The new password fails the policy.
    #[error("weak password: {0}")]
    WeakPassword(#[from] PasswordError),
    /// The name breaks a rule.
    #[error("invalid name: {0}")]
    InvalidName(#[from] UserNameError),
    /// A live user has this email already.
    #[error("email taken")]
    EmailTaken,
    /// The change would leave no active admin.
    #[error("last admin")]
    LastAdmin,
    /// No live user with that id.
    #[error("no such user")]
    NotFound,
    /// The caller's own account is gone (deleted since its token was checked).
    #[error("the caller's account is gone")]
    CallerGone,
    /// The `current_password` given to confirm a change is wrong.
    #[error("wrong current password")]
    WrongCurrentPassword,
    /// The new email of an email change is the account's email already.
    #[error("the email is the account's email already")]
    SameEmail,
    /// A password-reset, verification or email-change token is unknown, spent or expired.
    #[error("invalid token")]
    InvalidToken,
    /// An abuse limit was reached.
    #[error("rate limited; retry after {retry_after_secs} s")]
    RateLimited {
        /// Whole seconds until the limit lets the client in again (at least 1).
        retry_after_secs: u64,
    },
    /// Two-factor set-up asked for while it is on.
    #[error("two-factor login is on already")]
    MfaAlreadyEnabled,
    /// Two-factor removal asked for while it is off.
    #[error("two-factor login is not on")]
    MfaNotEnabled,
    /// A wrong or replayed code, or no set-up waiting for one.
    #[error("invalid two-factor code")]
    InvalidMfaCode,
    /// An admin asked to turn a user's two-factor login on (only the user can).
    #[error("two-factor login can only be turned off by an admin")]
    MfaCannotBeTurnedOn,
    /// The bootstrap admin is not needed: an active admin exists.
    #[error("an active admin exists")]
    AdminExists,
    /// A dependency failed.
    #[error(transparent)]
    Dependency(#[from] DependencyError),
}

dependency_errors!(AccountError);

impl From<LimitError> for AccountError {
    fn from(e: LimitError) -> Self {
        match e {
            LimitError::Limited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            LimitError::Unavailable(e) => e.into(),
        }
    }
}

impl From<CheckError> for AccountError {
    fn from(e: CheckError) -> Self {
        match e {
            CheckError::RateLimited { retry_after_secs } => Self::RateLimited { retry_after_secs },
            CheckError::Wrong => Self::WrongCurrentPassword,
            CheckError::Dependency(e) => e.into(),
        }
    }
}

impl From<AdminChangeError> for AccountError {
    fn from(e: AdminChangeError) -> Self {
        match e {
            AdminChangeError::NotFound => Self::NotFound,
            AdminChangeError::LastAdmin => Self::LastAdmin,
            AdminChangeError::Db(e) => e.into(),
        }
    }
}

/// Who creates an account: decides the role, the limits and the audit event.
#[derive(Debug, Clone, Copy)]
pub enum Creator {
    /// The person themself (`POST /v1/auth/register`): per-IP limit, role `user`, the email
    /// unverified until the link sent to it is opened.
    Registration {
        /// The client's IP.
        ip: Option<IpAddr>,
    },
    /// An admin (`POST /v1/admin/users`), who says whether the email is verified; when not,
    /// a verification link goes to it.
    Admin {
        /// The admin.
        admin_id: Uuid,
        /// The admin's IP.
        ip: Option<IpAddr>,
        /// Whether the admin vouches for the address.
        email_verified: bool,
    },
    /// An operator at the command line (`user-service admin create`); the operator vouches
    /// for the address (verified).
    CommandLine,
    /// The first admin from `BOOTSTRAP_ADMIN_*`, its address vouched for by the deployer
    /// (verified): created only while no active admin exists (checked under a lock, so
    /// instances starting at once create one), else [`AccountError::AdminExists`].
    Bootstrap,
}

impl Creator {
    /// Whether the new account's email starts verified.
    fn vouches_for_email(self) -> bool {
        match self {
            Self::Registration { .. } => false,
            Self::Admin { email_verified, .. } => email_verified,
            Self::CommandLine | Self::Bootstrap => true,
        }
    }
}

/// An admin's change to a user; `None` leaves a field alone.
#[derive(Debug, Default)]
pub struct UserUpdate {
    /// A new email (unvalidated).
    pub email: Option<String>,
    /// A new name (unvalidated); `Some(None)` removes it.
    pub name: Option<Option<String>>,
    /// A new role.
    pub role: Option<Role>,
    /// Disable or enable.
    pub disabled: Option<bool>,
    /// Mark the email verified or not.
    pub email_verified: Option<bool>,
    /// `Some(false)` turns the user's two-factor login off; `Some(true)` is refused.
    pub mfa_enabled: Option<bool>,
}

/// The account use cases; cheap to clone (one shared handle).
#[derive(Clone)]
pub struct Accounts {
    parts: Arc<AccountParts>,
}

/// The parts [`Accounts`] works with.
pub struct AccountParts {
    /// Postgres.
    pub db: Db,
    /// argon2id (new passwords).
    pub hasher: PasswordHasher,
    /// The password check with the lockout protocol (re-authentication).
    pub credentials: Credentials,
    /// The revocation mirror.
    pub revocations: Revocations,
    /// Each instance's memory of profiles, and their versions.
    pub profiles: Profiles,
    /// Rate limits.
    pub limits: Limits,
    /// Links and notices by email, after the commit.
    pub outbox: Outbox,
    /// The audit trail.
    pub audit: AuditSink,
    /// Work left running after an answer (the reset email).
    pub background: TaskTracker,
    /// Second-factor codes and the keys of the TOTP secrets.
    pub second_factors: SecondFactors,
    /// Links and lifetimes.
    pub settings: AccountSettings,
}

impl Accounts {
    /// The service over `parts`.
    pub fn new(parts: AccountParts) -> Self {
        Self {
            parts: Arc::new(parts),
        }
    }

    /// Validates and stores a new account. Checks run in the contract's order: email, name,
    /// then the password policy (which needs both), and only then the expensive hash.
    pub async fn create(
        &self,
        email: &str,
        password: &str,
        name: Option<&str>,
        role: Role,
        by: Creator,
    ) -> Result<User, AccountError> {
        if let Creator::Registration { ip } = by {
            self.parts.limits.enforce_ip(IpAction::Register, ip).await?;
        }
        let email = Email::parse(email)?;
        // Cheap check first, so a restart does not pay for an argon2 hash.
        if matches!(by, Creator::Bootstrap) && self.parts.db.active_admin_exists().await? {
            return Err(AccountError::AdminExists);
        }
        let name = name.map(UserName::parse).transpose()?;
        let hints: Vec<&str> = name.iter().map(UserName::as_str).collect();
        let password = NewPassword::parse(password, &email, &hints)?;
        let password_hash = self.parts.hasher.hash(&password).await?;
        let new = NewUser {
            email: &email,
            name: name.as_ref(),
            password_hash: &password_hash,
            role,
            email_verified: by.vouches_for_email(),
        };
        let inserted = match by {
            Creator::Bootstrap => self.parts.db.create_first_admin(new).await,
            _ => self.parts.db.insert_user(new).await.map(Some),
        };
        let user = match inserted {
            Ok(Some(user)) => user,
            Ok(None) => return Err(AccountError::AdminExists),
            Err(DbError::EmailTaken) => return Err(AccountError::EmailTaken),
            Err(e) => return Err(e.into()),
        };
        let event = match by {
            Creator::Registration { ip } => AuditEvent::success(AuditKind::UserRegistered).ip(ip),
            Creator::Admin { admin_id, ip, .. } => AuditEvent::success(AuditKind::AdminUserCreated)
                .actor(admin_id)
                .ip(ip)
                .reason(if role == Role::Admin {
                    AuditReason::RoleAdmin
                } else {
                    AuditReason::RoleUser
                }),
            Creator::CommandLine => AuditEvent::success(AuditKind::AdminCreatedByCli),
            Creator::Bootstrap => {
                tracing::info!(user_id = %user.id, "bootstrap admin created");
                AuditEvent::success(AuditKind::AdminBootstrapped)
            }
        };
        event.user(user.id).record(&self.parts.audit);
        if !user.email_verified {
            self.send_verification_link(&user);
        }
        Ok(user)
    }

    /// The caller's own profile, from this instance's memory while `version` (read with the
    /// revocation check) says it is current.
    pub async fn own_profile(
        &self,
        caller: Caller,
        version: ProfileVersion,
    ) -> Result<User, AccountError> {
        // The token outlived its user only if the user was deleted between the revocation
        // check and here; that is the same answer a revoked token gets.
        self.parts
            .profiles
            .get(caller.user_id, version)
            .await?
            .ok_or(AccountError::CallerGone)
    }

    /// Sets (`Some(Some)`) or removes (`Some(None)`) the caller's own display name, or with
    /// `None` changes nothing and returns the account; sessions survive. (The email changes
    /// through [`Accounts::request_email_change`].)
    pub async fn update_profile(
        &self,
        caller: Caller,
        name: Option<Option<String>>,
        ip: Option<IpAddr>,
    ) -> Result<User, AccountError> {
        let Some(name) = name_change(name)? else {
            let record = self.parts.db.user_by_id(caller.user_id).await?;
            return record.map(|r| r.user).ok_or(AccountError::CallerGone);
        };
        let user = self
            .parts
            .db
            .set_name(caller.user_id, name.as_ref())
            .await?
            .ok_or(AccountError::CallerGone)?;
        self.parts.profiles.changed(caller.user_id).await;
        AuditEvent::success(AuditKind::ProfileUpdated)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .reason(AuditReason::NameChanged)
            .record(&self.parts.audit);
        Ok(user)
    }

    /// Changes the caller's password after checking the current one (a login attempt for
    /// the lockout). Every *other* session ends; the caller's keeps working. Outstanding
    /// reset links and a pending email change die; the owner gets a notice.
    pub async fn change_password(
        &self,
        caller: Caller,
        current_password: &str,
        new_password: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let record = self
            .reauthenticate(caller, current_password, AuditKind::PasswordChange, ip)
            .await?;
        let hints: Vec<&str> = record.user.name.iter().map(UserName::as_str).collect();
        let new_password = NewPassword::parse(new_password, &record.user.email, &hints)?;
        let new_hash = self.parts.hasher.hash(&new_password).await?;
        // Other sessions end before the new hash is stored: if that fails, nothing changed.
        let ended = self
            .parts
            .revocations
            .end_sessions(
                caller.user_id,
                Some(caller.session_id),
                RevokeReason::PasswordChange,
            )
            .await?;
        let cancelled = self
            .parts
            .db
            .change_password_hash(caller.user_id, &new_hash)
            .await?
            .ok_or(AccountError::CallerGone)?;
        self.parts.profiles.changed(caller.user_id).await;
        tracing::info!(user_id = %caller.user_id, sessions_ended = ended, "password changed");
        let event = AuditEvent::success(AuditKind::PasswordChange)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip);
        if cancelled {
            event.reason(AuditReason::PendingEmailChangeCancelled)
        } else {
            event
        }
        .record(&self.parts.audit);
        self.parts
            .outbox
            .send(Template::NoticePasswordChanged, &record.user.email, &[]);
        Ok(())
    }

    /// The caller's account after checking its `current_password` as a login attempt:
    /// refused while the account is locked (429), a wrong password counts towards the lockout.
    async fn reauthenticate(
        &self,
        caller: Caller,
        current_password: &str,
        kind: AuditKind,
        ip: Option<IpAddr>,
    ) -> Result<crate::db::users::UserRecord, AccountError> {
        let record = self.caller_record(caller).await?;
        let purpose = Purpose::Reauthentication {
            kind,
            session_id: caller.session_id,
        };
        let credentials = &self.parts.credentials;
        credentials
            .admit(ip, Some(&record.user.email), purpose)
            .await?;
        let attempt = PasswordAttempt::new(current_password);
        credentials
            .check(&record.user.email, Some(&record), &attempt, ip, purpose)
            .await?;
        Ok(record)
    }

    /// The caller's own account as it is now ([`AccountError::CallerGone`] once deleted).
    async fn caller_record(
        &self,
        caller: Caller,
    ) -> Result<crate::db::users::UserRecord, AccountError> {
        self.parts
            .db
            .user_by_id(caller.user_id)
            .await?
            .ok_or(AccountError::CallerGone)
    }

    /// One user, for an admin.
    pub async fn get(&self, id: Uuid) -> Result<User, AccountError> {
        let record = self.parts.db.user_by_id(id).await?;
        record.map(|r| r.user).ok_or(AccountError::NotFound)
    }

    /// Users newest first, after `after`; at most `limit`.
    pub async fn list(
        &self,
        filter: &UserFilter<'_>,
        after: Option<PagePosition>,
        limit: i64,
    ) -> Result<Vec<User>, AccountError> {
        Ok(self.parts.db.list_users(filter, after, limit).await?)
    }

    /// A live user's audit trail, newest first (a deleted user's trail is kept but, like the
    /// user, not found).
    pub async fn audit_trail(
        &self,
        id: Uuid,
        after: Option<AuditPosition>,
        limit: usize,
    ) -> Result<AuditPage, AccountError> {
        if self.parts.db.user_by_id(id).await?.is_none() {
            return Err(AccountError::NotFound);
        }
        Ok(self.parts.audit.store().page(id, after, limit).await?)
    }

    /// An admin's change to user `id`. A role change rejects every access token issued
    /// before it (the refresh token keeps working and mints tokens with the new role);
    /// disabling ends every session. Both take effect at once on every instance. The last
    /// active admin cannot be demoted or disabled.
    pub async fn admin_update(
        &self,
        admin: Caller,
        id: Uuid,
        update: UserUpdate,
        ip: Option<IpAddr>,
    ) -> Result<User, AccountError> {
        let email = update.email.as_deref().map(Email::parse).transpose()?;
        let name = name_change(update.name)?;
        if update.mfa_enabled == Some(true) {
            return Err(AccountError::MfaCannotBeTurnedOn);
        }
        let change = AdminChange {
            email: email.as_ref(),
            name: name.as_ref().map(Option::as_ref),
            role: update.role,
            disabled: update.disabled,
            email_verified: update.email_verified,
            remove_mfa: update.mfa_enabled == Some(false),
        };
        let mark = |at, ended: Vec<Uuid>| self.mark_cut_off(id, at, ended, RevokeReason::Disabled);
        let (user, effects) = match self.parts.db.change_user(id, change, mark).await {
            Err(AdminChangeError::Db(DbError::EmailTaken)) => {
                return Err(AccountError::EmailTaken);
            }
            changed => changed?,
        };
        self.parts
            .revocations
            .sessions_ended(id, &effects.ended_sessions)
            .await;
        self.parts.profiles.changed(id).await;
        let changed: Vec<&str> = [
            ("email", email.is_some()),
            ("name", name.is_some()),
            ("role", update.role.is_some()),
            ("disabled", update.disabled.is_some()),
            ("email_verified", update.email_verified.is_some()),
            ("mfa_enabled", update.mfa_enabled.is_some()),
        ]
        .into_iter()
        .filter_map(|(field, is_set)| is_set.then_some(field))
        .collect();
        let mut event = AuditEvent::success(AuditKind::AdminUserUpdated)
            .actor(admin.user_id)
            .user(user.id)
            .ip(ip)
            .changes(changed.join(","));
        if effects.mfa_removed {
            self.parts.outbox.send(
                Template::NoticeMfaDisabled,
                &user.email,
                &[("by_admin", "yes")],
            );
        }
        if let Some(old_email) = &effects.old_email {
            event = event.emails(old_email, &user.email);
            self.notify_email_changed(old_email, &user.email);
            if !user.email_verified {
                self.send_verification_link(&user);
            }
        }
        event
            .reason(if effects.sessions_ended {
                AuditReason::SessionsEnded
            } else if effects.access_tokens_cut_off {
                AuditReason::AccessTokensCutOff
            } else {
                AuditReason::ProfileOnly
            })
            .record(&self.parts.audit);
        Ok(user)
    }

    /// Deletes user `id`: every token and session ends at once; the email can be registered
    /// again. The last active admin cannot be deleted.
    pub async fn admin_delete(
        &self,
        admin: Caller,
        id: Uuid,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let mark = |at, ended: Vec<Uuid>| self.mark_cut_off(id, at, ended, RevokeReason::Deleted);
        let ended = self.parts.db.delete_user(id, mark).await?;
        self.parts.revocations.sessions_ended(id, &ended).await;
        self.parts.profiles.changed(id).await;
        AuditEvent::success(AuditKind::AdminUserDeleted)
            .actor(admin.user_id)
            .user(id)
            .ip(ip)
            .record(&self.parts.audit);
        Ok(())
    }
}

impl Accounts {
    /// The Redis half of an admin's cut-off, run inside its transaction before the commit:
    /// the sessions it ends (step 1 of the revocation order, see
    /// [`crate::auth::revocation`]) and the user's cut-off instant.
    async fn mark_cut_off(
        &self,
        id: Uuid,
        at: chrono::DateTime<chrono::Utc>,
        ended: Vec<Uuid>,
        reason: RevokeReason,
    ) -> anyhow::Result<()> {
        self.parts
            .revocations
            .begin_ending(id, &ended, reason)
            .await?;
        self.parts.revocations.mark_user(id, at).await?;
        Ok(())
    }
}

/// Validates a name change: absent (leave it), `null` (remove it) or a new name.
fn name_change(raw: Option<Option<String>>) -> Result<Option<Option<UserName>>, UserNameError> {
    raw.map(|name| name.as_deref().map(UserName::parse).transpose())
        .transpose()
}

/// `PUBLIC_BASE_URL` + `page` + `?token=<token>` (the token is base64url: no escaping).
fn link(base_url: &str, page: &str, token: &str) -> String {
    format!("{}{page}?token={token}", base_url.trim_end_matches('/'))
}
