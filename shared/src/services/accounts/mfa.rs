//! Two-factor login of one's own account: set it up, confirm it with a first code (which
//! turns it on and hands out the recovery codes), and turn it off. An admin's removal is
//! [`Accounts::admin_update`] with `mfa_enabled: false`.

use std::net::IpAddr;

use super::{AccountError, Accounts};
use crate::audit::{AuditEvent, AuditKind, AuditReason};
use crate::auth::Caller;
use crate::mail::templates::Template;
use crate::services::credentials::{CheckError, Purpose};
use crate::services::second_factor::{self, new_recovery_codes};

/// What a set-up shows the user: the secret for an authenticator app.
#[derive(Debug)]
pub struct TotpSetup {
    /// The secret, base32.
    pub secret: String,
    /// The `otpauth://` URI (for a QR code).
    pub otpauth_uri: String,
}

impl Accounts {
    /// Re-encrypts every stored TOTP secret under the current key (after a key rotation;
    /// `user-service mfa reencrypt`); returns how many.
    pub async fn reencrypt_mfa_secrets(&self) -> Result<u64, AccountError> {
        Ok(self.parts.second_factors.reencrypt_all().await?)
    }

    /// Starts (or restarts) a two-factor set-up after checking `current_password` (a login
    /// attempt for the lockout): a new secret, stored encrypted and pending until a code
    /// confirms it. [`AccountError::MfaAlreadyEnabled`] when it is on.
    pub async fn start_mfa_setup(
        &self,
        caller: Caller,
        current_password: &str,
        ip: Option<IpAddr>,
    ) -> Result<TotpSetup, AccountError> {
        let record = self.caller_record(caller).await?;
        if record.user.mfa_enabled {
            return Err(AccountError::MfaAlreadyEnabled);
        }
        let record = self
            .reauthenticate(caller, current_password, AuditKind::MfaSetupStarted, ip)
            .await?;
        let secret = second_factor::new_secret()?;
        let sealed = self
            .parts
            .second_factors
            .keys()
            .seal(caller.user_id, &secret)
            .await
            .map_err(crate::services::DependencyError::from)?;
        if !self
            .parts
            .db
            .store_pending_totp(caller.user_id, &sealed)
            .await?
        {
            return Err(AccountError::MfaAlreadyEnabled);
        }
        AuditEvent::success(AuditKind::MfaSetupStarted)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .record(&self.parts.audit);
        Ok(TotpSetup {
            secret: secret.to_base32(),
            otpauth_uri: secret
                .otpauth_uri(&self.parts.settings.mfa_issuer, record.user.email.as_str()),
        })
    }

    /// Confirms the pending set-up with a current `code`: two-factor login is on, and the
    /// ten recovery codes (shown this once) are returned. The code counts as used.
    /// [`AccountError::InvalidMfaCode`] for a wrong code or when no set-up is pending.
    pub async fn confirm_mfa(
        &self,
        caller: Caller,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<Vec<String>, AccountError> {
        let refused = |reason| {
            AuditEvent::failure(AuditKind::MfaEnabled, reason)
                .user(caller.user_id)
                .session(caller.session_id)
                .ip(ip)
                .record(&self.parts.audit);
            AccountError::InvalidMfaCode
        };
        let pending = match self.parts.db.totp(caller.user_id).await? {
            Some(stored) if !stored.confirmed => stored.sealed,
            _ => return Err(refused(AuditReason::InvalidToken)),
        };
        let Some(step) = self
            .parts
            .second_factors
            .step_of(caller.user_id, &pending, code)
            .await?
        else {
            return Err(refused(AuditReason::WrongCode));
        };
        let (codes, hashes) = new_recovery_codes(caller.user_id)?;
        if !self
            .parts
            .db
            .confirm_totp(caller.user_id, &pending, step, &hashes)
            .await?
        {
            // Replaced, confirmed or used meanwhile.
            return Err(refused(AuditReason::WrongCode));
        }
        self.parts.profiles.changed(caller.user_id).await;
        AuditEvent::success(AuditKind::MfaEnabled)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .record(&self.parts.audit);
        if let Some(record) = self.parts.db.user_by_id(caller.user_id).await? {
            self.parts
                .outbox
                .send(Template::NoticeMfaEnabled, &record.user.email, &[]);
        }
        Ok(codes)
    }

    /// Turns two-factor login off, checked in this order: it is on
    /// ([`AccountError::MfaNotEnabled`]), `current_password` (a login attempt), then `code`
    /// (a TOTP or recovery code, spent here; a wrong one is a failed attempt too).
    pub async fn disable_mfa(
        &self,
        caller: Caller,
        current_password: &str,
        code: &str,
        ip: Option<IpAddr>,
    ) -> Result<(), AccountError> {
        let record = self.caller_record(caller).await?;
        if !record.user.mfa_enabled {
            return Err(AccountError::MfaNotEnabled);
        }
        let record = self
            .reauthenticate(caller, current_password, AuditKind::MfaDisabled, ip)
            .await?;
        let purpose = Purpose::Reauthentication {
            kind: AuditKind::MfaDisabled,
            session_id: caller.session_id,
        };
        let factors = &self.parts.second_factors;
        let db = &self.parts.db;
        let checked = self
            .parts
            .credentials
            .check_code(&record, ip, purpose, async {
                let Some(factor) = factors.read(caller.user_id, code).await? else {
                    return Ok(None);
                };
                Ok(db
                    .spend_second_factor(caller.user_id, factor)
                    .await?
                    .then_some(()))
            })
            .await;
        match checked {
            Ok(()) => {}
            Err(CheckError::Wrong) => return Err(AccountError::InvalidMfaCode),
            Err(e) => return Err(e.into()),
        }
        if !db.disable_mfa(caller.user_id).await? {
            return Err(AccountError::MfaNotEnabled);
        }
        self.parts.profiles.changed(caller.user_id).await;
        AuditEvent::success(AuditKind::MfaDisabled)
            .user(caller.user_id)
            .session(caller.session_id)
            .ip(ip)
            .record(&self.parts.audit);
        self.parts.outbox.send(
            Template::NoticeMfaDisabled,
            &record.user.email,
            &[("by_admin", "no")],
        );
        Ok(())
    }
}
